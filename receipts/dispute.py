"""Dispute by bisection: narrow two traces of one receipt to the first node they disagree on
(dispute layer, above verification).

The provider committed, in the signed receipt, to a trace root over N node leaves. A challenger
recomputes the trace and finds a different root. The first node whose leaf differs is a node
whose inputs both sides agree on (every earlier leaf agrees, and nodes are in topological order)
and whose outputs they do not. Bisection finds it in ceil(log2 N) rounds: the challenger asks for
the provider's root over the first m leaves, the provider answers with that prefix root and an
RFC 6962 consistency proof to the signed trace root, and the challenger keeps the half where the
first disagreement lies. A last round asks for the opening of that node.

Messages are signed files (envelopes over canonical maps) chained by the digest of the previous
message, so the two sides can be separate processes and the transcript is tamper-evident:

    challenger  open     {nodes, root}            my recomputation has another root
    challenger  query    {size: m}                your root over the first m leaves?
    provider    prefix   {size, root, proof}      that root, consistent with the signed root
    challenger  request  {index, claim}           open node `index`; `claim` is my leaf for it
    provider    opening  {index, opening}         the digest of the opening in the evidence

Provider messages carry their own proof (a consistency proof to the signed root, an opening
checked against the receipt's commitments), so a local driver playing both sides may sign them
with the challenger's key as a relay of the provider's trace file; the referee accepts either the
provider's key or the challenger's on provider messages and checks the proofs either way.

    challenger = Challenger(receipt, rid, my_leaves, signer)
    responder = Responder(receipt, rid, reader, signer, view=view, inputs=inputs)
    result = run_local(challenger, responder.answer)   # DisputeResult: node, rounds, transcript
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from receipts import codec, merkle
from receipts.codec import MapReader
from receipts.digests import Digest, TensorMapDigest, Value, digest_of
from receipts.envelope import Envelope
from receipts.errors import (
    DigestMismatchError,
    DisputeError,
    MalformedError,
    ModelError,
    NothingToDispute,
    SignatureError,
    VerificationError,
)
from receipts.evidence import Evidence
from receipts.graph import GraphView, NodeView
from receipts.keys import PublicKey, Signer
from receipts.model import LoadedModel
from receipts.opening import Opening, open_node, opening_digest
from receipts.receipt import Receipt, receipt_id
from receipts.runtime import OrtRunner, RunnerFactory
from receipts.spotcheck import check_trace
from receipts.trace import TraceCommitment, TraceLeaf, TraceReader
from receipts.tracing import Tracer

DISPUTE_PAYLOAD_TYPE = "application/vnd.inference-receipts.dispute.v1+msgpack"
CHALLENGER, PROVIDER = "challenger", "provider"
KINDS = {
    "open": CHALLENGER,
    "query": CHALLENGER,
    "prefix": PROVIDER,
    "request": CHALLENGER,
    "opening": PROVIDER,
}
MAX_MESSAGES = 256
_NO_PREVIOUS = bytes(32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One protocol message (the signed payload)."""

    receipt: Digest
    seq: int
    prev: bytes
    role: str
    kind: str
    body: Mapping[str, Any]

    def to_wire(self) -> dict[str, object]:
        return {
            "type": "dispute-message",
            "version": 1,
            "receipt": self.receipt.value,
            "seq": self.seq,
            "prev": self.prev,
            "role": self.role,
            "kind": self.kind,
            "body": dict(self.body),
        }

    @classmethod
    def from_wire(cls, value: object) -> Message:
        r = MapReader(value, "dispute message")
        if r.text("type", 32) != "dispute-message" or r.integer("version", 0, 255) != 1:
            raise MalformedError("not a dispute message v1")
        message = cls(
            receipt=Digest(r.binary("receipt", 32)),
            seq=r.integer("seq", 0, MAX_MESSAGES - 1),
            prev=r.binary("prev", 32),
            role=r.text("role", 16),
            kind=r.text("kind", 16),
            body=_body(r.map("body"), r.text("kind", 16)),
        )
        r.close()
        if KINDS.get(message.kind) != message.role:
            raise DisputeError(f"a {message.role} cannot send a {message.kind!r} message")
        return message


def _body(r: MapReader, kind: str) -> dict[str, Any]:
    """Each kind's body fields, typed and bounded."""
    body: dict[str, Any]
    if kind == "open":
        body = {"nodes": r.integer("nodes", 1, 1 << 20), "root": r.binary("root", 32)}
    elif kind == "query":
        body = {"size": r.integer("size", 1, 1 << 20)}
    elif kind == "prefix":
        proof = r.array("proof", 64)
        if not all(isinstance(p, bytes) and len(p) == 32 for p in proof):
            raise MalformedError("a consistency proof is a list of 32-byte hashes")
        body = {"size": r.integer("size", 1, 1 << 20), "root": r.binary("root", 32), "proof": proof}
    elif kind == "request":
        body = {"index": r.integer("index", 0, 1 << 20), "claim": r.binary("claim")}
    elif kind == "opening":
        body = {"index": r.integer("index", 0, 1 << 20), "opening": r.binary("opening", 32)}
    else:
        raise MalformedError(f"unknown dispute message kind {kind!r}")
    r.close()
    return body


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """A signed message: the envelope bytes as sent, and what they say."""

    data: bytes
    envelope: Envelope
    message: Message

    @property
    def digest(self) -> bytes:
        return digest_of("dispute-message", self.data).value


def sign_message(message: Message, signer: Signer) -> Signed:
    envelope = Envelope.sign(DISPUTE_PAYLOAD_TYPE, codec.encode(message.to_wire()), signer)
    return Signed(data=envelope.to_bytes(), envelope=envelope, message=message)


def read_message(data: bytes) -> Signed:
    """Decode a signed message (signature checked against its embedded key; who may sign is
    the transcript's business)."""
    envelope = Envelope.from_bytes(data, payload_type=DISPUTE_PAYLOAD_TYPE)
    envelope.verify_signature(None)
    return Signed(
        data=data, envelope=envelope, message=Message.from_wire(codec.decode(envelope.payload))
    )


@dataclass(slots=True)
class _Chain:
    """The shared transcript: sequence numbers and the digest chain."""

    receipt: Digest
    messages: list[Signed] = field(default_factory=list)

    def next(self, role: str, kind: str, body: Mapping[str, Any]) -> Message:
        prev = self.messages[-1].digest if self.messages else _NO_PREVIOUS
        return Message(
            receipt=self.receipt, seq=len(self.messages), prev=prev, role=role, kind=kind, body=body
        )

    def accept(self, signed: Signed) -> None:
        m = signed.message
        prev = self.messages[-1].digest if self.messages else _NO_PREVIOUS
        if m.receipt != self.receipt:
            raise DisputeError(f"message {m.seq} is about another receipt")
        if m.seq != len(self.messages) or m.prev != prev:
            raise DisputeError(f"message {m.seq} does not follow the transcript (order or chain)")
        if len(self.messages) >= MAX_MESSAGES:
            raise DisputeError("the dispute exceeds its message limit")
        self.messages.append(signed)


def check_prefix(message: Message, trace: TraceCommitment) -> bytes:
    """A provider's prefix root, checked against the signed trace root; returns the root."""
    size, root, proof = message.body["size"], message.body["root"], message.body["proof"]
    if size >= trace.nodes:
        raise DisputeError(f"prefix size {size} is not below the trace's {trace.nodes} nodes")
    try:
        merkle.verify_consistency(size, trace.nodes, root, trace.root.value, proof)
    except VerificationError as e:
        raise DisputeError(f"prefix root for {size} nodes is not consistent: {e}") from e
    return bytes(root)


class Challenger:
    """The side holding a recomputed trace; drives the bisection."""

    def __init__(
        self, receipt: Receipt, receipt_id: Digest, leaves: Sequence[TraceLeaf], signer: Signer
    ) -> None:
        if receipt.trace is None:
            raise DisputeError("the receipt carries no trace commitment to dispute")
        if len(leaves) != receipt.trace.nodes:
            raise DisputeError(
                f"the recomputed trace has {len(leaves)} nodes, the receipt's {receipt.trace.nodes}"
            )
        self.trace = receipt.trace
        self.leaves = list(leaves)
        self.tree = merkle.MerkleTree([leaf.hash for leaf in leaves])
        if self.tree.root() == self.trace.root.value:
            raise NothingToDispute(
                "the recomputed trace has the receipt's root: nothing to dispute"
            )
        self.signer = signer
        self.chain = _Chain(receipt_id)
        self.lo, self.hi = 0, self.trace.nodes  # prefix lo agrees, prefix hi does not
        self.rounds = 0
        self.opening: Opening | None = None

    def start(self) -> Signed:
        body = {"nodes": self.trace.nodes, "root": self.tree.root()}
        return self._send("open", body)

    def _send(self, kind: str, body: Mapping[str, Any]) -> Signed:
        signed = sign_message(self.chain.next(CHALLENGER, kind, body), self.signer)
        self.chain.accept(signed)
        return signed

    def _ask(self) -> Signed:
        if self.hi - self.lo == 1:
            claim = self.leaves[self.lo].data
            return self._send("request", {"index": self.lo, "claim": claim})
        return self._send("query", {"size": (self.lo + self.hi) // 2})

    def receive(self, signed: Signed, *, opening: Opening | None = None) -> Signed | None:
        """Take the provider's answer (with the opening an ``opening`` message names); return
        the next message, or None when done."""
        self.chain.accept(signed)
        m = signed.message
        if m.kind == "opening":
            if opening is None or opening_digest(opening) != m.body["opening"]:
                raise DisputeError("the provider's opening is not the one its message names")
            if opening.index != self.lo or m.body["index"] != self.lo:
                raise DisputeError("the provider opened another node than the one requested")
            self.opening = opening
            return None
        if m.kind != "prefix":
            raise DisputeError(f"expected a prefix or opening message, got {m.kind!r}")
        asked = self.chain.messages[-2].message
        if asked.kind != "query" or m.body["size"] != asked.body["size"]:
            raise DisputeError("the prefix answers another question than the one asked")
        root = check_prefix(m, self.trace)
        self.rounds += 1
        if root == self.tree.root(m.body["size"]):
            self.lo = m.body["size"]
        else:
            self.hi = m.body["size"]
        return self._ask()

    def first(self) -> Signed:
        """After ``start``: the first question."""
        return self._ask()

    def result(self) -> DisputeResult:
        """Once the provider has opened the first divergent node."""
        if self.opening is None:
            raise DisputeError("the dispute has not reached an opening yet")
        return DisputeResult(
            index=self.lo,
            rounds=self.rounds + 1,  # the bisection rounds and the opening round
            claim=self.leaves[self.lo],
            opening=self.opening,
            transcript=tuple(s.data for s in self.chain.messages),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The provider's answer to one message, and for a request the opening it names."""

    signed: Signed
    opening: Opening | None = None


class Responder:
    """The provider's side, answering from its trace file. Stateless: each reply depends only on
    the message it answers (it follows that message in the chain), so the provider may answer
    from another process, message file by message file (``receipts dispute-answer``)."""

    def __init__(
        self,
        receipt: Receipt,
        receipt_id: Digest,
        reader: TraceReader,
        signer: Signer,
        *,
        view: GraphView,
        inputs: Mapping[str, Value],
    ) -> None:
        reader.check_commitment(receipt.trace, receipt.model)
        self.receipt_id = receipt_id
        self.reader, self.signer, self.view, self.inputs = reader, signer, view, inputs

    def answer(self, data: bytes) -> Reply | None:
        """The reply to a challenger's message (None for ``open``, which needs none)."""
        try:
            signed = read_message(data)
        except (MalformedError, SignatureError) as e:
            raise DisputeError(f"not a validly signed dispute message: {e}") from e
        m = signed.message
        if m.receipt != self.receipt_id:
            raise DisputeError("the message is about another receipt")
        if m.role != CHALLENGER:
            raise DisputeError(f"the provider does not answer {m.kind!r} messages")
        if m.kind == "open":
            return None
        if m.kind == "query":
            size = m.body["size"]
            if not 1 <= size < len(self.reader):
                raise DisputeError(f"query for a prefix of {size} of {len(self.reader)} nodes")
            body = {
                "size": size,
                "root": self.reader.tree.root(size),
                "proof": self.reader.tree.consistency_proof(size),
            }
            return Reply(signed=self._reply(signed, "prefix", body))
        index = m.body["index"]
        opening = open_node(self.reader, self.view, index, self.inputs)
        body = {"index": index, "opening": opening_digest(opening)}
        return Reply(signed=self._reply(signed, "opening", body), opening=opening)

    def _reply(self, to: Signed, kind: str, body: Mapping[str, Any]) -> Signed:
        message = Message(
            receipt=self.receipt_id,
            seq=to.message.seq + 1,
            prev=to.digest,
            role=PROVIDER,
            kind=kind,
            body=body,
        )
        return sign_message(message, self.signer)


@dataclass(frozen=True, slots=True, kw_only=True)
class DisputeResult:
    """Where the traces first diverge, how many rounds it took, and the transcript."""

    index: int
    rounds: int
    claim: TraceLeaf
    opening: Opening
    transcript: tuple[bytes, ...]


def run_local(challenger: Challenger, answer: Callable[[bytes], Reply | None]) -> DisputeResult:
    """Drive the bisection against ``answer`` (a ``Responder``'s, or one that reaches a
    provider in another process), passing each message as the bytes a file would hold."""
    answer(challenger.start().data)
    message: Signed | None = challenger.first()
    while message is not None:
        reply = answer(message.data)
        if reply is None:
            raise DisputeError("the provider side stopped answering")
        message = challenger.receive(read_message(reply.signed.data), opening=reply.opening)
    return challenger.result()


def check_transcript(
    transcript: Sequence[bytes],
    receipt: Receipt,
    receipt_id: Digest,
    *,
    challenger: PublicKey,
    provider: PublicKey,
) -> list[Signed]:
    """Every message well-formed, signed by a key allowed for its role, in order and chained,
    every prefix consistent with the signed trace root."""
    assert receipt.trace is not None
    chain = _Chain(receipt_id)
    for i, data in enumerate(transcript):
        try:
            signed = read_message(data)
        except (MalformedError, SignatureError) as e:
            raise DisputeError(f"transcript message {i}: {e}") from e
        key = signed.envelope.signature.public_key
        allowed = (challenger,) if signed.message.role == CHALLENGER else (provider, challenger)
        if key not in allowed:
            raise DisputeError(f"transcript message {i} is signed by a key outside the dispute")
        chain.accept(signed)
        if signed.message.kind == "prefix":
            check_prefix(signed.message, receipt.trace)
    messages = chain.messages
    if not messages or messages[0].message.kind != "open":
        raise DisputeError("the transcript does not start with the challenger's open message")
    if len(messages) < 3 or [m.message.kind for m in messages[-2:]] != ["request", "opening"]:
        raise DisputeError("the transcript does not end with a request and its opening")
    index = messages[-2].message.body["index"]
    sizes = {0, receipt.trace.nodes} | {
        m.message.body["size"] for m in messages if m.message.kind == "prefix"
    }
    if index not in sizes or index + 1 not in sizes:
        raise DisputeError(
            f"the transcript requests node #{index} without bisecting down to it (prefixes of "
            f"{index} and {index + 1} nodes must have been answered)"
        )
    return messages


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDispute:
    """A dispute played out in one process, and the evidence bundle it packaged."""

    result: DisputeResult
    evidence: Evidence
    node: NodeView


def dispute_locally(
    data: bytes,
    model: LoadedModel,
    inputs: Mapping[str, Any],
    provider_trace: TraceReader,
    signer: Signer,
    *,
    provider_signer: Signer | None = None,
    runner_factory: RunnerFactory = OrtRunner,
    inject_fault: str | None = None,
) -> LocalDispute:
    """Recompute the receipt's trace, bisect against the provider's trace file and package the
    evidence. Raises ``NothingToDispute`` when the traces agree. ``inject_fault`` corrupts the
    challenger's own recomputation at that node (a drill: such a challenge must be rejected)."""
    envelope = Envelope.from_bytes(data)
    key = envelope.verify_signature(None)
    receipt = Receipt.decode(envelope.payload)
    if receipt.provider != key.key_id:
        raise SignatureError("receipt names a provider key other than the one that signed it")
    if model.digest != receipt.model:
        raise ModelError(f"the model is not the receipt's: {model.digest} vs {receipt.model}")
    if receipt.trace is None:
        raise DisputeError("the receipt carries no trace commitment to dispute")
    provider_trace.check_commitment(receipt.trace, receipt.model)
    rid = receipt_id(envelope.payload)
    tracer = Tracer(model, receipt.runtime.settings, runner_factory=runner_factory)
    arrays = model.check_inputs(inputs)
    if TensorMapDigest.of(arrays).entries != receipt.inputs.entries:
        raise DigestMismatchError("the inputs are not the receipt's inputs")
    # A receipt whose outputs are not what its own trace commits to needs no bisection: step 12
    # of the spot check refuses it outright.
    check_trace(receipt, tracer.view, provider_trace)
    fault = tracer.view.find(inject_fault) if inject_fault is not None else None
    leaves = tracer.run(arrays, fault=fault).leaves()
    challenger = Challenger(receipt, rid, leaves, signer)
    responder = Responder(
        receipt, rid, provider_trace, provider_signer or signer, view=tracer.view, inputs=arrays
    )
    result = run_local(challenger, responder.answer)
    evidence = Evidence(
        receipt=data,
        challenger=signer.public_key,
        index=result.index,
        claim=result.claim,
        opening=result.opening,
        transcript=result.transcript,
    )
    return LocalDispute(result=result, evidence=evidence, node=tracer.view.nodes[result.index])
