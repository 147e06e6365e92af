"""Settlement batches: each batch is exactly the log between two checkpoints, batches follow each
other without gap or overlap, their totals are the ledger's money movements to the unit, any
tampering is caught from the batch file and the log key alone, and a committee's aggregate
co-signature holds only at its threshold, from members, over this batch."""

from __future__ import annotations

import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from receipts import codec
from receipts.batch import (
    Batch,
    Cosignature,
    CosignedBatch,
    Total,
    aggregate_cosignatures,
    batch_digest,
    check_batch,
    cosign_batch,
    totals_of,
    verify_batch,
)
from receipts.bls import BlsPrivateKey, Committee, aggregate
from receipts.checkpoint import sign_checkpoint, unverified_checkpoint
from receipts.codec import INT_MAX
from receipts.digests import Digest
from receipts.effects import seeded
from receipts.errors import (
    InputError,
    MalformedError,
    ProofError,
    ReceiptsError,
    SignatureError,
    StateError,
    ThresholdError,
    UnsupportedVersionError,
)
from receipts.events import MAX_AMOUNT, BatchMade, Bond, Deposit, Hold, Release, Slash, decode_event
from receipts.ledger import Ledger
from receipts.note import add_signature
from receipts.reconcile import audit, state_of
from receipts.referee import CHALLENGE_REJECTED, PROVIDER_FAULT
from tests.conftest import fixture_key
from tests.settlekit import (
    LOG_KEY,
    NOW,
    OTHER_PAYER,
    PAYER,
    SLASH,
    WINDOW_MS,
    World,
    provider_key,
    refused,
)

LOG_PUB = LOG_KEY.public_key
SECOND_PROVIDER = fixture_key("other_ed25519")
AUDITORS = tuple(BlsPrivateKey.generate(random_bytes=seeded(n)) for n in (31, 32, 33))
OUTSIDER = BlsPrivateKey.generate(random_bytes=seeded(34))
COMMITTEE = Committee(members=tuple(k.member() for k in AUDITORS))


def _round(w: World, n: int) -> None:
    """One round of business: releases with a remainder, an expiry refund, a provider fault
    (refund and slash), a challenge opened with the payer's evidence and rejected by a ruling,
    and one released at its deadline for want of a ruling, from two payers to two providers."""
    payers = (PAYER, OTHER_PAYER)
    for i in range(3):
        w.claimed(fee=3 + i + n, key=(provider_key(), SECOND_PROVIDER)[i % 2], max_amount=20,
                  payer=payers[i % 2])  # fmt: skip
    w.held(max_amount=9, ttl=1000, payer=payers[n % 2])
    _, faulty = w.disputed(fee=5, max_amount=12, key=SECOND_PROVIDER)
    w.rule(faulty, PROVIDER_FAULT)
    _, challenged = w.disputed(fee=4, max_amount=6, payer=OTHER_PAYER)
    w.disputed(fee=2, max_amount=6, key=SECOND_PROVIDER)  # `lapsed`: no ruling comes
    w.clock.advance(WINDOW_MS // 2)
    w.rule(challenged, CHALLENGE_REJECTED)
    w.clock.advance(WINDOW_MS // 2)
    done = w.ledger.settle()
    assert (len(done.released), len(done.refunded)) == (4, 1)  # three runs and `lapsed`


def _funded(path: Path) -> World:
    w = World(path)
    for payer in (PAYER, OTHER_PAYER):
        w.ledger.deposit(payer.public_key.key_id, "credit", 1000)
    for provider in (provider_key(), SECOND_PROVIDER):
        w.ledger.bond(provider.public_key.key_id, "credit", 60)
    return w


@pytest.fixture
def world(tmp_path: Path) -> World:
    return _funded(tmp_path / "ledger.db")


@dataclass(frozen=True, slots=True)
class Batches:
    world: World
    files: tuple[bytes, ...]


def _batched(path: Path) -> Batches:
    """Three batches; the last ends at a checkpoint taken after the last money movement."""
    w, files = _funded(path), []
    for n in range(3):
        _round(w, n)
        w.ledger.log.checkpoint(LOG_KEY)
        files.append(w.ledger.make_batch())
    return Batches(w, tuple(files))


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Batches:
    """Shared by the tests that only read; a test that adds to the ledger makes its own."""
    return _batched(tmp_path_factory.mktemp("batched") / "ledger.db")


def test_batches_check_and_follow_each_other_without_gap(batched: Batches) -> None:
    w = batched.world
    batches = [check_batch(data, LOG_PUB) for data in batched.files]
    assert batches[0].first == 0 and batches[0].old_checkpoint is None
    for before, after in itertools.pairwise(batches):
        assert after.first == before.end
        assert after.old_checkpoint == before.checkpoint
    for b in batches:
        assert list(b.entries) == w.store.entries(b.first, b.end)
        assert unverified_checkpoint(b.checkpoint).size == b.end
    recorded = [(first, end, bytes(d)) for first, end, d in w.store.batches()]
    assert recorded == [(b.first, b.end, batch_digest(b).value) for b in batches]
    made = [e for _, e in w.ledger.history() if isinstance(e, BatchMade)]
    assert [(m.first, m.end) for m in made] == [(b.first, b.end) for b in batches]
    audit(w.store)


def test_batch_totals_are_the_ledgers_money_movements_to_the_unit(batched: Batches) -> None:
    w = batched.world
    summed: dict[tuple[bytes, str], int] = defaultdict(int)
    for data in batched.files:
        for t in check_batch(data, LOG_PUB).totals:
            summed[t.account, t.kind] += t.amount
    # The batches cover every entry that moves money: only their own records follow.
    last_end = check_batch(batched.files[-1], LOG_PUB).end
    tail = [decode_event(e) for e in w.store.entries(last_end, w.store.size())]
    assert all(isinstance(e, BatchMade) for e in tail)
    put_in: dict[tuple[bytes, str], int] = defaultdict(int)
    slash_received: dict[bytes, int] = defaultdict(int)
    for _, event in w.ledger.history():
        if isinstance(event, Deposit):  # Bond is a Deposit too, by its kind
            put_in[event.account, event.kind] += event.amount
        elif isinstance(event, Hold):
            put_in[event.request.request.payer, "held"] += event.request.request.max_amount
        elif isinstance(event, Slash):
            slash_received[event.payer] += event.amount
    for provider in (provider_key(), SECOND_PROVIDER):
        p = provider.public_key.key_id
        assert w.store.balance(p, "credit", "earnings") == summed[p, "payout"] > 0
        bond = put_in[p, "bond"] - summed[p, "slashed"]
        assert w.store.balance(p, "credit", "bond") == bond
    # min(bond, slash) each time: 40 of the 60 bonded, then the 20 left, then nothing.
    assert SLASH == 40
    assert summed[SECOND_PROVIDER.public_key.key_id, "slashed"] == 60
    for payer in (PAYER, OTHER_PAYER):
        a = payer.public_key.key_id
        expected = put_in[a, "deposit"] - put_in[a, "held"] + summed[a, "returned"]
        assert w.store.balance(a, "credit", "deposit") == expected + slash_received[a]
        assert summed[a, "returned"] > 0
    assert not any(isinstance(e, Bond) for e in tail)


def test_the_totals_count_each_movement(batched: Batches) -> None:
    batch = check_batch(batched.files[0], LOG_PUB)
    counts = {(t.account, t.kind): t.count for t in batch.totals}
    second = SECOND_PROVIDER.public_key.key_id
    assert counts[second, "slashed"] == 1
    assert counts[provider_key().public_key.key_id, "payout"] == 3  # two runs and the challenge
    assert totals_of(batch.entries) == batch.totals


def test_making_a_batch_with_nothing_new_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    batched = _batched(tmp_path / "ledger.db")
    w = batched.world
    refused(w.store, InputError, w.ledger.make_batch, "nothing to batch")
    w.ledger.deposit(PAYER.public_key.key_id, "credit", 1)  # past the newest checkpoint
    refused(w.store, InputError, w.ledger.make_batch, "nothing to batch")
    w.ledger.log.checkpoint(LOG_KEY)
    following = check_batch(w.ledger.make_batch(), LOG_PUB)
    assert following.first == check_batch(batched.files[-1], LOG_PUB).end
    assert len(following.entries) == 2  # the last batch's record and the deposit


# --- tampered batch files ------------------------------------------------------------------


def _edit(data: bytes, **changes: object) -> bytes:
    return replace(Batch.decode(data), **changes).encode()  # type: ignore[arg-type]


def _wire(data: bytes, **changes: object) -> bytes:
    wire = codec.decode(data)
    assert isinstance(wire, dict)
    wire.update(changes)
    return codec.encode(wire)


def _entry_replaced(data: bytes) -> bytes:
    b = Batch.decode(data)
    other = Deposit(at=0, account=PAYER.public_key.key_id, asset="credit", amount=1).encode()
    return _edit(data, entries=(other, *b.entries[1:]))


def _total_raised(data: bytes) -> bytes:
    b = Batch.decode(data)
    first = replace(b.totals[0], amount=b.totals[0].amount + 1)
    return _edit(data, totals=(first, *b.totals[1:]))


def _total_moved(data: bytes) -> bytes:
    b = Batch.decode(data)
    first = replace(b.totals[0], account=bytes(32))
    return _edit(data, totals=(first, *b.totals[1:]))


def _frontier_changed(data: bytes) -> bytes:
    b = Batch.decode(data)
    return _edit(data, frontier=(bytes(32), *b.frontier[1:]))


def _checkpoint_resigned(key_name: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        head = unverified_checkpoint(Batch.decode(data).checkpoint)
        return _edit(data, checkpoint=sign_checkpoint(head, fixture_key(key_name)))

    return edit


def _checkpoint_forged(data: bytes) -> bytes:
    """A head the log key signed for another root: the entries do not lead to it."""
    head = unverified_checkpoint(Batch.decode(data).checkpoint)
    return _edit(data, checkpoint=sign_checkpoint(replace(head, root=bytes(32)), LOG_KEY))


def _checkpoint_of_other_origin(data: bytes) -> bytes:
    head = replace(unverified_checkpoint(Batch.decode(data).checkpoint), origin="example.com/x")
    return _edit(data, checkpoint=sign_checkpoint(head, LOG_KEY))


def _checkpoint_signature_flipped(data: bytes) -> bytes:
    note = Batch.decode(data).checkpoint
    last = note.rstrip(b"\n").rsplit(b" ", 1)[1]
    flipped = (b"A" if last[:1] != b"A" else b"B") + last[1:]
    return _edit(data, checkpoint=note.replace(last, flipped))


def _older_checkpoint_dropped(data: bytes) -> bytes:
    return _edit(data, old_checkpoint=None, frontier=())


def _empty_span(data: bytes) -> bytes:
    b = Batch.decode(data)
    return _edit(data, checkpoint=b.old_checkpoint, end=b.first, entries=(), totals=())


# (edit of the second batch, error)
BATCH_TAMPERS: dict[str, tuple[Callable[[bytes], bytes], type[ReceiptsError]]] = {
    "entry_replaced": (_entry_replaced, ProofError),
    "entry_dropped": (lambda d: _edit(d, entries=Batch.decode(d).entries[:-1]), ProofError),
    "entry_added": (lambda d: _edit(d, entries=(*Batch.decode(d).entries, b"x")), ProofError),
    "entries_reordered": (lambda d: _edit(d, entries=Batch.decode(d).entries[::-1]), ProofError),
    "total_raised": (_total_raised, ProofError),
    "total_paid_to_another_account": (_total_moved, ProofError),
    "total_dropped": (lambda d: _edit(d, totals=Batch.decode(d).totals[1:]), ProofError),
    "frontier_hash_changed": (_frontier_changed, ProofError),
    "frontier_hash_dropped": (
        lambda d: _edit(d, frontier=Batch.decode(d).frontier[1:]),
        ProofError,
    ),
    "range_shifted": (lambda d: _edit(d, first=Batch.decode(d).first + 1), ProofError),
    "older_checkpoint_dropped": (_older_checkpoint_dropped, ProofError),
    "empty_span": (_empty_span, ProofError),
    "checkpoint_root_forged": (_checkpoint_forged, ProofError),
    "checkpoint_signed_by_another_key": (_checkpoint_resigned("other_ed25519"), SignatureError),
    "checkpoint_signature_flipped": (_checkpoint_signature_flipped, SignatureError),
    "checkpoint_of_another_origin": (_checkpoint_of_other_origin, SignatureError),
    "origin_renamed": (lambda d: _edit(d, origin="example.com/other"), SignatureError),
    "version_2": (lambda d: _wire(d, version=2), UnsupportedVersionError),
    "unknown_field": (lambda d: _wire(d, memo="hi"), MalformedError),
    "frontier_hash_31_bytes": (lambda d: _wire(d, frontier=[bytes(31)]), MalformedError),
}


@pytest.mark.parametrize(("edit", "error"), BATCH_TAMPERS.values(), ids=BATCH_TAMPERS)
def test_a_tampered_batch_is_refused_by_check_and_cosign(
    batched: Batches, edit: Callable[[bytes], bytes], error: type[ReceiptsError]
) -> None:
    honest = batched.files[1]
    check_batch(honest, LOG_PUB)
    forged = edit(honest)
    assert forged != honest
    for call in (lambda: check_batch(forged, LOG_PUB),
                 lambda: cosign_batch(forged, AUDITORS[0], LOG_PUB)):  # fmt: skip
        with pytest.raises(error) as raised:
            call()
        assert raised.type is error, raised.value
        assert "\n" not in str(raised.value)


def test_a_batch_checked_with_another_log_key_is_refused(batched: Batches) -> None:
    with pytest.raises(SignatureError):
        check_batch(batched.files[0], fixture_key("other_ed25519").public_key)


# --- committee co-signatures ---------------------------------------------------------------


def _cosigned(data: bytes, signers: tuple[BlsPrivateKey, ...]) -> bytes:
    sigs = [cosign_batch(data, key, LOG_PUB) for key in signers]
    sigs = [Cosignature.decode(s.encode()) for s in sigs]  # as read back from their files
    return aggregate_cosignatures(data, sigs).encode()


@pytest.mark.parametrize("signers", [AUDITORS[:2], AUDITORS[1:], AUDITORS, AUDITORS[::-1]],
                         ids=["a1a2", "a2a3", "all", "reversed"])  # fmt: skip
def test_two_of_three_auditors_make_a_batch_that_verifies(
    batched: Batches, signers: tuple[BlsPrivateKey, ...]
) -> None:
    data = batched.files[0]
    batch, cosigned = verify_batch(_cosigned(data, signers), LOG_PUB, COMMITTEE, 2)
    assert batch == check_batch(data, LOG_PUB)
    assert cosigned.batch == data
    assert cosigned.signers == tuple(k.public_key for k in signers)


def _digest(data: bytes) -> bytes:
    return batch_digest(Batch.decode(data)).value


def _forge_cosigned(data: bytes, **changes: object) -> bytes:
    cosigned = CosignedBatch.decode(_cosigned(data, AUDITORS[:2]))
    return replace(cosigned, **changes).encode()  # type: ignore[arg-type]


def _with_outsider(data: bytes) -> bytes:
    signers = (AUDITORS[0], OUTSIDER)
    signature = aggregate([k.sign(_digest(data)) for k in signers])
    return CosignedBatch(
        batch=data, signers=tuple(k.public_key for k in signers), signature=signature
    ).encode()


def _signer_listed_twice(data: bytes) -> bytes:
    one = AUDITORS[0]
    signature = aggregate([one.sign(_digest(data))] * 2)
    return CosignedBatch(batch=data, signers=(one.public_key,) * 2, signature=signature).encode()


def _signer_claimed_without_signing(data: bytes) -> bytes:
    signature = aggregate([AUDITORS[0].sign(_digest(data))])
    signers = (AUDITORS[0].public_key, AUDITORS[1].public_key)
    return CosignedBatch(batch=data, signers=signers, signature=signature).encode()


def _batch_swapped(data: bytes, other: bytes) -> bytes:
    return _forge_cosigned(data, batch=other)


COSIGN_FAULTS: dict[str, tuple[Callable[[bytes, bytes], bytes], int, type[ReceiptsError]]] = {
    "threshold_3_with_2_signers": (lambda d, o: _cosigned(d, AUDITORS[:2]), 3, ThresholdError),
    "one_signer_at_threshold_2": (lambda d, o: _cosigned(d, AUDITORS[:1]), 2, ThresholdError),
    "a_non_member_signer": (lambda d, o: _with_outsider(d), 2, SignatureError),
    "a_signer_listed_twice": (lambda d, o: _signer_listed_twice(d), 2, MalformedError),
    "a_signer_who_did_not_sign": (
        lambda d, o: _signer_claimed_without_signing(d),
        2,
        SignatureError,
    ),
    "signatures_over_another_batch": (_batch_swapped, 2, SignatureError),
    "aggregate_signature_changed": (
        lambda d, o: _forge_cosigned(d, signature=aggregate([AUDITORS[2].sign(b"x")])),
        2,
        SignatureError,
    ),
    "threshold_above_the_committee": (lambda d, o: _cosigned(d, AUDITORS), 4, MalformedError),
    "threshold_zero": (lambda d, o: _cosigned(d, AUDITORS), 0, MalformedError),
    "inner_batch_tampered": (
        lambda d, o: _forge_cosigned(d, batch=_total_raised(d)),
        2,
        ProofError,
    ),
    "not_a_cosigned_batch": (lambda d, o: d, 2, UnsupportedVersionError),
}


@pytest.mark.parametrize(("make", "threshold", "error"), COSIGN_FAULTS.values(), ids=COSIGN_FAULTS)
def test_a_cosigned_batch_that_does_not_hold_is_refused(
    batched: Batches,
    make: Callable[[bytes, bytes], bytes],
    threshold: int,
    error: type[ReceiptsError],
) -> None:
    data, other = batched.files[0], batched.files[1]
    with pytest.raises(error) as raised:
        verify_batch(make(data, other), LOG_PUB, COMMITTEE, threshold)
    assert raised.type is error, raised.value
    assert "\n" not in str(raised.value)


def test_a_cosignature_for_another_batch_is_not_aggregated(batched: Batches) -> None:
    first, second = batched.files[0], batched.files[1]
    mine = cosign_batch(first, AUDITORS[0], LOG_PUB)
    theirs = cosign_batch(second, AUDITORS[1], LOG_PUB)
    with pytest.raises(InputError, match="another batch") as raised:
        aggregate_cosignatures(first, [mine, theirs])
    assert raised.type is InputError
    with pytest.raises(InputError, match="no co-signatures"):
        aggregate_cosignatures(first, [])


def test_a_cosignature_reads_back_as_itself(batched: Batches) -> None:
    sig = cosign_batch(batched.files[0], AUDITORS[2], LOG_PUB)
    assert Cosignature.decode(sig.encode()) == sig
    assert sig.batch == batch_digest(Batch.decode(batched.files[0]))
    with pytest.raises(UnsupportedVersionError):
        Cosignature.decode(_wire(sig.encode(), version=2))


def test_batches_and_cosigning_leave_the_ledger_state_alone(world: World) -> None:
    _round(world, 0)
    world.ledger.log.checkpoint(LOG_KEY)
    before = state_of(world.store)
    data = world.ledger.make_batch()
    after = state_of(world.store)
    assert after.log_size == before.log_size + 1  # only the batch's own record, and its row
    batch = Batch.decode(data)
    assert after.batches == (*before.batches, (batch.first, batch.end, _digest(data)))
    assert replace(after, log_size=before.log_size, batches=before.batches) == before
    _cosigned(data, AUDITORS)
    assert state_of(world.store) == after


def test_a_batch_starting_at_the_empty_log_has_no_older_checkpoint(world: World) -> None:
    world.ledger.log.checkpoint(LOG_KEY)
    batch = check_batch(world.ledger.make_batch(), LOG_PUB)
    assert (batch.first, batch.old_checkpoint, batch.frontier) == (0, None, ())


# --- the batch digest, recorded batches, aggregation and totals ----------------------------


def _witnessed(data: bytes) -> bytes:
    """The batch with a witness's co-signature line added to each checkpoint note: other bytes,
    the same batch (a witness's line says nothing about the entries)."""
    b = Batch.decode(data)
    witness = fixture_key("other_ed25519")

    def cosign(note: bytes) -> bytes:
        return add_signature(note, "witness.example/w1", witness)

    old = None if b.old_checkpoint is None else cosign(b.old_checkpoint)
    return replace(b, checkpoint=cosign(b.checkpoint), old_checkpoint=old).encode()


@pytest.mark.parametrize("which", [0, 1], ids=["from_the_empty_log", "after_a_batch"])
def test_the_batch_digest_is_the_batch_not_its_file_bytes(batched: Batches, which: int) -> None:
    honest = batched.files[which]
    witnessed = _witnessed(honest)
    assert witnessed != honest
    batch = check_batch(witnessed, LOG_PUB)  # the log key's signature still verifies
    assert batch_digest(batch) == batch_digest(Batch.decode(honest))
    assert (batch.first, batch.end, batch.totals) == (
        Batch.decode(honest).first, Batch.decode(honest).end, Batch.decode(honest).totals
    )  # fmt: skip
    # The committee's signatures over the batch the ledger made hold for the witnessed file.
    cosigned = CosignedBatch.decode(_cosigned(honest, AUDITORS[:2]))
    verified, _ = verify_batch(replace(cosigned, batch=witnessed).encode(), LOG_PUB, COMMITTEE, 2)
    assert verified == batch


def _other_root(note: bytes | None) -> bytes:
    assert note is not None
    return sign_checkpoint(replace(unverified_checkpoint(note), root=bytes(32)), LOG_KEY)


# What the digest covers: a batch that differs in any of these is another batch.
IDENTITY_EDITS: dict[str, Callable[[Batch], Batch]] = {
    "origin": lambda b: replace(b, origin="example.com/other"),
    "first": lambda b: replace(b, first=b.first + 1),
    "end": lambda b: replace(b, end=b.end + 1),
    "old_root": lambda b: replace(b, old_checkpoint=_other_root(b.old_checkpoint)),
    "root": lambda b: replace(b, checkpoint=_other_root(b.checkpoint)),
    "a_total": lambda b: replace(b, totals=(replace(b.totals[0], amount=1), *b.totals[1:])),
    "a_total_count": lambda b: replace(b, totals=(replace(b.totals[0], count=9), *b.totals[1:])),
    "a_total_dropped": lambda b: replace(b, totals=b.totals[1:]),
}


@pytest.mark.parametrize("edit", IDENTITY_EDITS.values(), ids=IDENTITY_EDITS)
def test_the_batch_digest_covers_origin_span_roots_and_totals(
    batched: Batches, edit: Callable[[Batch], Batch]
) -> None:
    batch = Batch.decode(batched.files[1])
    assert batch_digest(edit(batch)) != batch_digest(batch)


def test_a_recorded_batch_is_made_again_byte_for_byte(batched: Batches) -> None:
    w = batched.world
    for data in batched.files:
        assert w.ledger.recorded_batch(Batch.decode(data).first) == data
    refused(w.store, InputError, lambda: w.ledger.recorded_batch(1), "no batch starts at entry 1")


def test_a_recorded_batch_that_no_longer_makes_its_digest_is_not_made_again(
    batched: Batches, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    source, target = sqlite3.connect(batched.world.ledger.store.path), sqlite3.connect(copy)
    source.backup(target)  # the WAL's pages too: the fixture's ledger is still open
    target.execute("UPDATE batches SET digest = zeroblob(32) WHERE first = 0")
    target.commit()
    source.close()
    target.close()
    ledger = Ledger.open(copy, clock=batched.world.clock)
    try:
        refused(ledger.store, StateError, lambda: ledger.recorded_batch(0), "recorded digest")
        assert ledger.recorded_batch(Batch.decode(batched.files[1]).first) == batched.files[1]
    finally:
        ledger.close()


def _bad_cosignature(data: bytes, how: str) -> Cosignature:
    """AUDITORS[1]'s co-signature for the batch, its signature replaced ``how``."""
    honest = cosign_batch(data, AUDITORS[1], LOG_PUB)
    signature = {
        "by_another_key": OUTSIDER.sign(honest.batch.value),
        "over_another_message": AUDITORS[1].sign(b"another batch"),
        "not_a_point": bytes(96),
    }[how]
    return replace(honest, signature=signature)


@pytest.mark.parametrize("how", ["by_another_key", "over_another_message", "not_a_point"])
def test_aggregation_names_the_co_signature_that_does_not_verify(
    batched: Batches, how: str
) -> None:
    data = batched.files[0]
    good = [cosign_batch(data, key, LOG_PUB) for key in (AUDITORS[0], AUDITORS[2])]
    bad = _bad_cosignature(data, how)
    named = AUDITORS[1].public_key.raw.hex()[:16]
    with pytest.raises(SignatureError, match=f"co-signature by {named}… does not verify") as e:
        aggregate_cosignatures(data, [good[0], bad, good[1]])
    assert e.type is SignatureError
    assert "\n" not in str(e.value)
    aggregate_cosignatures(data, good)  # without it, the rest aggregate


def _released(amount: int, provider: bytes = b"\x01" * 32) -> bytes:
    return Release(at=NOW, request=Digest(bytes(32)), provider=provider, payer=b"\x02" * 32,
                   asset="credit", amount=amount, remainder=0).encode()  # fmt: skip


# (amounts released to one provider, the payout totals: (amount, count) each)
SPLIT_TOTALS: dict[str, tuple[list[int], list[tuple[int, int]]]] = {
    "one_release": ([MAX_AMOUNT], [(MAX_AMOUNT, 1)]),
    "exactly_2^64-1_in_one_record": ([MAX_AMOUNT, MAX_AMOUNT, 1], [(INT_MAX, 3)]),
    "past_2^64-1_in_two_records": ([MAX_AMOUNT] * 3, [(2 * MAX_AMOUNT, 2), (MAX_AMOUNT, 1)]),
    "one_more_unit_starts_the_second": ([MAX_AMOUNT, MAX_AMOUNT, 1, 1], [(INT_MAX, 3), (1, 1)]),
    "three_records": ([MAX_AMOUNT] * 5, [(2 * MAX_AMOUNT, 2)] * 2 + [(MAX_AMOUNT, 1)]),
}


@pytest.mark.parametrize(("amounts", "records"), SPLIT_TOTALS.values(), ids=SPLIT_TOTALS)
def test_a_total_past_2_64_continues_in_another_record(
    amounts: list[int], records: list[tuple[int, int]]
) -> None:
    """A total is one unsigned 64-bit integer on the wire: a larger sum is split, never wrapped
    or refused, and the records still add up to what the entries move."""
    totals = totals_of([_released(a) for a in amounts])
    assert [(t.amount, t.count) for t in totals] == records
    assert {(t.account, t.asset, t.kind) for t in totals} == {(b"\x01" * 32, "credit", "payout")}
    assert sum(t.amount for t in totals) == sum(amounts)
    assert all(0 < t.amount <= INT_MAX for t in totals)
    assert [Total.from_wire(codec.decode(codec.encode(t.to_wire()))) for t in totals] == list(
        totals
    )


def test_totals_split_per_account_and_keep_a_canonical_order() -> None:
    a, b = b"\x01" * 32, b"\x03" * 32
    entries = [_released(MAX_AMOUNT, b), _released(MAX_AMOUNT, a), _released(MAX_AMOUNT, b),
               _released(5, a), _released(MAX_AMOUNT, b)]  # fmt: skip
    totals = totals_of(entries)
    assert [(t.account, t.amount, t.count) for t in totals] == [
        (a, MAX_AMOUNT + 5, 2), (b, 2 * MAX_AMOUNT, 2), (b, MAX_AMOUNT, 1)
    ]  # fmt: skip
    assert totals_of(entries[::-1]) == totals  # the order of the entries does not matter here
