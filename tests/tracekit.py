"""Shared helpers of the trace, spot-check and dispute tests (not a test module).

Everything is real: onnxruntime runs, trace files on disk, signatures with the committed fixture
keys, a fixed clock and seeded nonces, so every receipt id and sample is the same on every run.

    traced = issue(fixture_loaded("mlp"), sample_inputs("mlp"), tmp_path, fault="#3")
    with traced.reader() as reader: ...
    transcript = resign(messages(evidence.transcript), challenger_key())   # forging evidence
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fixtures.generate import CLOCK_MS, PRICE
from receipts import FixedClock, LoadedModel, PrivateKey, Provider, load_model
from receipts.digests import Digest, TensorEntry
from receipts.dispute import Message, read_message, sign_message
from receipts.effects import seeded
from receipts.frames import FRAME
from receipts.graph import GraphView
from receipts.provider import TRACE_FILE
from receipts.receipt import Receipt
from receipts.runtime import RuntimeSettings
from receipts.trace import TraceReader
from tests.conftest import FIXTURES, fixture_key

CLOCK = FixedClock(CLOCK_MS)
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ("resnet50", "densenet121", "inception_v1")


def provider(settings: RuntimeSettings | None = None, *, nonce_seed: int = 7) -> Provider:
    return Provider(
        fixture_key(), price=PRICE, settings=settings, clock=CLOCK, random_bytes=seeded(nonce_seed)
    )


def challenger_key() -> PrivateKey:
    return fixture_key("challenger_ed25519")


def referee_key() -> PrivateKey:
    return fixture_key("referee_ed25519")


def stranger_key() -> PrivateKey:
    """A key that has no part in the dispute."""
    return fixture_key("other_ed25519")


def model_path(name: str) -> Path:
    return FIXTURES / "models" / f"{name}.onnx"


def fixture_loaded(name: str) -> LoadedModel:
    return load_model(model_path(name))


def light_path(name: str) -> Path:
    return LIGHT / f"light_{name}.onnx"


def light_inputs(model: LoadedModel) -> dict[str, np.ndarray[Any, Any]]:
    """For each graph input that is not an initializer, arange(n)/n in its declared shape."""
    graph = model.proto.graph
    weights = {t.name for t in graph.initializer}
    out = {}
    for value in graph.input:
        if value.name in weights:
            continue
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        n = math.prod(shape)
        out[value.name] = (np.arange(n, dtype=np.float32) / n).reshape(shape)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Traced:
    """One issued traced receipt on disk, without the in-memory trace (light traces are big)."""

    data: bytes
    receipt: Receipt
    rid: Digest
    outputs: Mapping[str, Any]
    path: Path  # the trace file

    def reader(self) -> TraceReader:
        return TraceReader.open(self.path)


def issue(
    model: LoadedModel,
    inputs: Mapping[str, Any],
    out: Path,
    *,
    fault: str | None = None,
    settings: RuntimeSettings | None = None,
    warm: bool = False,
) -> Traced:
    """Issue a traced receipt (optionally a fault drill) and write it into ``out``. ``warm``
    issues from a session that already ran traced once: a session's later traced runs take the
    pipelined path (the model run in parts, each part hashed while the next runs)."""
    session = provider(settings).session(model)
    if warm:
        session.run(inputs, trace=True)
    issued = session.run(inputs, trace=True, inject_fault=fault)
    issued.write(out)
    return Traced(
        data=issued.to_bytes(),
        receipt=issued.receipt,
        rid=issued.receipt_id,
        outputs=issued.outputs,
        path=out / TRACE_FILE,
    )


def rounds_bound(nodes: int) -> int:
    """What the issue allows a dispute over ``nodes`` nodes: ceil(log2 N) bisection rounds + 2."""
    return math.ceil(math.log2(nodes)) + 2


def float_nodes(reader: TraceReader) -> list[int]:
    """Nodes whose every output is a float32 tensor: corrupting one never changes a shape, so
    the rest of the graph still runs (a corrupted Shape output would make onnxruntime fail)."""
    return [
        leaf.index
        for leaf in reader.leaves
        if all(isinstance(e, TensorEntry) and e.spec.elem_type == "float32" for e in leaf.outputs)
    ]


def ancestors(view: GraphView, index: int) -> set[int]:
    """Every node whose outputs ``index`` reads, directly or through other nodes."""
    seen: set[int] = set()
    todo = [index]
    while todo:
        for name in view.nodes[todo.pop()].inputs:
            producer = view.producers.get(name)
            if producer is not None and producer not in seen:
                seen.add(producer)
                todo.append(producer)
    return seen


def branch_node(view: GraphView, merge_ops: frozenset[str]) -> tuple[int, int]:
    """A node inside a branch of the DAG, and the merge node (``merge_ops``) its branch feeds.

    Each operand of a merge is walked back, through nodes whose output has one consumer, to the
    fork the branches leave from; the first node of the shortest non-empty branch is returned (a
    residual shortcut's Conv, an Inception tower's first Conv). Merges of two non-empty branches
    are preferred; a model without any (DenseNet concatenates an identity skip with a new branch)
    gets the first node of the branch beside the skip. Only values computed from the model's
    inputs count as branches."""
    consumers: dict[str, int] = {}
    for node in view.nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    weights = {t.name for t in view.model.proto.graph.initializer}
    data = set(view.input_names - weights)  # values that depend on the model's inputs
    for node in view.nodes:
        if data.intersection(node.inputs):
            data.update(node.outputs)

    def computed(name: str) -> int | None:
        """The producer of ``name`` if it is computed from the inputs (weight arithmetic, such
        as the light models' ConstantOfShape and Unsqueeze nodes, is no branch)."""
        return view.producers.get(name) if name in data else None

    def branches(merge: int) -> list[list[int]]:
        out = []
        for end in {i for i in map(computed, view.nodes[merge].inputs) if i is not None}:
            branch: list[int] = []
            index: int | None = end
            while index is not None and consumers[view.nodes[index].outputs[0]] == 1:
                branch.append(index)
                index = next(
                    (j for j in map(computed, view.nodes[index].inputs) if j is not None), None
                )
            out.append(branch[::-1])
        return out

    merges = [n.index for n in view.nodes if n.op_type in merge_ops]
    for needed in (2, 1):
        for merge in merges:
            found = [b for b in branches(merge) if b]
            if len(found) >= needed and len(branches(merge)) >= 2:
                return min(found, key=len)[0], merge
    raise AssertionError("no merge of branches in this model")


# -- trace and evidence file surgery -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    start: int  # offset of the frame head
    end: int  # offset just past its bytes

    @property
    def body(self) -> int:
        return self.start + FRAME.size


def frames(data: bytes, magic_len: int = 8) -> list[Frame]:
    """The frames of a trace or evidence file, parsed independently of the library."""
    out, offset = [], magic_len
    while offset < len(data):
        kind, length = FRAME.unpack_from(data, offset)
        out.append(Frame(kind, offset, offset + FRAME.size + length))
        offset += FRAME.size + length
    assert offset == len(data)
    return out


def node_groups(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each node's frames in a trace file: its leaf and its tensors."""
    groups: list[list[int]] = []
    for frame in frames(data):
        if frame.kind == 2:
            groups.append([frame.start, frame.end])
        elif frame.kind == 3:
            groups[-1][1] = frame.end
    return [(a, b) for a, b in groups]


# -- forging dispute transcripts ------------------------------------------------------------------


def messages(transcript: Sequence[bytes]) -> list[Message]:
    return [read_message(data).message for data in transcript]


def resign(items: Sequence[Message], signer: PrivateKey) -> tuple[bytes, ...]:
    """Sign ``items`` anew as one chained transcript (sequence numbers and digests redone). A
    challenger that relays the provider's messages may sign them all with its own key, so this is
    exactly what a lying challenger can produce."""
    out, prev = [], bytes(32)
    for seq, message in enumerate(items):
        signed = sign_message(replace(message, seq=seq, prev=prev), signer)
        out.append(signed.data)
        prev = signed.digest
    return tuple(out)


def with_body(message: Message, **changes: object) -> Message:
    return replace(message, body={**message.body, **changes})
