"""Traced runs and trace files: same final bits as untraced runs, drills, hostile trace files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.models import BUILDERS, sample_inputs
from receipts import (
    LoadedModel,
    ModelError,
    ReceiptsError,
    RuntimeRefusedError,
    RuntimeSettings,
    UnsupportedVersionError,
    codec,
    load_model,
)
from receipts.digests import tensor_digest, value_entry
from receipts.errors import TraceError
from receipts.frames import write_frame
from receipts.graph import GraphView
from receipts.opening import open_node
from receipts.trace import TRACE_MAGIC, TraceReader
from tests.tracekit import (
    LIGHT_MODELS,
    Traced,
    fixture_loaded,
    frames,
    issue,
    light_inputs,
    light_path,
    node_groups,
    provider,
)

FIXTURE_MODELS = list(BUILDERS)
NODE_COUNTS = {name: len(GraphView(fixture_loaded(name))) for name in BUILDERS}


def _untraced_and_traced(
    model: LoadedModel, inputs: dict[str, Any], settings: RuntimeSettings | None = None
) -> tuple[Any, Any]:
    session = provider(settings).session(model)
    return session.run(inputs), session.run(inputs, trace=True)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_traced_final_outputs_are_bit_identical_to_untraced(name: str, threads: int) -> None:
    model = fixture_loaded(name)
    plain, traced = _untraced_and_traced(
        model, sample_inputs(name), RuntimeSettings(intra_op_threads=threads)
    )
    assert traced.receipt.outputs == plain.receipt.outputs  # every entry's digest, shape, type
    assert plain.receipt.trace is None
    assert traced.receipt.trace is not None
    assert traced.receipt.trace.nodes == len(GraphView(model))
    assert traced.receipt.runtime == plain.receipt.runtime
    assert traced.receipt.meter == plain.receipt.meter


@pytest.mark.slow
@pytest.mark.xdist_group("light")
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_traced_final_outputs_are_bit_identical_to_untraced(name: str) -> None:
    model = load_model(light_path(name))
    plain, traced = _untraced_and_traced(model, light_inputs(model))
    assert traced.receipt.outputs.digest == plain.receipt.outputs.digest
    assert traced.receipt.trace is not None
    assert traced.receipt.trace.nodes == len(GraphView(model))


def _later_runs_agree(model: LoadedModel, first: Any, other: Any, *, split: bool) -> None:
    """A session's first traced run is one whole-model run; later ones run the model in parts
    (hashing each part while the next runs). Their traces and outputs must be the whole run's,
    on the first run's inputs and on other inputs (another batch size for fixture models)."""
    session = provider().session(model)
    whole = session.run(first, trace=True)
    again = session.run(first, trace=True)
    assert (session.tracer._parts is not None) is split  # the pipelined path is under test
    later = session.run(other, trace=True)
    fresh = provider().session(model).run(other, trace=True)  # whole-model run of ``other``
    plain = session.run(other)
    assert again.receipt.trace == whole.receipt.trace
    assert again.receipt.outputs == whole.receipt.outputs
    assert later.receipt.trace == fresh.receipt.trace
    assert later.receipt.outputs == fresh.receipt.outputs == plain.receipt.outputs


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_later_traced_runs_of_a_session_give_the_whole_runs_bits(name: str) -> None:
    _later_runs_agree(
        fixture_loaded(name),
        sample_inputs(name),
        sample_inputs(name, batch=2, seed=1),
        split=NODE_COUNTS[name] >= 8 and name != "sequence",
    )


@pytest.mark.slow
@pytest.mark.xdist_group("light")
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_later_traced_runs_give_the_whole_runs_bits(name: str) -> None:
    model = load_model(light_path(name))
    first = light_inputs(model)
    _later_runs_agree(model, first, {k: 1.0 - v for k, v in first.items()}, split=True)


def test_pipelined_trace_file_reads_back(tmp_path: Path) -> None:
    traced = issue(fixture_loaded("convnet"), sample_inputs("convnet"), tmp_path, warm=True)
    with traced.reader() as reader:
        reader.check_all()
        reader.check_commitment(traced.receipt.trace, traced.receipt.model)


def test_traced_run_refuses_optimization_that_fuses_nodes() -> None:
    session = provider(RuntimeSettings(graph_optimization="all")).session(fixture_loaded("mlp"))
    with pytest.raises(RuntimeRefusedError, match="traced runs need graph optimization 'disable'"):
        session.run(sample_inputs("mlp"), trace=True)


# -- trace files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_traced(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    model = fixture_loaded("mlp")
    return issue(model, sample_inputs("mlp"), tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def mlp_other_input(tmp_path_factory: pytest.TempPathFactory) -> Traced:
    model = fixture_loaded("mlp")
    return issue(model, sample_inputs("mlp", seed=5), tmp_path_factory.mktemp("mlp_other"))


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_trace_file_holds_every_node_output_under_the_receipts_root(
    name: str, tmp_path: Path
) -> None:
    model, inputs = fixture_loaded(name), sample_inputs(name)
    issued = provider().session(model).run(inputs, trace=True)
    issued.write(tmp_path)
    assert issued.trace is not None
    with TraceReader.open(tmp_path / "trace.rtrc") as reader:
        reader.check_commitment(issued.receipt.trace, issued.receipt.model)
        reader.check_all()
        assert list(reader.leaves) == issued.trace.leaves
        view = GraphView(model)
        for i in range(len(reader)):
            assert reader.leaves[i].op == view.nodes[i].op_type
            for out_name, value in reader.values(i).items():
                expected = issued.trace.run.values[out_name]
                assert value_entry(out_name, value) == value_entry(out_name, expected)


@pytest.mark.parametrize("name", ["mlp", "convnet", "control_flow", "sequence"])
def test_drill_corrupts_one_node_and_leaves_earlier_nodes_honest(name: str, tmp_path: Path) -> None:
    model, inputs = fixture_loaded(name), sample_inputs(name)
    view = GraphView(model)
    honest = issue(model, inputs, tmp_path / "honest")
    for index in range(len(view)):
        drill = issue(model, inputs, tmp_path / f"fault{index}", fault=f"#{index}")
        assert drill.receipt.model == honest.receipt.model  # the honest digest, still signed
        with honest.reader() as good, drill.reader() as bad:
            assert bad.leaves[:index] == good.leaves[:index]
            assert bad.leaves[index] != good.leaves[index]
            bad.check_all()  # a drill trace is internally consistent
        # The final outputs may even agree (a later Relu or MaxPool can mask the change); the
        # committed trace never does.
        assert drill.receipt.trace != honest.receipt.trace


def test_drill_by_node_name_is_the_drill_by_index(tmp_path: Path) -> None:
    model, inputs = fixture_loaded("convnet"), sample_inputs("convnet")
    by_name = issue(model, inputs, tmp_path / "a", fault="relu1")
    by_index = issue(model, inputs, tmp_path / "b", fault="#2")
    assert by_name.receipt.trace == by_index.receipt.trace


@pytest.mark.parametrize(
    ("name", "fault", "error", "message"),
    [
        ("constants", "#3", RuntimeRefusedError, "onnxruntime failed to run the model"),
        ("mlp", "#8", ModelError, "node index 8 is out of range (the model has 8)"),
        ("mlp", "no_such_node", ModelError, "no node named 'no_such_node'"),
    ],
    ids=["corrupted_shape_breaks_a_later_node", "index_out_of_range", "unknown_name"],
)
def test_refused_drill_raises_a_typed_error(
    name: str, fault: str, error: type[ReceiptsError], message: str
) -> None:
    session = provider().session(fixture_loaded(name))
    with pytest.raises(error, match=re.escape(message)):
        session.run(sample_inputs(name), trace=True, inject_fault=fault)


# -- hostile trace files: one named case each, the exact error type and message -------------------


def _truncate_at(where: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    return lambda data: data[: where(data)]


def _swap_first_nodes(data: bytes) -> bytes:
    (a0, a1), (b0, b1) = node_groups(data)[:2]
    return data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:]


def _drop_node(data: bytes) -> bytes:
    a0, a1 = node_groups(data)[1]
    return data[:a0] + data[a1:]


def _flip_tensor_byte(data: bytes) -> bytes:
    tensor = next(f for f in frames(data) if f.kind == 3)
    b = bytearray(data)
    b[tensor.body + 2] ^= 0x40
    return bytes(b)


def _replace_frame(data: bytes, index: int, body: bytes) -> bytes:
    frame = frames(data)[index]
    head = bytearray()

    class _Sink:
        def write(self, chunk: bytes) -> None:
            head.extend(chunk)

    write_frame(_Sink(), frame.kind, body)  # type: ignore[arg-type]
    return data[: frame.start] + bytes(head) + data[frame.end :]


def _header(**changes: object) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        frame = frames(data)[0]
        header = codec.decode(data[frame.body : frame.end])
        return _replace_frame(data, 0, codec.encode({**header, **changes}))

    return edit


def _end(**changes: object) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        frame = frames(data)[-1]
        end = codec.decode(data[frame.body : frame.end])
        return _replace_frame(data, len(frames(data)) - 1, codec.encode({**end, **changes}))

    return edit


def _short_tensor(data: bytes) -> bytes:
    index = next(i for i, f in enumerate(frames(data)) if f.kind == 3)
    frame = frames(data)[index]
    return _replace_frame(data, index, data[frame.body : frame.end - 4])


def _first_tensor_middle(data: bytes) -> int:
    tensor = next(f for f in frames(data) if f.kind == 3)
    return (tensor.body + tensor.end) // 2


def _second_node_tensor_middle(data: bytes) -> int:
    start, _ = node_groups(data)[1]
    tensor = next(f for f in frames(data) if f.kind == 3 and f.start > start)
    return (tensor.body + tensor.end) // 2


HOSTILE_TRACES: dict[str, tuple[Callable[[bytes], bytes], type[Exception], str]] = {
    "empty": (lambda d: b"", TraceError, "not a valid trace file (bad magic)"),
    "bad_magic": (
        lambda d: b"\x89RTRACX\n" + d[8:],
        TraceError,
        "not a valid trace file (bad magic)",
    ),
    "evidence_magic": (
        lambda d: b"\x89REVIDN\n" + d[8:],
        TraceError,
        "not a valid trace file (bad magic)",
    ),
    "truncated_after_magic": (
        _truncate_at(lambda d: len(TRACE_MAGIC)),
        TraceError,
        "truncated trace file: header is missing",
    ),
    "truncated_in_frame_head": (
        _truncate_at(lambda d: len(TRACE_MAGIC) + 4),
        TraceError,
        "truncated trace file: header is missing",
    ),
    "truncated_in_header": (
        _truncate_at(lambda d: frames(d)[0].end - 1),
        TraceError,
        "truncated trace file: header ends past the end of the file",
    ),
    "truncated_in_first_tensor": (
        _truncate_at(_first_tensor_middle),
        TraceError,
        "truncated trace file: node #0 tensor 'mm0' ends past the end of the file",
    ),
    "truncated_in_second_node_tensor": (
        _truncate_at(_second_node_tensor_middle),
        TraceError,
        "truncated trace file: node #1 tensor 'z0' ends past the end of the file",
    ),
    "truncated_before_end_frame": (
        _truncate_at(lambda d: frames(d)[-1].start),
        TraceError,
        "truncated trace file: end is missing",
    ),
    "truncated_one_byte_short": (
        _truncate_at(lambda d: len(d) - 1),
        TraceError,
        "truncated trace file: end ends past the end of the file",
    ),
    "trailing_byte": (
        lambda d: d + b"\x00",
        TraceError,
        "1 byte(s) after the end of the trace file",
    ),
    "trailing_frame": (
        lambda d: d + d[frames(d)[-1].start :],
        TraceError,
        "byte(s) after the end of the trace file",
    ),
    "node_frames_reordered": (
        _swap_first_nodes,
        TraceError,
        "node frames out of order: frame 0 holds node #1",
    ),
    "node_frame_removed": (
        _drop_node,
        TraceError,
        "node frames out of order: frame 1 holds node #2",
    ),
    "tensor_frame_shortened": (
        _short_tensor,
        TraceError,
        "tensor 'mm0' (float32[4, 32]) takes 512 bytes, the trace frame holds 508",
    ),
    "header_version_2": (
        _header(version=2),
        UnsupportedVersionError,
        "trace version is not supported (only 1)",
    ),
    "header_of_another_kind": (_header(type="evidence"), TraceError, "not a trace header"),
    "header_unknown_field": (_header(extra=1), TraceError, "unknown field"),
    "header_claims_more_nodes": (
        _header(nodes=9),
        TraceError,
        "unexpected frame in the trace file where node #8 belongs",
    ),
    "end_disagrees_on_node_count": (
        _end(nodes=7),
        TraceError,
        "trace end frame disagrees with the header on the node count",
    ),
    "end_states_another_root": (
        _end(root=bytes(32)),
        TraceError,
        "the trace's leaves do not hash to the root it states",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_TRACES))
def test_hostile_trace_file_is_refused_on_open(
    mlp_traced: Traced, tmp_path: Path, case: str
) -> None:
    edit, error, message = HOSTILE_TRACES[case]
    path = tmp_path / "hostile.rtrc"
    path.write_bytes(edit(mlp_traced.path.read_bytes()))
    with pytest.raises(error) as raised:
        TraceReader.open(path).close()
    assert type(raised.value) is error
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_flipped_tensor_byte_is_caught_when_that_node_is_read(
    mlp_traced: Traced, tmp_path: Path
) -> None:
    path = tmp_path / "flipped.rtrc"
    path.write_bytes(_flip_tensor_byte(mlp_traced.path.read_bytes()))
    with TraceReader.open(path) as reader:  # the index and the root still hold
        reader.check_commitment(mlp_traced.receipt.trace, mlp_traced.receipt.model)
        reader.values(1)  # other nodes read fine
        with pytest.raises(TraceError, match="trace: tensor 'mm0' does not match its digest"):
            reader.values(0)
        with pytest.raises(TraceError, match="does not match its digest"):
            reader.check_all()


def test_trace_of_another_receipt_is_not_this_receipts(
    mlp_traced: Traced, mlp_other_input: Traced
) -> None:
    with mlp_other_input.reader() as reader:
        reader.check_all()  # a good trace, just not this receipt's
        with pytest.raises(TraceError, match="the trace is not the receipt's: the receipt commits"):
            reader.check_commitment(mlp_traced.receipt.trace, mlp_traced.receipt.model)


def test_trace_of_another_model_is_refused(mlp_traced: Traced, tmp_path: Path) -> None:
    other = issue(fixture_loaded("convnet"), sample_inputs("convnet"), tmp_path)
    with other.reader() as reader, pytest.raises(TraceError, match="of another model"):
        reader.check_commitment(mlp_traced.receipt.trace, mlp_traced.receipt.model)


def test_receipt_without_trace_commitment_is_refused(mlp_traced: Traced) -> None:
    untraced = provider().session(fixture_loaded("mlp")).run(sample_inputs("mlp"))
    with mlp_traced.reader() as reader, pytest.raises(TraceError, match="carries no trace"):
        reader.check_commitment(untraced.receipt.trace, untraced.receipt.model)


def test_trace_path_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not a regular file"):
        TraceReader.open(tmp_path)


@pytest.mark.parametrize("index", [-1, 8, 1 << 20])
def test_node_index_out_of_range_is_refused(mlp_traced: Traced, index: int) -> None:
    view = GraphView(fixture_loaded("mlp"))
    inputs = sample_inputs("mlp")
    with mlp_traced.reader() as reader:
        with pytest.raises(TraceError, match=f"node index {index} is out of range"):
            reader.values(index)
        with pytest.raises(TraceError, match=f"node index {index} is out of range"):
            open_node(reader, view, index, inputs)


def test_opening_against_another_models_view_is_refused(mlp_traced: Traced) -> None:
    view = GraphView(fixture_loaded("convnet"))
    with mlp_traced.reader() as reader, pytest.raises(TraceError, match="the model 10"):
        open_node(reader, view, 0, sample_inputs("convnet"))


def test_closed_reader_refuses_to_read(mlp_traced: Traced) -> None:
    reader = mlp_traced.reader()
    reader.close()
    with pytest.raises(TraceError, match="the trace file is closed"):
        reader.values(0)


# -- property: any single flipped byte is detected -----------------------------------------------


def _detect(path: Path, traced: Traced) -> None:
    with TraceReader.open(path) as reader:
        reader.check_all()
        reader.check_commitment(traced.receipt.trace, traced.receipt.model)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flips") / "flipped.rtrc"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(data=st.data())
def test_any_flipped_byte_of_a_trace_file_is_detected(
    mlp_traced: Traced, scratch: Path, data: st.DataObject
) -> None:
    raw = mlp_traced.path.read_bytes()
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    flipped = bytearray(raw)
    flipped[position] ^= mask
    scratch.write_bytes(bytes(flipped))
    with pytest.raises(ReceiptsError):
        _detect(scratch, mlp_traced)


def test_untouched_trace_file_passes_the_same_checks(mlp_traced: Traced) -> None:
    _detect(mlp_traced.path, mlp_traced)  # the property above is not vacuous


def test_trace_values_are_the_tensors_the_leaves_name(mlp_traced: Traced) -> None:
    with mlp_traced.reader() as reader:
        for leaf, values in zip(reader.leaves, reader.iter_values(), strict=True):
            for entry in leaf.outputs:
                value = values[entry.name]
                assert isinstance(value, np.ndarray)
                assert tensor_digest(value) == entry.digest
