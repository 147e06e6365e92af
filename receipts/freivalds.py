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
(4) residual: ``|Y r - A (B r)|`` per element. The two checksums are computed in the working
    type (float32 for float16, bfloat16 and float32 tensors, float64 for float64; integers
    exactly in int64), one matrix-vector product per round; what follows on vectors of
    length ``m`` (scaling, addend, difference) in float64.
(5) bound: what honest rounding can explain (floats; zero for integers), from row and column
    norms (no ``|A|``, ``|B|`` or ``|Y|`` copies). A NaN or infinity makes its tensor's sum of
    squares non-finite, which is how step (1) sees it. ``None`` when the factor ``g`` (below)
    reaches 1: the bound would accept any claim, even zeros.
(6) verdict: ok iff every residual is within its bound.

Float bound. Let ``u`` be the tensor type's unit roundoff (2**-11 float16, 2**-8 bfloat16,
2**-24 float32, 2**-53 float64), ``v`` the working type's, ``e = 2**-53``, ``t_u`` and ``t_v``
the two types' smallest normal numbers and ``gamma_j(x) = j x / (1 - j x)``. For a claim
``Y ~ alpha A B + beta C`` (MatMul: ``alpha = 1``, ``beta = 0``) with inner dimension ``k`` and
checksum length ``n``, the check accepts element ``i`` of round ``r`` when

    |Y r - alpha A (B r) - beta C r|_i <= g S_i + h T_i + U_i
    S_i = |alpha| ||a_i|| sum_j ||b_j|| |r_j| + |beta| (|C| |r|)_i  >= (|alpha| |A| |B| |r| + ...)_i
    T_i = ||y_i|| ||r||                                              >= (|Y| |r|)_i
    g = 2 (gamma_{k+2}(u) + gamma_{n+1}(v) + gamma_k(v) + gamma_{n+1}(v) gamma_k(v) + 4 e)
    h = 2 gamma_n(v)
    U_i = 6 (k + 2) t_u sum(|r|) + t_v (6 n (1 + |beta|) + |alpha| (9 n sqrt(k) ||a_i|| + 6 k))

``||.||`` is the 2-norm (rows ``a_i`` of A and ``y_i`` of Y, columns ``b_j`` of B; for ``C``:
``|c_i| sum(|r|)`` when C has one column, else ``||c_i|| ||r||``); Cauchy-Schwarz gives
``(|A| |B|)_ij <= ||a_i|| ||b_j||``. The terms: in any summation order (blocked, FMA, wider
accumulators, a final rounding to the tensor type) the claim is within
``gamma_{k+2}(u) (|alpha| |A| |B| + |beta| |C|)`` of the exact value, ``+ 2`` covering Gemm's
scaling and addend and Conv's bias. Computing ``Y r`` in the working type adds at most
``gamma_n(v) |Y| |r|``; ``A (B r)`` at most
``(gamma_n + gamma_k + gamma_n gamma_k)(v) |A| |B| |r|`` (``B r`` rounded, then ``A`` times it);
Gemm's ``C r`` and Conv's ``r^T b`` at most ``gamma_{n+1}(v) |C| |r|`` (``n + 1``: a one-column C
multiplies ``sum(r)`` in float64); ``4 e`` the float64 scaling and adding of the two sides.
Underflow: each multiply or add may lose up to ``t`` (flush-to-zero included), so a length-``L``
inner product up to ``3 L t``; ``sqrt(k) ||a_i||`` bounds ``sum_l |a_il|``. The norms are computed
in the working type by ``np.einsum`` (sums of squares, no temporaries) and made upper bounds: every
term is >= 0, so the exact sum is at most ``(s + 3 L t_v) / (1 - gamma_L(v))`` for a computed ``s``
(a proven margin where a fixed one such as 1.01 would be a guess); a float32 sum that overflows, or
is so small that ``3 L t_v`` would swamp it, is recomputed in float64. The factor 2 is the safety
margin; it also covers the last rounding of the difference and the bound's own float64 evaluation
(a few dozen roundings of ``e``). ``g < 1`` keeps every ``gamma`` above below 1/2. Conv is the same
with ``X``'s windows as the rows of A: ``||a_i||`` is the 2-norm of the receptive field (over the
group's input channels and the kernel), ``b_j`` the filter of output channel ``j``,
``n = C_out/group`` and ``k = C_in/group * kernel volume``.

Non-finite values are found by the norms, at no extra pass: numpy's own einsum loops (not BLAS,
which may skip zeros) sum squares, so a NaN stays NaN and an infinity gives infinity (all terms >=
0, no ``inf - inf``); only then is the tensor scanned, to tell them from overflow. Small tensors
(bias, one-column addend) are scanned directly.

Not covered, so false alarms are possible: arithmetic narrower than the tensor type (TF32,
bfloat16 "fast math"), subnormal inputs read as zero (denormals-are-zero), and algorithms outside
the bound (Winograd or FFT convolution, Strassen). An element off by ``d`` changes residual
``i`` by ``d r_j`` (and its bound by at most ``h ||r|| |d|``, a small fraction); a round misses
it with probability of about ``b_i / |d|`` at most, ``b_i`` being the bound with ``|r|``
replaced by ones: about ``g n k`` for unit-scale data, far above typical rounding. Smaller
errors go unseen; the check catches gross errors, not subtle ones (1024**3 float32, N(0, 1):
bounds near 200, a corruption of 400 caught in 16 of 20 trials, of 6400 in all).

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
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
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
    """Matrix products that count their multiply-adds (batch broadcasting included). Counted:
    every pass over tensor data (checksums, norms as one multiply-add per element, addend and
    bias); not the arithmetic on ``r`` alone or on the bound's short vectors."""

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
    aw, bw, yw = _working(a.dtype, a2, b2, y.reshape(full))
    return _float_product(node, product_macs, aw, bw, yw, dtype=a.dtype)


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
        addend = (_working(a.dtype, c2)[0], beta)
    aw, bw, yw = _working(a.dtype, a2, b2, y)
    return _float_product(node, m * k * n, aw, bw, yw, dtype=a.dtype, alpha=alpha, addend=addend)


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
    xw, ww, yw = _working(x.dtype, x, w, y)
    b64 = None if bias is None else _finite64(bias)
    product_macs = batch * c_out * math.prod(geo.out) * c_g * math.prod(w.shape[2:])
    return _conv_product(node, product_macs, xw, ww, yw, bias=b64, geo=geo, dtype=x.dtype)


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
    """``Y ~ alpha A B (+ beta C)`` for ``A (..., m, k)``, ``B (..., k, n)``, ``Y`` in the
    working type."""
    k, n = a.shape[-1], y.shape[-1]
    rounding, count = _Rounding.of(k, n, dtype), _Counted()
    # (5) bound, first its norms: they also find NaN and infinities (-> None, step (1))
    row_a = _norms("...ij,...ij->...i", a, k, count)[..., np.newaxis]
    col_b = _norms("...ij,...ij->...j", b, k, count)
    row_y = _norms("...ij,...ij->...i", y, n, count)[..., np.newaxis]
    # (3) draw: one row per round, in the working type
    r = np.ascontiguousarray(node.rng.uniform(-1.0, 1.0, size=(n, node.rounds)).T, y.dtype)
    r64 = r.astype(np.float64)
    r_abs, r_norm = np.abs(r64), np.sqrt(np.square(r64).sum(axis=1))
    with np.errstate(over="ignore", invalid="ignore"):
        # (4) residual
        claimed = _checksums(count, y, r)
        expected = alpha * _checksums(count, a, r, inner=b)
        # (5) bound
        size = abs(alpha) * row_a * (col_b @ r_abs.T)[..., np.newaxis, :]
        beta = 0.0
        if addend is not None:
            c, beta = addend
            c_expected, c_size = _addend(count, c, r, r_abs=r_abs, r_norm=r_norm)
            expected += beta * c_expected
            size += abs(beta) * c_size
        bound = rounding.bound(
            size=size,
            y_size=row_y * r_norm,
            row_a=row_a,
            r_abs_sum=r_abs.sum(axis=1),
            alpha=alpha,
            beta=beta,
        )
        residual = np.abs(claimed - expected)
    return _verdict(node, product_macs, residual, bound, macs=count.macs, exact=False)


def _checksums(count: _Counted, x: Array, r: Array, *, inner: Array | None = None) -> Array:
    """``(..., rows, rounds)`` float64: ``x r_t`` (or ``x (inner r_t)``) per round ``r_t``, each a
    matrix-vector product in the working type (BLAS is slow on an ``(n, 2)`` right-hand side)."""
    columns = []
    for r_t in r:
        column = r_t[:, np.newaxis]
        if inner is not None:
            column = _finite(count.mul(inner, column))
        columns.append(count.mul(x, column))
    return np.concatenate(columns, axis=-1).astype(np.float64)


def _addend(
    count: _Counted, c: Array, r: Array, *, r_abs: Array, r_norm: Array
) -> tuple[Array, Array]:
    """Gemm's ``C r`` (``(p, rounds)``, float64) and its bound on ``|C| |r|``."""
    n = r.shape[1]
    if c.shape[1] == n:
        return _checksums(count, c, r), _norms("ij,ij->i", c, n, count)[:, np.newaxis] * r_norm
    # One column: multiply the sum of r (n adds) instead of r, in float64 (C is that small).
    column = _finite64(c)
    count.macs += r.size + column.size * r.shape[0]
    return column * r.astype(np.float64).sum(axis=1), np.abs(column) * r_abs.sum(axis=1)


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
    """``Y ~ conv(X, W) + bias`` in the working type, one random vector per group's output
    channels; residuals and bounds shaped ``(N, G, rounds, P)``."""
    g, kernel = geo.group, w.shape[2:]
    batch, (c_out, c_g) = x.shape[0], w.shape[:2]
    m_g, k, positions = c_out // g, c_g * math.prod(kernel), math.prod(geo.out)
    rounding, count = _Rounding.of(k, m_g, dtype), _Counted()
    w_g, y_g = w.reshape(g, m_g, k), y.reshape(batch, g, m_g, positions)
    # (5) bound, first its norms: they also find NaN and infinities (-> None, step (1))
    row_w = _norms("gok,gok->go", w_g, k, count)[..., np.newaxis]
    col_y = _norms("ngop,ngop->ngp", y_g, m_g, count)[:, :, np.newaxis]
    window_x = _window_norms(x, geo, kernel, count)[:, :, np.newaxis]
    # (3) draw: per group, random vectors over its output channels
    r = node.rng.uniform(-1.0, 1.0, size=(g, node.rounds, m_g)).astype(y.dtype)
    r64 = r.astype(np.float64)
    r_abs, r_norm = np.abs(r64), np.sqrt(np.square(r64).sum(axis=2, keepdims=True))
    with np.errstate(over="ignore", invalid="ignore"):
        # (4) residual: r^T Y_g against conv(X_g, r^T W_g) + r^T b_g
        claimed = count.mul(r, y_g).astype(np.float64)
        combined = _finite(count.mul(r, w_g))
        expected = _single_channel_conv(x, combined, geo, kernel, count).astype(np.float64)
        # (5) bound
        size = window_x * (r_abs @ row_w)
        if bias is not None:
            b_g = bias.reshape(g, m_g, 1)
            expected += count.mul(r64, b_g)
            size += r_abs @ np.abs(b_g)
        bound = rounding.bound(
            size=size,
            y_size=col_y * r_norm,
            row_a=window_x,
            r_abs_sum=r_abs.sum(axis=2, keepdims=True),
            alpha=1.0,
            beta=1.0,
        )
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

    def window(self, offset: tuple[int, ...]) -> tuple[Any, ...]:
        """Index of the padded input's elements that kernel ``offset`` meets, one per output."""
        steps = zip(offset, self.dilations, self.strides, self.out, strict=True)
        return (..., *(slice(q * dil, q * dil + st * (o - 1) + 1, st) for q, dil, st, o in steps))


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
    acc = np.zeros((batch, g, t, positions), x.dtype)
    for j, offset in enumerate(np.ndindex(*kernel)):
        window = padded[geo.window(offset)].reshape(batch, g, c_g, positions)
        acc += count.mul(per_offset[:, :, :, j], window)
    return acc


def _window_norms(x: Array, geo: _ConvGeometry, kernel: tuple[int, ...], count: _Counted) -> Array:
    """``(N, G, P)``: upper bounds on the 2-norms of X's receptive fields, from per-position sums
    of squares over each group's channels (one pass over X) summed over the kernel offsets."""
    batch, g = x.shape[0], geo.group
    per_group = x.reshape(batch, g, x.shape[1] // g, -1)
    squares = _squares("ngcs,ngcs->ngs", per_group, per_group.shape[2], count)
    padded = np.pad(squares.reshape(batch, g, *x.shape[2:]), [(0, 0), (0, 0), *geo.pads])
    total = np.zeros((batch, g, *geo.out))
    for offset in np.ndindex(*kernel):
        total += padded[geo.window(offset)]
        count.macs += total.size
    return np.sqrt(total.reshape(batch, g, -1))


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


def _working(dtype: np.dtype[Any], *arrays: Array) -> list[Array]:
    """The arrays in the working type: float64 stays, float32 stays (no copy), float16 and
    bfloat16 become float32 (exactly)."""
    work = _F64 if dtype == _F64 else _F32
    return [np.asarray(x, dtype=work) for x in arrays]


def _finite(x: Array) -> Array:
    """An intermediate checksum (``B r``, ``r^T W``) that overflowed the working type makes the
    check not applicable here already, not only through the residual."""
    if not np.isfinite(x).all():
        raise _NotApplicableError
    return x


def _finite64(x: Array) -> Array:
    """A small array (bias, one-column addend) in float64; NaN or infinity -> None."""
    x64 = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x64).all():
        raise _NotApplicableError  # NaN or infinity: the caller re-executes instead
    return x64


@dataclass(frozen=True, slots=True)
class _Rounding:
    """(5) The float bound's coefficients for inner dimension ``k`` and checksum length ``n``
    (module docstring): ``g`` on S, ``h`` on T, and the underflow terms."""

    k: int
    n: int
    g: float
    h: float
    claim_tiny: float  # per unit of sum(|r|)
    work_tiny: float

    @classmethod
    def of(cls, k: int, n: int, dtype: np.dtype[Any]) -> _Rounding:
        """Not applicable when ``g`` reaches 1 (the bound would accept zero for anything)."""
        u, tiny = _float_type(dtype)
        v, work_tiny = _FLOATS["float64" if dtype == _F64 else "float32"]
        claim, inner, outer = _gamma(k + 2, u), _gamma(k, v), _gamma(n + 1, v)
        g = 2.0 * (claim + outer + inner + outer * inner + 4 * _U64)
        if g >= 1:
            raise _NotApplicableError
        return cls(k, n, g, 2.0 * _gamma(n, v), 6.0 * (k + 2) * tiny, work_tiny)

    def bound(
        self,
        *,
        size: Array,
        y_size: Array,
        row_a: Array,
        r_abs_sum: Array,
        alpha: float,
        beta: float,
    ) -> Array:
        """``g S + h T + U`` elementwise (arguments broadcast to the residual's shape)."""
        k, n = self.k, self.n
        checks = 6 * n * (1 + abs(beta)) + abs(alpha) * (9 * n * math.sqrt(k) * row_a + 6 * k)
        under = self.claim_tiny * r_abs_sum + self.work_tiny * checks
        bound: Array = self.g * size + self.h * y_size + under
        return bound


def _gamma(j: int, u: float) -> float:
    """``gamma_j(u) = j u / (1 - j u)``; not applicable from ``j u >= 1/2`` on (gamma >= 1)."""
    if j * u >= 0.5:
        raise _NotApplicableError
    return j * u / (1 - j * u)


def _norms(subscripts: str, x: Array, length: int, count: _Counted) -> Array:
    """Upper bounds on the 2-norms of ``x``'s rows or columns (float64)."""
    return np.sqrt(_squares(subscripts, x, length, count))


def _squares(subscripts: str, x: Array, length: int, count: _Counted) -> Array:
    """Upper bounds on sums of ``length`` squares of ``x`` (float64), by ``np.einsum`` in ``x``'s
    type (no temporary copy). All terms are >= 0, so a computed sum ``s`` is within
    ``gamma_L s`` of the exact one, plus ``3 L t`` of underflow. NaN or infinity in ``x`` -> None.
    float32 sums beyond float32's range, or so small that the underflow term would swamp them
    (operands scaled far apart), are recomputed in float64 (buffered, still no copy)."""
    u, tiny = _FLOATS[x.dtype.name]
    count.macs += x.size
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.einsum(subscripts, x, x).astype(np.float64)
    overflow = not np.isfinite(sums).all()
    if overflow and not np.isfinite(x).all():
        raise _NotApplicableError  # NaN or infinity: the caller re-executes instead
    if x.dtype == _F32 and (overflow or ((sums > 0) & (sums < 2.0**20 * length * tiny)).any()):
        u, tiny = _FLOATS["float64"]
        count.macs += x.size
        sums = np.einsum(subscripts, x, x, dtype=np.float64)
    elif overflow:
        raise _NotApplicableError  # float64 squares beyond float64's range
    upper: Array = (sums + 3 * length * tiny) / (1 - _gamma(length, u))
    return upper


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
