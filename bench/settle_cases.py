"""The settlement family (issue 4): ledger throughput against bare SQLite, in one run.

* per operation: for each request of a block, ``Ledger.hold(request)`` then
  ``Ledger.claim(receipt, model=model)`` (the verifier's signature and digests rungs, the meter
  recomputed from the model), then one ``Ledger.settle`` that releases the block's claims; a
  WAL file with synchronous=FULL, every hold and every claim its own durable commit. Baseline:
  the same rows (the signed request, the claimed receipt, a release) as bare SQLite INSERTs on
  another file with the same settings and the same commits: one per request row, one per claim
  row, one for the block's releases. Goal: at least 1,000 requests/s on one core (absolute).
* group commit: ``Ledger.hold_many`` and ``Ledger.claim_many`` per block (each item in a
  savepoint of one durable transaction, refusals returned in place), then the settle: three
  durable commits per block. Baseline: the same rows as bare INSERTs, one commit per table.
  Same goal.

The material is made once, outside timing (``workload``): a payer key (seeded), the fixtures'
provider key and MLP, a ``Provider`` on a fixed clock; per request, the payer's signed request
and the provider's receipt for it. Each call of a subject or a baseline takes the next block of
``BLOCK`` requests, so a ledger grows through the run as it would in service; the harness's
times are restated per request (``bench/measures.py``). Checked before timing, on a ledger of
its own: a claim runs the meter step and pays the metered amount, a claim without the model is
refused, a replayed hold or claim is refused, settling releases the claim and moves the money,
and the log holds one entry per event.

    work = workload(blocks=10)
    results = run_measures(settlement_measures(folder, work, stack), plan)
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Case
from bench.measures import Absolute, Measure
from receipts import LoadedModel, PrivateKey, Provider, Status, TensorMapDigest, load_model
from receipts.effects import FixedClock, seeded
from receipts.errors import PolicyError, ReceiptsError, ReplayError
from receipts.ledger import DAY_MS, Ledger, LedgerRules
from receipts.meter import Price
from receipts.request import make_request
from receipts.tensorfiles import load_tensors

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_MLP = FIXTURES / "models" / "mlp.onnx"
FIXTURE_INPUTS = FIXTURES / "inputs" / "mlp.npz"
PROVIDER_KEY = FIXTURES / "keys" / "provider_ed25519.pem"
PRICE = Price(unit_price=3, base_fee=1000, asset="credit")  # the fixtures' price
BLOCK = 200  # requests per call: one settle transaction releases them (SETTLE_CHUNK is 256)
MAX_AMOUNT = 50_000  # what each request allows; the fixtures' MLP meters 24,136
ISSUED_MS = 1_700_000_000_000  # the provider's fixed clock (2023-11-14)
LEDGER_MS = ISSUED_MS + 1_000  # the ledger's: holds and claims a second later
EXPIRES_MS = ISSUED_MS + 3_600_000  # requests expire after an hour
SETTLE_MS = LEDGER_MS + DAY_MS  # every challenge window (a day) has closed
# Rungs: signature, digests (meter). A zero challenge window: each block's settle releases its
# claims at once (settle refuses a time after the ledger's clock); the window's length costs
# nothing per request.
RULES = LedgerRules(origin="bench.example/ledger", window_ms=0)
SYNC = "FULL"


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One request as the payer signed it and the provider's receipt for it."""

    request: bytes
    receipt: bytes
    request_id: bytes
    amount: int  # metered


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Blocks of signed requests and receipts, made once outside timing."""

    model: LoadedModel
    payer: bytes  # key id
    provider: bytes  # key id
    items: tuple[Item, ...]
    block: int

    def blocks(self) -> Iterator[tuple[Item, ...]]:
        for lo in range(0, len(self.items), self.block):
            yield self.items[lo : lo + self.block]

    @property
    def deposit(self) -> int:
        """Enough for every request of the workload to be held at once."""
        return MAX_AMOUNT * len(self.items)


def workload(blocks: int, block: int = BLOCK) -> Workload:
    """``blocks`` x ``block`` requests of the fixtures' MLP, each with its receipt."""
    model = load_model(FIXTURE_MLP)
    inputs = load_tensors(FIXTURE_INPUTS)
    provider_key = PrivateKey.load(PROVIDER_KEY)
    payer = PrivateKey.generate(random_bytes=seeded(b"bench payer"))
    provider = Provider(
        provider_key,
        price=PRICE,
        clock=FixedClock(ISSUED_MS),
        random_bytes=seeded(b"bench receipt nonces"),
    )
    session = provider.session(model)
    inputs_digest = TensorMapDigest.of(inputs).digest
    nonces = seeded(b"bench request nonces")
    items = []
    for _ in range(blocks * block):
        signed = make_request(
            payer,
            models=[model.digest],
            inputs=inputs_digest,
            max_amount=MAX_AMOUNT,
            asset=PRICE.asset,
            provider=provider_key.public_key.key_id,
            expires_at=EXPIRES_MS,
            random_bytes=nonces,
            ledger=RULES.origin,
        )
        issued = session.run(inputs, request=signed)
        items.append(
            Item(
                request=signed.to_bytes(),
                receipt=issued.to_bytes(),
                request_id=signed.id.value,
                amount=issued.receipt.meter.amount,
            )
        )
    return Workload(
        model=model,
        payer=payer.public_key.key_id,
        provider=provider_key.public_key.key_id,
        items=tuple(items),
        block=block,
    )


def open_ledger(path: Path, work: Workload, synchronous: str = SYNC) -> Ledger:
    ledger = Ledger.create(path, RULES, clock=FixedClock(LEDGER_MS), synchronous=synchronous)
    ledger.deposit(work.payer, PRICE.asset, work.deposit)
    return ledger


def _next(blocks: Iterator[tuple[Item, ...]]) -> tuple[Item, ...]:
    try:
        return next(blocks)
    except StopIteration:
        raise RuntimeError(
            "the workload ran out of requests: the plan made more calls than it has blocks "
            "(settlement plans make blocks + 1 calls a side: no warm-up time, no block time)"
        ) from None


class LedgerBlocks:
    """The subject: each call holds and claims the next block of requests, then settles it."""

    def __init__(
        self, path: Path, work: Workload, *, synchronous: str = SYNC, grouped: bool = False
    ) -> None:
        self.ledger = open_ledger(path, work, synchronous)
        self.model = work.model
        self.grouped = grouped
        self._blocks = work.blocks()

    def __call__(self) -> int:
        block = _next(self._blocks)
        ledger, model = self.ledger, self.model
        if self.grouped:
            results = [
                *ledger.hold_many([item.request for item in block]),
                *ledger.claim_many([item.receipt for item in block], model=model),
            ]
            refused = [r for r in results if isinstance(r, ReceiptsError)]
            if refused:
                raise AssertionError(f"the group commit refused {len(refused)}: {refused[0]}")
        else:
            for item in block:
                ledger.hold(item.request)
                ledger.claim(item.receipt, model=model)
        released = ledger.settle().released
        if len(released) != len(block):
            raise AssertionError(f"settle released {len(released)} of {len(block)} claims")
        return len(released)

    def close(self) -> None:
        self.ledger.close()


_BARE_SCHEMA = (
    "CREATE TABLE requests (id BLOB PRIMARY KEY, signed BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE claims (request BLOB PRIMARY KEY, receipt BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE releases (request BLOB PRIMARY KEY, amount INTEGER NOT NULL) WITHOUT ROWID",
)


class BareInserts:
    """The baseline: the block's rows as plain INSERTs, committed as the ledger commits them."""

    def __init__(
        self, path: Path, work: Workload, *, synchronous: str = SYNC, grouped: bool = False
    ) -> None:
        # The store's own connection settings (receipts.store._connect): WAL, the same sync.
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        for statement in _BARE_SCHEMA:
            self.db.execute(statement)
        self.grouped = grouped
        self._blocks = work.blocks()

    def __call__(self) -> int:
        block = _next(self._blocks)
        db = self.db
        if self.grouped:  # one commit for the requests, one for the claims, as the ledger does
            for sql, rows in (
                ("INSERT INTO requests VALUES (?, ?)", [(i.request_id, i.request) for i in block]),
                ("INSERT INTO claims VALUES (?, ?)", [(i.request_id, i.receipt) for i in block]),
            ):
                db.execute("BEGIN IMMEDIATE")
                for row in rows:
                    db.execute(sql, row)
                db.execute("COMMIT")
        else:
            for item in block:
                self._insert("INSERT INTO requests VALUES (?, ?)", (item.request_id, item.request))
                self._insert("INSERT INTO claims VALUES (?, ?)", (item.request_id, item.receipt))
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO releases VALUES (?, ?)", [(i.request_id, i.amount) for i in block]
        )
        db.execute("COMMIT")
        return len(block)

    def _insert(self, sql: str, row: tuple[bytes, bytes]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(sql, row)
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def check_ledger(work: Workload, folder: Path) -> None:
    """One request through a ledger of its own: what the timed calls are assumed to do."""
    item = work.items[0]
    ledger = open_ledger(folder / "check.db", work)
    try:
        ledger.hold(item.request)
        with contextlib.suppress(PolicyError):  # (c1) the meter needs the model
            ledger.claim(item.receipt)
            raise AssertionError("a claim without the model was accepted")
        claimed = ledger.claim(item.receipt, model=work.model)
        steps = {s.step: s.status for rung in claimed.report.rungs for s in rung.steps}
        if steps.get("9 meter") is not Status.PASSED or claimed.amount != item.amount:
            raise AssertionError(f"the claim did not recompute the meter: {steps}")
        replays = (
            lambda: ledger.hold(item.request),
            lambda: ledger.claim(item.receipt, model=work.model),
        )
        for replay in replays:
            with contextlib.suppress(ReplayError):
                replay()
                raise AssertionError("a replayed hold or claim was accepted")
        if ledger.settle().released != [claimed.request]:
            raise AssertionError("settle did not release the claim")
        store, asset = ledger.store, PRICE.asset
        paid = store.balance(work.provider, asset, "earnings")
        left = store.balance(work.payer, asset, "deposit")
        if paid != item.amount or left != work.deposit - item.amount:
            raise AssertionError(f"settled {paid} to the provider, {left} left to the payer")
        kinds = [event.kind for _, event in ledger.history()]
        if kinds != ["open", "deposit", "hold", "claim", "release"]:
            raise AssertionError(f"the log holds {kinds}")
    finally:
        ledger.close()


def settlement_measures(folder: Path, work: Workload, stack: ExitStack) -> list[Measure]:
    """The two settlement rows; their ledgers and files are closed when ``stack`` closes."""
    folder.mkdir(parents=True, exist_ok=True)
    check_ledger(work, folder)
    n = work.block
    sides: list[LedgerBlocks | BareInserts] = [
        BareInserts(folder / "bare.db", work),
        LedgerBlocks(folder / "ledger.db", work),
        BareInserts(folder / "bare-grouped.db", work, grouped=True),
        LedgerBlocks(folder / "ledger-grouped.db", work, grouped=True),
    ]
    for side in sides:
        stack.callback(side.close)
    bare, ledger, bare_grouped, ledger_grouped = sides
    shared = (
        f"each call: the next block of {n} requests ({len(work.items):,} made outside timing: "
        "payer key seeded, fixtures' provider key and MLP x float32[4,16], fixed clock), a "
        f"ledger file and a bare file each growing through the run; times restated per "
        "request; claim = Verifier.check (signature, digests, meter; model given) + c2-c5; WAL "
        f"on a real file in {folder.parent}; "
    )
    per_op = Case(
        name="settle: hold + claim + settle, synchronous=FULL",
        baseline_label=f"bare SQLite INSERTs, {2 * n + 1} commits per {n} requests",
        subject_label="Ledger.hold + Ledger.claim(model=...) each request, Ledger.settle",
        baseline=bare,
        subject=ledger,
        goal=None,
        throughput=True,
        notes=shared + f"{2 * n + 1} durable commits per block on both sides (one per hold, one "
        "per claim, one settle; the baseline: one per request row, one per claim row, one for "
        "the releases); goal: requests/s of the subject, absolute",
    )
    grouped = Case(
        name="settle: group commit, hold_many + claim_many + settle, synchronous=FULL",
        baseline_label="bare SQLite INSERTs, 3 commits per block",
        subject_label="Ledger.hold_many, Ledger.claim_many(model=...), Ledger.settle per block",
        baseline=bare_grouped,
        subject=ledger_grouped,
        goal=None,
        throughput=True,
        notes=shared + "3 durable commits per block on both sides: the holds, the claims (each "
        "item a savepoint: all-or-nothing, refusals returned in place), the settle; goal: "
        "requests/s of the subject, absolute",
    )
    return [
        Measure(case=per_op, per_call=n, goal=Absolute(at_least_per_s=1000.0)),
        Measure(case=grouped, per_call=n, goal=Absolute(at_least_per_s=1000.0)),
    ]
