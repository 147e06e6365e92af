"""Canonical msgpack: the one encoding of every signed or hashed record (the ground floor).

Everything that is signed, hashed or written to a receipt file goes through ``encode`` and comes
back through ``decode``; no other module imports msgpack.

    data = encode({"version": 1, "type": "receipt"})
    assert decode(data) == {"type": "receipt", "version": 1}

The profile (docs/receipt-v1.md, "Canonical encoding"):

* values are maps with text keys, arrays, text (UTF-8 ``str``), bytes (``bin``), integers in
  [-2**63, 2**64-1] and booleans; no nil, no floats, no ext types;
* map keys are sorted by their UTF-8 bytes and unique;
* every length and integer uses the shortest msgpack form (what msgpack-python emits);
* the decoder accepts exactly what the encoder produces: it decodes, re-encodes and compares the
  bytes, so padded integers, unsorted or duplicate keys and trailing bytes are all rejected;
* explicit limits on total size, container lengths and nesting depth.

``MapReader`` is the schema side: models read decoded maps field by field with type checks and
reject keys they did not read, so an unknown field is an error rather than silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

from receipts.errors import LimitError, MalformedError, NonCanonicalError

Value: TypeAlias = (
    "bool | int | str | bytes | Sequence[Value] | Mapping[str, Value]"  # recursive type
)

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds applied while decoding untrusted bytes."""

    max_bytes: int = 1 << 20
    max_depth: int = 16
    max_container: int = 65_536
    max_str: int = 65_536


DEFAULT_LIMITS = Limits()


MAX_ENCODE_DEPTH = 128  # deeper than any record we make; bounded well below Python's recursion


def encode(value: object) -> bytes:
    """Encode ``value`` canonically; raises ``MalformedError`` for values outside the profile."""
    try:
        return msgpack.packb(_normalize(value, 0), use_bin_type=True)  # type: ignore[no-any-return]
    except UnicodeEncodeError as e:  # lone surrogates have no UTF-8 form
        raise MalformedError("text that cannot be encoded as UTF-8") from e


def _normalize(value: object, depth: int) -> object:
    # Exact-type checks first (the hot path); bool is tested by identity of type, so it stays a
    # msgpack boolean and never passes for an int.
    kind = type(value)
    if kind is str or kind is bytes or kind is bool:
        return value
    if kind is int:
        if INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return value
        raise MalformedError(f"integer {value} is outside the canonical range")
    if depth > MAX_ENCODE_DEPTH:
        raise LimitError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
    if kind is dict:
        mapping: dict[Any, object] = value  # type: ignore[assignment]
        if not all(type(key) is str for key in mapping):
            raise MalformedError("map keys must be text")
        # Code-point order of text equals the byte order of its UTF-8 encoding.
        return {key: _normalize(mapping[key], depth + 1) for key in sorted(mapping)}
    if kind is list or kind is tuple:
        return [_normalize(item, depth + 1) for item in value]  # type: ignore[attr-defined]
    return _normalize_other(value, depth)


def _normalize_other(value: object, depth: int) -> object:
    """Subclasses and look-alikes (IntEnum, StrEnum, Mapping, bytearray) in their plain form."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return _normalize(int(value), depth)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise MalformedError("map keys must be text")
        return _normalize({str(k): v for k, v in value.items()}, depth)
    raise MalformedError(f"{type(value).__name__} values are not allowed in canonical data")


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one canonical value that spans all of ``data``; raise on anything else."""
    if len(data) > limits.max_bytes:
        raise LimitError(f"{len(data)} bytes exceeds the limit of {limits.max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_sorted_pairs,
            timestamp=0,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bytes,
            max_array_len=limits.max_container,
            max_map_len=limits.max_container,
            max_ext_len=0,
        )
    except msgpack.ExtraData as e:
        raise MalformedError("trailing bytes after the encoded value") from e
    except msgpack.StackError as e:
        raise LimitError("nesting deeper than the decoder allows") from e
    except UnicodeDecodeError as e:
        raise MalformedError("text that is not valid UTF-8") from e
    except NonCanonicalError:
        raise
    except ValueError as e:
        # msgpack reports truncation, reserved bytes and over-long containers as ValueError.
        if "max_ext_len" in str(e):
            raise MalformedError("ext types are not allowed in canonical data") from e
        if "exceeds max_" in str(e):
            raise LimitError(f"container or text over the decoder's limit ({e})") from e
        reason = "truncated input" if "incomplete" in str(e) else f"not msgpack ({e or 'format'})"
        raise MalformedError(reason) from e
    _check_types(value, limits.max_depth)
    # Keys are known sorted and unique (the pairs hook), so packing the decoded value as it is
    # reproduces the canonical bytes; any other form (padded ints, long headers) differs.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise NonCanonicalError("bytes are not the canonical encoding of their value")
    return value


def _sorted_pairs(pairs: list[tuple[object, object]]) -> dict[str, object]:
    previous: str | None = None
    for key, _ in pairs:
        if type(key) is not str:
            raise NonCanonicalError("map key is not text")
        if previous is not None and key <= previous:
            problem = "duplicate" if key == previous else "unsorted"
            raise NonCanonicalError(f"{problem} map key {key!r}")
        previous = key
    return dict(pairs)  # type: ignore[arg-type]


_SCALARS = frozenset({bool, int, str, bytes})


def _check_types(value: object, max_depth: int) -> None:
    """Only the profile's types, nested at most ``max_depth`` containers deep."""
    if type(value) in _SCALARS:
        return
    _check_scalar_or_container(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            raise LimitError(f"nesting deeper than {max_depth} levels")
        items = container.values() if type(container) is dict else container
        for item in items:
            kind = type(item)
            if kind in _SCALARS:
                continue
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            else:
                _check_scalar_or_container(item)


def _check_scalar_or_container(item: object) -> None:
    kind = type(item)
    if kind is dict or kind is list:
        return
    if item is None:
        raise MalformedError("nil is not allowed in canonical data")
    if kind is float:
        raise MalformedError("floats are not allowed in canonical data")
    raise MalformedError(f"{kind.__name__} (an ext type) is not allowed")


class MapReader:
    """Reads one decoded map with type checks; ``close()`` rejects keys that were not read.

    >>> r = MapReader({"version": 1}, "receipt"); r.integer("version", 1, 1); r.close()
    1
    """

    __slots__ = ("_map", "_seen", "_what")

    def __init__(self, value: object, what: str) -> None:
        if not isinstance(value, dict):
            raise MalformedError(f"{what}: expected a map, got {_kind(value)}")
        self._map: dict[str, object] = value
        self._seen: set[str] = set()
        self._what = what

    def has(self, key: str) -> bool:
        return key in self._map

    def _get(self, key: str) -> object:
        self._seen.add(key)
        try:
            return self._map[key]
        except KeyError:
            raise MalformedError(f"{self._what}: missing field {key!r}") from None

    def raw(self, key: str) -> object:
        return self._get(key)

    def integer(self, key: str, lo: int = 0, hi: int = INT_MAX) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedError(f"{self._what}.{key}: expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise MalformedError(f"{self._what}.{key}: {value} is outside [{lo}, {hi}]")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise MalformedError(f"{self._what}.{key}: expected a boolean, got {_kind(value)}")
        return value

    def text(self, key: str, max_len: int = 1024) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise MalformedError(f"{self._what}.{key}: expected text, got {_kind(value)}")
        # A character is 1 to 4 UTF-8 bytes: only encode when the length alone cannot decide.
        if len(value) > max_len or (4 * len(value) > max_len and len(value.encode()) > max_len):
            raise MalformedError(f"{self._what}.{key}: longer than {max_len} bytes")
        return value

    def binary(self, key: str, size: int | None = None, max_len: int = 1 << 20) -> bytes:
        value = self._get(key)
        if not isinstance(value, bytes):
            raise MalformedError(f"{self._what}.{key}: expected bytes, got {_kind(value)}")
        if size is not None and len(value) != size:
            raise MalformedError(f"{self._what}.{key}: expected {size} bytes, got {len(value)}")
        if len(value) > max_len:
            raise MalformedError(f"{self._what}.{key}: longer than {max_len} bytes")
        return value

    def array(self, key: str, max_len: int = 65_536) -> list[object]:
        value = self._get(key)
        if not isinstance(value, list):
            raise MalformedError(f"{self._what}.{key}: expected an array, got {_kind(value)}")
        if len(value) > max_len:
            raise MalformedError(f"{self._what}.{key}: more than {max_len} items")
        return value

    def map(self, key: str) -> MapReader:
        return MapReader(self._get(key), f"{self._what}.{key}")

    def close(self) -> None:
        unknown = sorted(set(self._map) - self._seen)
        if unknown:
            raise MalformedError(f"{self._what}: unknown field(s) {', '.join(unknown)}")


def binaries(items: list[object], what: str, size: int | None = None) -> list[bytes]:
    """An array read with ``MapReader.array`` as a list of bytes (each ``size`` long if given)."""
    out = [i for i in items if isinstance(i, bytes) and (size is None or len(i) == size)]
    if len(out) != len(items):
        raise MalformedError(f"{what}: expected bytes" + (f" of {size}" if size else ""))
    return out


def _kind(value: object) -> str:
    names = {dict: "a map", list: "an array", str: "text", bytes: "bytes", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)
