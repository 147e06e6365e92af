"""Tensors packed into public signals: several values per BN254 field element (zk rung).

A tensor's public signals are its values in row-major order, each shifted to be non-negative
(``v - lo`` for its ONNX type's range ``[lo, hi]``) and packed little-endian, ``b`` bits per value
(``b`` the width of the range) and ``248 // b`` values per field element, so a signal stays below
2^248 < P. The compiler packs signals (a free linear combination of range-proven wires, so the
packing is injective); the verifier packs the tensors whose digests the receipt holds and compares.

    pack_values(np.array([1, 2, 3], dtype=np.uint8), "uint8")   # [1 + 2*2^8 + 3*2^16]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from circuits.builder import Signal, dot
from receipts.errors import CircuitFormatError

PACK_BITS = 248
RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
}


def layout(dtype: str) -> tuple[int, int, int]:
    """``(lo, bits per value, values per signal)`` for ``dtype``."""
    if dtype not in RANGES:
        raise CircuitFormatError(f"{dtype} values are not packed (integer types only)")
    lo, hi = RANGES[dtype]
    bits = (hi - lo).bit_length()
    return lo, bits, PACK_BITS // bits


def pack_signals(signals: Sequence[Signal], dtype: str) -> list[Signal]:
    """The packed public signals of range-proven ``signals`` (linear: no constraint)."""
    lo, bits, per = layout(dtype)
    out = []
    for start in range(0, len(signals), per):
        chunk = [s.shift(-lo) for s in signals[start : start + per]]
        out.append(dot(chunk, [1 << (bits * i) for i in range(len(chunk))]))
    return out


def pack_values(values: np.ndarray, dtype: str) -> list[int]:
    """The same packing of plain values (what a verifier computes from a tensor)."""
    lo, hi = RANGES.get(dtype, (0, -1))
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    if any(not lo <= v <= hi for v in flat):
        raise CircuitFormatError(f"a value is outside {dtype}'s range")
    lo, bits, per = layout(dtype)
    return [
        sum((v - lo) << (bits * i) for i, v in enumerate(flat[start : start + per]))
        for start in range(0, len(flat), per)
    ]
