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
    squares non-finite, which is how step (1) sees it. ``None`` when the factor ``g`` (see
    ``receipts.rounding``) reaches 1: the bound would accept any claim, even zeros.
(6) verdict: ok iff every residual is within its bound.

Around it: ``receipts.rounding`` holds the float bound of step (5) with its derivation, the
finiteness helpers, and what the float check cannot see or may wrongly flag (it catches gross
errors, not subtle ones); ``receipts.freivalds_conv`` holds Conv's geometry and its steps (3) to
(5). This module selects, checks shapes, runs MatMul, Gemm and MatMulInteger, and gives the
verdict.

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
from receipts.freivalds_conv import _conv_product, _ConvGeometry, _int
from receipts.rounding import (
    _FLOATS,
    Array,
    _Counted,
    _DoesNotFitError,
    _finite,
    _finite64,
    _float_type,
    _norms,
    _NotApplicableError,
    _Rounding,
    _working,
)

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
    residual, bound, macs = _conv_product(
        xw, ww, yw, bias=b64, geo=geo, dtype=x.dtype, rng=node.rng, rounds=node.rounds
    )
    return _verdict(node, product_macs, residual, bound, macs=macs, exact=False)


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


def _max_abs(x: Array) -> int:
    return 0 if x.size == 0 else max(abs(int(x.min())), abs(int(x.max())))


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _NotApplicableError
    return float(np.float32(value))  # ONNX float attributes are float32
