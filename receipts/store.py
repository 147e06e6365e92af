"""Ledger storage: the interface the ledger writes through, and its SQLite implementation.

Storage layer, under ``receipts.ledger`` and ``receipts.tlog``. ``Store`` is what the ledger and
its events need: one write transaction at a time, balances, request rows, and the log's entries,
Merkle nodes and checkpoints, all in the same transaction so the log and the state never
disagree. ``SqliteStore`` keeps them in one embedded SQLite file in WAL mode; a server database
can implement the same protocol later.

    store = SqliteStore.create(Path("ledger.db"))        # refuses an existing file
    with store.transaction(): store.add_supply("credit", 10); store.add_balance(k, "credit", ...)

Durability: every transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT`` with ``synchronous=FULL`` by
default, so a committed change survives a crash of the process or the machine, and a change that
did not commit leaves no trace. Writers queue on SQLite's write lock (``busy_timeout``), and each
transaction re-reads what it changes after taking the lock, so two processes never apply the
same change twice. Money columns carry ``CHECK (amount >= 0)``: an overdraft cannot be stored.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from receipts.digests import Digest
from receipts.errors import (
    InputError,
    LimitError,
    MalformedError,
    OverdraftError,
    ReplayError,
    StateError,
    UnknownAssetError,
    UnsupportedVersionError,
)
from receipts.files import StorageError
from receipts.merkle import leaf_hash, node_hash

if TYPE_CHECKING:
    from receipts.events import Open
    from receipts.request import SignedRequest

SCHEMA_VERSION = 1
_MAX_INTEGER = 2**63 - 1  # SQLite's largest integer
STATES = ("held", "claimed", "disputed", "released", "refunded")
_CLOSE_FROM = {"released": ("claimed", "disputed"), "refunded": ("held", "claimed", "disputed")}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE assets (asset TEXT PRIMARY KEY, supply INTEGER NOT NULL CHECK (supply >= 0));
CREATE TABLE balances (
    account BLOB NOT NULL, asset TEXT NOT NULL, kind TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (account, asset, kind)) WITHOUT ROWID;
CREATE TABLE requests (
    id BLOB PRIMARY KEY, payer BLOB NOT NULL, nonce BLOB NOT NULL, asset TEXT NOT NULL,
    max_amount INTEGER NOT NULL, hold INTEGER NOT NULL CHECK (hold >= 0),
    expires_at INTEGER NOT NULL, provider BLOB, state TEXT NOT NULL,
    receipt BLOB UNIQUE, claimed_by BLOB, amount INTEGER, window_ends INTEGER, verdict TEXT,
    evidence BLOB, slashed INTEGER NOT NULL DEFAULT 0,
    signed BLOB NOT NULL, UNIQUE (payer, nonce)) WITHOUT ROWID;
CREATE INDEX requests_by_state ON requests (state, window_ends, expires_at);
CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)) WITHOUT ROWID;
CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
CREATE TABLE batches (first INTEGER PRIMARY KEY, end INTEGER NOT NULL, digest BLOB NOT NULL);
CREATE TABLE refs (ref BLOB PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRow:
    """One request as the ledger holds it."""

    id: Digest
    payer: bytes
    nonce: bytes
    asset: str
    max_amount: int
    hold: int
    expires_at: int
    provider: bytes | None
    state: str
    receipt: Digest | None
    claimed_by: bytes | None
    amount: int | None
    window_ends: int | None
    verdict: str | None
    evidence: Digest | None = None  # the payer's evidence that opened the dispute
    slashed: int = 0  # bond slashed for this request (at most once)


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    account: bytes
    asset: str
    kind: str
    amount: int


class Store(Protocol):
    """What the ledger, its events and the log need from storage."""

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...
    def meta(self, key: str) -> bytes | None: ...
    def open(self, event: Open) -> None: ...
    def assets(self) -> dict[str, int]: ...
    def add_supply(self, asset: str, amount: int) -> None: ...
    def use_reference(self, reference: bytes) -> None: ...
    def add_balance(self, account: bytes, asset: str, kind: str, delta: int) -> None: ...
    def balance(self, account: bytes, asset: str, kind: str) -> int: ...
    def balances(self) -> list[Balance]: ...
    def insert_request(self, signed: SignedRequest) -> None: ...
    def claim_request(
        self, request: Digest, *, receipt: Digest, provider: bytes, amount: int, window_ends: int
    ) -> None: ...
    def close_request(self, request: Digest, state: str, *, hold: int) -> None: ...
    def dispute_request(
        self,
        request: Digest,
        verdict: str | None,
        *,
        deadline: int | None = None,
        evidence: Digest | None = None,
    ) -> None: ...
    def record_slash(self, request: Digest, amount: int) -> None: ...
    def request(self, request: Digest) -> RequestRow | None: ...
    def signed_request(self, request: Digest) -> bytes: ...
    def request_by_receipt(self, receipt: Digest) -> RequestRow | None: ...
    def nonce_used(self, payer: bytes, nonce: bytes) -> bool: ...
    def requests(self, state: str | None = None) -> list[RequestRow]: ...
    def due(self, now: int, limit: int) -> list[RequestRow]: ...
    def expired(self, now: int, limit: int) -> list[RequestRow]: ...
    def append(self, entry: bytes) -> int: ...
    def size(self) -> int: ...
    def entries(self, lo: int, hi: int) -> list[bytes]: ...
    def node(self, level: int, index: int) -> bytes: ...
    def add_checkpoint(self, size: int, note: bytes) -> None: ...
    def checkpoints(self) -> list[tuple[int, bytes]]: ...
    def add_batch(self, first: int, end: int, digest: bytes) -> None: ...
    def batches(self) -> list[tuple[int, int, bytes]]: ...
    def references(self) -> list[bytes]: ...
    def set_meta(self, key: str, value: bytes) -> None: ...
    def close(self) -> None: ...


# A column's type in a read's shape: lower case never NULL, upper case may be (SQLite gives
# INTEGER as int, BLOB as bytes, TEXT as str and NULL as None).
_COLUMN: dict[str, type | tuple[type, ...]] = {
    "i": int, "b": bytes, "t": str,
    "I": (int, type(None)), "B": (bytes, type(None)), "T": (str, type(None)),
}  # fmt: skip
_SHAPES: dict[str, tuple[type | tuple[type, ...], ...]] = {}  # a shape's types, made once


class _Rows:
    """A statement's rows, all fetched while its failures are still being translated."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


class _Connection:
    """The SQLite connection with every statement under ``_sql``: a damaged file (a page that
    does not parse, a schema that lost a column, text that is not UTF-8) is a typed error from
    whichever read meets it, not a ``sqlite3`` exception. ``IntegrityError`` passes through:
    callers turn a broken constraint into the domain's error (a replay, an overdraft)."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db, self._path = db, path

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql: str, args: Sequence[object] = (), *, shape: str = "") -> _Rows:
        """Run one statement and fetch its rows; a read names the ``shape`` of its columns
        (``_COLUMN``), and a row of another shape is a damaged file: SQLite keeps whatever
        type a cell's bytes say, and a flipped bit can turn an amount into text or NULL."""
        try:  # not ``with _sql(...)``: a context manager costs ~1 us, on every log node read
            cursor = self._db.execute(sql, args)
            rows = cursor.fetchall()
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise _typed(e, self._path) from e
        for row in rows if shape else ():
            self._check(row, shape)
        return _Rows(rows, cursor.rowcount)

    def _check(self, row: tuple[Any, ...], shape: str) -> None:
        types = _SHAPES.get(shape) or _SHAPES.setdefault(
            shape, tuple(_COLUMN[code] for code in shape)
        )
        if len(row) != len(types) or not all(map(isinstance, row, types)):
            found = ", ".join(type(v).__name__ for v in row)
            raise MalformedError(f"ledger {self._path}: a damaged row ({found})")

    def one(self, sql: str, args: Sequence[object] = (), *, shape: str) -> Any:
        """The first row of a read (None if it has none), checked as ``execute`` checks rows;
        apart because a log node read is one row, and ``execute``'s list costs it ~30%."""
        try:
            row = self._db.execute(sql, args).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            raise _typed(e, self._path) from e
        if row is not None:
            self._check(row, shape)
        return row

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        with _sql(self._path):
            self._db.executemany(sql, rows)

    def close(self) -> None:
        self._db.close()


class SqliteStore:
    """``Store`` on one SQLite file (WAL, one ``BEGIN IMMEDIATE`` transaction per change)."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = _Connection(db, path)
        self.path = path
        self._depth = 0

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        setup: Callable[[SqliteStore], None] | None = None,
    ) -> SqliteStore:
        """A new ledger file (``:memory:`` for a scratch one); refuses a path that exists.
        ``setup`` runs in the transaction that creates the schema: both land or neither."""
        where = str(path)
        if where != ":memory:" and Path(where).exists():
            raise StorageError(f"{where} already exists; refusing to replace a ledger")
        store = cls(_connect(where, synchronous), where)
        with _sql(where), store.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    store._db.execute(statement)
            store._db.execute(
                "INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION.to_bytes(4, "big"),)
            )
            if setup is not None:
                setup(store)
        return store

    @classmethod
    def open_file(cls, path: Path | str, *, synchronous: str = "FULL") -> SqliteStore:
        where = str(path)
        if not Path(where).is_file():
            raise InputError(f"no ledger at {where} (create one with `receipts ledger init`)")
        return cls(_connect(where, synchronous, ledger_only=True), where)

    def close(self) -> None:
        self._db.close()

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change; nested calls join as savepoints (an inner failure rolls back only
        the inner part, which lets a caller group many changes into one durable commit)."""
        name = f"s{self._depth}"
        with _sql(self.path):
            self._db.execute(f"SAVEPOINT {name}" if self._depth else "BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException as e:
            self._depth -= 1
            lost = self._depth > 0 and not self._db.in_transaction
            self._roll_back(name)
            if isinstance(e, sqlite3.Error) and not isinstance(e, sqlite3.IntegrityError):
                raise StorageError(f"ledger {self.path}: {e}") from e  # disk full, I/O
            if lost:  # SQLite rolled back the enclosing transaction too: the group must stop
                raise StorageError(f"ledger {self.path}: the transaction was rolled back") from e
            raise
        self._depth -= 1
        try:
            with _sql(self.path):
                self._db.execute(f"RELEASE {name}" if self._depth else "COMMIT")
        except StorageError:
            self._roll_back(name)  # a failed COMMIT can leave the transaction open
            raise

    def _roll_back(self, name: str) -> None:
        if not self._db.in_transaction:
            return
        with _sql(self.path):
            if self._depth:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
            else:
                self._db.execute("ROLLBACK")

    # -- ledger state -----------------------------------------------------------------------

    def meta(self, key: str) -> bytes | None:
        row = self._db.one("SELECT value FROM meta WHERE key = ?", (key,), shape="b")
        return None if row is None else bytes(row[0])

    def open(self, event: Open) -> None:
        if self.meta("open") is not None:
            raise StateError("the ledger is already open")
        self._db.execute("INSERT INTO meta VALUES ('open', ?)", (event.encode(),))
        self._db.executemany("INSERT INTO assets VALUES (?, 0)", [(a,) for a in event.assets])

    def assets(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT asset, supply FROM assets", shape="ti").fetchall())

    def add_supply(self, asset: str, amount: int) -> None:
        """Add ``amount`` (>= 0) to an asset's supply. SQLite turns an integer sum past 2^63-1
        into a float instead of failing, so the bound is checked in the statement; the supply
        bounds every balance and hold of the asset (they sum to it), so they cannot overflow."""
        cur = self._db.execute(
            "UPDATE assets SET supply = supply + ? WHERE asset = ? AND supply <= ? - ?",
            (amount, asset, _MAX_INTEGER, amount),
        )
        if cur.rowcount != 1:
            if asset in self.assets():
                raise LimitError(f"the supply of {asset} would overflow 2^63-1")
            raise UnknownAssetError(f"the ledger does not hold the asset {asset!r}")

    def use_reference(self, reference: bytes) -> None:
        """Record a depositor's idempotency key; a second use is a replay."""
        try:
            self._db.execute("INSERT INTO refs VALUES (?)", (reference,))
        except sqlite3.IntegrityError as e:
            raise ReplayError(
                f"a deposit with reference {reference.hex()} was already applied"
            ) from e

    def add_balance(self, account: bytes, asset: str, kind: str, delta: int) -> None:
        """Move ``delta`` into (or, negative, out of) a balance; the CHECK refuses overdrafts."""
        try:
            cur = self._db.execute(
                "UPDATE balances SET amount = amount + ? "
                "WHERE account = ? AND asset = ? AND kind = ?",
                (delta, account, asset, kind),
            )
            if cur.rowcount == 0 and delta >= 0:
                self._db.execute(
                    "INSERT INTO balances VALUES (?, ?, ?, ?)", (account, asset, kind, delta)
                )
            elif cur.rowcount == 0:
                self._overdraft(account, asset, kind, delta)
        except sqlite3.IntegrityError as e:
            self._overdraft(account, asset, kind, delta, e)

    def _overdraft(
        self, account: bytes, asset: str, kind: str, delta: int, cause: Exception | None = None
    ) -> None:
        have = self.balance(account, asset, kind)
        raise OverdraftError(
            f"{kind} account {account.hex()[:16]}… holds {have} {asset}, the change needs {-delta}"
        ) from cause

    def balance(self, account: bytes, asset: str, kind: str) -> int:
        row = self._db.one(
            "SELECT amount FROM balances WHERE account = ? AND asset = ? AND kind = ?",
            (account, asset, kind),
            shape="i",
        )
        return 0 if row is None else int(row[0])

    def balances(self) -> list[Balance]:
        rows = self._db.execute(
            "SELECT account, asset, kind, amount FROM balances ORDER BY asset, account, kind",
            shape="btti",
        )
        return [Balance(account=a, asset=s, kind=k, amount=n) for a, s, k, n in rows]

    def insert_request(self, signed: SignedRequest) -> None:
        r = signed.request
        try:
            self._db.execute(
                "INSERT INTO requests (id, payer, nonce, asset, max_amount, hold, expires_at, "
                "provider, state, signed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'held', ?)",
                (signed.id.value, r.payer, r.nonce, r.asset, r.max_amount, r.max_amount,
                 r.expires_at, r.provider, signed.to_bytes()),
            )  # fmt: skip
        except sqlite3.IntegrityError as e:
            raise ReplayError(f"request {signed.id} or its nonce was already held") from e

    def claim_request(
        self, request: Digest, *, receipt: Digest, provider: bytes, amount: int, window_ends: int
    ) -> None:
        try:
            cur = self._db.execute(
                "UPDATE requests SET state = 'claimed', receipt = ?, claimed_by = ?, amount = ?, "
                "window_ends = ? WHERE id = ? AND state = 'held' AND ? <= hold",
                (receipt.value, provider, amount, window_ends, request.value, amount),
            )
        except sqlite3.IntegrityError as e:
            raise ReplayError(f"receipt {receipt} was already claimed") from e
        if cur.rowcount != 1:
            raise StateError(f"request {request} is not held (or the amount exceeds its hold)")

    def close_request(self, request: Digest, state: str, *, hold: int) -> None:
        sources = _CLOSE_FROM[state]
        cur = self._db.execute(
            f"UPDATE requests SET state = ?, hold = 0 WHERE id = ? AND hold = ? "  # noqa: S608
            f"AND state IN ({', '.join('?' * len(sources))})",
            (state, request.value, hold, *sources),
        )
        if cur.rowcount != 1:
            raise StateError(f"request {request} cannot become {state} from its state")

    def dispute_request(
        self,
        request: Digest,
        verdict: str | None,
        *,
        deadline: int | None = None,
        evidence: Digest | None = None,
    ) -> None:
        """Mark a claim disputed; an opening sets the ruling deadline (kept in ``window_ends``),
        after which settle releases the claim if no ruling came."""
        cur = self._db.execute(
            "UPDATE requests SET state = 'disputed', verdict = ?, "
            "window_ends = coalesce(?, window_ends), evidence = coalesce(?, evidence) "
            "WHERE id = ? AND state IN ('claimed', 'disputed')",
            (verdict, deadline, evidence and evidence.value, request.value),
        )
        if cur.rowcount != 1:
            raise StateError(f"request {request} has no open claim to dispute")

    def record_slash(self, request: Digest, amount: int) -> None:
        """Mark the bond slashed for a request refunded on a provider fault: once only."""
        cur = self._db.execute(
            "UPDATE requests SET slashed = ? WHERE id = ? AND state = 'refunded' "
            "AND verdict = 'provider-fault' AND slashed = 0",
            (amount, request.value),
        )
        if cur.rowcount != 1:
            raise StateError(f"request {request} was not refunded on a fault, or was slashed")

    def request(self, request: Digest) -> RequestRow | None:
        rows = self._select("WHERE id = ?", (request.value,))
        return rows[0] if rows else None

    def signed_request(self, request: Digest) -> bytes:
        found = self._db.one(
            "SELECT signed FROM requests WHERE id = ?", (request.value,), shape="b"
        )
        if found is None:
            raise StateError(f"request {request} is not in the ledger")
        return bytes(found[0])

    def request_by_receipt(self, receipt: Digest) -> RequestRow | None:
        rows = self._select("WHERE receipt = ?", (receipt.value,))
        return rows[0] if rows else None

    def nonce_used(self, payer: bytes, nonce: bytes) -> bool:
        row = self._db.one(
            "SELECT 1 FROM requests WHERE payer = ? AND nonce = ?", (payer, nonce), shape="i"
        )
        return row is not None

    def requests(self, state: str | None = None) -> list[RequestRow]:
        if state is None:
            return self._select("ORDER BY expires_at, id", ())
        return self._select("WHERE state = ? ORDER BY expires_at, id", (state,))

    def due(self, now: int, limit: int) -> list[RequestRow]:
        return self._select(
            "WHERE state IN ('claimed', 'disputed') AND window_ends <= ? "
            "ORDER BY window_ends, id LIMIT ?",
            (now, limit),
        )

    def expired(self, now: int, limit: int) -> list[RequestRow]:
        return self._select(
            "WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?",
            (now, limit),
        )

    def _select(self, where: str, args: Sequence[object]) -> list[RequestRow]:
        # ``where`` is always one of this class's fixed clauses; values go in as parameters.
        rows = self._db.execute(
            "SELECT id, payer, nonce, asset, max_amount, hold, expires_at, provider, state, "  # noqa: S608
            f"receipt, claimed_by, amount, window_ends, verdict, evidence, slashed "
            f"FROM requests {where}",
            tuple(args),
            shape="bbbtiiiBtBBIITBi",
        ).fetchall()
        return [_row(r) for r in rows]

    # -- the log ----------------------------------------------------------------------------

    def append(self, entry: bytes) -> int:
        """Append one entry and the Merkle nodes it completes; returns its index."""
        index = self.size()
        self._db.execute("INSERT INTO entries VALUES (?, ?)", (index, entry))
        h, level, i = leaf_hash(entry), 0, index
        nodes = [(0, index, h)]
        while i & 1:  # each odd node completes a subtree with its left sibling
            h = node_hash(self.node(level, i - 1), h)
            level, i = level + 1, i >> 1
            nodes.append((level, i, h))
        self._db.executemany("INSERT INTO nodes VALUES (?, ?, ?)", nodes)
        return index

    def size(self) -> int:
        row = self._db.one("SELECT max(idx) FROM entries", shape="I")
        return 0 if row[0] is None else int(row[0]) + 1

    def entries(self, lo: int, hi: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (lo, hi),
            shape="b",
        )
        return [bytes(r[0]) for r in rows]

    def node(self, level: int, index: int) -> bytes:
        row = self._db.one(
            "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index), shape="b"
        )
        if row is None:
            raise StateError(f"log node ({level}, {index}) is missing: the log is damaged")
        return bytes(row[0])

    def add_checkpoint(self, size: int, note: bytes) -> None:
        """Keep a signed checkpoint; a size keeps its first note (signing is deterministic, so
        a second, different note for one size is another key or another root: refused)."""
        row = self._db.one("SELECT note FROM checkpoints WHERE size = ?", (size,), shape="b")
        if row is not None:
            if bytes(row[0]) != note:
                raise StateError(f"the log already signed a different checkpoint of size {size}")
            return
        self._db.execute("INSERT INTO checkpoints VALUES (?, ?)", (size, note))

    def checkpoints(self) -> list[tuple[int, bytes]]:
        rows = self._db.execute("SELECT size, note FROM checkpoints ORDER BY size", shape="ib")
        return [(int(s), bytes(n)) for s, n in rows]

    def add_batch(self, first: int, end: int, digest: bytes) -> None:
        try:
            self._db.execute("INSERT INTO batches VALUES (?, ?, ?)", (first, end, digest))
        except sqlite3.IntegrityError as e:
            raise StateError(f"a batch starting at entry {first} was already made") from e

    def batches(self) -> list[tuple[int, int, bytes]]:
        rows = self._db.execute(
            "SELECT first, end, digest FROM batches ORDER BY first", shape="iib"
        )
        return [(int(a), int(b), bytes(d)) for a, b, d in rows]

    def references(self) -> list[bytes]:
        return [
            bytes(r[0]) for r in self._db.execute("SELECT ref FROM refs ORDER BY ref", shape="b")
        ]

    def set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))


def _row(r: tuple[Any, ...]) -> RequestRow:
    rid, payer, nonce, asset, max_amount, hold, expires, provider, state, receipt = r[:10]
    claimed_by, amount, window_ends, verdict, evidence, slashed = r[10:]
    return RequestRow(
        id=Digest(rid),
        payer=payer,
        nonce=nonce,
        asset=asset,
        max_amount=max_amount,
        hold=hold,
        expires_at=expires,
        provider=provider,
        state=state,
        receipt=None if receipt is None else Digest(receipt),
        claimed_by=claimed_by,
        amount=amount,
        window_ends=window_ends,
        verdict=verdict,
        evidence=None if evidence is None else Digest(evidence),
        slashed=slashed,
    )


def _connect(path: str, synchronous: str, *, ledger_only: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode; with ``ledger_only``, only to a ledger of this schema, checked
    before anything is written (switching the journal mode would change someone else's
    database, or turn an empty file into one), and closed again if the file is not one."""
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise MalformedError(f"unknown synchronous setting {synchronous!r}")
    with _sql(path):
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        db.text_factory = _utf8
        try:
            if ledger_only:
                _check_schema(db, path)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {synchronous}")
        except sqlite3.DatabaseError as e:
            db.close()
            raise MalformedError(f"{path} is not a ledger database ({e})") from e
        except UnicodeDecodeError as e:  # SQLite's message quoted the damaged bytes
            db.close()
            raise MalformedError(f"{path} is not a ledger database (a damaged schema)") from e
        except BaseException:
            db.close()
            raise
    return db


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None or row[0] != SCHEMA_VERSION.to_bytes(4, "big"):
        raise UnsupportedVersionError(f"{path}: unknown ledger schema version")


def _utf8(data: bytes) -> str:
    """TEXT cells as str; bytes that are not UTF-8 (a damaged file) are SQLite's DataError."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise sqlite3.DataError(f"a text value is not UTF-8 ({e.reason})") from e


@contextlib.contextmanager
def _sql(path: str) -> Iterator[None]:
    """SQLite's own failures (locked past the timeout, I/O, a damaged file) as typed errors."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # callers turn a broken constraint into the domain's error (replay, overdraft)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise _typed(e, path) from e


def _typed(error: sqlite3.DatabaseError | UnicodeDecodeError, path: str) -> Exception:
    """The typed error for one of SQLite's (not ``IntegrityError``: callers handle that)."""
    if isinstance(error, UnicodeDecodeError):  # SQLite's own message quoted damaged bytes
        return MalformedError(f"ledger {path}: the file is damaged (bytes that are not UTF-8)")
    if isinstance(error, sqlite3.OperationalError):
        if "integer overflow" in str(error):  # SQLite's own arithmetic past 2^63-1
            return LimitError(f"ledger {path}: {error}")
        return StorageError(f"ledger {path}: {error}")
    return MalformedError(f"ledger {path}: {error}")
