"""Trace commitments and the trace file (formats layer, beside ``receipt``).

A traced run records every node's outputs. Each node gives one *leaf*: its index, op type, op
domain, node name and the entries (element type, shape, digest) of its outputs, encoded
canonically. The trace root is the RFC 6962 Merkle root over the leaves in node order; a receipt
carries it with the node count as its ``trace`` commitment, so every later opening, spot check and
dispute round is checked against bytes the provider signed.

The provider keeps the tensors in a trace file, ``trace.rtrc``: a magic line, then frames of
``kind (1 byte) | length (8 bytes, big-endian) | bytes``, in this order:

    header   canonical map {type: "trace", version: 1, model: <digest>, nodes: N}
    node i   the leaf bytes of node i (exactly what is hashed), for i = 0 .. N-1, each followed by
    tensor   the canonical bytes of each output tensor of node i (sequence items in order,
             nothing for an empty optional)
    end      canonical map {nodes: N, root: <trace root>}

It is written and read in one pass; a reader indexes frame offsets and skips tensor bytes, so
opening one node of a large trace reads that node's tensors only.

    reader = TraceReader.open(Path("out/trace.rtrc"))
    reader.check_commitment(receipt)        # root, node count and model are the receipt's
    values = reader.values(12)              # node 12's outputs, checked against its leaf
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from receipts import codec, merkle
from receipts.codec import MapReader
from receipts.digests import (
    Digest,
    Entry,
    NoneEntry,
    SequenceEntry,
    TensorEntry,
    Value,
    entry_from_wire,
    entry_to_wire,
    tensor_digest,
)
from receipts.errors import LimitError, MalformedError, TraceError, UnsupportedVersionError
from receipts.frames import MAP_LIMITS, FrameReader, write_frame, write_tensor_frame
from receipts.tensors import ELEM_TYPES, byte_length, element_count
from receipts.tensors import from_canonical_bytes as _from_bytes

TRACE_MAGIC = b"\x89RTRACE\n"
TRACE_VERSION = 1
MAX_NODES = 1 << 20
_HEADER, _NODE, _TENSOR, _END = 1, 2, 3, 4


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceCommitment:
    """What a receipt says about its trace: the Merkle root over node leaves and their count."""

    root: Digest
    nodes: int

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise MalformedError(f"a trace has 1..{MAX_NODES} nodes, not {self.nodes}")

    def to_wire(self) -> dict[str, object]:
        return {"root": self.root.value, "nodes": self.nodes}

    @classmethod
    def from_wire(cls, r: MapReader) -> TraceCommitment:
        commitment = cls(root=Digest(r.binary("root", 32)), nodes=r.integer("nodes", 1, MAX_NODES))
        r.close()
        return commitment


@dataclass(frozen=True, kw_only=True)  # no slots: the encoding and hash are cached
class TraceLeaf:
    """One node's leaf: which node it is and what it output."""

    index: int
    op: str
    domain: str
    name: str
    outputs: tuple[Entry, ...]

    def to_wire(self) -> dict[str, object]:
        return {
            "kind": "trace-node",
            "index": self.index,
            "op": self.op,
            "domain": self.domain,
            "name": self.name,
            "outputs": [entry_to_wire(e) for e in self.outputs],
        }

    @cached_property
    def data(self) -> bytes:
        """The leaf's canonical bytes: what the trace file holds and the Merkle leaf hashes."""
        return codec.encode(self.to_wire())

    @cached_property
    def hash(self) -> bytes:
        return merkle.leaf_hash(self.data)

    def entry(self, name: str) -> Entry:
        for e in self.outputs:
            if e.name == name:
                return e
        raise TraceError(f"node #{self.index} has no output {name!r}")

    @classmethod
    def decode(cls, data: bytes) -> TraceLeaf:
        r = MapReader(codec.decode(data, limits=MAP_LIMITS), "trace leaf")
        if r.text("kind", 16) != "trace-node":
            raise TraceError("not a trace node leaf")
        leaf = cls(
            index=r.integer("index", 0, MAX_NODES - 1),
            op=r.text("op", 256),
            domain=r.text("domain", 256),
            name=r.text("name"),
            outputs=tuple(entry_from_wire(e) for e in r.array("outputs", 4096)),
        )
        r.close()
        return leaf


def trace_root(leaves: Sequence[TraceLeaf]) -> Digest:
    return Digest(merkle.root([leaf.hash for leaf in leaves]))


def node_payloads(entry: Entry) -> list[TensorEntry]:
    """The tensors a trace file holds for one output, in file order."""
    if isinstance(entry, TensorEntry):
        return [entry]
    if isinstance(entry, SequenceEntry):
        return list(entry.items)
    return []


# -- writing --------------------------------------------------------------------------------------


def write_trace(
    f: BinaryIO | IO[bytes],
    *,
    model: Digest,
    leaves: Sequence[TraceLeaf],
    values: Sequence[dict[str, Value]],
) -> Digest:
    """Stream a trace file: ``values[i]`` are node i's outputs, ``leaves[i]`` their leaf."""
    f.write(TRACE_MAGIC)
    header = {"type": "trace", "version": TRACE_VERSION, "model": model.value, "nodes": len(leaves)}
    write_frame(f, _HEADER, codec.encode(header))
    for leaf, node_values in zip(leaves, values, strict=True):
        write_frame(f, _NODE, leaf.data)
        for entry in leaf.outputs:
            value = node_values[entry.name]
            arrays = value if isinstance(value, list) else [] if value is None else [value]
            for array in arrays:
                write_tensor_frame(f, _TENSOR, np.asarray(array))
    root = trace_root(leaves)
    write_frame(f, _END, codec.encode({"nodes": len(leaves), "root": root.value}))
    return root


# -- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Blob:
    offset: int
    length: int
    entry: TensorEntry


@dataclass(kw_only=True)
class TraceReader:
    """An indexed trace file: leaves in memory, tensor offsets for reading on demand."""

    path: Path
    model: Digest
    leaves: tuple[TraceLeaf, ...]
    root: Digest
    _blobs: tuple[tuple[_Blob, ...], ...] = field(repr=False)
    _file: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: Path) -> TraceReader:
        """Read and check the frame structure, the leaves and the root; tensors stay on disk."""
        if not path.is_file():
            raise TraceError(f"cannot read trace {path}: not a regular file")
        try:
            f = path.open("rb")
        except OSError as e:
            raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from e
        try:
            return cls._index(path, f)
        except (TraceError, LimitError, UnsupportedVersionError):
            f.close()
            raise
        except MalformedError as e:  # a field of the header or end frame
            f.close()
            raise TraceError(f"trace file: {e}") from e
        except BaseException:
            f.close()
            raise

    @classmethod
    def _index(cls, path: Path, f: IO[bytes]) -> TraceReader:
        size = os.fstat(f.fileno()).st_size
        frames = FrameReader(f, size, what="trace file", error_type=TraceError)
        frames.magic(TRACE_MAGIC)
        header = MapReader(frames.map(_HEADER, "header"), "trace header")
        if header.text("type", 16) != "trace":
            raise TraceError("not a trace header")
        if header.integer("version", 0, 255) != TRACE_VERSION:
            raise UnsupportedVersionError("trace version is not supported (only 1)")
        model = Digest(header.binary("model", 32))
        count = header.integer("nodes", 1, MAX_NODES)
        header.close()
        leaves: list[TraceLeaf] = []
        blobs: list[tuple[_Blob, ...]] = []
        for i in range(count):
            leaf = _decode_leaf(frames.read(_NODE, f"node #{i}", MAP_LIMITS.max_bytes), i)
            if leaf.index != i:
                raise TraceError(f"node frames out of order: frame {i} holds node #{leaf.index}")
            node_blobs = []
            for entry in leaf.outputs:
                for item in node_payloads(entry):
                    offset, length = frames.skip(_TENSOR, f"node #{i} tensor {item.name!r}")
                    _check_length(item, length)
                    node_blobs.append(_Blob(offset=offset, length=length, entry=item))
            leaves.append(leaf)
            blobs.append(tuple(node_blobs))
        end = MapReader(frames.map(_END, "end"), "trace end")
        if end.integer("nodes", 1, MAX_NODES) != count:
            raise TraceError("trace end frame disagrees with the header on the node count")
        root = Digest(end.binary("root", 32))
        end.close()
        frames.end()
        if trace_root(leaves) != root:
            raise TraceError("the trace's leaves do not hash to the root it states")
        return cls(
            path=path, model=model, leaves=tuple(leaves), root=root, _blobs=tuple(blobs), _file=f
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def commitment(self) -> TraceCommitment:
        return TraceCommitment(root=self.root, nodes=len(self.leaves))

    def check_commitment(self, commitment: TraceCommitment | None, model: Digest) -> None:
        """The trace is the one the receipt commits to (same root and node count, same model)."""
        if commitment is None:
            raise TraceError("the receipt carries no trace commitment (run with --trace)")
        if self.model != model:
            raise TraceError("the trace is of another model than the receipt's")
        if commitment != self.commitment:
            raise TraceError(
                f"the trace is not the receipt's: the receipt commits to {commitment.nodes} nodes "
                f"with root {commitment.root}, the trace has {len(self.leaves)} with {self.root}"
            )

    @cached_property
    def tree(self) -> merkle.MerkleTree:
        return merkle.MerkleTree([leaf.hash for leaf in self.leaves])

    def values(self, index: int, *, check: bool = True) -> dict[str, Value]:
        """Node ``index``'s outputs, read from disk and checked against its leaf. Openings pass
        ``check=False``: checking an opening (o2, o3) compares the same digests again."""
        if not 0 <= index < len(self.leaves):
            raise TraceError(f"node index {index} is out of range (the trace has {len(self)})")
        blobs = iter(self._blobs[index])
        out: dict[str, Value] = {}
        for entry in self.leaves[index].outputs:
            if isinstance(entry, NoneEntry):
                out[entry.name] = None
            elif isinstance(entry, SequenceEntry):
                out[entry.name] = [self._read(next(blobs), check=check) for _ in entry.items]
            else:
                out[entry.name] = self._read(next(blobs), check=check)
        return out

    def _read(self, blob: _Blob, *, check: bool) -> np.ndarray[Any, Any]:
        if self._file is None:
            raise TraceError("the trace file is closed")
        self._file.seek(blob.offset)
        data = self._file.read(blob.length)
        if len(data) != blob.length:
            raise TraceError(f"trace file ends inside tensor {blob.entry.name!r}")
        if not check:
            try:
                etype = ELEM_TYPES[blob.entry.spec.elem_type]
                return _from_bytes(etype, blob.entry.spec.shape, data)
            except MalformedError as e:
                raise TraceError(f"trace: tensor {blob.entry.name!r}: {e}") from e
        return decode_tensor(blob.entry, data, "trace")

    def check_all(self) -> None:
        """Read every tensor and check it against its leaf (a full audit of the file)."""
        for i in range(len(self.leaves)):
            self.values(i)

    def __len__(self) -> int:
        return len(self.leaves)

    def iter_values(self) -> Iterator[dict[str, Value]]:
        for i in range(len(self.leaves)):
            yield self.values(i)


def _decode_leaf(data: bytes, i: int) -> TraceLeaf:
    try:
        return TraceLeaf.decode(data)
    except TraceError:
        raise
    except MalformedError as e:
        raise TraceError(f"trace node #{i}: {e}") from e


def decode_tensor(entry: TensorEntry, data: bytes, where: str) -> np.ndarray[Any, Any]:
    """The tensor ``entry`` describes, from canonical bytes that must hash to its digest."""
    etype = ELEM_TYPES[entry.spec.elem_type]
    try:
        array = _from_bytes(etype, entry.spec.shape, data)
    except MalformedError as e:
        raise TraceError(f"{where}: tensor {entry.name!r}: {e}") from e
    if tensor_digest(array) != entry.digest:
        raise TraceError(f"{where}: tensor {entry.name!r} does not match its digest")
    return array


def _check_length(entry: TensorEntry, length: int) -> None:
    etype = ELEM_TYPES[entry.spec.elem_type]
    if etype.name == "string":
        return
    expected = byte_length(etype, element_count(entry.spec.shape))
    if length != expected:
        raise TraceError(
            f"tensor {entry.name!r} ({entry.describe()}) takes {expected} bytes, "
            f"the trace frame holds {length}"
        )
