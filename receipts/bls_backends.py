"""BLS12-381 arithmetic behind one protocol: a fast backend (arkworks) and the checks both share.

The crypto layer under ``receipts.bls``: values and committees there call a ``BlsBackend`` here,
on raw bytes and secret integers. The reference backend, py_ecc, is ``receipts.bls_pyecc`` (its
own module: py_ecc is slow to import). Both backends implement the IETF BLS signature draft's
proof-of-possession scheme in its minimal-pubkey-size variant (public keys are 48-byte compressed
G1 points, signatures 96-byte compressed G2 points) and produce the same bytes; the test suite
runs once over each.

    backend = default_backend()                 # arkworks; PyEccBackend() is the reference
    backend.verify(pk, message, signature)      # raises SignatureError if it does not hold

Every check raises instead of returning a bool: a public key that is not 48 bytes, not a
canonical compressed point, the identity or outside the G1 subgroup (KeyValidate) raises
``MalformedError``; a signature or proof of possession that is not 96 bytes, not a canonical
compressed point, outside the G2 subgroup or that does not verify raises ``SignatureError``
(``MalformedError`` when it is handed to ``aggregate``, which verifies nothing). Encodings must be
canonical: arkworks decodes some non-canonical encodings of the point at infinity (stray bits
after the infinity flag, or the sign flag set), so its adapter re-encodes every point it decodes
and refuses any that do not come back as the bytes it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from receipts.errors import MalformedError, ReceiptsError, SignatureError

CIPHERSUITE = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
POP_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96
SECRET_SIZE = 32
# r, the order of BLS12-381's prime subgroups (py_ecc's curve_order; a test holds them equal)
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001

# Which error a bad point raises depends on the caller (verify or aggregate), not the backend.
PointError = type[ReceiptsError]


class BlsBackend(Protocol):
    """The IETF POP-scheme operations on raw encodings; every check raises, none returns bool."""

    @property
    def name(self) -> str: ...

    def sk_to_pk(self, secret: int) -> bytes: ...

    def sign(self, secret: int, message: bytes) -> bytes: ...

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None: ...

    def pop_prove(self, secret: int) -> bytes: ...

    def pop_verify(self, public_key: bytes, pop: bytes) -> None: ...

    def aggregate(self, signatures: Sequence[bytes]) -> bytes: ...

    def fast_aggregate_verify(
        self, public_keys: Sequence[bytes], message: bytes, signature: bytes
    ) -> None: ...

    def key_validate(self, public_key: bytes) -> None: ...


def check_secret(secret: int) -> None:
    """Raise ``MalformedError`` unless ``secret`` is a scalar in ``[1, r)``."""
    if isinstance(secret, bool) or not isinstance(secret, int):
        raise MalformedError("BLS secret key must be an integer")
    if not 0 < secret < CURVE_ORDER:
        raise MalformedError("BLS secret key must be in [1, r) for the BLS12-381 group order r")


def check_size(data: bytes, size: int, what: str, error: PointError) -> None:
    """Raise ``error`` unless ``data`` is ``size`` bytes."""
    if not isinstance(data, bytes) or len(data) != size:
        got = len(data) if isinstance(data, bytes | bytearray) else type(data).__name__
        raise error(f"BLS {what} must be {size} bytes, not {got}")


def check_signers(public_keys: Sequence[bytes]) -> None:
    """Raise ``SignatureError`` for an empty list of signers."""
    if not public_keys:
        raise SignatureError("FastAggregateVerify needs at least one public key")


_G1_GENERATOR = G1Point()
_G1_NEG_GENERATOR = -G1Point()
_G1_IDENTITY = G1Point.identity()
_G2_IDENTITY = G2Point.identity()


class ArkworksBackend:
    """The fast path: arkworks (Rust) through py_arkworks_bls12381, ~1 ms a sign, ~2 ms a verify.

    A verification is one pairing check: ``e(pk, H(m)) * e(-g1, sig) == 1``.
    """

    name = "arkworks"

    def sk_to_pk(self, secret: int) -> bytes:
        check_secret(secret)
        return (_G1_GENERATOR * Scalar(secret)).to_compressed_bytes()

    def sign(self, secret: int, message: bytes) -> bytes:
        check_secret(secret)
        return (G2Point.hash_to_curve(message, CIPHERSUITE) * Scalar(secret)).to_compressed_bytes()

    def pop_prove(self, secret: int) -> bytes:
        check_secret(secret)
        public_key = self.sk_to_pk(secret)
        return (G2Point.hash_to_curve(public_key, POP_DST) * Scalar(secret)).to_compressed_bytes()

    def key_validate(self, public_key: bytes) -> None:
        self._public_point(public_key)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        point = self._public_point(public_key)
        sig = self._g2(signature, "signature", SignatureError)
        if not _pairing_holds(point, message, sig, CIPHERSUITE):
            raise SignatureError("BLS signature does not verify")

    def pop_verify(self, public_key: bytes, pop: bytes) -> None:
        point = self._public_point(public_key)
        proof = self._g2(pop, "proof of possession", SignatureError)
        if not _pairing_holds(point, public_key, proof, POP_DST):
            raise SignatureError("BLS proof of possession does not verify")

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures:
            raise MalformedError("cannot aggregate an empty list of signatures")
        total = _G2_IDENTITY
        for signature in signatures:
            total = total + self._g2(signature, "signature", MalformedError)
        return total.to_compressed_bytes()

    def fast_aggregate_verify(
        self, public_keys: Sequence[bytes], message: bytes, signature: bytes
    ) -> None:
        check_signers(public_keys)
        total = _G1_IDENTITY
        for public_key in public_keys:
            total = total + self._public_point(public_key)
        sig = self._g2(signature, "signature", SignatureError)
        # The IETF CoreVerify runs KeyValidate on the aggregate key too; py_ecc does.
        if total == _G1_IDENTITY:
            raise SignatureError("the aggregate of the signers' public keys is the identity")
        if not _pairing_holds(total, message, sig, CIPHERSUITE):
            raise SignatureError("BLS aggregate signature does not verify")

    @staticmethod
    def _public_point(public_key: bytes) -> G1Point:
        """KeyValidate: a canonical compressed G1 point, not the identity, in the subgroup."""
        check_size(public_key, PUBLIC_KEY_SIZE, "public key", MalformedError)
        try:
            point = G1Point.from_compressed_bytes_unchecked(public_key)
        except ValueError as e:
            raise MalformedError("BLS public key is not a compressed G1 point") from e
        if point.to_compressed_bytes() != public_key:
            raise MalformedError("BLS public key is not a compressed G1 point")
        if point == _G1_IDENTITY:
            raise MalformedError("BLS public key is the identity point")
        if not point.is_in_subgroup():
            raise MalformedError("BLS public key is not in the G1 subgroup")
        return point

    @staticmethod
    def _g2(data: bytes, what: str, error: PointError) -> G2Point:
        check_size(data, SIGNATURE_SIZE, what, error)
        try:
            point = G2Point.from_compressed_bytes_unchecked(data)
        except ValueError as e:
            raise error(f"BLS {what} is not a compressed G2 point") from e
        if point.to_compressed_bytes() != data:
            raise error(f"BLS {what} is not a compressed G2 point")
        if not point.is_in_subgroup():
            raise error(f"BLS {what} is not in the G2 subgroup")
        return point


def _pairing_holds(public: G1Point, message: bytes, signature: G2Point, dst: bytes) -> bool:
    hashed = G2Point.hash_to_curve(message, dst)
    return GT.pairing_check([public, _G1_NEG_GENERATOR], [hashed, signature])


_DEFAULT = ArkworksBackend()


def default_backend() -> BlsBackend:
    """The backend used when none is passed: arkworks (py_ecc is ~200x slower)."""
    return _DEFAULT
