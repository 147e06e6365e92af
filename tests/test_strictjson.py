"""The one strict JSON reader (BLS key files, snarkjs keys and proofs): what it refuses."""

from __future__ import annotations

import pytest

from receipts.errors import LimitError, MalformedError
from receipts.strictjson import load


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"a": 1, "a": 2}', "duplicate"),
        ('{"a": NaN}', "not valid JSON"),
        ("[Infinity]", "not valid JSON"),
        ("[" * 100 + "]" * 100, "nested deeper than 8"),
        ('{"a": 1', "not valid JSON"),
    ],
    ids=["duplicate_key", "nan", "infinity", "deep", "truncated"],
)
def test_hostile_json_is_a_typed_error(text: str, fragment: str) -> None:
    with pytest.raises(MalformedError, match=fragment):
        load(text.encode(), "file", limit=1 << 16)


def test_invalid_utf8_is_a_typed_error() -> None:
    with pytest.raises(MalformedError, match="not UTF-8"):
        load(b'{"a": "\xff"}', "file", limit=1 << 16)


def test_the_limit_counts_bytes_even_for_text() -> None:
    """Four-byte characters: 100 of them are 400 bytes of UTF-8, over a 300-byte limit."""
    text = '"' + "\U0001f600" * 100 + '"'
    assert len(text) < 300 < len(text.encode())
    with pytest.raises(LimitError):
        load(text, "file", limit=300)
    with pytest.raises(LimitError):
        load(text.encode(), "file", limit=300)
    assert load(text, "file", limit=402) == "\U0001f600" * 100
