"""Fault drills, bisection disputes, evidence bundles and the referee's rulings."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from fixtures.generate import CLOCK_MS
from fixtures.models import BUILDERS, sample_inputs
from receipts import (
    DigestMismatchError,
    LoadedModel,
    MalformedError,
    ModelError,
    ReceiptsError,
    RuntimeSettings,
    codec,
    load_model,
    load_model_bytes,
)
from receipts.digests import TensorMapDigest, value_entry
from receipts.dispute import (
    Challenger,
    LocalDispute,
    Responder,
    dispute_locally,
    read_message,
    run_local,
    sign_message,
)
from receipts.envelope import Envelope
from receipts.errors import DisputeError, EvidenceError, NothingToDispute, OpeningError, TraceError
from receipts.evidence import EVIDENCE_MAGIC, Evidence
from receipts.frames import FRAME
from receipts.graph import GraphView
from receipts.opening import LeafProof, check_opening, opening_digest
from receipts.receipt import Receipt
from receipts.referee import (
    CHALLENGE_REJECTED,
    PROVIDER_FAULT,
    Referee,
    SignedRuling,
    read_ruling,
)
from receipts.runtime import OrtRunner, RuntimeProfile
from receipts.trace import TraceLeaf
from tests.conftest import fixture_key
from tests.tracekit import (
    CLOCK,
    LIGHT_MODELS,
    Traced,
    ancestors,
    branch_node,
    challenger_key,
    fixture_loaded,
    float_nodes,
    frames,
    issue,
    light_inputs,
    light_path,
    messages,
    provider,
    referee_key,
    resign,
    rounds_bound,
    stranger_key,
    with_body,
)

REFUSED_DRILLS = {("constants", 3)}  # a corrupted Shape output breaks a later Add (test_trace)
NODE_COUNTS = {name: len(GraphView(fixture_loaded(name))) for name in BUILDERS}
DRILLS = [
    (name, index)
    for name, count in NODE_COUNTS.items()
    for index in range(count)
    if (name, index) not in REFUSED_DRILLS
]


def referee(**kwargs: Any) -> Referee:
    return Referee(referee_key(), clock=CLOCK, **kwargs)


def dispute(traced: Traced, model: LoadedModel, inputs: Any, **kwargs: Any) -> LocalDispute:
    with traced.reader() as reader:
        return dispute_locally(traced.data, model, inputs, reader, challenger_key(), **kwargs)


def judge_file(evidence: Evidence, model: LoadedModel, path: Path) -> SignedRuling:
    """Judge the bundle as a referee gets it: written to a file and read back."""
    evidence.write(path)
    read = Evidence.read(path)
    assert read.digest == evidence.digest
    return referee().judge(read, model)


def _by_name(entries: Any) -> dict[str, Any]:
    return {e.name: e for e in entries}


# -- drills on every node of every fixture model ---------------------------------------------------


@pytest.mark.parametrize(("name", "index"), DRILLS, ids=[f"{n}#{i}" for n, i in DRILLS])
def test_dispute_finds_the_faulted_node_and_the_referee_rules_provider_fault(
    name: str, index: int, tmp_path: Path
) -> None:
    model, inputs = fixture_loaded(name), sample_inputs(name)
    drill = issue(model, inputs, tmp_path, fault=f"#{index}")
    local = dispute(drill, model, inputs)
    assert local.result.index == local.node.index == local.evidence.index == index
    assert 1 <= local.result.rounds <= rounds_bound(NODE_COUNTS[name])
    assert len(local.result.transcript) == 2 * local.result.rounds + 1
    signed = judge_file(local.evidence, model, tmp_path / "evidence.revd")
    ruling = signed.ruling
    assert ruling.verdict == PROVIDER_FAULT, ruling.reason
    node = GraphView(model).nodes[index]
    assert (ruling.node, ruling.op, ruling.node_name) == (index, node.op_type, node.name)
    assert ruling.receipt == drill.rid
    assert ruling.evidence == local.evidence.digest
    assert ruling.comparison == "bit-exact"
    assert ruling.issued_at == CLOCK_MS
    # The referee's one-operator re-run is bit for bit the challenger's whole-graph value.
    assert _by_name(ruling.recomputed_outputs) == _by_name(ruling.challenger_outputs)
    assert _by_name(ruling.provider_outputs) != _by_name(ruling.recomputed_outputs)
    again = read_ruling(signed.to_bytes(), trusted=(referee_key().public_key,))
    assert again.ruling == ruling


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Traced]:
    out = tmp_path_factory.mktemp("honest")
    return {name: issue(fixture_loaded(name), sample_inputs(name), out / name) for name in BUILDERS}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_honest_trace_leaves_nothing_to_dispute(honest: dict[str, Traced], name: str) -> None:
    with pytest.raises(NothingToDispute, match="the recomputed trace has the receipt's root"):
        dispute(honest[name], fixture_loaded(name), sample_inputs(name))


@pytest.mark.parametrize(("name", "index"), DRILLS, ids=[f"{n}#{i}" for n, i in DRILLS])
def test_challenger_with_a_corrupted_recomputation_is_rejected(
    honest: dict[str, Traced], name: str, index: int, tmp_path: Path
) -> None:
    model, inputs = fixture_loaded(name), sample_inputs(name)
    local = dispute(honest[name], model, inputs, inject_fault=f"#{index}")
    assert local.result.index == index
    ruling = judge_file(local.evidence, model, tmp_path / "evidence.revd").ruling
    assert ruling.verdict == CHALLENGE_REJECTED, ruling.reason
    assert _by_name(ruling.recomputed_outputs) == _by_name(ruling.provider_outputs)
    assert "are what the operator computes" in ruling.reason


def _one_node_model() -> LoadedModel:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="only")],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return load_model_bytes(model.SerializeToString())


def test_dispute_over_a_one_node_trace_takes_one_round(tmp_path: Path) -> None:
    """N = 1: no prefix to ask about; the challenger requests node #0 at once. (Driven with a
    challenger whose leaf differs, since a drill on a one-node model fails: see below.)"""
    model = _one_node_model()
    inputs = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    traced = issue(model, inputs, tmp_path)
    with traced.reader() as reader:
        leaf = reader.leaves[0]
        wrong = value_entry("y", np.zeros((2, 3), np.float32))
        mine = [replace(leaf, outputs=(wrong,))]
        challenger = Challenger(traced.receipt, traced.rid, mine, challenger_key())
        responder = Responder(
            traced.receipt,
            traced.rid,
            reader,
            challenger_key(),
            view=GraphView(model),
            inputs=model.check_inputs(inputs),
        )
        result = run_local(challenger, responder.answer)
    assert (result.index, result.rounds) == (0, 1)
    assert [m.kind for m in messages(result.transcript)] == ["open", "request", "opening"]
    evidence = Evidence(
        receipt=traced.data,
        challenger=challenger_key().public_key,
        index=0,
        claim=result.claim,
        opening=result.opening,
        transcript=result.transcript,
    )
    ruling = judge_file(evidence, model, tmp_path / "e.revd").ruling
    assert ruling.verdict == CHALLENGE_REJECTED


def test_drill_on_a_one_node_model_is_disputed_in_one_round(tmp_path: Path) -> None:
    model = _one_node_model()
    inputs = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    local = dispute(issue(model, inputs, tmp_path, fault="only"), model, inputs)
    assert (local.result.index, local.result.rounds) == (0, 1)
    assert judge_file(local.evidence, model, tmp_path / "e.revd").ruling.verdict == PROVIDER_FAULT


def test_provider_may_sign_its_own_messages(tmp_path: Path) -> None:
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    drill = issue(model, inputs, tmp_path, fault="#5")
    local = dispute(drill, model, inputs, provider_signer=fixture_key())
    roles = {read_message(m).envelope.signature.public_key for m in local.result.transcript}
    assert roles == {challenger_key().public_key, fixture_key().public_key}
    assert judge_file(local.evidence, model, tmp_path / "e.revd").ruling.verdict == PROVIDER_FAULT


def test_provider_messages_signed_by_a_third_key_are_refused(tmp_path: Path) -> None:
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    drill = issue(model, inputs, tmp_path, fault="#5")
    local = dispute(drill, model, inputs, provider_signer=stranger_key())
    with pytest.raises(DisputeError, match="message 2 is signed by a key outside the dispute"):
        referee().judge(local.evidence, model)


class OtherMachineRunner:
    """The real onnxruntime runner, reporting another CPU class: forces the tolerance path."""

    def __init__(self, model: LoadedModel | bytes, settings: RuntimeSettings) -> None:
        self._inner = OrtRunner(model, settings)
        real = self._inner.profile
        self._profile = RuntimeProfile(
            settings=real.settings,
            engine_version=real.engine_version,
            cpu=replace(real.cpu, isa="avx" if real.cpu.isa != "avx" else "sse"),
        )

    @property
    def profile(self) -> RuntimeProfile:
        return self._profile

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self._inner.run(inputs)


@pytest.mark.parametrize(
    ("who_lies", "verdict"), [("provider", PROVIDER_FAULT), ("challenger", CHALLENGE_REJECTED)]
)
def test_referee_on_another_runtime_identity_compares_within_tolerance(
    honest: dict[str, Traced], tmp_path: Path, who_lies: str, verdict: str
) -> None:
    model, inputs = fixture_loaded("convnet"), sample_inputs("convnet")
    if who_lies == "provider":
        local = dispute(issue(model, inputs, tmp_path, fault="conv2"), model, inputs)
    else:
        local = dispute(honest["convnet"], model, inputs, inject_fault="conv2")
    ruling = referee(runner_factory=OtherMachineRunner).judge(local.evidence, model).ruling
    assert ruling.verdict == verdict
    assert ruling.comparison == "tolerance"
    assert ruling.referee_runtime != ruling.receipt_runtime
    assert "runtime identities differ" in ruling.reason


# -- light models: real DAGs with hundreds of nodes ----------------------------------------------

MERGES = frozenset({"Sum", "Add", "Concat"})
POSITIONS = ("first", "middle", "last", "branch")


@dataclass(frozen=True, slots=True, kw_only=True)
class Light:
    name: str
    model: LoadedModel
    inputs: dict[str, Any]
    honest: Traced
    positions: dict[str, int]
    merge: int  # the merge node the "branch" position's branch feeds


@pytest.fixture(scope="module", params=LIGHT_MODELS)
def light(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Light]:
    """One honest traced run of a light model, on disk for the module (a resnet50 trace is
    ~250 MB: it is deleted when the module is done with the model)."""
    name = request.param
    model = load_model(light_path(name))
    inputs = light_inputs(model)
    honest = issue(model, inputs, tmp_path_factory.mktemp(name), warm=True)  # pipelined run
    view = GraphView(model)
    with honest.reader() as reader:
        floats = float_nodes(reader)
    branch, merge = branch_node(view, MERGES)
    positions = {
        "first": floats[0],
        "middle": next(i for i in floats if i >= len(view) // 2),
        "last": floats[-1],
        "branch": branch,
    }
    yield Light(
        name=name, model=model, inputs=inputs, honest=honest, positions=positions, merge=merge
    )
    honest.path.unlink()


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for big in tmp_path.glob("*/*.rtrc"):
        big.unlink()


@pytest.mark.slow
@pytest.mark.xdist_group("light")
@pytest.mark.parametrize("position", POSITIONS)
def test_light_model_drill_is_found_and_ruled(light: Light, position: str, scratch: Path) -> None:
    index = light.positions[position]
    drill = issue(light.model, light.inputs, scratch / "drill", fault=f"#{index}")
    local = dispute(drill, light.model, light.inputs)
    assert local.result.index == index
    assert local.result.rounds <= rounds_bound(len(GraphView(light.model)))
    ruling = referee().judge(local.evidence, light.model).ruling
    assert (ruling.verdict, ruling.node) == (PROVIDER_FAULT, index), ruling.reason


@pytest.mark.slow
@pytest.mark.xdist_group("light")
def test_light_model_branch_node_sits_beside_another_branch(light: Light) -> None:
    """The "branch" drill is inside a branch: the merge it feeds also reads a value that does
    not come through it; in resnet50 (a residual shortcut) and inception_v1 (a tower) that other
    branch holds nodes that are neither its ancestors nor its descendants."""
    view = GraphView(light.model)
    index = light.positions["branch"]
    downstream = {j for j in range(index + 1, light.merge + 1) if index in ancestors(view, j)}
    assert light.merge in downstream
    operands = {view.producers.get(n) for n in view.nodes[light.merge].inputs}
    assert any(p is not None and p != index and p not in downstream for p in operands)
    if light.name != "densenet121":  # DenseNet's other branch is an identity skip
        parallel = ancestors(view, light.merge) - ancestors(view, index) - downstream - {index}
        assert any(view.nodes[p].op_type == "Conv" for p in parallel)


@pytest.mark.slow
@pytest.mark.xdist_group("light")
def test_light_model_honest_trace_leaves_nothing_to_dispute(light: Light) -> None:
    with pytest.raises(NothingToDispute):
        dispute(light.honest, light.model, light.inputs)


@pytest.mark.slow
@pytest.mark.xdist_group("light")
def test_light_model_lying_challenger_is_rejected(light: Light) -> None:
    index = light.positions["middle"]
    local = dispute(light.honest, light.model, light.inputs, inject_fault=f"#{index}")
    assert local.result.index == index
    ruling = referee().judge(local.evidence, light.model).ruling
    assert ruling.verdict == CHALLENGE_REJECTED, ruling.reason


# -- hostile evidence bundles ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Material:
    model: LoadedModel
    evidence: Evidence  # a provider-fault dispute over mlp node #3 (MatMul reading node #2)
    at_input: Evidence  # a provider-fault dispute over mlp node #0 (reads the model input)
    other: Traced  # a traced receipt of the same model on another input
    untraced: bytes  # a signed receipt without a trace commitment


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    out = tmp_path_factory.mktemp("evidence")
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    at_node = dispute(issue(model, inputs, out / "n3", fault="#3"), model, inputs)
    at_input = dispute(issue(model, inputs, out / "n0", fault="#0"), model, inputs)
    other_inputs = sample_inputs("mlp", seed=3)
    other = issue(model, other_inputs, out / "other", fault="#3")
    untraced = provider().session(model).run(inputs).to_bytes()
    return Material(
        model=model,
        evidence=at_node.evidence,
        at_input=at_input.evidence,
        other=other,
        untraced=untraced,
    )


def forged(
    ev: Evidence,
    *,
    index: int | None = None,
    claim: TraceLeaf | None = None,
    opening: Any = None,
) -> Evidence:
    """What a challenger relaying the provider's messages can build: any request and opening
    message it likes, the whole transcript signed anew with its own key."""
    index = ev.index if index is None else index
    claim = claim or ev.claim
    opening = opening or ev.opening
    items = messages(ev.transcript)
    items[-2] = with_body(items[-2], index=index, claim=claim.data)
    items[-1] = with_body(items[-1], index=index, opening=opening_digest(opening))
    transcript = resign(items, challenger_key())
    return replace(ev, index=index, claim=claim, opening=opening, transcript=transcript)


def _tampered(array: Any) -> Any:
    out = np.array(array, copy=True)
    out.reshape(-1)[0] += 1
    return out


def _with_read(ev: Evidence, name: str) -> Any:
    return replace(ev.opening, reads={**ev.opening.reads, name: _tampered(ev.opening.reads[name])})


def _with_weight_read(ev: Evidence, name: str) -> Any:
    weight = next(w for w in ev.opening.weights if w.path == "graph/initializer/2")
    assert name == "w1"  # graph/initializer/2 holds w1 in the fixture MLP
    return replace(ev.opening, reads={**ev.opening.reads, name: _tampered(weight.value)})


def _weights_resized(ev: Evidence, more: int) -> Any:
    weights = tuple(replace(w, size=w.size + more) for w in ev.opening.weights)
    return replace(ev.opening, weights=weights)


def _forged_producer(ev: Evidence) -> Evidence:
    """The read changed and the producer's leaf rebuilt to match it: a leaf the trace lacks."""
    opening = _with_read(ev, "h0")
    producer = opening.producers[0]
    leaf = replace(producer.leaf, outputs=(value_entry("h0", opening.reads["h0"]),))
    producers = (LeafProof(leaf=leaf, proof=producer.proof),)
    return forged(ev, opening=replace(opening, producers=producers))


def _resigned_receipt_flip(ev: Evidence) -> Evidence:
    env = Envelope.from_bytes(ev.receipt)
    sig = bytearray(env.signature.sig)
    sig[5] ^= 1
    broken = replace(env, signature=replace(env.signature, sig=bytes(sig)))
    return replace(ev, receipt=broken.to_bytes())


def _flip_message_signature(ev: Evidence, i: int) -> Evidence:
    env = read_message(ev.transcript[i]).envelope
    sig = bytearray(env.signature.sig)
    sig[0] ^= 1
    broken = replace(env, signature=replace(env.signature, sig=bytes(sig))).to_bytes()
    return replace(ev, transcript=(*ev.transcript[:i], broken, *ev.transcript[i + 1 :]))


def _resign_one(ev: Evidence, i: int, signer: Any) -> Evidence:
    data = sign_message(read_message(ev.transcript[i]).message, signer).data
    return replace(ev, transcript=(*ev.transcript[:i], data, *ev.transcript[i + 1 :]))


def _swap(items: tuple[bytes, ...], i: int, j: int) -> tuple[bytes, ...]:
    out = list(items)
    out[i], out[j] = out[j], out[i]
    return tuple(out)


Build = Callable[[Material], Evidence]
EVIDENCE_CASES: dict[str, tuple[Build, type[Exception], str]] = {
    "transcript_reordered": (
        lambda m: replace(m.evidence, transcript=_swap(m.evidence.transcript, 1, 2)),
        DisputeError,
        "message 2 does not follow the transcript (order or chain)",
    ),
    "transcript_message_removed": (
        lambda m: replace(
            m.evidence, transcript=m.evidence.transcript[:1] + m.evidence.transcript[2:]
        ),
        DisputeError,
        "message 2 does not follow the transcript (order or chain)",
    ),
    "transcript_message_repeated": (
        lambda m: replace(
            m.evidence, transcript=m.evidence.transcript[:1] * 2 + m.evidence.transcript[1:]
        ),
        DisputeError,
        "message 0 does not follow the transcript (order or chain)",
    ),
    "transcript_opening_removed": (
        lambda m: replace(m.evidence, transcript=m.evidence.transcript[:-1]),
        DisputeError,
        "the transcript does not end with a request and its opening",
    ),
    "transcript_empty": (
        lambda m: replace(m.evidence, transcript=()),
        DisputeError,
        "the transcript does not start with the challenger's open message",
    ),
    "transcript_signature_flipped": (
        lambda m: _flip_message_signature(m.evidence, 1),
        DisputeError,
        "transcript message 1: signature does not verify",
    ),
    "challenger_message_resigned_by_a_stranger": (
        lambda m: _resign_one(m.evidence, 1, stranger_key()),
        DisputeError,
        "transcript message 1 is signed by a key outside the dispute",
    ),
    "challenger_message_signed_by_the_provider": (
        lambda m: _resign_one(m.evidence, 0, fixture_key()),
        DisputeError,
        "transcript message 0 is signed by a key outside the dispute",
    ),
    "provider_message_resigned_by_a_stranger": (
        lambda m: _resign_one(m.evidence, 2, stranger_key()),
        DisputeError,
        "transcript message 2 is signed by a key outside the dispute",
    ),
    "bundle_names_another_challenger": (
        lambda m: replace(m.evidence, challenger=stranger_key().public_key),
        DisputeError,
        "transcript message 0 is signed by a key outside the dispute",
    ),
    "receipt_of_another_input": (
        lambda m: replace(m.evidence, receipt=m.other.data),
        DisputeError,
        "message 0 is about another receipt",
    ),
    "receipt_signature_flipped": (
        lambda m: _resigned_receipt_flip(m.evidence),
        EvidenceError,
        "(j1) the bundle's receipt signature does not verify",
    ),
    "receipt_without_trace": (
        lambda m: replace(m.evidence, receipt=m.untraced),
        EvidenceError,
        "(j1) the receipt carries no trace commitment",
    ),
    "receipt_not_an_envelope": (
        lambda m: replace(m.evidence, receipt=b"\x80"),
        EvidenceError,
        "(j1) the bundle's receipt:",
    ),
    "disputed_node_changed": (
        lambda m: replace(m.evidence, index=4, opening=replace(m.evidence.opening, index=4)),
        EvidenceError,
        "(j3) the transcript disputes another node than the bundle",
    ),
    "claim_not_the_signed_one": (
        lambda m: replace(m.evidence, claim=m.evidence.opening.node.leaf),
        EvidenceError,
        "(j3) the bundle's claim is not the one the challenger signed",
    ),
    "opening_not_the_signed_one": (
        lambda m: replace(m.evidence, opening=_with_read(m.evidence, "h0")),
        EvidenceError,
        "(j3) the bundle's opening is not the one the transcript names",
    ),
    # A challenger relaying the provider's messages signs them itself, so it can name any opening
    # in the transcript: the opening's own proofs must refuse it (j4).
    "opened_read_differs_from_its_producer": (
        lambda m: forged(m.evidence, opening=_with_read(m.evidence, "h0")),
        EvidenceError,
        "(j4) (o3) #3 MatMul 'matmul1': 'h0' is not what node #2 committed to",
    ),
    "opened_read_with_a_forged_producer_leaf": (
        lambda m: _forged_producer(m.evidence),
        EvidenceError,
        "(j4) (o1) #2 Relu 'relu0': leaf not in the receipt's trace",
    ),
    "opened_model_input_differs": (
        lambda m: forged(m.at_input, opening=_with_read(m.at_input, "x")),
        EvidenceError,
        "(j4) (o3) #0 MatMul 'matmul0': input 'x' is not the receipt's",
    ),
    "opened_read_missing": (
        lambda m: forged(m.evidence, opening=replace(m.evidence.opening, reads={})),
        EvidenceError,
        "(j4) (o3) #3 MatMul 'matmul1': the opening lacks the value 'h0'",
    ),
    "opened_read_the_node_does_not_read": (
        lambda m: forged(
            m.evidence,
            opening=replace(
                m.evidence.opening,
                reads={**m.evidence.opening.reads, "x": m.at_input.opening.reads["x"]},
            ),
        ),
        EvidenceError,
        "(j4) (o3) #3 MatMul 'matmul1': the opening holds values the node does not read",
    ),
    "opened_producer_leaf_missing": (
        lambda m: forged(m.evidence, opening=replace(m.evidence.opening, producers=())),
        EvidenceError,
        "(j4) (o3) #3 MatMul 'matmul1': no leaf of node #2, which produced 'h0'",
    ),
    "opened_output_differs_from_the_leaf": (
        lambda m: forged(
            m.evidence,
            opening=replace(
                m.evidence.opening, outputs={"mm1": _tampered(m.evidence.opening.outputs["mm1"])}
            ),
        ),
        EvidenceError,
        "(j4) (o2) #3 MatMul 'matmul1': output 'mm1' does not match its leaf",
    ),
    "opened_weight_differs_from_the_model": (
        lambda m: forged(
            m.evidence,
            opening=replace(
                m.evidence.opening,
                weights=tuple(
                    replace(w, value=_tampered(w.value)) for w in m.evidence.opening.weights
                ),
            ),
        ),
        EvidenceError,
        "(j4) (o4) #3 MatMul 'matmul1': weight graph/initializer/2:",
    ),
    "opened_weight_missing": (
        lambda m: forged(m.evidence, opening=replace(m.evidence.opening, weights=())),
        EvidenceError,
        "(j4) (o4) #3 MatMul 'matmul1': the opening lacks weight graph/initializer/2",
    ),
    "opened_leaf_of_another_node": (
        lambda m: forged(
            m.evidence, opening=replace(m.evidence.opening, node=m.evidence.opening.producers[0])
        ),
        EvidenceError,
        "(j4) (o1) the leaf of #3 MatMul 'matmul1' does not describe that node",
    ),
    "node_index_out_of_range": (
        lambda m: forged(m.evidence, index=8, opening=replace(m.evidence.opening, index=8)),
        DisputeError,
        "the transcript requests node #8 without bisecting down to it",
    ),
    "claim_equals_the_providers_leaf": (
        lambda m: forged(m.evidence, claim=m.evidence.opening.node.leaf),
        EvidenceError,
        "(j5) the challenger's claim equals the provider's: no dispute",
    ),
    "claim_about_another_node": (
        lambda m: forged(m.evidence, claim=m.evidence.opening.producers[0].leaf),
        EvidenceError,
        "(j5) the challenger's claim is about another node",
    ),
    # Found in review: a value given for a weight would have replaced the committed weight in the
    # re-run, letting a challenger win against an honest provider (or a provider that ran other
    # weights escape). Weights come from the model digest only.
    "weight_given_as_a_read": (
        lambda m: forged(m.evidence, opening=_with_weight_read(m.evidence, "w1")),
        EvidenceError,
        "(j4) (o3) #3 MatMul 'matmul1': the opening gives a value for weight 'w1'",
    ),
    "weight_proof_for_another_tree_size": (
        lambda m: forged(m.evidence, opening=_weights_resized(m.evidence, 1)),
        EvidenceError,
        "(j4) (o4) #3 MatMul 'matmul1': weight graph/initializer/2: wrong model tree size",
    ),
}


@pytest.mark.parametrize("case", list(EVIDENCE_CASES))
def test_hostile_evidence_is_refused_without_a_ruling(
    material: Material, tmp_path: Path, case: str
) -> None:
    build, error, message = EVIDENCE_CASES[case]
    path = tmp_path / "hostile.revd"
    build(material).write(path)
    with pytest.raises(error) as raised:
        referee().judge(Evidence.read(path), material.model)
    assert type(raised.value) is error
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_resigning_an_unchanged_transcript_still_gets_a_ruling(material: Material) -> None:
    """The forged cases above fail for what they change, not for being signed anew."""
    ruling = referee().judge(forged(material.evidence), material.model).ruling
    assert ruling.verdict == PROVIDER_FAULT


def test_judging_with_another_model_is_refused(material: Material) -> None:
    with pytest.raises(ModelError, match=re.escape("(j2) the model is not the receipt's")):
        referee().judge(material.evidence, fixture_loaded("convnet"))


def test_opening_of_another_node_than_disputed_is_refused_on_read(
    material: Material, tmp_path: Path
) -> None:
    ev = material.evidence
    replace(ev, opening=replace(ev.opening, index=2)).write(tmp_path / "e.revd")
    with pytest.raises(EvidenceError, match="the opening is of another node than the one"):
        Evidence.read(tmp_path / "e.revd")


def _truncate(where: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    return lambda data: data[: where(data)]


def _tensor_middle(data: bytes) -> int:
    tensor = frames(data)[1]
    return (tensor.body + tensor.end) // 2


EVIDENCE_FILES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda d: b"", "not a valid evidence bundle (bad magic)"),
    "bad_magic": (lambda d: b"\x89REVIDX\n" + d[8:], "not a valid evidence bundle (bad magic)"),
    "trace_magic": (lambda d: b"\x89RTRACE\n" + d[8:], "not a valid evidence bundle (bad magic)"),
    "truncated_after_magic": (
        _truncate(lambda d: len(EVIDENCE_MAGIC)),
        "truncated evidence bundle: manifest is missing",
    ),
    "truncated_in_manifest": (
        _truncate(lambda d: frames(d)[0].end - 1),
        "truncated evidence bundle: manifest ends past the end of the file",
    ),
    "truncated_in_first_tensor": (
        _truncate(_tensor_middle),
        "truncated evidence bundle: tensor 1 ('h0') ends past the end of the file",
    ),
    "truncated_one_byte_short": (
        _truncate(lambda d: len(d) - 1),
        "truncated evidence bundle: tensor 3 ('graph/initializer/2') ends past the end of the file",
    ),
    "truncated_before_last_tensor": (
        _truncate(lambda d: frames(d)[-1].start),
        "truncated evidence bundle: tensor 3 ('graph/initializer/2') is missing",
    ),
    "trailing_byte": (lambda d: d + b"\x00", "1 byte(s) after the end of the evidence bundle"),
    "tensor_frames_swapped": (
        lambda d: (
            d[: frames(d)[1].start]
            + d[frames(d)[2].start : frames(d)[2].end]
            + d[frames(d)[1].start : frames(d)[1].end]
            + d[frames(d)[2].end :]
        ),
        "tensor 'h0' does not match its digest",  # h0 and mm1 are both float32[4, 32]
    ),
}


@pytest.mark.parametrize("case", list(EVIDENCE_FILES))
def test_hostile_evidence_file_is_refused_on_read(
    material: Material, tmp_path: Path, case: str
) -> None:
    edit, message = EVIDENCE_FILES[case]
    path = tmp_path / "e.revd"
    material.evidence.write(path)
    path.write_bytes(edit(path.read_bytes()))
    with pytest.raises(EvidenceError) as raised:
        Evidence.read(path)
    assert message in str(raised.value)


@pytest.fixture(scope="module")
def bundle(material: Material, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    path = tmp_path_factory.mktemp("bundle") / "e.revd"
    material.evidence.write(path)
    return path.read_bytes(), path.with_name("flipped.revd")


@settings(max_examples=200, derandomize=True, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_of_an_evidence_bundle_is_refused(
    material: Material, bundle: tuple[bytes, Path], data: st.DataObject
) -> None:
    raw, scratch_path = bundle
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    flipped = bytearray(raw)
    flipped[position] ^= mask
    scratch_path.write_bytes(bytes(flipped))
    with pytest.raises(ReceiptsError):
        referee().judge(Evidence.read(scratch_path), material.model)


def test_untouched_bundle_gets_a_ruling(material: Material, bundle: tuple[bytes, Path]) -> None:
    raw, scratch_path = bundle
    scratch_path.write_bytes(raw)
    assert referee().judge(Evidence.read(scratch_path), material.model).ruling.verdict == (
        PROVIDER_FAULT
    )


# -- a lying challenger cannot win against an honest provider -------------------------------------


def test_challenger_lying_about_the_disputed_nodes_inputs_cannot_win(
    honest: dict[str, Traced],
) -> None:
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    local = dispute(honest["mlp"], model, inputs, inject_fault="#3")
    honest_ruling = referee().judge(local.evidence, model).ruling
    assert honest_ruling.verdict == CHALLENGE_REJECTED
    ev = local.evidence
    # Inputs that make MatMul give other outputs than the provider's: refused, never judged.
    lies = {
        "other_operand": forged(ev, opening=_with_read(ev, "h0")),
        "other_operand_and_leaf": _forged_producer(ev),
        "other_weight": forged(
            ev,
            opening=replace(
                ev.opening, weights=tuple(replace(w, value=-w.value) for w in ev.opening.weights)
            ),
        ),
    }
    for lie in lies.values():
        with pytest.raises(EvidenceError, match=r"^\(j4\) "):
            referee().judge(lie, model)


def test_unknown_dispute_model_inputs_and_receipts_are_refused(
    honest: dict[str, Traced], material: Material
) -> None:
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    with pytest.raises(DigestMismatchError, match="the inputs are not the receipt's inputs"):
        dispute(honest["mlp"], model, sample_inputs("mlp", seed=9))
    with pytest.raises(ModelError, match="the model is not the receipt's"):
        dispute(honest["mlp"], fixture_loaded("convnet"), inputs)
    untraced = replace(honest["mlp"], data=material.untraced)
    with pytest.raises(DisputeError, match="the receipt carries no trace commitment"):
        dispute(untraced, model, inputs)


def test_drill_with_a_trace_of_another_receipt_is_refused(
    honest: dict[str, Traced], tmp_path: Path
) -> None:
    model, inputs = fixture_loaded("mlp"), sample_inputs("mlp")
    drill = issue(model, inputs, tmp_path, fault="#3")
    wrong = replace(drill, path=honest["mlp"].path)
    with pytest.raises(TraceError, match="the trace is not the receipt's"):
        dispute(wrong, model, inputs)


def _edit_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    head = frames(data)[0]
    manifest = codec.decode(data[head.body : head.end])
    edit(manifest)
    body = codec.encode(manifest)
    return data[: head.start] + FRAME.pack(head.kind, len(body)) + body + data[head.end :]


def _unknown_scheme(manifest: dict[str, Any]) -> None:
    manifest["challenger"]["scheme"] = "ed448"


def _no_type(manifest: dict[str, Any]) -> None:
    del manifest["type"]


@pytest.mark.parametrize("edit", [_unknown_scheme, _no_type], ids=["unknown_scheme", "no_type"])
def test_malformed_manifest_raises_evidence_error(
    material: Material, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    path = tmp_path / "e.revd"
    material.evidence.write(path)
    path.write_bytes(_edit_manifest(path.read_bytes(), edit))
    with pytest.raises(EvidenceError):
        Evidence.read(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(_unknown_scheme, "unknown signature scheme 'ed448'"), (_no_type, "missing field 'type'")],
    ids=["unknown_scheme", "no_type"],
)
def test_malformed_manifest_is_refused_with_a_typed_error(
    material: Material, tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    """Bad manifest fields are refused as evidence errors, with the field named."""
    path = tmp_path / "e.revd"
    material.evidence.write(path)
    path.write_bytes(_edit_manifest(path.read_bytes(), edit))
    with pytest.raises(MalformedError, match=re.escape(message)):
        Evidence.read(path)


def test_receipt_inputs_cannot_stand_in_for_weights(material: Material) -> None:
    """A receipt naming an initializer among its inputs does not replace the committed weight:
    openings refuse receipts whose inputs are not the model's graph inputs (found in review)."""
    ev = material.evidence
    receipt = Receipt.decode(Envelope.from_bytes(ev.receipt).payload)
    extra = value_entry("w1", np.zeros((32, 32), np.float32))
    inputs = TensorMapDigest.from_entries([*receipt.inputs.entries, extra])
    with pytest.raises(OpeningError, match=re.escape("(o1) the receipt's input 'w1' is not an")):
        check_opening(ev.opening, replace(receipt, inputs=inputs), GraphView(material.model))
