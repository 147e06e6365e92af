"""The deterministic runner: profiles, refusals, reproducibility and exotic element types."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx.reference
import pytest
from onnx import TensorProto, helper

from receipts import MalformedError, RuntimeRefusedError, RuntimeSettings, load_model_bytes
from receipts.runtime import CpuClass, OrtRunner, RuntimeProfile, detect_cpu, local_profile
from tests.conftest import fixture_inputs, fixture_model


def test_default_settings_are_the_reproducible_baseline() -> None:
    s = RuntimeSettings()
    assert (s.graph_optimization, s.intra_op_threads, s.execution_mode) == (
        "disable",
        1,
        "sequential",
    )
    assert s.prepacking and s.x64_quant_precision


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"graph_optimization": "max"}, MalformedError),
        ({"execution_mode": "eager"}, MalformedError),
        ({"intra_op_threads": 0}, MalformedError),
        ({"intra_op_threads": 10_000}, MalformedError),
        ({"denormal_as_zero": True}, RuntimeRefusedError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RuntimeSettings(**kwargs)  # type: ignore[arg-type]


def test_load_config_from_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORT_LOAD_CONFIG_FROM_MODEL", "1")
    with pytest.raises(RuntimeRefusedError, match="ORT_LOAD_CONFIG_FROM_MODEL"):
        OrtRunner(fixture_model("mlp"), RuntimeSettings())


def test_profile_records_settings_engine_and_cpu() -> None:
    runner = OrtRunner(
        fixture_model("mlp"), RuntimeSettings(intra_op_threads=2, graph_optimization="all")
    )
    wire = runner.profile.to_wire()
    assert wire["engine"] == "onnxruntime"
    assert wire["intra_op_threads"] == 2
    assert wire["graph_optimization"] == "all"
    assert wire["cpu"] == detect_cpu().to_wire()


def test_identity_changes_with_every_numeric_field() -> None:
    base = local_profile(RuntimeSettings())
    variants = [
        local_profile(RuntimeSettings(intra_op_threads=2)),
        local_profile(RuntimeSettings(graph_optimization="basic")),
        local_profile(RuntimeSettings(prepacking=False)),
        local_profile(RuntimeSettings(x64_quant_precision=False)),
        local_profile(RuntimeSettings(execution_mode="parallel")),
        RuntimeProfile(engine_version="0.0.0", cpu=base.cpu),
        RuntimeProfile(engine_version=base.engine_version, cpu=CpuClass(arch="x86_64", isa="avx")),
    ]
    identities = {v.identity for v in variants} | {base.identity}
    assert len(identities) == len(variants) + 1


def test_cpu_class_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    detect_cpu.cache_clear()
    try:
        cls = detect_cpu(info)
        assert cls.isa in ("avx2-fma", "neon", "unknown")  # the arch comes from this machine
    finally:
        detect_cpu.cache_clear()


@pytest.mark.parametrize("name", ["mlp", "convnet", "integer", "constants", "control_flow"])
def test_runs_are_bit_identical_across_sessions(name: str) -> None:
    model, inputs = fixture_model(name), fixture_inputs(name)
    first = OrtRunner(model, RuntimeSettings()).run(inputs)
    second = OrtRunner(model, RuntimeSettings()).run(inputs)
    for key in first:
        assert first[key].tobytes() == second[key].tobytes()


def test_a_model_onnxruntime_refuses_gives_one_line_with_the_profile() -> None:
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.invalid")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.invalid", 1)],
    )
    with pytest.raises(RuntimeRefusedError) as info:
        OrtRunner(load_model_bytes(model.SerializeToString()), RuntimeSettings())
    message = str(info.value)
    assert "\n" not in message
    assert "opt=disable threads=1" in message
    assert "NoSuchOp" in message or "example.invalid" in message


def _cast_model(src: int, dst: int) -> bytes:
    node = helper.make_node("Cast", ["x"], ["y"], to=dst)
    graph = helper.make_graph(
        [node],
        "cast",
        [helper.make_tensor_value_info("x", src, [5])],
        [helper.make_tensor_value_info("y", dst, [5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]).SerializeToString()


@pytest.mark.parametrize(
    ("onnx_type", "dtype"),
    [
        (TensorProto.BFLOAT16, ml_dtypes.bfloat16),
        (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
        (TensorProto.INT4, ml_dtypes.int4),
        (TensorProto.UINT4, ml_dtypes.uint4),
    ],
)
def test_extended_element_types_round_trip_through_onnxruntime(
    onnx_type: int, dtype: object
) -> None:
    values = np.array([1, 2, 3, 4, 5], dtype=np.float32)
    to_type = OrtRunner(
        load_model_bytes(_cast_model(TensorProto.FLOAT, onnx_type)), RuntimeSettings()
    )
    narrowed = to_type.run({"x": values})["y"]
    assert narrowed.dtype == np.dtype(dtype)
    back = OrtRunner(load_model_bytes(_cast_model(onnx_type, TensorProto.FLOAT)), RuntimeSettings())
    np.testing.assert_array_equal(back.run({"x": narrowed})["y"], values)


def test_fixture_integer_model_matches_the_reference_evaluator() -> None:
    model, inputs = fixture_model("integer"), fixture_inputs("integer")
    ours = OrtRunner(model, RuntimeSettings()).run(inputs)["y"]
    reference = onnx.reference.ReferenceEvaluator(model.proto).run(None, inputs)[0]
    np.testing.assert_array_equal(ours, reference)
