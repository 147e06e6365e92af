"""Audits at scale: read a population of receipts, sample it, check it, say what was found.

Audit layer, above the verifier (``receipts.verifier``) and the content-addressed store
(``receipts.objects``), below the scorecards (``receipts.scorecard``), their renderers
(``receipts.audit_report``) and the CLI. Executors (``receipts.executors``) run the per-receipt
checks in this process, a local process pool or a Dask cluster; the result does not depend on
which, nor on the worker count or the order results come back in.

Audit steps, numbered once:
  (a1) read     each receipt file (``*.rcpt`` under a folder) or each claim in a ledger's log;
                one that cannot be read is reported unchecked
  (a2) decode   its envelope and receipt decode: the receipt id, provider key id and metered
                amount (one that does not is unchecked and attributed to no provider)
  (a3) dedupe   a receipt id seen before is a duplicate: reported with its first source and
                audited once
  (a4) sample   per provider, the n_p receipts whose keyed hash SHA-256(domain, seed, receipt id)
                ranks lowest (``SamplingRule``): a function of the set of receipts and the seed
  (a5) objects  the receipt's model, inputs and outputs are read from the store by the digests it
                holds, each re-hashed on the way (missing or corrupt: unchecked, with the digest)
  (a6) rungs    signature and digests on every receipt; on the sample, re-execution, or a spot
                check where the receipt's trace file is found beside it; the tee and zk rungs
                where the receipt carries their evidence and the policy can check it; the
                verifier's own numbered steps decide

    rule = SamplingRule(fraction=0.05, min_per_provider=5)
    run = run_audit(folder_source(Path("receipts/")), store=Path("store/"), rule=rule,
                    seed=b"2026-q4", policy=AuditPolicy(), executor=LocalExecutor(2),
                    at_ms=clock.now_ms())
    run.items        # one ItemResult per distinct receipt, sorted; run.duplicates
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from receipts import codec
from receipts.audit_policy import AuditPolicy, load_policy
from receipts.audit_sources import Submitted, folder_source, ledger_source, trace_beside
from receipts.digests import Digest
from receipts.effects import FixedClock
from receipts.envelope import Envelope
from receipts.errors import (
    MalformedError,
    ObjectStoreError,
    ReceiptsError,
)
from receipts.model import LoadedModel
from receipts.objects import ObjectStore
from receipts.receipt import RECEIPT_TYPE, Receipt, receipt_id
from receipts.report import Report, Status
from receipts.sampling import SamplingRule, choose_sample, sample_key
from receipts.scorecard import AuditReport, Duplicate, Finding, ItemResult, Outcome
from receipts.trace import TraceReader
from receipts.verifier import Verifier

__all__ = [  # the audit's API; the policy, sources and sampling live in their own modules
    "AuditPolicy",
    "AuditRun",
    "Executor",
    "SamplingRule",
    "Submitted",
    "Task",
    "WorkerConfig",
    "check_batch",
    "check_task",
    "choose_sample",
    "folder_source",
    "identify",
    "ledger_source",
    "load_policy",
    "report_of",
    "run_audit",
    "sample_key",
    "trace_beside",
    "unchecked_task",
]  # fmt: skip

SPOT_DOMAIN = b"inference-receipts/v1/audit-spot\x00"  # the spot check's node seed, per receipt


# --- (a5)-(a6) one receipt ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    """One distinct decoded receipt for a worker: ``index`` orders results, nothing else."""

    index: int
    source: str
    data: bytes
    sampled: bool
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every worker needs, as plain values (pickled to processes and Dask workers): the
    store's path (the same on every worker), the policy, the instant receipts are judged at,
    so every worker gives the same verdict, and the seed spot checks draw their nodes from."""

    store: str
    policy: AuditPolicy
    at_ms: int
    seed: bytes = b""


class _Context:
    """A worker's state for one config: the store, one verifier per kind of receipt, and
    recently used models (parsing a model and hashing its weights is the costly part)."""

    MODELS = 8

    def __init__(self, config: WorkerConfig) -> None:
        self.store = ObjectStore.open(Path(config.store))
        self.policy, self.clock = config.policy, FixedClock(config.at_ms)
        self.verifiers: dict[tuple[bool, frozenset[str], bool], Verifier] = {}
        self.models: OrderedDict[Digest, LoadedModel] = OrderedDict()

    def verifier(self, *, sampled: bool, evidence: frozenset[str], traced: bool) -> Verifier:
        """One verifier per kind of receipt (sampled or not, which evidence it carries, spot
        checked or not), so meter plans and onnxruntime sessions are shared across them."""
        key = (sampled, evidence, traced)
        if key not in self.verifiers:
            policy = self.policy.verifier_policy(sampled=sampled, evidence=evidence, traced=traced)
            self.verifiers[key] = Verifier(policy, clock=self.clock)
        return self.verifiers[key]

    def model(self, digest: Digest) -> LoadedModel:
        if digest in self.models:
            self.models.move_to_end(digest)
            return self.models[digest]
        loaded = self.store.model(digest)
        self.models[digest] = loaded
        if len(self.models) > self.MODELS:
            self.models.popitem(last=False)
        return loaded


_CONTEXTS: dict[WorkerConfig, _Context] = {}
_CONTEXT_LOCK = threading.Lock()


def _context(config: WorkerConfig) -> _Context:
    with _CONTEXT_LOCK:
        context = _CONTEXTS.get(config)
        if context is None:
            _CONTEXTS.clear()  # one audit at a time per worker
            context = _CONTEXTS[config] = _Context(config)
        return context


def check_batch(config: WorkerConfig, tasks: Sequence[Task]) -> list[tuple[int, ItemResult]]:
    """Check ``tasks`` (the executors' unit of work); each result is keyed by its task's index,
    so a batch run twice (a worker died after finishing it) is still counted once. A check
    that raises (a defect, not a verdict) makes that receipt unchecked, with the error, and
    the audit of the others goes on."""
    results = []
    for task in tasks:
        try:
            result = check_task(config, task)
        except Exception as e:  # noqa: BLE001 - reported per receipt, never hidden
            result = unchecked_task(task, f"the check raised {type(e).__name__}: {e}")
        results.append((task.index, result))
    return results


def check_task(config: WorkerConfig, task: Task) -> ItemResult:
    """Steps (a5) and (a6) for one receipt; never raises for anything the receipt or the store
    holds (a failure is the result)."""
    context = _context(config)
    try:
        envelope = Envelope.from_bytes(task.data)
        receipt, rid, key_id = _decoded(envelope)
    except ReceiptsError as e:  # its id and provider read, the rest of it does not decode
        return _unattributed(task.source, "a2 decode", str(e))
    evidence = frozenset(a.type for a in envelope.attachments) & config.policy.evidence
    base = _base(task, receipt, rid, key_id)
    try:
        model = context.model(receipt.model)
        inputs = context.store.tensors(receipt.inputs.digest)
        outputs = context.store.tensors(receipt.outputs.digest)
    except ObjectStoreError as e:
        finding = Finding("audit", "a5 objects", str(e))
        return ItemResult(**base, outcome=Outcome.UNCHECKED, rungs=(), findings=(finding,))
    spot = task.sampled and config.policy.sample_rung(traced=task.trace is not None) == (
        "spot-check"
    )
    verifier = context.verifier(sampled=task.sampled, evidence=evidence, traced=spot)
    if not spot:
        report = verifier.check(task.data, model=model, inputs=inputs, outputs=outputs)
        return _from_report(base, report)
    assert task.trace is not None
    try:
        trace = TraceReader.open(Path(task.trace))
    except ReceiptsError as e:
        finding = Finding("audit", "a5 objects", f"trace {task.trace}: {e}")
        return ItemResult(**base, outcome=Outcome.UNCHECKED, rungs=(), findings=(finding,))
    with trace:
        seed = hashlib.sha256(SPOT_DOMAIN + config.seed + rid).digest()[:16]
        report = verifier.check(
            task.data, model=model, inputs=inputs, outputs=outputs, trace=trace, seed=seed
        )
    return _from_report(base, report)


def identify(data: bytes) -> tuple[bytes, str]:
    """Step (a2), cheaply: the receipt id and the provider key id of a receipt file, from its
    envelope and the payload's canonical map (the whole receipt is decoded by the worker,
    which reports one that does not decode as unattributed, like this step)."""
    envelope = Envelope.from_bytes(data)
    fields = codec.decode(envelope.payload)
    if not isinstance(fields, dict) or fields.get("type") != RECEIPT_TYPE:
        raise MalformedError("the payload is not a receipt")
    provider = fields.get("provider")
    if not isinstance(provider, bytes) or len(provider) != 32:
        raise MalformedError("the receipt names no provider key id")
    return receipt_id(envelope.payload).value, provider.hex()


def _decoded(envelope: Envelope) -> tuple[Receipt, bytes, str]:
    receipt = Receipt.decode(envelope.payload)
    return receipt, receipt_id(envelope.payload).value, receipt.provider.hex()


def _base(task: Task, receipt: Receipt, rid: bytes, key_id: str) -> dict[str, Any]:
    return {
        "source": task.source,
        "receipt_id": f"sha256:{rid.hex()}",
        "provider": key_id,
        "asset": receipt.meter.price.asset,
        "amount": receipt.meter.amount,
        "sampled": task.sampled,
        "model": str(receipt.model),
        "inputs": str(receipt.inputs.digest),
        "outputs": str(receipt.outputs.digest),
    }


def _from_report(base: dict[str, Any], report: Report) -> ItemResult:
    findings = tuple(
        Finding(rung.rung, step.step, step.reason)
        for rung in report.rungs
        for step in rung.failures()
    )
    missing = tuple(
        Finding(name, "-", "required rung did not run")
        for name in report.required
        if report.rung(name).status is Status.NOT_RUN
    )
    return ItemResult(
        **base,
        outcome=Outcome.PASSED if report else Outcome.FAILED,
        rungs=report.required,
        findings=findings + (missing if not report and not findings else ()),
    )


# --- the whole audit ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRun:
    """What an audit found: one ``ItemResult`` per distinct receipt (and per unreadable or
    undecodable file), sorted by ``ItemResult.sort_key``; the duplicates; and what it ran
    under. A pure function of the receipts, the store, the policy, the rule, the seed and
    ``at_ms``."""

    items: tuple[ItemResult, ...]
    duplicates: tuple[Duplicate, ...]
    seed: bytes
    rule: SamplingRule
    policy: AuditPolicy
    at_ms: int
    workers: str


class Executor(Protocol):
    """Runs ``check_batch`` over tasks somewhere and gives back every task's result by index;
    ``done(n)`` is called as n more tasks finish (for progress)."""

    def describe(self) -> str: ...

    def start(self) -> None:
        """Reach the workers (``SchedulerError`` if they cannot be), before any receipt is read."""
        ...

    def run(
        self, config: WorkerConfig, tasks: Sequence[Task], done: Callable[[int], None]
    ) -> dict[int, ItemResult]: ...


def run_audit(
    sources: Iterable[Submitted],
    *,
    store: Path,
    rule: SamplingRule,
    seed: bytes,
    policy: AuditPolicy,
    executor: Executor,
    at_ms: int,
    progress: Callable[[int, int], None] | None = None,
) -> AuditRun:
    """Steps (a1)-(a6) over ``sources``; receipts are judged as of ``at_ms`` (time-dependent
    checks: issued in the future, too old). ``progress(done, total)`` follows the checks."""
    # Absolute: pool and Dask workers open it from their own working folder.
    store = store.absolute()
    ObjectStore.open(store)  # a path that is not a store is bad input before anything runs
    executor.start()
    unchecked: list[ItemResult] = []
    first: dict[bytes, Submitted] = {}
    duplicates: list[Duplicate] = []
    by_provider: dict[str, list[bytes]] = {}
    for submitted in sources:
        if submitted.problem is not None:  # (a1)
            unchecked.append(_unattributed(submitted.source, "a1 read", submitted.problem))
            continue
        try:  # (a2)
            rid, key_id = identify(submitted.data)
        except ReceiptsError as e:
            unchecked.append(_unattributed(submitted.source, "a2 decode", str(e)))
            continue
        if rid in first:  # (a3)
            duplicates.append(Duplicate(submitted.source, f"sha256:{rid.hex()}", first[rid].source))
            continue
        first[rid] = submitted
        by_provider.setdefault(key_id, []).append(rid)
    chosen = choose_sample(by_provider, rule, seed)  # (a4)
    tasks = [
        Task(index, submitted.source, submitted.data, rid in chosen, submitted.trace)
        for index, (rid, submitted) in enumerate(sorted(first.items()))
    ]
    finished = 0

    def done(n: int) -> None:
        nonlocal finished
        finished = min(finished + n, len(tasks))
        if progress is not None:
            progress(finished, len(tasks))

    config = WorkerConfig(str(store), policy, at_ms, seed)
    results = executor.run(config, tasks, done)  # (a5)-(a6)
    lost = [t for t in tasks if t.index not in results]
    if lost:  # an executor must account for every task; this is a bug if it happens
        raise AssertionError(f"{len(lost)} receipts came back from no worker")
    items = sorted([*results.values(), *unchecked], key=ItemResult.sort_key)
    return AuditRun(
        items=tuple(items),
        duplicates=tuple(sorted(duplicates, key=lambda d: (d.receipt_id, d.source))),
        seed=seed,
        rule=rule,
        policy=policy,
        at_ms=at_ms,
        workers=executor.describe(),
    )


def _unattributed(source: str, step: str, reason: str) -> ItemResult:
    return ItemResult(
        source=source,
        receipt_id=None,
        provider=None,
        asset=None,
        amount=0,
        sampled=False,
        outcome=Outcome.UNCHECKED,
        rungs=(),
        findings=(Finding("audit", step, reason),),
    )


def unchecked_task(task: Task, reason: str) -> ItemResult:
    """The result of a task no worker could finish (a worker died on it every time, or the
    check itself raised something unexpected): unchecked, with the reason."""
    try:
        receipt, rid, key_id = _decoded(Envelope.from_bytes(task.data))
    except ReceiptsError:  # decoded once already; kept total
        return _unattributed(task.source, "a6 rungs", reason)
    base = _base(task, receipt, rid, key_id)
    finding = Finding("audit", "a6 rungs", reason)
    return ItemResult(**base, outcome=Outcome.UNCHECKED, rungs=(), findings=(finding,))


def report_of(run: AuditRun, source: str) -> AuditReport:
    """The ``AuditReport`` (``receipts.scorecard``) of ``run``, its source described as
    ``source``; the instant receipts were judged at goes into the policy summary. Which
    executor ran it does not: the report is the same bytes whoever ran it."""
    return AuditReport(
        items=run.items,
        source=source,
        sampling=run.rule.describe(),
        seed=_seed_text(run.seed),
        policy={**run.policy.describe(), "judged_at_ms": run.at_ms},
        duplicates=run.duplicates,
        confidence=run.policy.confidence,
    )


def _seed_text(seed: bytes) -> str | bytes:
    """The seed as the user typed it when it is text (reports show it for replay), else bytes."""
    try:
        text = seed.decode("utf-8")
    except UnicodeDecodeError:
        return seed
    return text if text.isprintable() else seed
