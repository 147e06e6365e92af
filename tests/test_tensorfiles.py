"""Tensor files whose zip structure is damaged: a typed TensorError, never a bare exception."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from receipts.errors import TensorError
from receipts.tensorfiles import load_tensors


def _npz(tmp_path: Path) -> bytearray:
    path = tmp_path / "x.npz"
    np.savez(path, x=np.arange(4, dtype=np.float32))
    return bytearray(path.read_bytes())


def _patch_headers(data: bytearray, offset: int, value: int) -> None:
    """Set a 2-byte field at ``offset`` from every local (PK\\3\\4) and central (PK\\1\\2)
    header: the flags sit at 6 and 8, the method at 8 and 10, respectively."""
    for magic, shift in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        start = data.find(magic)
        while start != -1:
            struct.pack_into("<H", data, start + offset + shift, value)
            start = data.find(magic, start + 4)


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [(6, 0x0001, "encrypted"), (8, 99, "compression method")],
    ids=["encrypted_flag", "unknown_compression_method"],
)
def test_damaged_zip_flags_are_a_tensor_error(
    tmp_path: Path, offset: int, value: int, why: str
) -> None:
    data = _npz(tmp_path)
    _patch_headers(data, offset, value)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(TensorError, match=r"cannot be read|unreadable|not an \.npz"):
        load_tensors(damaged)
