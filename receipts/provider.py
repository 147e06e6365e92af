"""The provider: run a model under a pinned profile and issue a signed receipt (issuance layer).

A ``Provider`` holds the signing key, the price, the runtime settings and the injected clock,
randomness and runner factory. ``Provider.session(model)`` opens one runner and one meter plan
for a model and reuses them for every request; ``run`` validates the inputs, runs, digests
inputs and outputs, meters, and signs.

    provider = Provider(PrivateKey.load("provider.pem"), price=Price(unit_price=1, asset="credit"))
    issued = provider.session(load_model("mlp.onnx")).run({"x": x})
    issued.write(Path("out"))          # out/outputs.npz and out/receipt.rcpt, each atomic

Given the payer's signed request (``run(..., request=signed)``), the session checks it before
running: a request expired by the provider's clock, or whose terms (models, inputs, provider,
asset, maximum amount) do not cover the run, raises and nothing is run or signed. Otherwise the
receipt names the request, and ``receipts.request.check_binding`` holds for it.

Given an ``attester`` (``receipts.attachments.Attester``: a Nitro enclave's, or the simulator),
each receipt file carries an attestation beside the signed payload: per-receipt mode asks for a
document whose user_data is the receipt id; key mode asks once for a document naming the
signing key (re-asked after ``key_attestation_refresh_ms``) and attaches it to every receipt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from receipts.attachments import Attachment, Attester
from receipts.digests import Digest, TensorMapDigest, Value, flat_tensors
from receipts.effects import Clock, RandomBytes, SystemClock, system_random
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.errors import MalformedError
from receipts.files import Content, StorageError, write_together
from receipts.keys import Signer
from receipts.meter import Meter, MeterPlan, Price
from receipts.model import LoadedModel
from receipts.receipt import Receipt, receipt_id
from receipts.request import (
    SignedRequest,
    check_amount,
    check_binding,
    check_request_open,
    check_terms,
)
from receipts.runtime import OrtRunner, RunnerFactory, RuntimeSettings
from receipts.tensorfiles import npz_writer
from receipts.trace import TraceCommitment, TraceLeaf, trace_root, write_trace
from receipts.tracing import TracedRun, Tracer

RECEIPT_FILE = "receipt.rcpt"
OUTPUTS_FILE = "outputs.npz"
TRACE_FILE = "trace.rtrc"
NONCE_BYTES = 16
ATTEST_MODES = ("receipt", "key")
# Inputs at least this large are hashed on a helper thread while the model runs (hashlib and
# onnxruntime both release the GIL). Measured on a 2-vCPU machine: a 2 MiB input gained ~1% of the
# run (1.072x -> 1.062x); a 64 KiB input gained nothing, the hand-off costing what it saved.
_PARALLEL_HASH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """What a traced run keeps for its trace file: the leaves and every node's outputs."""

    model: Digest
    leaves: list[TraceLeaf]
    run: TracedRun

    def writer(self) -> Callable[[BinaryIO], None]:
        def write(f: BinaryIO) -> None:
            values = [self.run.node_values(leaf.index) for leaf in self.leaves]
            write_trace(f, model=self.model, leaves=self.leaves, values=values)

        return write


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    """A receipt as issued: the signed envelope, the receipt it carries, and the outputs (and,
    for traced runs, the trace)."""

    envelope: Envelope
    receipt: Receipt
    outputs: dict[str, Value]
    trace: Trace | None = None

    @property
    def receipt_id(self) -> Digest:
        return receipt_id(self.envelope.payload)

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()

    def write(self, out_dir: Path) -> list[Path]:
        """Write ``outputs.npz``, ``receipt.rcpt`` (and ``trace.rtrc`` for traced runs) into
        ``out_dir``, all staged before any replaces an older file, so a failure leaves no
        half-written or mismatched set."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create {out_dir}: {e.strerror or e}") from e
        files: list[tuple[Path, Content]] = [(out_dir / OUTPUTS_FILE, npz_writer(self.outputs))]
        if self.trace is not None:
            files.append((out_dir / TRACE_FILE, self.trace.writer()))
        files.append((out_dir / RECEIPT_FILE, self.to_bytes()))
        write_together(files)
        return [path for path, _ in files]


class Provider:
    """Issues receipts with one key, one price and one runtime profile."""

    def __init__(
        self,
        signer: Signer,
        *,
        price: Price | None = None,
        settings: RuntimeSettings | None = None,
        clock: Clock | None = None,
        random_bytes: RandomBytes = system_random,
        runner_factory: RunnerFactory = OrtRunner,
        attester: Attester | None = None,
        attest_mode: str = "receipt",
        key_attestation_refresh_ms: int = 3_600_000,
    ) -> None:
        if attest_mode not in ATTEST_MODES:
            raise MalformedError(f"attest mode must be one of {', '.join(ATTEST_MODES)}")
        self.signer = signer
        self.price = price or Price()
        self.settings = settings or RuntimeSettings()
        self.clock: Clock = clock or SystemClock()
        self.random_bytes = random_bytes
        self.runner_factory = runner_factory
        self.attester = attester
        self.attest_mode = attest_mode
        self.key_attestation_refresh_ms = key_attestation_refresh_ms
        self._key_attestation: tuple[int, Attachment] | None = None

    def attestation(self, envelope: Envelope) -> Attachment | None:
        """The evidence to attach to ``envelope`` (None without an attester)."""
        if self.attester is None:
            return None
        if self.attest_mode == "receipt":
            return self.attester.attest(user_data=receipt_id(envelope.payload).value)
        now = self.clock.now_ms()
        cached = self._key_attestation
        if cached is None or now - cached[0] >= self.key_attestation_refresh_ms:
            cached = (now, self.attester.attest(public_key=self.signer.public_key.to_der()))
            self._key_attestation = cached
        return cached[1]

    def session(self, model: LoadedModel) -> ModelSession:
        """Open a runner and a meter plan for ``model``; reuse it for every request."""
        return ModelSession(self, model)


class ModelSession:
    """One model served by one provider: a runner, a meter plan, and the issuing steps."""

    def __init__(self, provider: Provider, model: LoadedModel) -> None:
        self.provider = provider
        self.model = model
        self.runner = provider.runner_factory(model, provider.settings)
        self.meter_plan = MeterPlan(model)
        self._pool: ThreadPoolExecutor | None = None
        self._tracer: Tracer | None = None

    @property
    def tracer(self) -> Tracer:
        """The traced runner, built on first use (``disable`` optimization only)."""
        if self._tracer is None:
            p = self.provider
            self._tracer = Tracer(self.model, p.settings, runner_factory=p.runner_factory)
        return self._tracer

    def run(
        self,
        inputs: Mapping[str, Any],
        *,
        request: SignedRequest | None = None,
        trace: bool = False,
        inject_fault: str | None = None,
    ) -> Issued:
        """Validate, run, digest, meter and sign; raises ``InputError`` kin on bad input.

        ``request``: the payer's signed request; a run it does not cover raises
        ``ExpiredError`` or ``BindingError`` before anything runs or is signed.
        ``trace=True`` records every node's outputs and commits to them in the receipt.
        ``inject_fault`` names a node (or ``#INDEX``) whose outputs the provider corrupts while
        still signing the honest model digest: a drill for auditors' pipelines, never for
        production."""
        p = self.provider
        arrays = self.model.check_inputs(inputs)
        if request is None:
            input_digest = self._start_input_digest(arrays)
        else:
            input_digest = self._admit(request, TensorMapDigest.of(arrays))
        traced: Trace | None = None
        commitment: TraceCommitment | None = None
        if trace or inject_fault is not None:
            tracer = self.tracer
            fault = tracer.view.find(inject_fault) if inject_fault is not None else None
            run = tracer.run(arrays, fault=fault, pool=self._hash_pool(2) if trace else None)
            outputs = run.outputs
            if trace:
                leaves = run.leaves(self._hash_pool(2))
                traced = Trace(model=self.model.digest, leaves=leaves, run=run)
                commitment = TraceCommitment(root=trace_root(leaves), nodes=len(leaves))
        else:
            outputs = self.runner.run(arrays)
        if not outputs:
            raise MalformedError("the model produced no outputs")
        inputs_digest = input_digest()
        # The shapes the receipt states, so the provider meters exactly as a verifier will.
        units = self.meter_plan.units(inputs_digest.tensor_shapes())
        receipt = Receipt(
            provider=p.signer.public_key.key_id,
            nonce=p.random_bytes(NONCE_BYTES),
            request=None if request is None else request.id,
            issued_at=p.clock.now_ms(),
            model=self.model.digest,
            inputs=inputs_digest,
            outputs=TensorMapDigest.of(outputs),
            runtime=self.runner.profile,
            meter=Meter.of(units, p.price),
            trace=commitment,
        )
        if request is not None:
            # The terms were checked before the run; this catches an expiry passed while running.
            check_binding(request, receipt)
        envelope = Envelope.sign(RECEIPT_PAYLOAD_TYPE, receipt.encode(), p.signer)
        evidence = p.attestation(envelope)
        if evidence is not None:
            envelope = envelope.attach(evidence)
        return Issued(envelope=envelope, receipt=receipt, outputs=outputs, trace=traced)

    def _admit(
        self, request: SignedRequest, inputs: TensorMapDigest
    ) -> Callable[[], TensorMapDigest]:
        """Refuse a run ``request`` does not cover before running it: expiry by the provider's
        clock, then model, inputs, provider key and asset, then the metered amount (metering
        reads only the input shapes, so it needs no run)."""
        p, terms = self.provider, request.request
        check_request_open(terms, p.clock.now_ms())
        check_terms(
            terms,
            model=self.model.digest,
            inputs=inputs.digest,
            provider=p.signer.public_key.key_id,
            asset=p.price.asset,
        )
        units = self.meter_plan.units(inputs.tensor_shapes())
        check_amount(terms, p.price.amount(units))
        return lambda: inputs

    def _hash_pool(self, workers: int) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="receipts-hash")
        return self._pool

    def _start_input_digest(self, arrays: dict[str, Value]) -> Callable[[], TensorMapDigest]:
        size = sum(a.nbytes for a in flat_tensors(arrays).values() if a is not None)
        if size < _PARALLEL_HASH_BYTES:
            digest = TensorMapDigest.of(arrays)
            return lambda: digest
        return self._hash_pool(2).submit(TensorMapDigest.of, arrays).result
