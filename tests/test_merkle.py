"""RFC 6962 Merkle trees: published vectors, a slow reference, and proofs that cannot be bent."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.errors import VerificationError
from receipts.merkle import (
    EMPTY_ROOT,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
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
