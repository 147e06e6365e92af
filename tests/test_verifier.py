"""The verifier's rungs: reports that never raise, verify that does, tolerance and time rules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace as dc_replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receipts import (
    DigestMismatchError,
    FixedClock,
    LoadedModel,
    MalformedError,
    Policy,
    PolicyError,
    Price,
    Provider,
    ReceiptsError,
    ReexecutionError,
    RuntimeSettings,
    SignatureError,
    Status,
    Tolerance,
    Verifier,
)
from receipts.digests import TensorEntry, TensorMapDigest
from receipts.effects import seeded
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.jsonview import report_json
from receipts.meter import Meter, MeterPlan
from receipts.runtime import CpuClass, OrtRunner, RuntimeProfile
from receipts.tensors import TensorSpec
from receipts.tolerance import compare_outputs
from tests.conftest import fixture_inputs, fixture_key, fixture_model, fixture_public

NOW = 1_790_000_000_000


@pytest.fixture(scope="module")
def mlp() -> tuple[LoadedModel, dict[str, Any], Any]:
    model, inputs = fixture_model("mlp"), fixture_inputs("mlp")
    provider = Provider(
        fixture_key(), price=Price(unit_price=2), clock=FixedClock(NOW), random_bytes=seeded(1)
    )
    return model, inputs, provider.session(model).run(inputs)


class OtherMachineRunner:
    """The real onnxruntime runner, reporting another CPU class: forces the tolerance path."""

    def __init__(self, model: LoadedModel, settings: RuntimeSettings) -> None:
        self._inner = OrtRunner(model, settings)
        real = self._inner.profile
        self._profile = RuntimeProfile(
            settings=real.settings,
            engine_version=real.engine_version,
            cpu=CpuClass(arch="x86_64", isa="avx" if real.cpu.isa != "avx" else "sse"),
        )

    @property
    def profile(self) -> RuntimeProfile:
        return self._profile

    def run(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        return self._inner.run(inputs)


def _verifier(**policy: Any) -> Verifier:
    return Verifier(
        Policy(trusted_keys=(fixture_public(),), **policy), clock=FixedClock(NOW + 1000)
    )


def test_check_passes_every_rung_with_full_material(mlp: Any) -> None:
    model, inputs, issued = mlp
    report = _verifier().check(
        issued.to_bytes(), model=model, inputs=inputs, outputs=issued.outputs
    )
    assert report
    # Spot-check, tee and zk need a trace, a TEE policy and a zk policy.
    assert [r.status for r in report.rungs] == [Status.PASSED] * 3 + [Status.NOT_RUN] * 3
    assert report.rung("reexec").steps[-1].details["comparison"] == "bit-exact"


def test_required_rungs_follow_the_material(mlp: Any) -> None:
    model, inputs, issued = mlp
    verifier = _verifier()
    assert verifier.check(issued.to_bytes()).required == ("signature",)
    assert verifier.check(issued.to_bytes(), outputs=issued.outputs).required == (
        "signature",
        "digests",
    )
    assert verifier.check(issued.to_bytes(), model=model, inputs=inputs).required == (
        "signature",
        "digests",
        "reexec",
    )


def test_a_required_rung_that_cannot_run_fails_closed(mlp: Any) -> None:
    _, _, issued = mlp
    report = _verifier(required=("signature", "reexec")).check(issued.to_bytes())
    assert not report
    assert report.rung("reexec").status is Status.NOT_RUN
    with pytest.raises(PolicyError, match="did not run"):
        _verifier(required=("signature", "reexec")).verify(issued.to_bytes())


def test_check_reports_without_raising_and_verify_raises(mlp: Any) -> None:
    model, _, issued = mlp
    other = fixture_inputs("mlp")
    other["x"] = other["x"] + 1
    report = _verifier().check(issued.to_bytes(), model=model, inputs=other)
    assert not report
    failed = report.rung("digests").failures()
    assert [s.step for s in failed] == ["7 inputs"]
    assert isinstance(failed[0].error, DigestMismatchError)
    assert report.rung("reexec").steps[0].status is Status.NOT_RUN
    with pytest.raises(DigestMismatchError, match="inputs mismatch: x differs"):
        _verifier().verify(issued.to_bytes(), model=model, inputs=other)


def test_untrusted_signer_is_refused(mlp: Any) -> None:
    _, _, issued = mlp
    stranger = Verifier(Policy(trusted_keys=(fixture_public("other_ed25519"),)))
    with pytest.raises(SignatureError, match="not a trusted provider key"):
        stranger.verify(issued.to_bytes())


def test_time_window(mlp: Any) -> None:
    _, _, issued = mlp
    data = issued.to_bytes()
    early = Verifier(Policy(), clock=FixedClock(NOW - 10 * 60 * 1000))
    with pytest.raises(PolicyError, match="in the future"):
        early.verify(data)
    late = Verifier(Policy(max_age_ms=1000), clock=FixedClock(NOW + 5000))
    with pytest.raises(PolicyError, match="ago"):
        late.verify(data)
    assert Verifier(Policy(max_age_ms=10_000), clock=FixedClock(NOW + 5000)).check(data)


def test_tolerance_path_accepts_small_error_and_reports_it() -> None:
    model, inputs = fixture_model("mlp"), fixture_inputs("mlp")
    honest = Provider(fixture_key(), clock=FixedClock(NOW)).session(model).run(inputs)
    nudged = {"y": np.nextafter(honest.outputs["y"], np.float32(np.inf))}  # one ulp up
    receipt = _issue_with_outputs(model, inputs, nudged)
    verifier = Verifier(Policy(), clock=FixedClock(NOW), runner_factory=OtherMachineRunner)
    report = verifier.check(receipt, model=model, inputs=inputs, outputs=nudged)
    assert report
    row = report.rung("reexec").steps[-1].details["outputs"][0]
    assert row["comparison"] == "tolerance"
    assert 0 < row["max_abs_error"] < 1e-5
    assert row["mismatches"] == 0
    # The same receipt under the same identity must be bit-exact, so it fails there.
    assert not _verifier().check(receipt, model=model, inputs=inputs, outputs=nudged)


def test_tolerance_path_rejects_large_error_with_observed_error() -> None:
    model, inputs = fixture_model("mlp"), fixture_inputs("mlp")
    honest = Provider(fixture_key(), clock=FixedClock(NOW)).session(model).run(inputs)
    skewed = {"y": honest.outputs["y"] + np.float32(1e-2)}
    liar = _issue_with_outputs(model, inputs, skewed)
    verifier = Verifier(
        Policy(tolerance=Tolerance(rtol=1e-5, atol=1e-6)),
        clock=FixedClock(NOW),
        runner_factory=OtherMachineRunner,
    )
    report = verifier.check(liar, model=model, inputs=inputs, outputs=skewed)
    assert not report
    step = report.rung("reexec").failures()[0]
    assert isinstance(step.error, ReexecutionError)
    row = step.details["rows"][0]
    assert row["comparison"] == "tolerance"
    assert row["max_abs_error"] == pytest.approx(1e-2, rel=1e-3)
    assert row["mismatches"] == honest.outputs["y"].size
    loose = Verifier(
        Policy(tolerance=Tolerance(atol=2e-2, rtol=0)),
        clock=FixedClock(NOW),
        runner_factory=OtherMachineRunner,
    )
    assert loose.check(liar, model=model, inputs=inputs, outputs=skewed)


def test_per_output_tolerance_overrides_the_default() -> None:
    model, inputs = fixture_model("mlp"), fixture_inputs("mlp")
    honest = Provider(fixture_key(), clock=FixedClock(NOW)).session(model).run(inputs)
    skewed = {"y": honest.outputs["y"] + np.float32(1e-3)}
    liar = _issue_with_outputs(model, inputs, skewed)
    policy = Policy(output_tolerances={"y": Tolerance(atol=1e-2)})
    verifier = Verifier(policy, clock=FixedClock(NOW), runner_factory=OtherMachineRunner)
    assert verifier.check(liar, model=model, inputs=inputs, outputs=skewed)


def test_other_identity_without_claimed_outputs_fails_closed(mlp: Any) -> None:
    model, inputs, issued = mlp
    verifier = Verifier(Policy(), clock=FixedClock(NOW), runner_factory=OtherMachineRunner)
    with pytest.raises(ReexecutionError, match="no outputs were supplied"):
        verifier.verify(issued.to_bytes(), model=model, inputs=inputs)


def test_same_identity_reexecution_catches_a_lie_without_the_outputs_file() -> None:
    model, inputs = fixture_model("mlp"), fixture_inputs("mlp")
    honest = Provider(fixture_key(), clock=FixedClock(NOW)).session(model).run(inputs)
    flipped = honest.outputs["y"].copy()
    flipped.view(np.uint32).reshape(-1)[5] ^= 1
    liar = _issue_with_outputs(model, inputs, {"y": flipped})
    with pytest.raises(ReexecutionError, match="different bits: y"):
        _verifier().verify(liar, model=model, inputs=inputs)
    report = _verifier().check(liar, model=model, inputs=inputs, outputs={"y": flipped})
    rows = report.rung("reexec").failures()[0].details["rows"]
    assert rows[0]["mismatches"] == 1


def test_report_json_is_serialisable(mlp: Any) -> None:
    model, inputs, issued = mlp
    report = _verifier().check(issued.to_bytes(), model=model, inputs=inputs)
    view = json.loads(json.dumps(report_json(report)))
    assert view["ok"] is True
    assert [r["rung"] for r in view["rungs"]] == [
        "signature",
        "digests",
        "reexec",
        "spot-check",
        "tee",
        "zk",
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_single_byte_change_of_a_receipt_file_is_rejected(
    mlp: Any, data: st.DataObject
) -> None:
    _, _, issued = mlp
    raw = bytearray(issued.to_bytes())
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    report = Verifier(Policy(), clock=FixedClock(NOW)).check(bytes(raw))
    assert not report
    assert isinstance(report.first_error(), ReceiptsError)


def test_verify_returns_the_receipt_and_key(mlp: Any) -> None:
    _, _, issued = mlp
    verified = _verifier().verify(issued.to_bytes())
    assert verified.receipt == issued.receipt
    assert verified.key == fixture_public()
    assert verified.receipt_id == issued.receipt_id


def _issue_with_outputs(model: LoadedModel, inputs: Any, outputs: dict[str, Any]) -> bytes:
    """A provider that lies: signs a receipt for outputs it did not compute."""

    class FixedOutputs:
        def __init__(self, m: LoadedModel, s: RuntimeSettings) -> None:
            self._inner = OrtRunner(m, s)

        @property
        def profile(self) -> RuntimeProfile:
            return self._inner.profile

        def run(self, _: Mapping[str, Any]) -> dict[str, Any]:
            return outputs

    provider = Provider(fixture_key(), clock=FixedClock(NOW), runner_factory=FixedOutputs)
    return provider.session(model).run(inputs).to_bytes()


def test_exact_policy_refuses_another_runtime_identity(mlp: Any) -> None:
    model, inputs, issued = mlp
    verifier = Verifier(
        Policy(exact=True), clock=FixedClock(NOW), runner_factory=OtherMachineRunner
    )
    with pytest.raises(ReexecutionError, match="requires bit-exact"):
        verifier.verify(issued.to_bytes(), model=model, inputs=inputs, outputs=issued.outputs)


def test_an_infinite_recomputed_value_must_be_claimed_exactly() -> None:
    mine = {"y": np.array([np.inf, -np.inf, 2.0], np.float32)}
    for claimed in ([-np.inf, -np.inf, 2.0], [np.inf, 12345.0, 2.0], [np.inf, np.nan, 2.0]):
        rows = compare_outputs(
            mine, {"y": np.array(claimed, np.float32)}, lambda _: Tolerance(), exact=False
        )
        assert not rows[0]["ok"], claimed
    same = compare_outputs(mine, {"y": mine["y"].copy()}, lambda _: Tolerance(), exact=False)
    assert same[0]["ok"]


def test_claimed_shapes_must_match_the_supplied_tensors(mlp: Any) -> None:
    """An entry claiming another shape than its digest's data cannot pass (overbilling)."""
    model, inputs, issued = mlp
    entry = issued.receipt.inputs.entries[0]
    assert isinstance(entry, TensorEntry)
    inflated = TensorEntry(
        spec=TensorSpec(name="x", elem_type="float32", shape=(4000, 16)), digest=entry.digest
    )
    units = MeterPlan(model).units({"x": (4000, 16)})
    forged = dc_replace(
        issued.receipt,
        inputs=TensorMapDigest(entries=(inflated,)),
        meter=Meter.of(units, issued.receipt.meter.price),
    )
    data = Envelope.sign(RECEIPT_PAYLOAD_TYPE, forged.encode(), fixture_key()).to_bytes()
    with pytest.raises(
        DigestMismatchError, match="x is float32\\[4, 16\\], the receipt says float32\\[4000, 16\\]"
    ):
        _verifier().verify(data, model=model, inputs=inputs, outputs=issued.outputs)


@pytest.mark.parametrize(
    "kwargs",
    [{"required": ("digests",)}, {"max_age_ms": -1}, {"max_future_skew_ms": -5}],
)
def test_policies_that_would_skip_the_signature_or_bound_nothing_are_refused(
    kwargs: dict[str, Any],
) -> None:
    with pytest.raises(MalformedError):
        Policy(**kwargs)
