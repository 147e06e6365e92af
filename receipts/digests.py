"""Domain-separated SHA-256 digests of tensors, tensor maps and records (the ground floor).

Every digest is SHA-256 over ``"inference-receipts/v1/" + kind + "\\x00"`` followed by the
kind's bytes, so a digest of one kind can never be replayed as another. Digests print as
``sha256:<hex>``.

    d = tensor_digest(np.zeros(3, np.float32))     # covers element type, shape and bytes
    str(d)                                          # 'sha256:...'
    m = tensor_map_digest({"x": d})                 # names sorted by UTF-8 bytes

Kinds used in v1: ``tensor``, ``sequence``, ``none``, ``tensor-map``, ``model-structure``,
``runtime-profile``, ``receipt``, ``key-id``, and for disputes ``dispute-message``, ``opening``,
``evidence``. Model digests and trace roots are RFC 6962 Merkle roots (see ``merkle``,
``model`` and ``trace``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from receipts import codec
from receipts.codec import MapReader
from receipts.errors import MalformedError, TensorError
from receipts.tensors import TensorSpec, canonical_chunks, elem_type_of, utf8

DOMAIN = b"inference-receipts/v1/"
ALGORITHM = "sha256"


@dataclass(frozen=True, slots=True)
class Digest:
    """A SHA-256 digest; the algorithm is part of its printed name."""

    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != 32:
            raise MalformedError(f"a sha256 digest is 32 bytes, got {len(self.value)}")

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.value.hex()}"

    def __repr__(self) -> str:
        return f"Digest({self})"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>``."""
        algorithm, _, hexpart = text.partition(":")
        if algorithm != ALGORITHM or len(hexpart) != 64 or hexpart != hexpart.lower():
            raise MalformedError(f"not a sha256 digest: {text[:80]!r}")
        try:
            return cls(bytes.fromhex(hexpart))
        except ValueError:
            raise MalformedError(f"not a sha256 digest: {text[:80]!r}") from None


def hasher(kind: str) -> Any:
    """A SHA-256 hasher already fed with the domain prefix of ``kind``."""
    return _prefixed(kind).copy()


@lru_cache(maxsize=64)
def _prefixed(kind: str) -> Any:
    h = hashlib.sha256()
    h.update(DOMAIN + kind.encode("ascii") + b"\x00")
    return h


def digest_of(kind: str, *parts: bytes) -> Digest:
    h = hasher(kind)
    for part in parts:
        h.update(part)
    return Digest(h.digest())


def record_digest(kind: str, value: object) -> Digest:
    """Digest of a record given as a plain value, over its canonical encoding."""
    return digest_of(kind, codec.encode(value))


@lru_cache(maxsize=1024)
def tensor_header(spec_elem_type: str, shape: tuple[int, ...]) -> bytes:
    """The canonical header that precedes a tensor's bytes in its digest."""
    return codec.encode({"elem_type": spec_elem_type, "shape": list(shape)})


def tensor_digest(array: np.ndarray[Any, Any]) -> Digest:
    """Digest of a tensor: element type, shape, then its canonical bytes."""
    h = hasher("tensor")
    h.update(tensor_header(elem_type_of(array).name, tuple(array.shape)))
    for chunk in canonical_chunks(array):
        h.update(chunk)
    return Digest(h.digest())


def tensor_map_digest(digests: Mapping[str, Digest]) -> Digest:
    """Digest of named tensors: ``[[name, tensor digest], ...]`` sorted by UTF-8 name."""
    entries = sorted(digests.items())  # code-point order = UTF-8 byte order
    return record_digest("tensor-map", [[name, d.value] for name, d in entries])


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorEntry:
    """What a receipt records of one tensor: its spec and its digest."""

    spec: TensorSpec
    digest: Digest

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        return f"{self.spec.elem_type}{list(self.spec.shape)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SequenceEntry:
    """A sequence of tensors (ONNX ``seq(tensor)``): its items, and a digest derived from them.

    ``digest = digest("sequence", canonical([item tensor digest, ...]))``; item ``i`` is named
    ``NAME[i]`` in reports.
    """

    name: str
    items: tuple[TensorEntry, ...]
    digest: Digest = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if [item.name for item in self.items] != item_names(self.name, len(self.items)):
            raise MalformedError(f"sequence {self.name!r}: items must be named {self.name}[i]")
        digest = record_digest("sequence", [item.digest.value for item in self.items])
        object.__setattr__(self, "digest", digest)

    def describe(self) -> str:
        return f"sequence of {len(self.items)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NoneEntry:
    """An empty ONNX optional; ``digest = digest("none", "")``."""

    name: str
    digest: Digest = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "digest", digest_of("none"))

    def describe(self) -> str:
        return "an empty optional"


Entry = TensorEntry | SequenceEntry | NoneEntry
# A value a model takes or gives: a tensor, a sequence of tensors, or an empty optional.
Value = np.ndarray[Any, Any] | list[np.ndarray[Any, Any]] | None


def _check_name(name: str) -> None:
    if not name or len(utf8(name, "value name")) > 1024:
        raise MalformedError(f"value name {name[:40]!r} is empty or too long")


def item_names(name: str, count: int) -> list[str]:
    return [f"{name}[{i}]" for i in range(count)]


def value_entry(name: str, value: object) -> Entry:
    """The entry of one named value (arrays, lists of arrays, or None)."""
    if isinstance(value, dict) or (
        isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value)
    ):
        raise TensorError(
            f"{name!r} is an ONNX map; receipts carry tensors, sequences and optionals"
        )
    if value is None:
        return NoneEntry(name=name)
    if isinstance(value, list | tuple):
        items = tuple(
            TensorEntry(spec=TensorSpec.of(item_name, item), digest=tensor_digest(item))
            for item_name, item in zip(
                item_names(name, len(value)), map(np.asarray, value), strict=True
            )
        )
        return SequenceEntry(name=name, items=items)
    array = np.asarray(value)
    return TensorEntry(spec=TensorSpec.of(name, array), digest=tensor_digest(array))


def flat_tensors(values: Mapping[str, object]) -> dict[str, np.ndarray[Any, Any] | None]:
    """Tensors by name, sequence items as ``NAME[i]``; empty optionals as ``None``."""
    flat: dict[str, np.ndarray[Any, Any] | None] = {}
    for name, value in values.items():
        if isinstance(value, list | tuple):
            flat.update(zip(item_names(name, len(value)), map(np.asarray, value), strict=True))
        else:
            flat[name] = None if value is None else np.asarray(value)
    return flat


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorMapDigest:
    """Named entries (unique, sorted by name) and the tensor-map digest derived from them."""

    entries: tuple[Entry, ...]
    digest: Digest = field(init=False)

    def __post_init__(self) -> None:
        names = [e.name for e in self.entries]
        # Code-point order of text equals the byte order of its UTF-8 encoding.
        if any(a >= b for a, b in itertools.pairwise(names)):
            raise MalformedError("tensor entries must be unique and sorted by UTF-8 name")
        digest = tensor_map_digest({e.name: e.digest for e in self.entries})
        object.__setattr__(self, "digest", digest)

    @classmethod
    def of(cls, values: Mapping[str, object]) -> TensorMapDigest:
        return cls.from_entries(value_entry(name, value) for name, value in values.items())

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> TensorMapDigest:
        return cls(entries=tuple(sorted(entries, key=lambda e: e.name)))

    def by_name(self) -> dict[str, Entry]:
        return {e.name: e for e in self.entries}

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the plain tensors (what metering reads)."""
        return {e.name: e.spec.shape for e in self.entries if isinstance(e, TensorEntry)}


# -- entries on the wire (receipts and trace leaves) ------------------------------------------

MAX_ITEMS = 4096  # items of one sequence


def _tensor_wire(entry: TensorEntry) -> dict[str, object]:
    return {
        "elem_type": entry.spec.elem_type,
        "shape": list(entry.spec.shape),
        "digest": entry.digest.value,
    }


def entry_to_wire(entry: Entry) -> dict[str, object]:
    if isinstance(entry, TensorEntry):
        return {"name": entry.name, **_tensor_wire(entry)}
    if isinstance(entry, SequenceEntry):
        items = [_tensor_wire(item) for item in entry.items]
        return {
            "name": entry.name,
            "kind": "sequence",
            "items": items,
            "digest": entry.digest.value,
        }
    return {"name": entry.name, "kind": "none", "digest": entry.digest.value}


def entry_from_wire(value: object) -> Entry:
    t = MapReader(value, "tensor")
    name = t.text("name")
    # "kind" is absent for tensors: an explicit "tensor" would be a second encoding.
    kind = t.text("kind", 16) if t.has("kind") else "tensor"
    if t.has("kind") and kind == "tensor":
        raise MalformedError(f"{name!r}: tensors carry no 'kind' field")
    entry: Entry
    if kind == "tensor":
        entry = _tensor_from_wire(t, name)
    elif kind == "sequence":
        items = t.array("items", MAX_ITEMS)
        entry = SequenceEntry(
            name=name,
            items=tuple(
                _item_from_wire(item, item_name)
                for item_name, item in zip(item_names(name, len(items)), items, strict=True)
            ),
        )
    elif kind == "none":
        entry = NoneEntry(name=name)
    else:
        raise MalformedError(f"unknown value kind {kind!r}")
    if kind != "tensor" and t.binary("digest", 32) != entry.digest.value:
        raise MalformedError(f"{name!r}: digest does not match its items")
    t.close()
    return entry


def _tensor_from_wire(t: MapReader, name: str) -> TensorEntry:
    raw_shape = t.array("shape", 64)
    shape = tuple(d for d in raw_shape if isinstance(d, int) and not isinstance(d, bool))
    if len(shape) != len(raw_shape):
        raise MalformedError("tensor shape must be a list of integers")
    spec = TensorSpec(name=name, elem_type=t.text("elem_type", 32), shape=shape)
    return TensorEntry(spec=spec, digest=Digest(t.binary("digest", 32)))


def _item_from_wire(value: object, name: str) -> TensorEntry:
    r = MapReader(value, "sequence item")
    entry = _tensor_from_wire(r, name)
    r.close()
    return entry
