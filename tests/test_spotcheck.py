"""The spot-check rung: the sample, per-node re-runs, Freivalds rows, and what a sample catches."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.generate import CLOCK_MS
from fixtures.models import BUILDERS, sample_inputs
from receipts import (
    DigestMismatchError,
    FixedClock,
    LoadedModel,
    Policy,
    Status,
    Verifier,
    load_model,
)
from receipts.digests import Digest, TensorMapDigest
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.errors import SpotCheckError, TraceError
from receipts.graph import GraphView
from receipts.receipt import receipt_id
from receipts.spotcheck import (
    SpotChecker,
    SpotPolicy,
    check_trace,
    detection_probability,
    sample_nodes,
)
from tests.conftest import fixture_key, fixture_public
from tests.tracekit import (
    LIGHT_MODELS,
    Traced,
    branch_node,
    fixture_loaded,
    issue,
    light_inputs,
    light_path,
)

FREIVALDS_OPS = {"MatMul", "Gemm", "Conv", "MatMulInteger"}
NODE_COUNTS = {name: len(GraphView(fixture_loaded(name))) for name in BUILDERS}
# constants#3 (Shape) cannot be drilled (test_trace); constants#0 is the Constant case below.
SINGLE_FAULTS = [
    (name, index)
    for name, count in NODE_COUNTS.items()
    for index in range(count)
    if (name, index) not in {("constants", 3), ("constants", 0)}
]
RID = Digest(bytes(range(32)))

Issue = Callable[[str, "int | None"], Traced]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Issue:
    """Traced receipts by (model, faulted node or None), issued once per module."""
    out = tmp_path_factory.mktemp("spot")
    cache: dict[tuple[str, int | None], Traced] = {}

    def get(name: str, fault: int | None) -> Traced:
        if (name, fault) not in cache:
            where = out / f"{name}_{fault}"
            drill = None if fault is None else f"#{fault}"
            cache[name, fault] = issue(
                fixture_loaded(name), sample_inputs(name), where, fault=drill
            )
        return cache[name, fault]

    return get


def spot_check(
    model: LoadedModel, inputs: Any, traced: Traced, *, samples: int, seed: bytes = b"seed"
) -> dict[str, Any]:
    with traced.reader() as reader:
        return SpotChecker(SpotPolicy(samples=samples)).check_nodes(
            traced.receipt,
            traced.rid,
            GraphView(model),
            reader,
            model.check_inputs(inputs),
            seed=seed,
        )


# -- the sample --------------------------------------------------------------------------------


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    nodes=st.integers(1, 3000),
    k=st.integers(1, 4000),
    seed=st.binary(max_size=16),
)
def test_sample_is_min_k_n_distinct_sorted_indices(nodes: int, k: int, seed: bytes) -> None:
    sampled = sample_nodes(nodes, k, seed, RID)
    assert len(sampled) == min(k, nodes)
    assert sampled == sorted(set(sampled))
    assert all(0 <= i < nodes for i in sampled)
    assert sampled == sample_nodes(nodes, k, seed, RID)  # a replayable sample


def test_sample_depends_on_the_seed_and_the_receipt() -> None:
    base = sample_nodes(1000, 8, b"seed", RID)
    assert sample_nodes(1000, 8, b"seed2", RID) != base
    assert sample_nodes(1000, 8, b"seed", Digest(bytes(32))) != base


@pytest.mark.parametrize(
    ("nodes", "k", "p"), [(8, 3, 3 / 8), (8, 8, 1.0), (8, 20, 1.0), (1, 1, 1.0)]
)
def test_detection_probability_is_k_over_n(nodes: int, k: int, p: float) -> None:
    assert detection_probability(nodes, k) == p


@pytest.mark.parametrize("k", [1, 3, 8, 50])
def test_report_states_the_detection_probability(traced: Issue, k: int) -> None:
    model = fixture_loaded("mlp")
    details = spot_check(model, sample_inputs("mlp"), traced("mlp", None), samples=k)
    assert details["samples"] == min(k, 8)
    assert details["detection_probability"] == min(k, 8) / 8
    assert details["sampled"] == sample_nodes(8, k, b"seed", traced("mlp", None).rid)


# -- honest traces pass; Freivalds rows where they apply ----------------------------------------


def _dense_product(view: GraphView, index: int) -> bool:
    node = view.nodes[index]
    sparse = {t.values.name for t in view.model.proto.graph.sparse_initializer}
    return node.op_type in FREIVALDS_OPS and not sparse.intersection(node.inputs)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_honest_trace_passes_a_check_of_every_node(traced: Issue, name: str) -> None:
    model = fixture_loaded(name)
    view = GraphView(model)
    details = spot_check(model, sample_inputs(name), traced(name, None), samples=100)
    assert details["sampled"] == list(range(len(view)))
    assert details["detection_probability"] == 1.0
    for row in details["checks"]:
        assert row["ok"], row
        assert row["rerun"] == "bit-exact"
        if _dense_product(view, row["index"]):
            assert isinstance(row["freivalds"], dict), row
            assert row["freivalds"]["ok"]
            assert row["freivalds"]["rounds"] == 2
        else:
            assert row["freivalds"] == "not applicable"


def test_freivalds_rows_cover_matmul_gemm_conv() -> None:
    """The table above is not vacuous: the fixtures hold each product op with dense weights."""
    ops = {
        view.nodes[i].op_type
        for view in (GraphView(fixture_loaded(n)) for n in BUILDERS)
        for i in range(len(view))
        if _dense_product(view, i)
    }
    assert ops == FREIVALDS_OPS


# -- faulted traces fail exactly where the fault is ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "fault"), SINGLE_FAULTS, ids=[f"{n}#{i}" for n, i in SINGLE_FAULTS]
)
def test_checking_every_node_names_exactly_the_faulted_one(
    traced: Issue, name: str, fault: int
) -> None:
    model = fixture_loaded(name)
    view = GraphView(model)
    label = view.nodes[fault].label
    with pytest.raises(SpotCheckError) as raised:
        spot_check(model, sample_inputs(name), traced(name, fault), samples=NODE_COUNTS[name])
    assert str(raised.value).startswith(f"node {label} failed the spot check: re-run differs")
    details = raised.value.details
    assert isinstance(details, dict)
    failed = [row for row in details["checks"] if not row["ok"]]
    assert [row["index"] for row in failed] == [fault]
    assert not failed[0]["rerun_ok"]
    if _dense_product(view, fault):
        assert failed[0]["freivalds"]["ok"] is False
        assert "Freivalds check failed" in failed[0]["reason"]


def _seeds(nodes: int, k: int, rid: Digest, fault: int) -> tuple[list[bytes], list[bytes]]:
    """Two seeds whose sample holds the faulted node and two whose sample does not."""
    hits: list[bytes] = []
    misses: list[bytes] = []
    for i in range(1000):
        seed = f"seed-{i}".encode()
        (hits if fault in sample_nodes(nodes, k, seed, rid) else misses).append(seed)
        if len(hits) >= 2 and len(misses) >= 2:
            return hits[:2], misses[:2]
    raise AssertionError("no such seeds")


@pytest.mark.parametrize(
    ("name", "fault"),
    [("mlp", 0), ("mlp", 4), ("mlp", 7), ("convnet", 0), ("convnet", 8), ("integer", 1)],
)
def test_a_sample_fails_iff_it_holds_the_faulted_node(traced: Issue, name: str, fault: int) -> None:
    model, inputs, drill = fixture_loaded(name), sample_inputs(name), traced(name, fault)
    k = 2
    hits, misses = _seeds(NODE_COUNTS[name], k, drill.rid, fault)
    for seed in hits:
        with pytest.raises(SpotCheckError):
            spot_check(model, inputs, drill, samples=k, seed=seed)
    for seed in misses:
        details = spot_check(model, inputs, drill, samples=k, seed=seed)
        assert fault not in details["sampled"]
        assert details["detection_probability"] == k / NODE_COUNTS[name]


def test_consumer_of_a_faulted_constant_checks_out_on_its_committed_operands(
    traced: Issue,
) -> None:
    model, inputs, drill = (
        fixture_loaded("constants"),
        sample_inputs("constants"),
        traced("constants", 0),
    )
    seed = next(
        s
        for s in (f"seed-{i}".encode() for i in range(1000))
        if sample_nodes(6, 1, s, drill.rid) == [1]
    )
    details = spot_check(model, inputs, drill, samples=1, seed=seed)  # node #1 MatMul only
    assert details["sampled"] == [1]


def test_faulted_constant_is_caught_when_sampled(traced: Issue) -> None:
    model, inputs = fixture_loaded("constants"), sample_inputs("constants")
    with pytest.raises(SpotCheckError, match="node #0 Constant 'const_w' failed"):
        spot_check(model, inputs, traced("constants", 0), samples=6)


# -- through the verifier: steps 12-14 -----------------------------------------------------------


def verifier(samples: int) -> Verifier:
    policy = Policy(
        trusted_keys=(fixture_public(),),
        required=("signature", "digests", "spot-check"),
        spot_samples=samples,
    )
    return Verifier(policy, clock=FixedClock(CLOCK_MS + 1000))


def test_verifier_spot_check_rung_passes_an_honest_trace(traced: Issue) -> None:
    model, inputs, honest = (
        fixture_loaded("convnet"),
        sample_inputs("convnet"),
        traced("convnet", None),
    )
    with honest.reader() as reader:
        report = verifier(4).check(honest.data, model=model, inputs=inputs, trace=reader, seed=b"s")
    assert report, report.first_error()
    rung = report.rung("spot-check")
    assert [s.step for s in rung.steps] == ["12 trace", "13-14 nodes"]
    details = rung.steps[1].details
    assert details["detection_probability"] == 4 / 10
    assert details["sampled"] == sample_nodes(10, 4, b"s", honest.rid)


def test_verifier_spot_check_rung_fails_a_faulted_trace(traced: Issue) -> None:
    model, inputs, drill = fixture_loaded("convnet"), sample_inputs("convnet"), traced("convnet", 4)
    with drill.reader() as reader:
        report = verifier(10).check(drill.data, model=model, inputs=inputs, trace=reader, seed=b"s")
    assert not report
    step = report.rung("spot-check").steps[1]
    assert (step.step, step.status) == ("13-14 nodes", Status.FAILED)
    assert isinstance(step.error, SpotCheckError)
    assert "node #4 Conv 'conv2' failed the spot check" in step.reason
    assert step.details["detection_probability"] == 1.0
    assert report.rung("signature").status is Status.PASSED  # a well-signed, wrong receipt


def test_verifier_refuses_a_trace_of_another_receipt(traced: Issue) -> None:
    model, inputs = fixture_loaded("convnet"), sample_inputs("convnet")
    with traced("convnet", 4).reader() as reader:
        report = verifier(10).check(
            traced("convnet", None).data, model=model, inputs=inputs, trace=reader, seed=b"s"
        )
    step = report.rung("spot-check").steps[0]
    assert (step.step, step.status) == ("12 trace", Status.FAILED)
    assert isinstance(step.error, TraceError)
    assert "the trace is not the receipt's" in step.reason
    assert len(report.rung("spot-check").steps) == 1  # nothing sampled from a foreign trace


def test_verifier_skips_the_spot_check_for_inputs_that_are_not_the_receipts(
    traced: Issue,
) -> None:
    model = fixture_loaded("convnet")
    with traced("convnet", None).reader() as reader:
        report = verifier(10).check(
            traced("convnet", None).data,
            model=model,
            inputs=sample_inputs("convnet", seed=4),
            trace=reader,
        )
    step = report.rung("spot-check").steps[0]
    assert (step.status, step.reason) == (
        Status.NOT_RUN,
        "the supplied model or inputs are not the receipt's",
    )
    assert not report


def test_step_12_binds_the_receipts_outputs_to_the_trace(traced: Issue) -> None:
    """A receipt signed over an honest trace root but another output is refused at (12)."""
    honest, drill = traced("mlp", None), traced("mlp", 7)
    forged = replace(honest.receipt, outputs=TensorMapDigest.of(drill.outputs))
    data = Envelope.sign(RECEIPT_PAYLOAD_TYPE, forged.encode(), fixture_key()).to_bytes()
    model = fixture_loaded("mlp")
    with honest.reader() as reader:
        with pytest.raises(DigestMismatchError, match="output 'y' in the receipt is not what"):
            check_trace(forged, GraphView(model), reader)
        report = verifier(8).check(
            data, model=model, inputs=sample_inputs("mlp"), trace=reader, seed=b"s"
        )
    step = report.rung("spot-check").steps[0]
    assert (step.step, type(step.error)) == ("12 trace", DigestMismatchError)
    assert receipt_id(Envelope.from_bytes(data).payload) != honest.rid


# -- a light model: a branch fault is caught by the samples that hold it -------------------------


@pytest.fixture(scope="module")
def inception(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Traced, int]]:
    name = "inception_v1"
    assert name in LIGHT_MODELS
    model = load_model(light_path(name))
    inputs = light_inputs(model)
    fault, _ = branch_node(GraphView(model), frozenset({"Concat"}))
    drill = issue(model, inputs, tmp_path_factory.mktemp(name), fault=f"#{fault}")
    yield model, inputs, drill, fault
    drill.path.unlink()


@pytest.mark.slow
@pytest.mark.xdist_group("light")
def test_light_model_branch_fault_is_caught_iff_sampled(
    inception: tuple[Any, Any, Traced, int],
) -> None:
    model, inputs, drill, fault = inception
    nodes = len(GraphView(model))
    hits, misses = _seeds(nodes, 8, drill.rid, fault)
    label = GraphView(model).nodes[fault].label
    with pytest.raises(SpotCheckError, match=re.escape(f"node {label} failed")):
        spot_check(model, inputs, drill, samples=8, seed=hits[0])
    details = spot_check(model, inputs, drill, samples=8, seed=misses[0])
    assert details["detection_probability"] == 8 / nodes
    assert all(row["ok"] for row in details["checks"])
