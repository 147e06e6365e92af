"""Where a settled request's time goes: per operation, per part, and a profile.

Three breakdowns of the settlement subject (``bench/settle_cases.py``):

* operations: each ``Ledger.hold``, ``Ledger.claim`` and ``Ledger.settle`` timed on its own
  (medians over blocks of requests), on a ledger with synchronous=FULL and, block by block in
  turn, on one with synchronous=NORMAL (in WAL mode a NORMAL commit is not fsynced): the
  difference is what durability costs;
* parts: the library calls a hold and a claim make, each alone on the same data, with the
  floors of the machine (an fsync, a bare SQLite commit, one Ed25519 verification);
* profile: cProfile over one block on a FULL ledger, every profiled second put in one of a
  few disjoint buckets (commit, log append, other SQL, verifier, request signature, ...).
  The profiler slows Python code more than SQLite and OpenSSL, so read it as shares.

    found = settlement(work, folder, rounds)
"""

from __future__ import annotations

import cProfile
import itertools
import os
import sqlite3
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from types import CodeType

import receipts
from bench.breakdowns import FLOOR, Breakdown, Step, breakdown_of
from bench.cases import raw_verify
from bench.harness import Call
from bench.settle_cases import LEDGER_MS, SETTLE_MS, Workload, open_ledger
from receipts import Envelope, Receipt
from receipts.events import Claim, Hold
from receipts.request import read_request, read_stored_request
from receipts.store import SqliteStore

PACKAGE = Path(receipts.__file__).resolve().parent


def settlement(work: Workload, folder: Path, rounds: int) -> list[Breakdown]:
    folder.mkdir(parents=True, exist_ok=True)
    operations = _operations(work, folder, rounds)
    return [operations, _parts(work, folder, rounds), _profile(work, folder, operations)]


# -- operations -----------------------------------------------------------------------------


def _operations(work: Workload, folder: Path, blocks: int) -> Breakdown:
    """Each operation timed alone; FULL and NORMAL ledgers take turns block by block."""
    ledgers = {s: open_ledger(folder / f"ops-{s}.db", work, s) for s in ("FULL", "NORMAL")}
    times: dict[str, list[float]] = defaultdict(list)
    clock = time.perf_counter
    try:
        for block in itertools.islice(work.blocks(), max(blocks, 2)):
            for sync, ledger in ledgers.items():
                for item in block:
                    start = clock()
                    ledger.hold(item.request)
                    held = clock()
                    ledger.claim(item.receipt, model=work.model)
                    times[f"claim {sync}"].append(clock() - held)
                    times[f"hold {sync}"].append(held - start)
                start = clock()
                ledger.settle()
                times[f"settle {sync}"].append((clock() - start) / len(block))
    finally:
        for ledger in ledgers.values():
            ledger.close()
    median = {k: statistics.median(v) for k, v in times.items()}

    def per_request(sync: str) -> float:
        return sum(median[f"{op} {sync}"] for op in ("hold", "claim", "settle"))

    steps = [
        ("hold + claim + settle share, FULL (sum of the medians below)", per_request("FULL")),
        ("  Ledger.hold, FULL", median["hold FULL"]),
        ("  Ledger.claim(model=...), FULL", median["claim FULL"]),
        (f"  Ledger.settle, per claim ({work.block} a transaction), FULL", median["settle FULL"]),
        ("hold + claim + settle share, NORMAL (commits not fsynced)", per_request("NORMAL")),
        ("  Ledger.hold, NORMAL", median["hold NORMAL"]),
        ("  Ledger.claim(model=...), NORMAL", median["claim NORMAL"]),
        ("  Ledger.settle, per claim, NORMAL", median["settle NORMAL"]),
    ]
    n = len(times["hold FULL"])
    return Breakdown(
        name="settle: operations, per request",
        note=f"median of {n} requests per row, FULL and NORMAL ledgers in turn by block of "
        f"{work.block}; the FULL - NORMAL difference is the fsyncs",
        steps=tuple(Step(step=s, seconds=t) for s, t in steps),
    )


# -- parts ----------------------------------------------------------------------------------


def _commit(db: sqlite3.Connection, row: bytes) -> Call:
    """One bare INSERT + COMMIT a call, as the baseline makes them."""
    keys = itertools.count()

    def call() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?)", (next(keys), row))
        db.execute("COMMIT")

    return call


def _bare(path: Path, sync: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {sync}")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
    return db


def _fsync(path: Path, stack: ExitStack) -> Call:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    block = os.urandom(4096)
    offsets = itertools.cycle(range(0, 64 * 4096, 4096))

    def call() -> None:
        os.pwrite(fd, block, next(offsets))
        os.fsync(fd)

    return call


def _parts(work: Workload, folder: Path, rounds: int) -> Breakdown:
    item = work.items[0]
    with ExitStack() as stack:
        ledger = open_ledger(folder / "parts.db", work)
        stack.callback(ledger.close)
        signed = read_request(item.request)
        hold = Hold(at=LEDGER_MS, request=signed)
        claim = Claim(at=LEDGER_MS, request=signed.id, receipt=item.receipt, window_ends=SETTLE_MS)
        entry = claim.encode()
        store = SqliteStore.create(folder / "append.db")
        stack.callback(store.close)
        stack.enter_context(store.transaction())  # appends accumulate uncommitted
        full, normal = (
            _bare(folder / "bare-full.db", "FULL"),
            _bare(folder / "bare-nm.db", "NORMAL"),
        )
        stack.callback(full.close)
        stack.callback(normal.close)
        verify, _ = raw_verify(signed.envelope)
        calls: list[tuple[str, Call]] = [
            (
                "read_request: decode + payer's Ed25519 (hold)",
                lambda: read_request(item.request),
            ),
            (
                "ledger.verifier.check(receipt, model=...): claim c1",
                lambda: ledger.verifier.check(item.receipt, model=work.model),
            ),
            (
                "read_stored_request: decode only (claim c5, the stored request)",
                lambda: read_stored_request(item.request),
            ),
            (
                "Envelope.from_bytes + Receipt.decode (a claim entry decoded from the log)",
                lambda: Receipt.decode(Envelope.from_bytes(item.receipt).payload),
            ),
            ("Hold.encode + Claim.encode (log entries)", lambda: (hold.encode(), claim.encode())),
            (f"SqliteStore.append, {len(entry)} B entry, uncommitted", lambda: store.append(entry)),
            (FLOOR + f"bare INSERT {len(entry)} B + COMMIT, FULL", _commit(full, entry)),
            (FLOOR + f"bare INSERT {len(entry)} B + COMMIT, NORMAL", _commit(normal, entry)),
            (
                FLOOR + "os.pwrite 4 KiB + os.fsync, same folder",
                _fsync(folder / "fsync.bin", stack),
            ),
            (FLOOR + "Ed25519PublicKey.verify, one signature", verify),
        ]
        return breakdown_of(
            "settle: parts of a hold and a claim",
            f"each alone on the same request; receipt {len(item.receipt)} B, request "
            f"{len(item.request)} B; rows overlap",
            calls,
            rounds=rounds,
            block=0.02,
        )


# -- profile --------------------------------------------------------------------------------


def _name(code: CodeType | str) -> str:
    """``module.Qualified.name`` for the library's functions, ``sqlite3`` for SQLite's methods,
    and ``""`` for anything else."""
    if isinstance(code, str):
        return "sqlite3" if "sqlite3." in code else ""
    path = Path(code.co_filename)
    return f"{path.stem}.{code.co_qualname}" if path.parent == PACKAGE else ""


class _Profile:
    """cProfile's entries by library name, with the time of calls along one edge."""

    def __init__(self, profile: cProfile.Profile) -> None:
        self.entries = profile.getstats()
        self.total = sum(e.inlinetime for e in self.entries)
        self.calls = sum(e.callcount for e in self.entries)
        self.ed25519 = sum(
            e.callcount
            for e in self.entries
            if isinstance(e.code, str) and "verify' of" in e.code and "Ed25519PublicKey" in e.code
        )

    def cumulative(self, name: str) -> float:
        return sum(e.totaltime for e in self.entries if _name(e.code) == name)

    def own(self, name: str) -> float:
        return sum(e.inlinetime for e in self.entries if _name(e.code) == name)

    def edge(self, callers: set[str], callees: set[str]) -> float:
        """Time in ``callees`` when called directly from ``callers``."""
        return sum(
            sub.totaltime
            for e in self.entries
            if _name(e.code) in callers
            for sub in e.calls
            if _name(sub.code) in callees
        )


def _profile(work: Workload, folder: Path, operations: Breakdown) -> Breakdown:
    ledger = open_ledger(folder / "profile.db", work)
    block = next(work.blocks())
    profile = cProfile.Profile()
    profile.enable()
    try:
        for item in block:
            ledger.hold(item.request)
            ledger.claim(item.receipt, model=work.model)
        ledger.settle()
    finally:
        profile.disable()
        ledger.close()
    p = _Profile(profile)
    sql = {"sqlite3"}
    commit = p.edge({"store.SqliteStore.transaction"}, sql)
    append = p.cumulative("store.SqliteStore.append")
    in_append = p.edge(
        {"store.SqliteStore.append", "store.SqliteStore.node", "store.SqliteStore.size"}, sql
    )
    other_sql = p.own("sqlite3") - commit - in_append
    verifier = p.cumulative("verifier.Verifier.check")
    request = p.cumulative("request.read_request") + p.cumulative("request.read_stored_request")
    # Claim.apply's own work beyond its row update (the receipt id from the envelope).
    reapply = p.cumulative("events.Claim.apply") - p.edge(
        {"events.Claim.apply"}, {"store.SqliteStore.claim_request"}
    )
    encode = p.edge({"ledger._record"}, {"events._Base.encode"})
    parts = [
        ("BEGIN / COMMIT (the fsync waits in COMMIT)", commit),
        ("log append: SqliteStore.append (its SQL + leaf/node hashing)", append),
        ("other SQL: state reads and writes (rows, balances, nonce, due)", other_sql),
        ("Verifier.check (claim c1: signature, digests, meter)", verifier),
        ("read_request (hold) + read_stored_request (claim c5)", request),
        ("Claim.apply beyond its row update (receipt id from the envelope)", reapply),
        ("event encoding for the log (_record)", encode),
    ]
    rest = p.total - sum(t for _, t in parts)
    n = len(block)
    unprofiled = operations.steps[0].seconds
    steps = [
        (f"total under the profiler (without: {unprofiled * 1e6:.0f} us)", p.total),
        *((f"  {label}", t) for label, t in parts),
        ("  rest: ledger logic, rows, reports, Python glue", rest),
    ]
    return Breakdown(
        name="settle: profile of hold + claim + settle, FULL, per request",
        note=f"cProfile over {n} requests; buckets disjoint, they add up to the total; the "
        f"profiler slows Python more than SQLite and OpenSSL; per request {p.calls / n:,.0f} "
        f"function calls, {p.ed25519 / n:g} Ed25519 verifications",
        steps=tuple(Step(step=s, seconds=t / n) for s, t in steps),
    )
