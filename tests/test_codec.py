"""Canonical msgpack: round trips, one encoding per value, and a table of hostile byte strings."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.codec import INT_MAX, INT_MIN, Limits, MapReader, decode, encode
from receipts.errors import LimitError, MalformedError, NonCanonicalError

SETTINGS = settings(max_examples=150, deadline=None)

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def values(depth: int = 4) -> st.SearchStrategy[Any]:
    """Every kind of value the profile allows, nested at most ``depth`` containers deep."""
    if depth == 0:
        return scalars
    child = values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(child, max_size=4),
        st.dictionaries(st.text(max_size=8), child, max_size=4),
    )


def same(a: object, b: object) -> bool:
    """Equality that also compares types, so ``True`` never passes for ``1``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def reorder(value: object, rng: random.Random) -> object:
    """The same value with every map's insertion order shuffled."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: reorder(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


def nested(depth: int, inner: bytes = b"\x01", *, opener: bytes = b"\x91") -> bytes:
    return opener * depth + inner


# --- properties --------------------------------------------------------------------------


@SETTINGS
@given(values())
def test_decode_inverts_encode_for_every_allowed_value(value: object) -> None:
    data = encode(value)
    assert same(decode(data), value)
    assert encode(decode(data)) == data


@SETTINGS
@given(values(), st.randoms(use_true_random=False))
def test_encoding_does_not_depend_on_dict_insertion_order(
    value: object, rng: random.Random
) -> None:
    assert encode(reorder(value, rng)) == encode(value)


@SETTINGS
@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), min_size=2, max_size=6))
def test_map_keys_are_written_sorted_by_utf8_bytes(value: dict[str, int]) -> None:
    pairs: list[tuple[str, int]] = []
    msgpack.unpackb(encode(value), object_pairs_hook=pairs.extend)
    keys = [k.encode("utf-8") for k, _ in pairs]
    assert keys == sorted(keys)


def test_encoding_matches_hand_written_bytes() -> None:
    assert encode({"b": 1, "a": [True, b"\x00"], "é": -1}) == bytes.fromhex(
        "83 a1 61 92 c3 c4 01 00 a1 62 01 a2 c3 a9 ff"
    )
    assert encode(255) == bytes.fromhex("cc ff")
    assert encode(INT_MAX) == bytes.fromhex("cf ffffffffffffffff")
    assert encode(INT_MIN) == bytes.fromhex("d3 8000000000000000")


def test_tuples_bytearrays_and_memoryviews_encode_as_arrays_and_bytes() -> None:
    assert encode((1, bytearray(b"ab"), memoryview(b"c"))) == encode([1, b"ab", b"c"])


def test_booleans_stay_booleans_and_never_become_integers() -> None:
    assert encode(True) == b"\xc3"
    assert encode(1) == b"\x01"
    assert decode(b"\xc3") is True


# --- hostile bytes -----------------------------------------------------------------------

SMALL = Limits(max_bytes=8, max_depth=16, max_container=2, max_str=4)

HOSTILE: list[tuple[str, bytes, type[Exception], Limits | None]] = [
    ("empty", b"", MalformedError, None),
    ("truncated_array", bytes.fromhex("92 01"), MalformedError, None),
    ("truncated_uint32", bytes.fromhex("ce 00 01"), MalformedError, None),
    ("truncated_str", bytes.fromhex("a3 61 62"), MalformedError, None),
    ("bin32_length_past_end", bytes.fromhex("c6 ff ff ff ff 00"), MalformedError, None),
    ("trailing_byte", bytes.fromhex("01 01"), MalformedError, None),
    ("trailing_map", bytes.fromhex("80 80"), MalformedError, None),
    ("unsorted_keys", bytes.fromhex("82 a1 62 01 a1 61 02"), NonCanonicalError, None),
    ("unsorted_by_utf8_bytes", bytes.fromhex("82 a2 c3 a9 01 a1 7a 02"), NonCanonicalError, None),
    ("duplicate_keys", bytes.fromhex("82 a1 61 01 a1 61 02"), NonCanonicalError, None),
    ("uint8_for_fixint", bytes.fromhex("cc 01"), NonCanonicalError, None),
    ("uint16_for_uint8", bytes.fromhex("cd 00 ff"), NonCanonicalError, None),
    ("uint64_for_fixint", bytes.fromhex("cf 00 00 00 00 00 00 00 05"), NonCanonicalError, None),
    ("int8_for_positive", bytes.fromhex("d0 05"), NonCanonicalError, None),
    ("int16_for_negative_fixint", bytes.fromhex("d1 ff ff"), NonCanonicalError, None),
    ("str8_for_short_string", bytes.fromhex("d9 01 61"), NonCanonicalError, None),
    ("bin16_for_short_bytes", bytes.fromhex("c5 00 01 61"), NonCanonicalError, None),
    ("array16_for_short_array", bytes.fromhex("dc 00 01 01"), NonCanonicalError, None),
    ("map16_for_short_map", bytes.fromhex("de 00 01 a1 61 01"), NonCanonicalError, None),
    ("bytes_map_key", bytes.fromhex("81 c4 01 61 01"), NonCanonicalError, None),
    ("float32", bytes.fromhex("ca 3f 80 00 00"), MalformedError, None),
    ("float64", bytes.fromhex("cb 3f f0 00 00 00 00 00 00"), MalformedError, None),
    ("float_inside_map", bytes.fromhex("81 a1 61 ca 3f 80 00 00"), MalformedError, None),
    ("nil", bytes.fromhex("c0"), MalformedError, None),
    ("nil_in_array", bytes.fromhex("91 c0"), MalformedError, None),
    ("reserved_c1", bytes.fromhex("c1"), MalformedError, None),
    ("fixext1", bytes.fromhex("d4 01 00"), MalformedError, None),
    ("ext8_empty", bytes.fromhex("c7 00 05"), MalformedError, None),
    ("timestamp32", bytes.fromhex("d6 ff 00 00 00 00"), MalformedError, None),
    ("timestamp64", bytes.fromhex("d7 ff") + bytes(8), MalformedError, None),
    ("timestamp96", bytes.fromhex("c7 0c ff") + bytes(12), MalformedError, None),
    ("int_map_key", bytes.fromhex("81 01 01"), MalformedError, None),
    ("bool_map_key", bytes.fromhex("81 c3 01"), MalformedError, None),
    ("nil_map_key", bytes.fromhex("81 c0 01"), MalformedError, None),
    ("array_map_key", bytes.fromhex("81 90 01"), MalformedError, None),
    ("invalid_utf8", bytes.fromhex("a2 ff fe"), MalformedError, None),
    ("utf8_surrogate", bytes.fromhex("a3 ed a0 80"), MalformedError, None),
    ("overlong_utf8", bytes.fromhex("a2 c0 af"), MalformedError, None),
    ("invalid_utf8_key", bytes.fromhex("81 a1 ff 01"), MalformedError, None),
    ("oversize_input", bytes.fromhex("94 01 02 03 04 05 06 07 08"), LimitError, SMALL),
    ("just_over_default_size", b"\xc6\x00\x10\x00\x00" + bytes(1 << 20), LimitError, None),
    ("seventeen_levels_deep", nested(17), LimitError, None),
    ("seventeen_maps_deep", nested(17, opener=b"\x81\xa1a"), LimitError, None),
    ("thousand_levels_deep", nested(1000), LimitError, None),
    ("five_thousand_levels_deep", nested(5000), LimitError, None),
    ("five_thousand_maps_deep", nested(5000, opener=b"\x81\xa1a"), LimitError, None),
    ("two_hundred_thousand_levels", nested(200_000), LimitError, None),
    ("huge_map_header", bytes.fromhex("df ff ff ff ff"), LimitError, None),
]


@pytest.mark.parametrize(
    ("data", "error", "limits"),
    [pytest.param(d, e, lim, id=name) for name, d, e, lim in HOSTILE],
)
def test_hostile_bytes_raise_their_specific_error(
    data: bytes, error: type[Exception], limits: Limits | None
) -> None:
    with pytest.raises(error) as info:
        decode(data) if limits is None else decode(data, limits=limits)
    assert type(info.value) is error


def test_nesting_up_to_the_limit_is_accepted() -> None:
    expected: object = 1
    for _ in range(16):
        expected = [expected]
    assert decode(nested(16)) == expected
    assert decode(nested(4), limits=Limits(max_depth=4)) == [[[[1]]]]
    with pytest.raises(LimitError):
        decode(nested(5), limits=Limits(max_depth=4))


def test_input_of_exactly_max_bytes_is_accepted() -> None:
    data = encode(b"x" * 100)
    assert decode(data, limits=Limits(max_bytes=len(data))) == b"x" * 100
    with pytest.raises(LimitError):
        decode(data, limits=Limits(max_bytes=len(data) - 1))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes.fromhex("93 01 02 03"), id="array_over_max_container"),
        pytest.param(bytes.fromhex("83 a1 61 01 a1 62 02 a1 63 03"), id="map_over_max_container"),
        pytest.param(bytes.fromhex("a5 61 62 63 64 65"), id="text_over_max_str"),
    ],
)
def test_containers_and_text_over_their_limits_raise_limit_error(data: bytes) -> None:
    with pytest.raises(LimitError):
        decode(data, limits=Limits(max_container=2, max_str=4))


# --- encoder refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.0, id="float"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(None, id="none"),
        pytest.param(INT_MAX + 1, id="int_above_uint64"),
        pytest.param(INT_MIN - 1, id="int_below_int64"),
        pytest.param({1: "x"}, id="int_key"),
        pytest.param({b"k": "x"}, id="bytes_key"),
        pytest.param({None: "x"}, id="none_key"),
        pytest.param({1, 2}, id="set"),
        pytest.param(object(), id="object"),
        pytest.param([1, [2, {"a": 0.5}]], id="nested_float"),
        pytest.param({"a": [None]}, id="nested_none"),
    ],
)
def test_encoder_refuses_values_outside_the_profile(value: object) -> None:
    with pytest.raises(MalformedError) as info:
        encode(value)
    assert type(info.value) is MalformedError


@pytest.mark.parametrize(
    "value", [pytest.param("\ud800", id="value"), pytest.param({"\udfff": 1}, id="key")]
)
def test_encoder_refuses_text_that_is_not_unicode_scalar_values(value: object) -> None:
    with pytest.raises(MalformedError):
        encode(value)


def test_encoder_refuses_maps_nested_past_its_depth_guard() -> None:
    value: object = 1
    for _ in range(600):
        value = {"a": value}
    with pytest.raises(LimitError):
        encode(value)


def test_encoder_refuses_arrays_nested_past_its_depth_guard() -> None:
    value: object = 1
    for _ in range(600):
        value = [value]
    with pytest.raises(LimitError):
        encode(value)


# --- MapReader ---------------------------------------------------------------------------


def reader(**fields: object) -> MapReader:
    return MapReader(dict(fields), "record")


def test_map_reader_returns_each_typed_field_and_closes_when_all_were_read() -> None:
    r = reader(n=3, flag=False, name="x", blob=b"ab", items=[1], sub={"k": 1})
    assert r.integer("n") == 3
    assert r.boolean("flag") is False
    assert r.text("name") == "x"
    assert r.binary("blob", 2) == b"ab"
    assert r.array("items") == [1]
    sub = r.map("sub")
    assert sub.integer("k") == 1
    sub.close()
    r.close()


@pytest.mark.parametrize("method", ["integer", "boolean", "text", "binary", "array", "map", "raw"])
def test_map_reader_reports_a_missing_field(method: str) -> None:
    with pytest.raises(MalformedError, match="missing field 'x'"):
        getattr(reader(y=1), method)("x")


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("integer", "1"),
        ("integer", True),
        ("integer", False),
        ("boolean", 1),
        ("boolean", 0),
        ("text", b"x"),
        ("binary", "x"),
        ("array", {"a": 1}),
        ("map", [1]),
    ],
)
def test_map_reader_rejects_a_field_of_the_wrong_type(method: str, value: object) -> None:
    with pytest.raises(MalformedError) as info:
        getattr(reader(x=value), method)("x")
    assert type(info.value) is MalformedError


@pytest.mark.parametrize(
    ("call", "value"),
    [
        (lambda r: r.integer("x", 1, 5), 0),
        (lambda r: r.integer("x", 1, 5), 6),
        (lambda r: r.text("x", 3), "abcd"),
        (lambda r: r.text("x", 3), "éé"),
        (lambda r: r.binary("x", 4), b"abc"),
        (lambda r: r.binary("x", None, 2), b"abc"),
        (lambda r: r.array("x", 1), [1, 2]),
    ],
)
def test_map_reader_rejects_values_outside_their_bounds(call: Any, value: object) -> None:
    with pytest.raises(MalformedError):
        call(reader(x=value))


def test_map_reader_close_rejects_a_field_that_was_not_read() -> None:
    r = reader(known=1, extra=2)
    r.integer("known")
    with pytest.raises(MalformedError, match="unknown field"):
        r.close()


def test_map_reader_counts_a_field_as_read_even_when_only_checked_with_raw() -> None:
    r = reader(a=1)
    assert r.has("a")
    assert not r.has("b")
    r.raw("a")
    r.close()


@pytest.mark.parametrize("value", [[1], "map", 1, None, b""])
def test_map_reader_refuses_anything_but_a_map(value: object) -> None:
    with pytest.raises(MalformedError):
        MapReader(value, "record")
