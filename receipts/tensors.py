"""Element types and the canonical bytes of a tensor (the ground floor under tensor digests).

A tensor's identity is its element type, its shape and its canonical bytes: the bytes ONNX would
put in ``TensorProto.raw_data`` (little-endian, C order, booleans one byte, 2- and 4-bit types
packed low bits first), and for strings each element as a 4-byte little-endian length followed by
its bytes. The same definition serves model weights (read straight from ``raw_data`` or external
files) and runtime tensors (NumPy arrays), so both hash alike.

    spec = TensorSpec.of("x", np.zeros((2, 3), np.float32))   # TensorSpec(x, float32, (2, 3))
    data = canonical_bytes(np.zeros((2, 3), np.float32))        # 24 zero bytes
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto

from receipts.errors import LimitError, MalformedError, TensorError

# Hard ceilings for anything read from outside; callers may set lower ones.
MAX_RANK = 64
MAX_ELEMENTS = 1 << 34  # 16 Gi elements: beyond any single tensor a CPU runner can hold


@dataclass(frozen=True, slots=True)
class ElemType:
    """One ONNX element type: our text name, the ONNX enum value, NumPy dtype and bit width."""

    name: str
    onnx: int
    dtype: np.dtype[Any]
    bits: int  # 0 for strings (variable length)


def _table() -> dict[str, ElemType]:
    t = TensorProto
    rows: list[tuple[str, int, Any, int]] = [
        ("float32", t.FLOAT, np.float32, 32),
        ("uint8", t.UINT8, np.uint8, 8),
        ("int8", t.INT8, np.int8, 8),
        ("uint16", t.UINT16, np.uint16, 16),
        ("int16", t.INT16, np.int16, 16),
        ("int32", t.INT32, np.int32, 32),
        ("int64", t.INT64, np.int64, 64),
        ("string", t.STRING, np.object_, 0),
        ("bool", t.BOOL, np.bool_, 8),
        ("float16", t.FLOAT16, np.float16, 16),
        ("float64", t.DOUBLE, np.float64, 64),
        ("uint32", t.UINT32, np.uint32, 32),
        ("uint64", t.UINT64, np.uint64, 64),
        ("complex64", t.COMPLEX64, np.complex64, 64),
        ("complex128", t.COMPLEX128, np.complex128, 128),
        ("bfloat16", t.BFLOAT16, ml_dtypes.bfloat16, 16),
        ("float8e4m3fn", t.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn, 8),
        ("float8e4m3fnuz", t.FLOAT8E4M3FNUZ, ml_dtypes.float8_e4m3fnuz, 8),
        ("float8e5m2", t.FLOAT8E5M2, ml_dtypes.float8_e5m2, 8),
        ("float8e5m2fnuz", t.FLOAT8E5M2FNUZ, ml_dtypes.float8_e5m2fnuz, 8),
        ("uint4", t.UINT4, ml_dtypes.uint4, 4),
        ("int4", t.INT4, ml_dtypes.int4, 4),
        ("float4e2m1", t.FLOAT4E2M1, ml_dtypes.float4_e2m1fn, 4),
        ("float8e8m0", t.FLOAT8E8M0, ml_dtypes.float8_e8m0fnu, 8),
        ("uint2", t.UINT2, ml_dtypes.uint2, 2),
        ("int2", t.INT2, ml_dtypes.int2, 2),
    ]
    return {name: ElemType(name, onnx, np.dtype(dt), bits) for name, onnx, dt, bits in rows}


ELEM_TYPES: dict[str, ElemType] = _table()
# Types NumPy holds only through ml_dtypes: onnxruntime's Python API and .npz cannot carry them
# as such, so they travel as their bit patterns.
EXTENDED_TYPES = frozenset(
    e.name for e in ELEM_TYPES.values() if e.dtype.type.__module__.startswith("ml_dtypes")
)
_BY_ONNX = {e.onnx: e for e in ELEM_TYPES.values()}
_BY_DTYPE = {e.dtype: e for e in ELEM_TYPES.values() if e.name != "string"}


def elem_type(name: str) -> ElemType:
    try:
        return ELEM_TYPES[name]
    except KeyError:
        raise MalformedError(f"unknown element type {name!r}") from None


def elem_type_of_onnx(code: int) -> ElemType:
    try:
        return _BY_ONNX[code]
    except KeyError:
        raise TensorError(f"ONNX element type {code} is not supported") from None


def elem_type_of(array: np.ndarray[Any, Any]) -> ElemType:
    """The element type of a NumPy array; text arrays (str, bytes, object) are ``string``."""
    kind = array.dtype.kind
    if kind in "OUS":
        return ELEM_TYPES["string"]
    found = _BY_DTYPE.get(array.dtype.newbyteorder("=")) or _BY_DTYPE.get(array.dtype)
    if found is None:
        raise TensorError(f"NumPy dtype {array.dtype} has no ONNX element type")
    return found


def element_count(shape: tuple[int, ...]) -> int:
    """Product of ``shape`` with the limits checked before anything is allocated."""
    if len(shape) > MAX_RANK:
        raise LimitError(f"rank {len(shape)} exceeds {MAX_RANK}")
    if any(dim < 0 for dim in shape):
        raise MalformedError(f"negative dimension in shape {shape}")
    if any(dim > MAX_ELEMENTS for dim in shape):
        raise LimitError(f"shape {shape} has a dimension over {MAX_ELEMENTS}")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise LimitError(f"shape {shape} holds more than {MAX_ELEMENTS} elements")
    return count


def byte_length(etype: ElemType, count: int) -> int:
    """Length of the canonical bytes of ``count`` elements (fixed-width types only)."""
    per_byte = 8 // etype.bits if etype.bits < 8 else 0
    if per_byte:
        return (count + per_byte - 1) // per_byte
    return count * (etype.bits // 8)


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a name read from non-UTF-8 bytes) cannot be, and
    is a ``MalformedError`` rather than a ``UnicodeEncodeError``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedError(f"{what} {text[:40]!r} is not valid UTF-8") from e


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorSpec:
    """Name, element type and shape of one tensor: what a receipt says about it besides bytes."""

    name: str
    elem_type: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        elem_type(self.elem_type)
        element_count(self.shape)
        if not self.name or len(utf8(self.name, "tensor name")) > 1024:
            raise MalformedError(f"tensor name {self.name[:40]!r} is empty or too long")

    @classmethod
    def of(cls, name: str, array: np.ndarray[Any, Any]) -> TensorSpec:
        return cls(name=name, elem_type=elem_type_of(array).name, shape=tuple(array.shape))


def canonical_chunks(array: np.ndarray[Any, Any]) -> Iterator[bytes | memoryview]:
    """Yield the canonical bytes of ``array`` in pieces, without copying where possible."""
    etype = elem_type_of(array)
    if etype.name == "string":
        for item in array.reshape(-1):
            if isinstance(item, str):
                try:
                    data = item.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise TensorError("a string tensor holds text with no UTF-8 form") from e
            elif isinstance(item, bytes | np.bytes_):
                data = bytes(item)
            else:
                raise TensorError(f"a string tensor holds a {type(item).__name__}, not text")
            yield struct.pack("<I", len(data))
            yield data
        return
    flat = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    if etype.name == "bool":  # a NumPy bool byte may hold any non-zero value; ONNX holds 0 or 1
        flat = (flat.view(np.uint8) != 0).astype(np.uint8)
    if etype.bits < 8:
        yield _pack_subbyte(flat.reshape(-1).view(np.uint8), etype.bits)
    else:
        yield flat.reshape(-1).view(np.uint8).data


def canonical_bytes(array: np.ndarray[Any, Any]) -> bytes:
    return b"".join(canonical_chunks(array))


def _pack_subbyte(values: np.ndarray[Any, Any], bits: int) -> bytes:
    """Pack 2- or 4-bit values, first element in the low bits of each byte (ONNX raw_data)."""
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    padded = np.zeros(-(-values.size // per_byte) * per_byte, dtype=np.uint8)
    padded[: values.size] = values & mask
    lanes = padded.reshape(-1, per_byte)
    packed = np.zeros(lanes.shape[0], dtype=np.uint8)
    for lane in range(per_byte):
        packed |= lanes[:, lane] << (lane * bits)
    return packed.tobytes()


def unpack_subbyte(data: bytes, count: int, etype: ElemType) -> np.ndarray[Any, Any]:
    """Inverse of the packing above: ``count`` elements of a 2- or 4-bit type."""
    per_byte = 8 // etype.bits
    mask = (1 << etype.bits) - 1
    raw = np.frombuffer(data, dtype=np.uint8)
    lanes = [(raw >> (lane * etype.bits)) & mask for lane in range(per_byte)]
    values = np.stack(lanes, axis=1).reshape(-1)[:count]
    return values.astype(np.uint8).view(etype.dtype)


def from_canonical_bytes(
    etype: ElemType, shape: tuple[int, ...], data: bytes | bytearray | memoryview
) -> np.ndarray[Any, Any]:
    """The array whose canonical bytes are ``data`` (the inverse of ``canonical_bytes``).

    Refuses bytes ``canonical_bytes`` would never produce: wrong length, booleans other than 0
    and 1, padding bits set, strings that do not fill the data exactly."""
    count = element_count(shape)
    if etype.name == "string":
        return _strings_from_bytes(bytes(data), count).reshape(shape)
    if len(data) != byte_length(etype, count):
        raise MalformedError(
            f"{etype.name}{list(shape)} takes {byte_length(etype, count)} bytes, got {len(data)}"
        )
    if etype.bits < 8:
        per_byte = 8 // etype.bits
        if count % per_byte and data[-1] >> (etype.bits * (count % per_byte)):
            raise MalformedError("padding bits set in the last byte of a packed tensor")
        return unpack_subbyte(bytes(data), count, etype).reshape(shape)
    array = np.frombuffer(data, dtype=etype.dtype.newbyteorder("<")).reshape(shape)
    if etype.name == "bool" and bytes(data).translate(None, b"\x00\x01"):
        raise MalformedError("boolean bytes other than 0 and 1")
    return array.astype(etype.dtype, copy=False)


def _strings_from_bytes(data: bytes, count: int) -> np.ndarray[Any, Any]:
    items: list[object] = []
    at = 0
    for _ in range(count):
        if at + 4 > len(data):
            raise MalformedError("string tensor bytes end early")
        (size,) = struct.unpack_from("<I", data, at)
        at += 4
        if at + size > len(data):
            raise MalformedError("string tensor bytes end early")
        raw = data[at : at + size]
        at += size
        try:
            items.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            items.append(raw)  # ONNX strings are bytes; hash them as stored
    if at != len(data):
        raise MalformedError("string tensor bytes run past its elements")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array
