"""The signed envelope: exact payload bytes, a payload type, and one signature over PAE.

Formats layer. The envelope carries the payload as the exact bytes that were signed; the verifier
checks the signature over ``PAE(payload_type, payload)`` on those received bytes and only then
decodes the payload. PAE is DSSE's pre-authentication encoding:

    PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body

(lengths in ASCII decimal, type in UTF-8). On the wire the envelope is a canonical map
``{"payload", "payload_type", "signatures", "type": "envelope", "version": 1}``; version 1 holds
exactly one signature ``{"key_id", "public_key", "scheme", "sig"}``. It may also carry
``attachments`` (``receipts.attachments``): evidence items outside the signature, absent when
there are none, so an envelope without evidence keeps its exact bytes.

    env = Envelope.sign(RECEIPT_PAYLOAD_TYPE, payload, signer)
    key = env.verify_signature(trusted=None)      # raises SignatureError
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from receipts import codec
from receipts.attachments import MAX_ATTACHMENTS, Attachment
from receipts.codec import MapReader
from receipts.errors import MalformedError, SignatureError, UnsupportedVersionError
from receipts.keys import PublicKey, Signer

ENVELOPE_TYPE = "envelope"
ENVELOPE_VERSION = 1
RECEIPT_PAYLOAD_TYPE = "application/vnd.inference-receipts.receipt.v1+msgpack"
MAX_ENVELOPE_BYTES = 1 << 20
# Who signs each record, for the one-line refusal of an untrusted key.
_SIGNERS = {
    RECEIPT_PAYLOAD_TYPE: "provider",
    "application/vnd.inference-receipts.ruling.v1+msgpack": "referee",
    "application/vnd.inference-receipts.request.v1+msgpack": "payer",
    "application/vnd.inference-receipts.dispute.v1+msgpack": "dispute party",
    "application/vnd.inference-receipts.dispute-notice.v1+msgpack": "payer",
}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload`` under ``payload_type``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """One signature entry; ``key_id`` must be derived from ``public_key``."""

    key_id: bytes
    public_key: PublicKey
    sig: bytes

    def __post_init__(self) -> None:
        if self.key_id != self.public_key.key_id:
            raise MalformedError("signature key_id is not derived from its public key")

    def to_wire(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "public_key": self.public_key.raw,
            "scheme": self.public_key.scheme,
            "sig": self.sig,
        }

    @classmethod
    def from_wire(cls, value: object) -> Signature:
        r = MapReader(value, "signature")
        key = PublicKey.parse(r.text("scheme", 16), r.binary("public_key", max_len=128))
        sig = cls(key_id=r.binary("key_id", 32), public_key=key, sig=r.binary("sig", max_len=128))
        r.close()
        return sig


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Payload bytes, payload type and the signature (and any evidence attachments); the unit
    written to a ``.rcpt`` file."""

    payload_type: str
    payload: bytes
    signature: Signature
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise MalformedError(f"an envelope carries at most {MAX_ATTACHMENTS} attachments")

    def attach(self, *items: Attachment) -> Envelope:
        """This envelope with ``items`` added after any it carries (the signature is unchanged:
        attachments are outside it)."""
        return replace(self, attachments=self.attachments + items)

    @classmethod
    def sign(cls, payload_type: str, payload: bytes, signer: Signer) -> Envelope:
        key = signer.public_key
        sig = Signature(
            key_id=key.key_id, public_key=key, sig=signer.sign(pae(payload_type, payload))
        )
        return cls(payload_type=payload_type, payload=payload, signature=sig)

    def to_bytes(self) -> bytes:
        wire: dict[str, object] = {
            "type": ENVELOPE_TYPE,
            "version": ENVELOPE_VERSION,
            "payload_type": self.payload_type,
            "payload": self.payload,
            "signatures": [self.signature.to_wire()],
        }
        if self.attachments:
            wire["attachments"] = [a.to_wire() for a in self.attachments]
        return codec.encode(wire)

    @classmethod
    def from_bytes(cls, data: bytes, *, payload_type: str = RECEIPT_PAYLOAD_TYPE) -> Envelope:
        """Step (1) and (2) of verification: a canonical envelope of a known type and version,
        carrying ``payload_type`` (receipts unless the caller reads another record)."""
        r = MapReader(
            codec.decode(data, limits=codec.Limits(max_bytes=MAX_ENVELOPE_BYTES)), "envelope"
        )
        kind, version = r.text("type", 64), r.integer("version", 0, codec.INT_MAX)
        if kind != ENVELOPE_TYPE:
            raise UnsupportedVersionError(f"not a signed envelope (type {kind!r})")
        if version != ENVELOPE_VERSION:
            raise UnsupportedVersionError(f"envelope version {version} is not supported (only 1)")
        found = r.text("payload_type", 256)
        if found != payload_type:
            raise UnsupportedVersionError(
                f"unexpected payload type {found!r} (expected {payload_type!r})"
            )
        signatures = r.array("signatures", 16)
        if len(signatures) != 1:
            raise MalformedError(
                f"envelope v1 holds exactly one signature, found {len(signatures)}"
            )
        attachments: tuple[Attachment, ...] = ()
        if r.has("attachments"):
            items = r.array("attachments", MAX_ATTACHMENTS)
            if not items:
                raise MalformedError("an empty attachments array is written as no field")
            if payload_type != RECEIPT_PAYLOAD_TYPE:
                raise MalformedError("only receipt envelopes carry attachments")
            attachments = tuple(Attachment.from_wire(item) for item in items)
        envelope = cls(
            payload_type=payload_type,
            payload=r.binary("payload", max_len=MAX_ENVELOPE_BYTES),
            signature=Signature.from_wire(signatures[0]),
            attachments=attachments,
        )
        r.close()
        return envelope

    def verify_signature(self, trusted: Sequence[PublicKey] | None) -> PublicKey:
        """Step (3): the signature is by an allowed key and covers PAE(type, payload).

        ``trusted=None`` accepts the embedded key (integrity without identity; callers report
        it as unpinned). Returns the key that verified.
        """
        key = self.signature.public_key
        if trusted is not None and key not in trusted:
            raise SignatureError(
                f"signed by key {key.key_id.hex()[:16]}…, which is not a trusted "
                f"{_SIGNERS.get(self.payload_type, 'signer')} key"
            )
        key.verify(self.signature.sig, pae(self.payload_type, self.payload))
        return key
