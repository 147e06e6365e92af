"""The ledger's log: roots and proofs read from the stored nodes are RFC 6962's (MerkleTree's) for
every index and size; proofs verify with only a checkpoint and the log's public key; tampered
proofs, other keys and forked checkpoints are refused, and the log never signs a fork."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from receipts.checkpoint import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    check_not_forked,
    sign_checkpoint,
    unverified_checkpoint,
    verify_checkpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from receipts.errors import (
    ForkError,
    InputError,
    LimitError,
    NoteError,
    PolicyError,
    ProofError,
    ReceiptsError,
    SignatureError,
    StateError,
)
from receipts.events import Deposit
from receipts.keys import PrivateKey
from receipts.ledger import Ledger
from receipts.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash
from receipts.note import encode_base64
from receipts.reconcile import audit
from receipts.tlog import Log
from tests.conftest import fixture_key
from tests.settlekit import LOG_KEY, NOW, ORIGIN, PAYER, HandClock, World

ENTRIES = 40
LOG_PUB = LOG_KEY.public_key


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A ledger of 40 entries (the opening and 39 deposits), with checkpoints at several sizes."""
    w = World(tmp_path_factory.mktemp("tlog") / "ledger.db")
    w.ledger.log.checkpoint(LOG_KEY)
    for n in range(1, ENTRIES):
        w.ledger.deposit(PAYER.public_key.key_id, "credit", n)
        if w.store.size() in (2, 7, 8, 16, 31, ENTRIES):
            w.ledger.log.checkpoint(LOG_KEY)
    return w


def _tree(w: World) -> MerkleTree:
    return MerkleTree([leaf_hash(e) for e in w.store.entries(0, w.store.size())])


def test_roots_and_proofs_match_merkle_tree_for_every_index_and_size(grown: World) -> None:
    log, tree = grown.ledger.log, _tree(grown)
    assert log.size() == tree.size == ENTRIES
    assert log.root(0) == EMPTY_ROOT
    for size in range(ENTRIES + 1):
        assert log.root(size) == tree.root(size), size
        for index in range(size):
            assert log.inclusion_path(index, size) == tree.inclusion_proof(index, size)
        for old in range(size + 1):
            assert log.consistency_path(old, size) == tree.consistency_proof(old, size)


def test_every_entry_is_proven_against_every_checkpoint_that_covers_it(grown: World) -> None:
    log = grown.ledger.log
    checkpoints = grown.store.checkpoints()
    assert [size for size, _ in checkpoints] == [1, 2, 7, 8, 16, 31, ENTRIES]
    for size, note in checkpoints:
        for index in range(size):
            proven = verify_inclusion_proof(log.prove(index, note), LOG_PUB, origin=ORIGIN)
            assert (proven.index, proven.checkpoint.size) == (index, size)
            assert proven.entry == grown.store.entries(index, index + 1)[0]
    assert log.latest_checkpoint() == checkpoints[-1][1]


def test_every_pair_of_checkpoints_is_proven_consistent(grown: World) -> None:
    checkpoints = [note for _, note in grown.store.checkpoints()]
    for i, old in enumerate(checkpoints):
        for new in checkpoints[i:]:
            text = grown.ledger.log.prove_consistency(unverified_checkpoint(old).size, new)
            before, after = verify_consistency_proof(text, old, LOG_PUB, origin=ORIGIN)
            assert (before, after) == (unverified_checkpoint(old), unverified_checkpoint(new))


def test_each_new_checkpoint_is_consistent_with_the_one_before(tmp_path: Path) -> None:
    w = World(tmp_path / "ledger.db")
    previous = w.ledger.log.checkpoint(LOG_KEY)
    for n in range(1, 12):
        for _ in range(n % 3):
            w.ledger.deposit(PAYER.public_key.key_id, "credit", n)
        note = w.ledger.log.checkpoint(LOG_KEY)
        old = unverified_checkpoint(previous)
        text = w.ledger.log.prove_consistency(old.size, note)
        verify_consistency_proof(text, previous, LOG_PUB, origin=ORIGIN)
        head = verify_checkpoint(note, LOG_PUB, ORIGIN)
        assert head == Checkpoint(origin=ORIGIN, size=w.store.size(), root=w.ledger.log.root())
        previous = note


def test_signing_the_same_head_twice_gives_the_same_checkpoint(tmp_path: Path) -> None:
    w = World(tmp_path / "ledger.db")
    first = w.ledger.log.checkpoint(LOG_KEY)
    assert w.ledger.log.checkpoint(LOG_KEY) == first
    assert w.store.checkpoints() == [(1, first)]


def test_the_log_refuses_to_sign_a_second_root_for_a_size(tmp_path: Path) -> None:
    """(k2): the newest stored head has another root than the tree at its size (here, a raw
    store edit put it there): the log signs nothing more."""
    w = World(tmp_path / "ledger.db")
    w.ledger.deposit(PAYER.public_key.key_id, "credit", 5)
    forged = sign_checkpoint(Checkpoint(origin=ORIGIN, size=2, root=bytes(32)), LOG_KEY)
    with w.store.transaction():
        w.store.add_checkpoint(2, forged)
    with pytest.raises(StateError, match="no longer has the root it signed") as raised:
        w.ledger.log.checkpoint(LOG_KEY)
    assert raised.type is StateError
    assert w.store.checkpoints() == [(2, forged)]


def test_the_first_checkpoint_pins_the_log_key(tmp_path: Path) -> None:
    """(k1): a log signed by two keys would give verifiers two truths; the second is refused."""
    w = World(tmp_path / "ledger.db")
    first = w.ledger.log.checkpoint(LOG_KEY)
    w.ledger.deposit(PAYER.public_key.key_id, "credit", 5)
    with pytest.raises(PolicyError, match="signed by another key") as raised:
        w.ledger.log.checkpoint(fixture_key("other_ed25519"))
    assert raised.type is PolicyError
    assert w.store.checkpoints() == [(1, first)]
    assert w.store.meta("log_key") == LOG_PUB.raw
    second = w.ledger.log.checkpoint(LOG_KEY)  # the pinned key goes on signing
    verify_checkpoint(second, LOG_PUB, ORIGIN)
    assert [size for size, _ in w.store.checkpoints()] == [1, 2]


def test_a_size_keeps_its_first_note(tmp_path: Path) -> None:
    """(k3): the same head signed again is the same note (Ed25519 is deterministic) and is kept
    once; a different note for a size already signed (here, under another origin) is refused."""
    w = World(tmp_path / "ledger.db")
    note = w.ledger.log.checkpoint(LOG_KEY)
    with w.store.transaction():
        w.store.add_checkpoint(1, note)
    assert w.store.checkpoints() == [(1, note)]
    with pytest.raises(StateError, match="different checkpoint of size 1") as raised:
        Log(w.store, "example.com/other-ledger").checkpoint(LOG_KEY)
    assert raised.type is StateError
    assert w.store.checkpoints() == [(1, note)]


def _rewrite_history(path: Path, index: int, entry: bytes) -> None:
    """Replace entry ``index`` with raw SQL and store the tree nodes the new entries make, so
    the tree agrees with its entries and only the signed checkpoints remember the old ones."""
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET data = ? WHERE idx = ?", (entry, index))
    entries = [bytes(e) for (e,) in db.execute("SELECT data FROM entries ORDER BY idx")]
    db.execute("DELETE FROM nodes")
    level, hashes = 0, [leaf_hash(e) for e in entries]
    while hashes:
        db.executemany("INSERT INTO nodes VALUES (?, ?, ?)",
                       [(level, i, h) for i, h in enumerate(hashes)])  # fmt: skip
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
        level += 1
    db.commit()
    db.close()


def test_the_log_signs_nothing_after_its_history_was_rewritten(tmp_path: Path) -> None:
    """(k2): an entry changed with raw SQL on a copy, its nodes recomputed to match: the tree
    is consistent, but not with the heads already signed, so the log refuses to sign again."""
    w = World(tmp_path / "ledger.db")
    for n in range(1, 6):
        w.ledger.deposit(PAYER.public_key.key_id, "credit", n)
    w.ledger.log.checkpoint(LOG_KEY)
    w.ledger.deposit(PAYER.public_key.key_id, "credit", 6)
    w.ledger.close()
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "ledger.db", copy)
    richer = Deposit(at=NOW, account=PAYER.public_key.key_id, asset="credit", amount=10**9)
    _rewrite_history(copy, 3, richer.encode())
    ledger = Ledger.open(copy, clock=HandClock())
    try:
        signed = ledger.store.checkpoints()
        assert ledger.log.root(6) == MerkleTree(
            [leaf_hash(e) for e in ledger.store.entries(0, 6)]
        ).root(6)  # the rewritten tree is self-consistent
        with pytest.raises(StateError, match="history was rewritten") as raised:
            ledger.log.checkpoint(LOG_KEY)
        assert raised.type is StateError
        assert ledger.store.checkpoints() == signed
        with pytest.raises(StateError, match="not this log's tree"):
            audit(ledger.store)
    finally:
        ledger.close()


def test_forked_checkpoints_are_refused_as_a_fork(grown: World) -> None:
    size, honest = grown.store.checkpoints()[2]
    forked = sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=bytes(32)), LOG_KEY)
    proof = ConsistencyProof(old_size=size, hashes=(), checkpoint=forked).to_text()
    with pytest.raises(ForkError) as raised:
        verify_consistency_proof(proof, honest, LOG_PUB, origin=ORIGIN)
    assert raised.type is ForkError
    a, b = verify_checkpoint(honest, LOG_PUB), verify_checkpoint(forked, LOG_PUB)
    with pytest.raises(ForkError) as direct:
        check_not_forked(a, b)
    assert direct.value.details == (a, b)
    check_not_forked(a, a)


# --- hostile proofs ------------------------------------------------------------------------


def _lines(text: bytes) -> tuple[list[bytes], bytes]:
    head, _, note = text.partition(b"\n\n")
    return head.split(b"\n"), note


def _join(lines: list[bytes], note: bytes) -> bytes:
    return b"\n".join(lines) + b"\n\n" + note


def _edit_line(at: int, edit: Callable[[bytes], bytes]) -> Callable[[bytes, World], bytes]:
    def change(text: bytes, w: World) -> bytes:
        lines, note = _lines(text)
        lines[at] = edit(lines[at])
        return _join(lines, note)

    return change


def _flip_hash(line: bytes) -> bytes:
    return encode_base64(bytes(32)).encode() if line != encode_base64(bytes(32)).encode() else (
        encode_base64(b"\x01" * 32).encode()
    )  # fmt: skip


def _drop_line(at: int) -> Callable[[bytes, World], bytes]:
    def change(text: bytes, w: World) -> bytes:
        lines, note = _lines(text)
        del lines[at]
        return _join(lines, note)

    return change


def _other_checkpoint(text: bytes, w: World) -> bytes:
    lines, _ = _lines(text)
    return _join(lines, w.store.checkpoints()[-2][1])  # a real head of another size


def _resigned_by(key: PrivateKey) -> Callable[[bytes, World], bytes]:
    def change(text: bytes, w: World) -> bytes:
        lines, note = _lines(text)
        return _join(lines, sign_checkpoint(unverified_checkpoint(note), key))

    return change


def _flip_note_signature(text: bytes, w: World) -> bytes:
    lines, note = _lines(text)
    sig_line = note.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    name, _, b64 = sig_line.rpartition(b" ")
    flipped = b64[:-6] + (b"A" if b64[-6:-5] != b"A" else b"B") + b64[-5:]
    return _join(lines, note.replace(sig_line, name + b" " + flipped))


# (edit of `log prove 13` against the 16-entry checkpoint, error); line 0 is the header, line 1
# the extra data (the entry), line 2 the index, lines 3.. the hashes.
INCLUSION_TAMPERS: dict[str, tuple[Callable[[bytes, World], bytes], type[ReceiptsError]]] = {
    "first_hash_changed": (_edit_line(3, _flip_hash), ProofError),
    "last_hash_changed": (_edit_line(-1, _flip_hash), ProofError),
    "hash_dropped": (_drop_line(3), ProofError),
    "index_moved": (_edit_line(2, lambda _: b"index 12"), ProofError),
    "entry_swapped": (
        _edit_line(1, lambda _: b"extra " + encode_base64(b"x").encode()),
        ProofError,
    ),
    "checkpoint_of_another_size": (_other_checkpoint, ProofError),
    "checkpoint_signed_by_another_key": (
        _resigned_by(fixture_key("other_ed25519")),
        SignatureError,
    ),
    "checkpoint_signature_flipped": (_flip_note_signature, SignatureError),
    "hash_not_base64": (_edit_line(3, lambda _: b"!!!!"), NoteError),
    "hash_31_bytes": (_edit_line(3, lambda _: encode_base64(bytes(31)).encode()), NoteError),
    "index_with_leading_zero": (_edit_line(2, lambda _: b"index 013"), NoteError),
    "no_index_line": (_drop_line(2), NoteError),
    "wrong_header": (_edit_line(0, lambda _: b"c2sp.org/tlog-proof@v2"), NoteError),
    "no_blank_line": (lambda t, w: t.replace(b"\n\n", b"\n"), NoteError),
    "65_hashes": (
        lambda t, w: t.replace(b"index 13\n", b"index 13\n" + b"A" * 43 + b"=\n" * 65),
        LimitError,
    ),
}


@pytest.mark.parametrize(("edit", "error"), INCLUSION_TAMPERS.values(), ids=INCLUSION_TAMPERS)
def test_a_tampered_inclusion_proof_is_refused(
    grown: World, edit: Callable[[bytes, World], bytes], error: type[ReceiptsError]
) -> None:
    note = dict(grown.store.checkpoints())[16]
    honest = grown.ledger.log.prove(13, note)
    verify_inclusion_proof(honest, LOG_PUB, origin=ORIGIN)
    with pytest.raises(error) as raised:
        verify_inclusion_proof(edit(honest, grown), LOG_PUB, origin=ORIGIN)
    assert raised.type is error, raised.value
    assert "\n" not in str(raised.value)


def test_a_proof_checked_with_another_key_or_origin_is_refused(grown: World) -> None:
    text = grown.ledger.log.prove(3)
    stranger = fixture_key("other_ed25519").public_key
    with pytest.raises(SignatureError):
        verify_inclusion_proof(text, stranger, origin=ORIGIN)
    with pytest.raises(SignatureError):
        verify_inclusion_proof(text, LOG_PUB, origin="example.com/other-ledger")
    with pytest.raises(SignatureError):
        verify_checkpoint(grown.ledger.log.latest_checkpoint(), stranger)


def test_an_entry_given_beside_the_proof_must_be_the_proven_one(grown: World) -> None:
    text = grown.ledger.log.prove(3)
    entry = grown.store.entries(3, 4)[0]
    assert verify_inclusion_proof(text, LOG_PUB, entry=entry).entry == entry
    with pytest.raises(ProofError):
        verify_inclusion_proof(text, LOG_PUB, entry=grown.store.entries(4, 5)[0])
    bare = InclusionProof.parse(text)
    without = InclusionProof(index=3, hashes=bare.hashes, checkpoint=bare.checkpoint).to_text()
    assert verify_inclusion_proof(without, LOG_PUB, entry=entry).index == 3
    with pytest.raises(NoteError):
        verify_inclusion_proof(without, LOG_PUB)


def _consistency_hash_changed(text: bytes, w: World) -> bytes:
    return _edit_line(1, _flip_hash)(text, w)


CONSISTENCY_TAMPERS: dict[str, tuple[Callable[[bytes, World], bytes], type[ReceiptsError]]] = {
    "hash_changed": (_consistency_hash_changed, ProofError),
    "hash_dropped": (_drop_line(1), ProofError),
    "old_size_mismatch": (_edit_line(0, lambda _: b"old 9"), ProofError),
    "new_checkpoint_of_a_smaller_size": (
        lambda t, w: _join([b"old 8"], dict(w.store.checkpoints())[7]),
        ProofError,
    ),
    "new_checkpoint_signed_by_another_key": (
        _resigned_by(fixture_key("other_ed25519")),
        SignatureError,
    ),
    "not_an_old_line": (_edit_line(0, lambda _: b"new 8"), NoteError),
}


@pytest.mark.parametrize(("edit", "error"), CONSISTENCY_TAMPERS.values(), ids=CONSISTENCY_TAMPERS)
def test_a_tampered_consistency_proof_is_refused(
    grown: World, edit: Callable[[bytes, World], bytes], error: type[ReceiptsError]
) -> None:
    checkpoints = dict(grown.store.checkpoints())
    old, new = checkpoints[8], checkpoints[31]
    honest = grown.ledger.log.prove_consistency(8, new)
    verify_consistency_proof(honest, old, LOG_PUB, origin=ORIGIN)
    with pytest.raises(error) as raised:
        verify_consistency_proof(edit(honest, grown), old, LOG_PUB, origin=ORIGIN)
    assert raised.type is error, raised.value


def test_the_old_checkpoint_must_be_signed_by_the_log_too(grown: World) -> None:
    checkpoints = dict(grown.store.checkpoints())
    text = grown.ledger.log.prove_consistency(8, checkpoints[31])
    stranger = sign_checkpoint(unverified_checkpoint(checkpoints[8]), fixture_key("other_ed25519"))
    with pytest.raises(SignatureError):
        verify_consistency_proof(text, stranger, LOG_PUB, origin=ORIGIN)


# --- requests the log cannot answer --------------------------------------------------------

BAD_QUERIES: dict[str, Callable[[Log], object]] = {
    "inclusion_index_at_size": lambda log: log.inclusion_path(8, 8),
    "inclusion_negative_index": lambda log: log.inclusion_path(-1, 8),
    "inclusion_beyond_the_log": lambda log: log.inclusion_path(3, ENTRIES + 1),
    "consistency_old_above_new": lambda log: log.consistency_path(9, 8),
    "consistency_beyond_the_log": lambda log: log.consistency_path(3, ENTRIES + 1),
    "prove_an_entry_the_checkpoint_does_not_cover": (
        lambda log: log.prove(20, dict(log.store.checkpoints())[16])
    ),
    "prove_a_negative_entry": lambda log: log.prove(-1),
}


@pytest.mark.parametrize("query", BAD_QUERIES.values(), ids=BAD_QUERIES)
def test_a_query_outside_the_log_is_bad_input(grown: World, query: Callable[[Log], object]) -> None:
    with pytest.raises(InputError) as raised:
        query(grown.ledger.log)
    assert raised.type is InputError


def test_a_log_without_checkpoints_has_nothing_to_prove_against(tmp_path: Path) -> None:
    w = World(tmp_path / "ledger.db")
    for call in (w.ledger.log.latest_checkpoint, lambda: w.ledger.log.prove(0),
                 lambda: w.ledger.log.prove_consistency(0)):  # fmt: skip
        with pytest.raises(InputError, match="no checkpoint"):
            call()


def test_checkpoints_do_not_change_the_ledger_state(grown: World) -> None:
    audit(grown.store)
    assert grown.store.size() == ENTRIES  # checkpoints are stored beside the log, not in it
