"""Re-running one operator on its opened operands, and judging its claimed outputs (verification).

Spot checks and the referee both take an ``OpenedNode`` (a node whose operands and outputs were
checked against the receipt's commitments), run that node alone under the receipt's runtime
settings (``GraphView.single_node``), and compare with what the provider committed to: bit for bit
when the local runtime identity equals the receipt's, else within the policy's tolerance, and the
result says which.

    result = rerun(opened, view, receipt, tolerance_for=policy.tolerance_for, exact=False)
    result.ok, result.comparison, result.rows
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import helper

from receipts.digests import Digest, Value
from receipts.errors import ReexecutionError
from receipts.graph import NODE, WEIGHT, GraphView
from receipts.opening import OpenedNode
from receipts.receipt import Receipt
from receipts.runtime import OrtRunner, RunnerFactory
from receipts.tolerance import Tolerance, compare_outputs


@dataclass(frozen=True, slots=True, kw_only=True)
class RerunResult:
    """One operator re-run: what it gave, how it was compared, and the verdict."""

    recomputed: dict[str, Value]
    comparison: str  # "bit-exact" or "tolerance"
    local_profile: str
    local_identity: Digest
    rows: tuple[Mapping[str, object], ...]

    @property
    def ok(self) -> bool:
        return all(bool(r["ok"]) for r in self.rows)

    def describe(self) -> str:
        bad = [r for r in self.rows if not r["ok"]]
        if not bad:
            return f"re-run matches ({self.comparison})"
        worst = max(bad, key=lambda r: float(str(r.get("max_abs_error", 0.0))))
        err = worst.get("max_abs_error")
        extra = f", largest absolute error {err}" if err is not None else ""
        names = ", ".join(str(r["name"]) for r in bad)
        return f"re-run differs ({self.comparison}) in {names}{extra}"


def rerun(
    opened: OpenedNode,
    view: GraphView,
    receipt: Receipt,
    *,
    tolerance_for: Callable[[str], Tolerance],
    exact_only: bool = False,
    runner_factory: RunnerFactory = OrtRunner,
) -> RerunResult:
    """Run the opened node alone under the receipt's settings and compare with its outputs."""
    supplied = frozenset(e.name for e in receipt.inputs.entries)
    reads = {n: v for n, v in opened.reads.items() if view.source(n, supplied).kind != WEIGHT}
    single = view.single_node(opened.node.index, reads)
    runner = runner_factory(single.data, receipt.runtime.settings)
    same = runner.profile.identity == receipt.runtime.identity
    if not same and exact_only:
        raise ReexecutionError(
            "runtime identity differs from the receipt's and the policy requires bit-exact "
            f"re-execution (receipt: {receipt.runtime.describe()})"
        )
    recomputed = runner.run({name: reads[name] for name in single.feeds})
    rows = compare_outputs(recomputed, opened.outputs, tolerance_for, exact=same)
    return RerunResult(
        recomputed=recomputed,
        comparison="bit-exact" if same else "tolerance",
        local_profile=runner.profile.describe(),
        local_identity=runner.profile.identity,
        rows=tuple(rows),
    )


def operands(opened: OpenedNode, view: GraphView, supplied: frozenset[str]) -> list[Value]:
    """The node's explicit inputs in order (``None`` for an absent optional input), taken from
    the opened reads and weights (a sparse weight counts as absent here)."""
    node = view.model.proto.graph.node[opened.node.index]
    out: list[Value] = []
    for name in node.input:
        if not name:
            out.append(None)
            continue
        source = view.source(name, supplied)
        if source.kind == WEIGHT:
            out.append(opened.weights[source.paths[0]] if len(source.paths) == 1 else None)
        elif source.kind == NODE or name in opened.reads:
            out.append(opened.reads[name])
        else:
            out.append(None)
    return out


def attributes(view: GraphView, index: int) -> dict[str, object]:
    """The node's scalar and list attributes as Python values (text decoded)."""
    out: dict[str, object] = {}
    for attr in view.model.proto.graph.node[index].attribute:
        value: Any = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out[attr.name] = value
    return out


def as_arrays(values: Sequence[Value]) -> list[np.ndarray[Any, Any] | None]:
    """Tensors only (Freivalds takes no sequences): anything else becomes ``None``."""
    return [v if isinstance(v, np.ndarray) else None for v in values]
