"""Issuing receipts: input checks, injected effects, written files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from receipts import (
    FixedClock,
    Policy,
    Price,
    Provider,
    TensorError,
    Verifier,
    load_model_bytes,
    load_tensors,
)
from receipts.effects import seeded
from receipts.provider import OUTPUTS_FILE, RECEIPT_FILE
from tests.conftest import fixture_inputs, fixture_key, fixture_model

NOW = 1_790_000_000_000


def _provider(**kwargs: Any) -> Provider:
    return Provider(fixture_key(), clock=FixedClock(NOW), random_bytes=seeded(5), **kwargs)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "missing input 'x'"),
        ({"x": np.zeros((2, 16), np.float32), "extra": np.zeros(1)}, "unknown input 'extra'"),
        ({"x": np.zeros((2, 16), np.float64)}, "is float64; the model expects float32"),
        ({"x": np.zeros((2, 16, 1), np.float32)}, "has shape [2, 16, 1]"),
        ({"x": np.zeros((2, 15), np.float32)}, "has shape [2, 15]"),
    ],
)
def test_inputs_that_do_not_fit_the_model_are_refused(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(TensorError, match=message.replace("[", r"\[")):
        _provider().session(fixture_model("mlp")).run(inputs)


def test_clock_nonce_and_price_are_what_was_injected() -> None:
    issued = (
        _provider(price=Price(unit_price=2, base_fee=9, asset="usd-cent"))
        .session(fixture_model("mlp"))
        .run(fixture_inputs("mlp"))
    )
    r = issued.receipt
    assert r.issued_at == NOW
    assert r.nonce == seeded(5)(16)
    assert (r.meter.price.asset, r.meter.amount) == ("usd-cent", r.meter.units * 2 + 9)


def test_same_injected_effects_give_the_same_receipt_bytes() -> None:
    model, inputs = fixture_model("convnet"), fixture_inputs("convnet")
    first = _provider().session(model).run(inputs).to_bytes()
    second = _provider().session(model).run(inputs).to_bytes()
    assert first == second


def test_large_inputs_are_hashed_alongside_the_run() -> None:
    model = fixture_model("mlp")
    big = {"x": np.random.default_rng(0).standard_normal((32768, 16)).astype(np.float32)}  # 2 MiB
    issued = _provider().session(model).run(big)
    assert Verifier(Policy()).check(issued.to_bytes(), model=model, inputs=big)


def test_write_puts_both_files_whole(tmp_path: Path) -> None:
    issued = _provider().session(fixture_model("mlp")).run(fixture_inputs("mlp"))
    outputs, receipt = issued.write(tmp_path / "out")
    assert (outputs.name, receipt.name) == (OUTPUTS_FILE, RECEIPT_FILE)
    assert receipt.read_bytes() == issued.to_bytes()
    np.testing.assert_array_equal(load_tensors(outputs)["y"], issued.outputs["y"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUTS_FILE, RECEIPT_FILE]


def test_bfloat16_model_receipt_verifies_through_npz(tmp_path: Path) -> None:
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BFLOAT16)
    graph = helper.make_graph(
        [node],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3])],
    )
    model = load_model_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()
    )
    inputs = {"x": np.array([1.0, 2.5, -3.0], np.float32)}
    issued = _provider().session(model).run(inputs)
    assert issued.outputs["y"].dtype == np.dtype(ml_dtypes.bfloat16)
    outputs_file, _ = issued.write(tmp_path)
    outputs = load_tensors(outputs_file)
    assert Verifier(Policy()).check(issued.to_bytes(), model=model, inputs=inputs, outputs=outputs)


def _cast_to_int32(input_type: int) -> Any:
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)
    graph = helper.make_graph(
        [node],
        "cast",
        [helper.make_tensor_value_info("x", input_type, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [4])],
    )
    return load_model_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )


@pytest.mark.parametrize(
    ("input_type", "odd", "canonical"),
    [
        (
            TensorProto.BOOL,
            np.frombuffer(b"\x02\x01\x00\xff", np.bool_),
            np.array([1, 1, 0, 1], np.bool_),
        ),
        (TensorProto.FLOAT, np.array([1.5, -2, 3, 4], ">f4"), np.array([1.5, -2, 3, 4], "<f4")),
    ],
    ids=["bool_bytes_other_than_0_1", "big_endian_floats"],
)
def test_inputs_with_one_digest_run_the_same(input_type: int, odd: Any, canonical: Any) -> None:
    """The runner gets the canonical array, so equal digests can never mean different runs."""
    model = _cast_to_int32(input_type)
    from_odd = _provider().session(model).run({"x": odd})
    from_canonical = _provider().session(model).run({"x": canonical})
    assert from_odd.receipt.inputs == from_canonical.receipt.inputs
    assert from_odd.receipt.outputs == from_canonical.receipt.outputs
    for inputs in ({"x": odd}, {"x": canonical}):
        assert Verifier(Policy()).check(from_odd.to_bytes(), model=model, inputs=inputs)
