"""``receipts audit``: audit a folder of receipts or a ledger's claims against a store (CLI).

Thin wiring over ``receipts.audit`` (steps a1-a6), ``receipts.executors`` and the renderers of
``receipts.audit_report``; errors reach the one boundary in ``cli.main``. Exit codes: 0 every
audited receipt passed, 1 a receipt failed, 2 bad input (a source, store, policy or scheduler
that cannot be used, a source holding no receipt at all). Receipts that could not be checked
(objects missing or corrupt, files that do not decode) are reported, with why, and do not by
themselves fail the audit. A scheduler is asked who it is before any receipt is read, with a
hard deadline (``--scheduler-timeout``).

    receipts audit receipts/ --store objects/ --sample 0.05 --seed q4 --workers 2 \\
        --json audit.json --html audit.html
    receipts audit ledger.db --store objects/ --count 500 --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

from pathlib import Path

import click

from cli import render
from cli.options import effects
from receipts.audit import (
    AuditPolicy,
    SamplingRule,
    folder_source,
    ledger_source,
    load_policy,
    report_of,
    run_audit,
    trace_beside,
)
from receipts.audit_html import to_html
from receipts.audit_report import DisputeHints, to_json, to_text
from receipts.digests import Digest
from receipts.errors import InputError, ReceiptsError
from receipts.executors import DaskExecutor, InlineExecutor, LocalExecutor
from receipts.files import Content, check_new_target, write_together
from receipts.objects import ObjectStore
from receipts.scorecard import AuditReport

new_file = click.Path(dir_okay=False, path_type=Path)


@click.command("audit")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--store",
    "store_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The content-addressed store holding the receipts' models, inputs and outputs.",
)
@click.option(
    "--sample",
    "fraction",
    type=click.FloatRange(0, 1),
    help="Re-execute this fraction of each provider's receipts [default: 0.05].",
)
@click.option(
    "--count", type=click.IntRange(0), help="Re-execute this many, split across providers."
)
@click.option("--seed", help="Sample seed (text); default: fresh, printed for replay.")
@click.option(
    "--at",
    "at_ms",
    type=click.IntRange(1, 2**63 - 1),
    metavar="UNIX_MS",
    help="Judge receipts as of UNIX_MS; default: now, printed for replay.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML audit policy (trusted keys, sample rungs, tolerance, minimum per provider).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    help="Local worker processes [default: 1, this process].",
)
@click.option("--scheduler", metavar="ADDRESS", help="A Dask scheduler (tcp://host:port).")
@click.option(
    "--scheduler-timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the scheduler to answer before giving up (exit 2).",
)
@click.option("--json", "json_out", type=new_file, help="Write the JSON report here.")
@click.option("--html", "html_out", type=new_file, help="Write the HTML report here.")
@click.pass_context
def audit(
    ctx: click.Context,
    source: Path,
    store_dir: Path,
    fraction: float | None,
    count: int | None,
    seed: str | None,
    at_ms: int | None,
    policy_file: Path | None,
    workers: int | None,
    scheduler: str | None,
    scheduler_timeout: float,
    json_out: Path | None,
    html_out: Path | None,
) -> None:
    """Audit SOURCE (a folder of .rcpt files, or a ledger database's claims): signature and
    digests on every receipt, re-execution on a seeded per-provider sample; per-provider
    scorecards with a failure-rate bound, and a dispute command for each failed receipt."""
    if fraction is not None and count is not None:
        raise click.UsageError("--sample and --count are exclusive")
    if workers is not None and scheduler is not None:
        raise click.UsageError("--workers and --scheduler are exclusive")
    if json_out is not None and html_out is not None and json_out.resolve() == html_out.resolve():
        raise click.UsageError("--json and --html name the same file")
    for target in (json_out, html_out):
        if target is not None:
            check_new_target(target)  # refused before the work, never replaced after it
    policy = AuditPolicy() if policy_file is None else load_policy(policy_file)
    rule = SamplingRule(
        fraction=0.05 if fraction is None and count is None else fraction,
        count=count,
        min_per_provider=policy.min_per_provider,
    )
    clock, random_bytes = effects(ctx)
    seed = seed if seed is not None else random_bytes(16).hex()
    at_ms = at_ms if at_ms is not None else clock.now_ms()  # the report carries it: replayable
    store = ObjectStore.open(store_dir)
    executor = (
        DaskExecutor(scheduler, timeout_s=scheduler_timeout)
        if scheduler is not None
        else LocalExecutor(workers)
        if workers is not None and workers > 1
        else InlineExecutor()
    )
    receipts = folder_source(source) if source.is_dir() else ledger_source(source)
    with render.terminal_progress("auditing") as progress:
        run = run_audit(
            receipts,
            store=store_dir,
            rule=rule,
            seed=seed.encode("utf-8"),
            policy=policy,
            executor=executor,
            at_ms=at_ms,
            progress=progress,
        )
    if not run.items and not run.duplicates:
        what = "*.rcpt file" if source.is_dir() else "claim"
        raise InputError(f"{source}: nothing to audit (no {what} found)")
    report = report_of(run, str(source))
    hints = _hints(store, source, report)
    # Both outputs are rendered before either is written, and written together: a report
    # that cannot be rendered leaves no half of the pair behind. File names that are not
    # UTF-8 (surrogate escapes) are written as backslash escapes rather than crashing.
    outputs: list[tuple[Path, Content]] = []
    if json_out is not None:
        outputs.append((json_out, to_json(report, hints).encode("utf-8", "backslashreplace")))
    if html_out is not None:
        outputs.append((html_out, to_html(report, hints).encode("utf-8", "backslashreplace")))
    click.echo(to_text(report, hints), nl=False)
    click.echo(f"replay with --seed {render.safe(seed)} --at {at_ms}")
    if outputs:
        write_together(outputs, replace=False)
        for target, _ in outputs:
            click.echo(f"wrote {target}", err=True)
    ctx.exit(_exit_code(report))


def _hints(store: ObjectStore, source: Path, report: AuditReport) -> DisputeHints:
    """Paths for the dispute commands: objects from the store, receipt files from the source
    folder and the trace files beside them (a ledger's claims have no file: the command keeps
    placeholders)."""
    sources = {i.receipt_id: i.source for i in report.items if i.receipt_id is not None}

    def objects(digest: str) -> str | None:
        try:
            parsed = Digest.parse(digest)
        except ReceiptsError:
            return None
        for path in (store.model_path(parsed), store.tensors_path(parsed)):
            if path.is_file():
                return str(path)
        return None

    def receipts(name: str) -> str | None:
        return str(source / name) if source.is_dir() else None

    def traces(rid: str) -> str | None:
        name = sources.get(rid)
        return None if name is None or not source.is_dir() else trace_beside(source / name)

    return DisputeHints(objects=objects, receipts=receipts, traces=traces)


def _exit_code(report: AuditReport) -> int:
    return 0 if report else 1
