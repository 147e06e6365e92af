"""The spot-check rung: open k sampled nodes of a committed trace and check each (verification).

A provider that ran a traced inference committed, in the signed receipt, to a Merkle root over
every node's outputs. The verifier draws k node indices from its own seed (mixed with the receipt
id, so one seed gives each receipt its own sample), opens each node against the commitments
(``receipts.opening``), re-runs that single operator on its committed operands, and, for MatMul,
Gemm, MatMulInteger and Conv, also applies Freivalds' randomized product check. A provider that
got one node wrong is caught whenever that node is sampled: with k of N nodes sampled without
replacement, with probability k/N per receipt; the report states it.

The steps continue the verifier's numbering (``receipts.verifier``):

  (12) trace     the trace file is the receipt's (model, root, node count) and the leaves of the
                 nodes that produced the model's outputs hold exactly the receipt's outputs
  (13) sample    k distinct node indices from SHA-256(seed || receipt id || counter)
  (14) nodes     each sampled node opened (o1-o4), re-run alone, and Freivalds-checked

    checker = SpotChecker(policy, runner_factory=OrtRunner)
    details = checker.check_nodes(receipt, rid, view, reader, inputs, seed=b"...")
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from receipts.digests import Digest, Value
from receipts.errors import DigestMismatchError, SpotCheckError
from receipts.freivalds import FreivaldsResult, check_node
from receipts.graph import GraphView
from receipts.meter import node_units
from receipts.opening import OpenedNode, check_opening, open_node
from receipts.operator import as_arrays, attributes, operands, rerun
from receipts.receipt import Receipt
from receipts.runtime import OrtRunner, RunnerFactory
from receipts.tolerance import Tolerance
from receipts.trace import TraceReader

DEFAULT_SAMPLES = 8
FREIVALDS_ROUNDS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotPolicy:
    samples: int = DEFAULT_SAMPLES
    tolerance_for: Callable[[str], Tolerance] | None = None  # None: the default tolerance
    exact_only: bool = False


def sample_nodes(nodes: int, k: int, seed: bytes, receipt_id: Digest) -> list[int]:
    """(13) ``min(k, nodes)`` distinct indices, sorted. Candidate j is the first 8 bytes of
    SHA-256(seed || receipt id || j as 4 bytes big-endian), big-endian, modulo ``nodes``, with
    values at or above the largest multiple of ``nodes`` below 2^64 rejected (no modulo bias);
    repeats are skipped. Portable: no language's random generator is part of the definition."""
    count = min(k, nodes)
    limit = (1 << 64) - (1 << 64) % nodes
    base = hashlib.sha256(seed + receipt_id.value)
    chosen: dict[int, None] = {}
    j = 0
    while len(chosen) < count:
        h = base.copy()
        h.update(j.to_bytes(4, "big"))
        x = int.from_bytes(h.digest()[:8], "big")
        j += 1
        if x < limit:
            chosen[x % nodes] = None
    return sorted(chosen)


def detection_probability(nodes: int, k: int) -> float:
    """Chance that k samples without replacement include one given wrong node among ``nodes``."""
    return min(k, nodes) / nodes


def check_trace(receipt: Receipt, view: GraphView, reader: TraceReader) -> Mapping[str, object]:
    """(12) the trace is the receipt's, and its leaves bind the receipt's outputs."""
    reader.check_commitment(receipt.trace, receipt.model)
    if len(view) != len(reader):
        raise DigestMismatchError(f"the trace has {len(reader)} nodes, the model {len(view)}")
    claimed = receipt.outputs.by_name()
    for name, index in view.final_outputs().items():
        if claimed.get(name) != reader.leaves[index].entry(name):
            raise DigestMismatchError(
                f"output {name!r} in the receipt is not what the trace's node "
                f"{view.nodes[index].label} committed to (the receipt contradicts its own trace)"
            )
    return {"root": str(reader.root), "nodes": len(reader)}


class SpotChecker:
    """Opens, re-runs and Freivalds-checks sampled nodes under one policy."""

    def __init__(self, policy: SpotPolicy, *, runner_factory: RunnerFactory = OrtRunner) -> None:
        self.policy = policy
        self.runner_factory = runner_factory

    def check_nodes(
        self,
        receipt: Receipt,
        receipt_id: Digest,
        view: GraphView,
        reader: TraceReader,
        inputs: Mapping[str, Value],
        *,
        seed: bytes,
    ) -> dict[str, object]:
        """(13) sample and (14) check; raises ``SpotCheckError`` naming the first bad node."""
        started = time.perf_counter()
        nodes = len(reader)
        sampled = sample_nodes(nodes, self.policy.samples, seed, receipt_id)
        material = hashlib.sha256(b"freivalds\x00" + seed + receipt_id.value).digest()
        rng = np.random.default_rng(int.from_bytes(material, "big"))
        rows = []
        failed: list[dict[str, object]] = []
        for index in sampled:
            opened = check_opening(open_node(reader, view, index, inputs), receipt, view)
            row = self._check_one(opened, view, receipt, rng)
            rows.append(row)
            if not row["ok"]:
                failed.append(row)
        units = sum(int(str(r["units"])) for r in rows)
        details: dict[str, object] = {
            "nodes": nodes,
            "samples": len(sampled),
            "seed_hex": seed.hex(),
            "sampled": sampled,
            "detection_probability": detection_probability(nodes, len(sampled)),
            "checks": rows,
            "units_checked": units,
            "units_model": receipt.meter.units,
            "seconds": round(time.perf_counter() - started, 6),
        }
        if failed:
            first = failed[0]
            raise SpotCheckError(
                f"node {first['node']} failed the spot check: {first['reason']}",
                details=details,
            )
        return details

    def _check_one(
        self, opened: OpenedNode, view: GraphView, receipt: Receipt, rng: np.random.Generator
    ) -> dict[str, object]:
        tolerance_for = self.policy.tolerance_for or (lambda _name: Tolerance())
        result = rerun(
            opened,
            view,
            receipt,
            tolerance_for=tolerance_for,
            exact_only=self.policy.exact_only,
            runner_factory=self.runner_factory,
        )
        node = opened.node
        supplied = frozenset(e.name for e in receipt.inputs.entries)
        args = operands(opened, view, supplied)
        outs = [opened.outputs[name] for name in node.outputs]
        proto = view.model.proto.graph.node[node.index]
        shapes = {
            name: tuple(value.shape)
            for name, value in (*zip(proto.input, args, strict=True), *opened.outputs.items())
            if isinstance(value, np.ndarray)
        }
        freivalds = check_node(
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
            as_arrays(args),
            [o for o in as_arrays(outs) if o is not None],
            attributes(view, node.index),
            rng,
            rounds=FREIVALDS_ROUNDS,
        )
        ok = result.ok and (freivalds is None or freivalds.ok)
        reasons = [] if result.ok else [result.describe()]
        if freivalds is not None and not freivalds.ok:
            reasons.append(f"Freivalds check failed: {freivalds.reason}")
        return {
            "index": node.index,
            "node": node.label,
            "ok": ok,
            "rerun": result.comparison,
            "rerun_ok": result.ok,
            "freivalds": _freivalds_row(freivalds),
            "units": node_units(proto, shapes),
            "reason": "; ".join(reasons) or "checks out",
        }


def _freivalds_row(result: FreivaldsResult | None) -> object:
    if result is None:
        return "not applicable"
    return {
        "ok": result.ok,
        "rounds": result.rounds,
        "macs": result.macs,
        "product_macs": result.product_macs,
        "max_residual": result.max_residual,
        "bound": result.bound,
    }
