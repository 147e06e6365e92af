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
4. Traces, spot checks and disputes (issue 3; ``bench/trace_cases.py``).
   (a) Traced run. Subject: ``ModelSession.run(x, trace=True).to_bytes()`` (every node output
   captured and hashed, Merkle root, receipt, signature); baseline: the same session's untraced
   ``run(x).to_bytes()`` (1a's subject). MLP as 1a, goal <= 1.5x; convnet as 1b, goal <= 1.3x.
   Writing the files (``Issued.write``) is a separate row per model, without a goal.
   (b) Spot check on the onnx package's light_resnet50 (415 nodes). Subject:
   ``SpotChecker.check_nodes`` with k=8 and seed ``str(i)`` on call i (trace index opened once,
   outside timing); baseline: full re-execution, ``OrtRunner.run`` on a runner built for the
   model. Goal <= 0.2x. Also reported: the whole spot-check rung of ``Verifier.check`` with
   ``TraceReader.open`` inside the call.
   (c) Freivalds. Subject: ``freivalds.check_node("MatMul", ...)`` on float32 1024x1024 and the
   product onnxruntime computed; baseline: that product, one MatMul node in onnxruntime (one
   thread, optimization disabled). Goal <= 0.1x.
   (d) Referee. Subject: ``Referee.judge(Evidence.read(path), model)`` on the bundle of a
   dispute over a provider-faulted light_resnet50 receipt, model pre-loaded; baseline: full
   re-execution as in (b). Goal <= 0.1x. Also reported: with ``load_model`` inside the call.

5. Settlement (issue 4; ``bench/settle_run.py``). (a) Throughput: ``Ledger.hold`` +
   ``Ledger.claim(receipt, model=model)`` per request and one ``Ledger.settle`` per block of
   200, WAL with synchronous=FULL on a real file; baseline: the same rows as bare SQLite INSERTs
   with the same commits. Goal: >= 1,000 requests/s (absolute); also reported, without a goal:
   each block grouped into one outer transaction. (b) Proofs in a 1,000,000-entry log (cached in
   ``bench/out``): ``Log.inclusion_path``, ``Log.prove``, ``verify_inclusion_proof``,
   ``Log.prove_consistency``, ``verify_consistency_proof``; baselines: ``MerkleTree`` in memory
   and ``receipts.merkle.verify_*`` on the same paths. Goal: each under 1 ms (absolute).
   (c) ``verify_batch`` and ``verify_cosigned`` for 16 co-signers, threshold 11 (arkworks; the
   py_ecc reference timed twice); baseline: 16 Ed25519 verifications of the batch digest.
6. Nitro attestation (issue 5; ``bench/nitro_run.py``, alone: ``bench/nitro_run.py [--quick]``).
   Subject: ``verify_document`` (N1-N5) of the real AWS document at its own time, and of a
   simulated one, with no certificate link remembered; baseline: one ECDSA P-384 verification
   (cryptography) over as many bytes as the real document's Sig_structure. Goal <= 10x. Also
   reported, without a goal: N1+N2 parse, N3 chain, N4 signature, and the verification and chain
   with the four links already verified (``receipts.certchain``'s link cache).
7. Zero-knowledge proofs (issue 6; ``bench/zk_run.py``, alone: ``bench/zk_run.py [--quick]``).
   On the 784-56-10 MLP, each step of ours against the same step of EZKL (pinned, in a
   bench-only virtualenv ``bench/out/ezkl-venv`` made on first use; given the float model of the
   same architecture): compile, witness, Groth16 setup (snarkjs, a 2^14 powers of tau made once
   and cached in ``bench/out``), prove (snarkjs; goal ours/EZKL <= 1.0), verify (pure Python;
   goal <= 1 s). Sizes beside EZKL's: proof (goal <= 1 KB), proving key, constraints. One-off
   costs (powers of tau, EZKL install and SRS) are reported apart. If EZKL cannot be installed,
   the rows say "EZKL: not measured (reason)" and our side is still timed.
8. Audits at scale (issue 7; ``bench/audit_run.py``, alone: ``bench/audit_run.py [--quick]``; run
   in a process of its own, so the audit's pool workers do not import this script's families).
   Populations from ``fixtures.population`` (4 providers, one cheating, one object corrupted),
   generated once and cached in ``bench/out``. (a) Throughput: one ``run_audit`` of 4,000
   receipts held in memory (signature and digests on all, re-execution on a seeded 10% sample,
   at least 5 per provider), a new pool per audit: ``LocalExecutor(2)`` vs ``LocalExecutor(1)``,
   goal >= 1.7x receipts/s; also vs ``InlineExecutor``. (b) Harness overhead: ``run_audit`` with
   ``InlineExecutor`` vs a loop reading each receipt's inputs and outputs from the store by
   digest and calling ``Verifier.check`` (model loaded once, same sample), goal <= 1.1x; also vs
   the loop on tensors already in memory. (c) Signature+digest audit (sample 0, minimum 0) of
   100,000 receipt files on the fastest executor of (a): receipts/s, no baseline. Then the parts
   of (a) timed alone, and the speed-up they allow two workers.

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
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

# One thread per side: onnxruntime runs on one intra-op thread (the runtime profile), and numpy's
# BLAS, which does Freivalds' products, would otherwise use every core. Set before numpy loads;
# an explicit OPENBLAS_NUM_THREADS in the environment wins (and is printed in the header).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    audit_run,
    breakdowns,
    cases,
    nitro_run,
    report,
    settle_run,
    trace_breakdowns,
    trace_cases,
    zk_run,
)
from bench.breakdowns import Breakdown
from bench.harness import Case, Plan, Result, compare

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "results.json"

# "breakdown" blocks = rounds of the digest breakdown; issuance and verification take 3x as many.
PLANS = {
    "issue": Plan(blocks=60, block_seconds=0.05, warmup_seconds=1.0),
    "verify": Plan(blocks=60, block_seconds=0.04, warmup_seconds=0.5),
    "digest": Plan(blocks=16, block_seconds=0.0, warmup_seconds=0.0),
    "trace": Plan(blocks=40, block_seconds=0.05, warmup_seconds=0.5),
    "spot": Plan(blocks=20, block_seconds=0.4, warmup_seconds=0.5),
    "judge": Plan(blocks=12, block_seconds=0.25, warmup_seconds=0.3),
    "freivalds": Plan(blocks=30, block_seconds=0.1, warmup_seconds=0.3),
    "breakdown": Plan(blocks=5, block_seconds=0.0, warmup_seconds=0.0),
    **settle_run.PLANS,  # family 5: settle, tlog, cosign, pyecc
    **nitro_run.PLANS,  # family 6: nitro
    **zk_run.PLANS,  # family 7: zk_prove, zk_setup, zk_step
    **audit_run.PLANS,  # family 8: audit, audit_overhead, audit_large
}
QUICK = {
    "issue": Plan(blocks=6, block_seconds=0.02, warmup_seconds=0.2),
    "verify": Plan(blocks=6, block_seconds=0.02, warmup_seconds=0.1),
    "digest": Plan(blocks=2, block_seconds=0.0, warmup_seconds=0.0),
    "trace": Plan(blocks=4, block_seconds=0.02, warmup_seconds=0.1),
    "spot": Plan(blocks=3, block_seconds=0.0, warmup_seconds=0.0),
    "judge": Plan(blocks=3, block_seconds=0.0, warmup_seconds=0.0),
    "freivalds": Plan(blocks=4, block_seconds=0.02, warmup_seconds=0.1),
    "breakdown": Plan(blocks=1, block_seconds=0.0, warmup_seconds=0.0),
    **settle_run.QUICK,
    **nitro_run.QUICK,
    **zk_run.QUICK,
    **audit_run.QUICK,
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


def run_traces(plans: dict[str, Plan], tmp: Path) -> tuple[list[Result], list[Breakdown]]:
    """Family 4; the light_resnet50 receipts, traces and evidence are prepared once."""
    rounds = plans["breakdown"].blocks
    results = run_family(trace_cases.traced_cases(tmp / "traced"), plans["trace"])
    print("  preparing light_resnet50 traces and evidence ...", file=sys.stderr, flush=True)
    resnet = trace_cases.write_resnet_traces(tmp)
    with contextlib.ExitStack() as stack:
        results += run_family(trace_cases.spot_cases(resnet, stack), plans["spot"])
    results += run_family(trace_cases.freivalds_cases(), plans["freivalds"])
    results += run_family(trace_cases.judge_cases(resnet), plans["judge"])
    print("  trace breakdowns ...", file=sys.stderr, flush=True)
    found = trace_breakdowns.traced_all(rounds * 3, tmp / "traced")
    found += [trace_breakdowns.spot(resnet, rounds), trace_breakdowns.judge(resnet, rounds)]
    return results, [*found, trace_breakdowns.freivalds(rounds * 3)]


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
        more, found_more = run_traces(plans, Path(tmp))
        settled, found_settled = settle_run.run_settlement(plans, Path(tmp), OUT.parent)
        proven = zk_run.run_zk(plans, Path(tmp), OUT.parent)
    attested = nitro_run.run_nitro(plans)
    audited = audit_run.run_apart(quick=args.quick)
    results = [*results, *more, *settled, *attested, *proven.results, *audited.results]
    found = [*found, *found_more, *found_settled, *audited.breakdowns]
    total = time.perf_counter() - start
    legends = (report.LEGEND, settle_run.LEGEND, nitro_run.LEGEND, zk_run.LEGEND, audit_run.LEGEND)
    print(report.header(machine), report.table(results), *legends, sep="\n\n")
    print(report.details(results), report.breakdown_text(found), sep="\n\n", end="\n\n")
    print(zk_run.text(proven), end="\n\n")
    print(audit_run.text(audited), end="\n\n")
    print(f"total runtime {total:.1f} s; JSON: {args.out}")
    report.write_json(
        args.out,
        machine=machine,
        plans=plans,
        results=results,
        breakdowns=found,
        total_seconds=total,
        extra={**zk_run.json_section(proven), **audit_run.json_section(audited)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
