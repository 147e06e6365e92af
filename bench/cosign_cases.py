"""Co-signed batches: BLS verification for a committee of 16, threshold 11, in one run.

* ``batch.verify_batch`` on a co-signed batch (16 signers of a committee of 16, threshold 11)
  with the default (arkworks) backend: (b1)-(b5) on the batch, then (b6) ``verify_cosigned``;
* ``bls.verify_cosigned`` alone (arkworks): every signer's proof of possession (16 pairing
  checks) and one FastAggregateVerify;
* the same with ``PyEccBackend``, the slow reference: two calls only (~6 s each).

Baseline for all three: 16 Ed25519 verifications (cryptography) of the same batch digest, one per
member, what a committee of Ed25519 signers would cost. No goal: the rows say what a batch's
co-signature check costs and what the reference costs beside the fast backend.

The batch is made once, outside timing: the first block of the settlement workload held,
claimed and settled on a ledger of its own, a checkpoint signed by the log key, the batch of
every entry so far (``Ledger.make_batch``), each of 16 auditors (keys seeded) checking it and
co-signing (``cosign_batch``), the co-signatures aggregated. Checked before timing: the batch
verifies, 10 signers are refused (``ThresholdError``), and an aggregate over another message is
refused (``SignatureError``).

    cosigned = cosigned_batch(folder, work)
    results = run_measures(cosign_measures(cosigned), plan)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.harness import Call, Case
from bench.measures import Measure
from bench.settle_cases import LedgerBlocks, Workload
from receipts import PrivateKey, PublicKey, SignatureError
from receipts.batch import (
    Batch,
    CosignedBatch,
    aggregate_cosignatures,
    batch_digest,
    cosign_batch,
    verify_batch,
)
from receipts.bls import BlsPrivateKey, Committee, aggregate, verify_cosigned
from receipts.bls_pyecc import PyEccBackend
from receipts.effects import seeded
from receipts.errors import ThresholdError

MEMBERS, THRESHOLD = 16, 11


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosigned:
    """A co-signed batch file and what a verifier holds: the log key and the committee."""

    data: bytes  # the CosignedBatch encoding
    batch: CosignedBatch
    log_key: PublicKey
    committee: Committee
    auditors: tuple[BlsPrivateKey, ...]
    entries: int
    requests: int

    @property
    def digest(self) -> bytes:
        return batch_digest(Batch.decode(self.batch.batch)).value


def cosigned_batch(folder: Path, work: Workload) -> Cosigned:
    folder.mkdir(parents=True, exist_ok=True)
    settled = LedgerBlocks(folder / "ledger.db", work, synchronous="NORMAL")
    try:
        settled()  # the first block: held, claimed, released
        ledger = settled.ledger
        log_key = PrivateKey.generate(random_bytes=seeded(b"bench ledger log key"))
        ledger.log.checkpoint(log_key)
        data = ledger.make_batch()
    finally:
        settled.close()
    auditors = tuple(
        BlsPrivateKey.generate(random_bytes=seeded(f"bench auditor {i}".encode()))
        for i in range(MEMBERS)
    )
    committee = Committee(members=tuple(a.member() for a in auditors))
    cosignatures = [cosign_batch(data, a, log_key.public_key) for a in auditors]
    batch = aggregate_cosignatures(data, cosignatures)
    return Cosigned(
        data=batch.encode(),
        batch=batch,
        log_key=log_key.public_key,
        committee=committee,
        auditors=auditors,
        entries=len(Batch.decode(data).entries),
        requests=work.block,
    )


def _check(c: Cosigned) -> None:
    verify_batch(c.data, c.log_key, c.committee, THRESHOLD)
    few = c.batch.signers[: THRESHOLD - 1]
    partial = aggregate([a.sign(c.digest) for a in c.auditors[: THRESHOLD - 1]])
    try:
        verify_cosigned(c.committee, few, c.digest, partial, THRESHOLD)
    except ThresholdError:
        pass
    else:
        raise AssertionError(f"{len(few)} co-signers passed a threshold of {THRESHOLD}")
    other = aggregate([a.sign(b"another batch") for a in c.auditors])
    try:
        verify_cosigned(c.committee, c.batch.signers, c.digest, other, THRESHOLD)
    except SignatureError:
        return
    raise AssertionError("an aggregate signature over another message was accepted")


def ed25519_committee(message: bytes) -> Call:
    """The baseline: one Ed25519 verification of ``message`` per member, distinct keys."""
    keys = [
        ed25519.Ed25519PrivateKey.from_private_bytes(seeded(f"bench ed25519 {i}".encode())(32))
        for i in range(MEMBERS)
    ]
    pairs = [(k.public_key(), k.sign(message)) for k in keys]

    def verify_all() -> None:
        for public, signature in pairs:
            public.verify(signature, message)

    return verify_all


def _case(c: Cosigned, name: str, subject: tuple[str, Call], notes: str) -> Measure:
    return Measure(
        case=Case(
            name=name,
            baseline_label=f"{MEMBERS} x Ed25519PublicKey.verify of the batch digest",
            subject_label=subject[0],
            baseline=ed25519_committee(c.digest),
            subject=subject[1],
            goal=None,
            notes=f"committee of {MEMBERS} (keys seeded), all {len(c.batch.signers)} signed, "
            f"threshold {THRESHOLD}; {notes}",
        )
    )


def cosign_measures(c: Cosigned) -> list[Measure]:
    _check(c)
    signers, digest, signature = c.batch.signers, c.digest, c.batch.signature
    return [
        _case(
            c,
            "cosign: verify_batch, 16 signers, threshold 11 (arkworks)",
            ("batch.verify_batch", lambda: verify_batch(c.data, c.log_key, c.committee, THRESHOLD)),
            f"batch of {c.entries} log entries ({len(c.data) / 1e3:.0f} kB: {c.requests} requests "
            "held, claimed, released); b1 decode, b2 two checkpoint signatures (Ed25519), b3-b4 "
            "frontier and entries folded to the roots, b5 totals (every entry decoded), b6 "
            f"{MEMBERS} proofs of possession + FastAggregateVerify; checked: verifies, "
            f"{THRESHOLD - 1} signers refused, a signature over another message refused",
        ),
        _case(
            c,
            "cosign: verify_cosigned only (arkworks)",
            (
                "bls.verify_cosigned",
                lambda: verify_cosigned(c.committee, signers, digest, signature, THRESHOLD),
            ),
            f"steps 1-5: threshold, signers, count, {MEMBERS} proofs of possession (a pairing "
            "check each), FastAggregateVerify (one pairing check)",
        ),
    ]


def reference_measures(c: Cosigned) -> list[Measure]:
    """The py_ecc reference: time it once or twice only (the plan makes two calls)."""
    signers, digest, signature = c.batch.signers, c.digest, c.batch.signature
    backend = PyEccBackend()
    return [
        _case(
            c,
            "cosign: verify_cosigned, py_ecc reference",
            (
                "bls.verify_cosigned(backend=PyEccBackend())",
                lambda: verify_cosigned(
                    c.committee, signers, digest, signature, THRESHOLD, backend=backend
                ),
            ),
            "the reference backend, two calls (warm-up and one timed round): the first call "
            "would raise if the reference disagreed with arkworks",
        )
    ]
