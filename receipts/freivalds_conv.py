"""Conv for the Freivalds check (verification layer: ``receipts.freivalds`` selects a Conv node
and checks its shapes with ``_ConvGeometry``, then takes residuals and bounds from here).

Steps (3) to (5) of the check, numbered in ``receipts.freivalds``, for a convolution: per group
``g``, ``rounds`` random vectors ``r`` over its output channels give ``s = r^T W_g``, one combined
filter, so ``r^T Y_g`` is compared with a single-output-channel convolution ``conv(X_g, s)`` (plus
``r^T b_g``), about ``1/(C_out/group)`` of the convolution's cost. The bound is
``receipts.rounding``'s with X's receptive fields as the rows of A; their norms come from one
pass of sums of squares over X, summed over the kernel offsets.

    geo = _ConvGeometry.of(x.shape, w.shape, attrs)  # attrs: all Conv attributes, defaults filled
    residual, bound, _ = _conv_product(x, w, y, bias=b, geo=geo, dtype=x.dtype, rng=rng, rounds=2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from receipts.rounding import (
    Array,
    _Counted,
    _DoesNotFitError,
    _finite,
    _norms,
    _NotApplicableError,
    _Rounding,
    _squares,
)


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


def _conv_product(
    x: Array,
    w: Array,
    y: Array,
    *,
    bias: Array | None,
    geo: _ConvGeometry,
    dtype: np.dtype[Any],
    rng: np.random.Generator,
    rounds: int,
) -> tuple[Array, Array, int]:
    """``Y ~ conv(X, W) + bias`` in the working type, one random vector per group's output
    channels: residuals and bounds shaped ``(N, G, rounds, P)``, and the multiply-adds spent."""
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
    r = rng.uniform(-1.0, 1.0, size=(g, rounds, m_g)).astype(y.dtype)
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
    return residual, bound, count.macs


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


# ONNX attribute values as ``onnx.helper.get_attribute_value`` gives them; a type the check does
# not expect makes the node not applicable rather than failed.


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


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise _NotApplicableError
    return value
