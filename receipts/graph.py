"""The model as a list of operators, and the derived models traces and disputes run (runtime layer).

A trace, a spot check and a dispute all speak of *nodes*: the operators of the model's main graph,
indexed in the order the model lists them (ONNX requires that order to be topological, and
``GraphView`` refuses a model where it is not). For each node the view knows where every value it
reads comes from (a model input, a weight of the model digest, or an earlier node's output), which
weights sit inside the node (tensor attributes, initializers of If/Loop/Scan bodies) and which
outer-scope values its subgraphs read.

From the view come the three derived models the runtime executes, all sharing the node definitions
byte for byte with the model whose digest the receipt binds:

    view = GraphView(model)
    view.traced_bytes()              # every node output also a graph output (traced runs)
    view.single_node(i, values)      # node i alone, its weights as in the model (re-running one op)
    view.without_node_bytes(i, ...)  # node i's outputs fed from outside (fault drills)

Re-running one node reproduces its bits only if onnxruntime sees its operands as it did in the
whole model: weights stay initializers (so they are prepacked alike), initializers that are also
graph inputs stay overridable, and Constant nodes (which onnxruntime turns into initializers when
it loads a graph) are embedded as initializers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from receipts.digests import Value, tensor_digest
from receipts.errors import ModelError
from receipts.model import LoadedModel, WeightLeaf
from receipts.tensors import ELEM_TYPES, elem_type_of

INPUT, WEIGHT, NODE = "input", "weight", "node"


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a value a node reads comes from: ``input`` (the receipt's inputs), ``weight`` (a
    model-digest leaf; ``path``), ``node`` (an earlier node's output; ``node`` index)."""

    kind: str
    name: str
    node: int = -1
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """One operator of the main graph, as traces and openings name it."""

    index: int
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]  # every value the node reads: explicit inputs, then outer-scope names
    outputs: tuple[str, ...]  # the outputs it produces (absent optional outputs left out)
    weight_paths: tuple[str, ...]  # model-digest leaves inside the node (attributes, bodies)

    @property
    def label(self) -> str:
        """How reports name the node: ``#12 Conv 'conv3'``."""
        return (
            f"#{self.index} {self.op_type} {self.name!r}"
            if self.name
            else (f"#{self.index} {self.op_type}")
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SubModel:
    """A model of some of the nodes, and the names it must be fed (weights and Constant
    outputs are embedded)."""

    data: bytes
    feeds: tuple[str, ...]


class GraphView:
    """The nodes of a loaded model with the sources of their operands."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        graph = model.proto.graph
        self._inits = {t.name: f"graph/initializer/{i}" for i, t in enumerate(graph.initializer)}
        self._sparse = {
            t.values.name: i for i, t in enumerate(graph.sparse_initializer) if t.values.name
        }
        self.input_names = frozenset(v.name for v in graph.input)
        by_node: dict[int, list[str]] = {}
        for w in model.weights:
            parts = w.path.split("/")
            if parts[:2] == ["graph", "node"]:
                by_node.setdefault(int(parts[2]), []).append(w.path)
        producers: dict[str, int] = {}
        nodes = []
        for i, node in enumerate(graph.node):
            explicit = [n for n in node.input if n]
            implicit = sorted(_outer_names(node) - set(explicit))
            reads = tuple(dict.fromkeys([*explicit, *implicit]))
            for name in reads:
                if name not in producers and not self._declared(name):
                    raise ModelError(
                        f"node #{i} ({node.op_type} {node.name!r}) reads {name!r} before any "
                        "node produces it: the model's nodes are not in topological order"
                    )
            outputs = tuple(n for n in node.output if n)
            for name in outputs:
                if name in producers or self._declared(name):
                    raise ModelError(f"value {name!r} is produced twice")
                producers[name] = i
            nodes.append(
                NodeView(
                    index=i,
                    name=node.name,
                    op_type=node.op_type,
                    domain=node.domain,
                    inputs=reads,
                    outputs=outputs,
                    weight_paths=tuple(sorted(by_node.get(i, []))),
                )
            )
        self.nodes: tuple[NodeView, ...] = tuple(nodes)
        self.producers = producers

    def _declared(self, name: str) -> bool:
        return name in self.input_names or name in self._inits or name in self._sparse

    def __len__(self) -> int:
        return len(self.nodes)

    def find(self, name: str) -> NodeView:
        """The node named ``name``, or ``#INDEX``; ``ModelError`` if there is none or several."""
        if name.startswith("#") and name[1:].isdigit():
            index = int(name[1:])
            if index < len(self.nodes):
                return self.nodes[index]
            raise ModelError(f"node index {index} is out of range (the model has {len(self)})")
        found = [n for n in self.nodes if n.name == name]
        if len(found) != 1:
            what = "no node" if not found else f"{len(found)} nodes"
            raise ModelError(f"{what} named {name!r} in the main graph (or name it #INDEX)")
        return found[0]

    def source(self, name: str, supplied_inputs: frozenset[str]) -> Source:
        """Where ``name`` comes from, given the names the receipt's inputs supply."""
        if name in self.producers:
            return Source(kind=NODE, name=name, node=self.producers[name])
        # Only a graph input can come from the receipt's inputs: a receipt naming an initializer
        # that is not a graph input does not replace the committed weight.
        if name in self.input_names and (name in supplied_inputs or not self._is_weight(name)):
            return Source(kind=INPUT, name=name)
        if name in self._inits:
            return Source(kind=WEIGHT, name=name, paths=(self._inits[name],))
        if name in self._sparse:
            base = f"graph/sparse_initializer/{self._sparse[name]}"
            return Source(kind=WEIGHT, name=name, paths=(f"{base}/indices", f"{base}/values"))
        raise ModelError(f"value {name!r} has no source in the model")

    def _is_weight(self, name: str) -> bool:
        return name in self._inits or name in self._sparse

    def final_outputs(self) -> dict[str, int]:
        """Graph outputs produced by a node, with the producing node's index."""
        return {
            o.name: self.producers[o.name]
            for o in self.model.proto.graph.output
            if o.name in self.producers
        }

    @cached_property
    def _inferred(self) -> dict[str, onnx.TypeProto]:
        """Types of intermediate values from onnx shape inference (used for empty optionals and
        empty sequences, whose values alone do not say their type)."""
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model.proto)
        except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):  # a best effort
            return {}
        infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        return {v.name: v.type for v in infos}

    # -- derived models -----------------------------------------------------------------------

    def traced_bytes(self) -> bytes:
        """The model with every node output exposed as a graph output, after the real ones."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.model.proto)
        finals = {o.name for o in proto.graph.output}
        for node in self.nodes:
            for name in node.outputs:
                if name not in finals:
                    proto.graph.output.append(onnx.ValueInfoProto(name=name))
        return _serialize(proto)

    def single_node(self, index: int, inputs: Mapping[str, Value]) -> SubModel:
        """Node ``index`` alone: values from other nodes and model inputs become graph inputs
        typed by ``inputs``; weights and Constant outputs stay initializers, as in the model."""
        return self.part(index, index + 1, inputs)

    def part(self, lo: int, hi: int, inputs: Mapping[str, Value]) -> SubModel:
        """Nodes ``lo`` to ``hi - 1`` as one model whose outputs are all their outputs. Values
        from outside the range become graph inputs typed (element type, any shape) by
        ``inputs``; weights and Constant outputs stay initializers, as in the model."""
        graph = self.model.proto.graph
        constants = self._constant_nodes()
        g = onnx.GraphProto(name=f"nodes_{lo}_{hi}")
        embedded: list[onnx.NodeProto] = []
        feeds: list[str] = []
        overridable = {v.name: v for v in graph.input if self._is_weight(v.name)}
        seen: set[str] = set()
        for node in self.nodes[lo:hi]:
            for name in node.inputs:
                producer = self.producers.get(name)
                if name in seen or (producer is not None and lo <= producer < hi):
                    continue
                seen.add(name)
                if producer is not None and producer in constants:
                    # onnxruntime loads Constant nodes as initializers: the value given (the
                    # committed one, for an opening) becomes one, else the node itself is used.
                    if name in inputs:
                        g.initializer.append(_initializer(name, inputs[name]))
                    else:
                        embedded.append(graph.node[producer])
                elif name in inputs:
                    g.input.append(self.value_info(name, inputs[name]))
                    feeds.append(name)
                elif name in self._inits:
                    g.initializer.append(graph.initializer[self._index(self._inits[name])])
                    if name in overridable:
                        g.input.append(overridable[name])
                elif name in self._sparse:
                    g.sparse_initializer.append(graph.sparse_initializer[self._sparse[name]])
                else:
                    raise ModelError(f"node {node.label}: no value supplied for {name!r}")
        g.node.extend([*embedded, *graph.node[lo:hi]])
        for node in self.nodes[lo:hi]:
            g.output.extend(onnx.ValueInfoProto(name=name) for name in node.outputs)
        return SubModel(data=_serialize(self._wrap(g)), feeds=tuple(feeds))

    def without_node_bytes(self, index: int, values: Mapping[str, Value]) -> bytes:
        """The traced model with node ``index`` removed and its outputs fed as graph inputs
        (typed by ``values``): a provider that computed that node wrongly (fault drills)."""
        proto = onnx.ModelProto()
        proto.ParseFromString(self.traced_bytes())
        node = self.nodes[index]
        del proto.graph.node[index]
        for name in node.outputs:
            proto.graph.input.append(self.value_info(name, values[name]))
        outputs = [o for o in proto.graph.output if o.name not in node.outputs]
        del proto.graph.output[:]
        proto.graph.output.extend(outputs)
        return _serialize(proto)

    def weight_value(self, leaf: WeightLeaf) -> np.ndarray[Any, Any]:
        """The tensor at a model-digest leaf's path, as an array (checked against the leaf)."""
        obj: Any = self.model.proto
        for part in leaf.path.split("/"):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        if leaf.elem_type == "string":
            array = np.empty(len(obj.string_data), dtype=object)
            array[:] = list(obj.string_data)
            array = array.reshape(leaf.shape)
        else:
            array = numpy_helper.to_array(obj)
            if array.dtype != ELEM_TYPES[leaf.elem_type].dtype:
                array = array.view(ELEM_TYPES[leaf.elem_type].dtype)
        if tensor_digest(array) != leaf.digest:
            raise ModelError(f"weight {leaf.path} does not read back as its digest")
        return array

    def _wrap(self, graph: onnx.GraphProto) -> onnx.ModelProto:
        src = self.model.proto
        proto = onnx.ModelProto(ir_version=src.ir_version, graph=graph)
        proto.opset_import.extend(src.opset_import)
        proto.functions.extend(src.functions)
        return proto

    def _index(self, path: str) -> int:
        return int(path.rsplit("/", 1)[1])

    def _constant_nodes(self) -> frozenset[int]:
        graph = self.model.proto.graph
        return frozenset(
            i
            for i, n in enumerate(graph.node)
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
        )

    def value_info(self, name: str, value: Value) -> onnx.ValueInfoProto:
        """A graph input typed like ``value`` (its element type; any shape, so a model built
        from one request's values serves the next)."""
        if isinstance(value, np.ndarray):
            return helper.make_tensor_value_info(name, elem_type_of(value).onnx, None)
        inferred = self._inferred.get(name)
        if isinstance(value, list) and value:
            item = np.asarray(value[0])
            return helper.make_tensor_sequence_value_info(name, elem_type_of(item).onnx, None)
        if inferred is None:
            raise ModelError(f"cannot type {name!r} (an empty optional or sequence) for a re-run")
        return helper.make_value_info(name, inferred)


def _initializer(name: str, value: Value) -> onnx.TensorProto:
    if not isinstance(value, np.ndarray):
        raise ModelError(f"{name!r}: a Constant's value must be a tensor")
    try:
        return numpy_helper.from_array(value, name)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{name!r}: cannot embed the value as an initializer ({e})") from e


def _outer_names(node: onnx.NodeProto) -> set[str]:
    """Names the node's subgraphs read from enclosing scopes."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.HasField("g") else []
        graphs.extend(attr.graphs)
        for g in graphs:
            names |= _graph_outer_names(g)
    return names


def _graph_outer_names(graph: onnx.GraphProto) -> set[str]:
    defined = {v.name for v in graph.input}
    defined |= {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    used: set[str] = set()
    for node in graph.node:
        used |= {n for n in node.input if n and n not in defined}
        used |= _outer_names(node) - defined
        defined |= set(node.output)
    used |= {o.name for o in graph.output if o.name not in defined}
    return used


def _serialize(proto: onnx.ModelProto) -> bytes:
    try:
        return proto.SerializeToString()  # type: ignore[no-any-return]
    except ValueError as e:  # protobuf refuses messages of 2 GiB or more
        raise ModelError(f"cannot build the derived model: {e}") from e
