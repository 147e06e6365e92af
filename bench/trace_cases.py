"""The trace family (issue 3): traced runs, spot checks, Freivalds and the referee, each against a
baseline timed in the same run.

* traced run: ``ModelSession.run(x, trace=True).to_bytes()`` against the same session's untraced
  ``run(x).to_bytes()`` (the issuance subject), for the issuance family's MLP and convnet; writing
  the files (``Issued.write``) is a row of its own, without a goal;
* spot check: ``SpotChecker.check_nodes`` with k=8 on a traced receipt of the onnx package's
  light_resnet50 (415 nodes), and the whole spot-check rung of ``Verifier.check`` with the trace
  opened in the call, against full re-execution with an ``OrtRunner`` built for the model;
* Freivalds: ``freivalds.check_node("MatMul", ...)`` on float32 1024x1024 against computing the
  product with a one-node onnxruntime session;
* referee: ``Referee.judge(Evidence.read(path), model)`` on a provider-fault bundle against the
  same full re-execution, with a pre-loaded model and with ``load_model`` inside the call.

``write_resnet_traces`` prepares the light_resnet50 material once, outside timing: an honest
traced receipt and a faulted one (a middle Conv node corrupted by the provider), both trace files,
the dispute over the faulted one and its evidence bundle. Before timing, each case checks once
that its subject does what it claims: traced outputs bit-identical to untraced ones and a trace
file that reads back against the receipt; the spot check passing on the honest trace and failing
on the faulted one when the bad node is drawn; Freivalds accepting the product and rejecting a
wrong one; the referee ruling provider-fault on the corrupted node.

    resnet = write_resnet_traces(tmp)
    cases = [*spot_cases(resnet, stack), *freivalds_cases(), *judge_cases(resnet)]
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.cases import Arrays, arrays, expect, open_session
from bench.harness import Case, Goal
from bench.models import convnet_bytes, float_input, matmul_bytes, mlp_bytes
from bench.trace_levels import LIGHT, light_inputs
from receipts import (
    Digest,
    Issued,
    LoadedModel,
    OrtRunner,
    Policy,
    PrivateKey,
    Provider,
    Receipt,
    RuntimeSettings,
    Verifier,
    load_model,
)
from receipts.dispute import dispute_locally
from receipts.effects import FixedClock, seeded
from receipts.errors import SpotCheckError
from receipts.evidence import Evidence
from receipts.freivalds import check_node
from receipts.graph import GraphView
from receipts.provider import TRACE_FILE
from receipts.referee import PROVIDER_FAULT, Referee
from receipts.spotcheck import SpotChecker, SpotPolicy, check_trace, sample_nodes
from receipts.trace import TraceReader

RESNET = LIGHT / "light_resnet50.onnx"
SPOT_SAMPLES = 8
FREIVALDS_N = 1024
FULL_RUN = "OrtRunner.run, full re-execution"
ISSUED_AT_MS = 1_700_000_000_000  # 2023-11-14: in the past on any machine running this

# -- traced runs ----------------------------------------------------------------------------------

TRACED = (  # model, model bytes, input shape, goal: ratio at most (the issuance family's models)
    ("MLP 8x512x512, batch 32", mlp_bytes, (32, 512), 1.5),
    ("convnet 4 conv stages", convnet_bytes, (8, 3, 32, 32), 1.3),
)


def check_traced(name: str, plain: Issued, traced: Issued, folder: Path) -> int:
    """Traced outputs are the untraced ones bit for bit, only the traced receipt commits to a
    trace, and the written trace file reads back against it; returns the file's size."""
    ours, theirs = arrays(traced.outputs), arrays(plain.outputs)
    for out, got in ours.items():
        if got.dtype != theirs[out].dtype or got.tobytes() != theirs[out].tobytes():
            raise AssertionError(f"{name}: traced output {out!r} differs from the untraced one")
    if plain.receipt.trace is not None or traced.receipt.trace is None:
        raise AssertionError(f"{name}: trace commitment missing or on the untraced receipt")
    traced.write(folder)
    with TraceReader.open(folder / TRACE_FILE) as reader:
        reader.check_commitment(traced.receipt.trace, traced.receipt.model)
        reader.check_all()  # every tensor read back and checked against its leaf
    return (folder / TRACE_FILE).stat().st_size


def traced_pair(
    model: str, model_bytes: bytes, x: np.ndarray[Any, Any], goal: float, folder: Path
) -> list[Case]:
    """The goal row (traced run vs untraced run) and, without a goal, writing the files."""
    name = f"trace: run, {model}"
    session, _ = open_session(model_bytes)
    feeds = {"x": x}
    plain, first = session.run(feeds), session.run(feeds, trace=True)
    traced = session.run(feeds, trace=True)  # from the second run on, possibly in parts
    if traced.receipt.trace != first.receipt.trace:
        raise AssertionError(f"{name}: two traced runs commit to different traces")
    size = check_traced(name, plain, traced, folder)
    assert traced.receipt.trace is not None and traced.trace is not None
    nodes = traced.receipt.trace.nodes
    shape = f"input float32{list(x.shape)}; {nodes} nodes"
    how = (
        "in parts, each part's outputs hashed (and its leaves made) on 2 threads while the "
        "next part runs"
        if traced.trace.run.ready is not None
        else "whole, then every node output hashed on 2 threads"
    )

    def untraced() -> bytes:
        return session.run(feeds).to_bytes()

    return [
        Case(
            name=name,
            baseline_label="ModelSession.run + to_bytes",
            subject_label="ModelSession.run(trace=True) + to_bytes",
            baseline=untraced,
            subject=lambda: session.run(feeds, trace=True).to_bytes(),
            goal=Goal(op="<=", value=goal),
            notes=f"{shape}; subject: traced onnxruntime run (every node output exposed) "
            f"{how}, leaves, Merkle root, receipt, signature; no file written (next row); "
            "checked: outputs bit-identical to the untraced run's, two traced runs commit to "
            "the same root, the trace file reads back against the receipt; "
            f"{session.runner.profile.settings.describe()}",
        ),
        Case(
            name=f"trace: write files, {model} (no goal)",
            baseline_label="ModelSession.run + to_bytes",
            subject_label="Issued.write of a traced receipt",
            baseline=untraced,
            subject=lambda: traced.write(folder),
            goal=None,
            notes=f"{shape}; subject: outputs.npz + trace.rtrc ({size / 1e6:.2f} MB) + "
            "receipt.rcpt, each staged and fsynced, then the folder; the run itself not included "
            "(add the row above for issue + write)",
        ),
    ]


def traced_cases(folder: Path) -> list[Case]:
    found: list[Case] = []
    for i, (model, build, shape, goal) in enumerate(TRACED):
        found += traced_pair(model, build(), float_input(shape), goal, folder / f"traced-{i}")
    return found


# -- light_resnet50: receipts, traces and evidence, prepared once --------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ResnetTraces:
    """light_resnet50 with an honest and a faulted traced receipt, and the faulted one disputed."""

    model: LoadedModel
    inputs: Arrays  # checked by the model
    provider: PrivateKey
    data: bytes  # the honest traced receipt, as signed
    receipt: Receipt
    receipt_id: Digest
    trace: Path
    faulty_receipt: Receipt
    faulty_id: Digest
    faulty_trace: Path
    fault: int  # the node the faulted run corrupted
    evidence: Path
    rounds: int  # dispute rounds (bisection and opening)


def write_resnet_traces(folder: Path) -> ResnetTraces:
    """Fixed keys, clock and nonces: on one machine (one runtime profile) the receipt ids, and
    so the nodes each spot-check seed draws, are the same in every run."""
    model = load_model(RESNET)
    inputs = arrays(model.check_inputs(light_inputs(model.proto)))
    key = PrivateKey.generate(random_bytes=seeded(b"bench provider"))
    provider = Provider(key, clock=FixedClock(ISSUED_AT_MS), random_bytes=seeded(b"bench nonces"))
    session = provider.session(model)
    honest = session.run(inputs, trace=True)
    honest.write(folder / "honest")
    convs = [n.index for n in session.tracer.view.nodes if n.op_type == "Conv"]
    fault = convs[len(convs) // 2]
    faulty = session.run(inputs, trace=True, inject_fault=f"#{fault}")
    faulty.write(folder / "faulty")
    with TraceReader.open(folder / "faulty" / TRACE_FILE) as reader:
        challenger = PrivateKey.generate(random_bytes=seeded(b"bench challenger"))
        dispute = dispute_locally(faulty.to_bytes(), model, inputs, reader, challenger)
    if dispute.result.index != fault:
        raise AssertionError(f"the dispute found node #{dispute.result.index}, not #{fault}")
    dispute.evidence.write(folder / "evidence.revd")
    return ResnetTraces(
        model=model,
        inputs=inputs,
        provider=key,
        data=honest.to_bytes(),
        receipt=honest.receipt,
        receipt_id=honest.receipt_id,
        trace=folder / "honest" / TRACE_FILE,
        faulty_receipt=faulty.receipt,
        faulty_id=faulty.receipt_id,
        faulty_trace=folder / "faulty" / TRACE_FILE,
        fault=fault,
        evidence=folder / "evidence.revd",
        rounds=dispute.result.rounds,
    )


def full_run(r: ResnetTraces) -> tuple[OrtRunner, str]:
    """The baseline: a runner built as the reexec rung builds it (the receipt's settings)."""
    runner = OrtRunner(r.model, r.receipt.runtime.settings)
    (out,) = arrays(runner.run(r.inputs)).values()
    shapes = ", ".join(f"float32{list(a.shape)}" for a in r.inputs.values())
    return runner, f"input {shapes} -> {list(out.shape)}; {runner.profile.settings.describe()}"


def ops_of(view: GraphView, indices: list[int]) -> str:
    counts = Counter(view.nodes[i].op_type for i in indices)
    return ", ".join(f"{n} {op}" for op, n in counts.most_common())


# -- spot check -----------------------------------------------------------------------------------


def _checked(details: dict[str, object], what: str) -> None:
    checks = details.get("checks")
    if not isinstance(checks, list) or len(checks) != SPOT_SAMPLES:
        raise AssertionError(f"{what}: expected {SPOT_SAMPLES} checked nodes, got {checks!r}")


def _check_spot(r: ResnetTraces, view: GraphView, checker: SpotChecker) -> bytes:
    """Passes on the honest trace; fails on the faulted trace for the first seed that draws the
    corrupted node (returned, for the notes)."""
    with TraceReader.open(r.trace) as reader:
        check_trace(r.receipt, view, reader)
        _checked(
            checker.check_nodes(r.receipt, r.receipt_id, view, reader, r.inputs, seed=b"0"),
            "honest",
        )
    nodes = len(view)
    seed = next(
        s
        for s in (f"fault-{i}".encode() for i in itertools.count())
        if r.fault in sample_nodes(nodes, SPOT_SAMPLES, s, r.faulty_id)
    )
    with TraceReader.open(r.faulty_trace) as reader:
        try:
            checker.check_nodes(r.faulty_receipt, r.faulty_id, view, reader, r.inputs, seed=seed)
        except SpotCheckError:
            return seed
    raise AssertionError(f"the spot check missed the corrupted node #{r.fault} it sampled")


def spot_cases(r: ResnetTraces, stack: ExitStack) -> list[Case]:
    view = GraphView(r.model)
    checker = SpotChecker(SpotPolicy(samples=SPOT_SAMPLES))
    caught = _check_spot(r, view, checker)
    reader = stack.enter_context(TraceReader.open(r.trace))
    runner, shapes = full_run(r)
    policy = Policy(
        trusted_keys=(r.provider.public_key,),
        required=("signature", "digests", "spot-check"),
        spot_samples=SPOT_SAMPLES,
    )
    verifier = Verifier(policy)
    passed = ("1-2 decode", "3 signature", "4 payload", "5 time", "6 model", "7 inputs", "9 meter")
    with TraceReader.open(r.trace) as trace:
        report = verifier.check(r.data, model=r.model, inputs=r.inputs, trace=trace, seed=b"0")
    expect(report, (*passed, "12 trace", "13-14 nodes"), "spot-check rung")
    node_seeds, rung_seeds = itertools.count(), itertools.count()

    def spot() -> object:
        seed = str(next(node_seeds)).encode()
        return checker.check_nodes(r.receipt, r.receipt_id, view, reader, r.inputs, seed=seed)

    def rung() -> object:
        with TraceReader.open(r.trace) as trace:
            seed = str(next(rung_seeds)).encode()
            return verifier.check(r.data, model=r.model, inputs=r.inputs, trace=trace, seed=seed)

    size = r.trace.stat().st_size / 1e6
    common = (
        f"light_resnet50, {len(view)} nodes ({ops_of(view, list(range(len(view))))}); "
        f"trace {size:.0f} MB; call i uses seed str(i).encode(), so each call draws other nodes "
        "(the same ones in every run on this machine: fixed key, clock and nonce); "
        f"checked: passes on the honest trace, fails on the faulted one (node #{r.fault} drawn "
        f"by seed {caught.decode()}); baseline: {shapes}"
    )
    return [
        Case(
            name=f"spot: check_nodes k={SPOT_SAMPLES}, light_resnet50",
            baseline_label=FULL_RUN,
            subject_label=f"SpotChecker.check_nodes, k={SPOT_SAMPLES}",
            baseline=lambda: runner.run(r.inputs),
            subject=spot,
            goal=Goal(op="<=", value=0.2),
            notes="steps 13-14: draw k nodes; per node open_node (read its and its producers' "
            "tensors from the trace file, SHA-256 each, leaf and weight inclusion proofs), "
            "check_opening (o1-o4), single-operator model + onnxruntime session + run + "
            "comparison, Freivalds for Conv/Gemm/MatMul; outside timing, once: TraceReader.open "
            "(index, leaves, root), check_trace (step 12), GraphView, model.check_inputs; "
            + common,
        ),
        Case(
            name="spot: whole rung incl. trace open (no goal)",
            baseline_label=FULL_RUN,
            subject_label="TraceReader.open + Verifier.check (1-9, 12-14)",
            baseline=lambda: runner.run(r.inputs),
            subject=rung,
            goal=None,
            notes="the rung as `verify --trace` runs it: signature and digests rungs (pinned key; "
            "model digest given, inputs hashed), the trace file opened and indexed, step 12, "
            f"then k={SPOT_SAMPLES} nodes as above; " + common,
        ),
    ]


# -- Freivalds ------------------------------------------------------------------------------------


def freivalds_cases() -> list[Case]:
    n = FREIVALDS_N
    a, b = float_input((n, n), seed=4), float_input((n, n), seed=5)
    runner = OrtRunner(matmul_bytes(n), RuntimeSettings())
    session, feeds = runner.session, {"a": a, "b": b}
    (c,) = session.run(None, feeds)
    wrong = c.copy()
    wrong[n // 2] = 0  # one row of the product left uncomputed
    check = np.random.default_rng(7)
    honest = check_node("MatMul", [a, b], [c], {}, check)
    if honest is None or not honest.ok:
        raise AssertionError(f"Freivalds rejected onnxruntime's product: {honest}")
    rejected = check_node("MatMul", [a, b], [wrong], {}, check)
    if rejected is None or rejected.ok:
        raise AssertionError("Freivalds accepted a product with a zeroed row")
    rng = np.random.default_rng(6)
    return [
        Case(
            name=f"freivalds: MatMul {n}x{n} float32",
            baseline_label="InferenceSession.run, one MatMul node",
            subject_label="freivalds.check_node (2 rounds)",
            baseline=lambda: session.run(None, feeds),
            subject=lambda: check_node("MatMul", [a, b], [c], {}, rng),
            goal=Goal(op="<=", value=0.1),
            notes=f"c computed once by onnxruntime; subject: in float32, two rounds of r uniform "
            f"in [-1, 1) ({n}), c r vs a (b r), row/column norms of a, b, c for the rounding "
            f"bound (Cauchy-Schwarz; non-finite values show in the norms); "
            f"{honest.macs:,} multiply-adds vs {honest.product_macs:,}; "
            f"checked: accepts c, rejects c with row {n // 2} zeroed; numpy BLAS threads: "
            f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; baseline: "
            f"{runner.profile.settings.describe()}",
        )
    ]


# -- referee --------------------------------------------------------------------------------------


def judge_cases(r: ResnetTraces) -> list[Case]:
    referee = Referee(PrivateKey.generate())
    ruling = referee.judge(Evidence.read(r.evidence), r.model).ruling
    if ruling.verdict != PROVIDER_FAULT or ruling.node != r.fault:
        raise AssertionError(f"the referee ruled {ruling.verdict} on node #{ruling.node}")
    runner, shapes = full_run(r)
    view = GraphView(r.model)
    node = view.nodes[r.fault]
    evidence = r.evidence
    notes = (
        f"bundle of {evidence.stat().st_size / 1e6:.1f} MB read in the call; disputed node "
        f"{node.label} (the provider corrupted it), found in {r.rounds} rounds; subject: j1-j6 "
        "(receipt signature, transcript signatures and consistency proofs, opening o1-o4, "
        "single-operator session + run + bit-exact comparison, signed ruling); "
        f"checked: rules {PROVIDER_FAULT} on that node; baseline: {shapes}"
    )
    return [
        Case(
            name="judge: provider fault, light_resnet50",
            baseline_label=FULL_RUN,
            subject_label="Referee.judge(Evidence.read(path), model)",
            baseline=lambda: runner.run(r.inputs),
            subject=lambda: referee.judge(Evidence.read(evidence), r.model),
            goal=Goal(op="<=", value=0.1),
            notes="model pre-loaded (a LoadedModel passed in); " + notes,
        ),
        Case(
            name="judge: incl. load_model (no goal)",
            baseline_label=FULL_RUN,
            subject_label="Referee.judge(Evidence.read(path), load_model(path))",
            baseline=lambda: runner.run(r.inputs),
            subject=lambda: referee.judge(Evidence.read(evidence), load_model(RESNET)),
            goal=None,
            notes=f"load_model of the {RESNET.stat().st_size / 1e3:.0f} kB model file in the call; "
            + notes,
        ),
    ]
