"""A simulated Nitro attester: its own P-384 CA, documents laid out like real ones (drills, tests).

Sits beside ``receipts.nitro`` as an ``Attester`` (``receipts.attachments``). It is NOT an
enclave and proves nothing about where code ran: a verifier accepts its documents only when its
root certificate is passed explicitly as a pinned root (``--tee-root ROOTDIR/root.pem``).

The layout follows a real document byte for byte in structure: untagged COSE_Sign1, protected
header ``{1: -35}``, an empty unprotected map, a definite-length payload map with module_id,
digest, timestamp, pcrs (16 of 48 bytes), certificate, cabundle (root, three intermediates),
public_key, user_data, nonce in that order (absent ones as null), and a 96-byte signature. The
chain mirrors AWS's too: a root, then CAs with path lengths 2, 1 and 0 (the last with keyCertSign
only), then a leaf that is not a CA and lives three hours. Keys come from the injected
randomness and every signature is deterministic (RFC 6979), so documents are reproducible.

    root = SimulatedRoot.create(Path("sim-root"), clock=clock, random_bytes=rand)
    attester = SimulatedNitro(SimulatedRoot.load(Path("sim-root")), clock=clock, random_bytes=rand)
    item = attester.attest(user_data=receipt_id(envelope.payload).value)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from receipts.attachments import NITRO_ATTESTATION, Attachment
from receipts.cose import CoseSign1
from receipts.effects import Clock, RandomBytes
from receipts.errors import KeyFileError, MalformedError
from receipts.files import StorageError, read_limited, write_new_file
from receipts.nitro import PCR_SIZE

ROOT_CERT = "root.pem"
ROOT_KEY = "root-key.pem"
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_ROOT_LIFETIME_MS = 30 * 365 * _DAY_MS
_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)
_ORG = "inference-receipts simulator (NOT AWS)"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertSpec:
    """One certificate of the simulated chain below the root: its name, when it started being
    valid (``age_ms`` before the attester's clock), how long it lives, and its constraints."""

    name: str
    age_ms: int
    lifetime_ms: int
    ca: bool
    path_length: int | None = None
    key_cert_sign: bool = False
    digital_signature: bool = True


# What a real chain looks like (zonal, regional, instance, then the enclave's leaf).
DEFAULT_CHAIN = (
    CertSpec(
        name="zonal.simulated.nitro-enclaves",
        age_ms=_DAY_MS,
        lifetime_ms=20 * _DAY_MS,
        ca=True,
        path_length=2,
        key_cert_sign=True,
    ),
    CertSpec(
        name="regional.simulated.nitro-enclaves",
        age_ms=5 * _HOUR_MS,
        lifetime_ms=6 * _DAY_MS,
        ca=True,
        path_length=1,
        key_cert_sign=True,
    ),
    CertSpec(
        name="instance.simulated.nitro-enclaves",
        age_ms=2 * _HOUR_MS,
        lifetime_ms=_DAY_MS,
        ca=True,
        path_length=0,
        key_cert_sign=True,
        digital_signature=False,
    ),
    CertSpec(
        name="enclave.simulated.nitro-enclaves",
        age_ms=60_000,
        lifetime_ms=3 * _HOUR_MS,
        ca=False,
    ),
)


def derive_key(random_bytes: RandomBytes) -> ec.EllipticCurvePrivateKey:
    """A P-384 key from the injected randomness (64 bytes reduced mod n: bias below 2^-128)."""
    scalar = int.from_bytes(random_bytes(64), "big") % (_P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC)


def _certificate(
    *,
    spec: CertSpec,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now_ms: int,
    serial: int,
) -> x509.Certificate:
    start = now_ms - spec.age_ms
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.name))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_when(start))
        .not_valid_after(_when(start + spec.lifetime_ms))
        .add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=spec.digital_signature,
                content_commitment=not spec.ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=spec.key_cert_sign,
                crl_sign=spec.key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=spec.ca,  # as in real chains: critical on CAs, not on the leaf
        )
    )
    return builder.sign(issuer_key, hashes.SHA384(), ecdsa_deterministic=True)


def _serial(random_bytes: RandomBytes) -> int:
    return int.from_bytes(random_bytes(16), "big") >> 1 | 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedRoot:
    """The simulator's root certificate and key: a test CA, trusted only where passed."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, *, clock: Clock, random_bytes: RandomBytes) -> SimulatedRoot:
        key = derive_key(random_bytes)
        spec = CertSpec(
            name="simulated.nitro-enclaves",
            age_ms=0,
            lifetime_ms=_ROOT_LIFETIME_MS,
            ca=True,
            key_cert_sign=True,
        )
        name = _name(spec.name)
        cert = _certificate(
            spec=spec,
            key=key,
            issuer=name,
            issuer_key=key,
            now_ms=clock.now_ms(),
            serial=_serial(random_bytes),
        )
        return cls(certificate=cert, key=key)

    @classmethod
    def create(cls, folder: Path, *, clock: Clock, random_bytes: RandomBytes) -> SimulatedRoot:
        """Generate a root into ``folder`` (``root.pem``, owner-only ``root-key.pem``); never
        replaces an existing file."""
        root = cls.generate(clock=clock, random_bytes=random_bytes)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create {folder}: {e.strerror or e}") from e
        # Both files or neither: a key written beside someone else's root.pem is a broken root.
        for name in (ROOT_KEY, ROOT_CERT):
            if (folder / name).exists():
                raise StorageError(f"{folder / name} already exists; refusing to overwrite it")
        key_pem = root.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_new_file(folder / ROOT_KEY, key_pem, mode=0o600)
        write_new_file(folder / ROOT_CERT, root.certificate_pem(), mode=0o644)
        return root

    @classmethod
    def load(cls, folder: Path) -> SimulatedRoot:
        cert_pem = read_limited(folder / ROOT_CERT, 64 * 1024, "simulator root certificate")
        key_pem = read_limited(folder / ROOT_KEY, 64 * 1024, "simulator root key")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{folder}: not a simulator root ({e})") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
            raise KeyFileError(f"{folder}: the root key is not the root certificate's P-384 key")
        return cls(certificate=cert, key=key)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def simulated_pcrs(image: str, *, debug: bool = False) -> dict[int, bytes]:
    """Sixteen PCRs as a real enclave shows them: 0-2 and 4 measured (here, hashes of the
    image's name), the rest zero; ``debug`` zeroes 0-3 as the hypervisor does."""
    pcrs = {i: bytes(PCR_SIZE) for i in range(16)}
    for index in (0, 1, 2, 4):
        pcrs[index] = hashlib.sha384(f"simulated PCR{index}:{image}".encode()).digest()
    if debug:
        for index in range(4):
            pcrs[index] = bytes(PCR_SIZE)
    return pcrs


class SimulatedNitro:
    """An ``Attester`` that signs documents with a chain below a ``SimulatedRoot``.

    The chain is issued from the attester's clock and re-issued once its leaf has expired, as a
    hypervisor's would be. ``chain`` replaces the certificate specs (tests build bad chains).
    """

    def __init__(
        self,
        root: SimulatedRoot,
        *,
        clock: Clock,
        random_bytes: RandomBytes,
        image: str = "inference-receipts-provider",
        pcrs: Mapping[int, bytes] | None = None,
        debug: bool = False,
        chain: Sequence[CertSpec] = DEFAULT_CHAIN,
        tagged: bool = False,
    ) -> None:
        if not chain or chain[-1].ca:
            raise MalformedError("a simulated chain ends with its (non-CA) leaf spec")
        self.root = root
        self.clock = clock
        self.random_bytes = random_bytes
        self.pcrs = dict(pcrs) if pcrs is not None else simulated_pcrs(image, debug=debug)
        self.specs = tuple(chain)
        self.tagged = tagged
        self.module_id = f"i-{random_bytes(8).hex()}-enc{random_bytes(8).hex()}"
        self._issue()

    def _issue(self) -> None:
        now = self.clock.now_ms()
        issuer, issuer_key = self.root.certificate, self.root.key
        certs, keys = [], []
        for spec in self.specs:
            key = derive_key(self.random_bytes)
            cert = _certificate(
                spec=spec,
                key=key,
                issuer=issuer.subject,
                issuer_key=issuer_key,
                now_ms=now,
                serial=_serial(self.random_bytes),
            )
            certs.append(cert)
            keys.append(key)
            issuer, issuer_key = cert, key
        self.certificates = certs
        self.leaf_key = keys[-1]

    def _der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def fields(
        self,
        *,
        user_data: bytes | None = None,
        public_key: bytes | None = None,
        nonce: bytes | None = None,
    ) -> dict[str, object]:
        """The payload's fields in a real document's order (re-issuing an expired chain)."""
        now = self.clock.now_ms()
        if now > self.certificates[-1].not_valid_after_utc.timestamp() * 1000:
            self._issue()
        return {
            "module_id": self.module_id,
            "digest": "SHA384",
            "timestamp": now,
            "pcrs": dict(sorted(self.pcrs.items())),
            "certificate": self._der(self.certificates[-1]),
            "cabundle": [self._der(self.root.certificate)]
            + [self._der(c) for c in self.certificates[:-1]],
            "public_key": public_key,
            "user_data": user_data,
            "nonce": nonce,
        }

    def sign(self, payload: bytes, *, tagged: bool | None = None) -> bytes:
        """A COSE_Sign1 over exactly ``payload`` by the current leaf (tests sign odd payloads)."""
        use_tag = self.tagged if tagged is None else tagged
        return CoseSign1.sign(payload, self.leaf_key, tagged=use_tag).to_bytes()

    def document(
        self,
        *,
        user_data: bytes | None = None,
        public_key: bytes | None = None,
        nonce: bytes | None = None,
    ) -> bytes:
        fields = self.fields(user_data=user_data, public_key=public_key, nonce=nonce)
        return self.sign(cbor2.dumps(fields))

    def attest(
        self,
        *,
        user_data: bytes | None = None,
        public_key: bytes | None = None,
        nonce: bytes | None = None,
    ) -> Attachment:
        body = self.document(user_data=user_data, public_key=public_key, nonce=nonce)
        return Attachment(type=NITRO_ATTESTATION, version=1, body=body)


def indefinite_map(fields: Mapping[str, object]) -> bytes:
    """``fields`` as an indefinite-length CBOR map (real payloads use them too)."""
    return b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in fields.items()) + b"\xff"


def with_spec(chain: Sequence[CertSpec], index: int, **changes: object) -> tuple[CertSpec, ...]:
    """``chain`` with the spec at ``index`` changed (bad chains for tests and drills)."""
    specs = list(chain)
    specs[index] = replace(specs[index], **changes)  # type: ignore[arg-type]
    return tuple(specs)
