"""Traced execution: run a model with every node's outputs captured (runtime layer).

``Tracer`` runs ``GraphView.traced_bytes()`` (the model with every node output exposed) under
the provider's settings. Exposing intermediates blocks graph fusions, so a traced run gives the
same final bits as an untraced one only with graph optimization ``disable``; the tracer refuses
other levels (docs/adr/0006-traces-and-disputes.md).

A fault drill (``fault=``) makes the run wrong on purpose: the honest run gives the node's
outputs, the tracer corrupts them, and the rest of the graph runs again on the corrupted values,
so every later node, the final outputs and the trace agree with one another and with a provider
that computed that one node wrongly, while the receipt still binds the honest model digest.

    tracer = Tracer(model, RuntimeSettings())
    run = tracer.run(inputs)                     # TracedRun: every value, the final outputs
    leaves = run.leaves(pool)                    # one TraceLeaf per node, in node order
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from receipts.digests import Entry, Value, value_entry
from receipts.errors import ModelError, RuntimeRefusedError
from receipts.graph import GraphView, NodeView, SubModel
from receipts.meter import node_units
from receipts.model import LoadedModel
from receipts.runtime import OrtRunner, Runner, RunnerFactory, RuntimeSettings
from receipts.tensors import canonical_bytes
from receipts.trace import TraceLeaf

TRACE_OPTIMIZATION = "disable"
MIN_SPLIT_NODES = 8
MAX_PARTS = 16
# Each part costs a session.run call (~40 us here) and leaves its outputs' hashing in the tail.
# With B bytes of node outputs, S parts cost about S * 40 us + (B / S) / hash rate, least at
# S = sqrt(B / (40 us * hash rate)); at ~1.7 GB/s SHA-256 that is sqrt(B / 64 KiB). Measured on
# the bench models: MLP (1.05 MB) best at 4 parts, convnet (4.4 MB) at 8; both as this gives.
PART_BYTES = 64 << 10


def _leaves(nodes: Sequence[NodeView], entries: Mapping[str, Entry]) -> list[TraceLeaf]:
    return [
        TraceLeaf(
            index=node.index,
            op=node.op_type,
            domain=node.domain,
            name=node.name,
            outputs=tuple(entries[name] for name in node.outputs),
        )
        for node in nodes
    ]


def _part_leaves(nodes: Sequence[NodeView], values: Mapping[str, Value]) -> list[TraceLeaf]:
    """One part's leaves, digests, encodings and leaf hashes made (on a pool thread)."""
    leaves = _leaves(nodes, {name: value_entry(name, value) for name, value in values.items()})
    for leaf in leaves:
        _ = leaf.hash  # cached on the leaf
    return leaves


def _balanced(costs: list[int], parts: int) -> list[int]:
    """Cut points 0 = b0 < b1 < ... < bk = len(costs) splitting ``costs`` into at most
    ``parts`` consecutive runs of about equal sum."""
    total = sum(costs)
    bounds, running = [0], 0
    for i, cost in enumerate(costs[:-1]):
        running += cost
        if running * parts >= total * len(bounds) and len(bounds) < parts:
            bounds.append(i + 1)
    bounds.append(len(costs))
    return bounds


@dataclass(frozen=True, slots=True, kw_only=True)
class TracedRun:
    """Every node output of one run, and the model's final outputs."""

    view: GraphView
    values: dict[str, Value]
    outputs: dict[str, Value]
    fault: NodeView | None = None
    ready: list[TraceLeaf] | None = None  # leaves (and their hashes) made while running

    def node_values(self, index: int) -> dict[str, Value]:
        return {name: self.values[name] for name in self.view.nodes[index].outputs}

    def leaves(self, pool: Executor | None = None) -> list[TraceLeaf]:
        """The leaves in node order; digests computed on ``pool`` when given (hashlib releases
        the GIL on large buffers, so two threads hash two tensors at once)."""
        if self.ready is not None:
            return self.ready
        names = [name for node in self.view.nodes for name in node.outputs]
        if pool is None:
            by_name = {name: value_entry(name, self.values[name]) for name in names}
        else:
            entries = pool.map(lambda n: value_entry(n, self.values[n]), names)
            by_name = dict(zip(names, entries, strict=True))
        return _leaves(self.view.nodes, by_name)


class Tracer:
    """Runs one model traced, under one profile (``disable`` optimization only)."""

    def __init__(
        self,
        model: LoadedModel,
        settings: RuntimeSettings,
        *,
        runner_factory: RunnerFactory = OrtRunner,
        view: GraphView | None = None,
    ) -> None:
        if settings.graph_optimization != TRACE_OPTIMIZATION:
            raise RuntimeRefusedError(
                f"traced runs need graph optimization {TRACE_OPTIMIZATION!r} (fault drills run "
                "traced too; exposing every "
                f"intermediate blocks fusions, so under {settings.graph_optimization!r} the "
                "traced outputs would differ from the untraced ones)"
            )
        self.model = model
        self.settings = settings
        self.runner_factory = runner_factory
        self.view = view or GraphView(model)
        if not self.view.nodes:
            raise ModelError("the model has no nodes to trace")
        self.runner: Runner = runner_factory(self.view.traced_bytes(), settings)
        self._parts: list[tuple[SubModel, Runner]] | None = None
        self._bounds: list[tuple[int, int]] = []
        self._parts_tried = False

    def run(
        self,
        inputs: Mapping[str, Value],
        *,
        fault: NodeView | None = None,
        pool: Executor | None = None,
    ) -> TracedRun:
        """Run on checked inputs; with ``fault``, corrupt that node's outputs (a drill). With a
        ``pool`` of two or more threads, later runs hash each part's outputs while the next
        part runs (see ``_split``)."""
        if fault is None and pool is not None and self._parts:
            return self._run_parts(inputs, self._parts, pool)
        values = self.runner.run(inputs)
        if fault is not None:
            corrupted = {name: corrupt(name, values[name]) for name in fault.outputs}
            if len(self.view) == 1:
                values = corrupted  # nothing else runs
            else:
                rest = self.runner_factory(
                    self.view.without_node_bytes(fault.index, corrupted), self.settings
                )
                values = {**rest.run({**inputs, **corrupted}), **corrupted}
        if fault is None and pool is not None and not self._parts_tried:
            self._parts_tried = True
            self._parts = self._split(inputs, values)
        return TracedRun(
            view=self.view, values=values, outputs=self._finals(values, inputs), fault=fault
        )

    def _finals(self, values: Mapping[str, Value], inputs: Mapping[str, Value]) -> dict[str, Value]:
        finals = [o.name for o in self.model.proto.graph.output]
        return {name: values[name] if name in values else inputs[name] for name in finals}

    def _run_parts(
        self, inputs: Mapping[str, Value], parts: list[tuple[SubModel, Runner]], pool: Executor
    ) -> TracedRun:
        values: dict[str, Value] = dict(inputs)
        pending = []
        for (lo, hi), (part, runner) in zip(self._bounds, parts, strict=True):
            out = runner.run({name: values[name] for name in part.feeds})
            values.update(out)
            pending.append(pool.submit(_part_leaves, self.view.nodes[lo:hi], out))
        ready = [leaf for future in pending for leaf in future.result()]
        produced = {name: values[name] for name in self.view.producers}
        return TracedRun(
            view=self.view,
            values=produced,
            outputs=self._finals(values, inputs),
            ready=ready,
        )

    def _split(
        self, inputs: Mapping[str, Value], values: Mapping[str, Value]
    ) -> list[tuple[SubModel, Runner]] | None:
        """Split the nodes into consecutive parts of about equal compute, so that hashing one
        part's outputs (on the pool) overlaps running the next (onnxruntime and hashlib both
        release the GIL). Kept only if, on this first run, the parts give bit for bit the values
        the whole traced model gave; otherwise (and for small models, or values that are not
        plain tensors) runs stay whole."""
        nodes = self.view.nodes
        if len(nodes) < MIN_SPLIT_NODES or not all(
            isinstance(values.get(name), np.ndarray) for name in self.view.producers
        ):
            return None
        every = {**inputs, **values}
        shapes = {name: tuple(v.shape) for name, v in every.items() if isinstance(v, np.ndarray)}
        graph = self.model.proto.graph
        costs = [max(1, node_units(graph.node[n.index], shapes)) for n in nodes]
        size = sum(v.nbytes for name, v in values.items() if isinstance(v, np.ndarray))
        count = min(MAX_PARTS, len(nodes), max(2, round(math.sqrt(size / PART_BYTES))))
        bounds = _balanced(costs, count)
        parts = []
        self._bounds = list(itertools.pairwise(bounds))
        for lo, hi in self._bounds:
            part = self.view.part(lo, hi, every)
            parts.append((part, self.runner_factory(part.data, self.settings)))
        check: dict[str, Value] = dict(inputs)
        for part, runner in parts:
            check.update(runner.run({name: check[name] for name in part.feeds}))
        same = all(
            canonical_bytes(np.asarray(check[name])) == canonical_bytes(np.asarray(values[name]))
            for name in self.view.producers
        )
        return parts if same else None


def corrupt(name: str, value: Value) -> Value:
    """A visibly wrong copy of ``value``: the first element of the first tensor changed."""
    if isinstance(value, list):
        if not value:
            raise ModelError(f"{name!r} is an empty sequence: a drill cannot corrupt it")
        first = corrupt(name, value[0])
        assert isinstance(first, np.ndarray)
        return [first, *value[1:]]
    if value is None or value.size == 0:
        raise ModelError(f"{name!r} holds no elements: a drill cannot corrupt it")
    array = np.array(value, copy=True)
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if kind == "b":
        flat[0] = not flat[0]
    elif kind in "iu":
        flat[0] ^= 1
    elif kind in "fc":
        x = flat[0]
        flat[0] = x + max(1.0, abs(float(np.real(x)))) if np.isfinite(x) else 0
    elif kind == "O":
        flat[0] = str(flat[0]) + "!"
    else:  # ml_dtypes floats (bfloat16, float8, ...) and packed integers: flip the lowest bit
        raw = flat.view(np.uint8)
        raw[0] ^= 1
    return array
