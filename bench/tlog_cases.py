"""Proofs from a log of 1,000,000 entries: generation and verification, each under 1 ms.

* inclusion: ``Log.inclusion_path(i, size)`` and ``Log.prove(i)`` (a c2sp.org/tlog-proof@v1
  text against the stored checkpoint, signed by the log key) on a ``SqliteStore`` file; baseline:
  ``MerkleTree.inclusion_proof(i)`` over the same leaves in memory. ``verify_inclusion_proof``
  of those texts; baseline: ``merkle.verify_inclusion`` over the same paths (no text, no
  checkpoint signature).
* consistency: ``Log.prove_consistency(m)`` and ``verify_consistency_proof`` against a checkpoint
  of size m signed by the same key; baselines: ``MerkleTree.consistency_proof(m)`` and
  ``merkle.verify_consistency``.

Indices and old sizes are drawn once from a seeded generator; a call takes the next one (both
sides walk the same sequence). Goal: each under 1 ms (absolute); the ratio shows what the
storage and the text format cost over the bare Merkle arithmetic.

The log is built with ``SqliteStore.append`` in one transaction (entry i = SHA-256 of i as 8
big-endian bytes; ~15 s) and kept in ``bench/out`` for later runs. Before use, cached or not, it
is checked against ``receipts.merkle``: the roots of a few prefixes (the whole log included)
against a ``MerkleTree`` over the same leaves, a few entries, and the stored checkpoint's
signature and root; a cache that fails is rebuilt. Before timing, each subject is checked once:
the stored paths equal the in-memory tree's, the texts verify, and a text with one hash changed
is refused.

    with open_big_log(Path("bench/out")) as big:
        results = run_measures(proof_measures(big), plan)
"""

from __future__ import annotations

import hashlib
import itertools
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from bench.harness import Call, Case
from bench.measures import Absolute, Measure
from receipts import PrivateKey, ReceiptsError
from receipts.checkpoint import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    sign_checkpoint,
    verify_checkpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from receipts.effects import seeded
from receipts.errors import ProofError
from receipts.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from receipts.store import SCHEMA_VERSION, SqliteStore
from receipts.tlog import Log

LOG_SIZE = 1_000_000
ORIGIN = "bench.example/log"
DRAWS = 512  # indices (and old sizes) drawn per run; calls cycle through them
UNDER = Absolute(under_s=1e-3)
T = TypeVar("T")


def entry(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def log_key() -> PrivateKey:
    return PrivateKey.generate(random_bytes=seeded(b"bench log key"))


@dataclass(frozen=True, slots=True, kw_only=True)
class BigLog:
    """The stored log, its in-memory twin and the material the proofs need."""

    path: Path
    log: Log
    tree: MerkleTree
    key: PrivateKey
    checkpoint: bytes  # the stored one, of the whole log
    built_s: float | None  # None when the cached file was reused

    @property
    def size(self) -> int:
        return self.tree.size


@contextmanager
def open_big_log(cache: Path, size: int = LOG_SIZE) -> Iterator[BigLog]:
    """The log of ``size`` entries from ``cache`` (built there if missing or wrong)."""
    key = log_key()
    tree = MerkleTree([leaf_hash(entry(i)) for i in range(size)])
    path = cache / f"tlog-{size}-schema{SCHEMA_VERSION}.db"
    built = None
    store = _reuse(path, tree, key)
    if store is None:
        print(f"  building the {size:,}-entry log in {path} ...", file=sys.stderr, flush=True)
        built = _build(path, size, key)
        store = SqliteStore.open_file(path)
        _check(Log(store, ORIGIN), tree, key)
    try:
        log = Log(store, ORIGIN)
        yield BigLog(
            path=path,
            log=log,
            tree=tree,
            key=key,
            checkpoint=log.latest_checkpoint(),
            built_s=built,
        )
    finally:
        store.close()


def _build(path: Path, size: int, key: PrivateKey) -> float:
    """Append every entry in one transaction, sign a checkpoint, then move the file in place."""
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for stale in (path, partial):
        for suffix in ("", "-wal", "-shm"):
            stale.with_name(stale.name + suffix).unlink(missing_ok=True)
    store = SqliteStore.create(partial, synchronous="NORMAL")
    try:
        with store.transaction():
            for i in range(size):
                store.append(entry(i))
        Log(store, ORIGIN).checkpoint(key)
    finally:
        store.close()  # the last connection: SQLite folds the WAL into the file
    partial.replace(path)
    return time.perf_counter() - start


def _reuse(path: Path, tree: MerkleTree, key: PrivateKey) -> SqliteStore | None:
    if not path.is_file():
        return None
    try:
        store = SqliteStore.open_file(path)
    except (ReceiptsError, sqlite3.Error):
        return None
    try:
        _check(Log(store, ORIGIN), tree, key)
    except (AssertionError, ReceiptsError, sqlite3.Error) as e:
        store.close()
        print(f"  cached log {path} is not the expected one ({e}); rebuilding", file=sys.stderr)
        return None
    return store


def _check(log: Log, tree: MerkleTree, key: PrivateKey) -> None:
    """The stored log is the tree ``receipts.merkle`` builds over the same entries."""
    n = tree.size
    if log.size() != n:
        raise AssertionError(f"the log holds {log.size()} entries, not {n}")
    for size in sorted({1, 2, 3, 1000, 65_537, n // 3, n - 1, n}):
        if log.root(size) != tree.root(size):
            raise AssertionError(f"the stored root of the first {size} entries is wrong")
    for i in (0, 1, n // 2, n - 1):
        if log.store.entries(i, i + 1) != [entry(i)]:
            raise AssertionError(f"entry {i} is not SHA-256({i})")
    head = verify_checkpoint(log.latest_checkpoint(), key.public_key, ORIGIN)
    if (head.size, head.root) != (n, tree.root()):
        raise AssertionError("the stored checkpoint is not the whole log's")


# -- measures -------------------------------------------------------------------------------


def _draws(seed: int, lo: int, hi: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(lo, hi) for _ in range(DRAWS)]


def _each(values: Sequence[T], fn: Callable[[T], object]) -> Call:
    """A call that applies ``fn`` to the next value, cycling (each call its own walk)."""
    walk = itertools.cycle(values)
    return lambda: fn(next(walk))


def _refused(verify: Call) -> None:
    try:
        verify()
    except ProofError:
        return
    raise AssertionError("a proof with a changed hash was accepted")


def _checked_inclusion(big: BigLog, indices: list[int]) -> list[bytes]:
    """Proof texts for ``indices``; raises unless they match the tree and verify."""
    public, texts = big.key.public_key, []
    for i in indices:
        if big.log.inclusion_path(i, big.size) != big.tree.inclusion_proof(i):
            raise AssertionError(f"the stored path of entry {i} is not the tree's")
        text = big.log.prove(i)
        proven = verify_inclusion_proof(text, public, origin=ORIGIN)
        if (proven.index, proven.entry) != (i, entry(i)):
            raise AssertionError(f"the proof of entry {i} proves {proven.index}")
        texts.append(text)
    proof = InclusionProof.parse(texts[0])
    bad = replace(proof, hashes=(bytes(32), *proof.hashes[1:])).to_text()
    _refused(lambda: verify_inclusion_proof(bad, public, origin=ORIGIN))
    return texts


def _old_checkpoints(big: BigLog, sizes: list[int]) -> dict[int, bytes]:
    signer = big.key
    return {
        m: sign_checkpoint(Checkpoint(origin=ORIGIN, size=m, root=big.tree.root(m)), signer)
        for m in set(sizes)
    }


def _checked_consistency(big: BigLog, sizes: list[int], old: dict[int, bytes]) -> list[bytes]:
    public, texts = big.key.public_key, []
    for m in sizes:
        if big.log.consistency_path(m, big.size) != big.tree.consistency_proof(m):
            raise AssertionError(f"the stored consistency path from {m} is not the tree's")
        text = big.log.prove_consistency(m)
        verify_consistency_proof(text, old[m], public, origin=ORIGIN)
        texts.append(text)
    proof = ConsistencyProof.parse(texts[0])
    bad = replace(proof, hashes=(bytes(32), *proof.hashes[1:])).to_text()
    _refused(lambda: verify_consistency_proof(bad, old[sizes[0]], public, origin=ORIGIN))
    return texts


def proof_measures(big: BigLog) -> list[Measure]:
    n, log, tree, public = big.size, big.log, big.tree, big.key.public_key
    indices, sizes = _draws(1, 0, n), _draws(2, 1, n)
    texts = _checked_inclusion(big, indices)
    old = _old_checkpoints(big, sizes)
    consistency = _checked_consistency(big, sizes, old)
    root = tree.root()
    paths = [(leaf_hash(entry(i)), i, tree.inclusion_proof(i)) for i in indices]
    old_paths = [(m, tree.root(m), tree.consistency_proof(m)) for m in sizes]
    megabytes = big.path.stat().st_size / 1e6
    how = "reused from bench/out" if big.built_s is None else f"built in {big.built_s:.1f} s"
    common = (
        f"{n:,} entries of 32 B, SqliteStore file {megabytes:.0f} MB ({how}), warm page cache; "
        f"{DRAWS} indices / old sizes drawn with a fixed seed, call i takes the next; "
        f"paths of {min(len(p) for _, _, p in paths)}-{max(len(p) for _, _, p in paths)} hashes; "
    )
    in_memory = "MerkleTree.inclusion_proof, in memory"

    def case(
        name: str, baseline: tuple[str, Call], subject: tuple[str, Call], notes: str
    ) -> Measure:
        return Measure(
            case=Case(
                name=name,
                baseline_label=baseline[0],
                subject_label=subject[0],
                baseline=baseline[1],
                subject=subject[1],
                goal=None,
                notes=common + notes,
            ),
            goal=UNDER,
        )

    text_size = sum(len(t) for t in texts) / len(texts)
    signed = "the checkpoint signed by an Ed25519 log key (seeded); goal: the subject under 1 ms"
    return [
        case(
            "tlog: Log.inclusion_path(i, size), 1M entries",
            (in_memory, _each(indices, tree.inclusion_proof)),
            ("Log.inclusion_path", _each(indices, lambda i: log.inclusion_path(i, n))),
            "one stored node per level (SELECT by primary key), plus the log size; checked: "
            "equal to the in-memory paths; goal: the subject under 1 ms",
        ),
        case(
            "tlog: Log.prove(i), tlog-proof text",
            (in_memory, _each(indices, tree.inclusion_proof)),
            ("Log.prove (latest checkpoint)", _each(indices, log.prove)),
            f"the stored checkpoint read and parsed, the entry read, the path, the text "
            f"(~{text_size:.0f} B with the entry as extra data); {signed}",
        ),
        case(
            "tlog: verify_inclusion_proof",
            (
                "merkle.verify_inclusion, same path",
                _each(paths, lambda p: verify_inclusion(p[0], p[1], n, p[2], root)),
            ),
            (
                "checkpoint.verify_inclusion_proof",
                _each(texts, lambda t: verify_inclusion_proof(t, public, origin=ORIGIN)),
            ),
            f"steps 1-4: parse the text, the checkpoint's note signature (Ed25519), the entry, "
            f"the path; checked: the texts verify, one with a changed hash is refused; {signed}",
        ),
        case(
            "tlog: Log.prove_consistency(m)",
            (
                "MerkleTree.consistency_proof, in memory",
                _each(sizes, tree.consistency_proof),
            ),
            ("Log.prove_consistency", _each(sizes, log.prove_consistency)),
            f"old size m drawn in [1, {n:,}); checked: equal to the in-memory proofs; {signed}",
        ),
        case(
            "tlog: verify_consistency_proof",
            (
                "merkle.verify_consistency, same proof",
                _each(old_paths, lambda p: verify_consistency(p[0], n, p[1], root, p[2])),
            ),
            (
                "checkpoint.verify_consistency_proof",
                _each(
                    list(zip(consistency, sizes, strict=True)),
                    lambda c: verify_consistency_proof(c[0], old[c[1]], public, origin=ORIGIN),
                ),
            ),
            "steps 1-5, two checkpoint signatures (the old one signed beforehand for each m); "
            f"checked: the texts verify, one with a changed hash is refused; {signed}",
        ),
    ]
