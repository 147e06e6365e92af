"""The payer's dispute notice: "I dispute this receipt on this ledger with this evidence".

Settlement layer, between ``receipts dispute`` (which makes the evidence bundle) and
``Ledger.dispute`` (which opens the dispute). The bundle alone does not say who brought it: a
provider holding the payer's transcript could file a bundle of its own making under the payer's
name, open the dispute first, and leave the payer's real evidence refused. The notice is signed
by the payer's key, so only the payer opens a dispute on its request, and it names the one
bundle (by digest) that a ruling must have judged.

    notice = sign_notice(payer_key, ledger="example.com/ledger", receipt=rid, evidence=digest)
    signed = read_notice(notice)                 # signature checked; signed.key is the signer
"""

from __future__ import annotations

from dataclasses import dataclass

from receipts import codec
from receipts.codec import MapReader
from receipts.digests import Digest
from receipts.envelope import Envelope
from receipts.errors import MalformedError, UnsupportedVersionError
from receipts.keys import PublicKey, Signer

NOTICE_PAYLOAD_TYPE = "application/vnd.inference-receipts.dispute-notice.v1+msgpack"


@dataclass(frozen=True, slots=True, kw_only=True)
class DisputeNotice:
    """What the payer signs to open a dispute."""

    ledger: str  # the ledger's log origin
    receipt: Digest  # the disputed receipt's id
    evidence: Digest  # the evidence bundle's digest (what the referee will judge)

    def __post_init__(self) -> None:
        if not 1 <= len(self.ledger.encode()) <= 256:
            raise MalformedError("a notice's ledger is a log origin of 1..256 UTF-8 bytes")

    def encode(self) -> bytes:
        return codec.encode(
            {
                "type": "dispute-notice",
                "version": 1,
                "ledger": self.ledger,
                "receipt": self.receipt.value,
                "evidence": self.evidence.value,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> DisputeNotice:
        r = MapReader(codec.decode(payload), "dispute notice")
        if r.text("type", 32) != "dispute-notice" or r.integer("version") != 1:
            raise UnsupportedVersionError("not a dispute notice v1")
        notice = cls(
            ledger=r.text("ledger", 256),
            receipt=Digest(r.binary("receipt", 32)),
            evidence=Digest(r.binary("evidence", 32)),
        )
        r.close()
        return notice


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedNotice:
    notice: DisputeNotice
    key: PublicKey


def sign_notice(signer: Signer, *, ledger: str, receipt: Digest, evidence: Digest) -> bytes:
    """The payer's signed notice, as envelope bytes."""
    notice = DisputeNotice(ledger=ledger, receipt=receipt, evidence=evidence)
    return Envelope.sign(NOTICE_PAYLOAD_TYPE, notice.encode(), signer).to_bytes()


def read_notice(data: bytes) -> SignedNotice:
    """A notice with its signature checked (``SignatureError``) and its form (``MalformedError``);
    whether the signer is the payer is the ledger's to check."""
    envelope = Envelope.from_bytes(data, payload_type=NOTICE_PAYLOAD_TYPE)
    key = envelope.verify_signature(None)
    return SignedNotice(notice=DisputeNotice.decode(envelope.payload), key=key)
