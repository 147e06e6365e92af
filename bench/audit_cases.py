"""The audit family (issue 7): what an audit costs per receipt, on populations cached in bench/out.

* throughput: the same audit (``run_audit`` over receipts already read into memory; signature
  and digests on every receipt, re-execution on a seeded 10% sample, at least 5 per provider)
  with ``LocalExecutor(2)`` against ``LocalExecutor(1)`` (same pool, same pickling, same
  start-up) and against ``InlineExecutor``. Every call starts its own pool, as ``receipts
  audit`` does (its workers spawned, each importing the package: part of the cost).
* harness overhead: ``run_audit`` with ``InlineExecutor`` against a bare loop over the same
  receipts that reads each receipt's inputs and outputs from the store by digest (the digests
  and the sample taken from the audit, outside timing; the model loaded once, as the audit's
  worker context keeps it) and calls ``Verifier.check`` with the verifier the audit would use.
  A second row hands the loop the tensors already in memory (the verifier alone).
* signature+digest audit of a large population: ``run_audit`` over ``folder_source`` (files
  read inside the call, as ``receipts audit FOLDER`` does), sample fraction 0 and
  ``min_per_provider`` 0, on the fastest executor of the throughput rows.

Populations are ``fixtures.population.make_population`` (4 providers, the cheater faulting
every 25th receipt of its own, one input object corrupted), generated once under
``bench/out/audit-population-v<VERSION>-4x<N>/`` with a manifest (version, size, generation time,
the cheated and corrupted receipt ids); a folder whose manifest or receipt count is not the
expected one is generated again. Before timing, every subject is checked once: the audit finds
exactly the corrupted receipt unchecked and, when it re-executes, exactly the cheated receipts
of its sample failed; every executor gives the same items; the bare loop agrees receipt by
receipt.

    population = cached_population(Path("bench/out"), per_provider=1000)
    work = AuditWork.of(population, fraction=0.1, min_per_provider=5)
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.harness import Case, Goal
from fixtures.population import CLOCK_MS, NAMES, make_population
from receipts.audit import (
    AuditPolicy,
    AuditRun,
    Executor,
    SamplingRule,
    Submitted,
    folder_source,
    run_audit,
)
from receipts.digests import Digest, Value
from receipts.effects import FixedClock
from receipts.envelope import Envelope
from receipts.errors import ObjectStoreError
from receipts.executors import InlineExecutor, LocalExecutor
from receipts.model import LoadedModel
from receipts.objects import ObjectStore
from receipts.receipt import Receipt, receipt_id
from receipts.report import Report
from receipts.scorecard import Outcome
from receipts.verifier import Verifier

# Bump when fixtures/population.py or the receipt format changes: cached populations go stale.
VERSION = "1"
MANIFEST = "manifest.json"
SEED = b"bench-audit"
AT_MS = CLOCK_MS + 60_000  # receipts are judged a minute after they were issued
THROUGHPUT_GOAL = Goal(op=">=", value=1.7)
OVERHEAD_GOAL = Goal(op="<=", value=1.1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedPopulation:
    root: Path
    folder: Path  # receipts, one folder per provider
    store: Path
    per_provider: int
    receipts: int
    cheated: frozenset[str]
    corrupted: str
    built_s: float  # generation time, measured when the folder was generated
    built_utc: str
    reused: bool


def cached_population(cache: Path, per_provider: int) -> CachedPopulation:
    """The population of ``4 x per_provider`` receipts in ``cache`` (generated if missing)."""
    root = cache / f"audit-population-v{VERSION}-{len(NAMES)}x{per_provider}"
    found = _reuse(root, per_provider)
    if found is not None:
        return found
    n = len(NAMES) * per_provider
    print(f"  generating {n:,} receipts in {root} (once) ...", file=sys.stderr, flush=True)
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    made = make_population(partial, per_provider=per_provider)
    built_s = time.perf_counter() - start
    manifest = {
        "version": VERSION,
        "providers": list(NAMES),
        "per_provider": per_provider,
        "receipts": made.receipts,
        "cheated": sorted(made.cheated),
        "corrupted": made.corrupted,
        "generation_seconds": round(built_s, 2),
        "generated_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    partial.rename(root)
    found = _reuse(root, per_provider)
    assert found is not None, "a population just generated does not read back"
    return replace(found, reused=False)


def _reuse(root: Path, per_provider: int) -> CachedPopulation | None:
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    expected = {"version": VERSION, "providers": list(NAMES), "per_provider": per_provider}
    if any(manifest.get(k) != v for k, v in expected.items()):
        print(f"  cached population {root} is not the expected one", file=sys.stderr)
        return None
    folder = root / "receipts"
    files = sum(1 for _ in folder.rglob("*.rcpt"))
    if files != manifest["receipts"] or files != len(NAMES) * per_provider:
        print(f"  cached population {root} holds {files} receipts", file=sys.stderr)
        return None
    return CachedPopulation(
        root=root,
        folder=folder,
        store=root / "store",
        per_provider=per_provider,
        receipts=files,
        cheated=frozenset(manifest["cheated"]),
        corrupted=manifest["corrupted"],
        built_s=float(manifest["generation_seconds"]),
        built_utc=str(manifest["generated_utc"]),
        reused=True,
    )


# -- the audit and its check ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditWork:
    """One audit of a population: its receipts read into memory, the rule and the policy."""

    population: CachedPopulation
    sources: tuple[Submitted, ...]
    rule: SamplingRule
    policy: AuditPolicy

    @classmethod
    def of(
        cls,
        population: CachedPopulation,
        *,
        fraction: float,
        min_per_provider: int,
        in_memory: bool = True,
    ) -> AuditWork:
        """The audit of ``population``; ``in_memory``: its receipt files read now, else the
        caller hands ``audit`` a source."""
        rule = SamplingRule(fraction=fraction, min_per_provider=min_per_provider)
        return cls(
            population=population,
            sources=tuple(folder_source(population.folder)) if in_memory else (),
            rule=rule,
            policy=AuditPolicy(min_per_provider=min_per_provider),
        )

    @property
    def receipts(self) -> int:
        return self.population.receipts

    def audit(self, executor: Executor, sources: Iterable[Submitted] | None = None) -> AuditRun:
        """``run_audit`` of ``sources`` (default: the receipts in memory) on ``executor``."""
        return run_audit(
            self.sources if sources is None else sources,
            store=self.population.store,
            rule=self.rule,
            seed=SEED,
            policy=self.policy,
            executor=executor,
            at_ms=AT_MS,
        )

    def describe(self) -> str:
        p = self.population
        return (
            f"{self.receipts:,} receipts ({len(NAMES)} providers x {p.per_provider:,}), "
            f"sample: {self.rule.describe()}"
        )


def check_run(run: AuditRun, work: AuditWork) -> None:
    """The audit found what the population holds: the corrupted receipt unchecked, the cheated
    receipts of its sample failed (when the sample re-executes), everything else passed."""
    p = work.population
    if len(run.items) != p.receipts or run.duplicates:
        raise AssertionError(f"{len(run.items)} items, {len(run.duplicates)} duplicates")
    reexec = "reexec" in work.policy.sample_rungs
    for item in run.items:
        if item.receipt_id == p.corrupted:
            expected = Outcome.UNCHECKED
        elif reexec and item.sampled and item.receipt_id in p.cheated:
            expected = Outcome.FAILED
        else:
            expected = Outcome.PASSED
        if item.outcome is not expected:
            raise AssertionError(f"{item.source}: {item.outcome.value}, not {expected.value}")
    sampled = sum(item.sampled for item in run.items)
    wanted = sum(work.rule.sizes(dict.fromkeys(NAMES, p.per_provider)).values())
    if sampled != wanted:
        raise AssertionError(f"{sampled} receipts sampled, not {wanted}")


def checked_executors(work: AuditWork) -> dict[str, AuditRun]:
    """One run per executor of the throughput rows, each checked, all with the same items."""
    runs = {
        "inline": work.audit(InlineExecutor()),
        "local1": work.audit(LocalExecutor(1)),
        "local2": work.audit(LocalExecutor(2)),
    }
    for name, run in runs.items():
        check_run(run, work)
        if (run.items, run.duplicates) != (runs["inline"].items, runs["inline"].duplicates):
            raise AssertionError(f"the {name} executor's audit differs from the inline one")
    return runs


def throughput_cases(work: AuditWork) -> list[Case]:
    """Rows 8(a): 2 worker processes against 1, and against this process alone."""
    local1, local2 = LocalExecutor(1), LocalExecutor(2)
    inline = InlineExecutor()
    note = (
        f"{work.describe()}; receipts in memory, a new pool per call; "
        "figures per receipt, ratio = receipts/s over receipts/s"
    )
    return [
        Case(
            name="audit throughput, 2 workers vs 1",
            baseline_label="run_audit, LocalExecutor(1)",
            subject_label="run_audit, LocalExecutor(2)",
            baseline=lambda: work.audit(local1),
            subject=lambda: work.audit(local2),
            goal=THROUGHPUT_GOAL,
            throughput=True,
            notes=note,
        ),
        Case(
            name="audit throughput, 2 workers vs inline",
            baseline_label="run_audit, InlineExecutor (this process, no pool)",
            subject_label="run_audit, LocalExecutor(2)",
            baseline=lambda: work.audit(inline),
            subject=lambda: work.audit(local2),
            goal=None,  # shown beside the goal row: the pool's start-up and pickling count here
            throughput=True,
            notes=note,
        ),
    ]


# -- the bare verifier loop -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Direct:
    """What a bare loop needs, made outside timing: per receipt its bytes, its object digests
    and whether the audit sampled it; the model, loaded once; a verifier per sampled/not."""

    items: tuple[tuple[bytes, Digest, Digest, bool], ...]
    store: ObjectStore
    model: LoadedModel
    verifiers: dict[bool, Verifier]


def direct_of(work: AuditWork, run: AuditRun) -> Direct:
    """The receipts of ``run`` in its order (distinct receipts sorted by id), with its sample."""
    sampled = {item.receipt_id: item.sampled for item in run.items}
    rows = []
    models = set()
    for submitted in sorted(work.sources, key=lambda s: _rid(s.data)):
        receipt = Receipt.decode(Envelope.from_bytes(submitted.data).payload)
        models.add(receipt.model)
        flag = sampled[f"sha256:{_rid(submitted.data).hex()}"]
        rows.append((submitted.data, receipt.inputs.digest, receipt.outputs.digest, flag))
    if len(models) != 1:
        raise AssertionError(f"the population holds {len(models)} models, not one")
    store = ObjectStore.open(work.population.store)
    clock = FixedClock(AT_MS)
    verifiers = {
        flag: Verifier(work.policy.verifier_policy(sampled=flag), clock=clock)
        for flag in (False, True)
    }
    return Direct(
        items=tuple(rows), store=store, model=store.model(models.pop()), verifiers=verifiers
    )


def _rid(data: bytes) -> bytes:
    return receipt_id(Envelope.from_bytes(data).payload).value


def direct_from_store(d: Direct) -> list[Report | None]:
    """Per receipt: its inputs and outputs read from the store by digest (re-digested, as the
    audit's step a5 does), then ``Verifier.check``; ``None`` for an object that cannot be read."""
    reports: list[Report | None] = []
    for data, inputs, outputs, flag in d.items:
        try:
            x, y = d.store.tensors(inputs), d.store.tensors(outputs)
        except ObjectStoreError:
            reports.append(None)
            continue
        reports.append(d.verifiers[flag].check(data, model=d.model, inputs=x, outputs=y))
    return reports


def loaded_tensors(d: Direct) -> list[tuple[dict[str, Value], dict[str, Value]] | None]:
    loaded: list[tuple[dict[str, Value], dict[str, Value]] | None] = []
    for _, inputs, outputs, _flag in d.items:
        try:
            loaded.append((d.store.tensors(inputs), d.store.tensors(outputs)))
        except ObjectStoreError:
            loaded.append(None)
    return loaded


def direct_in_memory(
    d: Direct, tensors: Sequence[tuple[dict[str, Value], dict[str, Value]] | None]
) -> Callable[[], list[Report | None]]:
    def call() -> list[Report | None]:
        reports: list[Report | None] = []
        for (data, _, _, flag), pair in zip(d.items, tensors, strict=True):
            if pair is None:
                reports.append(None)
                continue
            reports.append(d.verifiers[flag].check(data, model=d.model, inputs=pair[0],
                                                   outputs=pair[1]))  # fmt: skip
        return reports

    return call


def check_direct(reports: Sequence[Report | None], run: AuditRun) -> None:
    """The bare loop agrees with the audit receipt by receipt (both in receipt-id order)."""
    outcomes = [item.outcome for item in sorted(run.items, key=lambda i: i.receipt_id or "")]
    if len(outcomes) != len(reports):
        raise AssertionError(f"{len(reports)} reports for {len(outcomes)} receipts")
    for n, (outcome, report) in enumerate(zip(outcomes, reports, strict=True)):
        mine = Outcome.UNCHECKED if report is None else Outcome.PASSED if report else Outcome.FAILED
        if mine is not outcome:
            raise AssertionError(f"receipt {n}: the loop says {mine.value}, the audit {outcome}")


def overhead_cases(work: AuditWork, run: AuditRun) -> list[Case]:
    """Rows 8(b): the audit harness against the verifier called directly."""
    d = direct_of(work, run)
    check_direct(direct_from_store(d), run)
    in_memory = direct_in_memory(d, loaded_tensors(d))
    check_direct(in_memory(), run)
    inline = InlineExecutor()
    note = f"{work.describe()}; receipts in memory, model loaded once on both sides"
    return [
        Case(
            name="audit harness overhead vs Verifier.check",
            baseline_label="loop: store.tensors(inputs), store.tensors(outputs), Verifier.check",
            subject_label="run_audit, InlineExecutor",
            baseline=lambda: direct_from_store(d),
            subject=lambda: work.audit(inline),
            goal=OVERHEAD_GOAL,
            notes=f"{note}; both read and re-digest each receipt's objects from the store",
        ),
        Case(
            name="audit vs Verifier.check on tensors in memory",
            baseline_label="loop: Verifier.check on tensors loaded before timing",
            subject_label="run_audit, InlineExecutor",
            baseline=in_memory,
            subject=lambda: work.audit(inline),
            goal=None,
            notes=f"{note}; the audit's store reads count against it here",
        ),
    ]
