"""Receipt v1: the record a provider signs, and its conversion to and from the wire (formats).

A receipt binds the provider key, a nonce (and optionally the payer's request digest), the model
digest, the input and output tensor maps (names, element types, shapes, digests), the runtime
profile, the meter, the issue time and, for traced runs, the trace commitment (``trace``). It
is immutable and validated at construction, so an invalid receipt cannot exist; ``from_wire``
rejects unknown fields and versions.

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
    TensorMapDigest,
    digest_of,
    entry_from_wire,
    entry_to_wire,
)
from receipts.errors import MalformedError, UnsupportedVersionError
from receipts.meter import Meter
from receipts.runtime import RuntimeProfile
from receipts.trace import TraceCommitment

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
    trace: TraceCommitment | None = None

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
        if self.trace is not None:
            wire["trace"] = self.trace.to_wire()
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
            trace=TraceCommitment.from_wire(r.map("trace")) if r.has("trace") else None,
        )
        r.close()
        return receipt


def _tensors_to_wire(tensors: TensorMapDigest) -> dict[str, object]:
    return {"digest": tensors.digest.value, "tensors": [entry_to_wire(e) for e in tensors.entries]}


def _tensors_from_wire(r: MapReader) -> TensorMapDigest:
    entries = [entry_from_wire(item) for item in r.array("tensors", MAX_TENSORS)]
    tensors = TensorMapDigest(entries=tuple(entries))
    if r.binary("digest", 32) != tensors.digest.value:
        raise MalformedError("tensor map digest does not match its entries")
    r.close()
    return tensors
