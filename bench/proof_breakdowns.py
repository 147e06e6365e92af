"""Breakdowns of the proof and co-signature rows: their parts timed on their own (see
``bench/breakdowns.py`` for the method; rows overlap and need not add up).

    tlog(big, rounds)        # stored path lookups, checkpoint read and parse, text, signature
    cosign(cosigned, rounds) # batch checks (b1-b5), possession proofs, the aggregate check
"""

from __future__ import annotations

import itertools

from bench.breakdowns import FLOOR, Breakdown, breakdown_of
from bench.cosign_cases import THRESHOLD, Cosigned, ed25519_committee
from bench.harness import Call
from bench.tlog_cases import ORIGIN, BigLog, entry
from receipts.batch import Batch, check_batch, totals_of
from receipts.bls import default_backend, verify_cosigned
from receipts.checkpoint import (
    InclusionProof,
    unverified_checkpoint,
    verify_checkpoint,
    verify_inclusion_proof,
)
from receipts.merkle import leaf_hash, verify_inclusion


def tlog(big: BigLog, rounds: int) -> Breakdown:
    n, log, store, public = big.size, big.log, big.log.store, big.key.public_key
    i = n // 3 + 12_345  # one index: every row works on the same proof
    path = log.inclusion_path(i, n)
    text = log.prove(i)
    proof = InclusionProof.parse(text)
    note = big.checkpoint
    root = unverified_checkpoint(note).root
    leaf = leaf_hash(entry(i))
    # Sibling subtrees that are complete (stored): the lookups a path makes, one at a time.
    levels = itertools.cycle([h for h in range(len(path)) if (((i >> h) ^ 1) + 1) << h <= n])

    def sibling() -> bytes:
        level = next(levels)
        return store.node(level, (i >> level) ^ 1)

    calls: list[tuple[str, Call]] = [
        ("Log.inclusion_path(i, size)", lambda: log.inclusion_path(i, n)),
        ("  SqliteStore.size(): SELECT max(idx), once a path", store.size),
        (
            f"  SqliteStore.node(level, idx): one lookup of {len(path)} a path",
            sibling,
        ),
        ("Log.prove(i)", lambda: log.prove(i)),
        ("  Log.latest_checkpoint(): every stored checkpoint read", log.latest_checkpoint),
        (
            "  unverified_checkpoint(note): note and checkpoint parsed",
            lambda: unverified_checkpoint(note),
        ),
        ("  InclusionProof.to_text()", proof.to_text),
        ("verify_inclusion_proof", lambda: verify_inclusion_proof(text, public, origin=ORIGIN)),
        ("  InclusionProof.parse(text) (1)", lambda: InclusionProof.parse(text)),
        (
            "  verify_checkpoint: note signature (2)",
            lambda: verify_checkpoint(note, public, ORIGIN),
        ),
        (FLOOR + "merkle.verify_inclusion (4)", lambda: verify_inclusion(leaf, i, n, path, root)),
    ]
    return breakdown_of(
        "tlog: proofs in a log of 1,000,000 entries",
        f"each alone, entry {i:,}, warm page cache; proof text {len(text)} B",
        calls,
        rounds=rounds,
        block=0.02,
    )


def cosign(c: Cosigned, rounds: int) -> Breakdown:
    batch = c.batch.batch
    decoded = Batch.decode(batch)
    signers, digest, signature = c.batch.signers, c.digest, c.batch.signature
    member = c.committee.members[0]
    keys = [k.raw for k in signers]
    backend = default_backend()
    calls: list[tuple[str, Call]] = [
        ("check_batch (b1-b5)", lambda: check_batch(batch, c.log_key)),
        ("  Batch.decode (b1)", lambda: Batch.decode(batch)),
        ("  totals_of(entries) (b5: every entry decoded)", lambda: totals_of(decoded.entries)),
        (
            "verify_cosigned (b6; steps 1-5)",
            lambda: verify_cosigned(c.committee, signers, digest, signature, THRESHOLD),
        ),
        (f"  BlsMember.verify_pop, one member (x{len(signers)})", member.verify_pop),
        (
            f"  fast_aggregate_verify, {len(keys)} keys",
            lambda: backend.fast_aggregate_verify(keys, digest, signature),
        ),
        (FLOOR + f"{len(signers)} x Ed25519PublicKey.verify", ed25519_committee(digest)),
    ]
    return breakdown_of(
        "cosign: verify_batch (arkworks)",
        f"each alone; batch of {c.entries} entries, {len(batch) / 1e3:.0f} kB",
        calls,
        rounds=rounds,
        block=0.05,
    )
