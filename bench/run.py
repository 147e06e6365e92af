"""Benchmark: what receipts cost, each figure a ratio against a baseline timed in the same run.

Run as ``make bench`` (``.venv/bin/python bench/run.py``); ``--quick`` for a short smoke run.

What is measured (subject vs baseline; details in ``bench/cases.py``):

1. Issuance overhead. Subject: ``Provider(key).session(model).run({"x": x}).to_bytes()``: input
   check, run, input and output digests, meter, receipt encoding, Ed25519 signature, envelope
   bytes. Baseline: ``run(None, {"x": x})`` on the very onnxruntime session the provider holds.
   (a) 8 MatMul+Relu layers of 512x512 float32 at batch 32, goal <= 1.10x;
   (b) a small convnet (4 x Conv/Relu/MaxPool, GlobalAveragePool, Gemm; input [8,3,32,32]),
   goal <= 1.02x.
2. Verification throughput on one thread. Subject: ``Verifier.check`` of one receipt of the
   fixtures MLP with a pinned key and ``required=("signature", "digests")``, handed the model (a
   precomputed ``LoadedModel``), the inputs and the outputs: steps 1-9 (decode, type, signature,
   payload, time, model, inputs, outputs, meter; the meter plan is cached by the verifier). The
   re-execution rung is not required, so it is not run. Baseline: ``Ed25519PublicKey.verify`` on
   a message as long as the receipt's PAE bytes. Ratio = receipts/s over raw verifications/s,
   goal >= 0.6. Also reported: the signature rung only (steps 1-5).
3. Model digest. Subject: ``load_model(path)`` on a 100.7 MB model (6 x 2048x2048 float32): read,
   parse, walk, SHA-256 of each weight, Merkle root; for external data the walk also reads the
   data file and embeds its bytes in the proto. The file SHA-256 and the runtime bytes (the
   re-serialized model, for external data) are lazy: computed only when asked, not here.
   Baseline: read the file(s) and SHA-256 the bytes. Goal <= 3x, for the model with embedded
   weights and saved with external data.

Method (``bench/harness.py``): warm up, then alternate baseline and subject blocks (order
flipping every round), each block ~``block_seconds`` of back-to-back, individually timed calls;
per round, the ratio of the two blocks' median calls; reported: the median of those ratios and
their interquartile range. Every subject is checked once before it is timed (``bench/cases.py``).
``bench/breakdowns.py`` then times the parts of each subject on their own, to show where the time
goes. Nothing is hard-coded: every figure printed is measured in this run. Output: a table on
stdout and ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import breakdowns, cases, report
from bench.breakdowns import Breakdown
from bench.harness import Case, Plan, Result, compare

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "results.json"

# "breakdown" blocks = rounds of the digest breakdown; issuance and verification take 3x as many.
PLANS = {
    "issue": Plan(blocks=60, block_seconds=0.05, warmup_seconds=1.0),
    "verify": Plan(blocks=60, block_seconds=0.04, warmup_seconds=0.5),
    "digest": Plan(blocks=16, block_seconds=0.0, warmup_seconds=0.0),
    "breakdown": Plan(blocks=5, block_seconds=0.0, warmup_seconds=0.0),
}
QUICK = {
    "issue": Plan(blocks=6, block_seconds=0.02, warmup_seconds=0.2),
    "verify": Plan(blocks=6, block_seconds=0.02, warmup_seconds=0.1),
    "digest": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "breakdown": Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0),
}


def run_family(family: list[Case], plan: Plan) -> list[Result]:
    results = []
    for case in family:
        print(f"  {case.name} ...", file=sys.stderr, flush=True)
        results.append(compare(case, plan))
    return results


def run_all(plans: dict[str, Plan], tmp: Path) -> tuple[list[Result], list[Breakdown]]:
    rounds = plans["breakdown"].blocks
    results = run_family(cases.issuance_cases(), plans["issue"])
    results += run_family(cases.verification_cases(), plans["verify"])
    files = cases.write_big_model(tmp)
    results += run_family(cases.digest_cases(files), plans["digest"])
    print("  breakdowns ...", file=sys.stderr, flush=True)
    found = [*breakdowns.issuance_all(rounds * 3), breakdowns.verification(rounds * 3)]
    return results, [*found, breakdowns.digest(files, rounds)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output path")
    args = parser.parse_args(argv)
    plans = QUICK if args.quick else PLANS
    start = time.perf_counter()
    machine = report.machine_facts(ROOT, cases.machine_profile())
    with tempfile.TemporaryDirectory(prefix="receipts-bench-") as tmp:
        results, found = run_all(plans, Path(tmp))
    total = time.perf_counter() - start
    print(report.header(machine), report.table(results), report.LEGEND, sep="\n\n")
    print(report.details(results), report.breakdown_text(found), sep="\n\n", end="\n\n")
    print(f"total runtime {total:.1f} s; JSON: {args.out}")
    report.write_json(
        args.out,
        machine=machine,
        plans=plans,
        results=results,
        breakdowns=found,
        total_seconds=total,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
