"""tlog checkpoints and proof texts: spec examples, round trips, hostile tables and properties."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.checkpoint import (
    MAX_CONSISTENCY_HASHES,
    MAX_INCLUSION_HASHES,
    MAX_TEXT_BYTES,
    PROOF_HEADER,
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    VerifiedInclusion,
    check_not_forked,
    sign_checkpoint,
    unverified_checkpoint,
    verify_checkpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from receipts.effects import seeded
from receipts.errors import (
    ForkError,
    LimitError,
    NoteError,
    ProofError,
    ReceiptsError,
    SignatureError,
)
from receipts.keys import PrivateKey
from receipts.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from receipts.note import add_signature, parse_note, sign_note

LOG = PrivateKey.generate("ed25519", random_bytes=seeded(51))
OTHER = PrivateKey.generate("ed25519", random_bytes=seeded(52))
WITNESS = PrivateKey.generate("ed25519", random_bytes=seeded(53))
ORIGIN = "log.example/settlement"
ENTRIES = [f"settle request {i}".encode() for i in range(13)]
TREE = MerkleTree([leaf_hash(e) for e in ENTRIES])
SIZE = len(ENTRIES)

# c2sp.org/tlog-checkpoint and c2sp.org/tlog-witness: the example checkpoint text and the example
# add-checkpoint request body (which we use as the consistency proof text).
SPEC_CHECKPOINT_TEXT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_ADD_CHECKPOINT = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n" + SPEC_CHECKPOINT_TEXT + "\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
    "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+"
    "49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
).encode()


def checkpoint_at(
    size: int, *, key: PrivateKey = LOG, origin: str = ORIGIN, root: bytes | None = None
) -> bytes:
    cp = Checkpoint(origin=origin, size=size, root=TREE.root(size) if root is None else root)
    return sign_checkpoint(cp, key)


def inclusion(index: int, size: int = SIZE, *, extra: bool = True) -> bytes:
    return InclusionProof(
        index=index,
        hashes=tuple(TREE.inclusion_proof(index, size)),
        checkpoint=checkpoint_at(size),
        extra=ENTRIES[index] if extra else None,
    ).to_text()


def consistency(old: int, new: int = SIZE) -> bytes:
    return ConsistencyProof(
        old_size=old, hashes=tuple(TREE.consistency_proof(old, new)), checkpoint=checkpoint_at(new)
    ).to_text()


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --- checkpoints -------------------------------------------------------------------------


def test_the_spec_checkpoint_text_parses_and_writes_back_exactly() -> None:
    cp = Checkpoint.parse(SPEC_CHECKPOINT_TEXT)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.text() == SPEC_CHECKPOINT_TEXT


def test_extension_lines_round_trip() -> None:
    cp = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT, extensions=("ext one", "\u00e9"))
    assert cp.text() == f"{ORIGIN}\n0\n{b64(EMPTY_ROOT).decode()}\next one\n\u00e9\n"
    assert Checkpoint.parse(cp.text()) == cp


def test_a_signed_checkpoint_is_a_note_signed_under_its_origin() -> None:
    signed = checkpoint_at(7)
    assert verify_checkpoint(signed, LOG.public_key) == Checkpoint(
        origin=ORIGIN, size=7, root=TREE.root(7)
    )
    assert verify_checkpoint(signed, LOG.public_key, ORIGIN).size == 7
    assert signed.split(b"\n")[4].startswith("\u2014 ".encode() + ORIGIN.encode() + b" ")


def test_witness_cosignatures_are_ignored_by_checkpoint_verification() -> None:
    cosigned = add_signature(checkpoint_at(7), "witness.example/w1", WITNESS)
    assert verify_checkpoint(cosigned, LOG.public_key).size == 7


def test_a_checkpoint_for_another_origin_or_key_is_refused() -> None:
    with pytest.raises(SignatureError):
        verify_checkpoint(checkpoint_at(7), LOG.public_key, "log.example/other")
    with pytest.raises(SignatureError):
        verify_checkpoint(checkpoint_at(7), OTHER.public_key)
    # Signed by the log's key under its name, but naming another origin in the text.
    mislabeled = sign_note(
        Checkpoint(origin="log.example/other", size=1, root=TREE.root(1)).text(), ORIGIN, LOG
    )
    with pytest.raises(SignatureError):
        verify_checkpoint(mislabeled, LOG.public_key, ORIGIN)


H32 = b64(bytes(32)).decode()

HOSTILE_CHECKPOINT_TEXTS = [
    pytest.param(f"{ORIGIN}\n7\n{H32}", id="no_final_newline"),
    pytest.param(f"{ORIGIN}\n7\n", id="two_lines"),
    pytest.param(f"\n7\n{H32}\n", id="empty_origin"),
    pytest.param(f"{ORIGIN}\n07\n{H32}\n", id="size_leading_zero"),
    pytest.param(f"{ORIGIN}\n00\n{H32}\n", id="size_double_zero"),
    pytest.param(f"{ORIGIN}\n+7\n{H32}\n", id="size_plus"),
    pytest.param(f"{ORIGIN}\n-1\n{H32}\n", id="size_negative"),
    pytest.param(f"{ORIGIN}\n7_0\n{H32}\n", id="size_underscore"),
    pytest.param(f"{ORIGIN}\n\u0667\n{H32}\n", id="size_arabic_digit"),
    pytest.param(f"{ORIGIN}\n{1 << 64}\n{H32}\n", id="size_2_to_64"),
    pytest.param(f"{ORIGIN}\n7\n{H32[:-2]}B=\n", id="root_noncanonical_b64"),
    pytest.param(f"{ORIGIN}\n7\n{b64(bytes(31)).decode()}\n", id="root_31_bytes"),
    pytest.param(f"{ORIGIN}\n7\n{b64(bytes(33)).decode()}\n", id="root_33_bytes"),
    pytest.param(f"{ORIGIN}\n7\n{H32}\n\n", id="empty_extension_line"),
    pytest.param(f"{ORIGIN}\r\n7\r\n{H32}\r\n", id="crlf"),
    pytest.param(f"{ORIGIN}\t\n7\n{H32}\n", id="tab_in_origin"),
]


@pytest.mark.parametrize("text", HOSTILE_CHECKPOINT_TEXTS)
def test_hostile_checkpoint_texts_are_refused(text: str) -> None:
    with pytest.raises(NoteError) as info:
        Checkpoint.parse(text)
    assert type(info.value) is NoteError


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"origin": ""}, id="empty_origin"),
        pytest.param({"origin": "a\nb"}, id="newline_in_origin"),
        pytest.param({"origin": "a\ud800"}, id="surrogate_in_origin"),
        pytest.param({"size": -1}, id="negative_size"),
        pytest.param({"size": 1 << 64}, id="size_2_to_64"),
        pytest.param({"size": True}, id="size_bool"),
        pytest.param({"root": bytes(31)}, id="root_31_bytes"),
        pytest.param({"root": H32}, id="root_as_text"),
        pytest.param({"extensions": ("",)}, id="empty_extension"),
        pytest.param({"extensions": ("a\nb",)}, id="newline_in_extension"),
        pytest.param({"extensions": ["a"]}, id="extensions_as_list"),
    ],
)
def test_invalid_checkpoints_cannot_be_built(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"origin": ORIGIN, "size": 1, "root": bytes(32), **fields}
    with pytest.raises(NoteError):
        Checkpoint(**values)  # type: ignore[arg-type]


def test_a_checkpoint_text_over_the_limit_is_refused() -> None:
    with pytest.raises(LimitError):
        Checkpoint.parse(f"{ORIGIN}\n1\n{H32}\n" + "x\n" * (MAX_TEXT_BYTES // 2))


# --- inclusion proofs --------------------------------------------------------------------


def test_an_inclusion_proof_has_the_tlog_proof_layout() -> None:
    text = inclusion(5)
    hashes = TREE.inclusion_proof(5)
    head = [PROOF_HEADER.encode(), b"extra " + b64(ENTRIES[5]), b"index 5"]
    assert text == b"\n".join([*head, *map(b64, hashes)]) + b"\n\n" + checkpoint_at(SIZE)
    assert InclusionProof.parse(text).to_text() == text


def test_an_inclusion_proof_verifies_with_its_entry_in_extra() -> None:
    verified = verify_inclusion_proof(inclusion(5), LOG.public_key, origin=ORIGIN)
    assert verified == VerifiedInclusion(
        checkpoint=Checkpoint(origin=ORIGIN, size=SIZE, root=TREE.root()),
        index=5,
        entry=ENTRIES[5],
    )


def test_the_entry_may_come_from_the_caller_and_must_then_match_extra() -> None:
    bare = inclusion(5, extra=False)
    assert b"extra" not in bare
    assert verify_inclusion_proof(bare, LOG.public_key, entry=ENTRIES[5]).entry == ENTRIES[5]
    assert verify_inclusion_proof(inclusion(5), LOG.public_key, entry=ENTRIES[5]).index == 5
    with pytest.raises(NoteError):
        verify_inclusion_proof(bare, LOG.public_key)
    with pytest.raises(ProofError):
        verify_inclusion_proof(inclusion(5), LOG.public_key, entry=ENTRIES[6])
    with pytest.raises(ProofError):
        verify_inclusion_proof(bare, LOG.public_key, entry=ENTRIES[6])


def test_an_empty_entry_and_a_one_leaf_tree_round_trip() -> None:
    tree = MerkleTree([leaf_hash(b"")])
    signed = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1, root=tree.root()), LOG)
    text = InclusionProof(index=0, hashes=(), checkpoint=signed, extra=b"").to_text()
    assert text.startswith(f"{PROOF_HEADER}\nextra \nindex 0\n\n".encode())
    assert verify_inclusion_proof(text, LOG.public_key).entry == b""


HASH5 = b64(TREE.inclusion_proof(5)[0])
HASH5_FLIPPED = b64(bytes([TREE.inclusion_proof(5)[0][0] ^ 1]) + TREE.inclusion_proof(5)[0][1:])
CHECKPOINT = checkpoint_at(SIZE)
SIG_LINE = CHECKPOINT[CHECKPOINT.index("\u2014".encode()) :]
P = inclusion(5)


def _with_checkpoint(signed: bytes) -> bytes:
    """P's index, path and extra in front of another signed checkpoint."""
    hashes = tuple(TREE.inclusion_proof(5))
    return InclusionProof(index=5, hashes=hashes, checkpoint=signed, extra=ENTRIES[5]).to_text()


HOSTILE_INCLUSION = [
    pytest.param(P[:-1], NoteError, id="truncated_in_signature"),
    pytest.param(P[:30], NoteError, id="truncated_in_header"),
    pytest.param(P.replace(b"proof@v1", b"proof@v2"), NoteError, id="wrong_header"),
    pytest.param(P.replace(b"index 5\n", b"index 05\n"), NoteError, id="index_leading_zero"),
    pytest.param(P.replace(b"index 5\n", b"index +5\n"), NoteError, id="index_plus"),
    pytest.param(P.replace(b"index 5\n", b"index  5\n"), NoteError, id="index_two_spaces"),
    pytest.param(P.replace(b"index 5\n", b"index 5 \n"), NoteError, id="index_trailing_space"),
    pytest.param(P.replace(b"index 5\n", "index \u0665\n".encode()), NoteError, id="index_utf8"),
    pytest.param(P.replace(b"index 5\n", b"index 18446744073709551616\n"), NoteError, id="2**64"),
    pytest.param(P.replace(b"index 5\n", b""), NoteError, id="no_index_line"),
    pytest.param(P.replace(b"extra ", b"Extra "), NoteError, id="extra_capitalised"),
    pytest.param(P.replace(b"extra ", b"extra  "), NoteError, id="extra_two_spaces"),
    pytest.param(P.replace(HASH5, HASH5[:-2] + b"B="), NoteError, id="hash_noncanonical_b64"),
    pytest.param(P.replace(HASH5, HASH5[:-1]), NoteError, id="hash_unpadded"),
    pytest.param(P.replace(HASH5, b64(bytes(31))), NoteError, id="hash_31_bytes"),
    pytest.param(P.replace(HASH5, b64(bytes(33))), NoteError, id="hash_33_bytes"),
    pytest.param(P.replace(b"index 5\n", b"index 5\n\n"), NoteError, id="blank_line_early"),
    pytest.param(P + b"\n", NoteError, id="blank_line_at_end"),
    pytest.param(P.replace(b"\n", b"\r\n"), NoteError, id="crlf"),
    pytest.param(P[: -len(SIG_LINE)], NoteError, id="missing_signature"),
    pytest.param(_with_checkpoint(checkpoint_at(SIZE, key=OTHER)), SignatureError, id="other_key"),
    pytest.param(
        P.replace(f"\n{SIZE}\n".encode(), f"\n{SIZE + 1}\n".encode()),
        SignatureError,
        id="tampered_checkpoint_size",
    ),
    pytest.param(P.replace(HASH5, HASH5_FLIPPED), ProofError, id="tampered_proof_hash"),
    pytest.param(P.replace(b"index 5\n", b"index 4\n"), ProofError, id="wrong_index"),
    pytest.param(P.replace(b"index 5\n", b"index 13\n"), ProofError, id="index_past_size"),
    pytest.param(P.replace(b64(ENTRIES[5]), b64(ENTRIES[6])), ProofError, id="tampered_extra"),
    pytest.param(P.replace(HASH5 + b"\n", b""), ProofError, id="hash_missing"),
    pytest.param(P.replace(HASH5, HASH5 + b"\n" + HASH5), ProofError, id="hash_added"),
    pytest.param(_with_checkpoint(checkpoint_at(12)), ProofError, id="wrong_size_checkpoint"),
    pytest.param(
        P.replace(HASH5, b"\n".join([HASH5] * (MAX_INCLUSION_HASHES + 1))),
        LimitError,
        id="65_hashes",
    ),
    pytest.param(
        P.replace(b64(ENTRIES[5]), b64(bytes(MAX_TEXT_BYTES))), LimitError, id="over_1_MiB"
    ),
]


@pytest.mark.parametrize(("data", "error"), HOSTILE_INCLUSION)
def test_hostile_inclusion_proofs_raise_their_specific_error(
    data: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        verify_inclusion_proof(data, LOG.public_key, origin=ORIGIN)
    assert type(info.value) is error


def test_sixty_four_hashes_parse() -> None:
    hashes = (bytes(32),) * MAX_INCLUSION_HASHES
    proof = InclusionProof(index=0, hashes=hashes, checkpoint=CHECKPOINT)
    assert InclusionProof.parse(proof.to_text()) == proof


def test_proof_errors_chain_the_merkle_failure() -> None:
    with pytest.raises(ProofError) as info:
        verify_inclusion_proof(P.replace(b"index 5\n", b"index 4\n"), LOG.public_key)
    assert info.value.__cause__ is not None


# --- consistency proofs ------------------------------------------------------------------


def test_the_spec_add_checkpoint_body_parses_and_writes_back_exactly() -> None:
    proof = ConsistencyProof.parse(SPEC_ADD_CHECKPOINT)
    assert proof.old_size == 20852014
    assert len(proof.hashes) == 4
    assert unverified_checkpoint(proof.checkpoint) == Checkpoint.parse(SPEC_CHECKPOINT_TEXT)
    signatures = parse_note(proof.checkpoint).signatures
    assert [s.name for s in signatures] == ["example.com/behind-the-sofa"] * 2
    assert signatures[0].key_id != signatures[1].key_id
    assert proof.to_text() == SPEC_ADD_CHECKPOINT


@pytest.mark.parametrize(("old", "new"), [(0, 0), (0, 13), (1, 13), (5, 13), (8, 13), (13, 13)])
def test_consistency_proofs_verify_and_return_both_checkpoints(old: int, new: int) -> None:
    before, after = verify_consistency_proof(
        consistency(old, new), checkpoint_at(old), LOG.public_key, origin=ORIGIN
    )
    assert (before.size, after.size) == (old, new)
    assert after.root == TREE.root(new)


def test_a_consistency_proof_has_the_add_checkpoint_layout() -> None:
    text = consistency(5)
    hashes = TREE.consistency_proof(5, SIZE)
    assert text == b"\n".join([b"old 5", *map(b64, hashes)]) + b"\n\n" + CHECKPOINT
    assert ConsistencyProof.parse(text).to_text() == text


C = consistency(5)
OLD = checkpoint_at(5)
CHASH = b64(TREE.consistency_proof(5, SIZE)[0])
CHASH_FLIPPED = b64(
    bytes([TREE.consistency_proof(5, SIZE)[0][0] ^ 1]) + TREE.consistency_proof(5, SIZE)[0][1:]
)
FORKED = checkpoint_at(5, root=TREE.root(6))


def _new(signed: bytes, old_size: int = 5, hashes: tuple[bytes, ...] = ()) -> bytes:
    return ConsistencyProof(old_size=old_size, hashes=hashes, checkpoint=signed).to_text()


HOSTILE_CONSISTENCY = [
    pytest.param(C[:-1], OLD, NoteError, id="truncated"),
    pytest.param(C.replace(b"old 5\n", b"old 05\n"), OLD, NoteError, id="old_leading_zero"),
    pytest.param(C.replace(b"old 5\n", b"Old 5\n"), OLD, NoteError, id="wrong_header"),
    pytest.param(C.replace(b"old 5\n", b""), OLD, NoteError, id="no_old_line"),
    pytest.param(C.replace(CHASH, CHASH[:-2] + b"B="), OLD, NoteError, id="noncanonical_b64"),
    pytest.param(C.replace(CHASH, b64(bytes(31))), OLD, NoteError, id="hash_31_bytes"),
    pytest.param(C.replace(b"old 5\n", b"old 5\n\n"), OLD, NoteError, id="blank_line_early"),
    pytest.param(C.replace(b"\n", b"\r\n"), OLD, NoteError, id="crlf"),
    pytest.param(C, OLD[: OLD.index("\u2014".encode())], NoteError, id="old_unsigned"),
    pytest.param(
        C.replace(CHASH, b"\n".join([CHASH] * (MAX_CONSISTENCY_HASHES + 1))),
        OLD,
        LimitError,
        id="64_hashes",
    ),
    pytest.param(_new(checkpoint_at(SIZE, key=OTHER)), OLD, SignatureError, id="new_other_key"),
    pytest.param(C, checkpoint_at(5, key=OTHER), SignatureError, id="old_other_key"),
    pytest.param(
        C.replace(f"\n{SIZE}\n".encode(), b"\n14\n"), OLD, SignatureError, id="tampered_new"
    ),
    pytest.param(C.replace(CHASH, CHASH_FLIPPED), OLD, ProofError, id="tampered_proof_hash"),
    pytest.param(C.replace(CHASH + b"\n", b""), OLD, ProofError, id="hash_missing"),
    pytest.param(C, checkpoint_at(6), ProofError, id="old_size_not_the_old_checkpoint"),
    pytest.param(C.replace(b"old 5\n", b"old 6\n"), checkpoint_at(6), ProofError, id="wrong_old"),
    pytest.param(C, checkpoint_at(5, root=TREE.root(6)), ProofError, id="old_root_not_a_prefix"),
    pytest.param(_new(checkpoint_at(3)), OLD, ProofError, id="new_smaller_than_old"),
    pytest.param(
        _new(checkpoint_at(SIZE, origin="log.example/other")), OLD, ProofError, id="other_log"
    ),
    pytest.param(
        _new(checkpoint_at(3), 0, (bytes(32),)),
        checkpoint_at(0),
        ProofError,
        id="old_0_with_hashes",
    ),
    pytest.param(_new(FORKED), OLD, ForkError, id="forked_checkpoints"),
]


@pytest.mark.parametrize(("data", "old", "error"), HOSTILE_CONSISTENCY)
def test_hostile_consistency_proofs_raise_their_specific_error(
    data: bytes, old: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        verify_consistency_proof(data, old, LOG.public_key)
    assert type(info.value) is error


def test_an_origin_other_than_the_logs_is_refused_for_either_checkpoint() -> None:
    with pytest.raises(SignatureError):
        verify_consistency_proof(C, OLD, LOG.public_key, origin="log.example/other")


def test_a_fork_carries_both_checkpoints_as_evidence() -> None:
    a, b = unverified_checkpoint(OLD), unverified_checkpoint(FORKED)
    with pytest.raises(ForkError) as info:
        check_not_forked(a, b)
    assert info.value.details == (a, b)
    assert isinstance(info.value, ProofError)


def test_checkpoints_of_different_sizes_or_equal_roots_are_not_a_fork() -> None:
    a = unverified_checkpoint(OLD)
    check_not_forked(a, a)
    check_not_forked(a, unverified_checkpoint(CHECKPOINT))
    other = Checkpoint(origin="log.example/other", size=5, root=bytes(32))
    with pytest.raises(ProofError) as info:
        check_not_forked(a, other)
    assert type(info.value) is ProofError


def test_invalid_proof_objects_cannot_be_built() -> None:
    with pytest.raises(NoteError):
        InclusionProof(index=-1, hashes=(), checkpoint=CHECKPOINT)
    with pytest.raises(NoteError):
        InclusionProof(index=0, hashes=(bytes(31),), checkpoint=CHECKPOINT)
    with pytest.raises(NoteError):
        InclusionProof(index=0, hashes=(), checkpoint=CHECKPOINT[:-1])
    with pytest.raises(LimitError):
        ConsistencyProof(old_size=0, hashes=(bytes(32),) * 64, checkpoint=CHECKPOINT)
    with pytest.raises(NoteError):
        ConsistencyProof(old_size=0, hashes=[], checkpoint=CHECKPOINT)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_of_a_signed_checkpoint_is_rejected(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(CHECKPOINT) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != CHECKPOINT[position]), label="byte")
    tampered = CHECKPOINT[:position] + bytes([new]) + CHECKPOINT[position + 1 :]
    with pytest.raises(ReceiptsError):
        verify_checkpoint(tampered, LOG.public_key)
    try:
        changed = unverified_checkpoint(tampered)
    except ReceiptsError:
        return  # rejected as malformed
    if changed == unverified_checkpoint(CHECKPOINT):
        # The change is in the signature line: no line is the log's valid signature any more.
        with pytest.raises(SignatureError):
            verify_checkpoint(tampered, LOG.public_key)
    else:
        # Another checkpoint: unsigned, or (an origin with a space) one no key name can sign.
        assert changed.text() != unverified_checkpoint(CHECKPOINT).text()
        with pytest.raises((SignatureError, NoteError)):
            verify_checkpoint(tampered, LOG.public_key)


def _proof_text(tree: MerkleTree, signed: bytes, entry: bytes, path: int, index: int) -> bytes:
    hashes = tuple(tree.inclusion_proof(path))
    return InclusionProof(index=index, hashes=hashes, checkpoint=signed, extra=entry).to_text()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=16), min_size=1, max_size=20, unique=True))
def test_inclusion_proofs_verify_for_every_index_and_fail_for_any_other(
    entries: list[bytes],
) -> None:
    tree = MerkleTree([leaf_hash(e) for e in entries])
    signed = sign_checkpoint(Checkpoint(origin=ORIGIN, size=tree.size, root=tree.root()), LOG)
    for i, entry in enumerate(entries):
        verified = verify_inclusion_proof(_proof_text(tree, signed, entry, i, i), LOG.public_key)
        assert (verified.index, verified.entry) == (i, entry)
        for j in (j for j in range(tree.size + 1) if j != i):
            with pytest.raises(ProofError):
                verify_inclusion_proof(_proof_text(tree, signed, entry, i, j), LOG.public_key)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.data())
def test_consistency_proofs_verify_between_any_two_sizes(n: int, data: st.DataObject) -> None:
    tree = MerkleTree([leaf_hash(i.to_bytes(4, "big")) for i in range(n)])
    m = data.draw(st.integers(0, n), label="m")

    def signed(size: int) -> bytes:
        return sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=tree.root(size)), LOG)

    text = _new(signed(n), m, tuple(tree.consistency_proof(m, n)))
    old, new = verify_consistency_proof(text, signed(m), LOG.public_key)
    assert (old.size, new.size) == (m, n)
    if 0 < m < n - 1:
        wrong = _new(signed(n), m + 1, tuple(tree.consistency_proof(m, n)))
        with pytest.raises(ProofError):
            verify_consistency_proof(wrong, signed(m + 1), LOG.public_key)
