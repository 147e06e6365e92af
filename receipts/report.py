"""The verifier's values: the policy it applies and the report it returns (verification layer).

``Policy`` says which rungs must pass and with what bounds; ``Report`` holds one ``RungResult``
per rung, each with its numbered ``StepResult``s (the numbering is in ``receipts.verifier``).

    report = Verifier(Policy(required=("signature", "digests"))).check(data, outputs=outputs)
    bool(report), report.rung("digests").failures()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from receipts.digests import Digest
from receipts.errors import MalformedError, PolicyError, ReceiptsError
from receipts.keys import PublicKey
from receipts.nitro import NitroPolicy
from receipts.receipt import Receipt
from receipts.tolerance import Tolerance

RUNGS = ("signature", "digests", "reexec", "spot-check", "tee", "zk")
LADDER = RUNGS[:3]  # the rungs ``receipts verify --mode`` climbs, each including those below


def allowed_rungs(
    model: object,
    inputs: object,
    outputs: object,
    trace: object = None,
    *,
    tee: bool = False,
    zk: bool = False,
) -> tuple[str, ...]:
    """The rungs the supplied material allows (whatever is not None), in ladder order. With a
    trace, the cheap spot check replaces full re-execution; with a TEE policy, the tee rung is
    added, and with a zk policy the zk rung (which then needs the inputs and outputs)."""
    if model is not None and inputs is not None:
        rungs: tuple[str, ...] = (
            ("signature", "digests", "spot-check") if trace is not None else LADDER
        )
    elif model is not None or inputs is not None or outputs is not None:
        rungs = ("signature", "digests")
    else:
        rungs = ("signature",)
    return (*rungs, *(("tee",) if tee else ()), *(("zk",) if zk else ()))


class Status(Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass(frozen=True, slots=True, kw_only=True)
class ZkPolicy:
    """What the zk rung accepts: one circuit, as the exact bytes of its ``verification_key.json``
    and of its signed manifest (``circuits.manifest``), and the keys trusted to sign manifests.

    Bytes, not parsed values: the rung reads them (a bad key or manifest is a failed step 19, not
    an exception here) and compares the key's digest with the one the manifest names.
    """

    verification_key: bytes
    manifest: bytes
    trusted_keys: tuple[PublicKey, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.verification_key, bytes) or not isinstance(self.manifest, bytes):
            raise MalformedError("a zk policy holds the verification key and manifest as bytes")
        if not isinstance(self.trusted_keys, tuple) or not self.trusted_keys:
            raise MalformedError("the zk rung needs at least one trusted circuit-manifest key")
        if not all(isinstance(k, PublicKey) for k in self.trusted_keys):
            raise MalformedError("trusted circuit-manifest keys must be public keys")


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """What the verifier accepts and which rungs must pass.

    ``trusted_keys=None`` accepts the key embedded in the envelope (reported as unpinned).
    ``required=None`` requires every rung the supplied material allows (see ``Verifier.check``);
    the signature rung is always required. ``exact=True`` refuses tolerance comparison: a receipt
    from another runtime identity then fails re-execution (and spot-check re-runs).
    ``spot_samples`` is k, the number of trace nodes the spot-check rung opens.
    ``tee`` is what the tee rung accepts (pinned roots, PCRs, ages); the rung needs it.
    ``zk`` is the circuit the zk rung checks proofs against (its key, manifest, manifest signers).
    """

    trusted_keys: tuple[PublicKey, ...] | None = None
    required: tuple[str, ...] | None = None
    tolerance: Tolerance = field(default_factory=Tolerance)
    output_tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    max_future_skew_ms: int = 5 * 60 * 1000
    max_age_ms: int | None = None
    exact: bool = False
    spot_samples: int = 8
    tee: NitroPolicy | None = None
    zk: ZkPolicy | None = None

    def tolerance_for(self, output: str) -> Tolerance:
        return self.output_tolerances.get(output, self.tolerance)

    def __post_init__(self) -> None:
        unknown = set(self.required or ()) - set(RUNGS)
        if unknown:
            raise MalformedError(f"unknown rung(s) {', '.join(sorted(unknown))}")
        if self.required is not None and "signature" not in self.required:
            raise MalformedError("the signature rung is always required")
        if self.required is not None and ("tee" in self.required) != (self.tee is not None):
            raise MalformedError(
                "the tee rung needs a TEE policy (at least one pinned root)"
                if self.tee is None
                else "a TEE policy is given but the required rungs leave out the tee rung"
            )
        if self.required is not None and ("zk" in self.required) != (self.zk is not None):
            raise MalformedError(
                "the zk rung needs a zk policy (a circuit's verification key and manifest)"
                if self.zk is None
                else "a zk policy is given but the required rungs leave out the zk rung"
            )
        if not 1 <= self.spot_samples <= 1 << 20:
            raise MalformedError("spot-check samples must be 1..1048576")
        if self.max_future_skew_ms < 0 or (self.max_age_ms is not None and self.max_age_ms < 0):
            raise MalformedError("time bounds must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """One numbered step: what happened, why, and (for failures) the typed error."""

    step: str
    status: Status
    reason: str = ""
    error: ReceiptsError | None = None
    details: Mapping[str, object] = field(default_factory=dict)


class Steps:
    """Collects step results; ``run`` turns a raised library error into a failed step."""

    def __init__(self) -> None:
        self.results: list[StepResult] = []

    def run(self, step: str, fn: Callable[[], Mapping[str, object] | None]) -> bool:
        try:
            details = fn() or {}
        except ReceiptsError as e:
            self.fail(step, e)
            return False
        self.results.append(StepResult(step=step, status=Status.PASSED, details=details))
        return True

    def fail(self, step: str, e: ReceiptsError, reason: str | None = None) -> None:
        if isinstance(e.details, Mapping):
            details = e.details
        else:
            details = {"rows": e.details} if e.details is not None else {}
        self.results.append(
            StepResult(
                step=step,
                status=Status.FAILED,
                reason=str(e) if reason is None else reason,
                error=e,
                details=details,
            )
        )

    def skip(self, step: str, reason: str) -> None:
        self.results.append(StepResult(step=step, status=Status.NOT_RUN, reason=reason))

    def take(self, rung: str) -> RungResult:
        result = RungResult(rung=rung, steps=tuple(self.results))
        self.results = []
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class RungResult:
    rung: str
    steps: tuple[StepResult, ...]

    @property
    def status(self) -> Status:
        statuses = {s.status for s in self.steps}
        if Status.FAILED in statuses:
            return Status.FAILED
        return Status.PASSED if Status.PASSED in statuses else Status.NOT_RUN

    def failures(self) -> list[StepResult]:
        return [s for s in self.steps if s.status is Status.FAILED]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The verdict: per-rung results; true when every required rung passed."""

    receipt_id: Digest | None
    receipt: Receipt | None
    key: PublicKey | None
    key_pinned: bool
    required: tuple[str, ...]
    rungs: tuple[RungResult, ...]

    def rung(self, name: str) -> RungResult:
        return next(r for r in self.rungs if r.rung == name)

    def __bool__(self) -> bool:
        return all(self.rung(name).status is Status.PASSED for name in self.required)

    def first_error(self) -> ReceiptsError:
        for rung in self.rungs:
            for step in rung.failures():
                assert step.error is not None
                return step.error
        missing = [n for n in self.required if self.rung(n).status is not Status.PASSED]
        return PolicyError(f"required rung(s) did not run: {', '.join(missing)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedReceipt:
    """A receipt that passed every required rung, with the key that signed it."""

    receipt: Receipt
    receipt_id: Digest
    key: PublicKey
    report: Report
