"""AWS Nitro Enclaves attestation documents: read, verify, and say what they bind (TEE rung).

A Nitro enclave asks its hypervisor for a document that states the enclave's measurements (PCRs)
and carries up to three caller-chosen fields (``user_data``, ``public_key``, ``nonce``); the
hypervisor signs it with a short-lived leaf certificate that chains to the AWS Nitro root. The
procedure, numbered once (the tee rung, the CLI and the tests use these names):

  (N1) cose          one COSE_Sign1, tag 18 or untagged; protected header {1: -35} (ES384) and
                     nothing else; a 96-byte r || s signature; no byte after the item
  (N2) fields        the payload is a map of exactly AWS's fields within AWS's limits:
                     module_id, digest "SHA384", timestamp (ms), pcrs (1-32 entries, index
                     0-31, 48 bytes each), certificate, cabundle (root first), and optional
                     public_key, user_data, nonce (null or missing = absent); unknown fields,
                     duplicate keys and tags are refused
  (N3) chain         leaf <- cabundle <- a pinned root, each link checked at the instant asked
                     (``receipts.certchain``); the document's timestamp lies in the leaf's
                     validity and not after that instant
  (N4) signature     ES384 by the leaf over the Sig_structure of the received bytes
  (N5) measurements  every PCR the policy names has the expected value; an all-zero PCR0 is a
                     debug enclave (its memory readable by the host) and refused unless allowed
  (N6) binding       the caller's value: user_data, or public_key (see ``receipts.tee`` for
                     receipts)

    doc = verify_document(data, NitroPolicy(roots=(aws_root,)), at_ms=now)
    doc.document.user_data, doc.document.pcr(0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from receipts.certchain import load_certificate, name_of, verify_chain
from receipts.cose import CoseSign1, decode_cbor
from receipts.errors import (
    AttestationBindingError,
    AttestationError,
    AttestationFormatError,
    CertificateError,
    MalformedError,
    MeasurementError,
)

PCR_SIZE = 48  # SHA-384
MAX_PCRS = 32
MAX_CERTIFICATE = 1024  # AWS: "cert = bytes .size (1..1024)"
MAX_CABUNDLE = 8  # real chains have 4; a longer bundle is refused before any certificate parses
MAX_USER_DATA = 512  # AWS's limit for user_data and nonce
MAX_PUBLIC_KEY = 1024
MAX_MODULE_ID = 256
MINUTE_MS = 60_000
_FIELDS = (
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
)
_OPTIONAL = frozenset({"public_key", "user_data", "nonce"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NitroPolicy:
    """What a Nitro document must show: its root, its measurements, and its freshness.

    ``roots`` are the pinned root certificates (the AWS Nitro root, or a simulator's root passed
    on purpose). ``pcrs`` maps PCR index to the expected 48-byte value; none named means any
    enclave image is accepted (reported as such). ``max_key_age_ms`` bounds, in key mode, how
    long after the document a receipt signed by the attested key counts as attested;
    ``max_attest_delay_ms``, in per-receipt mode, how long after the receipt its document may
    be made. Both compare with the receipt's ``issued_at``, which the provider signs: against a
    key that has left the enclave only ``max_age_ms`` helps, refusing documents older than that
    at verification time.
    """

    roots: tuple[x509.Certificate, ...]
    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    allow_debug: bool = False
    max_key_age_ms: int = 24 * 60 * MINUTE_MS
    max_attest_delay_ms: int = 10 * MINUTE_MS
    max_skew_ms: int = 5 * MINUTE_MS
    max_age_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.roots:
            raise MalformedError("a TEE policy needs at least one pinned root certificate")
        # Copies: a caller's list or dict changed later must not change a policy checked here.
        object.__setattr__(self, "roots", tuple(self.roots))
        object.__setattr__(self, "pcrs", MappingProxyType(dict(self.pcrs)))
        for index, value in self.pcrs.items():
            if (
                type(index) is not int
                or not 0 <= index < MAX_PCRS
                or not isinstance(value, bytes)
                or len(value) != PCR_SIZE
            ):
                raise MalformedError(f"PCR{index}: an index 0-31 with a 48-byte value is needed")
        bounds = (
            self.max_key_age_ms,
            self.max_attest_delay_ms,
            self.max_skew_ms,
            self.max_age_ms or 0,
        )
        if min(bounds) < 0:
            raise MalformedError("TEE policy time bounds must not be negative")

    @staticmethod
    def load_root(pem: bytes) -> x509.Certificate:
        """The one certificate of a PEM file (a bundle is refused: only its first would count)."""
        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError as e:
            raise MalformedError(f"not a PEM certificate ({e})") from e
        if len(certificates) != 1:
            raise MalformedError(
                f"a root file holds one PEM certificate, not {len(certificates)} "
                "(pin each root on its own)"
            )
        return certificates[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationDocument:
    """The payload of a Nitro document (step N2): its fields, within AWS's limits."""

    module_id: str
    digest: str
    timestamp: int
    pcrs: tuple[tuple[int, bytes], ...]  # by index
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None = None
    user_data: bytes | None = None
    nonce: bytes | None = None

    def pcr(self, index: int) -> bytes | None:
        return dict(self.pcrs).get(index)

    @property
    def debug(self) -> bool:
        """PCR0 all zero: an enclave started in debug mode, whose memory the host can read."""
        return self.pcr(0) == bytes(PCR_SIZE)

    @classmethod
    def decode(cls, payload: bytes) -> AttestationDocument:
        """(N2) The payload bytes as a document; ``AttestationFormatError`` otherwise."""
        value = decode_cbor(payload, "attestation document", max_depth=3)
        if not isinstance(value, dict):
            raise AttestationFormatError("attestation document: the payload is not a map")
        unknown = sorted(repr(k)[:40] for k in value if k not in _FIELDS)
        if unknown:
            raise AttestationFormatError(
                f"attestation document: unknown field(s) {', '.join(unknown)}"
            )
        # Null is absent for every field, so a null required field is reported as such.
        present = {k: v for k, v in value.items() if v is not None}
        missing = [k for k in _FIELDS if k not in present and k not in _OPTIONAL]
        if missing:
            raise AttestationFormatError(
                f"attestation document: missing or null field(s) {', '.join(missing)}"
            )
        digest = _text(present, "digest", 16)
        if digest != "SHA384":
            raise AttestationFormatError(f"attestation document: digest {digest!r} is not SHA384")
        return cls(
            module_id=_text(present, "module_id", MAX_MODULE_ID, minimum=1),
            digest=digest,
            timestamp=_timestamp(present["timestamp"]),
            pcrs=_pcrs(present["pcrs"]),
            certificate=_bytes(present, "certificate", MAX_CERTIFICATE, minimum=1),
            cabundle=_cabundle(present["cabundle"]),
            public_key=_bytes(present, "public_key", MAX_PUBLIC_KEY)
            if "public_key" in present
            else None,
            user_data=_bytes(present, "user_data", MAX_USER_DATA)
            if "user_data" in present
            else None,
            nonce=_bytes(present, "nonce", MAX_USER_DATA) if "nonce" in present else None,
        )


def _text(fields: Mapping[object, object], key: str, limit: int, *, minimum: int = 0) -> str:
    value = fields[key]
    if not isinstance(value, str):
        raise AttestationFormatError(f"attestation document: {key} is not text")
    if not minimum <= len(value.encode()) <= limit:
        raise AttestationFormatError(
            f"attestation document: {key} must be {minimum}-{limit} bytes of text"
        )
    return value


def _bytes(fields: Mapping[object, object], key: str, limit: int, *, minimum: int = 0) -> bytes:
    value = fields[key]
    if not isinstance(value, bytes):
        raise AttestationFormatError(f"attestation document: {key} is not a byte string")
    if not minimum <= len(value) <= limit:
        raise AttestationFormatError(
            f"attestation document: {key} of {len(value)} bytes is outside {minimum}-{limit}"
        )
    return value


def _timestamp(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**64:
        raise AttestationFormatError("attestation document: timestamp is not a positive uint64")
    return value


def _pcrs(value: object) -> tuple[tuple[int, bytes], ...]:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_PCRS:
        raise AttestationFormatError("attestation document: pcrs must map 1-32 PCR indexes")
    out = []
    for index, pcr in value.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_PCRS:
            raise AttestationFormatError(f"attestation document: PCR index {index!r:.20} not 0-31")
        if not isinstance(pcr, bytes) or len(pcr) != PCR_SIZE:
            raise AttestationFormatError(f"attestation document: PCR{index} is not 48 bytes")
        out.append((index, pcr))
    return tuple(sorted(out))


def _cabundle(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CABUNDLE:
        raise AttestationFormatError(
            f"attestation document: cabundle must list 1-{MAX_CABUNDLE} certificates"
        )
    for i, cert in enumerate(value):
        if not isinstance(cert, bytes) or not 1 <= len(cert) <= MAX_CERTIFICATE:
            raise AttestationFormatError(
                f"attestation document: cabundle[{i}] is not 1-{MAX_CERTIFICATE} bytes"
            )
    return tuple(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedDocument:
    """A document as received (N1, N2 passed): its COSE parts and its decoded payload. Nothing
    in it is verified yet."""

    sign1: CoseSign1
    document: AttestationDocument

    @classmethod
    def parse(cls, data: bytes) -> SignedDocument:
        sign1 = CoseSign1.parse(data)  # (N1) cose
        return cls(sign1=sign1, document=AttestationDocument.decode(sign1.payload))  # (N2)

    def certificates(self) -> list[x509.Certificate]:
        """The cabundle then the leaf, parsed (for display; ``check_chain`` verifies them)."""
        doc = self.document
        ders = [*doc.cabundle, doc.certificate]
        return [load_certificate(der, f"certificate {i}") for i, der in enumerate(ders)]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAttestation:
    """A document whose chain, signature and measurements held at ``checked_at`` (ms)."""

    signed: SignedDocument
    leaf: x509.Certificate
    checked_at: int

    @property
    def document(self) -> AttestationDocument:
        return self.signed.document


def check_chain(signed: SignedDocument, policy: NitroPolicy, at_ms: int) -> x509.Certificate:
    """(N3) The leaf, once the chain holds at ``at_ms`` and the document's time fits the leaf."""
    doc = signed.document
    leaf = verify_chain(doc.certificate, doc.cabundle, roots=policy.roots, at_ms=at_ms)
    born, dies = (
        int(t.timestamp() * 1000) for t in (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    )
    if not born <= doc.timestamp <= dies:
        raise CertificateError(
            f"the document's timestamp {doc.timestamp} is outside its leaf "
            f"{name_of(leaf)}'s validity"
        )
    if doc.timestamp > at_ms + policy.max_skew_ms:
        raise CertificateError(
            f"the document is dated {doc.timestamp - at_ms} ms after the time checked"
        )
    return leaf


def check_signature(signed: SignedDocument, leaf: x509.Certificate) -> None:
    """(N4) ES384 by the leaf over the received bytes."""
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise AttestationError("the leaf certificate does not hold an EC key")
    signed.sign1.verify(key)


def check_measurements(doc: AttestationDocument, policy: NitroPolicy) -> dict[str, object]:
    """(N5) Expected PCRs; debug enclaves only where the policy allows them."""
    if doc.debug and not policy.allow_debug:
        raise MeasurementError(
            "PCR0 is all zero: a debug-mode enclave, whose memory the host can read "
            "(allow it only for drills)"
        )
    for index, expected in sorted(policy.pcrs.items()):
        got = doc.pcr(index)
        if got is None:
            raise MeasurementError(f"PCR{index} is not in the document")
        if got != expected:
            raise MeasurementError(
                f"PCR{index} is {got.hex()[:16]}…, the policy expects {expected.hex()[:16]}…"
            )
    return {
        "pcrs_checked": sorted(policy.pcrs),
        "debug": doc.debug,
        "any_image": not policy.pcrs,
    }


def check_user_data(doc: AttestationDocument, expected: bytes) -> None:
    """(N6) The document's user_data is exactly ``expected``."""
    if doc.user_data != expected:
        got = "absent" if doc.user_data is None else doc.user_data.hex()[:32]
        raise AttestationBindingError(f"user_data is {got}, expected {expected.hex()[:32]}")


def verify_document(
    data: bytes,
    policy: NitroPolicy,
    *,
    at_ms: int,
    user_data: bytes | None = None,
) -> VerifiedAttestation:
    """Steps N1-N5 (and N6 when ``user_data`` is given), at ``at_ms``; raises the first
    failure's typed error."""
    signed = SignedDocument.parse(data)
    leaf = check_chain(signed, policy, at_ms)
    check_signature(signed, leaf)
    check_measurements(signed.document, policy)
    if user_data is not None:
        check_user_data(signed.document, user_data)
    return VerifiedAttestation(signed=signed, leaf=leaf, checked_at=at_ms)


def pcr_hex(pcrs: Sequence[tuple[int, bytes]]) -> dict[str, str]:
    """PCRs as ``{"0": hex, ...}`` for JSON views."""
    return {str(i): value.hex() for i, value in pcrs}
