"""Settlement batches: each batch is exactly the log between two checkpoints, batches follow each
other without gap or overlap, their totals are the ledger's money movements to the unit, any
tampering is caught from the batch file and the log key alone, and a committee's aggregate
co-signature holds only at its threshold, from members, over this batch."""

from __future__ import annotations

import itertools
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
    aggregate_cosignatures,
    batch_digest,
    check_batch,
    cosign_batch,
    totals_of,
    verify_batch,
)
from receipts.bls import BlsPrivateKey, Committee, aggregate
from receipts.checkpoint import sign_checkpoint, unverified_checkpoint
from receipts.effects import seeded
from receipts.errors import (
    InputError,
    MalformedError,
    ProofError,
    ReceiptsError,
    SignatureError,
    ThresholdError,
    UnsupportedVersionError,
)
from receipts.events import BatchMade, Bond, Deposit, Hold, Slash, decode_event
from receipts.reconcile import audit, state_of
from receipts.referee import CHALLENGE_REJECTED, PROVIDER_FAULT
from tests.conftest import fixture_key
from tests.settlekit import (
    LOG_KEY,
    OTHER_PAYER,
    PAYER,
    SLASH,
    WINDOW_MS,
    World,
    provider_key,
    refused,
    ruling,
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
    _, faulty = w.claimed(fee=5, max_amount=12, key=SECOND_PROVIDER)
    w.ledger.dispute(faulty, ruling(faulty, PROVIDER_FAULT))
    _, challenged = w.claimed(fee=4, max_amount=6, payer=OTHER_PAYER, traced=True)
    w.open_dispute(challenged)
    _, lapsed = w.claimed(fee=2, max_amount=6, key=SECOND_PROVIDER, traced=True)
    w.open_dispute(lapsed)
    w.clock.advance(WINDOW_MS // 2)
    w.ledger.dispute(challenged, ruling(challenged, CHALLENGE_REJECTED))
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
    assert recorded == [(b.first, b.end, batch_digest(f).value)
                        for b, f in zip(batches, batched.files, strict=True)]  # fmt: skip
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


def _forge_cosigned(data: bytes, **changes: object) -> bytes:
    cosigned = CosignedBatch.decode(_cosigned(data, AUDITORS[:2]))
    return replace(cosigned, **changes).encode()  # type: ignore[arg-type]


def _with_outsider(data: bytes) -> bytes:
    signers = (AUDITORS[0], OUTSIDER)
    signature = aggregate([k.sign(batch_digest(data).value) for k in signers])
    return CosignedBatch(
        batch=data, signers=tuple(k.public_key for k in signers), signature=signature
    ).encode()


def _signer_listed_twice(data: bytes) -> bytes:
    one = AUDITORS[0]
    signature = aggregate([one.sign(batch_digest(data).value)] * 2)
    return CosignedBatch(batch=data, signers=(one.public_key,) * 2, signature=signature).encode()


def _signer_claimed_without_signing(data: bytes) -> bytes:
    signature = aggregate([AUDITORS[0].sign(batch_digest(data).value)])
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
    assert sig.batch == batch_digest(batched.files[0])
    with pytest.raises(UnsupportedVersionError):
        Cosignature.decode(_wire(sig.encode(), version=2))


def test_batches_and_cosigning_leave_the_ledger_state_alone(world: World) -> None:
    _round(world, 0)
    world.ledger.log.checkpoint(LOG_KEY)
    before = state_of(world.store)
    data = world.ledger.make_batch()
    after = state_of(world.store)
    assert after.log_size == before.log_size + 1  # only the batch's own record
    assert replace(after, log_size=before.log_size) == before
    _cosigned(data, AUDITORS)
    assert state_of(world.store) == after


def test_a_batch_starting_at_the_empty_log_has_no_older_checkpoint(world: World) -> None:
    world.ledger.log.checkpoint(LOG_KEY)
    batch = check_batch(world.ledger.make_batch(), LOG_PUB)
    assert (batch.first, batch.old_checkpoint, batch.frontier) == (0, None, ())
