"""Receipt v1: the record a provider signs, and its conversion to and from the wire (formats).

A receipt binds the provider key, a nonce (and optionally the payer's request digest), the model
digest, the input and output tensor maps (names, element types, shapes, digests), the runtime
profile, the meter and the issue time. It is immutable and validated at construction, so an
invalid receipt cannot exist; ``from_wire`` rejects unknown fields and versions.

    payload = receipt.encode()                      # canonical bytes; what the envelope signs
    same = Receipt.decode(payload)                  # strict; raises MalformedError and kin
    receipt_id(payload)                             # sha256:... of the exact payload bytes

Field by field, see docs/receipt-v1.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from receipts import codec
from receipts.codec import MapReader
from receipts.digests import (
    Digest,
    Entry,
    NoneEntry,
    SequenceEntry,
    TensorEntry,
    TensorMapDigest,
    digest_of,
    item_names,
)
from receipts.errors import MalformedError, UnsupportedVersionError
from receipts.meter import Meter
from receipts.runtime import RuntimeProfile
from receipts.tensors import TensorSpec

RECEIPT_TYPE = "receipt"
RECEIPT_VERSION = 1
MAX_TENSORS = 4096


def receipt_id(payload: bytes) -> Digest:
    """The receipt's identifier: the digest of its exact signed payload bytes."""
    return digest_of("receipt", payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """One signed statement: this provider ran this model on these inputs and got these outputs."""

    provider: bytes
    nonce: bytes
    request: Digest | None = None
    issued_at: int
    model: Digest
    inputs: TensorMapDigest
    outputs: TensorMapDigest
    runtime: RuntimeProfile
    meter: Meter

    def __post_init__(self) -> None:
        if len(self.provider) != 32:
            raise MalformedError("provider key id must be 32 bytes")
        if not 16 <= len(self.nonce) <= 64:
            raise MalformedError("nonce must be 16..64 bytes")
        if not 0 <= self.issued_at < 2**63:
            raise MalformedError("issued_at must be milliseconds since the epoch")
        if not self.outputs.entries:
            raise MalformedError("a receipt binds at least one output")

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "type": RECEIPT_TYPE,
            "version": RECEIPT_VERSION,
            "provider": self.provider,
            "nonce": self.nonce,
            "issued_at": self.issued_at,
            "model": {"digest": self.model.value},
            "inputs": _tensors_to_wire(self.inputs),
            "outputs": _tensors_to_wire(self.outputs),
            "runtime": self.runtime.to_wire(),
            "meter": self.meter.to_wire(),
        }
        if self.request is not None:
            wire["request"] = {"digest": self.request.value}
        return wire

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, payload: bytes) -> Receipt:
        """Step (4): the signed payload is a canonical receipt v1."""
        return cls.from_wire(codec.decode(payload))

    @classmethod
    def from_wire(cls, value: object) -> Receipt:
        r = MapReader(value, "receipt")
        kind, version = r.text("type", 64), r.integer("version", 0, codec.INT_MAX)
        if kind != RECEIPT_TYPE:
            raise UnsupportedVersionError(f"payload is not a receipt (type {kind!r})")
        if version != RECEIPT_VERSION:
            raise UnsupportedVersionError(f"receipt version {version} is not supported (only 1)")
        request = None
        if r.has("request"):
            req = r.map("request")
            request = Digest(req.binary("digest", 32))
            req.close()
        model = r.map("model")
        model_digest = Digest(model.binary("digest", 32))
        model.close()
        receipt = cls(
            provider=r.binary("provider", 32),
            nonce=r.binary("nonce", max_len=64),
            request=request,
            issued_at=r.integer("issued_at", 0, 2**63 - 1),
            model=model_digest,
            inputs=_tensors_from_wire(r.map("inputs")),
            outputs=_tensors_from_wire(r.map("outputs")),
            runtime=RuntimeProfile.from_wire(r.map("runtime")),
            meter=Meter.from_wire(r.map("meter")),
        )
        r.close()
        return receipt


def _tensors_to_wire(tensors: TensorMapDigest) -> dict[str, object]:
    return {"digest": tensors.digest.value, "tensors": [_entry_to_wire(e) for e in tensors.entries]}


def _tensor_wire(entry: TensorEntry) -> dict[str, object]:
    return {
        "elem_type": entry.spec.elem_type,
        "shape": list(entry.spec.shape),
        "digest": entry.digest.value,
    }


def _entry_to_wire(entry: Entry) -> dict[str, object]:
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


def _tensors_from_wire(r: MapReader) -> TensorMapDigest:
    entries = [_entry_from_wire(item) for item in r.array("tensors", MAX_TENSORS)]
    tensors = TensorMapDigest(entries=tuple(entries))
    if r.binary("digest", 32) != tensors.digest.value:
        raise MalformedError("tensor map digest does not match its entries")
    r.close()
    return tensors


def _entry_from_wire(value: object) -> Entry:
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
        items = t.array("items", MAX_TENSORS)
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
