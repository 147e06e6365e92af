"""RFC 6962 Merkle trees: roots, inclusion proofs and consistency proofs (the ground floor).

Leaves hash as ``SHA-256(0x00 || data)`` and nodes as ``SHA-256(0x01 || left || right)``; the
tree over n leaves splits at the largest power of two below n (RFC 6962 section 2.1). The model
digest is such a root, and per-weight inclusion proofs let a referee check one tensor against it.
Consistency proofs (RFC 6962 section 2.1.2, verified as in RFC 9162 section 2.1.4.2) serve dispute
bisection: a party proves that a claimed prefix root is consistent with the trace root signed in a
receipt. A root does not bind its tree size, so sizes must come from signed data, never the prover.

    proof = consistency_proof(leaves, 2)
    verify_consistency(2, len(leaves), root(leaves[:2]), root(leaves), proof)   # raises if wrong

The plain functions recompute subtree roots from slices and keep no state; ``MerkleTree`` hashes
once, stores the complete power-of-two subtrees level by level and answers the same questions, with
the same results, in O(log n) hashes each (built for traces of ~10^5 leaves).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from receipts.errors import VerificationError

EMPTY_ROOT = hashlib.sha256(b"").digest()

# MTH(D[lo:hi]) for the leaf range [lo, hi): the one thing the proof walks below need.
SubtreeRoot = Callable[[int, int], bytes]


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


def _slice_roots(leaves: Sequence[bytes]) -> SubtreeRoot:
    """Subtree roots hashed afresh from slices: O(width) hashes per call, no state kept."""

    def subtree_root(lo: int, hi: int) -> bytes:
        return root(leaves[lo:hi])

    return subtree_root


def inclusion_path(index: int, size: int, subtree_root: SubtreeRoot) -> list[bytes]:
    """Walk RFC 6962 PATH(index, D[0:size]) from the top; returned leaf side first."""
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_root(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_root(lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_path(m: int, size: int, subtree_root: SubtreeRoot) -> list[bytes]:
    """Walk RFC 6962 SUBPROOF(m, D[0:size], true) from the top; returned deepest first.

    ``known`` is SUBPROOF's flag b: it stays true while the subtree being split is one the
    verifier already holds as the first root, whose hash therefore need not be sent.
    """
    if m in (0, size):
        return []
    path: list[bytes] = []
    lo, hi, known = 0, size, True
    while hi > m:  # the prefix [0, m) ends inside [lo, hi), and lo < m, so hi - lo >= 2
        k = _split(hi - lo)
        if m <= lo + k:
            path.append(subtree_root(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_root(lo, lo + k))
            lo += k
            known = False
    if not known:
        path.append(subtree_root(lo, hi))
    path.reverse()
    return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 section 2.1.1), leaf side first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} outside a tree of {len(leaves)}")
    return inclusion_path(index, len(leaves), _slice_roots(leaves))


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """Proof that the tree over ``leaves[:m]`` is a prefix of the tree over all of them.

    RFC 6962 section 2.1.2 (PROOF = SUBPROOF(m, D[n], true)); empty when m is 0 or n.
    """
    if not 0 <= m <= len(leaves):
        raise IndexError(f"prefix size {m} outside a tree of {len(leaves)}")
    return consistency_path(m, len(leaves), _slice_roots(leaves))


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


def verify_consistency(
    m: int, n: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the size-``m`` tree is a prefix of the size-``n`` tree; raise if not.

    (1) sizes: 0 <= m <= n.
    (2) trivial sizes: m == n needs an empty proof and equal roots; m == 0 needs an empty
        proof and ``first_root == EMPTY_ROOT`` (any tree extends the empty one).
    (3) path: recompute both roots from the proof (RFC 9162 section 2.1.4.2), which must have
        exactly the length the two sizes imply.
    (4) roots: the recomputed roots equal ``first_root`` and ``second_root``.

    The sizes are trusted inputs: the same proof and roots can pass for other sizes, so take
    m and n from signed data, never from the party that supplies the proof.
    """
    # (1) sizes
    if m < 0 or n < 0:
        raise VerificationError(f"tree sizes must not be negative, got {m} and {n}")
    if m > n:
        raise VerificationError(f"first tree size {m} exceeds second tree size {n}")
    # (2) trivial sizes
    if m in (0, n):
        _verify_trivial_consistency(m, n, first_root, second_root, proof)
        return
    # (3) path
    first, second = _consistency_roots(m, n, first_root, proof)
    # (4) roots
    if first != first_root:
        raise VerificationError(f"consistency proof does not lead to the size-{m} root")
    if second != second_root:
        raise VerificationError(f"consistency proof does not lead to the size-{n} root")


def _verify_trivial_consistency(
    m: int, n: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Step (2) of ``verify_consistency``: m == 0 or m == n, where nothing is to be proven."""
    if len(proof) != 0:
        raise VerificationError(
            f"consistency proof from size {m} to {n} must be empty, got {len(proof)} hashes"
        )
    if m == 0 and first_root != EMPTY_ROOT:
        raise VerificationError("first root of an empty tree is not the empty root")
    if m == n and first_root != second_root:
        raise VerificationError(f"two trees of the same size {n} have different roots")


def _consistency_roots(
    m: int, n: int, first_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """Step (3) of ``verify_consistency`` for 0 < m < n: the (first, second) roots it implies."""
    if len(proof) == 0:
        raise VerificationError(f"consistency proof from size {m} to {n} is empty")
    # A power-of-two first tree is a complete subtree of the second: its root opens the path.
    path = [first_root, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the trees are deep")
        if fn & 1 or fn == sn:
            first = node_hash(c, first)
            second = node_hash(c, second)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the trees are deep")
    return first, second


class MerkleTree:
    """A tree hashed once, answering root and proof queries for any prefix in O(log n).

    ``levels[h][i]`` is the root of the complete subtree over leaves [i * 2^h, (i + 1) * 2^h);
    every subtree of an RFC 6962 tree over a prefix is such a block plus a right spine of them.

        tree = MerkleTree(leaves)
        tree.consistency_proof(2, size=5) == consistency_proof(leaves[:5], 2)   # True
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append(
                tuple(node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2))
            )
        self._levels: tuple[tuple[bytes, ...], ...] = tuple(levels)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def __repr__(self) -> str:
        return f"MerkleTree(size={self.size}, root={self.root().hex()})"

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]), the root of the first ``size`` leaves (all of them by default)."""
        return self._subtree_root(0, self._prefix(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        size = self._prefix(size)
        if not 0 <= index < size:
            raise IndexError(f"leaf {index} outside a tree of {size}")
        return inclusion_path(index, size, self._subtree_root)

    def consistency_proof(self, m: int, size: int | None = None) -> list[bytes]:
        """The proof that the first ``m`` leaves' tree is a prefix of the first ``size``'s."""
        size = self._prefix(size)
        if not 0 <= m <= size:
            raise IndexError(f"prefix size {m} outside a tree of {size}")
        return consistency_path(m, size, self._subtree_root)

    def _prefix(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise IndexError(f"size {size} outside a tree of {self.size}")
        return size

    def _subtree_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]): a lookup for an aligned power-of-two block, else split as RFC 6962."""
        width = hi - lo
        if width == 0:
            return EMPTY_ROOT
        if width & (width - 1) == 0 and lo % width == 0:
            height = width.bit_length() - 1
            return self._levels[height][lo >> height]
        k = _split(width)
        return node_hash(self._subtree_root(lo, lo + k), self._subtree_root(lo + k, hi))
