"""Human-readable output of the CLI: summaries and the verification table (presentation only).

click.echo(report_table(report))
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from receipts.digests import Digest, TensorMapDigest
from receipts.dispute import LocalDispute
from receipts.envelope import Envelope
from receipts.errors import InputError, ReceiptsError
from receipts.events import AnyEvent
from receipts.jsonview import event_json, plain
from receipts.model import LoadedModel
from receipts.provider import Issued
from receipts.receipt import Receipt
from receipts.referee import SignedRuling
from receipts.report import Report, RungResult, Status
from receipts.store import Balance, RequestRow

_MARK = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.NOT_RUN: "----"}


def model_summary(model: LoadedModel) -> str:
    count = len(model.weights)
    lines = [
        f"file sha256  {model.file_sha256}",
        f"structure    {model.model_digest.structure}",
        f"weights      {count} tensor(s); `receipts digest MODEL --json` lists them",
    ]
    return "\n".join(lines)


def _tensors(label: str, tensors: TensorMapDigest) -> list[str]:
    lines = [f"{label:<12} {tensors.digest}"]
    lines += [f"  {safe(e.name)}: {e.describe()} {e.digest}" for e in tensors.entries]
    return lines


def issued_summary(issued: Issued, paths: list[Path], fault: str | None = None) -> str:
    r = issued.receipt
    lines = [
        f"receipt      {issued.receipt_id}",
        f"model        {r.model}",
        *_tensors("inputs", r.inputs),
        *_tensors("outputs", r.outputs),
        f"runtime      {r.runtime.describe()}",
        f"meter        {_meter(r)}",
    ]
    if r.trace is not None:
        lines.append(f"trace        {r.trace.nodes} nodes, root {r.trace.root}")
    if fault is not None:
        lines.append(f"DRILL        node {safe(fault)} corrupted on purpose; this receipt is WRONG")
    lines.append(f"wrote        {', '.join(str(p) for p in paths)}")
    return "\n".join(lines)


def _meter(receipt: Receipt) -> str:
    m = receipt.meter
    price = f"{m.units} units x {m.price.unit_price} + {m.price.base_fee}"
    return f"{price} = {m.amount} {safe(m.price.asset)}"


def _when(ms: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return "(outside the calendar)"


def safe(text: str) -> str:
    """Text from a receipt, with control characters escaped so it cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def receipt_text(receipt: Receipt, rid: Digest, envelope: Envelope) -> str:
    lines = [
        f"receipt      {rid}   (signature NOT checked; use `receipts verify`)",
        f"provider     {receipt.provider.hex()} ({envelope.signature.public_key.scheme})",
        f"issued at    {_when(receipt.issued_at)} ({receipt.issued_at} ms)",
        f"nonce        {receipt.nonce.hex()}",
    ]
    if receipt.request is not None:
        lines.append(f"request      {receipt.request}")
    lines += [
        f"model        {receipt.model}",
        *_tensors("inputs", receipt.inputs),
        *_tensors("outputs", receipt.outputs),
        f"runtime      {receipt.runtime.describe()}",
        f"identity     {receipt.runtime.identity}",
        f"meter        {receipt.meter.method}: {_meter(receipt)}",
    ]
    if receipt.trace is not None:
        lines.append(f"trace        {receipt.trace.nodes} nodes, root {receipt.trace.root}")
    for item in envelope.attachments:
        known = "" if item.known else "   (unknown type: never counted)"
        lines.append(f"attachment   {safe(item.describe())}{known}")
    return "\n".join(lines)


def report_table(report: Report, *, only_required: bool = False) -> str:
    """The verification table; ``only_required`` leaves out the rungs the policy did not ask
    for (``receipts zk verify`` shows the signature and zk rungs alone)."""
    lines = [f"receipt      {report.receipt_id or '(unreadable)'}"]
    if report.key is not None:
        pinned = "pinned" if report.key_pinned else "NOT pinned"
        lines.append(f"provider     {report.key.key_id.hex()} ({report.key.scheme}, {pinned})")
    for rung in report.rungs:
        if only_required and rung.rung not in report.required:
            continue
        required = "required" if rung.rung in report.required else "optional"
        lines.append(f"[{_MARK[rung.status]}] {rung.rung} ({required})")
        for step in rung.steps:
            text = f"    {_MARK[step.status]}  {step.step}"
            if step.reason:
                text += f": {safe(step.reason)}"
            elif "comparison" in step.details:
                text += f": {step.details['comparison']}"
            elif "summary" in step.details:
                text += f": {safe(str(step.details['summary']))}"
            lines.append(text)
            lines += [f"          {row}" for row in _output_rows(step.details)]
            lines += [f"          {row}" for row in _spot_rows(step.details)]
    verdict = (
        "RELEASE: every required rung passed"
        if report
        else "REFUSE: " + safe(str(report.first_error()))
    )
    lines.append(verdict)
    return "\n".join(lines)


def _output_rows(details: object) -> list[str]:
    rows = details.get("outputs") or details.get("rows") if isinstance(details, dict) else None
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        if "max_abs_error" in row:
            errors = f"max abs error {row['max_abs_error']:.3g}, rel {row['max_rel_error']:.3g}"
            name = safe(str(row["name"]))
            out.append(f"{name}: {row.get('comparison')}, {errors}, {row['mismatches']} off")
        elif "reason" in row:
            out.append(f"{safe(str(row['name']))}: {row['reason']}")
    return out


def _spot_rows(details: object) -> list[str]:
    checks = details.get("checks") if isinstance(details, dict) else None
    if not isinstance(details, dict) or not isinstance(checks, list):
        return []
    out = []
    for row in checks:
        freivalds = row["freivalds"]
        if isinstance(freivalds, dict):
            share = freivalds["macs"] / max(1, freivalds["product_macs"])
            verdict = "ok" if freivalds["ok"] else "FAILED"
            extra = f"; Freivalds {verdict} ({share:.1%} of the product's work)"
        else:
            extra = ""
        mark = "ok  " if row["ok"] else "FAIL"
        reason = "" if row["ok"] else f": {safe(str(row['reason']))}"
        out.append(f"{mark} {safe(str(row['node']))}: re-run {row['rerun']}{extra}{reason}")
    units, total = details["units_checked"], details["units_model"]
    share = f" ({units / total:.2%})" if total else ""
    out.append(
        f"sampled {details['samples']} of {details['nodes']} nodes; "
        f"a single wrong node is caught with probability {details['detection_probability']:.3f}"
    )
    out.append(
        f"cost: {units} of the receipt's {total} compute units{share}, {details['seconds']:.3f} s"
    )
    return out


def dispute_summary(local: LocalDispute, path: Path) -> str:
    node, result = local.node, local.result
    provider = {e.name: e for e in result.opening.node.leaf.outputs}
    where = f"node #{node.index} {safe(node.op_type)} {safe(node.name)!r}"
    lines = [
        f"divergence   {where}: inputs agreed, outputs differ",
        f"rounds       {result.rounds} ({result.rounds - 1} bisection + 1 opening)",
    ]
    for entry in result.claim.outputs:
        theirs = provider.get(entry.name)
        lines.append(f"  {safe(entry.name)}: provider {theirs.digest if theirs else '?'}")
        lines.append(f"  {' ' * len(safe(entry.name))}  mine     {entry.digest}")
    lines.append(f"wrote        {path} (evidence: {local.evidence.digest})")
    return "\n".join(lines)


def ruling_text(signed: SignedRuling, path: Path) -> str:
    r = signed.ruling
    lines = [
        f"receipt      {r.receipt}",
        f"node         #{r.node} {safe(r.op)} {safe(r.node_name)!r}",
        f"comparison   {r.comparison}",
        f"transcript   provider messages {r.provider_messages}",
        f"reason       {safe(r.reason)}",
        f"wrote        {path}",
        f"RULING: {r.verdict}",
    ]
    return "\n".join(lines)


def balances_table(rows: list[Balance], requests: list[RequestRow]) -> str:
    lines = [f"{'account':<18} {'asset':<10} {'kind':<9} {'amount':>20}"]
    lines += [
        f"{b.account.hex()[:16] + '…':<18} {b.asset:<10} {b.kind:<9} {b.amount:>20}" for b in rows
    ]
    open_holds = [r for r in requests if r.hold]
    for r in open_holds:
        lines.append(f"{'hold ' + r.id.value.hex()[:12] + '…':<18} {r.asset:<10} "
                     f"{r.state:<9} {r.hold:>20}")  # fmt: skip
    return "\n".join(lines)


def supply(assets: dict[str, int]) -> str:
    return ", ".join(f"{amount} {asset}" for asset, amount in sorted(assets.items()))


def event_line(index: int, event: AnyEvent) -> str:
    """One log entry on one line: index, time, kind and the fields people look for."""
    shown = event_json(index, event)
    keep = [f"{k}={_short(v)}" for k, v in shown.items() if k not in ("index", "kind", "at")]
    return f"{index:>6}  {_when(event.at)}  {event.kind:<8} {' '.join(keep)}"


def _short(value: object) -> str:
    text = str(value)
    if text.startswith("sha256:"):
        return text[:19] + "…"
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return safe(text)


def is_input_error(error: ReceiptsError) -> bool:
    return isinstance(error, InputError)


def rung_text(result: RungResult, *, checked_at: int) -> str:
    """One rung's steps (``receipts attestation verify``) and a one-line verdict."""
    lines = [f"checked at   {_when(checked_at)} ({checked_at} ms)"]
    for step in result.steps:
        text = f"{_MARK[step.status]}  {step.step}"
        if step.reason:
            text += f": {safe(step.reason)}"
        elif "summary" in step.details:
            text += f": {safe(str(step.details['summary']))}"
        lines.append(text)
    failures = result.failures()
    lines.append(
        "VERIFIED: every step passed" if not failures else f"REFUSED: {safe(failures[0].reason)}"
    )
    return "\n".join(lines)


def rung_json(result: RungResult, *, checked_at: int) -> dict[str, object]:
    return {
        "ok": result.status is Status.PASSED,
        "checked_at": checked_at,
        "steps": [
            {
                "step": step.step,
                "status": step.status.value,
                "reason": step.reason,
                "error": type(step.error).__name__ if step.error else None,
                "details": plain(step.details),
            }
            for step in result.steps
        ],
    }


def attestation_text(view: dict[str, object]) -> str:
    """The fields of an attestation document (``attestation_json``), for people."""
    when = view["timestamp"]
    assert isinstance(when, int)
    lines = [
        "document     (NOT verified; use `receipts attestation verify`)",
        f"module       {safe(str(view['module_id']))}",
        f"timestamp    {_when(when)} ({when} ms)",
        f"encoding     COSE_Sign1 {'tag 18' if view['tagged'] else 'untagged'}, ES384",
    ]
    if view["debug"]:
        lines.append("mode         DEBUG enclave (PCR0 all zero: the host can read its memory)")
    pcrs = view["pcrs"]
    assert isinstance(pcrs, dict)
    lines += [f"PCR{index:<9} {value}" for index, value in pcrs.items() if set(value) != {"0"}]
    zero = [index for index, value in pcrs.items() if set(value) == {"0"}]
    if zero:
        lines.append(f"zero PCRs    {', '.join(zero)}")
    certificates = view["certificates"]
    assert isinstance(certificates, list)
    for i, cert in enumerate(certificates):
        label = "root" if i == 0 else "leaf" if i == len(certificates) - 1 else "CA"
        lines.append(f"{label:<12} {safe(cert['subject'])}")
        lines.append(f"{'':<12} valid {cert['not_before']} to {cert['not_after']}")
    for name in ("public_key", "user_data", "nonce"):
        value = view[name]
        text = "absent" if value is None else ("empty" if value == "" else str(value))
        lines.append(f"{name.replace('_', ' '):<12} {text}")
    return "\n".join(lines)


@contextmanager
def terminal_progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` that draws a bar on standard error when it is a terminal,
    or None (quiet) when it is not: logs and pipes get no bar."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=0, label=label, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        yield progress
