"""The proof as a receipt's evidence item: ``groth16-bn254`` v1 (zk rung).

Made by ``circuits.circuit_dir.prove`` and attached to the receipt's envelope outside the
provider's signature (``receipts.attachments``); read by step 18 of the zk rung. The body is a
canonical map ``{"manifest": 32 bytes, "proof": bytes, "public": bytes}``: the id of the circuit
manifest the proof was made under, and snarkjs's ``proof.json`` and ``public.json`` exactly as
written. Nothing in it is trusted: anyone can strip, add or change items, so the rung checks the
manifest it names, the public signals against the receipt's tensors and the proof itself.

    item = ProofItem(manifest=signed.id, proof=proof_json, public=public_json)
    envelope = envelope.attach(item.to_attachment())
"""

from __future__ import annotations

from dataclasses import dataclass

from circuits.groth16 import Proof, read_proof, read_public
from receipts import codec
from receipts.attachments import GROTH16_PROOF, MAX_ATTACHMENT_BYTES, Attachment
from receipts.codec import MapReader
from receipts.digests import Digest
from receipts.errors import MalformedError, ReceiptsError

PROOF_ITEM_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofItem:
    """A Groth16 proof, its public signals (both as snarkjs wrote them) and the manifest id."""

    manifest: Digest
    proof: bytes
    public: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.manifest, Digest):
            raise MalformedError("a proof names its manifest by digest")
        if not self.proof or not self.public:
            raise MalformedError("a proof item carries proof.json and public.json")

    def to_attachment(self) -> Attachment:
        body = codec.encode(
            {"manifest": self.manifest.value, "proof": self.proof, "public": self.public}
        )
        return Attachment(type=GROTH16_PROOF, version=PROOF_ITEM_VERSION, body=body)

    @classmethod
    def from_attachment(cls, item: Attachment) -> ProofItem:
        """Step (18)'s decoding: a canonical body of exactly the three fields."""
        if (item.type, item.version) != (GROTH16_PROOF, PROOF_ITEM_VERSION):
            raise MalformedError(f"not a {GROTH16_PROOF} v{PROOF_ITEM_VERSION} item")
        try:
            limits = codec.Limits(max_bytes=MAX_ATTACHMENT_BYTES, max_depth=2)
            r = MapReader(codec.decode(item.body, limits=limits), "proof item")
            decoded = cls(
                manifest=Digest(r.binary("manifest", 32)),
                proof=r.binary("proof", max_len=MAX_ATTACHMENT_BYTES),
                public=r.binary("public", max_len=MAX_ATTACHMENT_BYTES),
            )
            r.close()
        except ReceiptsError as e:
            raise type(e)(f"{GROTH16_PROOF} body: {e}", details=e.details) from e
        return decoded

    def read(self) -> tuple[Proof, tuple[int, ...]]:
        """The proof and the public signals, through step (1) of ``circuits.groth16``
        (``CircuitFormatError``: nothing is verified yet)."""
        try:
            return read_proof(self.proof), read_public(self.public)
        except ReceiptsError as e:  # CircuitFormatError or LimitError, kept
            raise type(e)(f"{GROTH16_PROOF} body: {e}", details=e.details) from e
