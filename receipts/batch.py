"""Settlement batches: the log entries between two checkpoints and their payouts, co-signed.

Settlement layer, after the log (``receipts.tlog``) and before payment rails. A batch carries the
two signed checkpoints it spans, the entries between them, the compact range (frontier) of the
older tree, and the totals those entries move: per provider, what was released to it (its
payout); per payer, what came back to it; per provider, what its bond lost. An auditor checks all
of it from the batch file and the log's public key alone, then BLS-signs the batch digest;
signatures aggregate into one, checked against a committee with a threshold.

Batch verification, numbered once:
  (b1) decode       the file is a canonical batch v1
  (b2) checkpoints  both checkpoints are signed by the log key, same origin, sizes first < end
  (b3) frontier     the frontier folds to the older checkpoint's root
  (b4) entries      the frontier plus the entries gives the newer checkpoint's root
  (b5) totals       the totals are exactly what the entries move
  (b6) cosigners    enough distinct committee members signed the batch digest (aggregate)

    batch = make_batch(ledger)                          # entries since the last batch
    cosign = cosign_batch(batch_bytes, bls_key); verify_batch(cosigned, log_key, committee, 3)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from receipts import codec
from receipts.bls import BlsPrivateKey, BlsPublicKey, Committee, aggregate, verify_cosigned
from receipts.bls_backends import default_backend
from receipts.checkpoint import Checkpoint, unverified_checkpoint, verify_checkpoint
from receipts.codec import INT_MAX, MapReader
from receipts.digests import Digest, record_digest
from receipts.errors import (
    InputError,
    MalformedError,
    ProofError,
    SignatureError,
    UnsupportedVersionError,
)
from receipts.events import Refund, Release, Slash, decode_event
from receipts.keys import PublicKey
from receipts.merkle import EMPTY_ROOT, leaf_hash, node_hash
from receipts.store import Store

MAX_BATCH_BYTES = 256 << 20
_LIMITS = codec.Limits(max_bytes=MAX_BATCH_BYTES, max_container=1 << 22)
TOTAL_KINDS = ("payout", "returned", "slashed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Total:
    """What one account received (or, ``slashed``, lost) in one asset over a batch."""

    account: bytes
    asset: str
    kind: str  # "payout" (released to a provider), "returned" (to a payer), "slashed" (bond)
    amount: int
    count: int

    def to_wire(self) -> dict[str, object]:
        return {
            "account": self.account,
            "asset": self.asset,
            "kind": self.kind,
            "amount": self.amount,
            "count": self.count,
        }

    @classmethod
    def from_wire(cls, value: object) -> Total:
        r = MapReader(value, "total")
        total = cls(
            account=r.binary("account", 32),
            asset=r.text("asset", 64),
            kind=r.text("kind", 16),
            amount=r.integer("amount"),
            count=r.integer("count"),
        )
        r.close()
        if total.kind not in TOTAL_KINDS:
            raise MalformedError(f"unknown total kind {total.kind!r}")
        return total


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Entries [first, end) of one log, with the evidence that they are exactly those."""

    origin: str
    first: int
    end: int
    old_checkpoint: bytes | None  # None for a batch that starts at the empty log
    checkpoint: bytes
    frontier: tuple[bytes, ...]
    entries: tuple[bytes, ...]
    totals: tuple[Total, ...]

    def encode(self) -> bytes:
        wire: dict[str, object] = {
            "type": "batch",
            "version": 1,
            "origin": self.origin,
            "first": self.first,
            "end": self.end,
            "checkpoint": self.checkpoint,
            "frontier": list(self.frontier),
            "entries": list(self.entries),
            "totals": [t.to_wire() for t in self.totals],
        }
        if self.old_checkpoint is not None:
            wire["old_checkpoint"] = self.old_checkpoint
        return codec.encode(wire)

    @classmethod
    def decode(cls, data: bytes) -> Batch:  # (b1) decode
        r = MapReader(codec.decode(data, limits=_LIMITS), "batch")
        if r.text("type", 16) != "batch" or r.integer("version") != 1:
            raise UnsupportedVersionError("not a batch v1")
        batch = cls(
            origin=r.text("origin", 256),
            first=r.integer("first", 0, 2**63 - 1),
            end=r.integer("end", 0, 2**63 - 1),
            old_checkpoint=r.binary("old_checkpoint") if r.has("old_checkpoint") else None,
            checkpoint=r.binary("checkpoint"),
            frontier=tuple(codec.binaries(r.array("frontier", 64), "batch.frontier", 32)),
            entries=tuple(codec.binaries(r.array("entries", 1 << 22), "batch.entries")),
            totals=tuple(Total.from_wire(t) for t in r.array("totals", 1 << 22)),
        )
        r.close()
        return batch


def batch_digest(batch: Batch) -> Digest:
    """What auditors sign: the digest of the batch's identity and totals. The origin, the span,
    the two roots and the totals; not the file's bytes, so two encodings of one batch (say, its
    checkpoint notes carrying other witnesses' lines) are one batch with one digest."""
    old = unverified_checkpoint(batch.old_checkpoint).root if batch.old_checkpoint else EMPTY_ROOT
    return record_digest(
        "batch",
        {
            "origin": batch.origin,
            "first": batch.first,
            "end": batch.end,
            "old_root": old,
            "root": unverified_checkpoint(batch.checkpoint).root,
            "totals": [t.to_wire() for t in batch.totals],
        },
    )


def totals_of(entries: Sequence[bytes]) -> tuple[Total, ...]:
    """The payouts, returns and slashes the entries make, in a canonical order."""
    sums: dict[tuple[bytes, str, str], list[list[int]]] = defaultdict(lambda: [[0, 0]])
    for entry in entries:
        event = decode_event(entry)
        moves: list[tuple[bytes, str, int]] = []
        if isinstance(event, Release):
            moves = [(event.provider, "payout", event.amount)]
            if event.remainder:
                moves.append((event.payer, "returned", event.remainder))
        elif isinstance(event, Refund):
            moves = [(event.payer, "returned", event.amount)]
        elif isinstance(event, Slash):
            moves = [(event.provider, "slashed", event.amount)]
        for account, kind, amount in moves:
            parts = sums[account, event.asset, kind]  # type: ignore[union-attr]
            if parts[-1][0] + amount > INT_MAX:  # a total is one integer: continue in another
                parts.append([0, 0])
            parts[-1][0] += amount
            parts[-1][1] += 1
    return tuple(
        Total(account=a, asset=s, kind=k, amount=amount, count=count)
        for (a, s, k), parts in sorted(sums.items())
        for amount, count in parts
    )


def frontier(store: Store, size: int) -> list[bytes]:
    """The roots of the complete subtrees that make up the tree of ``size`` leaves, left to
    right (largest first): enough to extend the tree without its other nodes."""
    hashes, offset = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            hashes.append(store.node(level, offset >> level))
            offset += 1 << level
    return hashes


def make_batch(store: Store, origin: str, *, old: bytes | None, new: bytes) -> Batch:
    """The batch from checkpoint ``old`` (None: the empty log) to checkpoint ``new``."""
    first = unverified_checkpoint(old).size if old is not None else 0
    end = unverified_checkpoint(new).size
    if end <= first:
        raise InputError(f"nothing to batch: the newest checkpoint covers {end} entries, "
                         f"the last batch ended at {first}")  # fmt: skip
    entries = store.entries(first, end)
    return Batch(
        origin=origin,
        first=first,
        end=end,
        old_checkpoint=old,
        checkpoint=new,
        frontier=tuple(frontier(store, first)),
        entries=tuple(entries),
        totals=totals_of(entries),
    )


def check_batch(data: bytes, log_key: PublicKey) -> Batch:
    """Steps (b1)-(b5): the batch is exactly the log's entries between its checkpoints."""
    batch = Batch.decode(data)  # (b1)
    new = verify_checkpoint(batch.checkpoint, log_key, batch.origin)  # (b2)
    old = (
        verify_checkpoint(batch.old_checkpoint, log_key, batch.origin)
        if batch.old_checkpoint is not None
        else Checkpoint(origin=batch.origin, size=0, root=EMPTY_ROOT)
    )
    if (old.size, new.size) != (batch.first, batch.end) or batch.first >= batch.end:
        raise ProofError("the batch's range is not the span of its checkpoints")
    if len(batch.entries) != batch.end - batch.first:
        raise ProofError(f"the batch holds {len(batch.entries)} entries for a span of "
                         f"{batch.end - batch.first}")  # fmt: skip
    if _fold(list(batch.frontier)) != old.root or len(batch.frontier) != old.size.bit_count():
        raise ProofError("the batch's frontier is not the older checkpoint's tree")  # (b3)
    if _fold(_extend(batch.first, list(batch.frontier), batch.entries)) != new.root:
        raise ProofError("the batch's entries do not lead to the newer checkpoint")  # (b4)
    if totals_of(batch.entries) != batch.totals:  # (b5)
        raise ProofError("the batch's totals are not what its entries move")
    return batch


def _fold(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    h = stack[-1]
    for left in reversed(stack[:-1]):
        h = node_hash(left, h)
    return h


def _extend(size: int, stack: list[bytes], entries: Sequence[bytes]) -> list[bytes]:
    """Append leaves to a compact range: merge equal-sized neighbours as each leaf lands."""
    widths = [1 << level for level in reversed(range(size.bit_length())) if size >> level & 1]
    for entry in entries:
        stack.append(leaf_hash(entry))
        widths.append(1)
        while len(widths) > 1 and widths[-1] == widths[-2]:
            right, left = stack.pop(), stack.pop()
            stack.append(node_hash(left, right))
            widths.append(widths.pop() + widths.pop())
    return stack


# -- co-signatures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosignature:
    """One auditor's BLS signature over a batch digest."""

    batch: Digest
    public_key: BlsPublicKey
    signature: bytes

    def encode(self) -> bytes:
        return codec.encode(
            {
                "type": "batch-cosignature",
                "version": 1,
                "batch": self.batch.value,
                "public_key": self.public_key.raw,
                "signature": self.signature,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Cosignature:
        r = MapReader(codec.decode(data), "cosignature")
        if r.text("type", 32) != "batch-cosignature" or r.integer("version") != 1:
            raise UnsupportedVersionError("not a batch co-signature v1")
        sig = cls(
            batch=Digest(r.binary("batch", 32)),
            public_key=BlsPublicKey(raw=r.binary("public_key", 48)),
            signature=r.binary("signature", 96),
        )
        r.close()
        return sig


def cosign_batch(data: bytes, key: BlsPrivateKey, log_key: PublicKey) -> Cosignature:
    """Check the batch (b1-b5), then sign its digest: an auditor signs only what it checked."""
    digest = batch_digest(check_batch(data, log_key))
    return Cosignature(batch=digest, public_key=key.public_key, signature=key.sign(digest.value))


@dataclass(frozen=True, slots=True, kw_only=True)
class CosignedBatch:
    """A batch with one aggregate signature and the members who made it."""

    batch: bytes
    signers: tuple[BlsPublicKey, ...]
    signature: bytes

    def encode(self) -> bytes:
        return codec.encode(
            {
                "type": "cosigned-batch",
                "version": 1,
                "batch": self.batch,
                "signers": [k.raw for k in self.signers],
                "signature": self.signature,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> CosignedBatch:
        r = MapReader(codec.decode(data, limits=_LIMITS), "cosigned batch")
        if r.text("type", 32) != "cosigned-batch" or r.integer("version") != 1:
            raise UnsupportedVersionError("not a co-signed batch v1")
        signers = codec.binaries(r.array("signers", 1024), "cosigned batch.signers", 48)
        cosigned = cls(
            batch=r.binary("batch", max_len=MAX_BATCH_BYTES),
            signers=tuple(BlsPublicKey(raw=s) for s in signers),
            signature=r.binary("signature", 96),
        )
        r.close()
        return cosigned


def aggregate_cosignatures(data: bytes, cosignatures: Sequence[Cosignature]) -> CosignedBatch:
    """One aggregate of the auditors' signatures over this batch: each must be for it and
    verify alone (a bad one is named here, rather than spoiling the aggregate unnamed)."""
    digest = batch_digest(Batch.decode(data))
    if not cosignatures:
        raise InputError("no co-signatures to aggregate")
    backend = default_backend()
    for c in cosignatures:
        who = f"{c.public_key.raw.hex()[:16]}…"
        if c.batch != digest:
            raise InputError(f"the co-signature by {who} is for another batch")
        try:
            backend.verify(c.public_key.raw, digest.value, c.signature)
        except SignatureError as e:
            raise SignatureError(f"the co-signature by {who} does not verify") from e
    return CosignedBatch(
        batch=data,
        signers=tuple(c.public_key for c in cosignatures),
        signature=aggregate([c.signature for c in cosignatures]),
    )


def verify_batch(
    data: bytes, log_key: PublicKey, committee: Committee, threshold: int
) -> tuple[Batch, CosignedBatch]:
    """All of (b1)-(b6) on a co-signed batch; returns it or raises the typed error."""
    cosigned = CosignedBatch.decode(data)
    batch = check_batch(cosigned.batch, log_key)
    verify_cosigned(  # (b6) cosigners
        committee,
        cosigned.signers,
        batch_digest(batch).value,
        cosigned.signature,
        threshold,
    )
    return batch, cosigned
