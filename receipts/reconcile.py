"""Reconciliation: check a ledger against its own invariants and rebuild it from its log alone.

Settlement layer, beside ``receipts.ledger``; what an auditor, a restarted service or the crash
test runs. ``audit`` checks, for every asset, that balances plus open holds equal the supply
(deposits plus bonds: nothing created or lost), that every request is in exactly one known
state with a hold that fits it, and that the log's tree matches its entries. ``replay`` applies
a log's entries, in order, to a fresh store through the same event code the ledger uses;
``state_of`` gives a comparable picture of either.

    audit(ledger.store)                                      # raises StateError if broken
    state_of(replay(ledger.store.entries(0, n))) == state_of(ledger.store)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from receipts.checkpoint import unverified_checkpoint
from receipts.errors import NoteError, StateError
from receipts.events import decode_event
from receipts.merkle import leaf_hash, node_hash
from receipts.store import STATES, RequestRow, SqliteStore, Store
from receipts.tlog import Log

_OPEN = ("held", "claimed", "disputed")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerState:
    """Everything the ledger's money and requests are, in a comparable form."""

    supply: tuple[tuple[str, int], ...]
    balances: tuple[tuple[bytes, str, str, int], ...]
    requests: tuple[tuple[object, ...], ...]
    batches: tuple[tuple[int, int, bytes], ...]
    references: tuple[bytes, ...]
    log_size: int


def state_of(store: Store) -> LedgerState:
    return LedgerState(
        supply=tuple(sorted(store.assets().items())),
        balances=tuple(
            sorted((b.account, b.asset, b.kind, b.amount) for b in store.balances() if b.amount)
        ),
        requests=tuple(sorted(_request_state(r) for r in store.requests())),
        batches=tuple(store.batches()),
        references=tuple(store.references()),
        log_size=store.size(),
    )


def _request_state(r: RequestRow) -> tuple[object, ...]:
    """Every column of a request row: a moved deadline or a swapped payer must show."""
    return (
        r.id.value, r.payer, r.nonce, r.asset, r.max_amount, r.hold, r.expires_at, r.provider,
        r.state, r.receipt and r.receipt.value, r.claimed_by, r.amount, r.window_ends, r.verdict,
        r.evidence and r.evidence.value, r.slashed,
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """What ``audit`` checked, for reports."""

    assets: dict[str, int]
    requests: dict[str, int]
    log_size: int


def audit(store: Store, *, check_log: bool = True) -> Audit:
    """Raise ``StateError`` naming the first broken invariant; else a summary."""
    supply = store.assets()
    held: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for r in store.requests():
        if r.state not in STATES:
            raise StateError(f"request {r.id} is in an unknown state {r.state!r}")
        counts[r.state] += 1
        if r.state in _OPEN and r.hold != r.max_amount:
            raise StateError(f"request {r.id} is {r.state} but holds {r.hold} of {r.max_amount}")
        if r.state not in _OPEN and r.hold != 0:
            raise StateError(f"request {r.id} is {r.state} but still holds {r.hold}")
        if r.amount is not None and r.amount > r.max_amount:
            raise StateError(f"request {r.id} claims {r.amount}, over its maximum")
        held[r.asset] += r.hold
    total: dict[str, int] = defaultdict(int)
    for b in store.balances():
        if b.amount < 0:
            raise StateError(f"a {b.kind} balance of {b.asset} is negative")
        total[b.asset] += b.amount
    for asset in set(supply) | set(total) | set(held):
        if supply.get(asset, 0) != total[asset] + held[asset]:
            raise StateError(
                f"{asset}: balances {total[asset]} + holds {held[asset]} != supply "
                f"{supply.get(asset, 0)} (money was created or lost)"
            )
    size = store.size()
    if check_log:
        _check_log(store, size)
    return Audit(assets=dict(supply), requests=dict(counts), log_size=size)


def _check_log(store: Store, size: int) -> None:
    """Every stored node, not only the root's: proofs read the inner nodes, and a damaged one
    would make the log serve failing proofs of honest entries."""
    entries = store.entries(0, size)
    if len(entries) != size:
        raise StateError(f"the log has {len(entries)} entries but claims {size}")
    if not entries or store.meta("open") != entries[0]:
        raise StateError("the ledger's live rules are not its log's entry 0")
    log = Log(store, "")
    for checkpoint_size, note in store.checkpoints():
        if checkpoint_size > size or log.root(checkpoint_size) != _root_of(note):
            raise StateError(f"the checkpoint of size {checkpoint_size} is not this log's tree")
    level, hashes = 0, [leaf_hash(e) for e in entries]
    while hashes:
        for index, expected in enumerate(hashes):
            if store.node(level, index) != expected:
                raise StateError(f"the log's stored node ({level}, {index}) does not match its "
                                 "entries")  # fmt: skip
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]
        level += 1


def _root_of(note: bytes) -> bytes:
    try:
        return unverified_checkpoint(note).root
    except NoteError as e:
        raise StateError(f"a stored checkpoint does not parse: {e}") from e


def replay(entries: Iterable[bytes]) -> SqliteStore:
    """A fresh in-memory store holding what the entries, applied in order, make; every
    signature the entries carry is checked again on the way."""
    store = SqliteStore.create(":memory:")
    with store.transaction():
        for entry in entries:
            event = decode_event(entry)
            event.check()
            event.apply(store)
            store.append(entry)
    return store
