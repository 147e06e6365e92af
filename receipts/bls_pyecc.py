"""The reference BLS backend: py_ecc's ``G2ProofOfPossession`` behind ``BlsBackend``.

Beside ``receipts.bls_backends`` (the protocol and the fast arkworks backend), in a module of its
own because importing py_ecc's BLS12-381 package takes ~0.4 s: every command line call would pay
it for a backend only tests, benchmarks and cross-checks use. Nothing in the library imports this
module; pass ``PyEccBackend()`` where a ``backend`` is taken.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_typing import BLSPubkey, BLSSignature
from py_ecc.bls.ciphersuites import G2ProofOfPossession as _PyEccPop
from py_ecc.bls.g2_primitives import (
    G2_to_signature,
    pubkey_to_G1,
    signature_to_G2,
    subgroup_check,
)
from py_ecc.optimized_bls12_381.optimized_curve import Z1, add, is_inf

from receipts.bls_backends import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    PointError,
    check_secret,
    check_signers,
    check_size,
)
from receipts.errors import MalformedError, SignatureError

__all__ = ["PyEccBackend"]


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
        check_size(public_key, PUBLIC_KEY_SIZE, "public key", MalformedError)
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
        check_size(signature, SIGNATURE_SIZE, "signature", SignatureError)
        if not _PyEccPop.Verify(BLSPubkey(public_key), message, BLSSignature(signature)):
            self._explain(signature, "signature", SignatureError)
            raise SignatureError("BLS signature does not verify")

    def pop_verify(self, public_key: bytes, pop: bytes) -> None:
        self.key_validate(public_key)
        check_size(pop, SIGNATURE_SIZE, "proof of possession", SignatureError)
        if not _PyEccPop.PopVerify(BLSPubkey(public_key), BLSSignature(pop)):
            self._explain(pop, "proof of possession", SignatureError)
            raise SignatureError("BLS proof of possession does not verify")

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures:
            raise MalformedError("cannot aggregate an empty list of signatures")
        for signature in signatures:
            # py_ecc's Aggregate only decodes; subgroup membership is checked here as arkworks does.
            check_size(signature, SIGNATURE_SIZE, "signature", MalformedError)
            self._explain(signature, "signature", MalformedError)
        return bytes(_PyEccPop.Aggregate([BLSSignature(s) for s in signatures]))

    def fast_aggregate_verify(
        self, public_keys: Sequence[bytes], message: bytes, signature: bytes
    ) -> None:
        check_signers(public_keys)
        for public_key in public_keys:
            self.key_validate(public_key)
        check_size(signature, SIGNATURE_SIZE, "signature", SignatureError)
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
