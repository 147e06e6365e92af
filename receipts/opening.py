"""Openings: one node of a committed trace, with everything needed to re-run it (verification).

An opening of node i holds node i's leaf with its inclusion proof against the receipt's trace
root, the values it read and the values it wrote, and a proof for each: values from earlier
nodes against those nodes' leaves (each with its own inclusion proof), model inputs against the
receipt's input entries, weights against the model digest's per-tensor leaves (RFC 6962
inclusion proofs), and its outputs against its own leaf. ``check_opening`` checks all of it
against a receipt and the model's graph and returns an ``OpenedNode`` ready to re-run; it trusts
nothing in the opening itself.

    opening = open_node(reader, view, index=12, inputs=inputs)   # provider side
    node = check_opening(opening, receipt, view)                 # verifier / referee side

Steps of ``check_opening`` (named in errors):
  (o1) node     index in range; the view is the traced model (same node count); the leaf names
                that node (index, op, domain, name, outputs) and is in the trace (inclusion)
  (o2) outputs  each output value matches its entry in the leaf
  (o3) reads    each value read matches its source: an earlier node's leaf entry (with that
                leaf's inclusion proof), the receipt's input entry, or a model weight leaf
  (o4) weights  each weight inside the node or read by it is a leaf of the model digest
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from receipts import merkle
from receipts.codec import MapReader
from receipts.digests import (
    Digest,
    SequenceEntry,
    TensorEntry,
    Value,
    entry_from_wire,
    entry_to_wire,
    record_digest,
    tensor_digest,
    value_entry,
)
from receipts.errors import MalformedError, OpeningError, TraceError, VerificationError
from receipts.graph import INPUT, NODE, WEIGHT, GraphView, NodeView
from receipts.model import weight_leaf_data
from receipts.receipt import Receipt
from receipts.trace import MAX_NODES, TraceCommitment, TraceLeaf, TraceReader


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafProof:
    """A trace leaf and its audit path in the trace tree."""

    leaf: TraceLeaf
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightProof:
    """A model weight, its leaf position and audit path in the model-digest tree."""

    path: str
    index: int
    size: int
    proof: tuple[bytes, ...]
    value: np.ndarray[Any, Any]

    def leaf_data(self) -> bytes:
        return weight_leaf_data(self.path, tensor_digest(self.value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Opening:
    """Node ``index`` opened: its leaf, its producers' leaves, weights, and the values."""

    index: int
    node: LeafProof
    producers: tuple[LeafProof, ...]
    weights: tuple[WeightProof, ...]
    reads: dict[str, Value]  # values read from model inputs and earlier nodes
    outputs: dict[str, Value]  # the values the provider says the node wrote


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedNode:
    """A checked opening: the node, its committed operands and its committed outputs."""

    node: NodeView
    leaf: TraceLeaf
    reads: dict[str, Value]
    weights: dict[str, np.ndarray[Any, Any]]  # by model path
    outputs: dict[str, Value]


def open_node(
    reader: TraceReader, view: GraphView, index: int, inputs: Mapping[str, Value]
) -> Opening:
    """Build the opening of node ``index`` from a trace file, the model and the run's inputs."""
    if not 0 <= index < len(reader):
        raise TraceError(f"node index {index} is out of range (the trace has {len(reader)})")
    if len(view) != len(reader):
        raise TraceError(f"the trace has {len(reader)} nodes, the model {len(view)}")
    node = view.nodes[index]
    supplied = frozenset(inputs)
    producers: dict[int, LeafProof] = {}
    produced: dict[int, dict[str, Value]] = {}  # each producer's outputs, read once
    reads: dict[str, Value] = {}
    paths = list(node.weight_paths)
    for name in node.inputs:
        source = view.source(name, supplied)
        if source.kind == NODE:
            j = source.node
            if j not in producers:
                producers[j] = _leaf_proof(reader, j)
                produced[j] = reader.values(j, check=False)
            reads[name] = produced[j][name]
        elif source.kind == INPUT:
            reads[name] = inputs[name]
        else:
            paths.extend(source.paths)
    model_digest = view.model.model_digest
    by_path = {w.path: w for w in model_digest.weights}
    weights = []
    for path in dict.fromkeys(paths):
        leaf_index, proof = model_digest.inclusion_proof(path)
        weights.append(
            WeightProof(
                path=path,
                index=leaf_index,
                size=len(model_digest.weights) + 1,
                proof=tuple(proof),
                value=view.weight_value(by_path[path]),
            )
        )
    return Opening(
        index=index,
        node=_leaf_proof(reader, index),
        producers=tuple(producers[j] for j in sorted(producers)),
        weights=tuple(weights),
        reads=reads,
        outputs=reader.values(index, check=False),
    )


def _leaf_proof(reader: TraceReader, index: int) -> LeafProof:
    return LeafProof(leaf=reader.leaves[index], proof=tuple(reader.tree.inclusion_proof(index)))


def check_opening(opening: Opening, receipt: Receipt, view: GraphView) -> OpenedNode:
    """Check ``opening`` against the receipt's commitments and the model's graph (steps o1-o4);
    raises ``OpeningError`` naming the first step that fails."""
    trace = receipt.trace
    if trace is None:
        raise TraceError("the receipt carries no trace commitment")
    if view.model.digest != receipt.model:
        raise OpeningError("(o1) the model is not the receipt's model")
    if len(view) != trace.nodes:
        raise OpeningError(
            f"(o1) the receipt's trace has {trace.nodes} nodes, the model {len(view)}"
        )
    if not 0 <= opening.index < trace.nodes:
        raise OpeningError(
            f"(o1) node index {opening.index} is out of range (the trace has {trace.nodes})"
        )
    unknown = sorted(e.name for e in receipt.inputs.entries if e.name not in view.input_names)
    if unknown:
        raise OpeningError(f"(o1) the receipt's input {unknown[0]!r} is not an input of the model")
    node = view.nodes[opening.index]
    _check_leaf(opening.node, node, trace)
    _check_outputs(opening, node)
    paths = _check_reads(opening, node, receipt, view)
    size = len(view.model.weights) + 1  # the structure leaf and one leaf per weight
    weights = _check_weights(opening, node, receipt.model, paths, size)
    return OpenedNode(
        node=node,
        leaf=opening.node.leaf,
        reads={name: opening.reads[name] for name in node.inputs if name in opening.reads},
        weights=weights,
        outputs=dict(opening.outputs),
    )


def _check_outputs(opening: Opening, node: NodeView) -> None:  # (o2)
    if set(opening.outputs) != set(node.outputs):
        raise OpeningError(f"(o2) {node.label}: the opening's outputs are not the node's")
    for name, value in opening.outputs.items():
        if _entry(name, value) != opening.node.leaf.entry(name):
            raise OpeningError(f"(o2) {node.label}: output {name!r} does not match its leaf")


def _check_reads(
    opening: Opening, node: NodeView, receipt: Receipt, view: GraphView
) -> list[str]:  # (o3)
    """Check every non-weight value the node reads; return the weight paths it needs."""
    assert receipt.trace is not None
    producers = {p.leaf.index: p for p in opening.producers}
    receipt_inputs = receipt.inputs.by_name()
    if set(opening.reads) - set(node.inputs):
        raise OpeningError(f"(o3) {node.label}: the opening holds values the node does not read")
    paths = list(node.weight_paths)
    for name in node.inputs:
        source = view.source(name, frozenset(receipt_inputs))
        if source.kind == WEIGHT:
            if name in opening.reads:  # a weight comes from the model digest, never the opening
                raise OpeningError(
                    f"(o3) {node.label}: the opening gives a value for weight {name!r}"
                )
            paths.extend(source.paths)
            continue
        if name not in opening.reads:
            raise OpeningError(f"(o3) {node.label}: the opening lacks the value {name!r}")
        entry = _entry(name, opening.reads[name])
        if source.kind == INPUT:
            if receipt_inputs.get(name) != entry:
                raise OpeningError(f"(o3) {node.label}: input {name!r} is not the receipt's")
            continue
        producer = producers.get(source.node)
        if producer is None:
            raise OpeningError(
                f"(o3) {node.label}: no leaf of node #{source.node}, which produced {name!r}"
            )
        _check_leaf(producer, view.nodes[source.node], receipt.trace)
        if producer.leaf.entry(name) != entry:
            raise OpeningError(
                f"(o3) {node.label}: {name!r} is not what node #{source.node} committed to"
            )
    return list(dict.fromkeys(paths))


def _check_weights(
    opening: Opening, node: NodeView, model: Digest, paths: list[str], size: int
) -> dict[str, np.ndarray[Any, Any]]:  # (o4)
    """Each weight is a leaf of the model-digest tree of ``size`` leaves (the size comes from
    the model checked against the receipt, never from the opening)."""
    weights = {w.path: w for w in opening.weights}
    for path in paths:
        proof = weights.get(path)
        if proof is None:
            raise OpeningError(f"(o4) {node.label}: the opening lacks weight {path}")
        if proof.size != size:
            raise OpeningError(f"(o4) {node.label}: weight {path}: wrong model tree size")
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(proof.leaf_data()), proof.index, size, proof.proof, model.value
            )
        except VerificationError as e:
            raise OpeningError(f"(o4) {node.label}: weight {path}: {e}") from e
    return {path: weights[path].value for path in paths}


def _check_leaf(proof: LeafProof, node: NodeView, trace: TraceCommitment) -> None:
    """(o1) the leaf names ``node`` and sits at its index under ``root``."""
    leaf = proof.leaf
    if (leaf.index, leaf.op, leaf.domain, leaf.name) != (
        node.index,
        node.op_type,
        node.domain,
        node.name,
    ) or tuple(e.name for e in leaf.outputs) != node.outputs:
        raise OpeningError(f"(o1) the leaf of {node.label} does not describe that node")
    try:
        merkle.verify_inclusion(leaf.hash, leaf.index, trace.nodes, proof.proof, trace.root.value)
    except VerificationError as e:
        raise OpeningError(f"(o1) {node.label}: leaf not in the receipt's trace: {e}") from e


def _entry(name: str, value: Value) -> Any:
    try:
        return value_entry(name, value)
    except MalformedError as e:
        raise OpeningError(f"value {name!r}: {e}") from e


# -- wire form (evidence bundles): a canonical map plus tensors in order -------------------------


def opening_to_wire(opening: Opening) -> tuple[dict[str, object], list[np.ndarray[Any, Any]]]:
    """The opening as a canonical map whose entries carry each tensor's digest, and the tensors
    in the order the map lists them (reads, outputs, weights)."""
    tensors: list[np.ndarray[Any, Any]] = []

    def values(items: Mapping[str, Value]) -> list[object]:
        out: list[object] = []
        for name in sorted(items):
            value = items[name]
            out.append(entry_to_wire(value_entry(name, value)))
            if isinstance(value, list):
                tensors.extend(value)
            elif value is not None:
                tensors.append(value)
        return out

    reads, outputs = values(opening.reads), values(opening.outputs)
    weights = []
    for w in opening.weights:
        weights.append(
            {
                "path": w.path,
                "index": w.index,
                "size": w.size,
                "proof": list(w.proof),
                "tensor": entry_to_wire(value_entry(w.path, w.value)),
            }
        )
        tensors.append(w.value)
    wire = {
        "index": opening.index,
        "node": _leaf_proof_wire(opening.node),
        "producers": [_leaf_proof_wire(p) for p in opening.producers],
        "weights": weights,
        "reads": reads,
        "outputs": outputs,
    }
    return wire, tensors


def _leaf_proof_wire(p: LeafProof) -> dict[str, object]:
    return {"leaf": p.leaf.data, "proof": list(p.proof)}


TensorSource = Callable[[TensorEntry], np.ndarray[Any, Any]]


def opening_from_wire(value: object, read: TensorSource) -> Opening:
    """Parse an opening map; ``read`` returns the next tensor (checked against its entry)."""
    r = MapReader(value, "opening")
    index = r.integer("index", 0, MAX_NODES - 1)
    node = _leaf_proof_from_wire(r.raw("node"))
    producers = tuple(_leaf_proof_from_wire(p) for p in r.array("producers", 4096))
    weight_wires = r.array("weights", 65_536)
    reads = _values_from_wire(r.array("reads", 4096), read)
    outputs = _values_from_wire(r.array("outputs", 4096), read)
    weights = []
    for item in weight_wires:
        w = MapReader(item, "opened weight")
        path = w.text("path")
        entry = entry_from_wire(w.raw("tensor"))
        if not isinstance(entry, TensorEntry) or entry.name != path:
            raise MalformedError(f"opened weight {path!r} is not one tensor named by its path")
        weights.append(
            WeightProof(
                path=path,
                index=w.integer("index", 0, 1 << 32),
                size=w.integer("size", 1, 1 << 32),
                proof=_hashes(w.array("proof", 64)),
                value=read(entry),
            )
        )
        w.close()
    r.close()
    return Opening(
        index=index,
        node=node,
        producers=producers,
        weights=tuple(weights),
        reads=reads,
        outputs=outputs,
    )


def _leaf_proof_from_wire(value: object) -> LeafProof:
    r = MapReader(value, "leaf proof")
    proof = LeafProof(leaf=TraceLeaf.decode(r.binary("leaf")), proof=_hashes(r.array("proof", 64)))
    r.close()
    return proof


def _hashes(items: list[object]) -> tuple[bytes, ...]:
    if not all(isinstance(h, bytes) and len(h) == 32 for h in items):
        raise MalformedError("a Merkle proof is a list of 32-byte hashes")
    return tuple(h for h in items if isinstance(h, bytes))


def _values_from_wire(items: list[object], read: TensorSource) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for item in items:
        entry = entry_from_wire(item)
        if entry.name in out:
            raise MalformedError(f"value {entry.name!r} appears twice in the opening")
        if isinstance(entry, TensorEntry):
            out[entry.name] = read(entry)
        elif isinstance(entry, SequenceEntry):
            out[entry.name] = [read(e) for e in entry.items]
        else:
            out[entry.name] = None
    return out


def opening_digest(opening: Opening) -> bytes:
    """What a provider's ``opening`` message names: the digest of the opening's canonical map
    (which binds every tensor through its entry)."""
    return record_digest("opening", opening_to_wire(opening)[0]).value
