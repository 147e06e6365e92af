"""Family 6 (TEE rung, issue 5): verifying a Nitro attestation document against one ECDSA P-384.

Called by ``bench/run.py``; also runs alone, for this family only (table on stdout, no JSON):
``.venv/bin/python bench/nitro_run.py [--quick]``. Cases and checks: ``bench/nitro_cases.py``.

    results = run_nitro(plans)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import nitro_cases, report
from bench.harness import Case, Plan, Result, compare

PLANS = {"nitro": Plan(blocks=30, block_seconds=0.05, warmup_seconds=0.3)}
QUICK = {"nitro": Plan(blocks=4, block_seconds=0.02, warmup_seconds=0.05)}
LEGEND = "nitro: ratio of time, each row against one ECDSA P-384 verification timed beside it."


def run_cases(cases: list[Case], plan: Plan) -> list[Result]:
    results = []
    for case in cases:
        print(f"  {case.name} ...", file=sys.stderr, flush=True)
        results.append(compare(case, plan))
    return results


def run_nitro(plans: dict[str, Plan]) -> list[Result]:
    """The rows of family 6 (the documents are made, and every subject checked, first)."""
    print("  preparing Nitro documents ...", file=sys.stderr, flush=True)
    cases = nitro_cases.nitro_cases(nitro_cases.nitro_documents())
    return run_cases(cases, plans["nitro"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run_nitro(QUICK if args.quick else PLANS)
    print(report.table(results), LEGEND, report.details(results), sep="\n\n", end="\n\n")
    print(f"total runtime {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
