"""Family 8 (audits at scale, issue 7): audit throughput, harness overhead, a 100,000-receipt audit.

Called by ``bench/run.py``; also runs alone, for this family only (table on stdout, no JSON):
``.venv/bin/python bench/audit_run.py [--quick]``. Cases and checks: ``bench/audit_cases.py``.

Every call of a row is one whole audit (seconds), so a plan here is rounds of one call a side
(``block_seconds`` 0: the harness's warm-up call, then ``blocks`` timed calls a side,
alternating which side goes first); figures are restated per receipt. The large audit has no
baseline: its first run is its check, then ``blocks`` timed runs (the median is reported).
The parts of an audit are then timed on their own (a breakdown), and the speed-up two workers
could reach given the parts that do not run in the workers is printed beside the measured one.

    outcome = run_audits(plans, Path("bench/out"), SIZES)
    print(report.table(outcome.results), text(outcome))
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench/run.py, when run alone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.audit_cases import (
    AT_MS,
    SEED,
    AuditWork,
    CachedPopulation,
    cached_population,
    check_run,
    checked_executors,
    overhead_cases,
    throughput_cases,
)
from bench.breakdowns import Breakdown, Step
from bench.harness import Case, Plan, Result, compare, profile_steps, time_calls
from receipts.audit import (
    AuditRun,
    Executor,
    Task,
    WorkerConfig,
    check_batch,
    choose_sample,
    folder_source,
    identify,
)
from receipts.envelope import Envelope
from receipts.executors import BATCH, InlineExecutor, LocalExecutor, batches
from receipts.receipt import Receipt, receipt_id

PLANS = {
    "audit": Plan(blocks=7, block_seconds=0.0, warmup_seconds=0.0),
    "audit_overhead": Plan(blocks=7, block_seconds=0.0, warmup_seconds=0.0),
    "audit_large": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
}
QUICK = {
    "audit": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "audit_overhead": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "audit_large": Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0),
}
LEGEND = (
    "audit: figures per receipt; throughput rows: ratio of receipts/s (subject over baseline); "
    "overhead rows:\nratio of time; the large audit has no baseline (its receipts/s is the "
    "figure, no goal)."
)
CACHE = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """Receipts per provider (4 providers) of the throughput/overhead and of the large audit."""

    per_provider: int
    large_per_provider: int
    breakdown_rounds: int


SIZES = Sizes(per_provider=1000, large_per_provider=25_000, breakdown_rounds=3)
QUICK_SIZES = Sizes(per_provider=250, large_per_provider=250, breakdown_rounds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PopulationFact:
    path: str
    receipts: int
    generation_seconds: float  # measured when it was generated (``generated_utc``)
    generated_utc: str
    reused: bool

    @classmethod
    def of(cls, p: CachedPopulation) -> PopulationFact:
        return cls(path=str(p.root), receipts=p.receipts, generation_seconds=round(p.built_s, 2),
                   generated_utc=p.built_utc, reused=p.reused)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditOutcome:
    results: list[Result]
    breakdowns: list[Breakdown]
    populations: list[PopulationFact]
    throughput_audit: str  # what the throughput and overhead rows audit
    large_executor: str  # the fastest executor of the throughput rows
    large_first_s: float  # the large audit's first (checked) run
    large_read_s: float  # reading its receipt files alone
    two_worker_bound: float  # the speed-up the parts allow (``two_worker_bound``)


def run_audits(plans: dict[str, Plan], cache: Path = CACHE, sizes: Sizes = SIZES) -> AuditOutcome:
    """The rows of family 8 (populations cached in ``cache``; every subject checked first)."""
    population = cached_population(cache, sizes.per_provider)
    work = AuditWork.of(population, fraction=0.1, min_per_provider=5)
    print("  audit: checking every executor's audit ...", file=sys.stderr, flush=True)
    runs = checked_executors(work)
    results = [
        per_receipt(run_case(case, plans["audit"]), work.receipts)
        for case in throughput_cases(work)
    ]
    results += [
        per_receipt(run_case(case, plans["audit_overhead"]), work.receipts)
        for case in overhead_cases(work, runs["inline"])
    ]
    print("  audit: breakdown ...", file=sys.stderr, flush=True)
    parts = breakdown(work, runs["inline"], sizes.breakdown_rounds)
    name, best = best_executor(results[0], results[1])
    large = cached_population(cache, sizes.large_per_provider)
    row, first_s, read_s = large_audit(large, name, best, plans["audit_large"])
    return AuditOutcome(
        results=[*results, row],
        breakdowns=[parts],
        populations=[PopulationFact.of(p) for p in dict.fromkeys((population, large))],
        throughput_audit=work.describe(),
        large_executor=name,
        large_first_s=first_s,
        large_read_s=read_s,
        two_worker_bound=two_worker_bound(parts),
    )


def run_case(case: Case, plan: Plan) -> Result:
    print(f"  {case.name} ...", file=sys.stderr, flush=True)
    return compare(case, plan)


def per_receipt(result: Result, n: int) -> Result:
    """Per-call (per-audit) seconds restated per receipt; the ratios are untouched."""
    return replace(result, baseline_s=result.baseline_s / n, subject_s=result.subject_s / n)


def best_executor(two_vs_one: Result, two_vs_inline: Result) -> tuple[str, Executor]:
    """The fastest executor of the throughput rows (per-receipt medians measured this run)."""
    seconds = {
        "LocalExecutor(1)": two_vs_one.baseline_s,
        "LocalExecutor(2)": min(two_vs_one.subject_s, two_vs_inline.subject_s),
        "InlineExecutor": two_vs_inline.baseline_s,
    }
    name = min(seconds, key=lambda k: seconds[k])
    executors: dict[str, Executor] = {
        "LocalExecutor(1)": LocalExecutor(1),
        "LocalExecutor(2)": LocalExecutor(2),
        "InlineExecutor": InlineExecutor(),
    }
    return name, executors[name]


def large_audit(
    population: CachedPopulation, name: str, executor: Executor, plan: Plan
) -> tuple[Result, float, float]:
    """Signature and digests on every receipt (sample 0, minimum 0), files read in the call.
    The first run is checked (its time is kept apart); then ``plan.blocks`` timed runs."""
    work = AuditWork.of(population, fraction=0.0, min_per_provider=0, in_memory=False)
    n = work.receipts

    def call() -> AuditRun:
        return work.audit(executor, folder_source(population.folder))

    print(f"  signature+digest audit of {n:,} receipts, {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    check_run(call(), work)
    first_s = time.perf_counter() - start
    read_s = time_calls(lambda: sum(len(s.data) for s in folder_source(population.folder)), 1)[0]
    times = [time_calls(call, 1)[0] for _ in range(plan.blocks)]
    nan = math.nan
    result = Result(
        name=f"signature+digest audit, {n:,} receipts",
        baseline_label="none (absolute figure)",
        subject_label=f"run_audit(folder_source(...)), {name}, sample fraction 0, minimum 0",
        throughput=True,
        baseline_s=nan,
        subject_s=statistics.median(times) / n,
        ratio=nan,
        ratio_q1=nan,
        ratio_q3=nan,
        ratio_of_block_means=nan,
        goal=None,
        met=None,
        blocks=plan.blocks,
        baseline_calls_per_block=0,
        subject_calls_per_block=1,
        notes=(
            f"{work.describe()}; receipt files read inside the call ({read_s:.1f} s of it when "
            f"read alone); first (checked) run {first_s:.1f} s, timed runs "
            + ", ".join(f"{t:.1f} s" for t in times)
        ),
        round_ratios=[],
    )
    return result, first_s, read_s


# -- where the time of the throughput audit goes ---------------------------------------------

SERIAL = ("a2 decode", "a4 sample", "pickle")  # steps of the parent process, not of the workers
CHECKS = "a5-a6 check_batch"


def breakdown(work: AuditWork, run: AuditRun, rounds: int) -> Breakdown:
    """Each part of the throughput audit timed alone, for the whole population: what the parent
    does before any worker starts (a2, a4), what the workers do (a5-a6), the pickling of every
    batch and its results, and a pool's start-up and shut-down on a handful of receipts."""
    sampled = {item.receipt_id: item.sampled for item in run.items}
    decoded = []
    for s in work.sources:
        envelope = Envelope.from_bytes(s.data)
        receipt = Receipt.decode(envelope.payload)
        decoded.append((receipt_id(envelope.payload).value, receipt.provider.hex(), s))
    decoded.sort(key=lambda t: t[0])
    tasks = [
        Task(i, s.source, s.data, sampled[f"sha256:{rid.hex()}"])
        for i, (rid, _, s) in enumerate(decoded)
    ]
    by_provider: dict[str, list[bytes]] = {}
    for rid, provider, _ in decoded:
        by_provider.setdefault(provider, []).append(rid)
    config = WorkerConfig(str(work.population.store), work.policy, AT_MS)
    results = check_batch(config, tasks)
    few = work.sources[:8]

    def decode_all() -> None:  # step a2 as run_audit runs it
        for s in work.sources:
            identify(s.data)

    def pickle_all() -> None:
        for batch in batches(tasks, BATCH):
            pickle.loads(pickle.dumps((check_batch, config, batch)))
        for start in range(0, len(results), BATCH):
            pickle.loads(pickle.dumps(results[start : start + BATCH]))

    steps = [
        ("a2 decode", decode_all),
        ("a4 sample", lambda: choose_sample(by_provider, work.rule, SEED)),
        (CHECKS, lambda: check_batch(config, tasks)),
        ("pickle", pickle_all),
        ("pool of 1, 8 receipts", lambda: work.audit(LocalExecutor(1), few)),
        ("pool of 2, 8 receipts", lambda: work.audit(LocalExecutor(2), few)),
    ]
    timed = profile_steps(steps, rounds=rounds, block_seconds=0.0)
    return Breakdown(
        name="audit parts",
        note=f"per audit of {work.receipts:,} receipts, each part alone",
        steps=tuple(Step(step=s, seconds=t) for s, t in timed),
    )


def two_worker_bound(parts: Breakdown) -> float:
    """The speed-up of 2 workers over 1 the parts allow: the parent's steps run alone, the
    checks split in two, each side pays its own pool's start-up."""
    t = {s.step: s.seconds for s in parts.steps}
    serial = sum(t[name] for name in SERIAL)
    one = serial + t[CHECKS] + t["pool of 1, 8 receipts"]
    two = serial + t[CHECKS] / 2 + t["pool of 2, 8 receipts"]
    return one / two


def text(outcome: AuditOutcome) -> str:
    lines = ["audit populations (fixtures.population, generated once, cached in bench/out):"]
    for p in outcome.populations:
        how = "reused" if p.reused else "generated in this run"
        lines.append(
            f"* {p.receipts:,} receipts: generation {p.generation_seconds:.1f} s "
            f"({p.generated_utc}, {how}), {p.path}"
        )
    lines += [
        f"throughput and overhead audit: {outcome.throughput_audit}",
        (
            f"large audit on {outcome.large_executor} (the fastest in the throughput rows); "
            f"first (checked) run {outcome.large_first_s:.1f} s; its files read alone "
            f"{outcome.large_read_s:.1f} s"
        ),
        (
            "2 workers vs 1 as the parts of the audit allow (parent steps serial, checks split in "
            f"two, own pool start-up): {outcome.two_worker_bound:.2f}x"
        ),
    ]
    return "\n".join(lines)


def json_section(outcome: AuditOutcome) -> dict[str, object]:
    """The populations and facts, for ``bench/out/results.json`` (rows go with all)."""
    whole = asdict(outcome)
    return {"audit": {k: v for k, v in whole.items() if k not in ("results", "breakdowns")}}


def from_json(document: dict[str, Any]) -> AuditOutcome:
    """``asdict(outcome)`` read back."""
    return AuditOutcome(
        **{
            **document,
            "results": [Result(**r) for r in document["results"]],
            "breakdowns": [
                Breakdown(
                    name=b["name"], note=b["note"], steps=tuple(Step(**s) for s in b["steps"])
                )
                for b in document["breakdowns"]
            ],
            "populations": [PopulationFact(**p) for p in document["populations"]],
        }
    )


def run_apart(*, quick: bool) -> AuditOutcome:
    """Family 8 in a process of its own, as ``bench/run.py`` runs it. A spawned pool worker
    imports its parent's ``__main__`` again before it starts; ``bench/run.py`` imports every
    family (~0.5 s a worker, and every audit starts a pool), which is no part of what an audit
    costs. Alone, ``bench/audit_run.py`` imports ~0.03 s."""
    with tempfile.TemporaryDirectory(prefix="receipts-bench-audit-") as tmp:
        out = Path(tmp) / "audit.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--json", str(out)]
        subprocess.run([*command, *(["--quick"] if quick else [])], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return from_json(json.loads(out.read_text(encoding="utf-8")))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small populations, few rounds")
    parser.add_argument("--json", type=Path, help="also write the outcome there (bench/run.py)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else SIZES
    outcome = run_audits(QUICK if args.quick else PLANS, CACHE, sizes)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(outcome)) + "\n", encoding="utf-8")
    results = outcome.results
    print(report.table(results), LEGEND, report.details(results), sep="\n\n", end="\n\n")
    print(text(outcome), report.breakdown_text(outcome.breakdowns), sep="\n\n", end="\n\n")
    print(f"total runtime {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
