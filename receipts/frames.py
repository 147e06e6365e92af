"""Framed binary files: a magic line, then ``kind | length | bytes`` frames (formats layer).

Trace files and evidence bundles hold canonical maps next to tensors too large for one msgpack
document. Both are a magic line followed by frames of ``kind (1 byte) | length (8 bytes,
big-endian) | bytes``; map frames hold canonical msgpack decoded under limits, tensor frames hold
canonical tensor bytes. Readers check every length against the file size before reading, so a
truncated or padded file fails with a one-line reason instead of a short read.

    write_frame(f, MAP, codec.encode({...}))
    frames = FrameReader(f, size, what="trace")
    frames.map(MAP, "header")          # decoded, canonical, within limits
    offset, length = frames.skip(TENSOR, "node #3 tensor 'y'")
"""

from __future__ import annotations

import struct
from typing import IO, Any

import numpy as np

from receipts import codec
from receipts.codec import Limits
from receipts.errors import LimitError, MalformedError
from receipts.tensors import canonical_chunks

FRAME = struct.Struct(">BQ")
MAP_LIMITS = Limits(max_bytes=1 << 20, max_depth=8)
MAX_TENSOR_BYTES = 4 << 30


def write_frame(f: IO[bytes], kind: int, data: bytes) -> None:
    f.write(FRAME.pack(kind, len(data)))
    f.write(data)


def write_tensor_frame(f: IO[bytes], kind: int, array: np.ndarray[Any, Any]) -> None:
    """One frame of canonical tensor bytes, written chunk by chunk without joining them."""
    chunks = list(canonical_chunks(array))
    f.write(FRAME.pack(kind, sum(len(c) for c in chunks)))
    for chunk in chunks:
        f.write(chunk)


class FrameReader:
    """Reads expected frames in order from a file of known size; errors are ``error_type``."""

    def __init__(
        self, f: IO[bytes], size: int, *, what: str, error_type: type[MalformedError]
    ) -> None:
        self.f, self.size, self.what, self.error = f, size, what, error_type

    def magic(self, magic: bytes) -> None:
        if self.f.read(len(magic)) != magic:
            raise self.error(f"not a valid {self.what} (bad magic)")

    def _head(self, kind: int, what: str, limit: int) -> int:
        head = self.f.read(FRAME.size)
        if len(head) != FRAME.size:
            raise self.error(f"truncated {self.what}: {what} is missing")
        got, length = FRAME.unpack(head)
        if got != kind:
            raise self.error(f"unexpected frame in the {self.what} where {what} belongs")
        if length > limit:
            raise LimitError(f"{self.what} {what} is {length} bytes, over the {limit}-byte limit")
        if self.f.tell() + length > self.size:
            raise self.error(f"truncated {self.what}: {what} ends past the end of the file")
        return int(length)

    def read(self, kind: int, what: str, limit: int) -> bytes:
        return self.f.read(self._head(kind, what, limit))

    def map(self, kind: int, what: str, limits: Limits = MAP_LIMITS) -> object:
        data = self.read(kind, what, limits.max_bytes)
        try:
            return codec.decode(data, limits=limits)
        except MalformedError as e:
            raise self.error(f"{self.what} {what}: {e}") from e

    def skip(self, kind: int, what: str) -> tuple[int, int]:
        """Offset and length of the next frame's bytes, which are not read."""
        length = self._head(kind, what, MAX_TENSOR_BYTES)
        offset = self.f.tell()
        self.f.seek(offset + length)
        return offset, length

    def end(self) -> None:
        extra = self.size - self.f.tell()
        if extra:
            raise self.error(f"{extra} byte(s) after the end of the {self.what}")
