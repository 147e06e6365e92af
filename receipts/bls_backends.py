"""BLS12-381 arithmetic behind one protocol: a slow reference (py_ecc) and a fast one (arkworks).

The crypto layer under ``receipts.bls``: values and committees there call a ``BlsBackend`` here,
on raw bytes and secret integers. Both backends implement the IETF BLS signature draft's
proof-of-possession scheme in its minimal-pubkey-size variant (public keys are 48-byte compressed
G1 points, signatures 96-byte compressed G2 points) and produce the same bytes; the test suite
runs once over each.

    backend = default_backend()                       # arkworks; PyEccBackend() is the reference
    backend.verify(pk, message, signature)            # raises SignatureError if it does not hold

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

from eth_typing import BLSPubkey, BLSSignature
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar
from py_ecc.bls.ciphersuites import G2ProofOfPossession as _PyEccPop
from py_ecc.bls.g2_primitives import (
    G2_to_signature,
    pubkey_to_G1,
    signature_to_G2,
    subgroup_check,
)
from py_ecc.optimized_bls12_381.optimized_curve import Z1, add, curve_order, is_inf

from receipts.errors import MalformedError, ReceiptsError, SignatureError

CIPHERSUITE = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
POP_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96
SECRET_SIZE = 32
CURVE_ORDER: int = curve_order

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


def _check_size(data: bytes, size: int, what: str, error: PointError) -> None:
    if not isinstance(data, bytes) or len(data) != size:
        got = len(data) if isinstance(data, bytes | bytearray) else type(data).__name__
        raise error(f"BLS {what} must be {size} bytes, not {got}")


def _check_signers(public_keys: Sequence[bytes]) -> None:
    if not public_keys:
        raise SignatureError("FastAggregateVerify needs at least one public key")


class PyEccBackend:
    """The reference: py_ecc's ``G2ProofOfPossession``, slow (a verify takes ~0.3 s) and plain.

    py_ecc answers ``False`` for every failure; this adapter asks py_ecc first and, only when the
    answer is no, decodes the inputs step by step to say which check failed. One reason differs
    from arkworks (the verdict does not): py_ecc reads a G1 encoding with x = 0 as a malformed
    point at infinity, where arkworks decodes the point (0, 2) of order 3 and refuses it as
    outside the subgroup.
    """

    name = "py_ecc"

    def sk_to_pk(self, secret: int) -> bytes:
        check_secret(secret)
        return bytes(_PyEccPop.SkToPk(secret))

    def sign(self, secret: int, message: bytes) -> bytes:
        check_secret(secret)
        return bytes(_PyEccPop.Sign(secret, message))

    def pop_prove(self, secret: int) -> bytes:
        check_secret(secret)
        return bytes(_PyEccPop.PopProve(secret))

    def key_validate(self, public_key: bytes) -> None:
        _check_size(public_key, PUBLIC_KEY_SIZE, "public key", MalformedError)
        if _PyEccPop.KeyValidate(BLSPubkey(public_key)):
            return
        try:
            point = pubkey_to_G1(BLSPubkey(public_key))
        except ValueError as e:
            raise MalformedError("BLS public key is not a compressed G1 point") from e
        if is_inf(point):
            raise MalformedError("BLS public key is the identity point")
        if not subgroup_check(point):
            raise MalformedError("BLS public key is not in the G1 subgroup")
        raise MalformedError("BLS public key fails KeyValidate")

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        self.key_validate(public_key)
        _check_size(signature, SIGNATURE_SIZE, "signature", SignatureError)
        if not _PyEccPop.Verify(BLSPubkey(public_key), message, BLSSignature(signature)):
            self._explain(signature, "signature", SignatureError)
            raise SignatureError("BLS signature does not verify")

    def pop_verify(self, public_key: bytes, pop: bytes) -> None:
        self.key_validate(public_key)
        _check_size(pop, SIGNATURE_SIZE, "proof of possession", SignatureError)
        if not _PyEccPop.PopVerify(BLSPubkey(public_key), BLSSignature(pop)):
            self._explain(pop, "proof of possession", SignatureError)
            raise SignatureError("BLS proof of possession does not verify")

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures:
            raise MalformedError("cannot aggregate an empty list of signatures")
        for signature in signatures:
            # py_ecc's Aggregate only decodes; subgroup membership is checked here as arkworks does.
            _check_size(signature, SIGNATURE_SIZE, "signature", MalformedError)
            self._explain(signature, "signature", MalformedError)
        return bytes(_PyEccPop.Aggregate([BLSSignature(s) for s in signatures]))

    def fast_aggregate_verify(
        self, public_keys: Sequence[bytes], message: bytes, signature: bytes
    ) -> None:
        _check_signers(public_keys)
        for public_key in public_keys:
            self.key_validate(public_key)
        _check_size(signature, SIGNATURE_SIZE, "signature", SignatureError)
        keys = [BLSPubkey(k) for k in public_keys]
        if not _PyEccPop.FastAggregateVerify(keys, message, BLSSignature(signature)):
            self._explain(signature, "signature", SignatureError)
            total = Z1
            for key in keys:
                total = add(total, pubkey_to_G1(key))
            if is_inf(total):  # py_ecc's Verify ran KeyValidate on the aggregate key
                raise SignatureError("the aggregate of the signers' public keys is the identity")
            raise SignatureError("BLS aggregate signature does not verify")

    @staticmethod
    def _explain(data: bytes, what: str, error: PointError) -> None:
        """Raise ``error`` naming why ``data`` is not a G2 point of the subgroup, if it is not."""
        try:
            point = signature_to_G2(BLSSignature(data))
        except ValueError as e:
            raise error(f"BLS {what} is not a compressed G2 point") from e
        if bytes(G2_to_signature(point)) != data:
            raise error(f"BLS {what} is not a compressed G2 point")
        if not subgroup_check(point):
            raise error(f"BLS {what} is not in the G2 subgroup")


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
        _check_signers(public_keys)
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
        _check_size(public_key, PUBLIC_KEY_SIZE, "public key", MalformedError)
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
        _check_size(data, SIGNATURE_SIZE, what, error)
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
BACKENDS: tuple[BlsBackend, ...] = (PyEccBackend(), _DEFAULT)


def default_backend() -> BlsBackend:
    """The backend used when none is passed: arkworks (py_ecc is ~200x slower)."""
    return _DEFAULT
