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

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from receipts.digests import Entry, Value, value_entry
from receipts.errors import ModelError, RuntimeRefusedError
from receipts.graph import GraphView, NodeView
from receipts.model import LoadedModel
from receipts.runtime import OrtRunner, Runner, RunnerFactory, RuntimeProfile, RuntimeSettings
from receipts.trace import TraceLeaf

TRACE_OPTIMIZATION = "disable"


@dataclass(frozen=True, slots=True, kw_only=True)
class TracedRun:
    """Every node output of one run, and the model's final outputs."""

    view: GraphView
    values: dict[str, Value]
    outputs: dict[str, Value]
    fault: NodeView | None = None

    def node_values(self, index: int) -> dict[str, Value]:
        return {name: self.values[name] for name in self.view.nodes[index].outputs}

    def leaves(self, pool: Executor | None = None) -> list[TraceLeaf]:
        """The leaves in node order; digests computed on ``pool`` when given (hashlib releases
        the GIL on large buffers, so two threads hash two tensors at once)."""
        names = [name for node in self.view.nodes for name in node.outputs]
        if pool is None:
            entries = [value_entry(name, self.values[name]) for name in names]
        else:
            entries = list(pool.map(lambda n: value_entry(n, self.values[n]), names))
        by_name: dict[str, Entry] = dict(zip(names, entries, strict=True))
        return [
            TraceLeaf(
                index=node.index,
                op=node.op_type,
                domain=node.domain,
                name=node.name,
                outputs=tuple(by_name[name] for name in node.outputs),
            )
            for node in self.view.nodes
        ]


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
                f"traced runs need graph optimization {TRACE_OPTIMIZATION!r} (exposing every "
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
        self._names = self.view.traced_output_names()

    @property
    def profile(self) -> RuntimeProfile:
        return self.runner.profile

    def run(self, inputs: Mapping[str, Value], *, fault: NodeView | None = None) -> TracedRun:
        """Run on checked inputs; with ``fault``, corrupt that node's outputs (a drill)."""
        values = self.runner.run(inputs)
        if fault is not None:
            corrupted = {name: corrupt(name, values[name]) for name in fault.outputs}
            rest = self.runner_factory(
                self.view.without_node_bytes(fault.index, corrupted), self.settings
            )
            values = {**rest.run({**inputs, **corrupted}), **corrupted}
        finals = [o.name for o in self.model.proto.graph.output]
        return TracedRun(
            view=self.view,
            values=values,
            outputs={name: values[name] if name in values else inputs[name] for name in finals},
            fault=fault,
        )


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
