"""Comparing recomputed outputs with claimed ones: bit-exact or within tolerance (verifier).

When the verifier's runtime identity equals the receipt's, outputs must be bit-identical. When it
differs (another CPU class, another onnxruntime), floating-point outputs are compared element by
element with ``|claimed - recomputed| <= atol + rtol * |recomputed|`` (NaN must meet NaN, an
infinity must meet the same infinity); integer, boolean and string outputs stay exact. Each
output's row says which comparison applied and the observed error.

    rows = compare_outputs(recomputed, claimed, lambda name: Tolerance(rtol=1e-4), exact=False)
    rows[0]["max_abs_error"], rows[0]["ok"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from receipts.digests import flat_tensors
from receipts.errors import MalformedError
from receipts.tensors import canonical_bytes, elem_type_of

FLOAT_TYPES = frozenset(
    {
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "float8e4m3fn",
        "float8e4m3fnuz",
        "float8e5m2",
        "float8e5m2fnuz",
        "float8e8m0",
        "float4e2m1",
        "complex64",
        "complex128",
    }
)
Values = Mapping[str, object]  # arrays, lists of arrays (sequences), None (empty optionals)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    """Per-output bounds for outputs recomputed under a different runtime identity."""

    rtol: float = 1e-5
    atol: float = 1e-6

    def __post_init__(self) -> None:
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if not (math.isfinite(value) and value >= 0):
                raise MalformedError(f"{name} must be a finite number >= 0, got {value}")


def compare_outputs(
    recomputed: Values, claimed: Values, tolerance_for: Callable[[str], Tolerance], *, exact: bool
) -> list[dict[str, object]]:
    """One row per output tensor (sequence items as ``NAME[i]``, under the sequence's
    tolerance): comparison used, observed errors, mismatching elements, ok."""
    mine_all, theirs_all = flat_tensors(recomputed), flat_tensors(claimed)
    rows = []
    for name in sorted(set(mine_all) | set(theirs_all)):
        if name not in mine_all or name not in theirs_all:
            side = "recomputed" if name not in mine_all else "claimed"
            rows.append({"name": name, "ok": False, "reason": f"missing from the {side} outputs"})
            continue
        mine, theirs = mine_all[name], theirs_all[name]
        if mine is None or theirs is None:
            same = mine is None and theirs is None
            rows.append(
                {
                    "name": name,
                    "comparison": "exact",
                    "ok": same,
                    "reason": "" if same else "an empty optional on one side only",
                }
            )
            continue
        tolerance = tolerance_for(name.partition("[")[0] if name not in recomputed else name)
        rows.append(_compare_one(name, mine, theirs, tolerance, exact=exact))
    return rows


def _compare_one(
    name: str,
    mine: np.ndarray[Any, Any],
    theirs: np.ndarray[Any, Any],
    tol: Tolerance,
    *,
    exact: bool,
) -> dict[str, object]:
    kind_mine, kind_theirs = elem_type_of(mine).name, elem_type_of(theirs).name
    row: dict[str, object] = {"name": name, "elem_type": kind_mine}
    if kind_mine != kind_theirs or mine.shape != theirs.shape:
        row.update(
            ok=False,
            reason=f"claimed {kind_theirs}{list(theirs.shape)}, "
            f"recomputed {kind_mine}{list(mine.shape)}",
        )
        return row
    identical = canonical_bytes(mine) == canonical_bytes(theirs)
    if identical and kind_mine in FLOAT_TYPES:  # nothing to measure: skip the float64 copies
        row.update(
            comparison="bit-exact" if exact else "tolerance",
            rtol=tol.rtol,
            atol=tol.atol,
            max_abs_error=0.0,
            max_rel_error=0.0,
            mismatches=0,
            ok=True,
        )
        return row
    if kind_mine not in FLOAT_TYPES:
        mismatches = int(np.count_nonzero(mine != theirs)) if not identical else 0
        row.update(comparison="exact", mismatches=mismatches, ok=identical)
        return row
    a = mine.astype(np.complex128 if mine.dtype.kind == "c" else np.float64)
    b = theirs.astype(a.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        finite = np.isfinite(a)
        # Where the recomputed value is NaN or infinite the claim must be the same special value
        # (an infinite bound would otherwise accept anything).
        same_special = (np.isnan(a) & np.isnan(b)) | (~finite & (a == b))
        diff = np.where(same_special, 0.0, diff)
        bound = tol.atol + tol.rtol * np.abs(a)
        bad = np.where(finite, ~(diff <= bound), ~same_special)
        rel = diff / np.maximum(np.abs(a), np.finfo(np.float64).tiny)
    row.update(
        comparison="bit-exact" if exact else "tolerance",
        rtol=tol.rtol,
        atol=tol.atol,
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        max_rel_error=float(rel.max()) if rel.size else 0.0,
        mismatches=_bit_differences(mine, theirs) if exact else int(np.count_nonzero(bad)),
        ok=identical if exact else not bad.any(),
    )
    return row


def _bit_differences(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> int:
    """Elements whose bit patterns differ (the count that matters for bit-exact comparison)."""
    width = a.dtype.itemsize
    if width in (1, 2, 4, 8):  # one unsigned integer per element: a single vectorized compare
        lanes = np.dtype(f"<u{width}")
        return int(
            np.count_nonzero(
                np.ascontiguousarray(a).view(lanes) != np.ascontiguousarray(b).view(lanes)
            )
        )
    rows_a = np.ascontiguousarray(a).view(np.uint8).reshape(a.size, width)
    rows_b = np.ascontiguousarray(b).view(np.uint8).reshape(b.size, width)
    return int(np.count_nonzero((rows_a != rows_b).any(axis=1)))
