"""Where audited receipts come from: audit step (a1), read.

Below ``receipts.audit`` (which re-exports these): a source yields ``Submitted`` values, one per
receipt, each with its bytes or the reason they could not be read, and the trace file found
beside it. Sources are iterators, read once, in a fixed order (path order; log order).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from receipts.envelope import MAX_ENVELOPE_BYTES
from receipts.errors import InputError, ReceiptsError
from receipts.events import Claim, decode_event
from receipts.files import read_limited
from receipts.provider import RECEIPT_FILE, TRACE_FILE
from receipts.store import SqliteStore

__all__ = [
    "RECEIPT_SUFFIX",
    "TRACE_SUFFIX",
    "Submitted",
    "folder_source",
    "ledger_source",
    "trace_beside",
]

RECEIPT_SUFFIX, TRACE_SUFFIX = ".rcpt", ".rtrc"


@dataclass(frozen=True, slots=True)
class Submitted:
    """One receipt to audit: where it came from and its bytes, or why they could not be read;
    ``trace``, the path of its trace file when one was found beside it (for spot checks)."""

    source: str
    data: bytes = b""
    problem: str | None = None
    trace: str | None = None


def folder_source(folder: Path) -> Iterator[Submitted]:
    """Every ``*.rcpt`` file under ``folder``, in path order, named relative to it; with the
    trace file beside it if there is one (``NAME.rtrc`` beside ``NAME.rcpt``, or ``trace.rtrc``
    beside ``receipt.rcpt`` as ``receipts run --trace`` writes them)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of receipts")
    for path in sorted(folder.rglob(f"*{RECEIPT_SUFFIX}")):
        name = path.relative_to(folder).as_posix()
        try:
            data = read_limited(path, MAX_ENVELOPE_BYTES, "receipt")
        except ReceiptsError as e:
            yield Submitted(name, problem=str(e))
            continue
        yield Submitted(name, data, trace=trace_beside(path))


def trace_beside(receipt: Path) -> str | None:
    """The trace file kept beside a receipt file, if there is one (absolute)."""
    candidates = [receipt.with_suffix(TRACE_SUFFIX)]
    if receipt.name == RECEIPT_FILE:
        candidates.append(receipt.with_name(TRACE_FILE))
    found = next((c for c in candidates if c.is_file()), None)
    return None if found is None else str(found.resolve())


def ledger_source(db: Path, *, chunk: int = 1024) -> Iterator[Submitted]:
    """The receipts claimed in a ledger's log (``receipts.ledger``), in log order, named by
    their entry index."""
    store = SqliteStore.open_file(db)
    try:
        size = store.size()
        for lo in range(0, size, chunk):
            for offset, entry in enumerate(store.entries(lo, min(lo + chunk, size))):
                try:
                    event = decode_event(entry)
                except ReceiptsError as e:  # reported, and the rest of the log is audited
                    yield Submitted(f"ledger entry {lo + offset}", problem=str(e))
                    continue
                if isinstance(event, Claim):
                    yield Submitted(f"ledger entry {lo + offset}", event.receipt)
    finally:
        store.close()
