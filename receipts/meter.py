"""Metering: integer compute units from the graph and concrete input shapes, and the price.

Anyone holding the model and the receipt (whose input shapes it records) recomputes the same
units, so the amount on a receipt is checked like a digest. Method ``macs-v1``:

* MatMul, MatMulInteger, QLinearMatMul: elements of the output x the shared dimension K;
* Gemm: elements of the output x K (K from A, honouring ``transA``);
* Conv, ConvInteger, QLinearConv: elements of the output x (input channels / group) x kernel size;
* ConvTranspose: elements of the input X x (output channels / group) x kernel size;
* every other node of the main graph: the element count of its outputs;
* shapes come from ONNX shape inference (with data propagation) on the model with the receipt's
  concrete input shapes; a dimension inference cannot resolve counts as 1, and the bodies of
  control-flow nodes (If/Loop/Scan) count only through the node's own outputs.

    plan = MeterPlan(model)
    units = plan.units({"x": (32, 512)})
    Price(unit_price=2, base_fee=100, asset="credit").amount(units)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import onnx
from onnx import shape_inference

from receipts.codec import INT_MAX, MapReader
from receipts.errors import LimitError, MalformedError, UnsupportedVersionError
from receipts.model import LoadedModel

METHOD = "macs-v1"
_MATMUL = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0}
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}

Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """What a provider charges: per compute unit, plus a fixed fee, in the asset's smallest unit."""

    unit_price: int = 0
    base_fee: int = 0
    asset: str = "credit"

    def __post_init__(self) -> None:
        for name, value in (("unit price", self.unit_price), ("base fee", self.base_fee)):
            if not 0 <= value <= INT_MAX:
                raise MalformedError(f"{name} must be an integer in [0, 2^64-1]")
        if not self.asset or len(self.asset) > 64 or not self.asset.isprintable():
            raise MalformedError("asset must be 1..64 printable characters")

    def amount(self, units: int) -> int:
        total = units * self.unit_price + self.base_fee
        if total > INT_MAX:
            raise LimitError(f"amount {total} overflows 64 bits")
        return total


@dataclass(frozen=True, slots=True, kw_only=True)
class Meter:
    """The meter record of a receipt; ``amount`` is checked against the price at construction."""

    method: str
    units: int
    price: Price
    amount: int

    def __post_init__(self) -> None:
        if self.method != METHOD:
            raise UnsupportedVersionError(f"unknown metering method {self.method!r}")
        if not 0 <= self.units <= INT_MAX:
            raise MalformedError("compute units must be an integer in [0, 2^64-1]")
        if self.amount != self.price.amount(self.units):
            raise MalformedError("meter amount is not units x unit price + base fee")

    @classmethod
    def of(cls, units: int, price: Price) -> Meter:
        return cls(method=METHOD, units=units, price=price, amount=price.amount(units))

    def to_wire(self) -> dict[str, object]:
        return {
            "method": self.method,
            "units": self.units,
            "unit_price": self.price.unit_price,
            "base_fee": self.price.base_fee,
            "amount": self.amount,
            "asset": self.price.asset,
        }

    @classmethod
    def from_wire(cls, r: MapReader) -> Meter:
        price = Price(
            unit_price=r.integer("unit_price"),
            base_fee=r.integer("base_fee"),
            asset=r.text("asset", 64),
        )
        meter = cls(
            method=r.text("method", 32),
            units=r.integer("units"),
            price=price,
            amount=r.integer("amount"),
        )
        r.close()
        return meter


class MeterPlan:
    """Compute units of one model for any concrete input shapes (cached per shape signature)."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._units = lru_cache(maxsize=64)(self._compute)

    def units(self, input_shapes: Shapes) -> int:
        key = tuple(sorted((name, tuple(shape)) for name, shape in input_shapes.items()))
        return self._units(key)

    def _compute(self, key: tuple[tuple[str, tuple[int, ...]], ...]) -> int:
        shapes = _infer_shapes(self._model.proto, dict(key))
        return sum(node_units(node, shapes) for node in self._model.proto.graph.node)


def _infer_shapes(proto: onnx.ModelProto, inputs: Shapes) -> dict[str, tuple[int, ...]]:
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for value in model.graph.input:
        if value.name in inputs and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in inputs[value.name]:
                dims.add().dim_value = size
    # On failure keep the declared shapes: the method counts unresolved dimensions as 1.
    # onnx raises ValueError for a declared element type it does not know ("Invalid tensor
    # data type"); onnxruntime refuses such a model before it runs, so no price depends on it.
    failures = (
        shape_inference.InferenceError,
        onnx.checker.ValidationError,
        RuntimeError,
        ValueError,
    )
    with contextlib.suppress(*failures):
        model = shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(t.dims) for t in model.graph.initializer}
    graph = model.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
    shapes.update({name: tuple(shape) for name, shape in inputs.items()})
    return shapes


def _count(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape is not None else 1


def node_units(node: onnx.NodeProto, shapes: Shapes) -> int:
    """Compute units of one node under method ``macs-v1``."""
    outputs = [shapes.get(name) for name in node.output if name]
    out0 = outputs[0] if outputs else None

    def shape_of(index: int) -> tuple[int, ...] | None:
        return shapes.get(node.input[index]) if len(node.input) > index else None

    op = node.op_type
    if node.domain in ("", "ai.onnx") and op in _MATMUL:
        a = shape_of(0)
        k = a[-1] if a else 1
        return _count(out0) * k
    if node.domain in ("", "ai.onnx") and op == "Gemm":
        a = shape_of(0)
        trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
        k = (a[0] if trans_a else a[-1]) if a and len(a) == 2 else 1
        return _count(out0) * k
    if node.domain in ("", "ai.onnx") and op in _CONV_WEIGHT:
        w = shape_of(_CONV_WEIGHT[op])
        return _count(out0) * (math.prod(w[1:]) if w else 1)
    if node.domain in ("", "ai.onnx") and op == "ConvTranspose":
        w = shape_of(1)
        return _count(shape_of(0)) * (math.prod(w[1:]) if w else 1)
    return sum(_count(shape) for shape in outputs)
