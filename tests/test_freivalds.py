"""Freivalds' check: products onnxruntime computes pass, one corrupted element fails, and what the
check cannot judge is "not applicable" (None) rather than a verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper

from receipts.errors import MalformedError
from receipts.freivalds import FreivaldsResult, check_node

SEED = 20_251_126
FAST = settings(max_examples=100, deadline=None, derandomize=True)
Array = np.ndarray[Any, Any]


def _run(
    op: str, inputs: Sequence[Array | None], out_dtype: Any, **attrs: Any
) -> tuple[Array, dict[str, Any]]:
    """One-node model through onnxruntime (CPU, no graph optimization, one thread); returns the
    output and the attributes as ``onnx.helper.get_attribute_value`` gives them."""
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    node = helper.make_node(op, names, ["y"], **attrs)
    given_inputs = {name: x for name, x in zip(names, inputs, strict=True) if x is not None}
    infos = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
        for name, x in given_inputs.items()
    ]
    out_type = helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype))
    graph = helper.make_graph(
        [node], op, infos, [helper.make_tensor_value_info("y", out_type, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    output = session.run(None, given_inputs)[0]
    return output, {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _check(
    op: str, inputs: Sequence[Array | None], y: Array, attrs: dict[str, Any], **kw: Any
) -> Any:
    return check_node(op, inputs, [y], attrs, np.random.default_rng(SEED), **kw)


def _corrupted(y: Array, where: int, delta: float = 1.0) -> Array:
    bad = y.copy()
    bad.flat[where % bad.size] += delta
    return bad


def _assert_passes_and_corruption_fails(
    op: str, inputs: Sequence[Array | None], y: Array, attrs: dict[str, Any], where: int
) -> None:
    result = _check(op, inputs, y, attrs)
    assert result is not None
    assert result.ok, result.reason
    assert result.max_residual <= result.bound
    bad = _check(op, inputs, _corrupted(y, where), attrs)
    assert bad is not None
    assert not bad.ok
    assert bad.max_residual > bad.bound
    assert "disagree" in bad.reason


def _uniform(data: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float32) -> Array:
    return data.uniform(-1.0, 1.0, shape).astype(dtype)


# --- (1)+(2) products from onnxruntime pass; one corrupted element fails -----------------------

BATCHES = [((), ()), ((2,), ()), ((), (3,)), ((2, 1), (3,)), ((1, 2), (3, 1)), ((2,), (2,))]


@FAST
@given(
    dims=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    batches=st.sampled_from(BATCHES),
    vectors=st.sampled_from(["", "a", "b", "ab"]),
    seed=st.integers(0, 2**32 - 1),
    where=st.integers(0, 10**6),
)
def test_matmul_from_onnxruntime_passes_and_a_corrupted_element_fails(
    dims: tuple[int, int, int], batches: Any, vectors: str, seed: int, where: int
) -> None:
    (m, k, n), data = dims, np.random.default_rng(seed)
    a = _uniform(data, (k,) if "a" in vectors else (*batches[0], m, k))
    b = _uniform(data, (k,) if "b" in vectors else (*batches[1], k, n))
    y, attrs = _run("MatMul", [a, b], np.float32)
    _assert_passes_and_corruption_fails("MatMul", [a, b], y, attrs, where)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_matmul_in_other_float_types_passes_and_a_corrupted_element_fails(dtype: Any) -> None:
    data = np.random.default_rng(1)
    a, b = _uniform(data, (2, 7, 12), dtype), _uniform(data, (12, 5), dtype)
    y, attrs = _run("MatMul", [a, b], dtype)
    _assert_passes_and_corruption_fails("MatMul", [a, b], y, attrs, where=17)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_matmul_is_checked_exactly(dtype: Any) -> None:
    data = np.random.default_rng(2)
    a = data.integers(-1000, 1000, (3, 6, 9)).astype(dtype)
    b = data.integers(-1000, 1000, (9, 4)).astype(dtype)
    y, attrs = _run("MatMul", [a, b], dtype)
    result = _check("MatMul", [a, b], y, attrs)
    assert result is not None and result.ok and result.bound == 0.0
    _assert_passes_and_corruption_fails("MatMul", [a, b], y, attrs, where=5)


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 1.0), (0.37, -2.5)])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (4, 1), (4, 5)])
@pytest.mark.parametrize(("trans_a", "trans_b"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_from_onnxruntime_passes_and_a_corrupted_element_fails(
    trans_a: int, trans_b: int, c_shape: tuple[int, ...] | None, alpha: float, beta: float
) -> None:
    data = np.random.default_rng(trans_a * 2 + trans_b)
    a = _uniform(data, (6, 4) if trans_a else (4, 6))
    b = _uniform(data, (5, 6) if trans_b else (6, 5))
    c = None if c_shape is None else _uniform(data, c_shape)
    attrs = {"alpha": alpha, "beta": beta, "transA": trans_a, "transB": trans_b}
    y, attrs = _run("Gemm", [a, b, c], np.float32, **attrs)
    _assert_passes_and_corruption_fails("Gemm", [a, b, c], y, attrs, where=7)


CONVS: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "1d": ((2, 3, 11), (4, 3, 3), {}),
    "1d_stride_pads_dilation": (
        (2, 3, 13),
        (4, 3, 3),
        {"strides": [2], "pads": [1, 2], "dilations": [2]},
    ),
    "2d": ((1, 3, 8, 9), (5, 3, 3, 3), {}),
    "2d_strides_pads": ((1, 3, 8, 9), (5, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
    "2d_dilations": ((2, 2, 9, 9), (3, 2, 3, 3), {"dilations": [2, 1]}),
    "2d_groups": ((2, 6, 7, 7), (4, 3, 3, 3), {"group": 2}),
    "2d_depthwise": ((1, 4, 6, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
    "2d_depthwise_multiplier": ((1, 4, 6, 6), (8, 1, 3, 3), {"group": 4}),
    "2d_pointwise": ((3, 5, 4, 4), (6, 5, 1, 1), {}),
    "2d_kernel_shape": ((1, 2, 6, 6), (3, 2, 3, 3), {"kernel_shape": [3, 3]}),
    "2d_valid": ((1, 2, 9, 8), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    "2d_same_upper": ((1, 2, 9, 8), (3, 2, 4, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 1]}),
    "2d_same_lower": ((1, 2, 9, 8), (3, 2, 4, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 1]}),
    "2d_same_stride_over_kernel": (
        (1, 2, 5, 7),
        (3, 2, 1, 2),
        {"auto_pad": "SAME_UPPER", "strides": [3, 3]},
    ),
}


@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv_from_onnxruntime_passes_and_a_corrupted_element_fails(case: str, bias: bool) -> None:
    x_shape, w_shape, attrs = CONVS[case]
    data = np.random.default_rng(len(case))
    x, w = _uniform(data, x_shape), _uniform(data, w_shape)
    inputs = [x, w, _uniform(data, (w_shape[0],))] if bias else [x, w]
    y, attrs = _run("Conv", inputs, np.float32, **attrs)
    _assert_passes_and_corruption_fails("Conv", inputs, y, attrs, where=len(case) * 7)


@FAST
@given(
    size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilations=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pads=st.tuples(*[st.integers(0, 2)] * 4),
    channels=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    where=st.integers(0, 10**6),
)
def test_random_conv_geometry_passes_and_a_corrupted_element_fails(
    size: Any,
    kernel: Any,
    strides: Any,
    dilations: Any,
    pads: Any,
    channels: Any,
    seed: int,
    where: int,
) -> None:
    for axis in range(2):
        reach = dilations[axis] * (kernel[axis] - 1) + 1
        assume(size[axis] + pads[axis] + pads[axis + 2] >= reach)
    group, c_g, m_g = channels
    data = np.random.default_rng(seed)
    x = _uniform(data, (2, group * c_g, *size))
    w = _uniform(data, (group * m_g, c_g, *kernel))
    inputs = [x, w, _uniform(data, (group * m_g,))]
    attrs = {
        "group": group,
        "strides": list(strides),
        "dilations": list(dilations),
        "pads": list(pads),
    }
    y, attrs = _run("Conv", inputs, np.float32, **attrs)
    _assert_passes_and_corruption_fails("Conv", inputs, y, attrs, where)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_conv_in_other_float_types_passes_and_a_corrupted_element_fails(dtype: Any) -> None:
    """float16 through onnxruntime; it has no float64 Conv, so float64 uses the reference."""
    data = np.random.default_rng(3)
    x, w = _uniform(data, (1, 4, 7, 7), dtype), _uniform(data, (6, 2, 3, 3), dtype)
    if dtype == np.float64:
        y, attrs = _reference_conv(x, w, group=2, pad=1), {"group": 2, "pads": [1, 1, 1, 1]}
    else:
        y, attrs = _run("Conv", [x, w], dtype, group=2, pads=[1, 1, 1, 1])
    _assert_passes_and_corruption_fails("Conv", [x, w], y, attrs, where=11)


def _reference_conv(x: Array, w: Array, *, group: int, pad: int) -> Array:
    """Slow, obviously correct grouped 2-D convolution (stride 1, equal pads)."""
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, w.shape[2:], axis=(2, 3))
    c_g, m_g = w.shape[1], w.shape[0] // group
    per_group = [
        np.einsum(
            "nchwij,mcij->nmhw",
            windows[:, g * c_g : (g + 1) * c_g],
            w[g * m_g : (g + 1) * m_g],
        )
        for g in range(group)
    ]
    return np.concatenate(per_group, axis=1)


ZERO_POINTS = {
    "none": (None, None),
    "scalar": (np.array(7), np.array(3)),
    "per_column_b": (np.array(7), np.arange(5)),
    "per_row_a": (np.arange(4), None),
    "per_row_and_column": (np.arange(4), np.arange(5)),
}


@pytest.mark.parametrize("zero_points", sorted(ZERO_POINTS))
@pytest.mark.parametrize(
    ("a_type", "b_type"), [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]
)
def test_matmul_integer_is_checked_exactly(a_type: Any, b_type: Any, zero_points: str) -> None:
    data = np.random.default_rng(4)
    a = data.integers(np.iinfo(a_type).min, np.iinfo(a_type).max + 1, (4, 6)).astype(a_type)
    b = data.integers(np.iinfo(b_type).min, np.iinfo(b_type).max + 1, (6, 5)).astype(b_type)
    a_zp, b_zp = ZERO_POINTS[zero_points]
    inputs = [
        a,
        b,
        None if a_zp is None else a_zp.astype(a_type),
        None if b_zp is None else b_zp.astype(b_type),
    ]
    reference = (a.astype(np.int64) - (0 if a_zp is None else a_zp.reshape(-1, 1))) @ (
        b.astype(np.int64) - (0 if b_zp is None else b_zp)
    )
    y = reference.astype(np.int32)
    if a_zp is None or a_zp.size == 1:  # onnxruntime refuses per-row zero points for A
        y, _ = _run("MatMulInteger", inputs, np.int32)
        assert np.array_equal(y, reference)
    _assert_passes_and_corruption_fails("MatMulInteger", inputs, y, {}, where=13)


def test_batched_matmul_integer_with_per_column_zero_points_is_checked_exactly() -> None:
    data = np.random.default_rng(5)
    a = data.integers(0, 256, (2, 3, 6)).astype(np.uint8)
    b = data.integers(-128, 128, (2, 6, 5)).astype(np.int8)
    inputs = [a, b, np.array(128, np.uint8), data.integers(-5, 5, (2, 1, 5)).astype(np.int8)]
    y, attrs = _run("MatMulInteger", inputs, np.int32)
    _assert_passes_and_corruption_fails("MatMulInteger", inputs, y, attrs, where=3)


# --- the bound is honest under unfavourable rounding ---------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bound_covers_sequential_accumulation_in_the_tensor_type(dtype: Any) -> None:
    """Positive terms summed one by one in the tensor's own type: the rounding error grows with
    k (and stagnates in float16), the worst realistic order; the check must still pass."""
    data = np.random.default_rng(6)
    a = data.uniform(0.5, 1.0, (6, 256)).astype(dtype)
    b = data.uniform(0.5, 1.0, (256, 7)).astype(dtype)
    y = np.zeros((6, 7), dtype)
    for step in range(256):
        y = (y + a[:, step : step + 1] * b[step : step + 1, :]).astype(dtype)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(y - exact).max() > 100 * np.finfo(dtype).eps  # the error really is large
    result = _check("MatMul", [a, b], y, {})
    assert result is not None and result.ok, result.reason


def test_bfloat16_products_are_checked_against_their_wide_bound() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    data = np.random.default_rng(12)
    a, b = _uniform(data, (5, 30), ml_dtypes.bfloat16), _uniform(data, (30, 4), ml_dtypes.bfloat16)
    y = (a.astype(np.float32) @ b.astype(np.float32)).astype(ml_dtypes.bfloat16)
    result = _check("MatMul", [a, b], y, {})
    assert result is not None and result.ok
    bad = _check("MatMul", [a, b], _corrupted(y, 3, 100.0), {})
    assert bad is not None and not bad.ok


def test_a_float16_product_too_long_for_a_useful_bound_is_not_applicable() -> None:
    """With k = 1024 the float16 bound would exceed the product itself and accept anything."""
    a, b = np.ones((2, 1024), np.float16), np.ones((1024, 3), np.float16)
    assert _check("MatMul", [a, b], np.zeros((2, 3), np.float16), {}) is None
    assert _check("MatMul", [a[:, :256], b[:256]], np.zeros((2, 3), np.float16), {}) is not None


def test_a_relative_corruption_of_one_element_is_detected() -> None:
    data = np.random.default_rng(7)
    a, b = _uniform(data, (8, 12)), _uniform(data, (12, 10))
    y, attrs = _run("MatMul", [a, b], np.float32)
    for where in range(0, y.size, 7):
        bad = y.copy()
        bad.flat[where] += np.float32(1e-3 * (1 + abs(float(y.flat[where]))))
        result = _check("MatMul", [a, b], bad, attrs)
        assert result is not None and not result.ok


def test_one_off_by_one_integer_is_detected_anywhere() -> None:
    data = np.random.default_rng(8)
    a = data.integers(0, 256, (5, 8)).astype(np.uint8)
    b = data.integers(0, 256, (8, 6)).astype(np.uint8)
    y, attrs = _run("MatMulInteger", [a, b], np.int32)
    for where in range(y.size):
        result = _check("MatMulInteger", [a, b], _corrupted(y, where), attrs)
        assert result is not None and not result.ok


# --- soundness: honest products from onnxruntime never fail -------------------------------------

SOUND = settings(max_examples=300, deadline=None, derandomize=True)
KINDS = ["normal", "positive", "cancelling", "rows", "elements", "unbalanced", "tiny"]
# Per type: exponent spread of "rows" and "elements", scale of "unbalanced" (float32: beyond
# float32's squares, the norms' float64 fallback) and of "tiny" (products below the smallest
# normal number, so the underflow terms carry the bound).
SCALES: dict[Any, tuple[int, int, int, int]] = {
    np.float16: (4, 2, 6, 7),
    np.float32: (40, 20, 70, 70),
    np.float64: (40, 20, 70, 530),
}


def _hostile_pair(
    kind: str,
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
    summed: tuple[tuple[int, ...], tuple[int, ...]],
    dtype: Any,
    seed: int,
) -> tuple[Array, Array]:
    """Operands of a product, ``summed`` the axes each is reduced over: N(0, 1); positive (no
    cancellation, errors add up); cancelling (a large constant along the reduced axes against
    zero-mean right operands: huge terms, tiny result); rows and columns at scales 2**+-E;
    elements at scales 2**+-E mixed within one sum; unbalanced (2**F against 2**-F); tiny."""
    data = np.random.default_rng(seed)
    rows, elements, unbalanced, tiny = SCALES[dtype]
    left, right = data.standard_normal(shapes[0]), data.standard_normal(shapes[1])
    kept = [
        tuple(1 if i in axes else d for i, d in enumerate(shape))
        for shape, axes in zip(shapes, summed, strict=True)
    ]
    if kind == "positive":
        left, right = data.uniform(0.0, 1.0, shapes[0]), data.uniform(0.0, 1.0, shapes[1])
    elif kind == "cancelling":
        left += 2.0**10 * data.choice([-1.0, 1.0], kept[0])
        right -= right.mean(axis=summed[1], keepdims=True)
    elif kind == "rows":
        left *= 2.0 ** data.integers(-rows, rows + 1, kept[0])
        right *= 2.0 ** data.integers(-rows, rows + 1, kept[1])
    elif kind == "elements":
        left *= 2.0 ** data.integers(-elements, elements + 1, shapes[0])
        right *= 2.0 ** data.integers(-elements, elements + 1, shapes[1])
    elif kind == "unbalanced":
        left, right = left * 2.0**unbalanced, right * 2.0**-unbalanced
    elif kind == "tiny":
        left, right = left * 2.0**-tiny, right * 2.0**-tiny
    return left.astype(dtype), right.astype(dtype)


def _assert_sound(op: str, inputs: Sequence[Array | None], y: Array, attrs: dict[str, Any]) -> None:
    """The honest claim is checked (not waved through as not applicable) and passes, for several
    draws of the random vectors."""
    assume(np.isfinite(y).all())  # an overflowing honest product is rightly not applicable
    for seed in range(3):
        result = check_node(op, inputs, [y], attrs, np.random.default_rng(seed))
        assert result is not None
        assert result.ok, result.reason


INNER = st.one_of(st.integers(1, 64), st.sampled_from([255, 512, 1000, 1024, 1537, 2047, 2048]))


@SOUND
@given(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    kind=st.sampled_from(KINDS),
    dims=st.tuples(st.integers(1, 6), INNER, st.one_of(st.integers(1, 6), st.integers(7, 300))),
    seed=st.integers(0, 2**32 - 1),
)
def test_honest_matmul_products_never_fail(
    dtype: Any, kind: str, dims: tuple[int, int, int], seed: int
) -> None:
    m, k, n = dims
    if dtype == np.float16:
        k = min(k, 512)  # beyond, the float16 bound is too wide to be useful (not applicable)
    a, b = _hostile_pair(kind, ((m, k), (k, n)), ((1,), (0,)), dtype, seed)
    y, attrs = _run("MatMul", [a, b], dtype)
    _assert_sound("MatMul", [a, b], y, attrs)


@SOUND
@given(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    kind=st.sampled_from(KINDS),
    dims=st.tuples(st.integers(1, 6), INNER, st.integers(1, 40)),
    trans=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    scalars=st.tuples(st.sampled_from([1.0, -0.37, 3.5, 1e3]), st.sampled_from([1.0, 0.0, -2.5])),
    c_shape=st.sampled_from(["none", "scalar", "row", "column", "full"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_honest_gemm_products_never_fail(
    dtype: Any,
    kind: str,
    dims: tuple[int, int, int],
    trans: tuple[int, int],
    scalars: tuple[float, float],
    c_shape: str,
    seed: int,
) -> None:
    (m, k, n), (trans_a, trans_b), (alpha, beta) = dims, trans, scalars
    if dtype == np.float16:
        k = min(k, 512)
    a, b = _hostile_pair(kind, ((m, k), (k, n)), ((1,), (0,)), dtype, seed)
    a, b = (a.T.copy() if trans_a else a), (b.T.copy() if trans_b else b)
    shapes = {"none": None, "scalar": (), "row": (n,), "column": (m, 1), "full": (m, n)}
    c_dims = shapes[c_shape]
    c = None
    if c_dims is not None:  # at the product's scale, so it neither vanishes nor dominates
        scale = np.abs(a.astype(np.float64)).max() * np.abs(b.astype(np.float64)).max()
        c = np.asarray(np.random.default_rng(seed).standard_normal(c_dims) * scale, dtype)
    attrs = {"alpha": alpha, "beta": beta, "transA": trans_a, "transB": trans_b}
    y, attrs = _run("Gemm", [a, b, c], dtype, **attrs)
    _assert_sound("Gemm", [a, b, c], y, attrs)


@SOUND
@given(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    kind=st.sampled_from(KINDS),
    channels=st.tuples(st.integers(1, 2), st.integers(1, 64) | st.just(227), st.integers(1, 4)),
    kernel=st.sampled_from([(1, 1), (3, 3), (2, 3)]),
    size=st.tuples(st.integers(3, 6), st.integers(3, 6)),
    bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_honest_convolutions_never_fail(
    dtype: Any,
    kind: str,
    channels: tuple[int, int, int],
    kernel: tuple[int, int],
    size: tuple[int, int],
    bias: bool,
    seed: int,
) -> None:
    """k = C_in/group * kernel volume up to 2043; float64 through the reference (onnxruntime has
    no float64 Conv)."""
    group, c_g, m_g = channels
    if dtype == np.float16:
        c_g = min(c_g, 56)  # k <= 504, as for the products
    x_shape, w_shape = (2, group * c_g, *size), (group * m_g, c_g, *kernel)
    x, w = _hostile_pair(kind, (x_shape, w_shape), ((1, 2, 3), (1, 2, 3)), dtype, seed)
    inputs = [x, w]
    if bias:
        inputs.append(np.random.default_rng(seed).standard_normal(w_shape[0]).astype(dtype))
    pads = [kernel[0] // 2, kernel[1] // 2] * 2
    if dtype == np.float64:
        assume(kernel[0] == kernel[1])
        y = _reference_conv(x, w, group=group, pad=kernel[0] // 2)
        if bias:
            y = y + inputs[2].reshape(1, -1, 1, 1)
        attrs: dict[str, Any] = {"group": group, "pads": pads}
    else:
        y, attrs = _run("Conv", inputs, dtype, group=group, pads=pads)
    _assert_sound("Conv", inputs, y, attrs)


def test_float32_operands_beyond_float32_squares_are_still_checked() -> None:
    """Rows at 2**70: their squares overflow float32, the norms fall back to float64."""
    data = np.random.default_rng(13)
    a = (data.standard_normal((5, 300)) * 2.0**70).astype(np.float32)
    b = (data.standard_normal((300, 4)) * 2.0**-70).astype(np.float32)
    assert not np.isfinite(np.einsum("ij,ij->i", a, a)).all()
    y, attrs = _run("MatMul", [a, b], np.float32)
    _assert_passes_and_corruption_fails("MatMul", [a, b], y, attrs, where=6)


# --- (3) not applicable ------------------------------------------------------------------------

_A, _B = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
_X, _W = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
_Y, _CONV_Y = _A @ _B, np.full((1, 3, 3, 3), 18, np.float32)
_BIG_INT = np.full((2, 2), 2**20, np.int32)


def _with(x: Array, where: int, value: float) -> Array:
    changed = x.copy()
    changed.flat[where] = value
    return changed


NOT_APPLICABLE: dict[str, tuple[str, list[Any], Any, dict[str, object]]] = {
    "unknown_op": ("Add", [_A, _A], _A, {}),
    "complex": (
        "MatMul",
        [_A.astype(np.complex64), _B.astype(np.complex64)],
        _Y.astype(np.complex64),
        {},
    ),
    "bool": ("MatMul", [_A.astype(bool), _B.astype(bool)], _Y.astype(bool), {}),
    "mixed_input_types": ("MatMul", [_A, _B.astype(np.float64)], _Y, {}),
    "nan_input": ("MatMul", [np.where(_A > 0, np.nan, _A), _B], _Y, {}),
    "nan_in_one_element_of_b": ("MatMul", [_A, _with(_B, 5, np.nan)], _Y, {}),
    "inf_in_one_element_of_b": ("MatMul", [_A, _with(_B, 2, -np.inf)], _Y, {}),
    "inf_claimed_output": ("MatMul", [_A, _B], np.full_like(_Y, np.inf), {}),
    "nan_in_one_claimed_element": ("MatMul", [_A, _B], _with(_Y, 4, np.nan), {}),
    "float64_nan_claimed": (
        "MatMul",
        [_A.astype(np.float64), _B.astype(np.float64)],
        _with(_Y.astype(np.float64), 0, np.nan),
        {},
    ),
    "float16_inf_input": (
        "MatMul",
        [_with(_A.astype(np.float16), 3, np.inf), _B.astype(np.float16)],
        _Y.astype(np.float16),
        {},
    ),
    "gemm_nan_addend": ("Gemm", [_A, _B, _with(np.ones((3, 2), np.float32), 1, np.nan)], _Y, {}),
    "gemm_inf_column_addend": ("Gemm", [_A, _B, np.full((3, 1), np.inf, np.float32)], _Y, {}),
    "conv_nan_input": ("Conv", [_with(_X, 30, np.nan), _W], _CONV_Y, {}),
    "conv_inf_filter": ("Conv", [_X, _with(_W, 7, np.inf)], _CONV_Y, {}),
    "conv_nan_bias": ("Conv", [_X, _W, np.array([0, np.nan, 0], np.float32)], _CONV_Y, {}),
    "conv_nan_claimed": ("Conv", [_X, _W], _with(_CONV_Y, 9, np.nan), {}),
    "unknown_attribute": ("MatMul", [_A, _B], _Y, {"fast": 1}),
    "missing_required_input": ("MatMul", [_A, None], _Y, {}),
    "too_many_inputs": ("MatMul", [_A, _B, _B], _Y, {}),
    "int32_product_may_overflow": ("MatMul", [_BIG_INT, _BIG_INT], _BIG_INT, {}),
    "float64_check_overflows": (
        "MatMul",
        [np.full((2, 2), 1e300), np.full((2, 2), 1e300)],
        np.full((2, 2), 1e300),
        {},
    ),
    "integer_gemm": ("Gemm", [_A.astype(np.int32), _B.astype(np.int32)], _Y.astype(np.int32), {}),
    "gemm_trans_not_a_flag": ("Gemm", [_A, _B], _Y, {"transA": 2}),
    "matmul_integer_int16": (
        "MatMulInteger",
        [_A.astype(np.int16), _B.astype(np.int16)],
        _Y.astype(np.int32),
        {},
    ),
    "matmul_integer_zero_point_of_other_type": (
        "MatMulInteger",
        [_A.astype(np.uint8), _B.astype(np.uint8), np.array(1, np.int8)],
        _Y.astype(np.int32),
        {},
    ),
    "conv_unknown_auto_pad": ("Conv", [_X, _W], _CONV_Y, {"auto_pad": b"REFLECT"}),
    "conv_same_with_pads": ("Conv", [_X, _W], _CONV_Y, {"auto_pad": "SAME_UPPER", "pads": [1] * 4}),
    "conv_kernel_shape_disagrees": ("Conv", [_X, _W], _CONV_Y, {"kernel_shape": [2, 2]}),
    "conv_same_with_dilations": (
        "Conv",
        [_X, _W],
        _CONV_Y,
        {"auto_pad": "SAME_LOWER", "dilations": [2, 2]},
    ),
    "conv_zero_stride": ("Conv", [_X, _W], _CONV_Y, {"strides": [0, 1]}),
    "conv_float8": ("Conv", [_X.astype("float8_e4m3fn"), _W.astype("float8_e4m3fn")], _CONV_Y, {})
    if hasattr(np, "float8_e4m3fn")
    else ("Conv", [_X.astype(np.complex64), _W.astype(np.complex64)], _CONV_Y, {}),
}


@pytest.mark.parametrize("case", sorted(NOT_APPLICABLE))
def test_what_the_check_cannot_judge_is_not_applicable(case: str) -> None:
    op, inputs, y, attrs = NOT_APPLICABLE[case]
    assert _check(op, inputs, y, attrs) is None


def test_conv_check_itself_is_applicable_to_the_not_applicable_baseline() -> None:
    """The baseline the Conv cases above vary is itself checkable (so None means the variation)."""
    result = _check("Conv", [_X, _W], _CONV_Y, {})
    assert result is not None and result.ok


# --- claims that do not fit fail without multiplying -------------------------------------------

DOES_NOT_FIT: dict[str, tuple[str, list[Any], Any, dict[str, object], str]] = {
    "matmul_output_shape": ("MatMul", [_A, _B], _Y.T, {}, "claimed output is [2, 3]"),
    "matmul_output_type": ("MatMul", [_A, _B], _Y.astype(np.float64), {}, "float64"),
    "matmul_inner_dimensions": ("MatMul", [_A, _A], _Y, {}, "inner dimensions"),
    "matmul_batches": (
        "MatMul",
        [np.ones((2, 3, 4), np.float32), np.ones((3, 4, 2), np.float32)],
        _Y,
        {},
        "batch",
    ),
    "gemm_c_shape": ("Gemm", [_A, _B, np.ones(3, np.float32)], _Y, {}, "does not broadcast"),
    "gemm_three_dimensional": ("Gemm", [_A[None], _B], _Y, {}, "2-D"),
    "conv_groups": ("Conv", [_X, _W], _CONV_Y, {"group": 2}, "group 2"),
    "conv_bias_shape": ("Conv", [_X, _W, np.ones(2, np.float32)], _CONV_Y, {}, "bias"),
    "conv_output_shape": ("Conv", [_X, _W], _CONV_Y[:, :2], {}, "claimed output"),
    "matmul_integer_output_type": (
        "MatMulInteger",
        [_A.astype(np.uint8), _B.astype(np.uint8)],
        _Y.astype(np.int64),
        {},
        "int32",
    ),
}


@pytest.mark.parametrize("case", sorted(DOES_NOT_FIT))
def test_a_claim_that_does_not_fit_its_inputs_fails(case: str) -> None:
    op, inputs, y, attrs, words = DOES_NOT_FIT[case]
    result = _check(op, inputs, y, attrs)
    assert result is not None
    assert not result
    assert words in result.reason
    assert result.macs == 0


# --- (4) cost, determinism, the result record --------------------------------------------------


def test_the_check_costs_under_a_tenth_of_a_256_cubed_product() -> None:
    data = np.random.default_rng(9)
    a, b = _uniform(data, (256, 256)), _uniform(data, (256, 256))
    y, attrs = _run("MatMul", [a, b], np.float32)
    result = _check("MatMul", [a, b], y, attrs)
    assert result is not None and result.ok
    assert result.product_macs == 256**3
    # once: the norms of A's rows, B's columns, Y's rows; per round: B r, A (B r), Y r
    assert result.macs == (3 + 2 * 3) * 256 * 256
    assert result.macs < result.product_macs / 10


def test_conv_check_costs_about_two_rounds_over_the_channels_per_group() -> None:
    data = np.random.default_rng(10)
    x, w = _uniform(data, (1, 16, 24, 24)), _uniform(data, (128, 16, 3, 3))
    y, attrs = _run("Conv", [x, w], np.float32, pads=[1, 1, 1, 1])
    result = _check("Conv", [x, w], y, attrs)
    assert result is not None and result.ok
    rounds, k, positions = 2, 16 * 9, 24 * 24
    assert result.product_macs == 128 * positions * k
    # per round: combined filter r^T W, its convolution, r^T Y; once: the norms of W's filters
    # and Y's channel vectors, X's squares per position and their sums over the kernel window
    norms = 128 * k + 16 * positions + 9 * positions + 128 * positions
    assert result.macs == norms + rounds * (128 * k + k * positions + 128 * positions)
    assert result.macs < result.product_macs / 10


def test_the_same_seed_gives_the_same_result_and_another_seed_may_not() -> None:
    data = np.random.default_rng(11)
    a, b = _uniform(data, (5, 6)), _uniform(data, (6, 7))
    y = a @ b
    first, second = _check("MatMul", [a, b], y, {}), _check("MatMul", [a, b], y, {})
    other = check_node("MatMul", [a, b], [y], {}, np.random.default_rng(SEED + 1))
    assert first == second
    assert other is not None and first is not None
    assert (other.max_residual, other.bound) != (first.max_residual, first.bound)


def test_rounds_below_one_are_refused() -> None:
    with pytest.raises(MalformedError):
        _check("MatMul", [_A, _B], _Y, {}, rounds=0)


def test_each_more_round_costs_the_same() -> None:
    """The norms are computed once; a round costs ``B r``, ``A (B r)`` and ``Y r``."""
    one, four = (
        _check("MatMul", [_A, _B], _Y, {}, rounds=1),
        _check("MatMul", [_A, _B], _Y, {}, rounds=4),
    )
    assert one is not None and four is not None
    per_round = 4 * 2 + 3 * 4 + 3 * 2
    assert (one.rounds, four.rounds, four.macs - one.macs) == (1, 4, 3 * per_round)


@pytest.mark.parametrize(
    "fields",
    [
        {"ok": False, "reason": ""},
        {"ok": True, "reason": "but why"},
        {"rounds": 0},
        {"macs": -1},
        {"max_residual": float("nan")},
    ],
)
def test_a_result_that_contradicts_itself_cannot_be_built(fields: dict[str, object]) -> None:
    base: dict[str, Any] = {
        "op": "MatMul",
        "ok": True,
        "rounds": 2,
        "max_residual": 0.0,
        "bound": 1.0,
        "macs": 1,
        "product_macs": 2,
        "reason": "",
    }
    with pytest.raises(MalformedError):
        FreivaldsResult(**{**base, **fields})


def test_empty_products_pass_trivially() -> None:
    a, b = np.ones((0, 4), np.float32), np.ones((4, 3), np.float32)
    result = _check("MatMul", [a, b], np.ones((0, 3), np.float32), {})
    assert result is not None and result.ok and result.product_macs == 0
