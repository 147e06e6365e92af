"""The settlement ledger: every refused operation raises its own error class and changes nothing;
holds, claims, disputes and settlement move money exactly as the rules say; balances plus holds
always equal the supply; the log alone rebuilds the ledger, a forged log (bad signatures, or
entries the ledger could not have written) does not replay, and a tampered ledger file is
caught."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from receipts import codec
from receipts.checkpoint import verify_inclusion_proof
from receipts.digests import Digest, TensorEntry, TensorMapDigest
from receipts.dispute import DISPUTE_PAYLOAD_TYPE
from receipts.effects import seeded
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import (
    BindingError,
    DigestMismatchError,
    DisputeError,
    ExpiredError,
    InputError,
    LimitError,
    MalformedError,
    OverdraftError,
    PolicyError,
    ProofError,
    ReceiptsError,
    ReplayError,
    SettlementError,
    SignatureError,
    StateError,
    UnknownAssetError,
    UnsupportedVersionError,
)
from receipts.events import (
    MAX_AMOUNT,
    MAX_ENTRY_BYTES,
    AnyEvent,
    BatchMade,
    Claim,
    Deposit,
    Dispute,
    Hold,
    Refund,
    Release,
    Slash,
    decode_event,
)
from receipts.files import StorageError
from receipts.keys import PrivateKey
from receipts.ledger import Ledger, LedgerRules, _record
from receipts.notice import sign_notice
from receipts.receipt import Receipt
from receipts.reconcile import audit, replay, state_of
from receipts.referee import CHALLENGE_REJECTED, PROVIDER_FAULT, RULING_PAYLOAD_TYPE
from receipts.request import REQUEST_PAYLOAD_TYPE, SignedRequest, read_request
from receipts.store import SqliteStore
from receipts.tensors import TensorSpec
from receipts.tlog import Log
from tests.conftest import fixture_key, fixture_model
from tests.settlekit import (
    FEE,
    LOG_KEY,
    NOW,
    ORIGIN,
    OTHER_PAYER,
    PAYER,
    SLASH,
    TTL_MS,
    WINDOW_MS,
    HandClock,
    World,
    flip_signature,
    mlp,
    provider_key,
    refused,
    rid,
    rules,
    ruling,
    sign_receipt,
)

PAYER_ID = PAYER.public_key.key_id
PROVIDER_ID = provider_key().public_key.key_id
STRANGER = fixture_key("other_ed25519")
CHALLENGER = fixture_key("challenger_ed25519")
THIEF = STRANGER.public_key.key_id
OTHER_PAYER_ID = OTHER_PAYER.public_key.key_id
NOBODY = Digest(bytes(32))  # a request id, or a digest, that names nothing


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path / "ledger.db")
    w.fund(deposit=1000, bond=100)
    return w


def balance(w: World, account: bytes, kind: str) -> int:
    return w.store.balance(account, "credit", kind)


# --- refused operations: the error class, one line, and nothing changed ----------------------

Case = Callable[[World], Callable[[], object]]


def _replayed_request(w: World) -> Callable[[], object]:
    signed = w.held()
    return lambda: w.ledger.hold(signed.to_bytes())


def _nonce_reused(w: World) -> Callable[[], object]:
    w.held(random_bytes=seeded(1))
    other = w.request(max_amount=55, random_bytes=seeded(1))  # other terms, the same nonce
    return lambda: w.ledger.hold(other.to_bytes())


def _replayed_receipt(w: World) -> Callable[[], object]:
    _, receipt = w.claimed()
    return lambda: w.claim(receipt)


def _replayed_receipt_after_release(w: World) -> Callable[[], object]:
    _, receipt = w.claimed()
    w.clock.advance(WINDOW_MS)
    assert len(w.ledger.settle().released) == 1
    return lambda: w.claim(receipt)


def _second_receipt(w: World) -> Callable[[], object]:
    signed, _ = w.claimed()
    second = w.issue(signed, fee=FEE + 1)
    return lambda: w.claim(second)


def _second_receipt_after_refund(w: World) -> Callable[[], object]:
    signed = w.held(ttl=1000)
    late = w.issue(signed)  # issued in time, claimed after the request was refunded
    w.clock.advance(1000)
    assert len(w.ledger.settle().refunded) == 1
    return lambda: w.claim(late)


def _expired_at_hold(w: World) -> Callable[[], object]:
    signed = w.request(ttl=1000)
    w.clock.advance(1000)
    return lambda: w.ledger.hold(signed.to_bytes())


def _claim_after_expiry(w: World) -> Callable[[], object]:
    signed = w.held(ttl=1000)
    receipt = w.issue(signed)
    w.clock.advance(1000)
    return lambda: w.claim(receipt)


def _over_max(w: World) -> Callable[[], object]:
    signed = w.held(max_amount=FEE)
    receipt = w.forge(signed, fee=FEE + 1)
    return lambda: w.claim(receipt)


def _unknown_request(w: World) -> Callable[[], object]:
    receipt = w.forge(w.request())  # a well-formed request this ledger never held
    return lambda: w.claim(receipt)


def _other_requests_terms(w: World) -> Callable[[], object]:
    w.held()
    other = w.held(models=[Digest(bytes(range(32)))])  # allows another model only
    receipt = w.forge(other)
    return lambda: w.claim(receipt)


def _other_provider_named(w: World) -> Callable[[], object]:
    signed = w.held(provider=STRANGER.public_key.key_id)
    receipt = w.forge(signed)
    return lambda: w.claim(receipt)


def _no_request(w: World) -> Callable[[], object]:
    w.held()
    receipt = w.issue(None)
    return lambda: w.claim(receipt)


def _unknown_asset(kind: str) -> Case:
    def case(w: World) -> Callable[[], object]:
        if kind == "hold":
            signed = w.request(asset="gold")
            return lambda: w.ledger.hold(signed.to_bytes())
        op = w.ledger.deposit if kind == "deposit" else w.ledger.bond
        return lambda: op(PAYER_ID, "gold", 5)

    return case


def _overdraft(w: World) -> Callable[[], object]:
    w.held(max_amount=600)
    signed = w.request(max_amount=401)  # 400 left in the deposit
    return lambda: w.ledger.hold(signed.to_bytes())


def _overdraft_without_deposit(w: World) -> Callable[[], object]:
    signed = w.request(payer=OTHER_PAYER, max_amount=1)
    return lambda: w.ledger.hold(signed.to_bytes())


def _hold_over_the_ledger_limit(w: World) -> Callable[[], object]:
    signed = w.request(max_amount=MAX_AMOUNT + 1)
    return lambda: w.ledger.hold(signed.to_bytes())


def _hold_tampered_request(w: World) -> Callable[[], object]:
    data = flip_signature(w.request().to_bytes(), REQUEST_PAYLOAD_TYPE)
    return lambda: w.ledger.hold(data)


def _hold_naming(ledger: str | None) -> Case:
    """A request the payer signed for ``ledger`` (None: for no ledger), brought to this one."""

    def case(w: World) -> Callable[[], object]:
        signed = w.request(ledger=ledger)
        return lambda: w.ledger.hold(signed.to_bytes())

    return case


def _hold_of_zero(w: World) -> Callable[[], object]:
    signed = w.request(max_amount=0)
    return lambda: w.ledger.hold(signed.to_bytes())


def _money(amount: int, account: bytes = PAYER_ID) -> Case:
    return lambda w: lambda: w.ledger.deposit(account, "credit", amount)


def _untrusted_ruling(w: World) -> Callable[[], object]:
    _, receipt = w.disputed()
    return lambda: w.ledger.dispute(receipt, w.ruling(receipt, PROVIDER_FAULT, STRANGER))


def _ruling_on_another_receipt(w: World) -> Callable[[], object]:
    _, first = w.disputed()
    _, second = w.disputed()
    return lambda: w.ledger.dispute(first, w.ruling(second, PROVIDER_FAULT))


def _ruling_on_an_undisputed_claim(verdict: str) -> Case:
    """A ruling on the payer's own evidence, but the payer never opened the dispute."""

    def case(w: World) -> Callable[[], object]:
        _, receipt = w.claimed(traced=True)
        return lambda: w.rule(receipt, verdict)

    return case


def _ruling_on_a_sham_challenge(*, opened: bool) -> Case:
    """The provider's own sham challenger disputes the receipt and gets a ruling rejecting its
    challenge: it must not end the payer's window (``opened``: the payer has disputed it too)."""

    def case(w: World) -> Callable[[], object]:
        _, receipt = w.claimed(traced=True)
        if opened:
            w.open_dispute(receipt)
        sham = w.evidence(receipt, challenger=CHALLENGER).digest
        assert sham != w.evidence(receipt).digest
        judged = ruling(receipt, CHALLENGE_REJECTED, evidence=sham)
        return lambda: w.ledger.dispute(receipt, judged)

    return case


def _dispute_after_window(w: World) -> Callable[[], object]:
    _, receipt = w.claimed(traced=True)
    evidence, notice = w.evidence(receipt), w.notice(receipt)
    w.clock.advance(WINDOW_MS)
    return lambda: w.ledger.dispute(receipt, evidence=evidence, notice=notice)


def _ruling_after_window(w: World) -> Callable[[], object]:
    """The claim's window closed without a dispute: a ruling cannot reopen it."""
    _, receipt = w.claimed(traced=True)
    w.clock.advance(WINDOW_MS)
    return lambda: w.rule(receipt, PROVIDER_FAULT)


def _settle_ahead_of_the_clock(w: World) -> Callable[[], object]:
    """Settling as of a later time would release the claim before its window closed."""
    w.claimed()
    return lambda: w.ledger.settle(now=w.clock.ms + WINDOW_MS)


def _dispute_twice(w: World) -> Callable[[], object]:
    _, receipt = w.claimed(traced=True)
    w.open_dispute(receipt)
    return lambda: w.open_dispute(receipt)


def _dispute_unclaimed(w: World) -> Callable[[], object]:
    receipt = w.issue(w.held(), traced=True)
    evidence = w.evidence(receipt)
    return lambda: w.ledger.dispute(receipt, evidence=evidence)


def _dispute_released_by_its_deadline(w: World) -> Callable[[], object]:
    _, receipt = w.claimed(traced=True)
    w.open_dispute(receipt)
    w.clock.advance(WINDOW_MS)
    assert len(w.ledger.settle().released) == 1
    return lambda: w.open_dispute(receipt)


def _dispute_without_evidence(w: World) -> Callable[[], object]:
    _, receipt = w.claimed(traced=True)
    return lambda: w.ledger.dispute(receipt)


def _evidence_about_another_receipt(w: World) -> Callable[[], object]:
    _, first = w.claimed(traced=True)
    _, second = w.claimed(traced=True)
    evidence = w.evidence(second)
    return lambda: w.ledger.dispute(first, evidence=evidence)


def _evidence_by(challenger: PrivateKey) -> Case:
    """Well-formed evidence on a claimed receipt, made by ``challenger`` (not its payer)."""

    def case(w: World) -> Callable[[], object]:
        _, receipt = w.claimed(traced=True)
        evidence = w.evidence(receipt, challenger)
        return lambda: w.ledger.dispute(receipt, evidence=evidence)

    return case


def _tampered_transcript(tamper: Callable[[tuple[bytes, ...]], tuple[bytes, ...]]) -> Case:
    def case(w: World) -> Callable[[], object]:
        _, receipt = w.claimed(traced=True)
        evidence = w.evidence(receipt)
        forged = replace(evidence, transcript=tamper(evidence.transcript))
        assert forged.transcript != evidence.transcript
        return lambda: w.ledger.dispute(receipt, evidence=forged)

    return case


def _resigned_message(transcript: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The first message signed again by a key outside the dispute: chained and well-formed."""
    first = Envelope.from_bytes(transcript[0], payload_type=DISPUTE_PAYLOAD_TYPE)
    again = Envelope.sign(first.payload_type, first.payload, STRANGER).to_bytes()
    return (again, *transcript[1:])


def _evidence_for_an_untraced_receipt(w: World) -> Callable[[], object]:
    _, traced = w.claimed(traced=True)
    _, untraced = w.claimed()
    evidence = replace(w.evidence(traced), receipt=untraced)  # names the untraced receipt
    return lambda: w.ledger.dispute(untraced, evidence=evidence)


def _dispute_released(w: World) -> Callable[[], object]:
    _, receipt = w.disputed()
    w.rule(receipt, CHALLENGE_REJECTED)
    return lambda: w.rule(receipt, PROVIDER_FAULT)


def _claim_without_model(w: World) -> Callable[[], object]:
    receipt = w.issue(w.held())
    return lambda: w.ledger.claim(receipt)


def _claim_with_other_model(w: World) -> Callable[[], object]:
    receipt = w.issue(w.held())
    return lambda: w.ledger.claim(receipt, model=fixture_model("convnet"))


def _tampered_signature(w: World) -> Callable[[], object]:
    receipt = flip_signature(w.issue(w.held()))
    return lambda: w.claim(receipt)


def _tampered_payload(w: World) -> Callable[[], object]:
    envelope = Envelope.from_bytes(w.issue(w.held()))
    receipt = Receipt.decode(envelope.payload)
    cheaper = replace(receipt, nonce=bytes(16))  # same request and amount, not what was signed
    forged = replace(envelope, payload=cheaper.encode()).to_bytes()
    return lambda: w.claim(forged)


def _signed_by_another_key(w: World) -> Callable[[], object]:
    signed = w.held()
    receipt = Receipt.decode(Envelope.from_bytes(w.issue(signed)).payload)
    return lambda: w.claim(sign_receipt(receipt, STRANGER))  # names the provider, signed by other


def _batch_without_checkpoint(w: World) -> Callable[[], object]:
    return w.ledger.make_batch


REFUSALS: dict[str, tuple[Case, type[ReceiptsError], str | None]] = {
    "replayed_request": (_replayed_request, ReplayError, "already held"),
    "other_request_reusing_a_nonce": (_nonce_reused, ReplayError, "already used nonce"),
    "replayed_receipt": (_replayed_receipt, ReplayError, "already claimed"),
    "replayed_receipt_after_release": (_replayed_receipt_after_release, ReplayError, "already"),
    "second_receipt_for_a_claimed_request": (_second_receipt, StateError, "is claimed, not held"),
    "receipt_for_a_refunded_request": (_second_receipt_after_refund, StateError, "refunded"),
    "expired_request_at_hold": (_expired_at_hold, ExpiredError, "expired at"),
    "claim_after_expiry": (_claim_after_expiry, ExpiredError, "expired at"),
    "amount_over_the_maximum": (_over_max, BindingError, "over the request's maximum"),
    "receipt_bound_to_an_unknown_request": (_unknown_request, BindingError, "unknown here"),
    "receipt_bound_to_another_requests_terms": (_other_requests_terms, BindingError, "model"),
    "receipt_by_a_provider_the_request_excludes": (_other_provider_named, BindingError, "provider"),
    "receipt_bound_to_no_request": (_no_request, BindingError, "no request"),
    "unknown_asset_deposit": (_unknown_asset("deposit"), UnknownAssetError, "'gold'"),
    "unknown_asset_bond": (_unknown_asset("bond"), UnknownAssetError, "'gold'"),
    "unknown_asset_hold": (_unknown_asset("hold"), UnknownAssetError, "'gold'"),
    "overdraft": (_overdraft, OverdraftError, "holds 400 credit, the change needs 401"),
    "overdraft_without_a_deposit": (_overdraft_without_deposit, OverdraftError, "needs 1"),
    "hold_over_2^63-1": (_hold_over_the_ledger_limit, LimitError, "2\\^63-1"),
    "hold_with_a_broken_signature": (_hold_tampered_request, SignatureError, None),
    "hold_of_a_request_naming_no_ledger": (_hold_naming(None), BindingError, "names no ledger"),
    "hold_of_a_request_naming_another_ledger": (
        _hold_naming("example.com/other-ledger"),
        BindingError,
        "names ledger 'example.com/other-ledger', not this one",
    ),
    "hold_of_zero": (_hold_of_zero, LimitError, "\\[1, 2\\^63-1\\]"),
    "deposit_of_zero": (_money(0), LimitError, "\\[1, 2\\^63-1\\]"),
    "deposit_over_2^63-1": (_money(MAX_AMOUNT + 1), LimitError, "\\[1, 2\\^63-1\\]"),
    "deposit_to_a_31_byte_account": (_money(5, bytes(31)), MalformedError, "32-byte"),
    "ruling_by_an_untrusted_key": (_untrusted_ruling, SignatureError, "not a trusted"),
    "ruling_about_another_receipt": (_ruling_on_another_receipt, BindingError, "not sha256"),
    "dispute_after_the_window": (_dispute_after_window, ExpiredError, "window .* closed"),
    "ruling_after_the_window_without_a_dispute": (
        _ruling_after_window,
        StateError,
        "a ruling settles a dispute the payer opened",
    ),
    "fault_ruling_on_a_claim_nobody_disputed": (
        _ruling_on_an_undisputed_claim(PROVIDER_FAULT),
        StateError,
        "is claimed: a ruling settles a dispute the payer opened",
    ),
    "rejection_on_a_claim_nobody_disputed": (
        _ruling_on_an_undisputed_claim(CHALLENGE_REJECTED),
        StateError,
        "is claimed: a ruling settles a dispute the payer opened",
    ),
    "rejection_of_a_sham_challenge_before_the_payer_disputes": (
        _ruling_on_a_sham_challenge(opened=False),
        StateError,
        "is claimed",
    ),
    "rejection_of_a_sham_challenge_after_the_payer_disputed": (
        _ruling_on_a_sham_challenge(opened=True),
        BindingError,
        "judged other evidence than the payer's dispute",
    ),
    "dispute_twice_without_a_ruling": (_dispute_twice, StateError, "awaits a ruling"),
    "dispute_of_an_unclaimed_receipt": (_dispute_unclaimed, StateError, "has no claim"),
    "dispute_again_after_its_deadline_released_it": (
        _dispute_released_by_its_deadline,
        StateError,
        "is released",
    ),
    "dispute_with_neither_ruling_nor_evidence": (
        _dispute_without_evidence,
        PolicyError,
        "evidence bundle",
    ),
    "evidence_about_another_receipt": (
        _evidence_about_another_receipt,
        BindingError,
        "another receipt",
    ),
    "evidence_made_by_a_key_other_than_the_payer": (
        _evidence_by(CHALLENGER),
        BindingError,
        "other than the payer",
    ),
    "evidence_made_by_another_payer_of_the_ledger": (
        _evidence_by(OTHER_PAYER),
        BindingError,
        "other than the payer",
    ),
    "evidence_transcript_without_its_opening": (
        _tampered_transcript(lambda t: t[:-1]),
        DisputeError,
        "request and its opening",
    ),
    "evidence_transcript_with_a_message_dropped": (
        _tampered_transcript(lambda t: (t[0], *t[2:])),
        DisputeError,
        "does not follow",
    ),
    "evidence_transcript_message_signed_by_an_outsider": (
        _tampered_transcript(_resigned_message),
        DisputeError,
        "outside the dispute",
    ),
    "evidence_transcript_message_with_a_broken_signature": (
        _tampered_transcript(lambda t: (flip_signature(t[0], DISPUTE_PAYLOAD_TYPE), *t[1:])),
        DisputeError,
        "transcript message 0",
    ),
    "evidence_for_a_receipt_without_a_trace": (
        _evidence_for_an_untraced_receipt,
        BindingError,
        "no trace",
    ),
    "ruling_on_a_settled_dispute": (_dispute_released, StateError, "is released"),
    "claim_without_the_model": (_claim_without_model, PolicyError, "supply the model"),
    "claim_with_another_model": (_claim_with_other_model, DigestMismatchError, "model"),
    "tampered_receipt_signature": (_tampered_signature, SignatureError, None),
    "tampered_receipt_payload": (_tampered_payload, SignatureError, None),
    "receipt_signed_by_a_key_it_does_not_name": (_signed_by_another_key, SignatureError, "other"),
    "batch_without_a_checkpoint": (_batch_without_checkpoint, InputError, "no checkpoint"),
    "settle_as_of_a_time_after_the_clock": (
        _settle_ahead_of_the_clock,
        PolicyError,
        "after the ledger's clock",
    ),
}


@pytest.mark.parametrize(("case", "error", "match"), REFUSALS.values(), ids=REFUSALS)
def test_a_refused_operation_raises_its_class_and_changes_nothing(
    world: World, case: Case, error: type[ReceiptsError], match: str | None
) -> None:
    call = case(world)
    audit(world.store)
    refused(world.store, error, call, match)
    audit(world.store)


def test_settlement_refusals_are_verification_failures_not_bad_input() -> None:
    """The CLI maps SettlementError kin to exit 1 (rules), InputError kin to exit 2."""
    for _, error, _ in REFUSALS.values():
        if error in (ReplayError, StateError, ExpiredError, BindingError, OverdraftError):
            assert issubclass(error, SettlementError)
        if error in (LimitError, MalformedError, InputError):
            assert not issubclass(error, SettlementError)


def test_disputes_need_a_referee_to_ever_be_resolved(tmp_path: Path) -> None:
    w = World(tmp_path / "ledger.db", referees=())
    w.fund()
    _, receipt = w.claimed(traced=True)
    with_ruling = w.ruling(receipt, PROVIDER_FAULT)
    refused(w.store, PolicyError, lambda: w.ledger.dispute(receipt, with_ruling), "no referee")
    # A dispute nobody can ever rule on could only ever lapse at its deadline: refused.
    refused(w.store, PolicyError, lambda: w.open_dispute(receipt), "trusts no referee")
    w.clock.advance(WINDOW_MS)
    assert len(w.ledger.settle().released) == 1


# --- what each operation does --------------------------------------------------------------


def test_hold_moves_the_maximum_from_the_deposit_to_escrow(world: World) -> None:
    signed = world.held(max_amount=300)
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.hold, row.max_amount, row.payer) == ("held", 300, 300, PAYER_ID)
    assert balance(world, PAYER_ID, "deposit") == 700
    assert audit(world.store).requests == {"held": 1}


def test_a_request_is_held_only_by_the_ledger_it_names(world: World, tmp_path: Path) -> None:
    """A provider cannot take the payer's request to a second ledger where the payer also has
    money, and be paid twice for one run."""
    there = World(tmp_path / "there.db", origin="example.com/other-ledger")
    there.fund()
    signed = world.held()  # names this ledger: held here
    assert signed.request.ledger == ORIGIN
    refused(there.store, BindingError, lambda: there.ledger.hold(signed.to_bytes()),
            "names ledger 'example.com/ledger', not this one")  # fmt: skip
    theirs = there.request()  # names the other one: refused here, held there
    refused(world.store, BindingError, lambda: world.ledger.hold(theirs.to_bytes()),
            "names ledger 'example.com/other-ledger'")  # fmt: skip
    there.ledger.hold(theirs.to_bytes())
    receipt = world.issue(signed)
    world.claim(receipt)
    refused(there.store, BindingError, lambda: there.claim(receipt), "unknown here")


def test_claim_opens_the_window_at_the_claimed_amount(world: World) -> None:
    signed = world.held(max_amount=50)
    receipt = world.issue(signed, fee=9)
    world.clock.advance(5)
    claimed = world.claim(receipt)
    assert (claimed.request, claimed.receipt, claimed.amount) == (signed.id, rid(receipt), 9)
    assert claimed.window_ends == world.clock.ms + WINDOW_MS
    assert claimed.report
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.amount, row.claimed_by, row.receipt) == (
        "claimed", 9, PROVIDER_ID, rid(receipt)
    )  # fmt: skip
    assert row.hold == 50  # the money stays in escrow while the window is open


def test_a_receipt_for_a_request_naming_its_provider_is_accepted(world: World) -> None:
    signed = world.held(provider=PROVIDER_ID)
    assert world.claim(world.issue(signed)).amount == FEE


def test_settle_releases_each_claim_exactly_once_when_its_window_closes(world: World) -> None:
    signed, _ = world.claimed(fee=9, max_amount=50)
    world.clock.advance(WINDOW_MS - 1)
    assert world.ledger.settle().released == []
    world.clock.advance(1)
    assert world.ledger.settle().released == [signed.id]
    after = state_of(world.store)
    for _ in range(2):
        again = world.ledger.settle()
        assert (again.released, again.refunded) == ([], [])
        assert state_of(world.store) == after
    assert balance(world, PROVIDER_ID, "earnings") == 9
    assert balance(world, PAYER_ID, "deposit") == 1000 - 9
    releases = [e for _, e in world.ledger.history() if isinstance(e, Release)]
    assert [(r.amount, r.remainder) for r in releases] == [(9, 41)]


def test_settle_refunds_expired_unclaimed_requests_and_only_those(world: World) -> None:
    soon = [world.held(max_amount=10, ttl=1000) for _ in range(3)]
    later = world.held(max_amount=10, ttl=5000)
    claimed, _ = world.claimed(max_amount=10, ttl=1000)  # claimed in time: not refunded
    world.clock.advance(1000)
    done = world.ledger.settle()
    assert sorted(d.value for d in done.refunded) == sorted(s.id.value for s in soon)
    assert done.released == []
    assert balance(world, PAYER_ID, "deposit") == 1000 - 20  # `later` and the claim still held
    states = {s.id: world.store.request(s.id).state for s in [*soon, later, claimed]}  # type: ignore[union-attr]
    assert list(states.values()) == ["refunded"] * 3 + ["held", "claimed"]


def test_settle_as_of_an_earlier_time_closes_only_the_windows_closed_by_then(
    world: World,
) -> None:
    first, _ = world.claimed()
    world.clock.advance(1000)
    world.claimed()
    world.clock.advance(WINDOW_MS)  # both windows have closed by the clock
    assert world.ledger.settle(now=world.clock.ms - 1000).released == [first.id]
    late = partial(world.ledger.settle, now=world.clock.ms + 1)
    refused(world.store, PolicyError, late, "after the ledger's clock")
    assert len(world.ledger.settle(now=world.clock.ms).released) == 1
    releases = [e for _, e in world.ledger.history() if isinstance(e, Release)]
    assert [r.at for r in releases] == [world.clock.ms - 1000, world.clock.ms]


@pytest.mark.parametrize("chunk", [1, 2, 3, 256])
def test_settle_in_any_chunk_size_reaches_the_same_state(tmp_path: Path, chunk: int) -> None:
    ends = []
    for name in ("reference", "chunked"):
        w = World(tmp_path / f"{name}.db")
        w.fund(deposit=100)
        for _ in range(4):
            w.claimed(fee=3, max_amount=5, ttl=2 * WINDOW_MS)
        for _ in range(3):
            w.held(max_amount=5, ttl=1000)
        w.clock.advance(2 * WINDOW_MS)
        done = w.ledger.settle(chunk=256 if name == "reference" else chunk)
        assert (len(done.released), len(done.refunded)) == (4, 3)
        ends.append(state_of(w.store))
        audit(w.store)
    assert ends[0] == ends[1]


@pytest.mark.parametrize("bond", [0, 10, SLASH, 100])
def test_a_provider_fault_ruling_refunds_the_payer_and_slashes_the_bond(
    tmp_path: Path, bond: int
) -> None:
    w = World(tmp_path / "ledger.db")
    w.fund(deposit=1000, bond=bond)
    signed, receipt = w.disputed(fee=9, max_amount=50)
    result = w.rule(receipt, PROVIDER_FAULT)
    slashed = min(bond, SLASH)
    assert (result.request, result.outcome, result.slashed) == (signed.id, "refunded", slashed)
    assert balance(w, PAYER_ID, "deposit") == 1000 + slashed
    assert balance(w, PROVIDER_ID, "bond") == bond - slashed
    assert balance(w, PROVIDER_ID, "earnings") == 0
    row = w.store.request(signed.id)
    assert row is not None
    assert (row.state, row.verdict, row.hold) == ("refunded", PROVIDER_FAULT, 0)
    audit(w.store)


def test_a_challenge_rejected_ruling_releases_the_claim(world: World) -> None:
    signed, receipt = world.disputed(fee=9, max_amount=50)
    result = world.rule(receipt, CHALLENGE_REJECTED)
    assert (result.outcome, result.slashed) == ("released", 0)
    assert balance(world, PROVIDER_ID, "earnings") == 9
    assert balance(world, PAYER_ID, "deposit") == 1000 - 9
    assert balance(world, PROVIDER_ID, "bond") == 100
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.verdict) == ("released", CHALLENGE_REJECTED)


def _opened(w: World, **kwargs: Any) -> tuple[SignedRequest, bytes, Dispute]:
    """A traced claim, disputed by its payer with evidence 1 s into its window; the entry."""
    signed, receipt = w.claimed(traced=True, **kwargs)
    w.clock.advance(1000)
    opened = w.open_dispute(receipt)
    assert (opened.request, opened.outcome, opened.slashed) == (signed.id, "open", 0)
    entry = w.ledger.history()[-1][1]
    assert isinstance(entry, Dispute)
    return signed, receipt, entry


def test_an_opened_dispute_records_the_evidence_and_a_deadline_one_window_later(
    world: World,
) -> None:
    signed, receipt, entry = _opened(world, max_amount=50)
    assert entry.evidence == world.evidence(receipt).digest
    assert entry.deadline == world.clock.ms + WINDOW_MS
    assert (entry.ruling, entry.verdict) == (None, None)
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.hold, row.verdict, row.window_ends) == (
        "disputed", 50, None, entry.deadline
    )  # fmt: skip
    audit(world.store)


# When the ruling comes, in ms after the dispute was opened (its deadline is WINDOW_MS later).
RULED_AT = {"inside_the_claims_window": 1, "after_the_claims_window": WINDOW_MS - 1000,
            "after_the_deadline_before_settle": WINDOW_MS}  # fmt: skip


@pytest.mark.parametrize("wait", RULED_AT.values(), ids=RULED_AT)
@pytest.mark.parametrize(("verdict", "state"), [(PROVIDER_FAULT, "refunded"),
                                                (CHALLENGE_REJECTED, "released")])  # fmt: skip
def test_a_ruling_resolves_an_open_dispute_until_settle_releases_it(
    world: World, verdict: str, state: str, wait: int
) -> None:
    signed, receipt, _ = _opened(world, fee=9, max_amount=50)
    world.clock.advance(wait - 1)
    assert world.ledger.settle().released == []  # not before the deadline, past the window
    world.clock.advance(1)
    resolved = world.rule(receipt, verdict)
    assert (resolved.request, resolved.outcome) == (signed.id, state)
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.verdict, row.hold) == (state, verdict, 0)
    fault = verdict == PROVIDER_FAULT
    assert resolved.slashed == (SLASH if fault else 0)
    assert balance(world, PROVIDER_ID, "earnings") == (0 if fault else 9)
    assert balance(world, PAYER_ID, "deposit") == (1000 + SLASH if fault else 1000 - 9)
    assert balance(world, PROVIDER_ID, "bond") == (100 - SLASH if fault else 100)
    world.clock.advance(WINDOW_MS)
    assert world.ledger.settle().released == []  # resolved once, not released again
    audit(world.store)


def test_an_open_dispute_without_a_ruling_is_released_by_settle_at_its_deadline(
    world: World,
) -> None:
    signed, receipt, entry = _opened(world, fee=9, max_amount=50)
    assert entry.deadline is not None
    world.clock.ms = entry.deadline - 1
    assert world.ledger.settle().released == []  # the claim's own window closed 1 s ago
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.hold) == ("disputed", 50)
    world.clock.advance(1)
    assert world.ledger.settle().released == [signed.id]
    release = world.ledger.history()[-1][1]
    assert release == Release(at=entry.deadline, request=signed.id, provider=PROVIDER_ID,
                              payer=PAYER_ID, asset="credit", amount=9, remainder=41)  # fmt: skip
    assert balance(world, PROVIDER_ID, "earnings") == 9
    assert balance(world, PAYER_ID, "deposit") == 1000 - 9
    assert balance(world, PROVIDER_ID, "bond") == 100  # no ruling, no slash
    row = world.store.request(signed.id)
    assert row is not None
    assert (row.state, row.hold, row.verdict) == ("released", 0, None)
    for verdict in (PROVIDER_FAULT, CHALLENGE_REJECTED):  # too late: the burden was the payer's
        late = partial(world.rule, receipt, verdict)
        refused(world.store, StateError, late, "released")
    assert world.ledger.settle().released == []
    audit(world.store)


def test_the_ledger_reopens_with_its_rules_and_state(world: World, tmp_path: Path) -> None:
    world.claimed()
    before = state_of(world.store)
    world.ledger.close()
    again = Ledger.open(tmp_path / "ledger.db", clock=HandClock())
    assert again.rules == rules()
    assert state_of(again.store) == before
    again.close()


def test_the_rules_round_trip_through_entry_0(world: World) -> None:
    index, opened = world.ledger.history(0, 1)[0]
    assert index == 0
    assert LedgerRules.from_event(opened) == world.ledger.rules  # type: ignore[arg-type]


# --- files that are not a ledger -----------------------------------------------------------


def _plain_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()


def _other_schema(path: Path) -> None:
    Ledger.create(path, rules()).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", ((2).to_bytes(4, "big"),))
    db.commit()
    db.close()


OPEN_REFUSALS: dict[str, tuple[Callable[[Path], object] | None, type[ReceiptsError]]] = {
    "missing_file": (None, InputError),
    "empty_file": (lambda p: p.write_bytes(b""), MalformedError),
    "text_file": (lambda p: p.write_text("not a database\n" * 100), MalformedError),
    "sqlite_without_the_schema": (_plain_sqlite, MalformedError),
    "ledger_of_schema_version_2": (_other_schema, UnsupportedVersionError),
}


@pytest.mark.parametrize(("make", "error"), OPEN_REFUSALS.values(), ids=OPEN_REFUSALS)
def test_opening_a_file_that_is_not_a_ledger_is_refused_and_leaves_it_alone(
    tmp_path: Path, make: Callable[[Path], object] | None, error: type[ReceiptsError]
) -> None:
    path = tmp_path / "ledger.db"
    if make is not None:
        make(path)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(error) as raised:
        Ledger.open(path)
    assert raised.type is error
    assert "\n" not in str(raised.value)
    # Not even the journal mode changes: no -wal or -shm beside it, the bytes as they were.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


@pytest.fixture(scope="module")
def ledger_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A closed ledger file with money held, a claim, log entries and a checkpoint."""
    path = tmp_path_factory.mktemp("whole") / "ledger.db"
    w = World(path)
    w.fund()
    w.claimed()
    w.ledger.log.checkpoint(LOG_KEY)
    w.ledger.close()
    return path.read_bytes()


def _read_everything(path: Path) -> None:
    """What a verifier or a settlement service reads back from a ledger file."""
    ledger = Ledger.open(path, clock=HandClock())
    try:
        audit(ledger.store)
        ledger.history()
        state_of(ledger.store)
    finally:
        ledger.close()


def _xor(data: bytes, at: int, mask: int) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


DAMAGED_LEDGERS: dict[str, Callable[[bytes], bytes]] = {
    # SQLite's error quotes the schema's name, and Python failed to decode its own message
    "a_table_name_not_utf8": lambda d: _xor(d, d.index(b"refsrefs"), 0x80),
    "a_column_renamed": lambda d: d.replace(b"refs (ref BLOB", b"refs (rxf BLOB"),
    "the_schema_page_zeroed": lambda d: d[:100] + bytes(4096 - 100) + d[4096:],
    "a_data_page_zeroed": lambda d: d[: 4096 * 3] + bytes(4096) + d[4096 * 4 :],
    "half_the_file": lambda d: d[: len(d) // 2],
}


@pytest.mark.parametrize("damage", DAMAGED_LEDGERS.values(), ids=DAMAGED_LEDGERS)
def test_a_damaged_ledger_file_is_a_typed_error(
    ledger_bytes: bytes, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    """Found by sweeping byte flips over a ledger file: sqlite3's DatabaseError and
    OperationalError, and a UnicodeDecodeError, came out of the store's reads untyped."""
    path = tmp_path / "ledger.db"
    path.write_bytes(damage(ledger_bytes))
    with pytest.raises(InputError) as raised:
        _read_everything(path)
    assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_every_damaged_byte_of_a_ledger_file_reads_or_is_a_typed_error(
    ledger_bytes: bytes, tmp_path: Path
) -> None:
    """Every 7th byte of the file inverted, one at a time (a sweep, not a sample): each read
    back gives the ledger, a typed storage error, or the audit's typed finding (StateError)."""
    refused = 0
    for at in range(0, len(ledger_bytes), 7):
        for leftover in tmp_path.iterdir():
            leftover.unlink()
        path = tmp_path / "ledger.db"
        path.write_bytes(_xor(ledger_bytes, at, 0xFF))
        try:
            _read_everything(path)
        except ReceiptsError:
            refused += 1
    assert refused > 0


def test_create_refuses_an_existing_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    data = path.read_bytes()
    with pytest.raises(StorageError, match="already exists"):
        Ledger.create(path, rules())
    assert path.read_bytes() == data


def test_a_store_that_was_never_opened_is_not_a_ledger() -> None:
    with pytest.raises(StateError, match="never opened"):
        Ledger(SqliteStore.create(":memory:"))


BAD_RULES: dict[str, tuple[dict[str, Any], type[ReceiptsError]]] = {
    "empty_origin": ({"origin": ""}, MalformedError),
    "origin_with_a_space": ({"origin": "a b"}, MalformedError),
    "origin_with_a_plus": ({"origin": "a+b"}, MalformedError),
    "origin_over_256": ({"origin": "a" * 257}, MalformedError),
    "origin_with_a_newline": ({"origin": "a\nb"}, MalformedError),
    "rungs_without_digests": ({"rungs": ("signature",)}, MalformedError),
    "unknown_rung": ({"rungs": ("signature", "digests", "vibes")}, MalformedError),
    "empty_asset": ({"assets": ("",)}, MalformedError),
}


@pytest.mark.parametrize(("changes", "error"), BAD_RULES.values(), ids=BAD_RULES)
def test_rules_outside_their_schema_are_refused(
    changes: dict[str, Any], error: type[ReceiptsError]
) -> None:
    with pytest.raises(error) as raised:
        rules(**changes)
    assert raised.type is error


# Rules that entry 0 cannot hold, or that it could write but never read back (every open of
# the ledger decodes it): refused before the file exists.
BAD_OPENINGS: dict[str, tuple[dict[str, Any], type[ReceiptsError]]] = {
    "no_assets": ({"assets": ()}, MalformedError),
    "duplicate_assets": ({"assets": ("credit", "credit")}, MalformedError),
    "negative_window": ({"window_ms": -1}, MalformedError),
    "negative_slash": ({"slash_amount": -1}, MalformedError),
    "65_assets": ({"assets": tuple(f"asset-{i}" for i in range(65))}, MalformedError),
    "17_rungs": ({"rungs": ("signature", "digests") * 8 + ("reexec",)}, MalformedError),
    "origin_of_257_utf8_bytes": ({"origin": "é" * 128 + "x"}, MalformedError),
    "entry_0_over_the_log_limit": (
        {"assets": tuple(f"{i:05d}".ljust(64, "x") for i in range(17_000))},
        LimitError,
    ),
}


@pytest.mark.parametrize(("changes", "error"), BAD_OPENINGS.values(), ids=BAD_OPENINGS)
def test_a_ledger_with_impossible_rules_is_not_created(
    tmp_path: Path, changes: dict[str, Any], error: type[ReceiptsError]
) -> None:
    path = tmp_path / "ledger.db"
    with pytest.raises(error) as raised:
        Ledger.create(path, rules(**changes))
    assert raised.type is error, raised.value
    assert list(tmp_path.iterdir()) == []


def test_supply_beyond_2_63_is_refused_not_rounded(world: World) -> None:
    """SQLite turns an overflowing integer sum into a float; the ledger must refuse it."""
    room = MAX_AMOUNT - 1100  # 1000 deposited and 100 bonded already
    world.ledger.deposit(OTHER_PAYER.public_key.key_id, "credit", room)
    refused(world.store, LimitError, lambda: world.ledger.deposit(PAYER_ID, "credit", 1),
            "overflow")  # fmt: skip
    assert world.store.assets() == {"credit": MAX_AMOUNT}
    assert all(isinstance(b.amount, int) for b in world.store.balances())
    audit(world.store)


# --- the log's entry limit ----------------------------------------------------------------


def _padded(w: World, signed: SignedRequest, filler: int) -> bytes:
    """The provider's receipt for ``signed`` with ``filler`` made-up outputs of about 1 kB each,
    signed again: the ledger checks output digests only against outputs it is given, so a
    provider can pad a receipt up to the envelope's limit."""
    base = Receipt.decode(Envelope.from_bytes(w.issue(signed)).payload)
    specs = [TensorSpec(name=f"pad{i:05d}".ljust(1000, "x"), elem_type="float32", shape=(1,))
             for i in range(filler)]  # fmt: skip
    extra = [TensorEntry(spec=spec, digest=NOBODY) for spec in specs]
    outputs = TensorMapDigest.from_entries([*base.outputs.entries, *extra])
    return sign_receipt(replace(base, outputs=outputs))


def test_the_largest_receipt_an_envelope_holds_makes_a_claim_entry_within_the_log_limit(
    world: World,
) -> None:
    """The log's limit leaves room for a claim of any receipt the envelope admits, so every
    accepted claim reads back (history, audit, replay, batches)."""
    signed = world.held()
    largest = _padded(world, signed, 973)
    assert MAX_ENVELOPE_BYTES - 2048 < len(largest) <= MAX_ENVELOPE_BYTES
    world.claim(largest)
    entry = world.store.entries(world.store.size() - 1, world.store.size())[0]
    assert len(largest) < len(entry) <= MAX_ENTRY_BYTES
    claim = decode_event(entry)
    assert isinstance(claim, Claim) and claim.receipt == largest
    assert state_of(replay(world.store.entries(0, world.store.size()))) == state_of(world.store)


def test_a_receipt_over_the_envelope_limit_is_refused_and_changes_nothing(world: World) -> None:
    signed = world.held()
    over = _padded(world, signed, 1000)
    assert len(over) > MAX_ENVELOPE_BYTES
    refused(world.store, LimitError, lambda: world.claim(over), "exceeds the limit")


def test_the_ledger_records_no_entry_over_the_log_limit(world: World) -> None:
    """The recorder's own guard, before anything is applied: an entry over the limit could be
    written but never decoded again. (No operation makes one: the envelopes inside entries are
    limited below it, as the two tests above show; this is the guard behind that.)"""
    signed, receipt = world.disputed()
    oversized = Dispute(at=NOW, request=signed.id, ruling=bytes(MAX_ENTRY_BYTES),
                        verdict=CHALLENGE_REJECTED)  # fmt: skip
    with pytest.raises(LimitError):
        decode_event(oversized.encode())

    def record() -> None:
        with world.store.transaction():
            _record(world.store, [oversized])

    refused(world.store, LimitError, record, "over the log's limit")
    assert world.rule(receipt, CHALLENGE_REJECTED).outcome == "released"  # still open


# --- conservation, and the log as the source of truth --------------------------------------


def _mixed_scenario(w: World) -> list[Callable[[], object]]:
    """Every kind of operation, each one step; the receipts are issued as each step runs."""
    state: dict[str, Any] = {}

    def claim(name: str, fee: int, **kw: Any) -> Callable[[], object]:
        def step() -> None:
            state[name] = w.issue(w.held(**kw), fee, traced=True)
            w.claim(state[name])

        return step

    return [
        lambda: w.ledger.deposit(PAYER_ID, "credit", 500),
        lambda: w.ledger.deposit(OTHER_PAYER.public_key.key_id, "credit", 70),
        lambda: w.ledger.bond(PROVIDER_ID, "credit", 25),
        claim("a", 11, max_amount=40),
        claim("b", 3, max_amount=40),
        claim("c", 40, max_amount=40, payer=OTHER_PAYER),
        claim("d", 5, max_amount=40),
        lambda: w.held(max_amount=30, ttl=1000),
        lambda: w.open_dispute(state["b"]),  # no ruling comes: released at its deadline
        lambda: w.open_dispute(state["d"]),
        lambda: w.open_dispute(state["c"]),
        lambda: w.rule(state["c"], PROVIDER_FAULT),
        lambda: w.rule(state["d"], CHALLENGE_REJECTED),
        lambda: w.clock.advance(WINDOW_MS),
        w.ledger.settle,
        lambda: w.ledger.log.checkpoint(LOG_KEY),
        w.ledger.make_batch,
        lambda: w.ledger.deposit(PAYER_ID, "credit", 1),
    ]


def test_every_step_of_a_mixed_scenario_conserves_money(world: World) -> None:
    steps = _mixed_scenario(world)
    for step in steps:
        step()
        checked = audit(world.store)
        assert checked.log_size == world.store.size()
    assert audit(world.store).requests == {"released": 3, "refunded": 2}
    supply = 1000 + 100 + 500 + 70 + 25 + 1
    assert world.store.assets() == {"credit": supply}
    assert balance(world, PROVIDER_ID, "earnings") == 11 + 3 + 5
    assert balance(world, PROVIDER_ID, "bond") == 125 - SLASH
    assert balance(world, OTHER_PAYER.public_key.key_id, "deposit") == 70 + SLASH


def test_the_log_alone_rebuilds_the_same_ledger(world: World) -> None:
    for step in _mixed_scenario(world):
        step()
    entries = world.store.entries(0, world.store.size())
    rebuilt = replay(entries)
    assert state_of(rebuilt) == state_of(world.store)
    assert Log(rebuilt, ORIGIN).root() == world.ledger.log.root()
    audit(rebuilt)
    assert [decode_event(e).encode() for e in entries] == entries  # every entry is canonical


def test_the_log_rebuilds_an_evidence_dispute_and_its_deadline_release(world: World) -> None:
    signed, _, opening = _opened(world, fee=9, max_amount=50)
    assert opening.deadline is not None
    opened_at = world.store.size()
    world.clock.ms = opening.deadline
    assert world.ledger.settle().released == [signed.id]
    entries = world.store.entries(0, world.store.size())
    assert [type(decode_event(e)) for e in entries[opened_at - 1 :]] == [Dispute, Release]
    rebuilt = replay(entries)
    assert state_of(rebuilt) == state_of(world.store)
    assert Log(rebuilt, ORIGIN).root() == world.ledger.log.root()
    audit(rebuilt)
    # Up to the opening, the rebuilt ledger holds the dispute with its deadline: a settle on
    # it would release the claim at the deadline, not before.
    until_opened = replay(entries[:opened_at])
    row = until_opened.request(signed.id)
    assert row is not None
    assert (row.state, row.window_ends) == ("disputed", opening.deadline)
    assert until_opened.due(opening.deadline - 1, 8) == []
    assert [r.id for r in until_opened.due(opening.deadline, 8)] == [signed.id]


def test_every_prefix_of_the_log_replays_to_a_ledger_that_audits(world: World) -> None:
    for step in _mixed_scenario(world):
        step()
    entries = world.store.entries(0, world.store.size())
    for n in range(1, len(entries) + 1):
        audit(replay(entries[:n]))


def _resigned_by_stranger(claim: Claim) -> Claim:
    receipt = Receipt.decode(Envelope.from_bytes(claim.receipt).payload)
    return replace(claim, receipt=sign_receipt(receipt, STRANGER))


def _is_ruling(e: AnyEvent) -> bool:
    return isinstance(e, Dispute) and e.ruling is not None


# (which entry is forged, the forgery, error): replay re-checks every signature in the log.
Which = Callable[[Any], bool]
REPLAY_FORGERIES: dict[str, tuple[Which, Callable[[Any], Any], type[ReceiptsError]]] = {
    "claim_receipt_signature": (
        lambda e: isinstance(e, Claim),
        lambda e: replace(e, receipt=flip_signature(e.receipt)),
        SignatureError,
    ),
    "claim_receipt_signed_by_a_key_it_does_not_name": (
        lambda e: isinstance(e, Claim),
        _resigned_by_stranger,
        SignatureError,
    ),
    "dispute_ruling_signature": (
        _is_ruling,
        lambda e: replace(e, ruling=flip_signature(e.ruling, RULING_PAYLOAD_TYPE)),
        SignatureError,
    ),
    "dispute_verdict_not_the_rulings": (
        _is_ruling,
        lambda e: replace(e, verdict=PROVIDER_FAULT),
        MalformedError,
    ),
}


@pytest.mark.parametrize(
    ("which", "forge", "error"), REPLAY_FORGERIES.values(), ids=REPLAY_FORGERIES
)
def test_replay_refuses_a_log_whose_signed_records_do_not_verify(
    world: World,
    which: Callable[[Any], bool],
    forge: Callable[[Any], Any],
    error: type[ReceiptsError],
) -> None:
    _, receipt = world.disputed()
    world.rule(receipt, CHALLENGE_REJECTED)
    entries = world.store.entries(0, world.store.size())
    at = next(i for i, e in enumerate(entries) if which(decode_event(e)))
    forged = [*entries[:at], forge(decode_event(entries[at])).encode(), *entries[at + 1 :]]
    assert forged != entries
    with pytest.raises(error) as raised:
        replay(forged)
    assert raised.type is error


# --- replay checks what each entry means, not only its signatures ---------------------------


@dataclass(frozen=True, slots=True)
class Story:
    """A log with every kind of closing: ``paid`` released at its window's end (with a rest
    returned), ``expiring`` refunded unclaimed, ``faulty`` disputed and ruled a provider fault
    (refund and slash), ``rejected`` disputed and its challenge rejected (release)."""

    entries: list[bytes]
    paid: Digest
    expiring: Digest
    faulty: Digest
    rejected: Digest
    payers_evidence: Digest  # the payer's evidence against the `rejected` receipt
    sham_ruling: bytes  # the referee's ruling on a sham challenger's evidence against it
    stranger_ruling: bytes  # a ruling on the payer's evidence, signed by a non-referee
    sham_notice: bytes  # a notice opening the `rejected` dispute, signed by another key
    elsewhere: bytes  # a request, signed by the payer, for another ledger

    def find(self, kind: type[Any], request: Digest, pick: Callable[[Any], bool] = bool) -> int:
        """The index of the entry of ``kind`` about ``request`` (the first ``pick`` accepts)."""
        for index, entry in enumerate(self.entries):
            event = decode_event(entry)
            if isinstance(event, kind) and event.request == request and pick(event):
                return index
        raise AssertionError(f"no {kind.__name__} entry for {request}")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    w = World(tmp_path_factory.mktemp("story") / "ledger.db")
    w.fund(deposit=1000, bond=100)
    paid, _ = w.claimed(fee=9, max_amount=50)
    expiring = w.held(max_amount=10, ttl=1000)
    faulty, faulty_receipt = w.disputed(fee=5, max_amount=20)
    w.rule(faulty_receipt, PROVIDER_FAULT)
    rejected, receipt = w.disputed(fee=4, max_amount=20)
    w.rule(receipt, CHALLENGE_REJECTED)
    w.clock.advance(WINDOW_MS)
    assert w.ledger.settle().released == [paid.id]
    entries = w.store.entries(0, w.store.size())
    assert state_of(replay(entries)) == state_of(w.store)  # the honest log replays
    sham = w.evidence(receipt, challenger=CHALLENGER).digest
    payers = w.evidence(receipt).digest
    return Story(
        entries=entries,
        paid=paid.id,
        expiring=expiring.id,
        faulty=faulty.id,
        rejected=rejected.id,
        payers_evidence=payers,
        sham_ruling=ruling(receipt, CHALLENGE_REJECTED, evidence=sham),
        stranger_ruling=ruling(receipt, CHALLENGE_REJECTED, STRANGER, evidence=payers),
        sham_notice=w.notice(receipt, signer=CHALLENGER),
        elsewhere=w.request(ledger="example.com/other").to_bytes(),
    )


Forgery = Callable[[Story], list[bytes]]


def _edited(kind: type[Any], which: str, pick: Callable[[Any], bool] = bool, /,
            **changes: Any) -> Forgery:  # fmt: skip
    """The story's entry of ``kind`` about its request ``which``, with ``changes``; a change
    given as a function is applied to the entry."""

    def forge(s: Story) -> list[bytes]:
        at = s.find(kind, getattr(s, which), pick)
        event = decode_event(s.entries[at])
        values = {k: v(event) if callable(v) else v for k, v in changes.items()}
        return [*s.entries[:at], replace(event, **values).encode(), *s.entries[at + 1 :]]

    return forge


def _repeated(kind: type[Any], which: str) -> Forgery:
    def forge(s: Story) -> list[bytes]:
        at = s.find(kind, getattr(s, which))
        return [*s.entries[: at + 1], *s.entries[at:]]

    return forge


def _dropped(kind: type[Any], which: str, pick: Callable[[Any], bool] = bool) -> Forgery:
    def forge(s: Story) -> list[bytes]:
        at = s.find(kind, getattr(s, which), pick)
        return [*s.entries[:at], *s.entries[at + 1 :]]

    return forge


def _slash_after_release(s: Story) -> list[bytes]:
    """A slash for the released claim, paying the payer out of the honest provider's bond."""
    slash = Slash(at=NOW, request=s.paid, provider=PROVIDER_ID, payer=PAYER_ID, asset="credit",
                  amount=1)  # fmt: skip
    return [*s.entries, slash.encode()]


def _refund_in_place_of_release(s: Story) -> list[bytes]:
    """The payer takes back the whole hold of the claim that was due to the provider."""
    at = s.find(Release, s.paid)
    release = decode_event(s.entries[at])
    assert isinstance(release, Release)
    refund = Refund(at=release.at, request=s.paid, payer=PAYER_ID, asset="credit",
                    amount=release.amount + release.remainder, reason="expired")  # fmt: skip
    return [*s.entries[:at], refund.encode(), *s.entries[at + 1 :]]


def _claim_for_another_request(s: Story) -> list[bytes]:
    """The `faulty` receipt's claim entry, moved onto the `expiring` request (held then)."""
    return _edited(Claim, "faulty", request=s.expiring)(s)


def _ruling(field: str) -> Forgery:
    """The `rejected` ruling entry, its ruling replaced by the story's ``field``."""
    return lambda s: _edited(Dispute, "rejected", _is_ruling, ruling=getattr(s, field))(s)


def _is_opening(event: Any) -> bool:
    return event.evidence is not None


def _appended(make: Callable[[Story], Any]) -> Forgery:
    return lambda s: [*s.entries, make(s).encode()]


LATE = NOW + 10 * TTL_MS  # after every request of the story expired


# Each forged log is well-formed and every signature in it verifies; what it says is not what
# the ledger could have written, and replay refuses it with StateError saying why.
MEANING_FORGERIES: dict[str, tuple[Forgery, str]] = {
    "release_to_a_thief": (_edited(Release, "paid", provider=THIEF), "other parties"),
    "release_returning_the_rest_to_another_payer": (
        _edited(Release, "paid", payer=OTHER_PAYER_ID),
        "other parties",
    ),
    "release_in_another_asset": (_edited(Release, "paid", asset="gold"), "other parties"),
    "release_paying_more_than_the_claim": (
        _edited(
            Release, "paid", amount=lambda e: e.amount + 1, remainder=lambda e: e.remainder - 1
        ),
        "pays 10, the claim 9",
    ),
    "release_before_the_window_closed": (
        _edited(Release, "paid", at=NOW),
        "before its window closed",
    ),
    "release_of_a_request_never_held": (
        _edited(Release, "paid", request=NOBODY),
        "never held",
    ),
    "refund_to_another_payer": (
        _edited(Refund, "expiring", payer=OTHER_PAYER_ID),
        "another payer",
    ),
    "refund_of_a_claim_in_place_of_its_release": (_refund_in_place_of_release, "as expired"),
    "refund_as_expired_before_the_request_expired": (
        _edited(Refund, "expiring", at=NOW),
        "as expired",
    ),
    "refund_on_a_fault_recorded_as_an_expiry": (
        _edited(Refund, "faulty", reason="expired"),
        "does not follow its ruling",
    ),
    "refund_on_an_expiry_recorded_as_a_fault": (
        _edited(Refund, "expiring", reason="provider-fault"),
        "does not follow its ruling",
    ),
    "slash_of_a_request_never_held": (_edited(Slash, "faulty", request=NOBODY), "never held"),
    "slash_paid_to_a_thief": (_edited(Slash, "faulty", payer=THIEF), "other parties"),
    "slash_over_the_rules_amount": (
        _edited(Slash, "faulty", amount=SLASH + 1),
        "exceeds the ledger's slash amount",
    ),
    "slash_twice": (_repeated(Slash, "faulty"), "or was slashed"),
    "slash_of_a_released_claim": (_slash_after_release, "not refunded on a fault"),
    "claim_carrying_another_requests_receipt": (
        _claim_for_another_request,
        "carries another request's receipt",
    ),
    "ruling_signed_by_a_key_not_among_the_referees": (
        _ruling("stranger_ruling"),
        "not by one of the referees",
    ),
    "ruling_on_a_sham_challengers_evidence": (
        _ruling("sham_ruling"),
        "judged other evidence than the payer's dispute",
    ),
    "claim_with_a_window_the_rules_do_not_give": (
        _edited(Claim, "paid", window_ends=lambda e: e.at),
        "a window the rules do not give",
    ),
    "claim_after_its_request_expired": (
        _edited(Claim, "paid", at=LATE, window_ends=LATE + WINDOW_MS),
        "expired",
    ),
    "dispute_opened_with_a_notice_not_by_the_payer": (
        lambda s: _edited(Dispute, "rejected", _is_opening, notice=s.sham_notice)(s),
        "not opened by its payer",
    ),
    "dispute_opened_twice": (_repeated(Dispute, "rejected"), "outside a claim's window"),
    "dispute_with_a_deadline_moved": (
        _edited(Dispute, "rejected", _is_opening, deadline=lambda e: e.deadline + 1),
        "a deadline the rules do not give",
    ),
    "hold_of_a_request_for_another_ledger": (
        _appended(lambda s: Hold(at=NOW, request=read_request(s.elsewhere))),
        "another ledger",
    ),
    "batch_that_does_not_follow_the_last": (
        _appended(lambda s: BatchMade(at=LATE, first=1, end=2, digest=NOBODY)),
        "does not follow the last batch",
    ),
    "ruling_without_the_payers_opening": (
        _dropped(Dispute, "rejected", lambda e: e.evidence is not None),
        "judged other evidence than the payer's dispute",
    ),
}


@pytest.mark.parametrize(("forge", "match"), MEANING_FORGERIES.values(), ids=MEANING_FORGERIES)
def test_replay_refuses_a_log_that_says_what_the_ledger_could_not_have_written(
    story: Story, forge: Forgery, match: str
) -> None:
    forged = forge(story)
    assert forged != story.entries
    for entry in forged:
        decode_event(entry).check()  # well-formed, and every signature in it verifies
    with pytest.raises(StateError, match=match) as raised:
        replay(forged)
    assert raised.type is StateError, raised.value
    assert "\n" not in str(raised.value)


def _copy(world: World, tmp_path: Path) -> Path:
    world.ledger.close()  # the last connection folds the WAL into the file
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "ledger.db", copy)
    return copy


def _raw(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    assert db.execute(sql, args).rowcount >= 1
    db.commit()
    db.close()


TAMPERS: dict[str, tuple[str, tuple[object, ...]]] = {
    "entry_bytes": ("UPDATE entries SET data = ? WHERE idx = 3", (b"\x80",)),
    "entry_dropped": ("DELETE FROM entries WHERE idx = 5", ()),
    "balance_created": ("UPDATE balances SET amount = amount + 1 WHERE kind = 'deposit'", ()),
    "supply_lowered": ("UPDATE assets SET supply = supply - 1", ()),
    "hold_of_an_open_request": ("UPDATE requests SET hold = hold - 1 WHERE state = 'held'", ()),
    "unknown_state": ("UPDATE requests SET state = 'lost' WHERE state = 'held'", ()),
    "closed_request_still_holding": ("UPDATE requests SET hold = 3 WHERE state = 'released'", ()),
    "missing_inner_node": ("DELETE FROM nodes WHERE level = 1 AND idx = 0", ()),
    "changed_inner_node": ("UPDATE nodes SET hash = zeroblob(32) WHERE level = 2 AND idx = 1", ()),
    "claimed_over_the_maximum": (
        "UPDATE requests SET amount = max_amount + 1 WHERE state = 'released'",
        (),
    ),
    "live_rules_not_entry_0": (
        "UPDATE meta SET value = ? WHERE key = 'open'",
        (rules(slash_amount=SLASH + 1).to_event(NOW).encode(),),
    ),
    "checkpoint_filed_under_another_size": ("UPDATE checkpoints SET size = size - 1", ()),
    "checkpoint_beyond_the_log": ("UPDATE checkpoints SET size = size + 1000", ()),
    "checkpoint_that_does_not_parse": ("UPDATE checkpoints SET note = ?", (b"not a note\n",)),
}


@pytest.mark.parametrize(("sql", "args"), TAMPERS.values(), ids=TAMPERS)
def test_audit_catches_a_tampered_ledger_file(
    world: World, tmp_path: Path, sql: str, args: tuple[object, ...]
) -> None:
    for step in _mixed_scenario(world):
        step()
    world.held(max_amount=5)
    copy = _copy(world, tmp_path)
    _raw(copy, sql, *args)
    store = SqliteStore.open_file(copy)
    with pytest.raises(StateError) as raised:
        audit(store)
    assert raised.type is StateError
    store.close()


# Rows the log also makes: audit's sums do not see them dropped, rebuilding from the log does.
DROPPED_ROWS = {
    "batch_record": "DELETE FROM batches",
    "deposit_reference": "DELETE FROM refs",
    "slash_record": "UPDATE requests SET slashed = 0 WHERE slashed > 0",
    "opened_disputes_evidence": "UPDATE requests SET evidence = NULL WHERE evidence IS NOT NULL",
}


@pytest.mark.parametrize("sql", DROPPED_ROWS.values(), ids=DROPPED_ROWS)
def test_a_dropped_record_passes_audit_but_not_replay(
    world: World, tmp_path: Path, sql: str
) -> None:
    """A dropped batch record would let a span be batched (and paid) twice; a dropped reference
    would let a deposit be applied twice; both must show when the log rebuilds the ledger."""
    for step in _mixed_scenario(world):
        step()
    world.ledger.deposit(PAYER_ID, "credit", 3, reference=b"payment-1")
    copy = _copy(world, tmp_path)
    _raw(copy, sql)
    store = SqliteStore.open_file(copy)
    audit(store)
    assert state_of(replay(store.entries(0, store.size()))) != state_of(store)
    store.close()


def test_a_move_between_balances_passes_audit_but_not_replay(world: World, tmp_path: Path) -> None:
    """Conservation alone misses money moved between accounts; rebuilding from the log does not."""
    copy = _copy(world, tmp_path)
    _raw(copy, "UPDATE balances SET amount = amount + 1 WHERE kind = 'bond'")
    _raw(copy, "UPDATE balances SET amount = amount - 1 WHERE kind = 'deposit'")
    store = SqliteStore.open_file(copy)
    audit(store)
    assert state_of(replay(store.entries(0, store.size()))) != state_of(store)
    store.close()


def test_a_tampered_entry_fails_its_proof_against_an_earlier_checkpoint(
    world: World, tmp_path: Path
) -> None:
    for step in _mixed_scenario(world):
        step()
    note = world.ledger.log.checkpoint(LOG_KEY)
    honest = world.ledger.log.prove(4, note)
    verify_inclusion_proof(honest, LOG_KEY.public_key, origin=ORIGIN)
    copy = _copy(world, tmp_path)
    forged = Deposit(at=NOW, account=PAYER_ID, asset="credit", amount=10**9).encode()
    _raw(copy, "UPDATE entries SET data = ? WHERE idx = 4", forged)
    store = SqliteStore.open_file(copy)
    with pytest.raises(StateError):
        audit(store)
    proof = Log(store, ORIGIN).prove(4, note)
    with pytest.raises(ProofError):
        verify_inclusion_proof(proof, LOG_KEY.public_key, origin=ORIGIN)
    with pytest.raises(ProofError):  # the honest proof, against the forged entry
        verify_inclusion_proof(honest, LOG_KEY.public_key, origin=ORIGIN, entry=forged)
    store.close()


# --- decoding log entries ------------------------------------------------------------------


def _entry(**changes: object) -> bytes:
    wire = codec.decode(Deposit(at=NOW, account=PAYER_ID, asset="credit", amount=5).encode())
    assert isinstance(wire, dict)
    wire.update(changes)
    return codec.encode({k: v for k, v in wire.items() if v is not None})


HOSTILE_ENTRIES: dict[str, tuple[bytes, type[ReceiptsError]]] = {
    "not_msgpack": (b"\xc1", MalformedError),
    "unknown_kind": (_entry(kind="mint"), UnsupportedVersionError),
    "version_2": (_entry(version=2), UnsupportedVersionError),
    "type_receipt": (_entry(type="receipt"), UnsupportedVersionError),
    "unknown_field": (_entry(memo="hi"), MalformedError),
    "missing_amount": (_entry(amount=None), MalformedError),
    "zero_deposit": (_entry(amount=0), MalformedError),
    "negative_amount": (_entry(amount=-1), MalformedError),
    "amount_over_2^63-1": (_entry(amount=MAX_AMOUNT + 1), MalformedError),
    "short_account": (_entry(account=bytes(31)), MalformedError),
    "negative_time": (_entry(at=-1), MalformedError),
}


@pytest.mark.parametrize(("data", "error"), HOSTILE_ENTRIES.values(), ids=HOSTILE_ENTRIES)
def test_a_hostile_log_entry_is_refused(data: bytes, error: type[ReceiptsError]) -> None:
    with pytest.raises(error) as raised:
        decode_event(data)
    assert raised.type is error, raised.type
    with pytest.raises(ReceiptsError):
        replay([rules().to_event(NOW).encode(), data])


# --- the property: any sequence of operations conserves money and replays ------------------

VERDICTS = (PROVIDER_FAULT, CHALLENGE_REJECTED)
OPS = st.one_of(
    st.tuples(st.just("deposit"), st.integers(1, 300), st.booleans()),
    st.tuples(st.just("bond"), st.integers(1, 80)),
    st.tuples(st.just("hold"), st.integers(0, 120), st.integers(1, 3 * WINDOW_MS), st.booleans()),
    st.tuples(st.just("claim"), st.integers(0, 7), st.integers(0, 55)),
    st.tuples(st.just("dispute"), st.integers(0, 7), st.sampled_from(["open", *VERDICTS])),
    st.tuples(st.just("replay"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("settle")),
    st.tuples(st.just("wait"), st.integers(1, 2 * WINDOW_MS)),
)


class Run:
    """Apply random operations to a world; refusals are allowed, partial changes are not."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.requests: list[SignedRequest] = []
        self.receipts: list[bytes] = []
        self.claimed: list[bytes] = []  # the receipts whose claim went through: disputable
        self.opened: list[bytes] = []  # the receipts their payer disputed: a ruling is due

    def op(self, op: tuple[Any, ...]) -> None:
        kind, before = op[0], state_of(self.w.store)
        label = f"{kind} {op[2]}" if kind == "dispute" else kind
        try:
            outcome = "done" if self._do(kind, *op[1:]) else "skipped"
        except ReceiptsError as e:
            outcome = f"refused: {type(e).__name__}"
            assert "\n" not in str(e)
            assert state_of(self.w.store) == before, f"{kind} refused ({e}) but changed the ledger"
        event(f"{label} {outcome}")
        audit(self.w.store)

    def _do(self, kind: str, *args: Any) -> bool:
        w = self.w
        if kind in ("deposit", "bond"):
            account = PAYER_ID if kind == "bond" or args[1] else OTHER_PAYER.public_key.key_id
            account = PROVIDER_ID if kind == "bond" else account
            (w.ledger.deposit if kind == "deposit" else w.ledger.bond)(account, "credit", args[0])
            return True
        if kind == "hold":
            payer = PAYER if args[2] else OTHER_PAYER
            self.requests.append(w.held(max_amount=args[0], ttl=args[1], payer=payer))
            return True
        if kind == "claim":
            signed = self.requests[args[0] % len(self.requests)]
            # The provider refuses over-max or expired runs itself: forge, so the ledger decides.
            self.receipts.append(w.forge(signed, fee=args[1], traced=True))
            w.claim(self.receipts[-1])
            self.claimed.append(self.receipts[-1])
            return True
        if kind == "replay" and args[1]:
            w.ledger.hold(self.requests[args[0] % len(self.requests)].to_bytes())
            return True
        if (kind == "replay" and not self.receipts) or (kind == "dispute" and not self.claimed):
            return False
        if kind == "replay":
            w.claim(self.receipts[args[0] % len(self.receipts)])
        elif kind == "dispute" and args[1] == "open":
            receipt = self.claimed[args[0] % len(self.claimed)]
            w.open_dispute(receipt)
            self.opened.append(receipt)
        elif kind == "dispute":  # on the payer's evidence: refused unless the payer opened it
            pool = self.opened if self.opened and args[0] % 4 else self.claimed
            w.rule(pool[args[0] % len(pool)], args[1])
        elif kind == "settle":
            disputed = {r.id for r in w.store.requests("disputed")}
            if disputed & set(w.ledger.settle().released):
                event("settle released a dispute at its deadline")
        else:
            w.clock.advance(args[0])
        return True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, min_size=6, max_size=24))
def test_any_sequence_of_operations_conserves_money_and_replays(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    w = World(tmp_path_factory.mktemp("prop") / "ledger.db", slash_amount=25)
    w.fund(deposit=200, bond=30)
    run = Run(w)
    run.requests += [w.held(max_amount=50), w.held(max_amount=20, ttl=WINDOW_MS)]
    run.op(("claim", 0, FEE))  # so a dispute, with evidence or a ruling, has a claim from the start
    for op in ops:
        run.op(op)
    n = w.store.size()
    assert state_of(replay(w.store.entries(0, n))) == state_of(w.store)
    checked = audit(w.store)
    assert sum(checked.requests.values()) == len(w.store.requests())
    w.ledger.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE requests SET window_ends = window_ends + 10000000 WHERE state = 'held'",
        "UPDATE requests SET expires_at = expires_at + 1 WHERE state = 'held'",
        "UPDATE requests SET payer = zeroblob(32) WHERE state = 'held'",
    ],
    ids=["deadline_moved", "expiry_moved", "payer_swapped"],
)
def test_a_moved_column_passes_audit_but_not_replay(world: World, tmp_path: Path, sql: str) -> None:
    """Deadlines, expiries and parties decide payments: replay must see them changed."""
    world.fund()
    signed = world.held(max_amount=50)
    if "window_ends" in sql:  # give the held row a deadline to move: claim it
        world.claim(world.issue(signed))
        sql = sql.replace("state = 'held'", "state = 'claimed'")
    copy = _copy(world, tmp_path)
    _raw(copy, sql)
    store = SqliteStore.open_file(copy)
    assert state_of(replay(store.entries(0, store.size()))) != state_of(store)
    store.close()


def test_a_dispute_takes_evidence_or_a_ruling_not_both(world: World) -> None:
    world.fund()
    _, receipt = world.claimed(traced=True)
    both = lambda: world.ledger.dispute(  # noqa: E731
        receipt, world.ruling(receipt, PROVIDER_FAULT), evidence=world.evidence(receipt)
    )
    refused(world.store, InputError, both, "not both|or the ruling")


@pytest.mark.parametrize("kind", ["deposit", "bond"])
def test_a_retried_deposit_with_its_reference_is_refused_and_changes_nothing(
    world: World, kind: str
) -> None:
    """A client that crashed after the commit retries with the same payment id: not paid twice."""
    put = world.ledger.deposit if kind == "deposit" else world.ledger.bond
    before = world.store.balance(PAYER_ID, "credit", kind)
    put(PAYER_ID, "credit", 40, reference=b"payment-1")
    refused(world.store, ReplayError, lambda: put(PAYER_ID, "credit", 40, reference=b"payment-1"),
            "already applied")  # fmt: skip
    put(PAYER_ID, "credit", 40, reference=b"payment-2")
    assert world.store.balance(PAYER_ID, "credit", kind) == before + 80
    assert state_of(replay(world.store.entries(0, world.store.size()))) == state_of(world.store)


def test_group_commits_apply_each_item_or_return_its_error(world: World) -> None:
    """hold_many / claim_many: one durable commit, each item all-or-nothing, errors in place."""
    world.fund()
    share = world.store.balance(PAYER_ID, "credit", "deposit") // 2 - 1
    good = [world.request(max_amount=share) for _ in range(2)]
    too_big = world.request(max_amount=share)  # the deposit covers two holds, not three
    held = world.ledger.hold_many(
        [good[0].to_bytes(), good[0].to_bytes(), good[1].to_bytes(), too_big.to_bytes(), b"x"]
    )
    assert [type(r).__name__ for r in held] == [
        "SignedRequest", "ReplayError", "SignedRequest", "OverdraftError", "MalformedError"
    ]  # fmt: skip
    assert world.store.request(too_big.id) is None
    receipts = [world.issue(good[0]), world.issue(good[1])]
    over = world.forge(good[1], fee=share + 1)  # over the request's maximum
    claimed = world.ledger.claim_many([receipts[0], receipts[0], over, receipts[1]], model=mlp())
    assert [type(r).__name__ for r in claimed] == [
        "Claimed", "ReplayError", "BindingError", "Claimed"
    ]  # fmt: skip
    kinds = [e.kind for _, e in world.ledger.history()]
    assert kinds.count("hold") == 2 and kinds.count("claim") == 2
    audit(world.store)
    assert state_of(replay(world.store.entries(0, world.store.size()))) == state_of(world.store)


def test_a_group_commit_without_the_model_refuses_every_claim(world: World) -> None:
    world.fund()
    signed = world.held()
    before = state_of(world.store)
    results = world.ledger.claim_many([world.issue(signed)])
    assert isinstance(results[0], PolicyError)
    assert state_of(world.store) == before


def test_only_the_payers_signed_notice_opens_a_dispute(world: World) -> None:
    """A provider holding the payer's signed transcript files a bundle under the payer's name
    first: refused without the payer's notice, so the payer's own dispute and ruling stand."""
    world.fund()
    _, receipt = world.claimed(traced=True)
    real = world.evidence(receipt)
    sham = replace(real, claim=real.opening.node.leaf, raw=None, opening_wire=None)
    assert sham.digest != real.digest and sham.challenger == real.challenger
    by_provider = sign_notice(provider_key(), ledger=world.ledger.rules.origin,
                              receipt=rid(receipt), evidence=sham.digest)  # fmt: skip
    cases = [
        (PolicyError, "signed notice", sham, None),
        (BindingError, "not signed by the payer", sham, by_provider),
        (BindingError, "another ledger, receipt or evidence", sham, world.notice(receipt)),
        (
            BindingError,
            "another ledger, receipt or evidence",
            real,
            sign_notice(
                PAYER, ledger="example.com/other", receipt=rid(receipt), evidence=real.digest
            ),
        ),
    ]
    for error, match, bundle, notice in cases:
        refused(
            world.store,
            error,
            lambda b=bundle, n=notice: world.ledger.dispute(receipt, evidence=b, notice=n),
            match,
        )
    assert world.open_dispute(receipt).outcome == "open"  # the payer's own still opens
    resolved = world.ledger.dispute(receipt, world.ruling(receipt, PROVIDER_FAULT))
    assert resolved.outcome == "refunded"


def test_sqlites_own_integer_overflow_is_a_limit_error() -> None:
    store = SqliteStore.create(":memory:")
    with pytest.raises(LimitError, match="integer overflow"):
        store._db.execute(f"SELECT sum(v) FROM (SELECT {2**63 - 1} AS v UNION ALL SELECT 1)")
