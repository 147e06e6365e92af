"""Domain-separated digests: what a tensor digest covers, what it ignores, and how maps combine."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from receipts.codec import decode
from receipts.digests import (
    Digest,
    TensorEntry,
    TensorMapDigest,
    digest_of,
    record_digest,
    tensor_digest,
    tensor_header,
    tensor_map_digest,
)
from receipts.envelope import Envelope
from receipts.errors import MalformedError
from receipts.receipt import Receipt
from receipts.tensors import ELEM_TYPES, TensorSpec, canonical_bytes
from tests.conftest import FIXTURES

SETTINGS = settings(max_examples=100, deadline=None)
KINDS = ["tensor", "tensor-map", "model-structure", "runtime-profile", "receipt", "key-id"]

digests = st.binary(min_size=32, max_size=32).map(Digest)
names = st.text(min_size=1, max_size=8)


def sample(name: str, count: int = 4) -> np.ndarray[Any, Any]:
    """A small array of element type ``name`` with non-zero bytes where the type allows."""
    if name == "string":
        return np.array(["a", "bc", "", "é"][:count], dtype=object)
    return np.array([1, 0, 1, 1][:count], np.uint8).astype(ELEM_TYPES[name].dtype)


# --- Digest ------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(min_size=32, max_size=32))
def test_digest_text_round_trips(value: bytes) -> None:
    d = Digest(value)
    assert str(d) == "sha256:" + value.hex()
    assert Digest.parse(str(d)) == d


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("sha256:", id="no_hex"),
        pytest.param("sha256:" + "a" * 63, id="63_hex"),
        pytest.param("sha256:" + "a" * 65, id="65_hex"),
        pytest.param("sha256:" + "a" * 66, id="33_bytes"),
        pytest.param("sha512:" + "a" * 64, id="other_algorithm"),
        pytest.param("SHA256:" + "a" * 64, id="upper_case_algorithm"),
        pytest.param("a" * 64, id="no_algorithm"),
        pytest.param("sha256-" + "a" * 64, id="wrong_separator"),
        pytest.param("sha256:" + "g" * 64, id="not_hex"),
        pytest.param("sha256:" + "0" * 62 + "  ", id="padded_with_spaces"),
        pytest.param("sha256:" + "00 " * 21 + "0", id="spaced_hex"),
        pytest.param("sha256:" + "\u0660" * 64, id="arabic_indic_digits"),
        pytest.param("sha256::" + "a" * 63, id="double_colon"),
    ],
)
def test_malformed_digest_text_is_refused(text: str) -> None:
    with pytest.raises(MalformedError) as info:
        Digest.parse(text)
    assert type(info.value) is MalformedError


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_digest_holds_exactly_32_bytes(size: int) -> None:
    with pytest.raises(MalformedError):
        Digest(bytes(size))


# --- tensor digests: what they cover ------------------------------------------------------


def test_tensor_digest_is_sha256_over_domain_header_and_bytes() -> None:
    array = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    header = bytes.fromhex("82 a9") + b"elem_type" + b"\xa7float32" + b"\xa5shape" + b"\x92\x02\x03"
    assert tensor_header("float32", (2, 3)) == header
    expected = hashlib.sha256(
        b"inference-receipts/v1/tensor\x00" + header + array.astype("<f4").tobytes()
    ).digest()
    assert tensor_digest(array).value == expected


def test_same_bytes_with_another_shape_give_another_digest() -> None:
    base = np.arange(6, dtype=np.float32)
    shapes = [(6,), (2, 3), (3, 2), (1, 6), (6, 1), (1, 2, 3)]
    found = {tensor_digest(base.reshape(s)) for s in shapes}
    assert len(found) == len(shapes)


def test_same_bytes_with_another_elem_type_give_another_digest() -> None:
    raw = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.uint8)
    one_byte = ["uint8", "int8", "bool", "float8e4m3fn", "float8e5m2", "float8e8m0"]
    found = {tensor_digest(raw.view(ELEM_TYPES[n].dtype)) for n in one_byte}
    found |= {tensor_digest(raw.view(np.uint16)), tensor_digest(raw.view(np.float16))}
    found |= {tensor_digest(raw.view(np.int32)), tensor_digest(raw.view(np.float32))}
    found |= {tensor_digest(raw.view(ml_dtypes.bfloat16)), tensor_digest(raw.view(np.int16))}
    assert len(found) == len(one_byte) + 6


def test_a_scalar_and_a_one_element_vector_differ() -> None:
    assert tensor_digest(np.float32(1.0).reshape(())) != tensor_digest(np.ones(1, np.float32))


@SETTINGS
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.int64, np.uint16]),
        hnp.array_shapes(max_dims=3, max_side=4),
    ),
    st.integers(0, 1 << 30),
)
def test_any_changed_element_changes_the_digest(array: np.ndarray[Any, Any], seed: int) -> None:
    changed = array.copy()
    flat = changed.reshape(-1).view(np.uint8)
    flat[seed % flat.size] ^= 1 << (seed % 8)
    assert tensor_digest(changed) != tensor_digest(array)


@pytest.mark.parametrize("name", list(ELEM_TYPES))
def test_every_elem_type_can_be_digested(name: str) -> None:
    array = sample(name)
    d = tensor_digest(array)
    prefix = b"inference-receipts/v1/tensor\x00" + tensor_header(name, array.shape)
    assert d.value == hashlib.sha256(prefix + canonical_bytes(array)).digest()
    assert tensor_digest(array.reshape(2, 2)) != d


# --- tensor digests: what they ignore -----------------------------------------------------

layout_dtypes = st.sampled_from(
    [np.float32, np.float64, np.int16, np.int32, np.int64, np.uint32, np.complex64, np.float16]
)


@SETTINGS
@given(hnp.arrays(layout_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
def test_digest_does_not_depend_on_byte_order(array: np.ndarray[Any, Any]) -> None:
    big = array.astype(array.dtype.newbyteorder(">"))
    little = array.astype(array.dtype.newbyteorder("<"))
    assert tensor_digest(big) == tensor_digest(little) == tensor_digest(array)


@SETTINGS
@given(hnp.arrays(layout_dtypes, hnp.array_shapes(min_dims=2, max_dims=3, max_side=4)))
def test_digest_does_not_depend_on_storage_layout(array: np.ndarray[Any, Any]) -> None:
    expected = tensor_digest(np.ascontiguousarray(array))
    assert tensor_digest(np.asfortranarray(array)) == expected
    doubled = np.repeat(array, 2, axis=-1)[..., ::2]
    assert tensor_digest(doubled) == expected
    transposed = np.ascontiguousarray(array.T)
    assert tensor_digest(transposed.T) == expected


def test_big_endian_extended_and_strided_views_agree() -> None:
    values = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    assert tensor_digest(values[:, ::2, 1::2]) == tensor_digest(
        np.array([[[1, 3], [9, 11]], [[13, 15], [21, 23]]], "<i4")
    )


def test_string_tensor_digests_cover_text_and_shape() -> None:
    a = np.array(["ab", "c"], dtype=object)
    assert tensor_digest(a) == tensor_digest(np.array(["ab", "c"]))
    assert tensor_digest(a) != tensor_digest(np.array(["a", "bc"], dtype=object))
    assert tensor_digest(a) != tensor_digest(a.reshape(1, 2))


# --- tensor maps -------------------------------------------------------------------------


@SETTINGS
@given(st.dictionaries(names, digests, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_tensor_map_digest_does_not_depend_on_insertion_order(
    entries: dict[str, Digest], rng: random.Random
) -> None:
    items = list(entries.items())
    rng.shuffle(items)
    assert tensor_map_digest(dict(items)) == tensor_map_digest(entries)


@SETTINGS
@given(st.dictionaries(names, digests, min_size=1, max_size=6), st.data())
def test_tensor_map_digest_depends_on_every_name_and_digest(
    entries: dict[str, Digest], data: st.DataObject
) -> None:
    original = tensor_map_digest(entries)
    victim = data.draw(st.sampled_from(sorted(entries)))
    new_name = data.draw(names.filter(lambda n: n not in entries))
    renamed = {new_name if k == victim else k: v for k, v in entries.items()}
    assert tensor_map_digest(renamed) != original
    other = data.draw(digests.filter(lambda d: d != entries[victim]))
    assert tensor_map_digest({**entries, victim: other}) != original
    fewer = {k: v for k, v in entries.items() if k != victim}
    assert tensor_map_digest(fewer) != original


def test_swapping_digests_between_names_changes_the_map_digest() -> None:
    a, b = Digest(b"\x01" * 32), Digest(b"\x02" * 32)
    assert tensor_map_digest({"x": a, "y": b}) != tensor_map_digest({"x": b, "y": a})


def test_tensor_map_digest_sorts_names_by_utf8_bytes() -> None:
    a, b = Digest(b"\x01" * 32), Digest(b"\x02" * 32)
    expected = record_digest("tensor-map", [["z", a.value], ["é", b.value]])
    assert tensor_map_digest({"é": b, "z": a}) == expected


def test_tensor_map_digest_of_arrays_matches_entries() -> None:
    arrays = {"b": np.zeros(2, np.float32), "a": np.ones((1, 2), np.int8)}
    m = TensorMapDigest.of(arrays)
    assert [e.spec.name for e in m.entries] == ["a", "b"]
    assert m.by_name()["a"].spec == TensorSpec.of("a", arrays["a"])
    assert m.by_name()["b"].digest == tensor_digest(arrays["b"])
    assert m.digest == tensor_map_digest({k: tensor_digest(v) for k, v in arrays.items()})


def _entry(name: str, fill: int) -> TensorEntry:
    return TensorEntry(
        spec=TensorSpec(name=name, elem_type="float32", shape=(1,)),
        digest=Digest(bytes([fill]) * 32),
    )


def test_tensor_map_digest_rejects_entries_out_of_order() -> None:
    a, b = _entry("a", 1), _entry("b", 2)
    good = TensorMapDigest.from_entries([b, a])
    with pytest.raises(MalformedError):
        TensorMapDigest(entries=(b, a))
    assert good.entries == (a, b)


def test_tensor_map_digest_rejects_duplicate_names() -> None:
    a, a2 = _entry("a", 1), _entry("a", 2)
    with pytest.raises(MalformedError):
        TensorMapDigest.from_entries([a, a2])
    with pytest.raises(MalformedError):
        TensorMapDigest(entries=(a, a))


def test_a_receipt_whose_map_digest_does_not_match_its_entries_is_malformed() -> None:
    payload = Envelope.from_bytes((FIXTURES / "receipts" / "mlp.rcpt").read_bytes()).payload
    wire = decode(payload)
    wire["inputs"]["digest"] = bytes(32)
    with pytest.raises(MalformedError, match="does not match"):
        Receipt.from_wire(wire)


def test_names_sorted_by_code_point_and_by_utf8_bytes_agree_for_entries() -> None:
    entries = [_entry("\uffff", 1), _entry("\U00010000", 2), _entry("z", 3)]
    m = TensorMapDigest.from_entries(entries)
    assert [e.spec.name for e in m.entries] == ["z", "\uffff", "\U00010000"]


# --- domain separation -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "tensor"])
def test_a_tensor_digest_is_never_another_kinds_digest_of_the_same_bytes(kind: str) -> None:
    array = np.arange(4, dtype=np.int32)
    body = tensor_header("int32", (4,)) + canonical_bytes(array)
    assert digest_of("tensor", body) == tensor_digest(array)
    assert digest_of(kind, body) != tensor_digest(array)


def test_record_digests_of_one_value_differ_by_kind() -> None:
    value = {"a": 1}
    found = {record_digest(kind, value) for kind in KINDS}
    assert len(found) == len(KINDS)
    assert record_digest("receipt", value) == digest_of("receipt", bytes.fromhex("81 a1 61 01"))


def test_domain_prefix_is_terminated_so_kinds_cannot_shift_into_the_body() -> None:
    assert digest_of("tensor", b"-map\x00x") != digest_of("tensor-map", b"x")
    assert digest_of("key-id", b"") == Digest(
        hashlib.sha256(b"inference-receipts/v1/key-id\x00").digest()
    )
