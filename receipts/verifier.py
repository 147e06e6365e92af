"""The verifier: check a receipt file rung by rung and decide (verification layer).

``Verifier.check`` returns a ``Report`` and never raises for a failed step; ``Verifier.verify``
returns the verified receipt or raises the typed error of the first failure. The procedure is
numbered once, here; the same step names appear in reports, tests and docs/receipt-v1.md.

signature rung
  (1) decode     the file is one canonical envelope within the size limit
  (2) type       envelope type, version and payload type are known
  (3) signature  one signature, by an allowed key, over PAE(payload type, exact payload bytes)
  (4) payload    the signed payload is a canonical receipt v1 naming the signing key
  (5) time       issued_at is not in the future (beyond skew) nor older than the policy allows
digests rung (each step runs when its material is supplied)
  (6) model      the supplied model's digest is the receipt's
  (7) inputs     the supplied inputs' tensor-map digest is the receipt's
  (8) outputs    the supplied outputs' tensor-map digest is the receipt's
  (9) meter      compute units recomputed from the model and the receipt's input shapes
reexec rung
  (10) runtime   a runner with the receipt's settings; equal runtime identity -> bit-exact
  (11) outputs   re-run on the inputs: digests equal (bit-exact) or values within tolerance
spot-check rung (with a trace file; see receipts.spotcheck)
  (12) trace     the trace is the receipt's and its leaves hold the receipt's outputs
  (13) sample    k nodes drawn from the verifier's seed and the receipt id
  (14) nodes     each sampled node opened, re-run alone, and Freivalds-checked
tee rung (with a TEE policy; see receipts.tee and, for N1-N6, receipts.nitro)
  (15) attachments  the evidence items; unknown types reported, never counted
  (16) attestation  a Nitro document verifies at its own time, to a pinned root, PCRs as expected
  (17) binding      its user_data is the receipt id, or its public_key the receipt's signing key
zk rung (with a zk policy, the inputs and the outputs; see circuits.zk_rung)
  (18) attachment   a groth16-bn254 proof item is attached and decodes
  (19) manifest     the circuit manifest is signed by a trusted key, for the receipt's model, names
                    the supplied verification key, and is the one the proof names
  (20) binding      the proof's public signals are the packing of the supplied outputs and inputs,
                    whose tensor-map digests are the receipt's
  (21) proof        the Groth16 proof verifies against the key (pure Python)

    verifier = Verifier(Policy(trusted_keys=(provider_key,)))
    report = verifier.check(data, model=model, inputs=inputs)      # Report; bool(report)
    report = verifier.check(data, model=model, inputs=inputs, trace=TraceReader.open(path))
    report = Verifier(Policy(tee=NitroPolicy(roots=(aws_root,)))).check(data)   # + tee rung
    zk = Policy(zk=CircuitDir(path).policy((publisher,)))      # + zk rung (circuits.circuit_dir)
    report = Verifier(zk).check(data, inputs=inputs, outputs=outputs)
    verified = verifier.verify(data, model=model, inputs=inputs)   # or raises VerificationError
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from receipts.digests import Digest, TensorMapDigest, Value
from receipts.effects import Clock, RandomBytes, SystemClock, system_random
from receipts.envelope import Envelope
from receipts.errors import (
    DigestMismatchError,
    PolicyError,
    ReexecutionError,
    SignatureError,
)
from receipts.graph import GraphView
from receipts.keys import PublicKey
from receipts.meter import MeterPlan
from receipts.model import LoadedModel
from receipts.receipt import Receipt, receipt_id
from receipts.report import (
    Policy,
    Report,
    RungResult,
    Status,
    Steps,
    VerifiedReceipt,
    allowed_rungs,
)
from receipts.runtime import OrtRunner, Runner, RunnerFactory, RuntimeSettings
from receipts.spotcheck import SpotChecker, SpotPolicy, check_trace
from receipts.tee import check_tee
from receipts.tolerance import compare_outputs
from receipts.trace import TraceReader

_RUNNER_CACHE = 4  # onnxruntime sessions kept per verifier, most recently used
TensorMap = Mapping[str, Value]


class Verifier:
    """Checks receipts under one policy; caches meter plans per model across receipts."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        clock: Clock | None = None,
        runner_factory: RunnerFactory = OrtRunner,
        random_bytes: RandomBytes = system_random,
    ) -> None:
        self.policy = policy or Policy()
        self.clock: Clock = clock or SystemClock()
        self.runner_factory = runner_factory
        self.random_bytes = random_bytes
        self._views: dict[Digest, GraphView] = {}
        self._plans: dict[Digest, MeterPlan] = {}
        self._runners: dict[tuple[Digest, RuntimeSettings], Runner] = {}

    def verify(
        self,
        data: bytes,
        *,
        model: LoadedModel | None = None,
        inputs: TensorMap | None = None,
        outputs: TensorMap | None = None,
        trace: TraceReader | None = None,
        seed: bytes | None = None,
        attestations: Sequence[bytes] = (),
    ) -> VerifiedReceipt:
        """The verified receipt, or the typed error of the first failed step."""
        report = self.check(
            data,
            model=model,
            inputs=inputs,
            outputs=outputs,
            trace=trace,
            seed=seed,
            attestations=attestations,
        )
        if not report:
            raise report.first_error()
        assert report.receipt is not None and report.key is not None and report.receipt_id
        return VerifiedReceipt(
            receipt=report.receipt, receipt_id=report.receipt_id, key=report.key, report=report
        )

    def check(
        self,
        data: bytes,
        *,
        model: LoadedModel | None = None,
        inputs: TensorMap | None = None,
        outputs: TensorMap | None = None,
        trace: TraceReader | None = None,
        seed: bytes | None = None,
        attestations: Sequence[bytes] = (),
    ) -> Report:
        """Run the required rungs (by default all the material allows); never raises for a failed
        step. Rungs the policy does not require are not run. ``seed`` picks the spot-check sample
        (default: fresh randomness, reported so the check can be replayed). ``attestations``
        are Nitro documents supplied beside the receipt file (a key-mode document fetched once
        per provider key), counted with the ones attached to it."""
        required = self.policy.required or allowed_rungs(
            model,
            inputs,
            outputs,
            trace,
            tee=self.policy.tee is not None,
            zk=self.policy.zk is not None,
        )
        state = _State(data=data, model=model, inputs=inputs, outputs=outputs, trace=trace)
        steps = Steps()
        self._signature_rung(state, steps)
        signature = steps.take("signature")
        trusted = state.receipt is not None and signature.status is Status.PASSED

        def rung(name: str, label: str, run: Callable[[], None]) -> RungResult:
            """Run one rung above the signature rung when required and the receipt is trusted."""
            if name not in required:
                steps.skip(label, "not required by the policy")
            elif trusted:
                run()
            else:
                steps.skip(label, "the receipt did not pass the signature rung")
            return steps.take(name)

        digests = rung("digests", "6-9 digests", lambda: self._digests_rung(state, steps))
        reexec = rung("reexec", "10-11 reexec", lambda: self._reexec_rung(state, steps))
        spot = rung(
            "spot-check",
            "12-14 spot-check",
            lambda: self._spot_rung(
                state, steps, seed if seed is not None else self.random_bytes(16)
            ),
        )
        tee = rung("tee", "15-17 tee", lambda: self._tee_rung(state, steps, attestations))
        zk = rung("zk", "18-21 zk", lambda: self._zk_rung(state, steps))
        return Report(
            receipt_id=receipt_id(state.envelope.payload) if state.envelope else None,
            receipt=state.receipt,
            key=state.key,
            key_pinned=self.policy.trusted_keys is not None,
            required=required,
            rungs=(signature, digests, reexec, spot, tee, zk),
        )

    # -- signature rung ---------------------------------------------------------------------

    def _signature_rung(self, s: _State, steps: Steps) -> None:
        def decode() -> None:  # (1) decode, (2) type
            s.envelope = Envelope.from_bytes(s.data)

        if not steps.run("1-2 decode", decode):
            return
        env = s.envelope
        assert env is not None

        def signature() -> Mapping[str, object]:  # (3) signature
            s.key = env.verify_signature(self.policy.trusted_keys)
            return {
                "key_id": s.key.key_id.hex(),
                "scheme": s.key.scheme,
                "pinned": self.policy.trusted_keys is not None,
            }

        if not steps.run("3 signature", signature):
            return

        def payload() -> None:  # (4) payload
            receipt = Receipt.decode(env.payload)
            if receipt.provider != env.signature.key_id:
                raise SignatureError(
                    "receipt names a provider key other than the one that signed it"
                )
            s.receipt = receipt

        if steps.run("4 payload", payload):
            steps.run("5 time", lambda: self._check_time(s))

    def _check_time(self, s: _State) -> Mapping[str, object]:  # (5) time
        assert s.receipt is not None
        now = self.clock.now_ms()
        issued = s.receipt.issued_at
        if issued > now + self.policy.max_future_skew_ms:
            raise PolicyError(f"issued {issued - now} ms in the future")
        if self.policy.max_age_ms is not None and now - issued > self.policy.max_age_ms:
            raise PolicyError(
                f"issued {now - issued} ms ago; the policy allows {self.policy.max_age_ms}"
            )
        return {"issued_at": issued, "checked_at": now}

    # -- digests rung -----------------------------------------------------------------------

    def _digests_rung(self, s: _State, steps: Steps) -> None:
        receipt = s.receipt
        assert receipt is not None
        model, inputs, outputs = s.model, s.inputs, s.outputs
        if model is None:
            steps.skip("6 model", "no model supplied")
        else:
            s.model_ok = steps.run(
                "6 model", lambda: _same_digest("model", receipt.model, model.digest)
            )
        if inputs is None:
            steps.skip("7 inputs", "no inputs supplied")
        else:
            s.inputs_ok = steps.run(
                "7 inputs", lambda: _same_tensors("inputs", receipt.inputs, inputs)
            )
        if outputs is None:
            steps.skip("8 outputs", "no outputs supplied")
        else:
            s.outputs_ok = steps.run(
                "8 outputs", lambda: _same_tensors("outputs", receipt.outputs, outputs)
            )
        if model is None:
            steps.skip("9 meter", "no model supplied")
        else:
            steps.run("9 meter", lambda: self._check_meter(receipt, model, inputs_ok=s.inputs_ok))

    def _check_meter(
        self, receipt: Receipt, model: LoadedModel, *, inputs_ok: bool
    ) -> Mapping[str, object]:  # (9)
        if model.digest != receipt.model:
            raise DigestMismatchError("meter not recomputed: the model is not the receipt's model")
        if model.digest not in self._plans:
            self._plans[model.digest] = MeterPlan(model)
        plan = self._plans[model.digest]
        units = plan.units(receipt.inputs.tensor_shapes())
        if units != receipt.meter.units:
            raise DigestMismatchError(
                f"meter mismatch: the receipt claims {receipt.meter.units} compute units, "
                f"the model and input shapes give {units}"
            )
        return {
            "units": units,
            "amount": receipt.meter.amount,
            "asset": receipt.meter.price.asset,
            "input_shapes": "checked against the inputs" if inputs_ok else "as the receipt states",
        }

    # -- reexec rung ------------------------------------------------------------------------

    def _reexec_rung(self, s: _State, steps: Steps) -> None:
        receipt = s.receipt
        assert receipt is not None
        if s.model is None or s.inputs is None:
            steps.skip("10 runtime", "re-execution needs the model and the inputs")
            return
        if not (s.model_ok and s.inputs_ok):
            steps.skip("10 runtime", "the supplied model or inputs are not the receipt's")
            return
        model, inputs = s.model, s.inputs
        claimed = s.outputs if s.outputs_ok else None

        def runtime() -> Mapping[str, object]:  # (10) runtime
            runner = self._runner(model, receipt.runtime.settings)
            exact = runner.profile.identity == receipt.runtime.identity
            # Decide what the comparison can be before spending the compute on a run.
            if not exact and self.policy.exact:
                raise ReexecutionError(
                    "runtime identity differs from the receipt's and the policy requires "
                    f"bit-exact re-execution (receipt: {receipt.runtime.describe()})"
                )
            if not exact and claimed is None:
                raise ReexecutionError(
                    "runtime identity differs from the receipt's and no outputs were supplied "
                    "to compare within tolerance (pass the outputs file)"
                )
            s.runner, s.exact = runner, exact
            return {
                "receipt_profile": receipt.runtime.describe(),
                "local_profile": runner.profile.describe(),
                "comparison": "bit-exact" if exact else "tolerance",
            }

        if steps.run("10 runtime", runtime):
            steps.run("11 outputs", lambda: self._compare(s, model, inputs, claimed))

    # -- spot-check rung ---------------------------------------------------------------------

    def _spot_rung(self, s: _State, steps: Steps, seed: bytes) -> None:
        receipt, model, inputs, trace = s.receipt, s.model, s.inputs, s.trace
        assert receipt is not None and s.envelope is not None
        if model is None or inputs is None or trace is None:
            steps.skip("12 trace", "the spot check needs the model, the inputs and the trace")
            return
        if not (s.model_ok and s.inputs_ok):
            steps.skip("12 trace", "the supplied model or inputs are not the receipt's")
            return
        view = self._view(model)
        if not steps.run("12 trace", lambda: check_trace(receipt, view, trace)):
            return
        checker = SpotChecker(
            SpotPolicy(
                samples=self.policy.spot_samples,
                tolerance_for=self.policy.tolerance_for,
                exact_only=self.policy.exact,
            ),
            runner_factory=self.runner_factory,
        )
        rid = receipt_id(s.envelope.payload)
        checked = model.check_inputs(inputs)
        steps.run(
            "13-14 nodes",
            lambda: checker.check_nodes(receipt, rid, view, trace, checked, seed=seed),
        )

    # -- tee and zk rungs --------------------------------------------------------------------

    def _tee_rung(self, s: _State, steps: Steps, attestations: Sequence[bytes]) -> None:
        policy = self.policy.tee
        assert policy is not None  # Policy and allowed_rungs require the tee rung only with it
        assert s.envelope is not None and s.receipt is not None and s.key is not None
        check_tee(
            steps,
            envelope=s.envelope,
            receipt=s.receipt,
            key=s.key,
            policy=policy,
            now_ms=self.clock.now_ms(),
            supplied=attestations,
        )

    def _zk_rung(self, s: _State, steps: Steps) -> None:
        # Imported here: ``circuits`` builds on this package (errors, digests, the report), so
        # importing it while ``receipts`` loads would be circular; only the zk rung needs it.
        from circuits.zk_rung import check_zk  # noqa: PLC0415

        policy = self.policy.zk
        assert policy is not None  # Policy and allowed_rungs require the zk rung only with it
        assert s.envelope is not None and s.receipt is not None
        check_zk(
            steps,
            envelope=s.envelope,
            receipt=s.receipt,
            policy=policy,
            inputs=s.inputs,
            outputs=s.outputs,
        )

    def _view(self, model: LoadedModel) -> GraphView:
        if model.digest not in self._views:
            self._views = {model.digest: GraphView(model)}  # one model at a time
        return self._views[model.digest]

    def _runner(self, model: LoadedModel, settings: RuntimeSettings) -> Runner:
        """One runner per (model, settings), kept for the next receipts of the same model."""
        key = (model.digest, settings)
        runner = self._runners.pop(key, None) or self.runner_factory(model, settings)
        self._runners[key] = runner  # most recently used last
        while len(self._runners) > _RUNNER_CACHE:
            del self._runners[next(iter(self._runners))]
        return runner

    def _compare(
        self, s: _State, model: LoadedModel, inputs: TensorMap, claimed: TensorMap | None
    ) -> Mapping[str, object]:  # (11) outputs
        receipt, runner = s.receipt, s.runner
        assert receipt is not None and runner is not None
        recomputed = runner.run(model.check_inputs(inputs))
        if s.exact:
            got = TensorMapDigest.of(recomputed)
            rows = (
                compare_outputs(recomputed, claimed, self.policy.tolerance_for, exact=True)
                if claimed
                else []
            )
            if got.digest != receipt.outputs.digest:
                differ = _differing(receipt.outputs, got)
                raise ReexecutionError(
                    f"re-execution under the same runtime identity gave different bits: "
                    f"{', '.join(differ)}" + _worst(rows),
                    details=rows,
                )
            return {
                "comparison": "bit-exact",
                "outputs": rows or [e.name for e in got.entries],
            }
        assert claimed is not None  # step 10 refused a tolerance comparison without claims
        rows = compare_outputs(recomputed, claimed, self.policy.tolerance_for, exact=False)
        bad = [r for r in rows if not r["ok"]]
        if bad:
            raise ReexecutionError(
                f"outputs outside tolerance: {', '.join(str(r['name']) for r in bad)}"
                + _worst(rows),
                details=rows,
            )
        return {"comparison": "tolerance", "outputs": rows}


@dataclass(slots=True, kw_only=True)
class _State:
    data: bytes
    model: LoadedModel | None
    inputs: TensorMap | None
    outputs: TensorMap | None
    trace: TraceReader | None = None
    envelope: Envelope | None = None
    key: PublicKey | None = None
    receipt: Receipt | None = None
    model_ok: bool = False
    inputs_ok: bool = False
    outputs_ok: bool = False
    runner: Runner | None = None
    exact: bool = False


def _same_digest(what: str, expected: Digest, actual: Digest) -> Mapping[str, object]:
    if expected != actual:
        raise DigestMismatchError(
            f"{what} mismatch: the receipt binds {expected}, the supplied {what} is {actual}"
        )
    return {"digest": str(actual)}


def _same_tensors(what: str, expected: TensorMapDigest, arrays: TensorMap) -> Mapping[str, object]:
    actual = TensorMapDigest.of(arrays)
    # Entries, not just the map digest: the receipt's element types and shapes are claims next
    # to each digest, and metering reads them.
    if actual.entries == expected.entries:
        return {"digest": str(actual.digest), "tensors": len(actual.entries)}
    raise DigestMismatchError(f"{what} mismatch: {'; '.join(_differing(expected, actual))}")


def _differing(expected: TensorMapDigest, actual: TensorMapDigest) -> list[str]:
    want, got = expected.by_name(), actual.by_name()
    notes = [f"{n} missing" for n in sorted(set(want) - set(got))]
    notes += [f"{n} not in the receipt" for n in sorted(set(got) - set(want))]
    for name in sorted(set(want) & set(got)):
        w, g = want[name], got[name]
        if w.describe() != g.describe():
            notes.append(f"{name} is {g.describe()}, the receipt says {w.describe()}")
        elif w.digest != g.digest:
            notes.append(f"{name} differs")
        elif w != g:
            notes.append(f"{name}: the receipt's element types or shapes do not match the data")
    return notes or ["tensor-map digest differs"]


def _worst(rows: list[dict[str, object]]) -> str:
    errors = [(r["max_abs_error"], r["name"]) for r in rows if r.get("max_abs_error") is not None]
    if not errors:
        return ""
    worst, name = max(errors, key=lambda e: float(e[0]))  # type: ignore[arg-type]
    return f" (largest absolute error {worst} in {name})"
