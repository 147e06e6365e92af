"""The settlement ledger: escrow for requests, claims judged by the verifier, releases, refunds.

Settlement layer, on top of the verifier (``receipts.verifier``), the store (``receipts.store``)
and the log (``receipts.tlog``). A request's life:

    held -> claimed (challenge window open) -> released
      |        '-> disputed -> released (challenge rejected, or no ruling by the deadline)
      |                     '-> refunded + bond slashed (provider fault)
      '-> refunded (expired unclaimed)

Each operation checks its input first (signatures, verifier rungs: no lock held), then, inside
one write transaction, re-reads the state it depends on, turns the change into events
(``receipts.events``), applies them and appends them to the log. A refused operation raises a
``SettlementError`` kin (or the verifier's typed error) and changes nothing.

Claim procedure, numbered once (the same names appear in errors and docs/settlement.md):
  (c1) rungs    the verifier passes the rungs the ledger requires, including the meter
  (c2) request  the receipt names a request this ledger holds
  (c3) state    the request is held (a second receipt, or the same one again, is refused)
  (c4) expiry   the claim arrives before the request expires
  (c5) binding  model, inputs, provider, asset and amount are what the payer authorized

Holding a request: (h1) the payer's signature, (h2) the request names this ledger, (h3) a
known asset and a positive amount; then, under the lock, its id and nonce are new, it has not
expired, and the deposit covers it.

Opening a dispute (with an evidence bundle from ``receipts dispute``):
  (d1) receipt  the bundle disputes this receipt, which commits to a trace
  (d2) bisection its transcript is chained, signed by its challenger, consistent with the root
  (d3) payer    the challenger is the payer, who also signed a notice naming the ledger,
                 the receipt and this bundle (``receipts.notice``)
Settling it: (d4) a ruling by one of the referees, on this receipt, on the opened evidence.

    ledger = Ledger.create(Path("ledger.db"), LedgerRules(origin="example.com/ledger"))
    ledger.deposit(payer.key_id, "credit", 1000); ledger.hold(request_bytes)
    ledger.claim(receipt_bytes, model=model); ledger.settle()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from receipts.batch import MAX_BATCH_BYTES, batch_digest, make_batch
from receipts.digests import Digest, Value
from receipts.dispute import check_transcript
from receipts.effects import Clock, SystemClock
from receipts.envelope import Envelope
from receipts.errors import (
    BindingError,
    ExpiredError,
    InputError,
    LimitError,
    MalformedError,
    PolicyError,
    ReceiptsError,
    ReplayError,
    SignatureError,
    StateError,
    UnknownAssetError,
)
from receipts.events import (
    MAX_AMOUNT,
    MAX_ENTRY_BYTES,
    AnyEvent,
    BatchMade,
    Bond,
    Claim,
    Deposit,
    Dispute,
    Hold,
    Open,
    Refund,
    Release,
    Slash,
    decode_event,
    decode_key,
    encode_key,
)
from receipts.evidence import Evidence
from receipts.files import StorageError
from receipts.keys import PublicKey
from receipts.model import LoadedModel
from receipts.notice import read_notice
from receipts.receipt import Receipt, receipt_id
from receipts.referee import CHALLENGE_REJECTED, PROVIDER_FAULT, read_ruling
from receipts.report import Policy, Report, Status
from receipts.request import SignedRequest, check_binding, read_request, read_stored_request
from receipts.runtime import OrtRunner, RunnerFactory
from receipts.store import RequestRow, SqliteStore, Store
from receipts.tlog import Log
from receipts.trace import TraceReader
from receipts.verifier import Verifier

A = TypeVar("A")
R = TypeVar("R")
DAY_MS = 24 * 3600 * 1000
SETTLE_CHUNK = 256  # changes per settle transaction: one durable commit covers a chunk
TensorMap = Mapping[str, Value]

# The rungs a ledger may require of claims. The tee rung is not one yet: its policy (pinned roots,
# PCRs) is not part of the ledger's rules in entry 0.
LEDGER_RUNGS = ("signature", "digests", "reexec", "spot-check")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRules:
    """What a ledger accepts; fixed when it is created and recorded as the log's entry 0."""

    origin: str
    assets: tuple[str, ...] = ("credit",)
    window_ms: int = DAY_MS
    slash_amount: int = 0
    rungs: tuple[str, ...] = ("signature", "digests")
    referees: tuple[PublicKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or len(self.origin) > 256 or not self.origin.isprintable():
            raise MalformedError("a log origin is 1..256 printable characters")
        if " " in self.origin or "+" in self.origin:
            raise MalformedError("a log origin holds no spaces or '+' (it names the log key)")
        if not {"signature", "digests"} <= set(self.rungs) or not set(self.rungs) <= set(
            LEDGER_RUNGS
        ):
            raise MalformedError(
                "ledger rungs must include signature and digests, from " + ", ".join(LEDGER_RUNGS)
            )
        for asset in self.assets:
            if not asset or len(asset) > 64 or not asset.isprintable():
                raise MalformedError("asset must be 1..64 printable characters")

    def to_event(self, at: int) -> Open:
        return Open(
            at=at,
            origin=self.origin,
            assets=self.assets,
            window_ms=self.window_ms,
            slash_amount=self.slash_amount,
            rungs=self.rungs,
            referees=tuple(encode_key(k) for k in self.referees),
        )

    @classmethod
    def from_event(cls, event: Open) -> LedgerRules:
        return cls(
            origin=event.origin,
            assets=event.assets,
            window_ms=event.window_ms,
            slash_amount=event.slash_amount,
            rungs=event.rungs,
            referees=tuple(decode_key(k) for k in event.referees),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    request: Digest
    receipt: Digest
    amount: int
    window_ends: int
    report: Report


@dataclass(frozen=True, slots=True, kw_only=True)
class Disputed:
    request: Digest
    outcome: str  # "open", "released" or "refunded"
    slashed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    released: list[Digest] = field(default_factory=list)
    refunded: list[Digest] = field(default_factory=list)


class Ledger:
    """One ledger file: the operations of the settlement flow, each atomic and logged."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        runner_factory: RunnerFactory = OrtRunner,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        opened = store.meta("open")
        if opened is None:
            raise StateError("the ledger was never opened")
        event = decode_event(opened)
        assert isinstance(event, Open)
        self.rules = LedgerRules.from_event(event)
        self.log = Log(store, self.rules.origin)
        policy = Policy(required=self.rules.rungs, max_age_ms=None)
        self.verifier = Verifier(policy, clock=self.clock, runner_factory=runner_factory)

    @classmethod
    def create(
        cls,
        path: Path | str,
        rules: LedgerRules,
        *,
        clock: Clock | None = None,
        synchronous: str = "FULL",
    ) -> Ledger:
        opening = rules.to_event((clock or SystemClock()).now_ms())
        # Entry 0 must read back (every ledger open decodes it) within the log's limits on
        # size and counts: refused here, before a file exists that could never be opened.
        decode_event(opening.encode())

        def setup(store: SqliteStore) -> None:
            _record(store, [opening])

        store = SqliteStore.create(path, synchronous=synchronous, setup=setup)
        return cls(store, clock=clock)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        clock: Clock | None = None,
        synchronous: str = "FULL",
        runner_factory: RunnerFactory = OrtRunner,
    ) -> Ledger:
        store = SqliteStore.open_file(path, synchronous=synchronous)
        return cls(store, clock=clock, runner_factory=runner_factory)

    # -- money in ---------------------------------------------------------------------------

    def deposit(
        self, account: bytes, asset: str, amount: int, *, reference: bytes | None = None
    ) -> int:
        """Credit a payer's deposit; returns the log index of the entry. ``reference`` (the
        depositor's payment id) makes a retry after a crash safe: it applies at most once."""
        return self._money(Deposit, account, asset, amount, reference)

    def bond(
        self, account: bytes, asset: str, amount: int, *, reference: bytes | None = None
    ) -> int:
        """Lock a provider's bond, slashable on a proven fault; returns the log index."""
        return self._money(Bond, account, asset, amount, reference)

    def _money(
        self,
        kind: type[Deposit],
        account: bytes,
        asset: str,
        amount: int,
        reference: bytes | None,
    ) -> int:
        self._check_asset(asset)
        if not 0 < amount <= MAX_AMOUNT:
            raise LimitError(f"amount must be in [1, 2^63-1], got {amount}")
        event = kind(
            at=self.clock.now_ms(),
            account=account,
            asset=asset,
            amount=amount,
            reference=reference,
        )
        with self.store.transaction():
            return _record(self.store, [event])

    # -- requests ---------------------------------------------------------------------------

    def hold(self, data: bytes) -> SignedRequest:
        """Authorize a signed request and move its maximum from the payer's deposit to escrow."""
        signed = self._authorize(data)  # signature checked before any lock is taken
        with self.store.transaction():
            self._hold_locked(signed)
        return signed

    def hold_many(self, requests: Sequence[bytes]) -> list[SignedRequest | ReceiptsError]:
        """``hold`` for many requests in one durable commit (group commit): each is still
        all-or-nothing (a savepoint), and a refused one is returned as its error in place of
        its result while the others go through. Nothing is durable before the commit."""
        checked = [_attempt(self._authorize, data) for data in requests]
        with self.store.transaction():
            return [
                _attempt(self._hold_one, signed) if isinstance(signed, SignedRequest) else signed
                for signed in checked
            ]

    def _authorize(self, data: bytes) -> SignedRequest:
        """(h1) the payer's signature; (h2) the request names this ledger, so the same request
        cannot be held (and paid) on another; (h3) asset and a positive amount in range."""
        signed = read_request(data)
        r = signed.request
        if r.ledger != self.rules.origin:
            named = "no ledger" if r.ledger is None else f"ledger {r.ledger!r}"
            raise BindingError(f"the request names {named}, not this one ({self.rules.origin!r})")
        self._check_asset(r.asset)
        if not 0 < r.max_amount <= MAX_AMOUNT:
            raise LimitError("a held request authorizes an amount in [1, 2^63-1]")
        return signed

    def _hold_one(self, signed: SignedRequest) -> SignedRequest:
        with self.store.transaction():  # a savepoint inside hold_many's transaction
            self._hold_locked(signed)
        return signed

    def _hold_locked(self, signed: SignedRequest) -> None:
        r = signed.request
        if self.store.request(signed.id) is not None:
            raise ReplayError(f"request {signed.id} is already held")
        if self.store.nonce_used(r.payer, r.nonce):
            raise ReplayError(f"the payer already used nonce {r.nonce.hex()}")
        now = self.clock.now_ms()
        if now >= r.expires_at:
            raise ExpiredError(f"request {signed.id} expired at {r.expires_at} (now {now})")
        _record(self.store, [Hold(at=now, request=signed)])

    def claim(
        self,
        data: bytes,
        *,
        model: LoadedModel | None = None,
        inputs: TensorMap | None = None,
        outputs: TensorMap | None = None,
        trace: TraceReader | None = None,
    ) -> Claimed:
        """Accept a provider's receipt for a held request (steps c1-c5); opens the window.
        ``trace`` is the provider's trace file, for a ledger that requires the spot check."""
        report = self._check_claim(data, model, inputs, outputs, trace)
        with self.store.transaction():
            return self._claim_locked(data, report)

    def claim_many(
        self, receipts: Sequence[bytes], *, model: LoadedModel | None = None
    ) -> list[Claimed | ReceiptsError]:
        """``claim`` for many receipts of one model in one durable commit (group commit): the
        verifier runs on each before the lock; each claim is all-or-nothing, and a refused one
        is returned as its error in place of its result."""
        checked = [
            _attempt(lambda d: self._check_claim(d, model, None, None, None), data)
            for data in receipts
        ]
        results: list[Claimed | ReceiptsError] = []
        with self.store.transaction():
            for data, report in zip(receipts, checked, strict=True):
                if isinstance(report, ReceiptsError):
                    results.append(report)
                    continue
                results.append(_attempt(self._claim_one, (data, report)))
        return results

    def _check_claim(
        self,
        data: bytes,
        model: LoadedModel | None,
        inputs: TensorMap | None,
        outputs: TensorMap | None,
        trace: TraceReader | None,
    ) -> Report:
        report = self.verifier.check(data, model=model, inputs=inputs, outputs=outputs, trace=trace)
        _require_rungs(report)  # (c1) rungs
        assert report.receipt is not None
        if report.receipt.request is None:  # (c2) request
            raise BindingError("the receipt is bound to no request")
        return report

    def _claim_one(self, item: tuple[bytes, Report]) -> Claimed:
        with self.store.transaction():  # a savepoint inside claim_many's transaction
            return self._claim_locked(*item)

    def _claim_locked(self, data: bytes, report: Report) -> Claimed:
        receipt, rid = report.receipt, report.receipt_id
        assert receipt is not None and receipt.request is not None and rid is not None
        row = self.store.request(receipt.request)
        if row is None:  # (c2) request
            raise BindingError(f"the receipt names request {receipt.request}, unknown here")
        if row.state != "held":  # (c3) state
            if row.receipt == rid:
                raise ReplayError(f"receipt {rid} was already claimed")
            raise StateError(f"request {row.id} is {row.state}, not held")
        now = self.clock.now_ms()
        if now >= row.expires_at:  # (c4) expiry
            raise ExpiredError(f"request {row.id} expired at {row.expires_at} (now {now})")
        check_binding(self._signed(row), receipt)  # (c5) binding
        ends = now + self.rules.window_ms
        claim = Claim(at=now, request=row.id, receipt=data, window_ends=ends, parsed=receipt)
        _record(self.store, [claim])
        return Claimed(
            request=row.id,
            receipt=rid,
            amount=receipt.meter.amount,
            window_ends=ends,
            report=report,
        )

    def _signed(self, row: RequestRow) -> SignedRequest:
        """The request as the payer signed it, kept beside its row by ``hold`` after
        ``read_request`` verified it: decoded, not verified a second time."""
        return read_stored_request(self.store.signed_request(row.id))

    # -- disputes ---------------------------------------------------------------------------

    def dispute(
        self,
        data: bytes,
        ruling: bytes | None = None,
        *,
        evidence: Evidence | None = None,
        notice: bytes | None = None,
    ) -> Disputed:
        """Open a dispute on a claimed receipt inside its window with the payer's evidence
        bundle and the payer's signed notice naming it (steps d1-d3, ``receipts.notice``), or
        resolve one with a ruling signed by one of the ledger's referees on that evidence (d4).
        An opened dispute without a ruling by its deadline (one challenge window later) is
        released by ``settle``: the burden of a ruling is on the one who disputes."""
        if ruling is not None and evidence is not None:
            raise InputError("give the evidence to open a dispute or the ruling to settle it")
        envelope = Envelope.from_bytes(data)
        rid = receipt_id(envelope.payload)
        if not self.rules.referees:
            # Without a referee no ruling can ever resolve a dispute: refuse to open one.
            raise PolicyError("this ledger trusts no referee, so it cannot take a dispute")
        verdict, judged_evidence = None, None
        if ruling is not None:
            judged = read_ruling(ruling, trusted=self.rules.referees).ruling
            if judged.receipt != rid:
                raise BindingError(f"the ruling is about receipt {judged.receipt}, not {rid}")
            verdict, judged_evidence = judged.verdict, judged.evidence
        elif evidence is not None:
            _check_evidence(evidence, envelope, rid)  # (d1), (d2)
        else:
            raise PolicyError(
                "opening a dispute needs the payer's evidence bundle (`receipts dispute`) "
                "or a referee's ruling"
            )
        with self.store.transaction():
            row = self.store.request_by_receipt(rid)
            if row is None:
                raise StateError(f"receipt {rid} has no claim in this ledger")
            if evidence is not None:  # (d3)
                self._check_payer(row, evidence, rid, notice)
            now = self.clock.now_ms()
            self._check_disputable(row, now, with_ruling=ruling is not None)
            if ruling is not None and judged_evidence != row.evidence:
                raise BindingError("the ruling judged other evidence than the payer's dispute")
            if ruling is None:
                assert evidence is not None
                events: list[AnyEvent] = [
                    Dispute(at=now, request=row.id, evidence=evidence.digest,
                            deadline=now + self.rules.window_ms, notice=notice)
                ]  # fmt: skip
            else:
                events = self._dispute_events(row, now, ruling, verdict)
            _record(self.store, events)
        slashed = sum(e.amount for e in events if isinstance(e, Slash))
        outcome = {None: "open", PROVIDER_FAULT: "refunded", CHALLENGE_REJECTED: "released"}
        return Disputed(request=row.id, outcome=outcome[verdict], slashed=slashed)

    def _check_payer(
        self, row: RequestRow, evidence: Evidence, rid: Digest, notice: bytes | None
    ) -> None:
        """(d3) the payer brought this: the bundle's challenger is the payer, and the payer
        signed a notice naming this ledger, receipt and bundle. Without the notice, a provider
        holding the payer's signed transcript could file a bundle of its own making first."""
        if evidence.challenger.key_id != row.payer:
            raise BindingError("the evidence was made by a key other than the payer's")
        if notice is None:
            raise PolicyError("opening a dispute needs the payer's signed notice")
        signed = read_notice(notice)
        if signed.key.key_id != row.payer:
            raise BindingError("the dispute notice is not signed by the payer")
        named = (signed.notice.ledger, signed.notice.receipt, signed.notice.evidence)
        if named != (self.rules.origin, rid, evidence.digest):
            raise BindingError("the dispute notice names another ledger, receipt or evidence")

    def _check_disputable(self, row: RequestRow, now: int, *, with_ruling: bool) -> None:
        """An opening needs a claim inside its window; a ruling needs the payer's open dispute
        (a ruling on evidence someone else brought, say a sham challenger of the provider's,
        must not settle the payer's claim: ``_check_ruling`` binds it to the payer's evidence)."""
        if with_ruling:
            if row.state != "disputed":
                raise StateError(
                    f"request {row.id} is {row.state}: a ruling settles a dispute the payer "
                    "opened with its evidence"
                )
            return
        if row.state == "disputed":
            raise StateError(f"request {row.id} is already disputed; it awaits a ruling")
        if row.state != "claimed":
            raise StateError(f"request {row.id} is {row.state}; only a claim can be disputed")
        assert row.window_ends is not None
        if now >= row.window_ends:
            raise ExpiredError(f"the challenge window of request {row.id} closed at "
                               f"{row.window_ends} (now {now})")  # fmt: skip

    def _dispute_events(
        self, row: RequestRow, now: int, ruling: bytes | None, verdict: str | None
    ) -> list[AnyEvent]:
        assert row.claimed_by is not None and row.amount is not None
        events: list[AnyEvent] = [Dispute(at=now, request=row.id, ruling=ruling, verdict=verdict)]
        if verdict == CHALLENGE_REJECTED:
            events.append(_release(row, now))
        elif verdict == PROVIDER_FAULT:
            events.append(
                Refund(at=now, request=row.id, payer=row.payer, asset=row.asset,
                       amount=row.hold, reason="provider-fault")
            )  # fmt: skip
            bond = self.store.balance(row.claimed_by, row.asset, "bond")
            slash = min(bond, self.rules.slash_amount)
            if slash:
                events.append(
                    Slash(at=now, request=row.id, provider=row.claimed_by, payer=row.payer,
                          asset=row.asset, amount=slash)
                )  # fmt: skip
        return events

    # -- settlement -------------------------------------------------------------------------

    def settle(self, now: int | None = None, *, chunk: int = SETTLE_CHUNK) -> Settled:
        """Release every claim whose window has closed and refund every held request that
        expired unclaimed, ``chunk`` changes per transaction. Safe to run from several
        processes at once: each chunk is chosen after taking the write lock."""
        if now is not None and now > self.clock.now_ms():
            raise PolicyError(
                f"cannot settle as of {now}, after the ledger's clock ({self.clock.now_ms()}): "
                "it would close challenge windows early"
            )
        settled = Settled()
        while True:
            with self.store.transaction():
                at = self.clock.now_ms() if now is None else now
                due = self.store.due(at, chunk)
                expired = self.store.expired(at, chunk - len(due)) if len(due) < chunk else []
                events: list[AnyEvent] = [_release(row, at) for row in due]
                events += [
                    Refund(at=at, request=row.id, payer=row.payer, asset=row.asset,
                           amount=row.hold, reason="expired")
                    for row in expired
                ]  # fmt: skip
                _record(self.store, events)
            settled.released.extend(row.id for row in due)
            settled.refunded.extend(row.id for row in expired)
            if len(events) < chunk:
                return settled

    # -- batches ----------------------------------------------------------------------------

    def make_batch(self) -> bytes:
        """The batch from the end of the last batch to the newest checkpoint, recorded in the
        log (entry kind ``batch``); returns the batch file's bytes (``recorded_batch`` makes
        them again, byte for byte)."""
        with self.store.transaction():
            stored = dict(self.store.checkpoints())
            if not stored:
                raise InputError("the log has no checkpoint yet (run `receipts log checkpoint`)")
            made = self.store.batches()
            first = made[-1][1] if made else 0
            if first and first not in stored:
                raise StateError(f"the checkpoint at the last batch's end ({first}) is missing")
            batch = make_batch(
                self.store, self.rules.origin, old=stored.get(first), new=stored[max(stored)]
            )
            data = batch.encode()
            if len(data) > MAX_BATCH_BYTES:  # refused before it is recorded
                raise LimitError(f"the batch would be {len(data)} bytes, over {MAX_BATCH_BYTES}; "
                                 "checkpoint and batch more often")  # fmt: skip
            event = BatchMade(
                at=self.clock.now_ms(), first=batch.first, end=batch.end, digest=batch_digest(batch)
            )
            _record(self.store, [event])
        return data

    def recorded_batch(self, first: int) -> bytes:
        """A batch the ledger made before, made again from its checkpoints and entries."""
        made = {a: (b, d) for a, b, d in self.store.batches()}
        if first not in made:
            raise InputError(f"no batch starts at entry {first}")
        end, digest = made[first]
        stored = dict(self.store.checkpoints())
        batch = make_batch(self.store, self.rules.origin, old=stored.get(first), new=stored[end])
        if batch_digest(batch).value != digest:
            raise StateError(f"the batch at entry {first} no longer makes its recorded digest")
        return batch.encode()

    # -- reading ----------------------------------------------------------------------------

    def history(self, lo: int = 0, hi: int | None = None) -> list[tuple[int, AnyEvent]]:
        end = self.store.size() if hi is None else hi
        return [(lo + i, decode_event(e)) for i, e in enumerate(self.store.entries(lo, end))]

    def _check_asset(self, asset: str) -> None:
        if asset not in self.rules.assets:
            raise UnknownAssetError(
                f"the ledger does not hold {asset!r} (it holds {', '.join(self.rules.assets)})"
            )

    def close(self) -> None:
        self.store.close()


def _release(row: RequestRow, at: int) -> Release:
    assert row.claimed_by is not None and row.amount is not None
    return Release(
        at=at,
        request=row.id,
        provider=row.claimed_by,
        payer=row.payer,
        asset=row.asset,
        amount=row.amount,
        remainder=row.hold - row.amount,
    )


def _record(store: Store, events: Sequence[AnyEvent]) -> int:
    """Apply and log ``events`` inside the caller's transaction; the last entry's index."""
    index = -1
    for event in events:
        entry = event.encode()
        if len(entry) > MAX_ENTRY_BYTES:  # every entry must read back (history, audit, batches)
            raise LimitError(f"a {event.kind} entry of {len(entry)} bytes is over the log's "
                             f"limit of {MAX_ENTRY_BYTES}")  # fmt: skip
        event.apply(store)
        index = store.append(entry)
    return index


def _attempt(fn: Callable[[A], R], arg: A) -> R | ReceiptsError:
    """``fn(arg)``, or the library error it raised: one item of a group commit."""
    try:
        return fn(arg)
    except StorageError:
        raise  # the database failed, not the item: the whole group stops (and rolls back)
    except ReceiptsError as e:
        return e


def _check_evidence(evidence: Evidence, envelope: Envelope, rid: Digest) -> None:
    """(d1) the bundle disputes this receipt; (d2) its transcript is a well-formed bisection
    signed by the challenger and chained to the receipt (the referee checks the rest)."""
    if receipt_id(Envelope.from_bytes(evidence.receipt).payload) != rid:
        raise BindingError("the evidence bundle disputes another receipt")
    receipt = Receipt.decode(envelope.payload)
    if envelope.verify_signature(None).key_id != receipt.provider:
        raise SignatureError("the receipt names a provider other than its signer")
    if receipt.trace is None:
        raise BindingError("the receipt commits to no trace, so it cannot be disputed")
    check_transcript(
        evidence.transcript,
        receipt,
        rid,
        challenger=evidence.challenger,
        provider=envelope.signature.public_key,
    )


def _require_rungs(report: Report) -> None:
    """(c1): every required rung passed, and the meter was recomputed (it needs the model)."""
    if any(rung.failures() for rung in report.rungs):
        raise report.first_error()
    # Before "a rung did not run": without the model the digests rung does not run at all, and
    # the reason to give is the one the caller can act on.
    meter = [s for s in report.rung("digests").steps if s.step == "9 meter"]
    if not meter or meter[0].status is not Status.PASSED:
        raise PolicyError("the ledger recomputes the meter before paying: supply the model")
    if not report:
        raise report.first_error()
