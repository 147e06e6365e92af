"""Family 5 (settlement, issue 4): ledger throughput, proofs in a 1M-entry log, co-signatures.

Called by ``bench/run.py``; also runs alone, for this family only (table and breakdowns on
stdout, no JSON): ``.venv/bin/python bench/settle_run.py [--quick]``.

    results, found = run_settlement(plans, tmp, cache=Path("bench/out"))

Plans (``PLANS``, merged into ``bench/run.py``'s): ``settle`` must make one call per block and
no warm-up time (each call consumes a block of pre-made requests: blocks + 1 calls a side, 9
blocks = 2,000 requests of 200); ``tlog`` and ``cosign`` are ordinary plans; ``pyecc`` should
be one block of one call (the reference takes ~6 s a call, and the warm-up makes a second one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench/run.py, when run alone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    cosign_cases,
    proof_breakdowns,
    report,
    settle_breakdowns,
    settle_cases,
    tlog_cases,
)
from bench.breakdowns import Breakdown
from bench.harness import Plan, Result
from bench.measures import run_measures

# A settle call takes a block of 200 pre-made requests: one call per block, no warm-up time
# (9 blocks: 2,000 requests a side). py_ecc: the warm-up call and one timed call.
PLANS = {
    "settle": Plan(blocks=9, block_seconds=0.0, warmup_seconds=0.0),
    "tlog": Plan(blocks=20, block_seconds=0.05, warmup_seconds=0.3),
    "cosign": Plan(blocks=12, block_seconds=0.15, warmup_seconds=0.3),
    "pyecc": Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0),
}
QUICK = {
    "settle": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "tlog": Plan(blocks=4, block_seconds=0.02, warmup_seconds=0.05),
    "cosign": Plan(blocks=3, block_seconds=0.02, warmup_seconds=0.05),
    "pyecc": Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0),
}
LEGEND = (
    "settle: ratio of throughput, per request (a call is a block of 200); tlog, cosign: ratio of "
    "time;\ngoals with a unit (>= 1,000/s, < 1 ms) are on the subject's own figure, not the ratio."
)
CACHE = Path(__file__).resolve().parent / "out"


def run_settlement(
    plans: dict[str, Plan], tmp: Path, cache: Path = CACHE
) -> tuple[list[Result], list[Breakdown]]:
    """The rows and breakdowns of family 5; the 1M-entry log is kept in ``cache``."""
    rounds = plans["breakdown"].blocks
    settle = plans["settle"]
    if settle.block_seconds or settle.warmup_seconds:
        raise ValueError("the settle plan makes one call per block, without warm-up time")
    print("  preparing signed requests and receipts ...", file=sys.stderr, flush=True)
    work = settle_cases.workload(blocks=settle.blocks + 1)
    with ExitStack() as stack:
        measures = settle_cases.settlement_measures(tmp / "settle", work, stack)
        results = run_measures(measures, settle)
    print("  settlement breakdowns ...", file=sys.stderr, flush=True)
    found = settle_breakdowns.settlement(work, tmp / "settle-breakdown", max(rounds, 2))
    with tlog_cases.open_big_log(cache) as big:
        results += run_measures(tlog_cases.proof_measures(big), plans["tlog"])
        found.append(proof_breakdowns.tlog(big, rounds * 3))
    cosigned = cosign_cases.cosigned_batch(tmp / "cosign", work)
    results += run_measures(cosign_cases.cosign_measures(cosigned), plans["cosign"])
    results += run_measures(cosign_cases.reference_measures(cosigned), plans["pyecc"])
    found.append(proof_breakdowns.cosign(cosigned, rounds))
    return results, found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else 5  # as bench/run.py's "breakdown" plan
    plans = {
        **(QUICK if args.quick else PLANS),
        "breakdown": Plan(blocks=rounds, block_seconds=0.0, warmup_seconds=0.0),
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="receipts-bench-") as tmp:
        results, found = run_settlement(plans, Path(tmp))
    print(report.table(results), LEGEND, report.details(results), sep="\n\n")
    print(report.breakdown_text(found), end="\n\n")
    print(f"total runtime {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
