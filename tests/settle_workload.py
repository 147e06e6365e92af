"""A settlement workload run as its own process, for the crash and concurrency tests.

Test support beside ``tests/test_settlement_crash.py``, which kills this process with SIGKILL at
random points, restarts it, and checks the ledger file after every restart. It drives the real
ledger (``receipts.ledger``) on a real SQLite file with ``synchronous=FULL``; the signed requests,
receipts, the payers' evidence bundles and the referee's rulings on them come pre-made in a pool
file the test writes (and the evidence files beside it), so an operation takes a few
milliseconds and the kills land at many different points. Three modes:

  run     work through the pool's items in order (fund, hold, claim; for a disputed item the
          payer's dispute with its evidence, then the referee's ruling on that evidence; settle,
          checkpoint) with the clock at T0 + index * step; a restarted run begins two items
          before the last one it recorded as done, so it replays operations, and a replayed
          operation must be refused (ReplayError or StateError) and change nothing.
  settle  release due claims, walking ``now`` through the windows (never past the ledger's
          clock, which stands at ``--stop``) with cycling chunk sizes.
  claim   hold, then claim with this process's own receipt, every item of the pool.

    python -m tests.settle_workload run ledger.db pool.json --journal j.log --progress p.txt
    python -m tests.settle_workload settle ledger.db --start 0 --stop 9 --every 1 --out s.json

With ``--wait-go`` the process loads the pool and model, prints ``loaded``, waits for ``go`` on
stdin (the tests' start barrier; it also hides the start-up), then opens the ledger, prints
``ready`` and works. ``--journal`` makes the store append a line at each transaction's begin,
write, commit and rollback, with the log size and checkpoint count before and after, so a test
can tell where a kill landed and check the change is all there or not at all. ``--stall-at N``
stops before the COMMIT of the Nth transaction that wrote something (prints ``stalled``), for a
kill with a whole transaction uncommitted. Exit codes: 0 done, 3 an exactly-once rule broke
(stderr says which), others an unexpected error (traceback on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receipts.effects import Clock, FixedClock
from receipts.errors import ReplayError, StateError
from receipts.evidence import Evidence
from receipts.keys import PrivateKey
from receipts.ledger import Ledger
from receipts.model import LoadedModel, load_model
from receipts.request import read_request
from receipts.store import SqliteStore

RETRY_BACK = 2  # a restarted run replays this many items it recorded as done
KINDS = {  # what happens to an item after it is funded, in order
    "pay": ("hold", "claim"),  # released by a later settle
    "expire": ("hold",),  # refunded by a later settle
    "rejected": ("hold", "claim", "open", "rule"),  # disputed, then released by a ruling
    "fault": ("hold", "claim", "open", "rule"),  # disputed, then refunded and slashed by a ruling
}


class WorkloadError(Exception):
    """The ledger broke an exactly-once rule: a refused replay changed it, or a hostile
    operation was accepted."""


class Journal:
    """Lines appended with one ``write`` each: a SIGKILL loses none that were written (they are
    in the page cache), and no line is half there."""

    def __init__(self, path: Path | None) -> None:
        self._fd = None if path is None else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def write(self, line: str) -> None:
        if self._fd is not None:
            os.write(self._fd, f"{line}\n".encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class JournaledStore(SqliteStore):
    """``SqliteStore`` journaling each outermost transaction: ``begin S C``, a ``write`` line per
    log entry or checkpoint, then ``committing S C S2 C2`` (the body is done, COMMIT is next) and
    ``commit S2 C2``, or ``rollback S C``; S is the log size and C the checkpoint count."""

    journal = Journal(None)
    stall_at: int | None = None
    _nesting = 0
    _writers = 0

    def counts(self) -> str:
        return f"{self.size()} {len(self.checkpoints())}"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._nesting:  # a savepoint inside the outer transaction
            self._nesting += 1
            try:
                with super().transaction():
                    yield
            finally:
                self._nesting -= 1
            return
        self._nesting = 1
        try:
            with super().transaction():
                before = self.counts()
                self.journal.write(f"begin {before}")
                try:
                    yield
                except BaseException:
                    self.journal.write(f"rollback {before}")
                    raise
                after = self.counts()
                self.journal.write(f"committing {before} {after}")
                self._maybe_stall(before != after)
            self.journal.write(f"commit {after}")
        finally:
            self._nesting = 0

    def _maybe_stall(self, wrote: bool) -> None:
        self._writers += wrote
        if wrote and self._writers == self.stall_at:
            self.journal.write("stall")
            print("stalled", flush=True)
            time.sleep(3600)  # until the test kills this process

    def append(self, entry: bytes) -> int:
        index = super().append(entry)
        self.journal.write(f"write entry {index}")
        return index

    def add_checkpoint(self, size: int, note: bytes) -> None:
        super().add_checkpoint(size, note)
        self.journal.write(f"write checkpoint {size}")


class StepClock:
    """A clock the caller sets: the run sets it from the index of the item it works on."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


def open_ledger(
    path: Path, clock: Clock, journal: Journal | None = None, stall_at: int | None = None
) -> Ledger:
    """The ledger on ``path`` with ``synchronous=FULL``, journaled when ``journal`` is given."""
    if journal is None:
        return Ledger.open(path, clock=clock, synchronous="FULL")
    store = JournaledStore.open_file(path, synchronous="FULL")
    assert isinstance(store, JournaledStore)
    store.journal, store.stall_at = journal, stall_at
    return Ledger(store, clock=clock)


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    kind: str
    request: bytes
    receipt: bytes
    other_receipt: bytes | None  # run: a second receipt, to be refused; claim: process b's
    forged_request: bytes | None  # another request under a used nonce, to be refused
    evidence: Evidence | None  # the payer's, to open the dispute the ruling settles
    notice: bytes | None  # the payer's signed notice opening it
    ruling: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    model: Path
    log_key: Path
    t0: int
    step_ms: int
    end_ms: int
    checkpoint_every: int
    items: tuple[Item, ...]

    @classmethod
    def read(cls, path: Path) -> Pool:
        raw = json.loads(path.read_text())

        def blob(value: str | None) -> bytes | None:
            return None if value is None else bytes.fromhex(value)

        items = tuple(
            Item(
                kind=i["kind"],
                request=bytes.fromhex(i["request"]),
                receipt=bytes.fromhex(i["receipt"]),
                other_receipt=blob(i["other_receipt"]),
                forged_request=blob(i["forged_request"]),
                evidence=None if i["evidence"] is None else Evidence.read(Path(i["evidence"])),
                notice=blob(i["notice"]),
                ruling=blob(i["ruling"]),
            )
            for i in raw["items"]
        )
        fields = ("t0", "step_ms", "end_ms", "checkpoint_every")
        return cls(
            model=Path(raw["model"]),
            log_key=Path(raw["log_key"]),
            items=items,
            **{f: int(raw[f]) for f in fields},
        )


@dataclass
class Worker:
    """Runs operations, each journaled; a refused one must leave the ledger as it was."""

    ledger: Ledger
    journal: Journal
    refused: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)

    def attempt(
        self, name: str, item: int, call: Callable[[], object], *, hostile: bool = False
    ) -> None:
        self.journal.write(f"op {name} {item}")
        store = self.ledger.store
        before = (store.size(), store.checkpoints())
        try:
            call()
        except (ReplayError, StateError) as e:
            if (store.size(), store.checkpoints()) != before:
                raise WorkloadError(
                    f"{name} of item {item} was refused but changed the ledger"
                ) from e
            self.journal.write(f"refused {name} {item} {type(e).__name__}")
            self.refused[name] += 1
            return
        if hostile:
            raise WorkloadError(f"{name} of item {item} was accepted; it must be refused")
        self.journal.write(f"ok {name} {item}")
        self.done[name] += 1


def run(
    ledger: Ledger,
    clock: StepClock,
    pool: Pool,
    model: LoadedModel,
    *,
    progress: Path | None = None,
    journal: Journal | None = None,
) -> Worker:
    """Work through the pool from two items before the last one ``progress`` records."""
    worker = Worker(ledger, journal or Journal(None))
    log_key = PrivateKey.load(pool.log_key)
    start = 0
    if progress is not None and progress.exists():
        start = max(0, int(progress.read_text()) + 1 - RETRY_BACK)
    worker.journal.write(f"start {start}")
    for index in range(start, len(pool.items)):
        clock.ms = pool.t0 + index * pool.step_ms
        _work_item(worker, index, pool.items[index], model)
        worker.attempt("settle", index, ledger.settle)
        if index % pool.checkpoint_every == 0:
            worker.attempt("checkpoint", index, lambda: ledger.log.checkpoint(log_key))
        if progress is not None:
            staged = progress.with_name(progress.name + ".new")
            staged.write_text(str(index))
            staged.replace(progress)
    clock.ms = pool.end_ms  # every window has closed and every request expired
    worker.attempt("settle", len(pool.items), ledger.settle)
    worker.attempt("checkpoint", len(pool.items), lambda: ledger.log.checkpoint(log_key))
    worker.journal.write("done")
    return worker


def _work_item(worker: Worker, index: int, item: Item, model: LoadedModel) -> None:
    ledger = worker.ledger
    signed = read_request(item.request)
    terms = signed.request

    def fund() -> None:
        # A deposit carries nothing a replay could be refused by, so the workload deposits only
        # while the request is not held yet: a deposit that landed before a kill gets used.
        if ledger.store.request(signed.id) is not None:
            return
        if ledger.store.balance(terms.payer, terms.asset, "deposit") < terms.max_amount:
            ledger.deposit(terms.payer, terms.asset, 2 * terms.max_amount)

    steps: dict[str, Callable[[], object]] = {
        "hold": lambda: ledger.hold(item.request),
        "claim": lambda: ledger.claim(item.receipt, model=model),
        "open": lambda: ledger.dispute(
            item.receipt, evidence=_need(item.evidence), notice=item.notice
        ),
        "rule": lambda: ledger.dispute(item.receipt, _need(item.ruling)),
    }
    worker.attempt("fund", index, fund)
    for step in KINDS[item.kind]:
        worker.attempt(step, index, steps[step])
    if item.forged_request is not None:
        forged = item.forged_request
        worker.attempt("hold-reused-nonce", index, lambda: ledger.hold(forged), hostile=True)
    if item.other_receipt is not None:
        other = item.other_receipt
        second = lambda: ledger.claim(other, model=model)  # noqa: E731
        worker.attempt("claim-second-receipt", index, second, hostile=True)


def _need(value: bytes | None) -> bytes:
    assert value is not None, "the pool item lacks a field its kind needs"
    return value


class Lockstep:
    """Two processes keep in step: each publishes the step it has reached and waits for the
    other to reach it, so both try the same change at the same moment. Without it SQLite's
    busy handler (sleeps of 1, 2, 5, 10... ms) lets the process that got ahead keep the lock."""

    def __init__(self, directory: Path | None, role: str) -> None:
        self._fds: tuple[int, int] | None = None
        if directory is not None:
            mine, peer = (directory / f"{r}.step" for r in (role, "b" if role == "a" else "a"))
            self._fds = (
                os.open(mine, os.O_RDWR | os.O_CREAT),
                os.open(peer, os.O_RDWR | os.O_CREAT),
            )

    def reach(self, step: int, timeout: float = 60.0) -> None:
        if self._fds is None:
            return
        mine, peer = self._fds
        os.pwrite(mine, step.to_bytes(8, "big"), 0)
        deadline = time.monotonic() + timeout
        while int.from_bytes(os.pread(peer, 8, 0) or bytes(8), "big") < step:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the other process never reached step {step}")
            time.sleep(0.0002)

    def finish(self) -> None:
        if self._fds is not None:
            os.pwrite(self._fds[0], (2**62).to_bytes(8, "big"), 0)


def settle(
    ledger: Ledger, step: Lockstep, *, start: int, stop: int, every: int, chunks: list[int]
) -> list[str]:
    """Settle as of every ``every`` ms from ``start`` to ``stop`` (the ledger's clock: no later)
    with cycling chunk sizes, in step with the other process, then once more by the clock; the
    ids released."""
    released: list[str] = []
    for n, now in enumerate([*range(start, stop, every), stop]):
        step.reach(n)
        released += [
            d.value.hex() for d in ledger.settle(now, chunk=chunks[n % len(chunks)]).released
        ]
    step.finish()
    released += [d.value.hex() for d in ledger.settle().released]
    return released


def claim(ledger: Ledger, step: Lockstep, pool: Pool, model: LoadedModel, role: str) -> Any:
    """Hold, then claim with this role's receipt, every item, in step with the other process;
    the items this process won."""
    won: dict[str, list[int]] = {"held": [], "claimed": []}
    for index, item in enumerate(pool.items):
        step.reach(2 * index)
        with contextlib.suppress(ReplayError):
            ledger.hold(item.request)
            won["held"].append(index)
        step.reach(2 * index + 1)
        mine = item.receipt if role == "a" else _need(item.other_receipt)
        with contextlib.suppress(StateError):
            ledger.claim(mine, model=model)
            won["claimed"].append(index)
    step.finish()
    return won


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    pool = Pool.read(args.pool) if args.mode != "settle" else None
    model = load_model(pool.model) if pool is not None else None
    if args.wait_go:
        print("loaded", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 0  # the test hung up: it no longer needs this process
    try:
        result = _work(args, pool, model)
    except WorkloadError as e:
        print(f"exactly-once broken: {e}", file=sys.stderr, flush=True)
        return 3
    if args.out is not None:
        args.out.write_text(json.dumps(result))
    return 0


def _work(args: argparse.Namespace, pool: Pool | None, model: LoadedModel | None) -> Any:
    result: Any
    if args.mode == "settle":
        ledger = open_ledger(args.db, FixedClock(args.stop))
        print("ready", flush=True)
        chunks = [int(c) for c in args.chunks.split(",")]
        step = Lockstep(args.lockstep, args.role)
        result = settle(
            ledger, step, start=args.start, stop=args.stop, every=args.every, chunks=chunks
        )
    elif args.mode == "claim":
        assert pool is not None and model is not None
        ledger = open_ledger(args.db, FixedClock(args.now))
        print("ready", flush=True)
        result = claim(ledger, Lockstep(args.lockstep, args.role), pool, model, args.role)
    else:
        assert pool is not None and model is not None
        journal = Journal(args.journal)
        clock = StepClock(pool.t0)
        ledger = open_ledger(args.db, clock, journal, args.stall_at)
        print("ready", flush=True)
        worker = run(ledger, clock, pool, model, progress=args.progress, journal=journal)
        result = {"done": worker.done, "refused": worker.refused}
    ledger.close()
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.settle_workload")
    modes = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("db", type=Path)
    common.add_argument("--out", type=Path, help="write the result here as JSON")
    common.add_argument("--wait-go", action="store_true")
    common.add_argument("--role", choices=("a", "b"), default="a")
    common.add_argument("--lockstep", type=Path, help="a folder the two processes share")
    p = modes.add_parser("run", parents=[common])
    p.add_argument("pool", type=Path)
    p.add_argument("--journal", type=Path)
    p.add_argument("--progress", type=Path)
    p.add_argument("--stall-at", type=int)
    p = modes.add_parser("settle", parents=[common])
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--stop", type=int, required=True)
    p.add_argument("--every", type=int, required=True)
    p.add_argument("--chunks", default="1,7")
    p = modes.add_parser("claim", parents=[common])
    p.add_argument("pool", type=Path)
    p.add_argument("--now", type=int, required=True)
    return parser


if __name__ == "__main__":
    sys.exit(main())
