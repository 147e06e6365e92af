"""Strict JSON reading for the records that travel as JSON (formats layer).

BLS key and committee files (``receipts.bls``) and snarkjs's verification keys, proofs and public
signals (``circuits.groth16``) are read here: within a size limit, UTF-8, nesting checked before
the parser runs (100,000 nested brackets crashed a process inside the C parser instead of raising
``RecursionError``), no duplicate keys, no NaN or Infinity. Every refusal is the caller's
``MalformedError`` subclass (or ``LimitError`` for size) with a one-line reason.

    value = load(data, "verification key", limit=8 << 20, error=CircuitFormatError)
"""

from __future__ import annotations

import json
import re
from typing import Any

from receipts.errors import LimitError, MalformedError

MAX_DEPTH = 8
# A JSON string (escapes included, possibly unterminated) or one bracket: strings are skipped so
# brackets inside them do not count.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def load(
    data: bytes | str,
    what: str,
    *,
    limit: int,
    max_depth: int = MAX_DEPTH,
    error: type[MalformedError] = MalformedError,
) -> Any:
    """The JSON value of ``data``, or ``error`` (``LimitError`` over ``limit`` bytes)."""
    # A character is at least one byte: a text over the limit in characters is over it in
    # bytes, and one under it is measured as the UTF-8 it stands for.
    if len(data) > limit or (
        isinstance(data, str) and len(data.encode("utf-8", "surrogatepass")) > limit
    ):
        raise LimitError(f"{what}: larger than the limit of {limit} bytes")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        _shallow(text, what, max_depth, error)
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise error(f"{what}: not UTF-8") from e
    except RecursionError as e:
        raise error(f"{what}: nested too deeply") from e
    except ValueError as e:  # invalid JSON, duplicate keys, NaN, over-long integers
        raise error(f"{what}: not valid JSON ({e})") from e


def _shallow(text: str, what: str, max_depth: int, error: type[MalformedError]) -> None:
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket[0] == '"':
            continue
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            raise error(f"{what}: nested deeper than {max_depth} levels")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")
