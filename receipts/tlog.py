"""The receipts log: the settlement ledger's append-only RFC 6962 log, read back with proofs.

Settlement layer, over ``receipts.store``. Every ledger event is appended (entry bytes = the
event's canonical encoding) in the transaction that applies it; the store keeps each complete
power-of-two subtree's hash as it completes, so any root, inclusion proof or consistency proof
costs O(log n) stored-node lookups. ``checkpoint`` signs the current tree head as a C2SP
checkpoint (``receipts.checkpoint``), and the proofs come out in the C2SP text formats that
``verify_inclusion_proof`` / ``verify_consistency_proof`` check with only the checkpoint and
the log's public key.

    log = Log(store)
    note = log.checkpoint(log_key)                      # signed tree head of the whole log
    text = log.prove(entry=7)                           # c2sp.org/tlog-proof@v1 text
"""

from __future__ import annotations

from collections.abc import Callable

from receipts.checkpoint import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    sign_checkpoint,
    unverified_checkpoint,
)
from receipts.errors import InputError, PolicyError, StateError
from receipts.keys import Signer
from receipts.merkle import EMPTY_ROOT, consistency_path, inclusion_path, node_hash
from receipts.store import Store


class Log:
    """Read-side of the ledger's log: roots, proofs and signed checkpoints."""

    def __init__(self, store: Store, origin: str) -> None:
        self.store = store
        self.origin = origin

    def size(self) -> int:
        return self.store.size()

    def root(self, size: int | None = None) -> bytes:
        n = self.size() if size is None else size
        return self._subtree_roots()(0, n)

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= index < size:
            raise InputError(f"entry {index} is not in a log of {size} entries")
        return inclusion_path(index, size, self._subtree_roots())

    def consistency_path(self, old: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= old <= size:
            raise InputError(f"old size {old} is not within the log's {size} entries")
        return consistency_path(old, size, self._subtree_roots())

    def checkpoint(self, key: Signer) -> bytes:
        """Sign the current tree head and store it (a transaction of its own); returns the note.

        (k1) the log is signed by one key: the first checkpoint pins it, another is refused;
        (k2) the newest stored checkpoint's root is still the tree's root at its size (a
        rewritten history would make this checkpoint inconsistent with it: refused);
        (k3) a size keeps one root (the store refuses a second note for a size)."""
        with self.store.transaction():
            pinned = self.store.meta("log_key")
            if pinned is None:
                self.store.set_meta("log_key", key.public_key.raw)
            elif pinned != key.public_key.raw:  # (k1)
                raise PolicyError("this log is signed by another key (see `ledger history`)")
            size = self.size()
            stored = self.store.checkpoints()
            if stored:  # (k2)
                old_size, old_note = stored[-1]
                if unverified_checkpoint(old_note).root != self.root(old_size):
                    raise StateError(
                        f"the log's tree at size {old_size} no longer has the root it signed: "
                        "its history was rewritten"
                    )
            cp = Checkpoint(origin=self.origin, size=size, root=self.root(size))
            note = sign_checkpoint(cp, key)
            self.store.add_checkpoint(size, note)  # (k3)
        return note

    def latest_checkpoint(self) -> bytes:
        stored = self.store.checkpoints()
        if not stored:
            raise InputError("the log has no checkpoint yet (run `receipts log checkpoint`)")
        return stored[-1][1]

    def prove(self, entry: int, checkpoint: bytes | None = None) -> bytes:
        """A tlog-proof of ``entry`` against ``checkpoint`` (default: the latest), carrying the
        entry's bytes as its extra data so the proof is self-contained."""
        note = checkpoint if checkpoint is not None else self.latest_checkpoint()
        head = unverified_checkpoint(note)
        if not 0 <= entry < head.size:
            raise InputError(f"entry {entry} is not covered by the checkpoint of size {head.size}")
        data = self.store.entries(entry, entry + 1)[0]
        hashes = self.inclusion_path(entry, head.size)
        return InclusionProof(
            index=entry, hashes=tuple(hashes), checkpoint=note, extra=data
        ).to_text()

    def prove_consistency(self, old_size: int, checkpoint: bytes | None = None) -> bytes:
        """The proof that the log at ``old_size`` is a prefix of the one in ``checkpoint``."""
        note = checkpoint if checkpoint is not None else self.latest_checkpoint()
        head = unverified_checkpoint(note)
        hashes = self.consistency_path(old_size, head.size)
        return ConsistencyProof(old_size=old_size, hashes=tuple(hashes), checkpoint=note).to_text()

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size():
            raise InputError(f"size {size} is beyond the log's {self.size()} entries")

    def _subtree_roots(self) -> Callable[[int, int], bytes]:
        """MTH(D[lo:hi]) for hi <= size() from stored complete subtrees, memoized per call: an
        aligned power-of-two block is one lookup; any other range is a right edge of the tree."""
        memo: dict[tuple[int, int], bytes] = {}

        def subtree(lo: int, hi: int) -> bytes:
            width = hi - lo
            if width == 0:
                return EMPTY_ROOT
            if width & (width - 1) == 0 and lo % width == 0:
                level = width.bit_length() - 1
                return self.store.node(level, lo >> level)
            if (lo, hi) not in memo:
                k = 1 << ((width - 1).bit_length() - 1)
                memo[lo, hi] = node_hash(subtree(lo, lo + k), subtree(lo + k, hi))
            return memo[lo, hi]

        return subtree
