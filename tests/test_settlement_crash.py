"""Crash safety and concurrency of settlement: real processes on a real SQLite ledger file.

The crash tests run ``tests/settle_workload.py`` in a subprocess, kill it with SIGKILL at seeded
random moments (and, every fifth run, while it stands before the COMMIT of a transaction it has
written), restart it, and after every kill open the file afresh and check:
  money      balances plus holds equal the deposits plus bonds in the log (and the supply)
  once       no request held twice, no (payer, nonce) in two requests, no request claimed,
             released, refunded or slashed twice; closing events match the request states
  states     every request is in one known state, the state replaying the log makes
  log        the tree matches the entries; every checkpoint verifies, has the root of the
             entries at its size, and is consistent with the one before it
  durable    nothing seen before the kill is gone: the old log is a prefix, old checkpoints stay
  atomic     the transaction the kill interrupted is all there or not at all (the workload's
             journal says which transaction it was and what it wrote)
A run that reaches the end must leave exactly the ledger, log bytes included, that one
uninterrupted run leaves: every replayed operation was refused and changed nothing.

The concurrency tests start two processes at one barrier on one file, in lockstep: settling the
same due claims, each claim is released once; holding and claiming the same items with rival
receipts, exactly one process wins each.

    .venv/bin/pytest -s tests/test_settlement_crash.py -m "not slow"   # prints where kills landed
    .venv/bin/python -m tests.settle_workload --help                   # the workload on its own
"""

from __future__ import annotations

import functools
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import pytest

from receipts import codec
from receipts.checkpoint import verify_checkpoint, verify_consistency_proof
from receipts.digests import Digest, TensorMapDigest
from receipts.dispute import dispute_locally
from receipts.effects import FixedClock, seeded
from receipts.envelope import Envelope
from receipts.errors import ReceiptsError, StateError
from receipts.events import AnyEvent, Bond, Claim, Deposit, Dispute, Hold, Refund, Release, Slash
from receipts.evidence import Evidence
from receipts.keys import PrivateKey
from receipts.ledger import Ledger, LedgerRules
from receipts.merkle import leaf_hash, root
from receipts.meter import Price
from receipts.model import LoadedModel
from receipts.notice import sign_notice
from receipts.provider import TRACE_FILE, Provider
from receipts.receipt import receipt_id
from receipts.reconcile import LedgerState, audit, replay, state_of
from receipts.referee import (
    CHALLENGE_REJECTED,
    PROVIDER_FAULT,
    RELAYED,
    RULING_PAYLOAD_TYPE,
    Ruling,
)
from receipts.request import SignedRequest, make_request
from receipts.store import Store
from receipts.tlog import Log
from receipts.trace import TraceReader
from tests import settle_workload
from tests.conftest import FIXTURES, ROOT, fixture_inputs, fixture_key, fixture_model
from tests.settle_workload import Pool, StepClock
from tests.settlekit import LIE_AT

ORIGIN = "example.com/crash-ledger"
T0 = 1_800_000_000_000
STEP_MS = 1000  # the workload's clock moves one step per item
WINDOW_MS = 3 * STEP_MS  # a claim is released three items later
EXPIRY_MS = 5 * STEP_MS  # an unclaimed request is refunded five items later
SLASH, BOND = 50, 10_000
STANDBY = 2  # workload processes started ahead and waiting, so a restart costs no start-up
TIMEOUT = 120.0  # seconds any one process may take
FINAL_STATE = {
    "pay": "released",
    "expire": "refunded",
    "rejected": "released",
    "fault": "refunded",
}
PAYERS = tuple(
    PrivateKey.generate("ed25519", random_bytes=seeded(b"crash-payer-%d" % i)) for i in (0, 1)
)
LOG_KEY = PrivateKey.generate("ed25519", random_bytes=seeded(b"crash-log"))


@functools.cache
def mlp() -> LoadedModel:
    return fixture_model("mlp")


def create_ledger(path: Path, *, window_ms: int = WINDOW_MS, synchronous: str = "FULL") -> Ledger:
    """A new ledger file holding the provider's bond: where every run starts from."""
    rules = LedgerRules(
        origin=ORIGIN,
        window_ms=window_ms,
        slash_amount=SLASH,
        referees=(fixture_key("referee_ed25519").public_key,),
    )
    ledger = Ledger.create(path, rules, clock=FixedClock(T0 - 1), synchronous=synchronous)
    ledger.bond(fixture_key().public_key.key_id, "credit", BOND)
    return ledger


# -- the pool of signed requests, receipts and rulings --------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolFile:
    path: Path
    pool: Pool
    request_ids: tuple[Digest, ...]
    receipt_ids: tuple[Digest, ...]
    other_ids: tuple[Digest | None, ...]


def crash_kind(index: int) -> str:
    return {3: "expire", 6: "rejected", 9: "fault"}.get(index % 10, "pay")


class Issuer:
    """Signs requests as the seeded payers and issues the provider's receipts for them (two
    nonce streams: the provider's receipt and a rival one for the same request)."""

    def __init__(self) -> None:
        self.model, self.inputs = mlp(), fixture_inputs("mlp")
        self.clock = StepClock(T0)
        price = Price(unit_price=1, base_fee=3)
        self.sessions = [
            Provider(fixture_key(), price=price, clock=self.clock, random_bytes=seeded(s)).session(
                self.model
            )
            for s in (b"crash-receipts", b"crash-receipts-rival")
        ]
        self.digest = TensorMapDigest.of(self.model.check_inputs(self.inputs)).digest
        self.nonces = seeded(b"crash-nonces")

    def request(
        self, payer: PrivateKey, at: int, max_amount: int, nonce: bytes | None = None
    ) -> SignedRequest:
        return make_request(
            payer,
            models=[self.model.digest],
            inputs=self.digest,
            max_amount=max_amount,
            asset="credit",
            provider=fixture_key().public_key.key_id if max_amount % 1000 == 0 else None,
            expires_at=at + EXPIRY_MS,
            random_bytes=self.nonces if nonce is None else lambda _n: nonce,
            ledger=ORIGIN,
        )

    def receipt(self, signed: SignedRequest, at: int, *, rival: bool = False) -> bytes:
        self.clock.ms = at - 1
        return self.sessions[rival].run(self.inputs, request=signed).to_bytes()

    def disputed(
        self, signed: SignedRequest, at: int, payer: PrivateKey, folder: Path
    ) -> tuple[bytes, Path]:
        """A traced receipt for ``signed`` and the payer's evidence against it, written to
        ``folder`` (the payer lies at one node, so even an honest run diverges)."""
        self.clock.ms = at - 1
        issued = self.sessions[0].run(self.inputs, request=signed, trace=True)
        issued.write(folder)
        receipt, evidence = issued.to_bytes(), folder / "evidence.revd"
        with TraceReader.open(folder / TRACE_FILE) as trace:
            found = dispute_locally(receipt, self.model, self.inputs, trace, payer,
                                    inject_fault=LIE_AT)  # fmt: skip
        found.evidence.write(evidence)
        return receipt, evidence


def make_pool(directory: Path, n: int, *, rivals: bool = False, step_ms: int = STEP_MS) -> PoolFile:
    """``n`` items, item i at T0 + i * step_ms. Crash pools (the default) vary the kinds and add
    hostile operations: on every tenth item a request reusing the nonce of the item before
    and a second receipt. With ``rivals`` each item has a receipt for each of two processes."""
    directory.mkdir(parents=True, exist_ok=True)
    issuer = Issuer()
    items: list[dict[str, str | None]] = []
    signed: list[SignedRequest] = []
    for i in range(n):
        at, kind = T0 + i * step_ms, "pay" if rivals else crash_kind(i)
        signed.append(issuer.request(PAYERS[i % 2], at, 8000 + (i % 4) * 500))
        verdict = {"rejected": CHALLENGE_REJECTED, "fault": PROVIDER_FAULT}.get(kind)
        evidence: Path | None = None
        if verdict is None:
            receipt = issuer.receipt(signed[i], at)
        else:  # made here, once: the workload only reads the bundle and the ruling on it
            receipt, evidence = issuer.disputed(signed[i], at, PAYERS[i % 2], directory / str(i))
        hostile = not rivals and i % 10 == 1
        other = issuer.receipt(signed[i], at, rival=True) if rivals or hostile else None
        forged = None
        if hostile:  # the payer signs new terms under the nonce it used for the item before
            used = signed[i - 1].request
            forged = issuer.request(PAYERS[(i - 1) % 2], at, used.max_amount + 1, used.nonce)
        judged = notice = None
        if verdict is not None and evidence is not None:
            digest = Evidence.read(evidence).digest
            judged = ruling(receipt, verdict, at, digest)
            notice = sign_notice(
                PAYERS[i % 2], ledger=ORIGIN, receipt=rid(receipt), evidence=digest
            )
        items.append({
            "kind": kind,
            "request": signed[i].to_bytes().hex(),
            "receipt": receipt.hex(),
            "other_receipt": None if other is None else other.hex(),
            "forged_request": None if forged is None else forged.to_bytes().hex(),
            "evidence": None if evidence is None else str(evidence),
            "ruling": None if judged is None else judged.hex(),
            "notice": None if notice is None else notice.hex(),
        })  # fmt: skip
    path = _write_pool(directory, items, step_ms)
    pool = Pool.read(path)
    return PoolFile(
        path=path,
        pool=pool,
        request_ids=tuple(s.id for s in signed),
        receipt_ids=tuple(rid(i.receipt) for i in pool.items),
        other_ids=tuple(
            None if i.other_receipt is None else rid(i.other_receipt) for i in pool.items
        ),
    )


def _write_pool(directory: Path, items: list[dict[str, str | None]], step_ms: int) -> Path:
    key_path = directory / "log_key.pem"
    if not key_path.exists():
        LOG_KEY.save(key_path)
    path = directory / "pool.json"
    wire = {
        "model": str(FIXTURES / "models" / "mlp.onnx"),
        "log_key": str(key_path),
        "t0": T0,
        "step_ms": step_ms,
        "end_ms": T0 + (len(items) + 10) * step_ms,
        "checkpoint_every": 4,
        "items": items,
    }
    path.write_text(json.dumps(wire))
    return path


def rid(receipt: bytes) -> Digest:
    return receipt_id(Envelope.from_bytes(receipt).payload)


def ruling(receipt: bytes, verdict: str, at: int, evidence: Digest) -> bytes:
    """A ruling signed by the fixture referee on the payer's ``evidence`` (the ledger reads its
    receipt, evidence and verdict; the rest is made up)."""
    zero = Digest(bytes(32))
    record = Ruling(
        receipt=rid(receipt),
        evidence=evidence,
        node=0,
        node_name="crash-test",
        op="Relu",
        verdict=verdict,
        reason="a ruling made up for the crash test",
        comparison="bit-exact",
        receipt_runtime=zero,
        referee_runtime=zero,
        provider_outputs=(),
        recomputed_outputs=(),
        challenger_outputs=(),
        provider_messages=RELAYED,
        issued_at=at,
    )
    payload = codec.encode(record.to_wire())
    return Envelope.sign(RULING_PAYLOAD_TYPE, payload, fixture_key("referee_ed25519")).to_bytes()


# -- workload processes ---------------------------------------------------------------------


class Workload:
    """One ``tests/settle_workload.py`` process, started with ``--wait-go``; its stdout is read
    line by line with a timeout, its stderr goes to a file."""

    def __init__(self, args: list[str], stderr: Path) -> None:
        self.stderr = stderr
        with stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.settle_workload", *args, "--wait-go"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._buffer = b""

    def line(self, timeout: float = TIMEOUT) -> str | None:
        """The next line on stdout; None when the process closed it (it ended)."""
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                pytest.fail(f"workload silent for {timeout} s:\n{self.error_tail()}")
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, word: str) -> None:
        said = self.line()
        if said != word:
            self.stop()
            pytest.fail(f"workload said {said!r}, not {word!r}:\n{self.error_tail()}")

    def go(self) -> None:
        self.expect("loaded")
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"workload still running after {TIMEOUT} s:\n{self.error_tail()}")

    def stop(self) -> None:
        self.kill()
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def error_tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-3000:]


# -- invariants -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What a check saw, so the next check can tell that nothing seen was lost."""

    size: int
    root: bytes
    checkpoints: dict[int, bytes]

    @property
    def counts(self) -> tuple[int, int]:
        return self.size, len(self.checkpoints)


def check_ledger(db: Path, where: str, prev: Snapshot | None) -> Snapshot:
    """Open ``db`` afresh and check every invariant; fail naming the one that broke, and where."""

    def broke(invariant: str, detail: object) -> NoReturn:
        pytest.fail(f"{where}: {invariant} broke: {detail}", pytrace=False)

    ledger = Ledger.open(db, clock=FixedClock(T0))
    try:
        store = ledger.store
        try:
            audit(store)
        except StateError as e:
            broke("audit (money, states, log tree)", e)
        entries = store.entries(0, store.size())
        rebuilt = replay(entries)
        try:
            if state_of(rebuilt) != state_of(store):
                broke(
                    "states",
                    "replaying the log: " + _difference(state_of(rebuilt), state_of(store)),
                )
        finally:
            rebuilt.close()
        events = [event for _, event in ledger.history()]
        if problem := _money(store, events) or _once(store, events) or _log(store, entries, prev):
            broke(*problem)
        log = Log(store, ORIGIN)
        return Snapshot(size=len(entries), root=log.root(), checkpoints=dict(store.checkpoints()))
    finally:
        ledger.close()


def _difference(a: LedgerState, b: LedgerState) -> str:
    for name in (f.name for f in fields(a)):
        if getattr(a, name) != getattr(b, name):
            return f"{name}: replayed {getattr(a, name)!r:.300} != stored {getattr(b, name)!r:.300}"
    return "no field differs"


def _money(store: Store, events: list[AnyEvent]) -> tuple[str, str] | None:
    """Balances plus holds equal the deposits plus bonds summed from the log, and the supply."""
    brought: Counter[str] = Counter()
    for e in events:
        if isinstance(e, Deposit | Bond):
            brought[e.asset] += e.amount
    have: Counter[str] = Counter()
    for b in store.balances():
        have[b.asset] += b.amount
    for r in store.requests():
        have[r.asset] += r.hold
    supply = store.assets()
    for asset in set(brought) | set(have) | set(supply):
        if not brought[asset] == have[asset] == supply.get(asset, 0):
            return "money", (
                f"{asset}: balances+holds {have[asset]}, deposits+bonds "
                f"{brought[asset]}, supply {supply.get(asset)}"
            )
    return None


def _once(store: Store, events: list[AnyEvent]) -> tuple[str, str] | None:
    """Each request held once under a fresh nonce; claimed, closed and slashed at most once;
    closed by exactly the event its state says."""
    nonces: Counter[tuple[bytes, bytes]] = Counter()
    per_request: dict[bytes, Counter[str]] = defaultdict(Counter)
    for e in events:
        if isinstance(e, Hold):
            nonces[e.request.request.payer, e.request.request.nonce] += 1
            per_request[e.request.id.value]["hold"] += 1
        elif isinstance(e, Claim | Release | Refund | Slash | Dispute):
            per_request[e.request.value][e.kind] += 1
    if nonces and max(nonces.values()) > 1:
        return "once", "one (payer, nonce) was held twice"
    rows = {r.id.value: r for r in store.requests()}
    if set(rows) != set(per_request):
        return "once", f"{len(rows)} request rows for {len(per_request)} requests in the log"
    for request, kinds in per_request.items():
        state = rows[request].state
        closing = {"released": "release", "refunded": "refund"}.get(state)
        closings = kinds["release"] + kinds["refund"]
        if (
            kinds["hold"] != 1
            or max(kinds["claim"], kinds["slash"]) > 1
            or closings != (1 if closing else 0)
            or (closing and kinds[closing] != 1)
        ):
            return "once", f"request {request.hex()} is {state} after {dict(kinds)}"
    return None


def _log(store: Store, entries: list[bytes], prev: Snapshot | None) -> tuple[str, str] | None:
    """Nothing seen before is lost; every checkpoint verifies, has the root of the entries at
    its size, and is proven consistent with the one before it."""
    log, key = Log(store, ORIGIN), LOG_KEY.public_key
    if prev is not None:
        if len(entries) < prev.size or log.root(prev.size) != prev.root:
            return "durable", f"the log of {prev.size} entries seen before is not a prefix now"
        now = dict(store.checkpoints())
        if lost := [size for size, note in prev.checkpoints.items() if now.get(size) != note]:
            return "durable", f"checkpoints of sizes {lost} seen before are gone or changed"
    leaves = [leaf_hash(e) for e in entries]
    older: bytes | None = None
    for size, note in store.checkpoints():
        try:
            head = verify_checkpoint(note, key, ORIGIN)
            if older is not None:
                old_size = verify_checkpoint(older, key, ORIGIN).size
                proof = log.prove_consistency(old_size, checkpoint=note)
                verify_consistency_proof(proof, older, key, origin=ORIGIN)
        except ReceiptsError as e:
            return "log", f"the checkpoint of size {size}: {e}"
        if head.size != size or head.root != root(leaves[:size]):
            return "log", f"the checkpoint of size {size} is not the root of {size} entries"
        older = note
    return None


# -- where a kill landed --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Landing:
    """Where in the workload a kill landed, read from its journal, and what the file may hold
    after it: (log size, checkpoint count) before or after the interrupted transaction."""

    where: str
    op: str
    allowed: tuple[tuple[int, int], ...]

    def resolve(self, seen: tuple[int, int], label: str) -> str:
        """Fail unless the file holds what the kill allows; the landing's final name."""
        if seen not in self.allowed:
            pytest.fail(
                f"{label}: atomic broke: the file holds (log size, checkpoints) {seen}, not one "
                f"of {list(self.allowed)}: the interrupted transaction is partly there or an "
                "acknowledged one is gone",
                pytrace=False,
            )
        if self.where == "during COMMIT":
            return "during COMMIT: " + ("durable" if seen == self.allowed[1] else "rolled back")
        return self.where


def landing(journal: Path, prev: Snapshot) -> Landing:
    """Read a killed run's journal: the last operation it began, and its last transaction
    marker, which says where the kill landed and what the file may hold now."""
    op, state, numbers, wrote = "start-up", "none", [*prev.counts], False
    for line in journal.read_text().splitlines() if journal.exists() else []:
        word, *rest = line.split()
        if word == "op":
            op = " ".join(rest)
        elif word == "write":
            wrote = True
        elif word == "stall":
            state = "stall"
        elif word in ("begin", "committing", "commit", "rollback"):
            state, numbers = word, [int(n) for n in rest]
            wrote = wrote and word == "committing"
    before, after = (numbers[0], numbers[1]), (numbers[-2], numbers[-1])
    if state == "none":
        return Landing(where="before the first transaction", op=op, allowed=(before,))
    if state == "begin":
        where = "inside a transaction, " + (
            "after writes: rolled back" if wrote else "before any write"
        )
        return Landing(where=where, op=op, allowed=(before,))
    if state == "stall":
        return Landing(where="stalled before COMMIT: rolled back", op=op, allowed=(before,))
    if state == "committing" and before != after:
        return Landing(where="during COMMIT", op=op, allowed=(before, after))
    if state == "committing":
        return Landing(
            where="during COMMIT of a transaction that wrote nothing", op=op, allowed=(before,)
        )
    if state == "commit":
        return Landing(where="between transactions", op=op, allowed=(after,))
    return Landing(where="just after a refused replay", op=op, allowed=(before,))


# -- the crash campaign ---------------------------------------------------------------------


@dataclass
class Campaign:
    """Runs, kills, restarts and checks; what it saw, for the report."""

    tmp: Path
    pool: PoolFile
    kills_wanted: int
    seed: int
    kills: int = 0
    runs: int = 0
    rounds: int = 0
    stalls: int = 0
    landed: Counter[str] = field(default_factory=Counter)
    ops: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    standby: deque[tuple[int, Workload]] = field(default_factory=deque)

    @property
    def db(self) -> Path:
        return self.tmp / "ledger.db"

    def journal(self, n: int) -> Path:
        return self.tmp / f"journal-{n}.txt"

    def stall_at(self, n: int) -> int | None:
        """Every fifth run stops before the COMMIT of one of its first writing transactions
        (never the last run, which must finish)."""
        if n % 5 != 2 or n >= self.kills_wanted:
            return None
        return random.Random(self.seed * 7919 + n).randint(1, 40)

    def spawn(self) -> None:
        n = self.runs + len(self.standby)
        stall = self.stall_at(n)
        args = [
            "run",
            str(self.db),
            str(self.pool.path),
            "--journal",
            str(self.journal(n)),
            "--progress",
            str(self.tmp / "progress.txt"),
            *(["--stall-at", str(stall)] if stall else []),
        ]
        self.standby.append((n, Workload(args, self.tmp / f"stderr-{n}.txt")))

    def new_round(self) -> Snapshot:
        """A fresh ledger at the same path (standing-by processes have not opened it yet)."""
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "progress.txt"):
            (self.tmp / name).unlink(missing_ok=True)
        create_ledger(self.db).close()
        self.rounds += 1
        return check_ledger(self.db, f"at the start of round {self.rounds}", None)

    def report(self) -> str:
        rolled_back = sum(n for where, n in self.landed.items() if where.endswith("rolled back"))
        return (
            f"{self.kills} kills ({self.stalls} stalled before COMMIT) over {self.runs} runs in "
            f"{self.rounds} rounds; {rolled_back} restarts found an uncommitted transaction "
            f"with writes rolled back; landed: {dict(self.landed)}; during: {dict(self.ops)}; "
            f"replays refused: {dict(self.refused)}"
        )


def crash_campaign(tmp_path: Path, *, kills: int, items: int, seed: int) -> Campaign:
    pool = make_pool(tmp_path / "pool", items)
    reference = reference_run(tmp_path / "reference.db", pool)
    campaign = Campaign(tmp=tmp_path, pool=pool, kills_wanted=kills, seed=seed)
    try:
        _campaign(campaign, reference)
    finally:
        for _, proc in campaign.standby:
            proc.stop()
    print(campaign.report())
    return campaign


def _campaign(c: Campaign, reference: tuple[LedgerState, list[bytes]]) -> None:
    rng = random.Random(c.seed)
    prev = c.new_round()
    while True:
        n, code, how = _one_run(c, rng)
        if code == -signal.SIGKILL:
            c.kills += 1
            land = landing(c.journal(n), prev)
            label = (
                f"after kill {c.kills} (run {n}, round {c.rounds}, {how}; "
                f"landed {land.where} in {land.op})"
            )
            prev = check_ledger(c.db, label, prev)
            c.landed[land.resolve(prev.counts, label)] += 1
            c.ops[land.op.split()[0]] += 1
            continue
        label = f"after run {n} finished round {c.rounds} ({c.kills} kills so far)"
        check_ledger(c.db, label, prev)
        check_final(c.db, c.pool, reference, label)
        if c.kills >= c.kills_wanted:
            return
        prev = c.new_round()


def _one_run(c: Campaign, rng: random.Random) -> tuple[int, int, str]:
    """Start the next standing-by process, kill it (after a random delay, or once it stalls)
    unless enough kills were made; (run number, exit code, how it was killed)."""
    while len(c.standby) < (STANDBY if c.kills < c.kills_wanted else 1):
        c.spawn()
    n, proc = c.standby.popleft()
    c.runs += 1
    proc.go()
    proc.expect("ready")
    delay = rng.uniform(0, 0.004) if rng.random() < 0.2 else rng.uniform(0, 0.12)
    how = f"killed {delay * 1000:.1f} ms after ready"
    if c.stall_at(n):
        how = "killed stalled before a COMMIT"
        if proc.line() == "stalled":
            c.stalls += 1
            proc.kill()
    elif c.kills < c.kills_wanted:
        time.sleep(delay)
        proc.kill()
    code = proc.wait()
    proc.stop()
    assert code in (0, -signal.SIGKILL), f"run {n} exited {code}:\n{proc.error_tail()}"
    lines = c.journal(n).read_text().splitlines()
    c.refused.update(line.split()[1] for line in lines if line.startswith("refused "))
    return n, code, how


def reference_run(db: Path, pool: PoolFile) -> tuple[LedgerState, list[bytes]]:
    """The ledger one uninterrupted run leaves (run in this process): its state and its log."""
    create_ledger(db, synchronous="NORMAL").close()
    clock = StepClock(T0)
    ledger = Ledger.open(db, clock=clock, synchronous="NORMAL")
    try:
        worker = settle_workload.run(ledger, clock, pool.pool, mlp())
        hostile = sum(
            (i.forged_request is not None) + (i.other_receipt is not None) for i in pool.pool.items
        )
        assert sum(worker.refused.values()) == hostile, f"refused {worker.refused}"
        return state_of(ledger.store), ledger.store.entries(0, ledger.store.size())
    finally:
        ledger.close()


def check_final(
    db: Path, pool: PoolFile, reference: tuple[LedgerState, list[bytes]], where: str
) -> None:
    ledger = Ledger.open(db, clock=FixedClock(T0))
    try:
        store = ledger.store
        for i, (item, request) in enumerate(zip(pool.pool.items, pool.request_ids, strict=True)):
            row = store.request(request)
            assert row is not None and row.state == FINAL_STATE[item.kind], (
                f"{where}: item {i} ({item.kind}) ended {row and row.state}"
            )
        assert state_of(store) == reference[0], f"{where}: the state is not the reference run's"
        assert store.entries(0, store.size()) == reference[1], (
            f"{where}: the log is not the one an uninterrupted run writes"
        )
    finally:
        ledger.close()


def test_a_few_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    campaign = crash_campaign(tmp_path, kills=5, items=30, seed=1)
    assert campaign.kills == 5
    assert campaign.landed["stalled before COMMIT: rolled back"] == campaign.stalls == 1


@pytest.mark.slow
def test_fifty_kills_at_random_points_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    campaign = crash_campaign(tmp_path, kills=50, items=150, seed=20240611)
    assert campaign.kills == 50
    assert campaign.landed["stalled before COMMIT: rolled back"] == campaign.stalls >= 5
    assert campaign.refused["hold"] > 0, "no restart replayed a hold"


# -- two processes at once ------------------------------------------------------------------


def two_workloads(tmp_path: Path, mode: str, *args: str) -> list[Any]:
    """Run ``mode`` as roles a and b, started at one barrier and kept in lockstep; each one's
    output."""
    procs = [
        Workload(
            [
                mode,
                *args,
                "--role",
                role,
                "--lockstep",
                str(tmp_path),
                "--out",
                str(tmp_path / f"{role}.json"),
            ],
            tmp_path / f"{role}.err",
        )
        for role in "ab"
    ]
    try:
        for p in procs:
            p.expect("loaded")
        for p in procs:
            assert p.proc.stdin is not None
            p.proc.stdin.write(b"go\n")
            p.proc.stdin.flush()
        for p in procs:
            p.expect("ready")
        codes = [p.wait() for p in procs]
        assert codes == [0, 0], "\n".join(p.error_tail() for p in procs)
        return [json.loads((tmp_path / f"{role}.json").read_text()) for role in "ab"]
    finally:
        for p in procs:
            p.stop()


def test_two_processes_settling_at_once_release_each_claim_once(tmp_path: Path) -> None:
    n, spacing, window = 200, 10, 1000
    pool = make_pool(tmp_path / "pool", n, rivals=True, step_ms=spacing)
    db = tmp_path / "ledger.db"
    create_ledger(db, window_ms=window, synchronous="NORMAL").close()
    clock = StepClock(T0)
    ledger = Ledger.open(db, clock=clock, synchronous="NORMAL")
    for payer in PAYERS:
        ledger.deposit(payer.public_key.key_id, "credit", 10_000 * n)
    for i, item in enumerate(pool.pool.items):
        clock.ms = T0 + i * spacing
        ledger.hold(item.request)
        ledger.claim(item.receipt, model=mlp())
    ledger.close()
    first, last = T0 + window, T0 + window + (n - 1) * spacing
    released = two_workloads(
        tmp_path,
        "settle",
        str(db),
        "--start",
        str(first),
        "--stop",
        str(last),
        "--every",
        "30",
        "--chunks",
        "1,7,2",
    )
    a, b = set(released[0]), set(released[1])
    assert len(a) == len(released[0]) and len(b) == len(released[1]), "a process released twice"
    assert not a & b, f"{len(a & b)} claims were released by both processes"
    assert a | b == {r.value.hex() for r in pool.request_ids}, "some claims were not released"
    assert a and b, "one process released everything: the two never raced"
    ledger = Ledger.open(db)
    try:
        releases = Counter(e.request.value for _, e in ledger.history() if isinstance(e, Release))
        assert len(releases) == n and set(releases.values()) == {1}, "a claim released twice"
        audit(ledger.store)
        assert {r.state for r in ledger.store.requests()} == {"released"}
    finally:
        ledger.close()
    print(f"{n} due claims settled by two processes at once: a released {len(a)}, b {len(b)}")


def test_two_processes_holding_and_claiming_the_same_items_win_each_once(tmp_path: Path) -> None:
    n = 60
    pool = make_pool(tmp_path / "pool", n, rivals=True)
    db = tmp_path / "ledger.db"
    ledger = create_ledger(db)
    for payer in PAYERS:
        ledger.deposit(payer.public_key.key_id, "credit", 10_000 * n)
    ledger.close()
    won = two_workloads(tmp_path, "claim", str(db), str(pool.path), "--now", str(T0))
    for what in ("held", "claimed"):
        a, b = set(won[0][what]), set(won[1][what])
        assert not a & b, f"both processes {what} items {sorted(a & b)}"
        assert a | b == set(range(n)), f"nobody {what} items {sorted(set(range(n)) - a - b)}"
        assert a and b, f"one process {what} every item: the two never raced"
    ledger = Ledger.open(db)
    try:
        audit(ledger.store)
        for i in range(n):
            row = ledger.store.request(pool.request_ids[i])
            winner = pool.receipt_ids[i] if i in won[0]["claimed"] else pool.other_ids[i]
            assert row is not None and row.state == "claimed" and row.receipt == winner
        kinds = Counter(e.kind for _, e in ledger.history())
        assert kinds["hold"] == n and kinds["claim"] == n
    finally:
        ledger.close()
    print(
        f"{n} items held and claimed by two processes at once: a held {len(won[0]['held'])} and "
        f"claimed {len(won[0]['claimed'])}, b held {len(won[1]['held'])} and claimed "
        f"{len(won[1]['claimed'])}"
    )
