"""Freivalds' randomized check of matrix-product operators (verification layer, used by the
spot-check rung).

A committed trace gives one node's input tensors and its claimed output. Instead of recomputing
the product (``m*k*n`` multiply-adds) the spot check multiplies both sides by random vectors,
``Y r`` against ``A (B r)``, in ``O(m*k + k*n + m*n)``. ``None`` means "not applicable": the
caller re-executes the operator instead.

    result = check_node("MatMul", [a, b], [y], {}, np.random.default_rng(seed))
    result is None or result.ok

The procedure, numbered once; the same names appear in the code:

(1) select: op type, arity, element types and attributes this module handles, else ``None``
    (also Conv's SAME_* padding with dilations, which onnxruntime refuses). Non-finite values
    (NaN, infinities) anywhere in the inputs or the claimed output also give ``None``: a
    rounding bound says nothing about them, so the caller re-executes the operator.
(2) shapes: the inputs must fit the operator and the claimed output must have the shape and
    element type they give, else the check fails (``ok`` is False, nothing is multiplied).
(3) draw: ``rounds`` random vectors ``r`` over the output's last axis (MatMul, Gemm) or over each
    group's output channels (Conv: ``s = r^T W_g`` is one combined filter, so the right-hand side
    is a single-output-channel convolution, about ``1/(C_out/group)`` of the convolution's cost).
(4) residual: ``|Y r - A (B r)|`` per element, computed in float64 (or exactly in int64).
(5) bound: what honest rounding can explain (floats; zero for integers). ``None`` when the
    float bound's factor ``g`` (below) reaches 1: it would accept any claim, even zeros.
(6) verdict: ok iff every residual is within its bound.

Float bound. The claimed ``Y`` was computed in the tensors' type with unit roundoff ``u``
(2**-11 float16, 2**-8 bfloat16, 2**-24 float32, 2**-53 float64). In any summation order
(blocked, FMA, wider accumulators) ``|Y - A B| <= gamma_k |A| |B|`` elementwise with
``gamma_k = k u / (1 - k u)``, hence ``|Y r - A (B r)| <= gamma_k |A| (|B| |r|)``. The check
accepts element ``i`` of a round when

    |Y r - A (B r)|_i <= g * (|A| (|B| |r|) + |Y| |r|)_i + 4 (k + 2) t sum(|r|)
    g = 4 ((k + 2) u + (k + n + 2) 2**-53)

``k`` is the inner dimension (Conv: ``C_in/group * kernel volume``), ``n`` the length of ``r``;
``+ 2`` covers Gemm's scaling and addend and Conv's bias, ``4`` is a safety factor over
``gamma_k``, the ``2**-53`` term covers the check's own float64 rounding, ``|Y| |r|`` the final
rounding to the output type and ``t`` (the type's smallest normal number) underflow, also with
results flushed to zero. Gemm uses ``|alpha| |A'| (|B'| |r|) + |beta| |C| |r|`` for the first
term, Conv ``conv(|X|, |r|^T |W_g|) + |r|^T |b_g|``. Not covered, so false alarms are possible:
arithmetic narrower than the tensor type (TF32, bfloat16 "fast math"), subnormal inputs read as
zero (denormals-are-zero), and algorithms outside the bound (Winograd or FFT convolution,
Strassen). An element off by ``d`` changes residual ``i`` by ``d r_j``; a round misses it with
probability of about ``b_i / |d|`` at most, ``b_i`` being the bound with ``|r|`` replaced by
ones: some ``n/2`` times one element's worst-case rounding error, itself far above typical
rounding. Smaller errors go unseen; the check catches gross errors, not subtle ones.

Integer check. Exact in int64 with ``r`` uniform in ``[0, 2**16)`` (narrower if needed to rule
out int64 overflow): a wrong row survives a round with probability at most ``2**-16``. ``None``
when the true product could overflow the output type (so wrap-around semantics never matter).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from receipts.errors import MalformedError

Array = np.ndarray[Any, Any]

# Unit roundoff and smallest normal number of each float type the check handles.
_FLOATS = {
    "float16": (2.0**-11, 2.0**-14),
    "bfloat16": (2.0**-8, 2.0**-126),
    "float32": (2.0**-24, 2.0**-126),
    "float64": (2.0**-53, 2.0**-1022),
}
_U64 = 2.0**-53
_INT64_MAX = 2**63 - 1
_INT_WIDTH = 2**16  # integer vectors are drawn from [0, 2**16) unless int64 could overflow
_QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8))


@dataclass(frozen=True, slots=True, kw_only=True)
class FreivaldsResult:
    """One node's check. ``max_residual`` and ``bound`` are those of the element closest to (or
    furthest over) its bound; ``bound`` is 0 for exact integer checks. ``macs`` counts the
    multiply-adds the check spent (bound included), ``product_macs`` those of the product."""

    op: str
    ok: bool
    rounds: int
    max_residual: float
    bound: float
    macs: int
    product_macs: int
    reason: str

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.macs < 0 or self.product_macs < 0:
            raise MalformedError("rounds must be >= 1 and multiply-add counts >= 0")
        if not (self.max_residual >= 0 and self.bound >= 0):  # also rejects NaN
            raise MalformedError("residual and bound must be numbers >= 0")
        if self.ok == bool(self.reason):
            raise MalformedError("a failed check carries a reason, a passed one none")

    def __bool__(self) -> bool:
        return self.ok


class _NotApplicableError(Exception):
    """Internal, never escapes: the node is outside what this module checks (-> None)."""


class _DoesNotFitError(Exception):
    """Internal, never escapes: inputs or claimed output do not fit the operator (-> failed)."""


@dataclass(frozen=True, slots=True)
class _Node:
    op: str
    inputs: Sequence[Array | None]
    outputs: Sequence[Array]
    attributes: Mapping[str, object]
    rng: np.random.Generator
    rounds: int


Checker = Callable[[_Node], FreivaldsResult]


def check_node(
    op_type: str,
    inputs: Sequence[Array | None],
    outputs: Sequence[Array],
    attributes: Mapping[str, object],
    rng: np.random.Generator,
    *,
    rounds: int = 2,
) -> FreivaldsResult | None:
    """Check one node's claimed output against its inputs, or ``None`` if not applicable.

    ``attributes`` as ``onnx.helper.get_attribute_value`` gives them (strings as str or bytes);
    missing optional inputs as ``None``. Raises ``MalformedError`` only for ``rounds < 1``.
    """
    if rounds < 1:
        raise MalformedError(f"rounds must be >= 1, got {rounds}")
    checker = _CHECKERS.get(op_type)
    if checker is None:
        return None
    try:
        return checker(_Node(op_type, inputs, outputs, attributes, rng, rounds))
    except _NotApplicableError:
        return None
    except _DoesNotFitError as e:
        return FreivaldsResult(
            op=op_type,
            ok=False,
            rounds=rounds,
            max_residual=0.0,
            bound=0.0,
            macs=0,
            product_macs=0,
            reason=str(e),
        )


# --- the operators ---------------------------------------------------------------------------


class _Counted:
    """Matrix products that count their multiply-adds (batch broadcasting included)."""

    __slots__ = ("macs",)

    def __init__(self) -> None:
        self.macs = 0

    def mul(self, x: Array, y: Array) -> Array:
        out: Array = np.matmul(x, y)
        self.macs += int(out.size) * int(x.shape[-1])
        return out


def _check_matmul(node: _Node) -> FreivaldsResult:
    # (1) select
    a, b, y, _ = _operands(node, allowed=2, defaults={})
    if a.dtype != b.dtype or (a.dtype.kind not in "iu" and a.dtype.name not in _FLOATS):
        raise _NotApplicableError
    # (2) shapes
    a2, b2, full = _promoted(node.op, a, b, y, a.dtype)
    product_macs = math.prod(full) * a2.shape[-1]
    if a.dtype.kind in "iu":
        out_max = int(np.iinfo(a.dtype).max)
        return _exact_product(node, product_macs, a2, b2, y.reshape(full), out_max=out_max)
    a64, b64, y64 = _as_float64(a2, b2, y.reshape(full))
    return _float_product(node, product_macs, a64, b64, y64, dtype=a.dtype)


def _check_matmul_integer(node: _Node) -> FreivaldsResult:
    # (1) select
    a, b, y, (a_zp, b_zp) = _operands(node, allowed=4, defaults={})
    if a.dtype not in _QUANTIZED or b.dtype not in _QUANTIZED:
        raise _NotApplicableError
    # (2) shapes
    a2, b2, full = _promoted(node.op, a, b, y, np.dtype(np.int32))
    # ONNX zero points: scalar, A's per row (M,) or (..., M, 1), B's per column (N,) or (..., 1, N)
    a_eff = a2.astype(np.int64) - _zero_point(a_zp, a, a2, (a2.shape[-2], 1))
    b_eff = b2.astype(np.int64) - _zero_point(b_zp, b, b2, (1, b2.shape[-1]))
    product_macs, out_max = math.prod(full) * a2.shape[-1], int(np.iinfo(np.int32).max)
    return _exact_product(node, product_macs, a_eff, b_eff, y.reshape(full), out_max=out_max)


def _check_gemm(node: _Node) -> FreivaldsResult:
    # (1) select
    defaults: dict[str, object] = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0}
    a, b, y, (c,) = _operands(node, allowed=3, defaults=defaults)
    attrs = {**defaults, **node.attributes}
    alpha, beta = _float(attrs["alpha"]), _float(attrs["beta"])
    trans_a, trans_b = _int(attrs["transA"]), _int(attrs["transB"])
    if b.dtype != a.dtype or (c is not None and c.dtype != a.dtype) or {trans_a, trans_b} - {0, 1}:
        raise _NotApplicableError
    _float_type(a.dtype)
    # (2) shapes
    if a.ndim != 2 or b.ndim != 2:
        raise _DoesNotFitError(f"Gemm takes 2-D A and B, got {list(a.shape)} and {list(b.shape)}")
    a2, b2 = (a.T if trans_a else a), (b.T if trans_b else b)
    (m, k), n = a2.shape, b2.shape[1]
    if b2.shape[0] != k:
        raise _DoesNotFitError(f"inner dimensions differ: {list(a2.shape)} @ {list(b2.shape)}")
    _expect(y, (m, n), a.dtype)
    addend = None
    if c is not None:  # unidirectional broadcast to (M, N)
        c2 = c.reshape((1,) * (2 - c.ndim) + c.shape) if c.ndim < 2 else c
        if c2.ndim != 2 or c2.shape[0] not in (1, m) or c2.shape[1] not in (1, n):
            raise _DoesNotFitError(f"C {list(c.shape)} does not broadcast to [{m}, {n}]")
        addend = (_as_float64(c2)[0], beta)
    a64, b64, y64 = _as_float64(a2, b2, y)
    return _float_product(node, m * k * n, a64, b64, y64, dtype=a.dtype, alpha=alpha, addend=addend)


def _check_conv(node: _Node) -> FreivaldsResult:
    # (1) select
    defaults: dict[str, object] = dict.fromkeys(("dilations", "kernel_shape", "pads", "strides"))
    defaults.update(auto_pad="NOTSET", group=1)
    x, w, y, (bias,) = _operands(node, allowed=3, defaults=defaults)
    if w.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise _NotApplicableError
    _float_type(x.dtype)
    # (2) shapes
    if x.ndim < 3 or w.ndim != x.ndim:
        raise _DoesNotFitError(f"Conv takes X and W of equal rank >= 3, got {x.ndim}, {w.ndim}")
    geo = _ConvGeometry.of(x.shape, w.shape, {**defaults, **node.attributes})
    (batch, c_in), (c_out, c_g), g = x.shape[:2], w.shape[:2], geo.group
    if c_g * g != c_in or c_out % g:
        raise _DoesNotFitError(f"X {list(x.shape)}, W {list(w.shape)} do not fit group {g}")
    if bias is not None and bias.shape != (c_out,):
        raise _DoesNotFitError(f"bias {list(bias.shape)} does not match {c_out} output channels")
    _expect(y, (batch, c_out, *geo.out), x.dtype)
    x64, w64, y64 = _as_float64(x, w, y)
    b64 = None if bias is None else _as_float64(bias)[0]
    product_macs = batch * c_out * math.prod(geo.out) * c_g * math.prod(w.shape[2:])
    return _conv_product(node, product_macs, x64, w64, y64, bias=b64, geo=geo, dtype=x.dtype)


_CHECKERS: dict[str, Checker] = {
    "MatMul": _check_matmul,
    "MatMulInteger": _check_matmul_integer,
    "Gemm": _check_gemm,
    "Conv": _check_conv,
}


# --- the checks --------------------------------------------------------------------------------


def _float_product(
    node: _Node,
    product_macs: int,
    a: Array,
    b: Array,
    y: Array,
    *,
    dtype: np.dtype[Any],
    alpha: float = 1.0,
    addend: tuple[Array, float] | None = None,
) -> FreivaldsResult:
    """``Y ~ alpha A B (+ beta C)`` for float64 ``A (..., m, k)``, ``B (..., k, n)``, ``Y``."""
    k, n = a.shape[-1], y.shape[-1]
    gamma, underflow = _gamma(k, n, dtype)
    # (3) draw
    r = node.rng.uniform(-1.0, 1.0, size=(n, node.rounds))
    r_abs, count = np.abs(r), _Counted()
    with np.errstate(over="ignore", invalid="ignore"):
        # (4) residual
        claimed = count.mul(y, r)
        expected = alpha * count.mul(a, count.mul(b, r))
        # (5) bound
        size = abs(alpha) * count.mul(np.abs(a), count.mul(np.abs(b), r_abs))
        size += count.mul(np.abs(y), r_abs)
        if addend is not None:
            c, beta = addend
            r_c, r_c_abs = r, r_abs
            if c.shape[1] != n:  # one column: multiply the sum of r (n adds) instead of r
                r_c, r_c_abs = r.sum(0, keepdims=True), r_abs.sum(0, keepdims=True)
                count.macs += 2 * r.size
            expected += beta * count.mul(c, r_c)
            size += abs(beta) * count.mul(np.abs(c), r_c_abs)
        bound = gamma * size + underflow * r_abs.sum(axis=0)
        residual = np.abs(claimed - expected)
    return _verdict(node, product_macs, residual, bound, macs=count.macs, exact=False)


def _conv_product(
    node: _Node,
    product_macs: int,
    x: Array,
    w: Array,
    y: Array,
    *,
    bias: Array | None,
    geo: _ConvGeometry,
    dtype: np.dtype[Any],
) -> FreivaldsResult:
    """``Y ~ conv(X, W) + bias`` in float64, one random vector per group's output channels."""
    g, kernel = geo.group, w.shape[2:]
    batch, (c_out, c_g) = x.shape[0], w.shape[:2]
    m_g, k, positions = c_out // g, c_g * math.prod(kernel), math.prod(geo.out)
    gamma, underflow = _gamma(k, m_g, dtype)
    # (3) draw: per group, random vectors over its output channels
    r = node.rng.uniform(-1.0, 1.0, size=(g, node.rounds, m_g))
    r_abs, count = np.abs(r), _Counted()
    w_g, y_g = w.reshape(g, m_g, k), y.reshape(batch, g, m_g, positions)
    with np.errstate(over="ignore", invalid="ignore"):
        # (4) residual: r^T Y_g against conv(X_g, r^T W_g) + r^T b_g, shaped (N, G, rounds, P)
        claimed = count.mul(r, y_g)
        expected = _single_channel_conv(x, count.mul(r, w_g), geo, kernel, count)
        # (5) bound
        size = count.mul(r_abs, np.abs(y_g))
        size += _single_channel_conv(np.abs(x), count.mul(r_abs, np.abs(w_g)), geo, kernel, count)
        if bias is not None:
            b_g = bias.reshape(1, g, m_g, 1)
            expected += count.mul(r, b_g)
            size += count.mul(r_abs, np.abs(b_g))
        bound = gamma * size + underflow * r_abs.sum(axis=2).reshape(1, g, node.rounds, 1)
        residual = np.abs(claimed - expected)
    return _verdict(node, product_macs, residual, bound, macs=count.macs, exact=False)


def _exact_product(
    node: _Node, product_macs: int, a: Array, b: Array, y: Array, *, out_max: int
) -> FreivaldsResult:
    """``Y == A B`` exactly for integer ``A (..., m, k)``, ``B (..., k, n)``, ``Y (..., m, n)``."""
    k, n = a.shape[-1], y.shape[-1]
    a_max, b_max, y_max = _max_abs(a), _max_abs(b), _max_abs(y)
    if a_max * b_max * k > out_max or max(a_max, b_max, y_max) > _INT64_MAX:
        raise _NotApplicableError  # the true product may wrap in the output type
    # Largest intermediate per unit of r: |A (B r)| + |Y r|, and |B r| alone.
    per_unit = max((a_max * b_max * k + y_max) * n, b_max * n, 1)
    width = min(_INT_WIDTH, _INT64_MAX // per_unit + 1)
    if width < 2:
        raise _NotApplicableError
    # (3) draw
    r = node.rng.integers(0, width, size=(n, node.rounds), dtype=np.int64)
    # (4) residual
    count = _Counted()
    a64, b64, y64 = (x.astype(np.int64) for x in (a, b, y))
    residual = np.abs(count.mul(y64, r) - count.mul(a64, count.mul(b64, r))).astype(np.float64)
    # (5) bound: none, the check is exact
    return _verdict(node, product_macs, residual, np.zeros(()), macs=count.macs, exact=True)


def _verdict(
    node: _Node, product_macs: int, residual: Array, bound: Array, *, macs: int, exact: bool
) -> FreivaldsResult:
    # (6) verdict
    if not (np.isfinite(residual).all() and np.isfinite(bound).all()):
        raise _NotApplicableError  # magnitudes beyond what a float64 check can hold
    bound = np.broadcast_to(bound, residual.shape)
    worst, limit, failures = 0.0, 0.0, 0
    if residual.size:
        with np.errstate(over="ignore"):  # exact checks divide by the tiniest float
            at = int(np.argmax(residual / np.maximum(bound, np.finfo(np.float64).tiny)))
        worst, limit = float(residual.flat[at]), float(bound.flat[at])
        failures = int(np.count_nonzero(residual > bound))
    reason = ""
    if failures:
        against = "the exact product"
        if not exact:
            against = f"the rounding bound (worst {worst:.3g} > {limit:.3g})"
        reason = f"{failures} of {residual.size} random checksums disagree with {against}"
    return FreivaldsResult(
        op=node.op,
        ok=not failures,
        rounds=node.rounds,
        max_residual=worst,
        bound=limit,
        macs=macs,
        product_macs=product_macs,
        reason=reason,
    )


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ConvGeometry:
    group: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # (begin, end) per spatial axis
    out: tuple[int, ...]

    @classmethod
    def of(
        cls, x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: Mapping[str, object]
    ) -> _ConvGeometry:
        size, kernel = x_shape[2:], w_shape[2:]
        d = len(kernel)
        group = _int(attrs["group"])
        strides = _ints(attrs["strides"], d, 1)
        dilations = _ints(attrs["dilations"], d, 1)
        if group < 1 or min(strides + dilations, default=1) < 1:
            raise _NotApplicableError
        if attrs["kernel_shape"] is not None and _ints(attrs["kernel_shape"], d, 0) != kernel:
            raise _NotApplicableError
        reach = [dil * (kk - 1) + 1 for dil, kk in zip(dilations, kernel, strict=True)]
        auto_pad = _text(attrs["auto_pad"])
        same = auto_pad in ("SAME_UPPER", "SAME_LOWER")
        if same and attrs["pads"] is None and set(dilations) <= {1}:
            # Output ceil(size / stride); an odd total pad puts the extra at the end for UPPER.
            # onnxruntime refuses SAME with dilations, so that case has no reference (-> None).
            totals = [
                max(0, (-(-s // st) - 1) * st + re - s)
                for s, st, re in zip(size, strides, reach, strict=True)
            ]
            halves = [(t // 2, t - t // 2) for t in totals]
            pads = tuple(h if auto_pad == "SAME_UPPER" else h[::-1] for h in halves)
        elif auto_pad in ("NOTSET", "VALID"):
            if auto_pad == "VALID" and attrs["pads"] is not None:
                raise _NotApplicableError
            flat = _ints(attrs["pads"], 2 * d, 0)
            if min(flat, default=0) < 0:
                raise _NotApplicableError
            pads = tuple(zip(flat[:d], flat[d:], strict=True))
        else:
            raise _NotApplicableError
        out = tuple(
            (s + pb + pe - re) // st + 1
            for s, (pb, pe), re, st in zip(size, pads, reach, strides, strict=True)
        )
        if min(out, default=1) < 1:
            raise _DoesNotFitError(f"input {list(x_shape)} is smaller than the kernel's reach")
        return cls(group=group, strides=strides, dilations=dilations, pads=pads, out=out)


def _single_channel_conv(
    x: Array, filters: Array, geo: _ConvGeometry, kernel: tuple[int, ...], count: _Counted
) -> Array:
    """``(N, G, T, P)``: X's group g convolved with filter ``filters[g, t]`` (``(G, T, Cg*K)``),
    one kernel offset at a time so no im2col copy is made."""
    batch, g, t = x.shape[0], geo.group, filters.shape[1]
    c_g, positions = x.shape[1] // g, math.prod(geo.out)
    padded = np.pad(x, [(0, 0), (0, 0), *geo.pads])
    padded = padded.reshape(batch, g, c_g, *padded.shape[2:])
    per_offset = filters.reshape(g, t, c_g, -1)
    acc = np.zeros((batch, g, t, positions))
    for j, offset in enumerate(np.ndindex(*kernel)):
        window = tuple(
            slice(q * dil, q * dil + st * (o - 1) + 1, st)
            for q, dil, st, o in zip(offset, geo.dilations, geo.strides, geo.out, strict=True)
        )
        index: tuple[Any, ...] = (..., *window)
        acc += count.mul(per_offset[:, :, :, j], padded[index].reshape(batch, g, c_g, positions))
    return acc


def _operands(
    node: _Node, *, allowed: int, defaults: Mapping[str, object]
) -> tuple[Array, Array, Array, list[Array | None]]:
    """Two required inputs, the one output, the optional inputs padded with None; (1) arity,
    attribute names and array types."""
    ins = [*node.inputs, *[None] * (allowed - len(node.inputs))]
    if len(ins) > allowed or len(node.outputs) != 1 or set(node.attributes) - set(defaults):
        raise _NotApplicableError
    a, b, y = ins[0], ins[1], node.outputs[0]
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        raise _NotApplicableError
    if not all(isinstance(x, np.ndarray) for x in [y, *ins[2:]] if x is not None):
        raise _NotApplicableError
    return a, b, y, ins[2:]


def _promoted(
    op: str, a: Array, b: Array, y: Array, out_dtype: np.dtype[Any]
) -> tuple[Array, Array, tuple[int, ...]]:
    """numpy matmul shapes: a 1-D operand gets a unit axis that the output then drops."""
    if a.ndim == 0 or b.ndim == 0:
        raise _DoesNotFitError(f"{op} operands need at least one axis")
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise _DoesNotFitError(f"inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError as e:
        raise _DoesNotFitError(
            f"batch axes do not broadcast: {list(a.shape)}, {list(b.shape)}"
        ) from e
    rows = a2.shape[-2:-1] if a.ndim > 1 else ()
    cols = b2.shape[-1:] if b.ndim > 1 else ()
    _expect(y, (*batch, *rows, *cols), out_dtype)
    return a2, b2, (*batch, a2.shape[-2], b2.shape[-1])


def _zero_point(zp: Array | None, x: Array, x2: Array, per_slice: tuple[int, int]) -> Array:
    """A zero point as an int64 array broadcasting against the promoted operand ``x2``."""
    if zp is None:
        return np.zeros((), np.int64)
    if zp.dtype != x.dtype:
        raise _NotApplicableError
    if zp.size == 1:
        return zp.astype(np.int64).reshape(())
    if x.ndim == 2 and zp.shape == (max(per_slice),):
        zp = zp.reshape(per_slice)
    if zp.ndim != x2.ndim or zp.shape[-2:] != per_slice:
        raise _NotApplicableError
    if np.broadcast_shapes(zp.shape, x2.shape) != x2.shape:
        raise _NotApplicableError
    return zp.astype(np.int64)


def _expect(y: Array, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if y.dtype != dtype:
        raise _DoesNotFitError(f"claimed output is {y.dtype.name}, the inputs give {dtype.name}")
    if y.shape != shape:
        raise _DoesNotFitError(f"claimed output is {list(y.shape)}, the inputs give {list(shape)}")


def _float_type(dtype: np.dtype[Any]) -> tuple[float, float]:
    if dtype.name not in _FLOATS:
        raise _NotApplicableError  # complex, float8 and other types: no bound here
    return _FLOATS[dtype.name]


def _as_float64(*arrays: Array) -> list[Array]:
    converted = [np.asarray(x, dtype=np.float64) for x in arrays]
    if not all(np.isfinite(x).all() for x in converted):
        raise _NotApplicableError  # NaN or infinity: the caller re-executes instead
    return converted


def _gamma(k: int, n: int, dtype: np.dtype[Any]) -> tuple[float, float]:
    """(5) The bound's factor on ``|A| (|B| |r|) + |Y| |r|`` and its underflow term per unit of
    ``sum(|r|)``; not applicable when the factor reaches 1 (it would accept zero for anything)."""
    u, tiny = _float_type(dtype)
    gamma = 4.0 * ((k + 2) * u + (k + n + 2) * _U64)
    if gamma >= 1:
        raise _NotApplicableError
    return gamma, 4.0 * (k + 2) * tiny


def _max_abs(x: Array) -> int:
    return 0 if x.size == 0 else max(abs(int(x.min())), abs(int(x.max())))


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _NotApplicableError
    return int(value)


def _ints(value: object, length: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * length
    if not isinstance(value, list | tuple) or len(value) != length:
        raise _NotApplicableError
    return tuple(_int(v) for v in value)


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _NotApplicableError
    return float(np.float32(value))  # ONNX float attributes are float32


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise _NotApplicableError
    return value
