"""The referee: judge an evidence bundle by re-running one operator, and sign the ruling
(dispute layer; settlement consumes the signed ruling).

The referee trusts nothing in the bundle but what it can check against the receipt the provider
signed and the model whose digest that receipt binds. It re-runs the disputed node alone on the
operands the opening proves the provider committed to, with the committed weights, and compares
with the outputs the provider committed to for that node: bit for bit when its runtime identity
equals the receipt's; within the policy tolerance (and saying so) when it does not.

  (j1) receipt     the bundle's receipt is a signed receipt v1 with a trace commitment
  (j2) model       the supplied model is the receipt's (digest) and has the trace's node count
  (j3) transcript  every message signed by a key allowed for its role, chained in order, every
                   prefix consistent with the trace root, ending in a request for the disputed
                   node (carrying the challenger's claim) and the provider's opening of it
  (j4) opening     the opening checks out against the receipt's commitments (o1-o4)
  (j5) claim       the challenger's claimed leaf names the same node and differs from the
                   provider's (otherwise there is nothing to judge)
  (j6) re-run      the node re-run alone; its outputs equal (or, across runtime identities, lie
                   within tolerance of) the provider's -> challenge-rejected; else provider-fault

j4 runs before j3 (its error is reported after j3's): as soon as the operands are proven to be
the committed ones, the re-run of j6 starts on a helper thread while j3 checks the transcript's
signatures and proofs. Nothing is ever run on operands that are not proven.

    referee = Referee(PrivateKey.load("referee.pem"))
    ruling = referee.judge(Evidence.read(path), load_model("model.onnx"))
    ruling.ruling.verdict, ruling.to_bytes()
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from receipts import codec
from receipts.codec import MapReader
from receipts.digests import Digest, Entry, entry_from_wire, entry_to_wire, value_entry
from receipts.dispute import PROVIDER, check_transcript
from receipts.effects import Clock, SystemClock
from receipts.envelope import Envelope
from receipts.errors import EvidenceError, MalformedError, ModelError, OpeningError, SignatureError
from receipts.evidence import Evidence
from receipts.graph import GraphView
from receipts.keys import PublicKey, Signer
from receipts.model import LoadedModel
from receipts.opening import OpenedNode, check_opening
from receipts.operator import RerunResult, rerun
from receipts.receipt import Receipt, receipt_id
from receipts.runtime import OrtRunner, RunnerFactory
from receipts.tolerance import Tolerance

RULING_PAYLOAD_TYPE = "application/vnd.inference-receipts.ruling.v1+msgpack"
PROVIDER_FAULT, CHALLENGE_REJECTED = "provider-fault", "challenge-rejected"
VERDICTS = (PROVIDER_FAULT, CHALLENGE_REJECTED)
PROVIDER_SIGNED, RELAYED = "provider-signed", "relayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ruling:
    """What the referee decided about one disputed node of one receipt, and why."""

    receipt: Digest
    evidence: Digest
    node: int
    node_name: str
    op: str
    verdict: str
    reason: str
    comparison: str  # "bit-exact" or "tolerance"
    receipt_runtime: Digest
    referee_runtime: Digest
    provider_outputs: tuple[Entry, ...]
    recomputed_outputs: tuple[Entry, ...]
    challenger_outputs: tuple[Entry, ...]
    provider_messages: str  # "provider-signed" or "relayed" (signed by the challenger)
    issued_at: int

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise MalformedError(f"unknown verdict {self.verdict!r}")
        if self.comparison not in ("bit-exact", "tolerance"):
            raise MalformedError(f"unknown comparison {self.comparison!r}")
        if self.provider_messages not in (PROVIDER_SIGNED, RELAYED):
            raise MalformedError(f"unknown provider message signing {self.provider_messages!r}")

    def to_wire(self) -> dict[str, object]:
        return {
            "type": "ruling",
            "version": 1,
            "receipt": self.receipt.value,
            "evidence": self.evidence.value,
            "node": {"index": self.node, "name": self.node_name, "op": self.op},
            "verdict": self.verdict,
            "reason": self.reason,
            "comparison": self.comparison,
            "receipt_runtime": self.receipt_runtime.value,
            "referee_runtime": self.referee_runtime.value,
            "provider_outputs": [entry_to_wire(e) for e in self.provider_outputs],
            "recomputed_outputs": [entry_to_wire(e) for e in self.recomputed_outputs],
            "challenger_outputs": [entry_to_wire(e) for e in self.challenger_outputs],
            "provider_messages": self.provider_messages,
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_wire(cls, value: object) -> Ruling:
        r = MapReader(value, "ruling")
        if r.text("type", 16) != "ruling" or r.integer("version", 0, 255) != 1:
            raise MalformedError("not a ruling v1")
        node = r.map("node")
        ruling = cls(
            receipt=Digest(r.binary("receipt", 32)),
            evidence=Digest(r.binary("evidence", 32)),
            node=node.integer("index", 0, 1 << 20),
            node_name=node.text("name"),
            op=node.text("op", 256),
            verdict=r.text("verdict", 32),
            reason=r.text("reason", 4096),
            comparison=r.text("comparison", 16),
            receipt_runtime=Digest(r.binary("receipt_runtime", 32)),
            referee_runtime=Digest(r.binary("referee_runtime", 32)),
            provider_outputs=_entries(r.array("provider_outputs", 4096)),
            recomputed_outputs=_entries(r.array("recomputed_outputs", 4096)),
            challenger_outputs=_entries(r.array("challenger_outputs", 4096)),
            provider_messages=r.text("provider_messages", 32),
            issued_at=r.integer("issued_at", 0, 2**63 - 1),
        )
        node.close()
        r.close()
        return ruling


def _entries(items: list[object]) -> tuple[Entry, ...]:
    return tuple(entry_from_wire(i) for i in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRuling:
    envelope: Envelope
    ruling: Ruling
    rerun: RerunResult | None = None

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()


def read_ruling(data: bytes, trusted: tuple[PublicKey, ...] | None = None) -> SignedRuling:
    """A signed ruling, its signature checked (by one of ``trusted`` when given)."""
    envelope = Envelope.from_bytes(data, payload_type=RULING_PAYLOAD_TYPE)
    envelope.verify_signature(trusted)
    return SignedRuling(envelope=envelope, ruling=Ruling.from_wire(codec.decode(envelope.payload)))


class Referee:
    """Judges evidence bundles and signs rulings with one key."""

    def __init__(
        self,
        signer: Signer,
        *,
        tolerance: Tolerance | None = None,
        output_tolerances: Mapping[str, Tolerance] | None = None,
        clock: Clock | None = None,
        runner_factory: RunnerFactory = OrtRunner,
        trusted_providers: tuple[PublicKey, ...] | None = None,
        require_provider_signatures: bool = False,
    ) -> None:
        """``trusted_providers``: judge only receipts signed by one of these keys (None: any
        key, as the ruling then names it). ``require_provider_signatures``: refuse transcripts
        whose provider messages a challenger relayed instead of the provider signing them."""
        self.signer = signer
        self.trusted_providers = trusted_providers
        self.require_provider_signatures = require_provider_signatures
        self.tolerance = tolerance or Tolerance()
        self.output_tolerances = dict(output_tolerances or {})
        self.clock: Clock = clock or SystemClock()
        self.runner_factory = runner_factory
        self._views: dict[Digest, GraphView] = {}
        self._workers: ThreadPoolExecutor | None = None

    def _view(self, model: LoadedModel) -> GraphView:
        """The graph view of ``model``, kept for the next bundle of the same model."""
        if model.digest not in self._views:
            self._views = {model.digest: GraphView(model)}
        return self._views[model.digest]

    def judge(self, evidence: Evidence, model: LoadedModel) -> SignedRuling:
        """Steps j1-j6; raises a typed error (and rules nothing) when the bundle is bad."""
        receipt, rid, provider = _receipt(evidence, self.trusted_providers)  # (j1)
        if model.digest != receipt.model:  # (j2)
            raise ModelError(
                f"(j2) the model is not the receipt's: {model.digest} vs {receipt.model}"
            )
        view = self._view(model)
        assert receipt.trace is not None
        if len(view) != receipt.trace.nodes:
            raise EvidenceError(
                f"(j2) the receipt's trace has {receipt.trace.nodes} nodes, the model {len(view)}"
            )
        # j4 is checked first but reported after j3: once the operands are proven to be the
        # committed ones, the operator starts on a helper thread (onnxruntime releases the GIL)
        # while j3 checks signatures and proofs. Nothing runs on unproven operands.
        try:
            opened: OpenedNode | None = check_opening(evidence.opening, receipt, view)
            refused: OpeningError | None = None
        except OpeningError as e:
            opened, refused = None, e
        early = self._pool().submit(self._rerun, opened, view, receipt) if opened else None
        messages = check_transcript(  # (j3)
            evidence.transcript, receipt, rid, challenger=evidence.challenger, provider=provider
        )
        relayed = any(
            m.message.role == PROVIDER and m.envelope.signature.public_key != provider
            for m in messages
        )
        if relayed and self.require_provider_signatures:
            raise EvidenceError(
                "(j3) the provider's messages were relayed (signed by the challenger) and this "
                "referee requires the provider's own signatures"
            )
        request, answer = messages[-2].message, messages[-1].message
        if request.body["index"] != evidence.index or answer.body["index"] != evidence.index:
            raise EvidenceError("(j3) the transcript disputes another node than the bundle")
        if request.body["claim"] != evidence.claim.data:
            raise EvidenceError("(j3) the bundle's claim is not the one the challenger signed")
        if answer.body["opening"] != evidence.opening_digest:
            raise EvidenceError("(j3) the bundle's opening is not the one the transcript names")
        if opened is None or early is None:  # (j4)
            raise EvidenceError(f"(j4) {refused}") from refused
        claim = evidence.claim  # (j5)
        if (claim.index, claim.op, claim.domain, claim.name) != (
            opened.leaf.index,
            opened.leaf.op,
            opened.leaf.domain,
            opened.leaf.name,
        ):
            raise EvidenceError("(j5) the challenger's claim is about another node")
        if claim.outputs == opened.leaf.outputs:
            raise EvidenceError("(j5) the challenger's claim equals the provider's: no dispute")
        result = early.result()  # (j6)
        return self._sign(evidence, receipt, rid, opened.leaf.outputs, result, relayed=relayed)

    def _rerun(self, opened: OpenedNode, view: GraphView, receipt: Receipt) -> RerunResult:
        return rerun(
            opened,
            view,
            receipt,
            tolerance_for=lambda name: self.output_tolerances.get(name, self.tolerance),
            runner_factory=self.runner_factory,
        )

    def _pool(self) -> ThreadPoolExecutor:
        if self._workers is None:
            self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receipts-ref")
        return self._workers

    def _sign(
        self,
        evidence: Evidence,
        receipt: Receipt,
        rid: Digest,
        provider_outputs: tuple[Entry, ...],
        result: RerunResult,
        *,
        relayed: bool,
    ) -> SignedRuling:
        node = evidence.opening.node.leaf
        verdict = CHALLENGE_REJECTED if result.ok else PROVIDER_FAULT
        if result.comparison == "tolerance":
            how = (
                f"runtime identities differ (receipt: {receipt.runtime.describe()}; referee: "
                f"{result.local_profile}), so outputs were compared within tolerance "
                f"(rtol={self.tolerance.rtol}, atol={self.tolerance.atol}): "
            )
        else:
            how = "same runtime identity, outputs compared bit for bit: "
        what = (
            "the provider's committed outputs are what the operator computes"
            if result.ok
            else "the provider's committed outputs are not what the operator computes ("
            + result.describe()
            + ")"
        )
        ruling = Ruling(
            receipt=rid,
            evidence=evidence.digest,
            node=node.index,
            node_name=node.name,
            op=node.op,
            verdict=verdict,
            reason=how + what,
            comparison=result.comparison,
            receipt_runtime=receipt.runtime.identity,
            referee_runtime=result.local_identity,
            provider_outputs=provider_outputs,
            recomputed_outputs=tuple(
                value_entry(name, value) for name, value in sorted(result.recomputed.items())
            ),
            challenger_outputs=evidence.claim.outputs,
            provider_messages=RELAYED if relayed else PROVIDER_SIGNED,
            issued_at=self.clock.now_ms(),
        )
        envelope = Envelope.sign(RULING_PAYLOAD_TYPE, codec.encode(ruling.to_wire()), self.signer)
        return SignedRuling(envelope=envelope, ruling=ruling, rerun=result)


def _receipt(
    evidence: Evidence, trusted: tuple[PublicKey, ...] | None
) -> tuple[Receipt, Digest, PublicKey]:
    """(j1) the bundle's receipt: a canonical envelope, validly signed (by a trusted key when
    the referee has any), with a trace."""
    try:
        envelope = Envelope.from_bytes(evidence.receipt)
        key = envelope.verify_signature(trusted)
        receipt = Receipt.decode(envelope.payload)
    except SignatureError as e:
        raise EvidenceError(f"(j1) the bundle's receipt signature does not verify: {e}") from e
    except MalformedError as e:
        raise EvidenceError(f"(j1) the bundle's receipt: {e}") from e
    if receipt.provider != key.key_id:
        raise EvidenceError("(j1) the receipt names a provider key other than its signer")
    if receipt.trace is None:
        raise EvidenceError("(j1) the receipt carries no trace commitment")
    return receipt, receipt_id(envelope.payload), key
