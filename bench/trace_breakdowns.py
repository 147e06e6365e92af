"""Breakdowns of the trace family: the parts of each subject timed on their own (see
``bench/breakdowns.py`` for the method; rows overlap and need not add up).

    traced(name, model_bytes, x, rounds, folder)   # capture, hashing, root, signing, writing
    spot(resnet, rounds)                            # open, check opening, re-run, Freivalds
    judge(resnet, rounds)                           # read, transcript, opening, re-run
    freivalds(rounds)                               # the numpy work of one check
"""

from __future__ import annotations

import hashlib
import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.breakdowns import FLOOR, Breakdown, breakdown_of
from bench.cases import open_session
from bench.harness import Call
from bench.models import float_input, matmul_bytes
from bench.trace_cases import (
    FREIVALDS_N,
    RESNET,
    SPOT_SAMPLES,
    TRACED,
    ResnetTraces,
    full_run,
    ops_of,
)
from receipts import Envelope, OrtRunner, RuntimeSettings, TensorMapDigest, Tolerance, load_model
from receipts.dispute import check_transcript
from receipts.evidence import Evidence
from receipts.freivalds import check_node
from receipts.graph import NODE, WEIGHT, GraphView
from receipts.opening import check_opening, open_node, opening_digest
from receipts.operator import as_arrays, attributes, operands, rerun
from receipts.referee import Referee
from receipts.spotcheck import SpotChecker, SpotPolicy, check_trace, sample_nodes
from receipts.tolerance import compare_outputs
from receipts.trace import TraceLeaf, TraceReader, trace_root

FREIVALDS_OPS = ("MatMul", "Gemm", "Conv", "MatMulInteger")


def _exact(_name: str) -> Tolerance:
    return Tolerance()


def _fresh(leaves: list[TraceLeaf]) -> list[TraceLeaf]:
    """Copies without the cached encoding and hash, so ``trace_root`` does all its work."""
    return [
        TraceLeaf(index=x.index, op=x.op, domain=x.domain, name=x.name, outputs=x.outputs)
        for x in leaves
    ]


def traced(
    name: str, model_bytes: bytes, x: np.ndarray[Any, Any], rounds: int, folder: Path
) -> Breakdown:
    """The steps of ``ModelSession.run(trace=True)``: capture and hashing (pipelined when the
    tracer split the model into parts), root, signing; then writing, which the goal row does
    not include."""
    session, key = open_session(model_bytes)
    feeds = {"x": x}
    checked = session.model.check_inputs(feeds)
    issued, plain = session.run(feeds, trace=True), session.run(feeds)
    tracer = session.tracer
    whole = tracer.run(checked)  # without a pool: the whole traced model, nothing hashed
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-hash")
    leaves = whole.leaves(pool)
    pipelined = tracer.run(checked, pool=pool).ready is not None
    assert issued.trace is not None
    receipt, envelope, writer = issued.receipt, issued.envelope, issued.trace.writer()
    tensors = [np.ascontiguousarray(v) for v in whole.values.values() if isinstance(v, np.ndarray)]
    megabytes = sum(t.nbytes for t in tensors) / 1e6
    calls: list[tuple[str, Call]] = [
        ("untraced: ModelSession.run + to_bytes (baseline)", lambda: session.run(feeds).to_bytes()),
        (
            "traced: ModelSession.run(trace=True) + to_bytes (subject)",
            lambda: session.run(feeds, trace=True).to_bytes(),
        ),
        (
            "capture + hashing: Tracer.run(pool), 2 threads (as issued)",
            lambda: tracer.run(checked, pool=pool).leaves(pool),
        ),
        ("capture: Tracer.run, whole traced model, no hashing", lambda: tracer.run(checked)),
        (FLOOR + "untraced OrtRunner.run, same settings", lambda: session.runner.run(checked)),
        ("hashing: TracedRun.leaves of a whole run, 2 threads", lambda: whole.leaves(pool)),
        ("hashing: TracedRun.leaves of a whole run, 1 thread", whole.leaves),
        (
            FLOOR + "hashlib.sha256 of every node output, 1 thread",
            lambda: [hashlib.sha256(t.data).digest() for t in tensors],
        ),
        (
            "root: trace_root (leaf encoding, leaf hashes, Merkle)",
            lambda: trace_root(_fresh(leaves)),
        ),
        ("TensorMapDigest.of(outputs)", lambda: TensorMapDigest.of(issued.outputs)),
        (
            "signing: receipt.encode + Envelope.sign",
            lambda: Envelope.sign(envelope.payload_type, receipt.encode(), key),
        ),
        ("not in the goal: write_trace into memory", lambda: writer(io.BytesIO())),
        ("not in the goal: Issued.write, traced (3 files)", lambda: issued.write(folder / "t")),
        ("not in the goal: Issued.write, untraced (2 files)", lambda: plain.write(folder / "u")),
    ]
    how = "pipelined in parts" if pipelined else "whole (the tracer did not split the model)"
    note = (
        f"{len(leaves)} nodes, {megabytes:.2f} MB of node outputs; issued runs {how}; "
        "each step alone"
    )
    try:
        return breakdown_of(name, note, calls, rounds=rounds, block=0.01)
    finally:
        pool.shutdown()


def traced_all(rounds: int, folder: Path) -> list[Breakdown]:
    return [
        traced(f"trace: run, {model}", build(), float_input(shape), rounds, folder / f"bd-{i}")
        for i, (model, build, shape, _) in enumerate(TRACED)
    ]


def _sample_with_conv(view: GraphView, r: ResnetTraces) -> tuple[bytes, list[int]]:
    """The first seed b"0", b"1", ... whose sample holds a node Freivalds applies to."""
    for i in itertools.count():
        seed = str(i).encode()
        sampled = sample_nodes(len(view), SPOT_SAMPLES, seed, r.receipt_id)
        if any(view.nodes[j].op_type in FREIVALDS_OPS for j in sampled):
            return seed, sampled
    raise AssertionError("unreachable")


def spot(r: ResnetTraces, rounds: int) -> Breakdown:
    """The parts of ``SpotChecker.check_nodes`` over one sample, each summed over its nodes."""
    view = GraphView(r.model)
    seed, sampled = _sample_with_conv(view, r)
    checker = SpotChecker(SpotPolicy(samples=SPOT_SAMPLES))
    supplied = frozenset(r.inputs)
    settings = r.receipt.runtime.settings
    runner, _ = full_run(r)
    digest = r.model.model_digest
    weight_paths: list[str] = []
    read_nodes: list[int] = []
    for i in sampled:
        node = view.nodes[i]
        weight_paths += node.weight_paths
        read_nodes.append(i)
        for name in node.inputs:
            source = view.source(name, supplied)
            if source.kind == WEIGHT:
                weight_paths += source.paths
            elif source.kind == NODE:
                read_nodes.append(source.node)
    with TraceReader.open(r.trace) as reader:
        openings = [open_node(reader, view, i, r.inputs) for i in sampled]
        opened = [check_opening(o, r.receipt, view) for o in openings]
        singles = [view.single_node(o.node.index, o.reads) for o in opened]
        runners = [OrtRunner(s.data, settings) for s in singles]
        results = [rerun(o, view, r.receipt, tolerance_for=_exact) for o in opened]
        products = [
            (
                view.nodes[o.node.index].op_type,
                as_arrays(operands(o, view, supplied)),
                [v for v in as_arrays([o.outputs[n] for n in o.node.outputs]) if v is not None],
                attributes(view, o.node.index),
            )
            for o in opened
            if o.node.op_type in FREIVALDS_OPS
        ]
        rng = np.random.default_rng(0)
        n = len(sampled)
        calls: list[tuple[str, Call]] = [
            (
                f"SpotChecker.check_nodes, seed {seed.decode()} (subject)",
                lambda: checker.check_nodes(
                    r.receipt, r.receipt_id, view, reader, r.inputs, seed=seed
                ),
            ),
            (
                f"open_node x{n} (trace reads, leaf and weight proofs)",
                lambda: [open_node(reader, view, i, r.inputs) for i in sampled],
            ),
            (
                f"  of which ModelDigest.inclusion_proof x{len(weight_paths)} (weights)",
                lambda: [digest.inclusion_proof(p) for p in weight_paths],
            ),
            (
                f"  of which TraceReader.values x{len(read_nodes)} (read + SHA-256)",
                lambda: [reader.values(j) for j in read_nodes],
            ),
            (
                f"check_opening x{n} (o1-o4)",
                lambda: [check_opening(o, r.receipt, view) for o in openings],
            ),
            (
                f"rerun x{n} (single-node model, session, run, compare)",
                lambda: [rerun(o, view, r.receipt, tolerance_for=_exact) for o in opened],
            ),
            (
                f"  of which GraphView.single_node x{n}",
                lambda: [view.single_node(o.node.index, o.reads) for o in opened],
            ),
            (
                f"  of which OrtRunner(single node) x{n} (session creation)",
                lambda: [OrtRunner(s.data, settings) for s in singles],
            ),
            (
                f"  of which OrtRunner.run x{n}",
                lambda: [
                    rn.run({name: o.reads[name] for name in s.feeds})
                    for rn, s, o in zip(runners, singles, opened, strict=True)
                ],
            ),
            (
                f"  of which compare_outputs x{n} (bit-exact)",
                lambda: [
                    compare_outputs(res.recomputed, o.outputs, _exact, exact=True)
                    for res, o in zip(results, opened, strict=True)
                ],
            ),
            (
                f"freivalds.check_node x{len(products)} (the applicable nodes)",
                lambda: [check_node(op, ins, outs, at, rng) for op, ins, outs, at in products],
            ),
            (
                "not in the subject: TraceReader.open (index)",
                lambda: TraceReader.open(r.trace).close(),
            ),
            ("not in the subject: check_trace (12)", lambda: check_trace(r.receipt, view, reader)),
            ("not in the subject: GraphView(model)", lambda: GraphView(r.model)),
            ("baseline: OrtRunner.run, full re-execution", lambda: runner.run(r.inputs)),
        ]
        note = f"one sample of {n} nodes: {ops_of(view, sampled)}; each step alone"
        return breakdown_of(
            f"spot: check_nodes k={SPOT_SAMPLES}, light_resnet50",
            note,
            calls,
            rounds=rounds,
            block=0.1,
        )


def judge(r: ResnetTraces, rounds: int) -> Breakdown:
    """The steps of ``Referee.judge`` on the provider-fault bundle."""
    evidence = Evidence.read(r.evidence)
    referee = Referee(r.provider)
    receipt, rid = r.faulty_receipt, r.faulty_id
    view = GraphView(r.model)
    opened = check_opening(evidence.opening, receipt, view)
    runner, _ = full_run(r)
    messages = len(evidence.transcript)
    calls: list[tuple[str, Call]] = [
        (
            "Referee.judge(Evidence.read(path), model) (subject)",
            lambda: referee.judge(Evidence.read(r.evidence), r.model),
        ),
        ("Evidence.read (tensors checked against digests)", lambda: Evidence.read(r.evidence)),
        ("Referee.judge on a read bundle", lambda: referee.judge(evidence, r.model)),
        ("  GraphView(model) (j2)", lambda: GraphView(r.model)),
        (
            f"  check_transcript (j3, {messages} signed messages)",
            lambda: check_transcript(
                evidence.transcript,
                receipt,
                rid,
                challenger=evidence.challenger,
                provider=r.provider.public_key,
            ),
        ),
        ("  opening_digest (j3)", lambda: opening_digest(evidence.opening)),
        ("  check_opening (j4)", lambda: check_opening(evidence.opening, receipt, view)),
        (
            "  rerun (j6: single-node session, run, compare)",
            lambda: rerun(opened, view, receipt, tolerance_for=_exact),
        ),
        ("  Evidence.digest (for the ruling)", lambda: evidence.digest),
        (f"load_model({RESNET.name})", lambda: load_model(RESNET)),
        ("baseline: OrtRunner.run, full re-execution", lambda: runner.run(r.inputs)),
    ]
    note = f"node {view.nodes[r.fault].label}; each step alone"
    return breakdown_of(
        "judge: provider fault, light_resnet50", note, calls, rounds=rounds, block=0.05
    )


def freivalds(rounds: int) -> Breakdown:
    """``check_node`` on MatMul against the numpy work it does, and a float32 floor."""
    n = FREIVALDS_N
    a, b = float_input((n, n), seed=4), float_input((n, n), seed=5)
    session = OrtRunner(matmul_bytes(n), RuntimeSettings()).session
    feeds = {"a": a, "b": b}
    (c,) = session.run(None, feeds)
    wide = [np.asarray(x, dtype=np.float64) for x in (a, b, c)]
    a64, b64, c64 = wide
    absolute = [np.abs(x) for x in wide]
    rng = np.random.default_rng(6)
    r = rng.uniform(-1.0, 1.0, size=(n, 2))
    r_abs, r32 = np.abs(r), r.astype(np.float32)
    calls: list[tuple[str, Call]] = [
        ("freivalds.check_node (subject)", lambda: check_node("MatMul", [a, b], [c], {}, rng)),
        ("InferenceSession.run, one MatMul (baseline)", lambda: session.run(None, feeds)),
        (
            "  numpy: a, b, c to float64",
            lambda: [np.asarray(x, dtype=np.float64) for x in (a, b, c)],
        ),
        ("  numpy: isfinite(...).all() x3, float64", lambda: [np.isfinite(x).all() for x in wide]),
        ("  numpy: abs x3, float64", lambda: [np.abs(x) for x in wide]),
        (
            f"  numpy: 6 products with [{n}, 2], float64",
            lambda: (
                c64 @ r,
                a64 @ (b64 @ r),
                absolute[0] @ (absolute[1] @ r_abs),
                absolute[2] @ r_abs,
            ),
        ),
        (FLOOR + "c r - a (b r) in float32, no bound", lambda: c @ r32 - a @ (b @ r32)),
    ]
    note = f"float32 [{n}, {n}]; rows marked numpy redo the check's steps alone"
    return breakdown_of(
        f"freivalds: MatMul {n}x{n} float32", note, calls, rounds=rounds, block=0.05
    )
