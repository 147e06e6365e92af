"""RFC 6962 Merkle trees: published vectors, a slow reference, and proofs that cannot be bent.

The plain functions and ``MerkleTree`` run through one suite: both must equal the reference
transcribed from RFC 6962 and the published Certificate Transparency vectors.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.errors import VerificationError
from receipts.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

SETTINGS = settings(max_examples=200, deadline=None)

# FACTS.md, "Test vectors": the RFC 6962 leaves and the roots of their first n.
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# --- the slow, obviously correct reference (RFC 6962 section 2.1, transcribed) ------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_mth(entries: list[bytes]) -> bytes:
    if not entries:
        return _sha256(b"")
    if len(entries) == 1:
        return _sha256(b"\x00" + entries[0])
    k = _k(len(entries))
    return _sha256(b"\x01" + reference_mth(entries[:k]) + reference_mth(entries[k:]))


def reference_path(m: int, entries: list[bytes]) -> list[bytes]:
    if len(entries) == 1:
        return []
    k = _k(len(entries))
    if m < k:
        return [*reference_path(m, entries[:k]), reference_mth(entries[k:])]
    return [*reference_path(m - k, entries[k:]), reference_mth(entries[:k])]


def reference_subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2, word for word."""
    n = len(entries)
    if m == n:
        return [] if complete else [reference_mth(entries)]
    k = _k(n)
    if m <= k:
        return [*reference_subproof(m, entries[:k], complete), reference_mth(entries[k:])]
    return [*reference_subproof(m - k, entries[k:], False), reference_mth(entries[:k])]


def reference_consistency(m: int, entries: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for 0 < m < n; empty for m == 0 or m == n."""
    return reference_subproof(m, entries, True) if 0 < m < len(entries) else []


def entries_of(n: int) -> list[bytes]:
    """n distinct leaf inputs (distinct, so no two leaves can stand in for each other)."""
    return [b"leaf %d" % i for i in range(n)]


# --- vectors and reference ---------------------------------------------------------------


@pytest.mark.parametrize("n", range(len(VECTOR_ROOTS)))
def test_root_matches_the_rfc6962_vector(n: int) -> None:
    leaves = [leaf_hash(d) for d in VECTOR_LEAVES[:n]]
    assert root(leaves).hex() == VECTOR_ROOTS[n]


@pytest.mark.parametrize("n", range(len(VECTOR_ROOTS)))
def test_reference_matches_the_rfc6962_vector(n: int) -> None:
    assert reference_mth(VECTOR_LEAVES[:n]).hex() == VECTOR_ROOTS[n]


def test_empty_root_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == bytes.fromhex(VECTOR_ROOTS[0])


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = _sha256(b"a"), _sha256(b"b")
    assert leaf_hash(a + b) == _sha256(b"\x00" + a + b)
    assert node_hash(a, b) == _sha256(b"\x01" + a + b)
    assert leaf_hash(a + b) != node_hash(a, b)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=12), max_size=70))
def test_root_equals_the_recursive_reference(entries: list[bytes]) -> None:
    assert root([leaf_hash(e) for e in entries]) == reference_mth(entries)


@pytest.mark.parametrize("n", range(1, 41))
def test_every_inclusion_proof_matches_the_reference_and_verifies(n: int) -> None:
    entries = entries_of(n)
    leaves = [leaf_hash(e) for e in entries]
    top = root(leaves)
    for index in range(n):
        proof = inclusion_proof(leaves, index)
        assert proof == reference_path(index, entries)
        verify_inclusion(leaves[index], index, n, proof, top)


def test_inclusion_proof_refuses_an_index_outside_the_tree() -> None:
    leaves = [leaf_hash(e) for e in entries_of(3)]
    for index in (-1, 3):
        with pytest.raises(IndexError):
            inclusion_proof(leaves, index)


# --- bent proofs -------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[bytes], int, list[bytes]]:
    n = draw(st.integers(1, 64))
    leaves = [leaf_hash(e) for e in entries_of(n)]
    index = draw(st.integers(0, n - 1))
    return leaves, index, inclusion_proof(leaves, index)


def _rejects(leaf: bytes, index: int, size: int, proof: list[bytes], top: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        verify_inclusion(leaf, index, size, proof, top)
    assert type(info.value) is VerificationError


@SETTINGS
@given(trees(), st.data())
def test_any_wrong_index_is_rejected(
    tree: tuple[list[bytes], int, list[bytes]], data: st.DataObject
) -> None:
    leaves, index, proof = tree
    n = len(leaves)
    wrong = data.draw(st.integers(-2, n + 2).filter(lambda i: i != index), label="wrong index")
    _rejects(leaves[index], wrong, n, proof, root(leaves))


@SETTINGS
@given(trees(), st.data())
def test_any_truncated_proof_is_rejected(
    tree: tuple[list[bytes], int, list[bytes]], data: st.DataObject
) -> None:
    leaves, index, proof = tree
    if not proof:
        return  # a one-leaf tree has an empty proof; there is nothing to cut
    keep = data.draw(st.integers(0, len(proof) - 1), label="kept elements")
    _rejects(leaves[index], index, len(leaves), proof[:keep], root(leaves))


@SETTINGS
@given(
    trees(), st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3), st.booleans()
)
def test_any_extended_proof_is_rejected(
    tree: tuple[list[bytes], int, list[bytes]], extra: list[bytes], at_end: bool
) -> None:
    leaves, index, proof = tree
    longer = [*proof, *extra] if at_end else [*extra, *proof]
    _rejects(leaves[index], index, len(leaves), longer, root(leaves))


@SETTINGS
@given(trees(), st.data())
def test_any_bit_flip_in_proof_leaf_or_root_is_rejected(
    tree: tuple[list[bytes], int, list[bytes]], data: st.DataObject
) -> None:
    leaves, index, proof = tree
    top = root(leaves)
    leaf = leaves[index]
    target = data.draw(st.integers(-2, len(proof) - 1), label="target (-2 leaf, -1 root)")
    bit = data.draw(st.integers(0, 255), label="bit")

    def flip(value: bytes) -> bytes:
        out = bytearray(value)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)

    if target == -2:
        leaf = flip(leaf)
    elif target == -1:
        top = flip(top)
    else:
        proof = [*proof[:target], flip(proof[target]), *proof[target + 1 :]]
    _rejects(leaf, index, len(leaves), proof, top)


# --- consistency proofs: published vectors and reference ---------------------------------

# transparency-dev/merkle proof/verify_test.go (Google's Go CT code; the same values appear in
# the C++ and Java CT test suites): (m, n) -> PROOF(m, D[n]) over VECTOR_LEAVES.
CT_CONSISTENCY = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
# Same source: (index, n) -> PATH(index, D[n]) (the Go table numbers leaves from 1).
CT_INCLUSION = {
    (0, 1): [],
    (0, 8): CT_CONSISTENCY[1, 8],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
VECTOR_LEAF_HASHES = [leaf_hash(d) for d in VECTOR_LEAVES]
VECTOR_TREE = MerkleTree(VECTOR_LEAF_HASHES)


def _vector_root(n: int) -> bytes:
    return bytes.fromhex(VECTOR_ROOTS[n])


@pytest.mark.parametrize(("m", "n"), list(CT_CONSISTENCY))
def test_consistency_proof_matches_the_ct_vector(m: int, n: int) -> None:
    expected = CT_CONSISTENCY[m, n]
    assert [h.hex() for h in consistency_proof(VECTOR_LEAF_HASHES[:n], m)] == expected
    assert [h.hex() for h in VECTOR_TREE.consistency_proof(m, size=n)] == expected
    assert [h.hex() for h in reference_consistency(m, VECTOR_LEAVES[:n])] == expected
    verify_consistency(m, n, _vector_root(m), _vector_root(n), [bytes.fromhex(h) for h in expected])


@pytest.mark.parametrize(("index", "n"), list(CT_INCLUSION))
def test_inclusion_proof_matches_the_ct_vector(index: int, n: int) -> None:
    expected = CT_INCLUSION[index, n]
    assert [h.hex() for h in inclusion_proof(VECTOR_LEAF_HASHES[:n], index)] == expected
    assert [h.hex() for h in VECTOR_TREE.inclusion_proof(index, size=n)] == expected
    proof = [bytes.fromhex(h) for h in expected]
    verify_inclusion(VECTOR_LEAF_HASHES[index], index, n, proof, _vector_root(n))


@pytest.mark.parametrize("n", range(65))
def test_every_consistency_proof_matches_the_reference_and_verifies(n: int) -> None:
    entries = entries_of(n)
    leaves = [leaf_hash(e) for e in entries]
    top = root(leaves)
    for m in range(n + 1):
        proof = consistency_proof(leaves, m)
        assert proof == reference_consistency(m, entries)
        verify_consistency(m, n, root(leaves[:m]), top, proof)


def test_consistency_proof_is_empty_for_the_trivial_sizes() -> None:
    leaves = [leaf_hash(e) for e in entries_of(5)]
    assert consistency_proof(leaves, 0) == consistency_proof(leaves, 5) == []
    assert consistency_proof([], 0) == []


def test_consistency_proof_refuses_a_prefix_outside_the_tree() -> None:
    leaves = [leaf_hash(e) for e in entries_of(3)]
    for m in (-1, 4):
        with pytest.raises(IndexError):
            consistency_proof(leaves, m)


# --- consistency proofs: hostile inputs ----------------------------------------------------

R = [root([leaf_hash(e) for e in entries_of(n)]) for n in range(9)]
P_3_7 = consistency_proof([leaf_hash(e) for e in entries_of(7)], 3)


P_4_7 = consistency_proof([leaf_hash(e) for e in entries_of(7)], 4)
HOSTILE_CONSISTENCY = [
    pytest.param(-1, 4, R[0], R[4], [], "negative", id="negative first size"),
    pytest.param(0, -1, R[0], R[0], [], "negative", id="negative second size"),
    pytest.param(5, 4, R[5], R[4], [], "exceeds", id="first size above second"),
    pytest.param(3, 7, R[3], R[7], [], "is empty", id="empty proof between sizes"),
    pytest.param(4, 4, R[4], R[4], [R[4]], "must be empty", id="proof for equal sizes"),
    pytest.param(0, 4, R[0], R[4], [R[4]], "must be empty", id="proof from the empty tree"),
    pytest.param(0, 4, R[4], R[4], [], "empty root", id="size 0 with a non-empty root"),
    pytest.param(0, 0, R[4], R[4], [], "empty root", id="two empty trees, non-empty roots"),
    pytest.param(4, 4, R[4], R[5], [], "different roots", id="equal sizes, other roots"),
    pytest.param(3, 7, R[3], R[7], P_3_7[:-1], "shorter", id="last hash cut"),
    pytest.param(3, 7, R[3], R[7], [*P_3_7, R[7]], "longer", id="second root appended"),
    pytest.param(3, 7, R[3], R[7], [*P_3_7, *[R[0]] * 1000], "longer", id="1000 hashes appended"),
    pytest.param(2**64 + 1, 2**65, R[3], R[7], P_3_7, "shorter", id="sizes beyond 2^64"),
    pytest.param(3, 7, R[3], R[7], [b"", *P_3_7[1:]], "size-3 root", id="empty proof element"),
    pytest.param(3, 7, R[3], R[7], [P_3_7[0][:31], *P_3_7[1:]], "size-3", id="31-byte element"),
    pytest.param(3, 7, R[3][:31], R[7], P_3_7, "size-3 root", id="31-byte first root"),
    pytest.param(3, 7, R[3], R[6], P_3_7, "size-7 root", id="second root of size 6"),
    pytest.param(3, 7, R[7], R[3], P_3_7, "size-3 root", id="roots swapped"),
    # A power-of-two first tree opens the path with its own root: a wrong one shows up in the
    # recomputed second root rather than the first.
    pytest.param(4, 7, R[3], R[7], P_4_7, "size-7 root", id="power-of-two size, wrong root"),
]


@pytest.mark.parametrize(("m", "n", "first", "second", "proof", "reason"), HOSTILE_CONSISTENCY)
def test_hostile_consistency_input_is_rejected(
    m: int, n: int, first: bytes, second: bytes, proof: list[bytes], reason: str
) -> None:
    with pytest.raises(VerificationError, match=reason) as info:
        verify_consistency(m, n, first, second, proof)
    assert type(info.value) is VerificationError


@SETTINGS
@given(
    st.one_of(st.integers(-3, 70), st.integers(-(2**70), 2**70)),
    st.one_of(st.integers(-3, 70), st.integers(-(2**70), 2**70)),
    st.sampled_from(R) | st.binary(max_size=40),
    st.sampled_from(R) | st.binary(max_size=40),
    st.lists(st.sampled_from(R) | st.binary(max_size=40), max_size=12),
)
def test_arbitrary_consistency_input_only_ever_raises_verification_error(
    m: int, n: int, first: bytes, second: bytes, proof: list[bytes]
) -> None:
    try:
        verify_consistency(m, n, first, second, proof)
    except VerificationError:
        return
    # What passes must be one of the conventions that need no proof, or a genuine proof.
    assert m == 0 or (m == n and first == second) or 0 < m < n <= 8


# --- consistency proofs: bent proofs -------------------------------------------------------

Case = tuple[int, int, bytes, bytes, list[bytes]]


@st.composite
def consistency_cases(draw: st.DrawFn, *, strict: bool = False) -> Case:
    """(m, n, first root, second root, proof) for 1 <= n <= 64; with strict, m < n."""
    n = draw(st.integers(1, 64))
    m = draw(st.integers(0, n - 1 if strict else n))
    leaves = [leaf_hash(e) for e in entries_of(n)]
    return m, n, root(leaves[:m]), root(leaves), consistency_proof(leaves, m)


def _rejects_consistency(m: int, n: int, first: bytes, second: bytes, proof: list[bytes]) -> None:
    with pytest.raises(VerificationError) as info:
        verify_consistency(m, n, first, second, proof)
    assert type(info.value) is VerificationError


@SETTINGS
@given(consistency_cases(), st.data())
def test_any_byte_change_in_a_consistency_proof_is_rejected(
    case: Case, data: st.DataObject
) -> None:
    m, n, first, second, proof = case
    if not proof:
        return  # m == 0 or m == n: there is no proof to bend (tables above cover those)
    target = data.draw(st.integers(0, len(proof) - 1), label="element")
    at = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    bent = bytearray(proof[target])
    bent[at] ^= mask
    _rejects_consistency(m, n, first, second, [*proof[:target], bytes(bent), *proof[target + 1 :]])


@SETTINGS
@given(consistency_cases(), st.data())
def test_any_byte_change_in_a_root_is_rejected(case: Case, data: st.DataObject) -> None:
    m, n, first, second, proof = case
    which = data.draw(st.sampled_from(["first", "second"] if m else ["first"]), label="root")
    at = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor mask")

    def bend(value: bytes) -> bytes:
        out = bytearray(value)
        out[at] ^= mask
        return bytes(out)

    if which == "first":
        first = bend(first)
    else:
        second = bend(second)
    _rejects_consistency(m, n, first, second, proof)


@SETTINGS
@given(consistency_cases(), st.data())
def test_any_changed_first_size_is_rejected(case: Case, data: st.DataObject) -> None:
    m, n, first, second, proof = case
    wrong = data.draw(st.integers(-2, n + 2).filter(lambda i: i != m), label="wrong m")
    _rejects_consistency(wrong, n, first, second, proof)


@SETTINGS
@given(consistency_cases(), st.data())
def test_a_second_size_of_another_tree_height_is_rejected(case: Case, data: st.DataObject) -> None:
    m, n, first, second, proof = case
    if m == 0:
        return  # an empty first tree is consistent with every tree, whatever its size
    wrong = data.draw(
        st.integers(-2, 2 * n + 2).filter(
            lambda i: i != n and (m == n or (i - 1).bit_length() != (n - 1).bit_length())
        ),
        label="wrong n",
    )
    _rejects_consistency(m, wrong, first, second, proof)


def test_roots_do_not_bind_the_second_size_so_it_must_come_from_signed_data() -> None:
    # RFC 6962 roots do not commit to the leaf count: H(H(l0, l1), H(l2, l3)) is also the root
    # of the 3-leaf tree whose third "leaf hash" is H(l2, l3). A receipt must sign the size.
    leaves = [leaf_hash(e) for e in entries_of(4)]
    proof = consistency_proof(leaves, 2)
    verify_consistency(2, 4, root(leaves[:2]), root(leaves), proof)
    verify_consistency(2, 3, root(leaves[:2]), root(leaves), proof)  # passes: size not bound


@SETTINGS
@given(consistency_cases(strict=True))
def test_swapped_roots_are_rejected(case: Case) -> None:
    m, n, first, second, proof = case
    _rejects_consistency(m, n, second, first, proof)


@SETTINGS
@given(consistency_cases(), st.data())
def test_any_truncated_or_thinned_consistency_proof_is_rejected(
    case: Case, data: st.DataObject
) -> None:
    m, n, first, second, proof = case
    if not proof:
        return  # nothing to remove
    if data.draw(st.booleans(), label="truncate (else drop one)"):
        shorter = proof[: data.draw(st.integers(0, len(proof) - 1), label="kept")]
    else:
        drop = data.draw(st.integers(0, len(proof) - 1), label="dropped")
        shorter = [*proof[:drop], *proof[drop + 1 :]]
    _rejects_consistency(m, n, first, second, shorter)


@SETTINGS
@given(consistency_cases(), st.data())
def test_any_extended_consistency_proof_is_rejected(case: Case, data: st.DataObject) -> None:
    m, n, first, second, proof = case
    longer = list(proof)
    for _ in range(data.draw(st.integers(1, 3), label="added")):
        extra = data.draw(
            st.sampled_from([first, second, EMPTY_ROOT, *proof])
            | st.binary(min_size=32, max_size=32),
            label="extra",
        )
        longer.insert(data.draw(st.integers(0, len(longer)), label="at"), extra)
    _rejects_consistency(m, n, first, second, longer)


# --- MerkleTree: the same answers from precomputed levels ----------------------------------


def test_tree_agrees_with_the_plain_functions_on_every_prefix() -> None:
    leaves = [leaf_hash(e) for e in entries_of(70)]
    tree = MerkleTree(leaves)
    assert tree.size == 70
    assert tree.root() == root(leaves)
    for size in range(71):
        prefix = leaves[:size]
        assert tree.root(size) == root(prefix)
        for index in range(size):
            assert tree.inclusion_proof(index, size) == inclusion_proof(prefix, index)
        for m in range(size + 1):
            assert tree.consistency_proof(m, size) == consistency_proof(prefix, m)


@SETTINGS
@given(st.lists(st.binary(max_size=8), max_size=40), st.data())
def test_tree_defaults_to_the_whole_tree_and_equals_the_reference(
    entries: list[bytes], data: st.DataObject
) -> None:
    leaves = [leaf_hash(e) for e in entries]
    tree = MerkleTree(leaves)
    n = len(leaves)
    assert tree.root() == reference_mth(entries)
    m = data.draw(st.integers(0, n), label="m")
    assert tree.consistency_proof(m) == reference_consistency(m, entries)
    if n:
        index = data.draw(st.integers(0, n - 1), label="index")
        assert tree.inclusion_proof(index) == reference_path(index, entries)


def test_empty_tree_has_the_empty_root() -> None:
    tree = MerkleTree([])
    assert tree.size == 0
    assert tree.root() == tree.root(0) == EMPTY_ROOT
    assert tree.consistency_proof(0) == []


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("root", (-1,)),
        ("root", (6,)),
        ("inclusion_proof", (5,)),
        ("inclusion_proof", (-1,)),
        ("inclusion_proof", (3, 3)),
        ("inclusion_proof", (0, 6)),
        ("consistency_proof", (6,)),
        ("consistency_proof", (-1,)),
        ("consistency_proof", (4, 3)),
        ("consistency_proof", (0, -1)),
    ],
)
def test_tree_refuses_sizes_and_indices_outside_it(call: str, args: tuple[int, ...]) -> None:
    tree = MerkleTree([leaf_hash(e) for e in entries_of(5)])
    with pytest.raises(IndexError):
        getattr(tree, call)(*args)


def test_tree_of_a_hundred_thousand_leaves_answers_in_logarithmic_proofs() -> None:
    n = 100_003
    leaves = [leaf_hash(b"%d" % i) for i in range(n)]
    tree = MerkleTree(leaves)
    top = tree.root()
    assert top == root(leaves)
    for m in (1, 2**16, 77_777, n - 1):
        proof = tree.consistency_proof(m)
        assert len(proof) <= 2 * n.bit_length()
        verify_consistency(m, n, tree.root(m), top, proof)
    assert tree.consistency_proof(77_777) == consistency_proof(leaves, 77_777)
    for index in (0, 65_535, 65_536, n - 1):
        verify_inclusion(leaves[index], index, n, tree.inclusion_proof(index), top)
