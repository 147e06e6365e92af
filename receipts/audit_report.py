"""An audit's report for machines and people: JSON and a terminal table (audit layer).

Presentation only, over a ``receipts.scorecard.AuditReport``: nothing here is parsed back or
signed. Each renderer is a pure function of the report (and of the ``DisputeHints`` that say
where the store keeps each receipt's model and inputs), so the same audit renders to the same
bytes whatever order its results came back in. Everything that comes from receipts or file
names is hostile: HTML escapes it, the terminal view replaces control characters, and every
path in a dispute command is shell-quoted. The JSON schema is in docs/audit.md. The HTML
file is ``receipts.audit_html``'s, with the words shared here.

    Path("audit.json").write_text(to_json(report, DisputeHints(objects=store_paths)))
    print(to_text(report))
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

from receipts.scorecard import (
    UNKNOWN_ASSET,
    AssetAmounts,
    AuditReport,
    ItemResult,
    Outcome,
)

FORMAT = "inference-receipts/audit-report"
VERSION = 1

Lookup = Mapping[str, str] | Callable[[str], str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class DisputeHints:
    """Where the files a dispute needs are. ``objects`` maps a store digest (``sha256:<hex>``)
    to the path of the stored file; ``receipts`` maps an item's source to its receipt file
    (default: the source itself, a path relative to where the audit ran); ``traces`` maps a
    receipt id to the provider's trace file, which the challenger must otherwise obtain from the
    provider; ``key`` is the challenger's key file. Whatever is unknown is left as a bare
    upper-case placeholder (MODEL, INPUTS, PROVIDER_TRACE, YOUR_KEY, RECEIPT) to replace."""

    objects: Lookup | None = None
    receipts: Lookup | None = None
    traces: Lookup | None = None
    key: str | None = None


def _look(lookup: Lookup | None, key: str | None) -> str | None:
    if lookup is None or key is None:
        return None
    if isinstance(lookup, Mapping):
        return lookup.get(key)
    return lookup(key)


def dispute_command(item: ItemResult, hints: DisputeHints | None = None) -> str:
    """The ``receipts dispute`` command line for one failed receipt, every path shell-quoted."""
    h = hints or DisputeHints()

    def arg(value: str | None, placeholder: str) -> str:
        return shell_quote(value) if value is not None else placeholder

    receipt = item.source if h.receipts is None else _look(h.receipts, item.source)
    safe_id = "".join(c for c in (item.receipt_id or "").removeprefix("sha256:") if c.isalnum())
    evidence = f"evidence-{safe_id}.revd" if safe_id else None
    words = [
        "receipts dispute",
        arg(receipt, "RECEIPT"),
        "--model",
        arg(_look(h.objects, item.model), "MODEL"),
        "--input",
        arg(_look(h.objects, item.inputs), "INPUTS"),
        "--trace",
        arg(_look(h.traces, item.receipt_id), "PROVIDER_TRACE"),
        "--key",
        arg(h.key, "YOUR_KEY"),
        "--out",
        arg(evidence, "EVIDENCE"),
    ]
    return " ".join(words)


def shell_quote(path: str) -> str:
    """``path`` as one shell word. A name that is not UTF-8 (read with surrogate escapes) is
    written in bash's ``$'...'`` quoting with its real bytes as ``\\xNN``, so the command names
    that very file; anything else is ``shlex.quote``d."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        body = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x27, 0x5C) else f"\\x{b:02x}" for b in raw
        )
        return f"$'{body}'"
    return shlex.quote(path)


# -- JSON -------------------------------------------------------------------------------------


def to_json(
    report: AuditReport, hints: DisputeHints | None = None, *, indent: int | None = 2
) -> str:
    """The report as JSON: ``format`` and ``version`` first, then a fixed key order (records in
    their fields' order); amounts are integers in the asset's smallest unit, rates floats.
    ``indent=None`` writes it compact (half the size for a large audit's items)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "verdict": verdict_json(report),
        "source": report.source,
        "sampling": report.sampling,
        "seed": seed_text(report) if isinstance(report.seed, bytes) else report.seed,
        "confidence": report.confidence,
        "policy": dict(report.policy),
        "providers": plain(report.scores),
        "unattributed": plain(report.unattributed),
        "items": [
            {
                **plain(item),
                "dispute": dispute_command(item, hints) if item.outcome is Outcome.FAILED else None,
            }
            for item in report.items
        ],
        "duplicates": plain(report.duplicates),
        "not_checked": list(report.not_checked),
    }
    separators = (",", ": ") if indent is not None else (",", ":")
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=True, allow_nan=False)
    return text + "\n"


def verdict_json(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": bool(report),
        "headline": headline(report),
        "receipts": len(report.items),
        "failed": len(report.failed_items),
        "unchecked": len(report.unchecked_items),
        "duplicates": len(report.duplicates),
        "failing_providers": list(report.failing_providers),
    }


def plain(value: Any) -> Any:
    """A scorecard value as JSON-ready data: records as objects in field order, tuples as
    lists, enums as their values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


# -- words shared by the text and HTML views -----------------------------------------------------


def headline(report: AuditReport) -> str:
    """One line a person reads first: who failed, else whether everything checked out."""
    failing = len(report.failing_providers)
    failed = len(report.failed_items)
    if failing:
        who = "1 provider" if failing == 1 else f"{failing} providers"
        return f"{who} failed receipts ({failed} of {len(report.items)} receipts failed)"
    if failed:
        return f"{failed} receipts failed"
    unchecked = len(report.unchecked_items)
    if unchecked:
        return f"No receipt failed; {unchecked} could not be checked"
    return f"All {len(report.items)} receipts checked out"


def seed_text(report: AuditReport) -> str:
    seed = report.seed
    return "none" if seed is None else seed.hex() if isinstance(seed, bytes) else str(seed)


def asset_name(asset: str) -> str:
    return "(unknown asset)" if asset == UNKNOWN_ASSET else asset


def amounts_text(amounts: tuple[AssetAmounts, ...], pick: Callable[[AssetAmounts], int]) -> str:
    return ", ".join(f"{pick(a):,} {asset_name(a.asset)}" for a in amounts) or "-"


def percent(rate: float) -> str:
    return f"{rate * 100:.2f}%"


def finding_text(rung: str, step: str, reason: str) -> str:
    return f"{rung} {step}: {reason}" if step else f"{rung}: {reason}"


# -- terminal ---------------------------------------------------------------------------------


def clean(text: str) -> str:
    """Text safe for a terminal: control and other non-printable characters as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def short(key: str, width: int = 16) -> str:
    return key if len(key) <= width else key[: width - 3] + "..."


def to_text(report: AuditReport, hints: DisputeHints | None = None) -> str:
    """A readable terminal report: the verdict, one row per provider, then failed receipts with
    their reasons and dispute commands, then what could not be checked."""
    conf = f"{report.confidence:.0%}"
    lines = [
        f"Audit of {clean(report.source)}",
        f"sampling: {clean(report.sampling)}; seed: {seed_text(report)}; confidence: {conf}",
        "",
        ("FAILED: " if not report else "OK: ") + headline(report),
        "",
    ]
    lines += _provider_table(report)
    failed = report.failed_items
    if failed:
        lines += ["", f"Failed receipts ({len(failed)})"]
        for item in failed:
            lines.append(f"  {clean(item.source)}  receipt {clean(item.receipt_id or '?')}")
            lines.append(
                f"    provider {clean(item.provider or '?')}, amount "
                f"{item.amount:,} {clean(asset_name(item.asset or UNKNOWN_ASSET))}"
            )
            lines += [f"    {clean(finding_text(f.rung, f.step, f.reason))}" for f in item.findings]
            lines.append(f"    dispute: {clean(dispute_command(item, hints))}")
    lines += _unchecked_lines(report)
    return "\n".join(lines) + "\n"


def _provider_table(report: AuditReport) -> list[str]:
    bound = f"rate<= ({report.confidence:.0%})"
    head = ("provider", "seen", "audited", "passed", "failed", "unchecked", bound, "at risk")
    rows = [
        (
            short(s.provider),
            f"{s.seen:,}",
            f"{s.audited:,}",
            f"{s.passed:,}",
            f"{s.failed:,}",
            f"{s.unchecked:,}",
            percent(s.failure_rate_upper),
            clean(amounts_text(s.amounts, lambda a: a.at_risk)),
        )
        for s in report.scores
    ]
    if not rows:
        return ["(no receipt could be attributed to a provider)"]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    out = []
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True)]
        out.append("  ".join([*cells, row[-1]]).rstrip())
    return out


def _unchecked_lines(report: AuditReport) -> list[str]:
    lines: list[str] = []
    unchecked = report.unchecked_items
    if unchecked:
        lines += ["", f"Unchecked receipts ({len(unchecked)})"]
        for item in unchecked:
            why = "; ".join(finding_text(f.rung, f.step, f.reason) for f in item.findings)
            lines.append(f"  {clean(item.source)}: {clean(why or 'no reason given')}")
    if report.duplicates:
        lines += ["", f"Duplicates left out ({len(report.duplicates)})"]
        lines += [
            f"  {clean(d.source)}: receipt {clean(d.receipt_id)} already read from "
            f"{clean(d.first_source)}"
            for d in report.duplicates
        ]
    if report.not_checked:
        lines += ["", "Not checked"]
        lines += [f"  {clean(note)}" for note in report.not_checked]
    return lines
