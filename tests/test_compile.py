"""The integer ONNX compiler: outputs equal onnxruntime's bit for bit, the witness satisfies the
constraints, the constraint system depends on the model alone, and what it cannot prove
exactly (overflow, floats, unknown ops, variable divisors) is refused with a typed error.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from circuits.compile import circuit_hash, compile_model
from circuits.packing import pack_values
from circuits.r1cs import check_witness
from fixtures.int_models import BUILDERS, sample_input
from receipts.errors import CircuitFormatError, WitnessError
from receipts.model import LoadedModel, load_model_bytes


def _load(model: onnx.ModelProto) -> LoadedModel:
    return load_model_bytes(model.SerializeToString())


def _ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, feed))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def fixture_model(request: Any) -> tuple[str, onnx.ModelProto, LoadedModel]:
    model = BUILDERS[request.param]()
    return request.param, model, _load(model)


def test_outputs_equal_onnxruntime_and_the_witness_holds(
    fixture_model: tuple[str, onnx.ModelProto, LoadedModel],
) -> None:
    name, model, loaded = fixture_model
    for seed in (1, 2):
        x = sample_input(name, seed)
        compiled = compile_model(loaded, {"x": x})
        [want] = _ort(model, {"x": x})
        [got] = compiled.outputs.values()
        assert got.dtype == want.dtype and np.array_equal(got, want)
        check_witness(compiled.r1cs, compiled.witness)
        # Public signals: the packed outputs, then the packed inputs.
        assert compiled.public == pack_values(want, str(want.dtype)) + pack_values(x, "uint8")


def test_the_circuit_depends_on_the_model_alone(
    fixture_model: tuple[str, onnx.ModelProto, LoadedModel],
) -> None:
    name, _, loaded = fixture_model
    first = compile_model(loaded, {"x": sample_input(name, 1)})
    extremes = [np.zeros_like(sample_input(name)), np.full_like(sample_input(name), 255)]
    for x in extremes:
        assert compile_model(loaded, {"x": x}).r1cs == first.r1cs
    assert circuit_hash(first.r1cs) == first.circuit_hash
    assert str(first.circuit_hash).startswith("sha256:")


def test_the_mlp_has_the_expected_size() -> None:
    compiled = compile_model(
        _load(BUILDERS["mlp_784_56_10"]()), {"x": sample_input("mlp_784_56_10")}
    )
    # 784 uint8 inputs pack 31 per signal (26), 10 int32 outputs 7 per signal (2).
    assert compiled.r1cs.n_public == 28
    # Static bounds spare most range checks: 7,056 of these prove the 784 inputs are bytes.
    assert 12_000 < len(compiled.r1cs.constraints) < 15_000


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_tiny_model_matches_onnxruntime_on_any_input(values: list[int]) -> None:
    model = BUILDERS["tiny_int"]()
    x = np.array([values], dtype=np.uint8)
    compiled = compile_model(_load(model), {"x": x})
    [want] = _ort(model, {"x": x})
    assert np.array_equal(compiled.outputs["y"], want)
    check_witness(compiled.r1cs, compiled.witness)


# --- one op at a time, against onnxruntime --------------------------------------------------------


def _single(
    op: str, x_type: int, shape: list[int], out_type: int, out_shape: list[int] | None,
    inits: list[onnx.TensorProto], extra: list[str], **attrs: Any,
) -> onnx.ModelProto:  # fmt: skip
    node = helper.make_node(op, ["x", *extra], ["y"], name="n", **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", x_type, shape)],
        [helper.make_tensor_value_info("y", out_type, out_shape)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _c(name: str, value: Any, dtype: Any) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


I32 = TensorProto.INT32
SINGLE = {
    "div_truncates": (_single("Div", I32, [6], I32, [6], [_c("d", 4, np.int32)], ["d"]),
                      np.array([-9, -8, -1, 0, 7, 2**31 - 1], dtype=np.int32)),
    "max_const": (_single("Max", I32, [4], I32, [4], [_c("k", -3, np.int32)], ["k"]),
                  np.array([-5, -3, 0, 9], dtype=np.int32)),
    "min_const": (_single("Min", I32, [4], I32, [4], [_c("k", 2, np.int32)], ["k"]),
                  np.array([-5, 2, 3, 9], dtype=np.int32)),
    "clip": (_single("Clip", I32, [5], I32, [5], [_c("lo", -2, np.int32), _c("hi", 3, np.int32)],
                     ["lo", "hi"]), np.array([-9, -2, 0, 3, 99], dtype=np.int32)),
    "sub_const": (_single("Sub", I32, [3], I32, [3], [_c("k", 5, np.int32)], ["k"]),
                  np.array([-5, 0, 100], dtype=np.int32)),
    "mul_const": (_single("Mul", I32, [3], I32, [3], [_c("k", -7, np.int32)], ["k"]),
                  np.array([-5, 0, 100], dtype=np.int32)),
    "relu_int8": (_single("Relu", TensorProto.INT8, [3], TensorProto.INT8, [3], [], []),
                  np.array([-128, 0, 127], dtype=np.int8)),
    "transpose": (_single("Transpose", I32, [2, 3], I32, [3, 2], [], [], perm=[1, 0]),
                  np.arange(6, dtype=np.int32).reshape(2, 3)),
    "slice": (_single("Slice", I32, [6], I32, [2], [_c("s", [1], np.int64), _c("e", [5], np.int64),
                      _c("a", [0], np.int64), _c("st", [2], np.int64)], ["s", "e", "a", "st"]),
              np.arange(6, dtype=np.int32)),
    "gather": (_single("Gather", I32, [5], I32, [3], [_c("i", [4, 0, 2], np.int64)], ["i"]),
               np.arange(5, dtype=np.int32) * 3),
    "unsqueeze": (_single("Unsqueeze", I32, [3], I32, [1, 3], [_c("ax", [0], np.int64)], ["ax"]),
                  np.arange(3, dtype=np.int32)),
    "cast_in_range": (_single("Cast", I32, [3], TensorProto.INT8, [3], [], [], to=TensorProto.INT8),
                      np.array([-128, 0, 127], dtype=np.int32)),
    # min > max: onnxruntime gives max everywhere (min(max(x, lo), hi)), not min
    "clip_min_above_max": (_single("Clip", I32, [3], I32, [3], [_c("lo", 5, np.int32),
                                   _c("hi", 2, np.int32)], ["lo", "hi"]),
                           np.array([-9, 3, 99], dtype=np.int32)),
    # axis = rank is allowed: [N, 1], not [1, N]
    "flatten_axis_rank": (_single("Flatten", I32, [2, 3], I32, [6, 1], [], [], axis=2),
                          np.arange(6, dtype=np.int32).reshape(2, 3)),
}  # fmt: skip


def test_a_cast_constant_wraps_as_onnxruntime_does() -> None:
    """Cast(261 -> int8) is 5 in onnxruntime; a relabelled 261 made the circuit divide by 261."""
    nodes = [helper.make_node("Cast", ["c"], ["d"], to=TensorProto.INT8),
             helper.make_node("Div", ["x", "d"], ["y"])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [3])], [_c("c", 261, np.int32)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.array([100, -100, 7], dtype=np.int8)
    compiled = compile_model(_load(model), {"x": x})
    [want] = _ort(model, {"x": x})
    assert np.array_equal(compiled.outputs["y"], want)  # [20, -20, 1]
    check_witness(compiled.r1cs, compiled.witness)


@pytest.mark.parametrize(("model", "x"), SINGLE.values(), ids=SINGLE.keys())
def test_each_op_matches_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> None:
    compiled = compile_model(_load(model), {"x": x})
    [want] = _ort(model, {"x": x})
    assert compiled.outputs["y"].dtype == want.dtype
    assert np.array_equal(compiled.outputs["y"], want)
    check_witness(compiled.r1cs, compiled.witness)


# --- refused ---------------------------------------------------------------------------------


def _refused_cases() -> dict[str, tuple[onnx.ModelProto, np.ndarray, type[Exception], str]]:
    f32 = TensorProto.FLOAT
    return {
        "overflowing_add": (
            _single("Add", I32, [1], I32, [1], [_c("k", 2**31 - 1, np.int32)], ["k"]),
            np.array([1], dtype=np.int32), WitnessError, "outside",
        ),
        "cast_that_would_wrap": (
            _single("Cast", I32, [1], TensorProto.UINT8, [1], [], [], to=TensorProto.UINT8),
            np.array([300], dtype=np.int32), WitnessError, "outside",
        ),
        "float_input": (
            _single("Relu", f32, [1], f32, [1], [], []), np.array([1.0], dtype=np.float32),
            CircuitFormatError, "only integer types",
        ),
        "unsupported_op": (
            _single("Abs", I32, [1], I32, [1], [], []), np.array([-1], dtype=np.int32),
            CircuitFormatError, re.escape("node 'n' (Abs): op Abs is not supported"),
        ),
        "div_by_negative": (
            _single("Div", I32, [1], I32, [1], [_c("d", -2, np.int32)], ["d"]),
            np.array([4], dtype=np.int32), CircuitFormatError, "positive constant",
        ),
        # geometry the compiler does not model: refused, never silently ignored
        "maxpool_ceil_mode": (
            _single("MaxPool", TensorProto.INT8, [1, 1, 5, 5], TensorProto.INT8, None, [], [],
                    kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
            np.zeros((1, 1, 5, 5), dtype=np.int8), CircuitFormatError, "no ceil_mode",
        ),
        "maxpool_pads_as_large_as_the_kernel": (
            _single("MaxPool", TensorProto.INT8, [1, 1, 3, 3], TensorProto.INT8, None, [], [],
                    kernel_shape=[2, 2], pads=[2, 2, 0, 0]),
            np.zeros((1, 1, 3, 3), dtype=np.int8), CircuitFormatError, "not smaller",
        ),
        "maxpool_window_in_padding": (  # dilated taps at columns -1 and 2 of a 2-wide input
            _single("MaxPool", TensorProto.INT8, [1, 1, 2, 2], TensorProto.INT8, None, [], [],
                    kernel_shape=[1, 2], dilations=[1, 3], pads=[0, 1, 0, 1]),
            np.zeros((1, 1, 2, 2), dtype=np.int8), CircuitFormatError, "wholly in the padding",
        ),
        "conv_auto_pad_and_pads": (
            _single("ConvInteger", TensorProto.UINT8, [1, 1, 5, 5], I32, None,
                    [_c("w", np.ones((1, 1, 3, 3)), np.uint8)], ["w"], auto_pad="SAME_UPPER",
                    pads=[1, 1, 1, 1]),
            np.zeros((1, 1, 5, 5), dtype=np.uint8), CircuitFormatError, "together with pads",
        ),
        "conv_kernel_larger_than_input": (
            _single("ConvInteger", TensorProto.UINT8, [1, 1, 2, 2], I32, None,
                    [_c("w", np.ones((1, 1, 3, 3)), np.uint8)], ["w"]),
            np.zeros((1, 1, 2, 2), dtype=np.uint8), CircuitFormatError, "larger than",
        ),
        "conv_negative_pads": (
            _single("ConvInteger", TensorProto.UINT8, [1, 1, 5, 5], I32, None,
                    [_c("w", np.ones((1, 1, 3, 3)), np.uint8)], ["w"], pads=[-1, 0, 0, 0]),
            np.zeros((1, 1, 5, 5), dtype=np.uint8), CircuitFormatError, "none negative",
        ),
        "wrong_input_type": (
            BUILDERS["tiny_int"](), np.array([[1, 2, 3, 4]], dtype=np.int8),
            CircuitFormatError, "the model says uint8",
        ),
    }  # fmt: skip


REFUSED = _refused_cases()


@pytest.mark.parametrize(("model", "x", "error", "fragment"), REFUSED.values(), ids=REFUSED.keys())
def test_what_cannot_be_proven_exactly_is_refused(
    model: onnx.ModelProto, x: np.ndarray, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        compile_model(_load(model), {"x": x})


# --- sliding windows: padding, strides, dilations, against onnxruntime ---------------------------

_GEOMETRY = st.fixed_dictionaries({
    "size": st.tuples(st.integers(2, 6), st.integers(2, 6)),
    "kernel": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "strides": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "dilations": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "pads": st.tuples(*[st.integers(0, 2)] * 4),
    "auto_pad": st.sampled_from(["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"]),
})  # fmt: skip


def _window_attrs(g: dict[str, Any]) -> dict[str, Any]:
    attrs = {"kernel_shape": list(g["kernel"]), "strides": list(g["strides"]),
             "dilations": list(g["dilations"]), "auto_pad": g["auto_pad"]}  # fmt: skip
    if g["auto_pad"] == "NOTSET":
        attrs["pads"] = list(g["pads"])
    return attrs


def _refused_geometry(g: dict[str, Any], pool: bool) -> bool:
    """The corners the compiler refuses (typed error), whatever onnxruntime does there:
    dilations with SAME padding, SAME padding that would be negative (a stride larger than the
    kernel), a kernel larger than the padded input, and for MaxPool pads not smaller than the
    kernel."""
    same = g["auto_pad"].startswith("SAME")
    pads = g["pads"] if g["auto_pad"] == "NOTSET" else (0, 0, 0, 0)
    spans = [(k - 1) * d + 1 for k, d in zip(g["kernel"], g["dilations"], strict=True)]
    too_large = not same and any(g["size"][a] + pads[a] + pads[a + 2] < spans[a] for a in (0, 1))
    pool_pads = pool and any(p >= k for p, k in zip(pads, g["kernel"] * 2, strict=True))
    negative_same = same and any(
        (-(-g["size"][a] // g["strides"][a]) - 1) * g["strides"][a] + spans[a] < g["size"][a]
        for a in (0, 1)
    )
    return (same and max(g["dilations"]) > 1) or too_large or pool_pads or negative_same


def _agrees_with_onnxruntime(
    model: onnx.ModelProto, x: np.ndarray, g: dict[str, Any], pool: bool
) -> None:
    """Where the geometry is one the compiler supports, the compiled outputs equal
    onnxruntime's and the witness holds; elsewhere compiling refuses with a typed error."""
    if _refused_geometry(g, pool):
        with pytest.raises(CircuitFormatError):
            compile_model(_load(model), {"x": x})
        return
    [want] = _ort(model, {"x": x})
    try:
        compiled = compile_model(_load(model), {"x": x})
    except CircuitFormatError as e:  # a dilated window that reads only padding
        assert pool and "wholly in the padding" in str(e)
        return
    assert np.array_equal(compiled.outputs["y"], want)
    check_witness(compiled.r1cs, compiled.witness)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_GEOMETRY, st.integers(0, 2**32 - 1), st.integers(0, 255))
def test_conv_windows_match_onnxruntime(g: dict[str, Any], seed: int, zx: int) -> None:
    """ConvInteger with any strides, dilations, pads or auto_pad, and a non-zero x_zero_point
    (onnxruntime pads with it, so a padded tap adds nothing)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(2, 2, *g["kernel"]), dtype=np.int8)
    model = _single("ConvInteger", TensorProto.UINT8, [1, 2, *g["size"]], I32, None,
                    [_c("w", w, np.int8), _c("zx", zx, np.uint8)], ["w", "zx"],
                    **_window_attrs(g))  # fmt: skip
    x = rng.integers(0, 256, size=(1, 2, *g["size"]), dtype=np.uint8)
    _agrees_with_onnxruntime(model, x, g, pool=False)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_GEOMETRY, st.integers(0, 2**32 - 1))
def test_maxpool_windows_match_onnxruntime(g: dict[str, Any], seed: int) -> None:
    """MaxPool on int8 with any strides, dilations, pads or auto_pad: padding never wins (the
    inputs are all negative, so a padded 0 would)."""
    model = _single("MaxPool", TensorProto.INT8, [1, 2, *g["size"]], TensorProto.INT8, None,
                    [], [], **_window_attrs(g))  # fmt: skip
    x = np.random.default_rng(seed).integers(-128, 0, size=(1, 2, *g["size"]), dtype=np.int8)
    _agrees_with_onnxruntime(model, x, g, pool=True)


def test_a_missing_input_is_refused() -> None:
    with pytest.raises(CircuitFormatError, match="missing"):
        compile_model(_load(BUILDERS["tiny_int"]()), {})


def test_an_operand_form_the_op_does_not_handle_is_a_typed_error() -> None:
    """Per-column zero points of MatMulInteger are not supported: refused, not a traceback."""
    w = np.array([[1, -2], [3, 4], [-5, 6], [7, -8]], dtype=np.int8)
    node = helper.make_node("MatMulInteger", ["x", "w", "", "zw"], ["y"], name="n")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 2])],
        [numpy_helper.from_array(w, "w"), _c("zw", [1, 2], np.int8)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(CircuitFormatError, match="MatMulInteger"):
        compile_model(_load(model), {"x": np.array([[1, 2, 3, 4]], dtype=np.uint8)})
