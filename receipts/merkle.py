"""RFC 6962 Merkle tree hashing and inclusion proofs (the ground floor under model digests).

Leaves hash as ``SHA-256(0x00 || data)`` and nodes as ``SHA-256(0x01 || left || right)``; the
tree over n leaves splits at the largest power of two below n (RFC 6962 section 2.1). The model
digest is such a root, and per-weight inclusion proofs let a referee check one tensor against it.

    leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    proof = inclusion_proof(leaves, 2)
    verify_inclusion(leaves[2], 2, 3, proof, root(leaves))   # raises if the proof is wrong
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from receipts.errors import VerificationError

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash over already-hashed leaves.

    Pairing level by level and carrying an odd last node up unchanged builds exactly the
    left-balanced tree of RFC 6962.
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 section 2.1.1), leaf side first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} outside a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo : lo + k]))
            lo += k
    path.reverse()
    return path


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check an audit path (RFC 9162 section 2.1.3.2); raise ``VerificationError`` if wrong."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the tree is deep")
    if r != expected_root:
        raise VerificationError("inclusion proof does not lead to the expected root")
