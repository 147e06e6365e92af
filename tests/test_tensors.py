"""Element types and canonical tensor bytes: ONNX raw_data layout, whatever NumPy's layout."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import numpy_helper

from receipts.errors import LimitError, MalformedError, TensorError
from receipts.tensors import (
    ELEM_TYPES,
    EXTENDED_TYPES,
    MAX_ELEMENTS,
    MAX_RANK,
    TensorSpec,
    _pack_subbyte,
    byte_length,
    canonical_bytes,
    elem_type,
    elem_type_of,
    elem_type_of_onnx,
    element_count,
    unpack_subbyte,
)

SETTINGS = settings(max_examples=100, deadline=None)
FIXED = [name for name, e in ELEM_TYPES.items() if e.bits]
SUBBYTE = [name for name, e in ELEM_TYPES.items() if 0 < e.bits < 8]


def from_bit_patterns(name: str, patterns: list[int]) -> np.ndarray[Any, Any]:
    """An array of type ``name`` holding exactly the given bit patterns, one per element."""
    etype = ELEM_TYPES[name]
    width = etype.dtype.itemsize
    raw = np.array(patterns, dtype=f"<u{width}") if width <= 8 else None
    if raw is None:  # complex128: two float64 per element
        raw = np.array(patterns, dtype="<u8").repeat(2)
    return raw.view(etype.dtype)


@st.composite
def typed_arrays(draw: st.DrawFn, names: list[str] = FIXED) -> tuple[str, np.ndarray[Any, Any]]:
    """Any fixed-width element type with arbitrary (valid) bit patterns and a small shape."""
    name = draw(st.sampled_from(names))
    etype = ELEM_TYPES[name]
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    count = int(np.prod(shape))
    top = (1 << min(etype.bits, 64)) - 1
    if name == "bool":
        top = 1
    patterns = draw(st.lists(st.integers(0, top), min_size=count, max_size=count))
    return name, from_bit_patterns(name, patterns).reshape(shape)


# --- the element type table --------------------------------------------------------------


@pytest.mark.parametrize("name", list(ELEM_TYPES))
def test_every_elem_type_is_found_by_name_onnx_code_and_dtype(name: str) -> None:
    etype = ELEM_TYPES[name]
    assert elem_type(name) is etype
    assert elem_type_of_onnx(etype.onnx) is etype
    sample = np.array(["a"], dtype=object) if name == "string" else np.zeros(3, etype.dtype)
    assert elem_type_of(sample) is etype


def test_extended_types_are_exactly_the_ml_dtypes_ones() -> None:
    assert {"bfloat16", "int4", "uint4", "int2", "uint2", "float4e2m1"} <= EXTENDED_TYPES
    assert not {"float32", "int64", "bool", "string", "float16"} & EXTENDED_TYPES


@pytest.mark.parametrize("dtype", ["M8[s]", "m8[s]", "V4", np.longdouble, "c8,c8"])
def test_dtypes_without_an_onnx_type_are_refused(dtype: Any) -> None:
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TensorError):
        elem_type_of(np.zeros(2, dtype=dtype))


def test_unknown_names_and_codes_are_refused() -> None:
    with pytest.raises(MalformedError):
        elem_type("float")
    with pytest.raises(TensorError):
        elem_type_of_onnx(0)
    with pytest.raises(TensorError):
        elem_type_of_onnx(999)


# --- canonical bytes against ONNX's own serializer ---------------------------------------


@SETTINGS
@given(typed_arrays())
def test_canonical_bytes_equal_onnx_raw_data(case: tuple[str, np.ndarray[Any, Any]]) -> None:
    name, array = case
    proto = numpy_helper.from_array(array)
    assert proto.data_type == ELEM_TYPES[name].onnx
    assert canonical_bytes(array) == proto.raw_data


@pytest.mark.parametrize("name", FIXED)
def test_canonical_length_matches_byte_length(name: str) -> None:
    etype = ELEM_TYPES[name]
    for count in range(10):
        array = np.zeros(count, dtype=etype.dtype)
        assert len(canonical_bytes(array)) == byte_length(etype, count)


def test_known_answers_for_little_endian_c_order() -> None:
    assert canonical_bytes(np.array([1.0], np.float32)).hex() == "0000803f"
    assert canonical_bytes(np.array([[1, 2], [3, 4]], np.int16)).hex() == "0100020003000400"
    assert canonical_bytes(np.array([True, False])).hex() == "0100"
    assert canonical_bytes(np.array([1, 2, 3], ml_dtypes.int4)).hex() == "2103"
    assert canonical_bytes(np.array([-1, -8], ml_dtypes.int4)).hex() == "8f"
    assert canonical_bytes(np.array([1, 2, 3, 0, 1], ml_dtypes.uint2)).hex() == "3901"


# --- layout independence -----------------------------------------------------------------


@SETTINGS
@given(typed_arrays([n for n in FIXED if ELEM_TYPES[n].dtype.itemsize > 1]))
def test_canonical_bytes_do_not_depend_on_byte_order(
    case: tuple[str, np.ndarray[Any, Any]],
) -> None:
    _, array = case
    swapped = array.astype(array.dtype.newbyteorder(">"))
    assert swapped.dtype.byteorder == ">"
    assert elem_type_of(swapped) is elem_type_of(array)
    assert canonical_bytes(swapped) == canonical_bytes(array)


@SETTINGS
@given(typed_arrays(), st.data())
def test_canonical_bytes_do_not_depend_on_memory_layout(
    case: tuple[str, np.ndarray[Any, Any]], data: st.DataObject
) -> None:
    _, array = case
    expected = canonical_bytes(np.ascontiguousarray(array))
    assert canonical_bytes(np.asfortranarray(array)) == expected
    # A strided view: the same values spread out in a bigger buffer.
    spread = np.zeros((*array.shape, 3), dtype=array.dtype)
    spread[..., 1] = array
    view = spread[..., 1]
    assert not view.flags.c_contiguous or array.size <= 1
    assert canonical_bytes(view) == expected
    if array.ndim >= 2:
        transposed = data.draw(st.permutations(range(array.ndim)))
        t = array.transpose(transposed)
        assert canonical_bytes(t) == canonical_bytes(t.copy(order="C"))


def test_reversed_and_sliced_views_hash_their_values_not_their_buffer() -> None:
    base = np.arange(12, dtype=np.int32)
    assert canonical_bytes(base[::-1]) == canonical_bytes(np.arange(11, -1, -1, dtype=np.int32))
    assert canonical_bytes(base[1::3]) == canonical_bytes(np.array([1, 4, 7, 10], np.int32))


def test_bool_tensors_of_equal_values_have_equal_bytes() -> None:
    stored_as_two = np.array([2, 0], np.uint8).view(np.bool_)
    assert (stored_as_two == np.array([True, False])).all()
    assert canonical_bytes(stored_as_two) == canonical_bytes(np.array([True, False]))


# --- sub-byte packing --------------------------------------------------------------------


@SETTINGS
@given(st.sampled_from(SUBBYTE), st.data())
def test_subbyte_pack_and_unpack_round_trip(name: str, data: st.DataObject) -> None:
    etype = ELEM_TYPES[name]
    patterns = data.draw(st.lists(st.integers(0, (1 << etype.bits) - 1), max_size=33))
    array = from_bit_patterns(name, patterns)
    packed = canonical_bytes(array)
    assert len(packed) == -(-len(patterns) // (8 // etype.bits))
    back = unpack_subbyte(packed, len(patterns), etype)
    assert back.dtype == etype.dtype
    assert back.view(np.uint8).tolist() == patterns


@SETTINGS
@given(st.sampled_from([2, 4]), st.lists(st.integers(0, 255), max_size=40))
def test_subbyte_packing_puts_the_first_element_in_the_low_bits(
    bits: int, values: list[int]
) -> None:
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    packed = _pack_subbyte(np.array(values, np.uint8), bits)
    # Bit by bit: element i sits at bit (i % per_byte) * bits of byte i // per_byte.
    for i, v in enumerate(values):
        assert (packed[i // per_byte] >> ((i % per_byte) * bits)) & mask == v & mask
    # Padding after the last element is zero.
    used = len(values) % per_byte
    if used:
        assert packed[-1] >> (used * bits) == 0


# --- string tensors ----------------------------------------------------------------------


def test_string_tensors_are_length_prefixed_utf8() -> None:
    array = np.array(["a", "", "é"], dtype=object)
    assert canonical_bytes(array) == (
        b"\x01\x00\x00\x00a" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9"
    )


@SETTINGS
@given(st.lists(st.text(max_size=8), min_size=1, max_size=6))
def test_string_tensors_do_not_depend_on_numpy_storage(items: list[str]) -> None:
    as_object = np.array(items, dtype=object)
    as_unicode = np.array(items, dtype=np.str_)
    # NumPy's fixed-width unicode drops trailing NULs, so compare on what it actually holds.
    held = [str(x) for x in as_unicode]
    assert canonical_bytes(as_unicode) == canonical_bytes(np.array(held, dtype=object))
    if held == items:
        assert canonical_bytes(as_object) == canonical_bytes(as_unicode)
    encoded = np.array([s.encode("utf-8") for s in items], dtype=object)
    assert canonical_bytes(encoded) == canonical_bytes(as_object)


def test_string_tensors_are_read_in_c_order() -> None:
    grid = np.array([["a", "b"], ["c", "d"]], dtype=object)
    assert canonical_bytes(grid.T) == canonical_bytes(np.array(["a", "c", "b", "d"], dtype=object))


@pytest.mark.parametrize("item", [3, None, 1.5])
def test_object_arrays_holding_non_text_are_refused(item: object) -> None:
    with pytest.raises(TensorError):
        canonical_bytes(np.array([item], dtype=object))


# --- element counts and specs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "count"),
    [((), 1), ((0,), 0), ((2, 3), 6), ((1,) * MAX_RANK, 1), ((MAX_ELEMENTS,), MAX_ELEMENTS)],
)
def test_element_count_of_shapes_within_the_limits(shape: tuple[int, ...], count: int) -> None:
    assert element_count(shape) == count


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        pytest.param((-1,), MalformedError, id="negative_dim"),
        pytest.param((3, -2), MalformedError, id="negative_second_dim"),
        pytest.param((1,) * (MAX_RANK + 1), LimitError, id="rank_65"),
        pytest.param((MAX_ELEMENTS + 1,), LimitError, id="one_over_max_elements"),
        pytest.param((1 << 20, 1 << 20, 1 << 20), LimitError, id="huge_product"),
        pytest.param((1 << 200,), LimitError, id="astronomical_dim"),
    ],
)
def test_element_count_refuses_bad_shapes(shape: tuple[int, ...], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        element_count(shape)
    assert type(info.value) is error


def test_element_count_does_not_depend_on_dimension_order() -> None:
    # An absurd dimension is refused even when another dimension makes the tensor empty.
    for shape in [(0, 1 << 40), (1 << 40, 0)]:
        with pytest.raises(LimitError):
            element_count(shape)
    assert element_count((0, 7)) == element_count((7, 0)) == 0


def test_tensor_spec_records_name_type_and_shape() -> None:
    spec = TensorSpec.of("x", np.zeros((2, 3), ml_dtypes.bfloat16))
    assert (spec.name, spec.elem_type, spec.shape) == ("x", "bfloat16", (2, 3))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param(
            {"name": "", "elem_type": "float32", "shape": ()}, MalformedError, id="empty_name"
        ),
        pytest.param(
            {"name": "x" * 1025, "elem_type": "float32", "shape": ()},
            MalformedError,
            id="long_name",
        ),
        pytest.param(
            {"name": "é" * 513, "elem_type": "float32", "shape": ()},
            MalformedError,
            id="long_utf8_name",
        ),
        pytest.param(
            {"name": "x", "elem_type": "float", "shape": ()}, MalformedError, id="unknown_type"
        ),
        pytest.param(
            {"name": "x", "elem_type": "int8", "shape": (-1,)}, MalformedError, id="negative_dim"
        ),
        pytest.param({"name": "x", "elem_type": "int8", "shape": (1,) * 65}, LimitError, id="rank"),
    ],
)
def test_tensor_spec_refuses_invalid_fields(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        TensorSpec(**fields)
    assert type(info.value) is error
