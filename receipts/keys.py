"""Keys, signing and signature checks: Ed25519 (default) and ECDSA secp256k1 (the crypto layer).

Providers sign through the ``Signer`` protocol (a key object, never a path); verifiers hold
``PublicKey`` values whose ``verify`` raises ``SignatureError``. Key ids are derived from the
public key: ``SHA-256("inference-receipts/v1/key-id\\0" || canonical({"public_key", "scheme"}))``.

    key = PrivateKey.generate("ed25519")
    sig = key.sign(b"message")
    key.public_key.verify(sig, b"message")         # raises SignatureError if it does not hold

Signature encodings: Ed25519 is RFC 8032's 64 bytes. secp256k1 is ECDSA over SHA-256 with
RFC 6979 deterministic nonces, encoded as 64 raw bytes ``r || s`` with low ``s`` (verification
refuses high ``s``, so a signature has one encoding). Public keys travel raw: 32 bytes for
Ed25519, 33-byte compressed SEC1 points for secp256k1. Files are PEM (PKCS#8 private keys,
written owner-only and never over an existing file; SubjectPublicKeyInfo public keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from receipts.digests import record_digest
from receipts.effects import RandomBytes
from receipts.errors import InputError, KeyFileError, MalformedError, SignatureError
from receipts.files import StorageError, read_limited, write_new_file

SCHEMES = ("ed25519", "secp256k1")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_PUBLIC_SIZES = {"ed25519": 32, "secp256k1": 33}
# Encodings of the Ed25519 points of small order (libsodium's list, compared with the sign bit
# cleared). A signature under such a key can verify for every message, so they are not keys.
_ED25519_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicKey:
    """A public key of one scheme, in its raw encoding."""

    scheme: str
    raw: bytes
    # Derived once at construction (verification is a hot path): not compared, not printed.
    _key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey = field(
        init=False, repr=False, compare=False
    )
    _key_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise MalformedError(f"unknown signature scheme {self.scheme!r}")
        if len(self.raw) != _PUBLIC_SIZES[self.scheme]:
            raise MalformedError(
                f"{self.scheme} public key must be {_PUBLIC_SIZES[self.scheme]} bytes"
            )
        if self.scheme == "ed25519" and _clear_sign(self.raw) in _ED25519_SMALL_ORDER:
            raise MalformedError("ed25519 public key is a point of small order")
        object.__setattr__(self, "_key", self._load())  # an invalid point is not a PublicKey
        key_id = record_digest("key-id", {"scheme": self.scheme, "public_key": self.raw}).value
        object.__setattr__(self, "_key_id", key_id)

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @staticmethod
    @lru_cache(maxsize=256)
    def parse(scheme: str, raw: bytes) -> PublicKey:
        """A key from its wire form; repeated keys (one provider, many receipts) parse once."""
        return PublicKey(scheme=scheme, raw=raw)

    def _load(self) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
        try:
            if self.scheme == "ed25519":
                return ed25519.Ed25519PublicKey.from_public_bytes(self.raw)
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), self.raw)
        except ValueError as e:
            raise MalformedError(f"invalid {self.scheme} public key") from e

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise ``SignatureError`` unless ``signature`` is this key's signature of ``message``."""
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                if len(signature) != 64:
                    raise SignatureError("ed25519 signature must be 64 bytes")
                key.verify(signature, message)
                return
            if len(signature) != 64:
                raise SignatureError("secp256k1 signature must be 64 bytes (r || s)")
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
                raise SignatureError("secp256k1 signature is out of range or has a high s")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise SignatureError(
                f"signature does not verify under {self.scheme} key {self.key_id.hex()[:16]}"
            ) from e

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def to_der(self) -> bytes:
        """DER SubjectPublicKeyInfo: how an attestation document's ``public_key`` names it."""
        return self._key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise KeyFileError(f"not a PEM public key ({e})") from e
        if isinstance(key, ed25519.Ed25519PublicKey):
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return cls(scheme="ed25519", raw=raw)
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256K1):
            raw = key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
            return cls(scheme="secp256k1", raw=raw)
        raise KeyFileError("public key is neither Ed25519 nor secp256k1")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        return cls.from_pem(_read_key_file(Path(path)))


def _clear_sign(raw: bytes) -> bytes:
    return raw[:31] + bytes([raw[31] & 0x7F])


class Signer(Protocol):
    """Anything that signs for one public key (a key in memory, an HSM, a remote signer)."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


class PrivateKey:
    """An in-memory private key; the library's ``Signer`` for files and tests."""

    def __init__(self, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self._public = PublicKey(scheme="ed25519", raw=raw)
        elif isinstance(key.curve, ec.SECP256K1):
            raw = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
            self._public = PublicKey(scheme="secp256k1", raw=raw)
        else:
            raise KeyFileError("private key is neither Ed25519 nor secp256k1")

    @property
    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        der = self._key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        s = min(s, _SECP256K1_N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    @classmethod
    def generate(
        cls, scheme: str = "ed25519", *, random_bytes: RandomBytes = os.urandom
    ) -> PrivateKey:
        """A new key from ``random_bytes`` (injected so fixtures can be reproducible)."""
        if scheme == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.from_private_bytes(random_bytes(32)))
        if scheme == "secp256k1":
            secret = int.from_bytes(random_bytes(48), "big") % (_SECP256K1_N - 1) + 1
            return cls(ec.derive_private_key(secret, ec.SECP256K1()))
        raise MalformedError(
            f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}"
        )

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise KeyFileError(f"not an unencrypted PEM private key ({e})") from e
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyFileError("private key is neither Ed25519 nor secp256k1")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivateKey:
        return cls.from_pem(_read_key_file(Path(path)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path`` (mode 0600) and ``path.pub``; refuses to replace an existing file."""
        target = Path(path)
        public = target.with_name(target.name + ".pub")
        for existing in (target, public):
            if existing.exists():
                raise KeyFileError(f"{existing} already exists; refusing to overwrite a key")
        try:
            write_new_file(target, self.to_pem(), mode=0o600)
            try:
                write_new_file(public, self._public.to_pem(), mode=0o644)
            except StorageError:
                target.unlink(missing_ok=True)  # both files or neither
                raise
        except StorageError as e:
            raise KeyFileError(str(e)) from e
        return public


def _read_key_file(path: Path) -> bytes:
    try:
        return read_limited(path, _MAX_KEY_FILE, "key file")
    except InputError as e:
        raise KeyFileError(str(e)) from e
