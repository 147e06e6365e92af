"""Evidence attachments: typed, versioned items a receipt file carries beside its payload.

Formats layer, read with the envelope (``receipts.envelope``) and checked by the tee rung
(``receipts.tee``). The provider's signature covers the payload, not the attachments, so an item
can bind the payload's digest (the receipt id) without a cycle. Each item must therefore
authenticate itself: a Nitro attestation document is signed through AWS's certificate chain and
names the receipt id or the receipt's signing key. Anyone can strip or add items; stripping can
only lose a rung that needs them, and an added item counts only if it verifies and binds.

On the wire: the envelope's optional ``attachments`` array (absent when empty), each item
``{"type": text, "version": int, "body": bytes}``. Known: ``aws-nitro-attestation`` v1 (the body
is the COSE_Sign1 document exactly as the hypervisor returned it; the tee rung) and
``groth16-bn254`` v1 (a snarkjs proof and its public signals naming a circuit manifest; the zk
rung, ``circuits.proof_item``). Items of any other type or version are kept and reported, never
counted as evidence; each rung reads only its own type.

    attester = SimulatedNitro(root, clock=clock, random_bytes=rand)    # or a real one
    envelope = envelope.attach(attester.attest(user_data=receipt_id(envelope.payload).value))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from receipts.codec import MapReader
from receipts.errors import MalformedError

NITRO_ATTESTATION = "aws-nitro-attestation"
GROTH16_PROOF = "groth16-bn254"
KNOWN = frozenset({(NITRO_ATTESTATION, 1), (GROTH16_PROOF, 1)})
MAX_ATTACHMENTS = 8
MAX_ATTACHMENT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """One evidence item: its type, its format version and its self-authenticating body."""

    type: str
    version: int
    body: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or type(self.version) is not int:
            # A bool version would pass as 1 (True == 1) here and be unreadable on the wire.
            raise MalformedError("an attachment has a text type and an integer version")
        if not 1 <= len(self.type) <= 64 or not self.type.isascii() or not self.type.isprintable():
            raise MalformedError("an attachment type is 1-64 printable ASCII characters")
        if not 1 <= self.version < 2**32:
            raise MalformedError(f"attachment version {self.version} is not 1..2^32-1")
        if len(self.body) > MAX_ATTACHMENT_BYTES:
            raise MalformedError(f"an attachment body is at most {MAX_ATTACHMENT_BYTES} bytes")

    @property
    def known(self) -> bool:
        return (self.type, self.version) in KNOWN

    def describe(self) -> str:
        return f"{self.type} v{self.version} ({len(self.body)} bytes)"

    def to_wire(self) -> dict[str, object]:
        return {"type": self.type, "version": self.version, "body": self.body}

    @classmethod
    def from_wire(cls, value: object) -> Attachment:
        r = MapReader(value, "attachment")
        item = cls(
            type=r.text("type", 64),
            version=r.integer("version", 0, 2**32),
            body=r.binary("body", max_len=MAX_ATTACHMENT_BYTES),
        )
        r.close()
        return item


class Attester(Protocol):
    """What a provider asks of its enclave: evidence naming the given values.

    ``user_data`` carries the receipt id (per-receipt mode); ``public_key`` the DER
    SubjectPublicKeyInfo of the receipt signing key (key mode). A real attester asks the Nitro
    Security Module; ``receipts.nitro_sim.SimulatedNitro`` is the drill and test stand-in.
    """

    def attest(
        self,
        *,
        user_data: bytes | None = None,
        public_key: bytes | None = None,
        nonce: bytes | None = None,
    ) -> Attachment: ...
