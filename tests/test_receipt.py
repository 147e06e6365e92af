"""Receipt v1 on the wire: value entries (tensors, sequences, empty optionals) and strictness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from receipts import MalformedError, TensorError, load_tensors, save_npz
from receipts.codec import decode
from receipts.digests import NoneEntry, SequenceEntry, TensorMapDigest, value_entry
from receipts.envelope import Envelope
from receipts.receipt import Receipt
from receipts.tolerance import Tolerance, compare_outputs
from tests.conftest import FIXTURES, fixture_model


def _wire(name: str = "sequence") -> dict[str, Any]:
    payload = Envelope.from_bytes((FIXTURES / "receipts" / f"{name}.rcpt").read_bytes()).payload
    return decode(payload)  # type: ignore[no-any-return]


def test_sequence_entries_round_trip_through_the_wire() -> None:
    wire = _wire()
    receipt = Receipt.from_wire(wire)
    parts = receipt.outputs.by_name()["parts"]
    assert isinstance(parts, SequenceEntry)
    assert [item.name for item in parts.items] == ["parts[0]", "parts[1]"]
    assert Receipt.from_wire(receipt.to_wire()) == receipt


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(kind="tensor"), "carry no 'kind'"),
        (lambda e: e.update(kind="map"), "unknown value kind"),
        (lambda e: e["items"].reverse(), "does not match"),
        (lambda e: e["items"].pop(), "does not match"),
        (lambda e: e.update(digest=bytes(32)), "does not match"),
        (lambda e: e["items"][0].update(name="parts[0]"), "unknown field"),
    ],
    ids=[
        "explicit_tensor_kind",
        "unknown_kind",
        "items_reordered",
        "item_dropped",
        "wrong_digest",
        "item_with_name",
    ],
)
def test_malformed_sequence_entries_are_refused(change: Any, message: str) -> None:
    wire = _wire()
    parts = next(e for e in wire["outputs"]["tensors"] if e["name"] == "parts")
    change(parts)
    with pytest.raises(MalformedError, match=message):
        Receipt.from_wire(wire)


def test_explicit_tensor_kind_is_a_second_encoding() -> None:
    wire = _wire("mlp")
    wire["inputs"]["tensors"][0]["kind"] = "tensor"
    with pytest.raises(MalformedError):
        Receipt.from_wire(wire)


def test_entry_digests_are_domain_separated() -> None:
    x = np.zeros(3, np.float32)
    single, as_sequence, empty = value_entry("x", x), value_entry("x", [x]), value_entry("x", [])
    assert len({single.digest, as_sequence.digest, empty.digest, NoneEntry(name="x").digest}) == 4


def test_values_round_trip_through_npz(tmp_path: Path) -> None:
    values: dict[str, Any] = {
        "seq": [np.arange(3, dtype=np.int64), np.ones((2, 2), np.float32)],
        "empty": [],
        "nothing": None,
        "plain": np.array([1.5], np.float64),
    }
    save_npz(tmp_path / "v.npz", values)
    loaded = load_tensors(tmp_path / "v.npz")
    assert TensorMapDigest.of(loaded).digest == TensorMapDigest.of(values).digest


def test_sequence_outputs_compare_item_by_item() -> None:
    mine = {"s": [np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32)], "o": None}
    theirs = {"s": [np.array([1.0, 2.0000001], np.float32), np.array([3.0], np.float32)], "o": None}
    rows = compare_outputs(mine, theirs, lambda _: Tolerance(), exact=False)
    assert [r["name"] for r in rows] == ["o", "s[0]", "s[1]"]
    assert all(r["ok"] for r in rows)
    shorter = {"s": mine["s"][:1], "o": None}
    assert not all(
        r["ok"] for r in compare_outputs(mine, shorter, lambda _: Tolerance(), exact=False)
    )


def test_sequence_inputs_must_be_lists_of_the_declared_type() -> None:
    model = fixture_model("sequence")
    with pytest.raises(TensorError, match="is float64"):
        model.check_inputs({"x": np.zeros((2, 8))})
    assert model.outputs[0].kind == "sequence"


def test_map_values_are_refused_with_a_clear_message() -> None:
    with pytest.raises(TensorError, match="ONNX map"):
        TensorMapDigest.of({"probabilities": [{"cat": 0.5, "dog": 0.5}]})
