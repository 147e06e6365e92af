"""Family 7 (zk rung, issue 6): our Groth16 proofs of the 784-56-10 MLP against EZKL's.

Called by ``bench/run.py``; also runs alone, for this family only (tables on stdout, no JSON):
``.venv/bin/python bench/zk_run.py [--quick]``. Cases and checks: ``bench/zk_cases.py`` (ours)
and ``bench/zk_ezkl_side.py`` (EZKL, in its own virtualenv: ``bench/zk_ezkl.py``).

One-off costs come first and are not part of the family's own time: the 2^14 powers of tau
(minutes; cached in ``bench/out``), EZKL's install and its SRS (cached likewise). Every prover
step takes seconds, so a plan here is a few rounds of one call a side (``block_seconds`` 0: the
harness's warm-up call, then ``blocks`` timed calls a side, alternating).

    outcome = run_zk(plans, tmp)
    print(report.table(outcome.results), text(outcome))
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench/run.py, when run alone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report
from bench.harness import Case, Plan, Result, calls_for, compare, time_calls, warm_up
from bench.zk_cases import Baselines, Figure, OneOff, Row, our_figures, prepare_ours, zk_rows
from bench.zk_ezkl import EzklStepError, EzklUnavailableError, EzklWorker, ensure_ezkl
from bench.zk_ezkl_side import EzklSide, prepare_ezkl

PLANS = {
    "zk_prove": Plan(blocks=3, block_seconds=0.0, warmup_seconds=0.0),
    "zk_setup": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "zk_step": Plan(blocks=5, block_seconds=0.0, warmup_seconds=0.0),
}
QUICK = {name: Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0) for name in PLANS}
ROW_PLANS = {"setup": "zk_setup", "prove": "zk_prove"}  # the other rows: "zk_step"
LEGEND = (
    "zk: ratio of time, ours / EZKL (the same step of EZKL's flow, timed beside it); verify's "
    "goal is\nabsolute (our pure-Python verification <= 1 s); sizes below: ours / EZKL."
)
CACHE = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True, slots=True, kw_only=True)
class ZkOutcome:
    results: list[Result]
    figures: list[Figure]
    costs: list[OneOff]
    ezkl: str  # "EZKL 23.0.5 (...)" or "EZKL: not measured (reason)"
    facts: dict[str, object] = field(default_factory=dict)


def run_zk(plans: dict[str, Plan], tmp: Path, cache: Path = CACHE) -> ZkOutcome:
    """The rows of family 7 (both sides prepared and checked first)."""
    print("  zk: compiling the MLP, powers of tau, keys, one proof ...", file=sys.stderr)
    ours = prepare_ours(tmp / "zk-ours", cache)
    with ExitStack() as stack:
        side, install_cost, missing = _ezkl(tmp / "zk-ezkl", cache, stack)
        baselines = Baselines(side.calls if side else None, missing)
        results = []
        for row in zk_rows(ours, baselines):
            plan = plans[ROW_PLANS.get(row.step, "zk_step")]
            print(f"  {row.case.name} ...", file=sys.stderr, flush=True)
            results.append(run_row(row, plan))
    costs = [ours.ptau_cost, *(side.costs if side else ()), *install_cost]
    status = f"EZKL {side.version}" if side else f"EZKL: not measured ({missing})"
    facts: dict[str, object] = {
        "ezkl": status,
        "circuit_hash": str(ours.compiled.circuit_hash),
        "constraints": len(ours.compiled.r1cs.constraints),
    }
    if side:
        facts["ezkl_run_args"] = side.settings.get("run_args", {})
    return ZkOutcome(results=results, figures=our_figures(ours, side.sizes if side else None),
                     costs=costs, ezkl=status, facts=facts)  # fmt: skip


def _ezkl(folder: Path, cache: Path, stack: ExitStack) -> tuple[EzklSide | None, list[OneOff], str]:
    """EZKL installed, started and prepared, or ``None`` with the reason it is not."""
    print("  zk: EZKL (bench-only virtualenv, calibration, SRS, keys, one proof) ...",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        install = ensure_ezkl()
        worker = stack.enter_context(EzklWorker.start(install.python, folder / "worker.log"))
        side = prepare_ezkl(worker, folder, cache)
    except (EzklUnavailableError, EzklStepError, OSError, ValueError, KeyError) as e:
        print(f"  zk: EZKL: not measured ({e})", file=sys.stderr, flush=True)
        return None, [], str(e)
    cost = []
    if install.install_seconds is not None:
        note = f"pip install ezkl=={install.version} into {install.python.parents[1].name}"
        cost = [OneOff(what="EZKL install", seconds=install.install_seconds, note=note)]
    return side, cost, ""


def run_row(row: Row, plan: Plan) -> Result:
    result = alone(row.case, plan) if row.solo else compare(row.case, plan)
    if row.under_s is None:
        return result
    return replace(result, goal=f"<= {row.under_s:g} s", met=result.subject_s <= row.under_s)


def alone(case: Case, plan: Plan) -> Result:
    """The subject's time only (no baseline to time it against): ratios are NaN, shown as -."""
    fastest = warm_up([case.subject], plan.warmup_seconds)[0]
    n = calls_for(fastest, plan)
    medians = [time_calls(case.subject, n)[0] for _ in range(plan.blocks)]
    nan = math.nan
    return Result(name=case.name, baseline_label=case.baseline_label,
                  subject_label=case.subject_label, throughput=False, baseline_s=nan,
                  subject_s=statistics.median(medians), ratio=nan, ratio_q1=nan, ratio_q3=nan,
                  ratio_of_block_means=nan, goal=None, met=None, blocks=plan.blocks,
                  baseline_calls_per_block=0, subject_calls_per_block=n,
                  notes=case.notes)  # fmt: skip


def _size(value: int | None, unit: str) -> str:
    return "-" if value is None else f"{value:,}{' ' + unit if unit else ''}"


def figures_table(figures: list[Figure]) -> str:
    rows = [["size / count", "ours", "EZKL", "ours/EZKL", "goal", "met"]]
    for f in figures:
        goal = f"<= {f.goal_bytes:,} B" if f.goal_bytes is not None else "-"
        met = "-" if f.met is None else ("met" if f.met else "NOT MET")
        ratio = "-" if f.ratio is None else f"{f.ratio:.3g}"
        rows.append([f.name, _size(f.ours, f.unit), _size(f.ezkl, f.unit), ratio, goal, met])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.rjust(w) if 1 <= i <= 3 else c.ljust(w) for i, (c, w) in pairs).rstrip()

    notes = [f"* {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths),
                      *(line(r) for r in rows[1:]), *notes])  # fmt: skip


def text(outcome: ZkOutcome) -> str:
    costs = [
        f"* {c.what}: " + (f"{c.seconds:.1f} s, {c.note}" if c.seconds is not None else c.note)
        for c in outcome.costs
    ]
    return "\n".join([
        f"zk: {outcome.ezkl}; circuit {outcome.facts.get('circuit_hash')}",
        "", figures_table(outcome.figures), "", "one-off costs (not in the rows above):", *costs,
    ])  # fmt: skip


def json_section(outcome: ZkOutcome) -> dict[str, object]:
    """The sizes, one-off costs and facts, for ``bench/out/results.json`` (rows go with all)."""
    figures = [{**asdict(f), "ratio": f.ratio, "met": f.met} for f in outcome.figures]
    costs = [asdict(c) for c in outcome.costs]
    return {"zk": {"ezkl": outcome.ezkl, **outcome.facts, "figures": figures, "one_off": costs}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one timed call a side (smoke test)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="receipts-bench-") as tmp:
        outcome = run_zk(QUICK if args.quick else PLANS, Path(tmp))
    results = outcome.results
    print(report.table(results), LEGEND, report.details(results), sep="\n\n", end="\n\n")
    print(text(outcome), end="\n\n")
    print(f"total runtime {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
