"""Metering: integer compute units anyone can recompute, and the price arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from receipts import LimitError, MalformedError, UnsupportedVersionError, load_model_bytes
from receipts.meter import METHOD, Meter, MeterPlan, Price
from tests.conftest import fixture_model


def _plan(
    nodes: list[object], inputs: list[object], outputs: list[object], inits: list[object]
) -> MeterPlan:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)  # type: ignore[arg-type]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return MeterPlan(load_model_bytes(model.SerializeToString()))


def test_mlp_units_are_macs_plus_elementwise_outputs() -> None:
    units = MeterPlan(fixture_model("mlp")).units({"x": (4, 16)})
    macs = 4 * (16 * 32 + 32 * 32 + 32 * 8)
    elementwise = 4 * (32 + 32 + 8) + 4 * (32 + 32)  # Add outputs, then Relu outputs
    assert units == macs + elementwise


def test_units_scale_with_the_concrete_batch() -> None:
    plan = MeterPlan(fixture_model("mlp"))
    assert plan.units({"x": (8, 16)}) == 2 * plan.units({"x": (4, 16)})


@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_uses_the_shared_dimension(trans_a: int) -> None:
    a_shape = [7, 5] if trans_a else [5, 7]
    w = numpy_helper.from_array(np.zeros((7, 3), np.float32), "w")
    plan = _plan(
        [helper.make_node("Gemm", ["a", "w"], ["y"], transA=trans_a)],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])],
        [w],
    )
    assert plan.units({"a": tuple(a_shape)}) == 5 * 3 * 7


def test_conv_counts_output_times_channels_per_group_times_kernel() -> None:
    w = numpy_helper.from_array(np.zeros((8, 2, 3, 3), np.float32), "w")
    plan = _plan(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    assert plan.units({"x": (1, 4, 10, 10)}) == (1 * 8 * 10 * 10) * (2 * 3 * 3)


def test_meter_amount_must_match_its_price() -> None:
    price = Price(unit_price=3, base_fee=7)
    assert Meter.of(10, price).amount == 37
    with pytest.raises(MalformedError, match="units x unit price"):
        Meter(method=METHOD, units=10, price=price, amount=36)
    with pytest.raises(UnsupportedVersionError):
        Meter(method="flops-v9", units=10, price=price, amount=37)


def test_amount_overflow_is_a_limit_error() -> None:
    with pytest.raises(LimitError):
        Price(unit_price=2**63).amount(4)


@pytest.mark.parametrize(
    "kwargs", [{"unit_price": -1}, {"base_fee": 2**64}, {"asset": ""}, {"asset": "x" * 65}]
)
def test_bad_prices_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        Price(**kwargs)  # type: ignore[arg-type]


@given(st.integers(0, 2**40), st.integers(0, 2**20), st.integers(0, 2**20))
def test_amount_is_units_times_price_plus_fee(units: int, unit_price: int, fee: int) -> None:
    assert Price(unit_price=unit_price, base_fee=fee).amount(units) == units * unit_price + fee
