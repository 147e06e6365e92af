"""An audit's report for machines and people: JSON, a terminal table, one HTML file (audit layer).

Presentation only, over a ``receipts.scorecard.AuditReport``: nothing here is parsed back or
signed. Each renderer is a pure function of the report (and of the ``DisputeHints`` that say
where the store keeps each receipt's model and inputs), so the same audit renders to the same
bytes whatever order its results came back in. Everything that comes from receipts or file
names is hostile: HTML escapes it, the terminal view replaces control characters, and every
path in a dispute command is shell-quoted. The JSON schema is in docs/audit.md.

    Path("audit.html").write_text(to_html(report, DisputeHints(objects=store_paths)))
    print(to_text(report))
"""

from __future__ import annotations

import html
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
    ProviderScore,
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


def _short(key: str, width: int = 16) -> str:
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
            _short(s.provider),
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


# -- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem;color:#222}
h1{font-size:1.5rem;margin:0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem}
.verdict{padding:1rem 1.2rem;border-radius:6px;color:#fff}.verdict p{margin:.3rem 0 0}
.bad{background:#b71c1c}.warn{background:#8d6e00}.ok{background:#1b5e20}
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:13px ui-monospace,monospace;word-break:break-all}.key{font-family:ui-monospace,monospace}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
svg{max-width:100%;height:auto}svg text{font:12px system-ui,sans-serif}.muted{color:#666}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_COLORS = {"passed": "#2e7d32", "failed": "#c62828", "unchecked": "#9e9e9e"}


def _e(value: object) -> str:
    """Text for the page: control characters as escapes (as the terminal view shows them),
    then HTML-escaped."""
    return html.escape(clean(str(value)), quote=True)


def to_html(report: AuditReport, hints: DisputeHints | None = None) -> str:
    """One self-contained HTML file: inline CSS and SVG, no script, nothing fetched."""
    tone = "bad" if not report else "warn" if report.unchecked_items else "ok"
    facts = (
        f"{len(report.items):,} receipts from {len(report.scores):,} providers: "
        f"{len(report.failed_items):,} failed, {len(report.unchecked_items):,} unchecked, "
        f"{len(report.duplicates):,} duplicate{'' if len(report.duplicates) == 1 else 's'} "
        "left out"
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">',
        f"<title>Audit report: {_e(report.source)}</title><style>{_CSS}</style></head><body>",
        f'<header class="verdict {tone}"><h1>{_e(headline(report))}</h1><p>{_e(facts)}</p>',
        "</header>",
        _html_audit(report),
        "<h2>Providers</h2>",
        _svg_chart(report.scores),
        _html_providers(report),
        _html_failed(report, hints),
        _html_unchecked(report),
        f'<p class="muted">{_e(FORMAT)} version {VERSION}</p></body></html>\n',
    ]
    return "\n".join(p for p in parts if p)


def _key(key: str) -> str:
    """A provider key id, shortened, with the whole id on hover."""
    return f'<span class="key" title="{_e(key)}">{_e(_short(key, 24))}</span>'


def _table(head: tuple[str, ...], rows: list[list[str]], numeric: frozenset[int]) -> str:
    """A table of already-escaped cells; ``numeric`` columns align right."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>\n{body}</tbody></table>"


def _html_audit(report: AuditReport) -> str:
    policy = json.dumps(dict(report.policy), sort_keys=True, ensure_ascii=True)
    rows = [
        ("source", report.source),
        ("sampling", report.sampling),
        ("seed", seed_text(report)),
        ("confidence", f"{report.confidence:.0%} one-sided (Clopper-Pearson)"),
        ("policy", policy),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in rows)
    return f"<h2>Audit</h2><dl>{dl}</dl>"


def _html_providers(report: AuditReport) -> str:
    head = (
        "provider",
        "seen",
        "audited",
        "passed",
        "failed",
        "unchecked",
        f"failure rate &le; ({_e(f'{report.confidence:.0%}')})",
        "covered",
        "at risk",
        "failures by reason",
    )
    rows = [
        [
            _key(s.provider),
            *(_e(f"{v:,}") for v in (s.seen, s.audited, s.passed, s.failed, s.unchecked)),
            _e(f"{percent(s.failure_rate_upper)} ({s.sample_failed}/{s.audited})"),
            _e(amounts_text(s.amounts, lambda a: a.covered)),
            _e(amounts_text(s.amounts, lambda a: a.at_risk)),
            "<br>".join(
                _e(f"{r.count} x {finding_text(r.rung, r.step, r.reason)}")
                for r in s.failed_by_reason
            ),
        ]
        for s in report.scores
    ]
    return _table(head, rows, frozenset(range(1, 9)))


def _html_failed(report: AuditReport, hints: DisputeHints | None) -> str:
    failed = report.failed_items
    if not failed:
        return ""
    rows = [
        [
            _key(item.provider or "?"),
            _e(item.source),
            f"<code>{_e(item.receipt_id or '?')}</code>",
            _e(f"{item.amount:,} {asset_name(item.asset or UNKNOWN_ASSET)}"),
            "<br>".join(_e(finding_text(f.rung, f.step, f.reason)) for f in item.findings),
            f"<code>{_e(dispute_command(item, hints))}</code>",
        ]
        for item in failed
    ]
    head = ("provider", "source", "receipt", "amount", "why", "open a dispute")
    return f"<h2>Failed receipts ({len(failed)})</h2>" + _table(head, rows, frozenset({3}))


def _html_unchecked(report: AuditReport) -> str:
    parts = []
    if report.unchecked_items:
        rows = [
            [
                _e(item.source),
                _key(item.provider or "(undecodable)"),
                "<br>".join(_e(finding_text(f.rung, f.step, f.reason)) for f in item.findings),
            ]
            for item in report.unchecked_items
        ]
        parts.append(f"<h2>Unchecked receipts ({len(rows)})</h2>")
        parts.append(_table(("source", "provider", "why"), rows, frozenset()))
    if report.duplicates:
        rows = [
            [_e(d.source), f"<code>{_e(d.receipt_id)}</code>", _e(d.first_source)]
            for d in report.duplicates
        ]
        parts.append(f"<h2>Duplicates left out ({len(rows)})</h2>")
        parts.append(_table(("source", "receipt", "first read from"), rows, frozenset()))
    if report.not_checked:
        items = "".join(f"<li>{_e(note)}</li>" for note in report.not_checked)
        parts.append(f"<h2>Not checked</h2><ul>{items}</ul>")
    return "\n".join(parts)


def _svg_chart(scores: tuple[ProviderScore, ...]) -> str:
    """Per provider: a bar of passed/failed/unchecked receipts (to scale with the largest), and a
    bar of the failure-rate bound (to scale with the largest bound) with the observed k/n."""
    if not scores:
        return ""
    row, label_w, bar_w, rate_x, rate_w = 26, 150, 360, 600, 260
    most = max(s.seen for s in scores) or 1
    top = max(s.failure_rate_upper for s in scores) or 1.0
    height = row * (len(scores) + 1) + 6
    size = f'width="{rate_x + rate_w + 70}" height="{height}"'
    out = [
        f'<svg role="img" {size} viewBox="0 0 {rate_x + rate_w + 70} {height}">',
        "<title>Receipts per provider and failure-rate upper bounds</title>",
        f'<text x="{label_w}" y="16">receipts: passed / failed / unchecked</text>',
        f'<text x="{rate_x}" y="16">failure rate upper bound (axis 0 to {percent(top)})</text>',
    ]
    for i, s in enumerate(scores):
        y = row * (i + 1)
        out.append(f'<text x="0" y="{y + 16}">{_e(_short(s.provider))}</text>')
        x = float(label_w)
        for name, count in (("passed", s.passed), ("failed", s.failed), ("unchecked", s.unchecked)):
            w = bar_w * count / most
            if count:
                out.append(
                    f'<rect x="{x:.2f}" y="{y + 4}" width="{w:.2f}" height="16" '
                    f'fill="{_COLORS[name]}"><title>{_e(f"{count:,} {name}")}</title></rect>'
                )
            x += w
        out.append(
            f'<text x="{x + 4:.2f}" y="{y + 16}">'
            f"{s.passed:,} / {s.failed:,} / {s.unchecked:,}</text>"
        )
        w = rate_w * s.failure_rate_upper / top
        fill = _COLORS["failed"] if s.failed else "#1565c0"
        out.append(
            f'<rect x="{rate_x}" y="{y + 4}" width="{w:.2f}" height="16" fill="{fill}">'
            f"<title>{_e(percent(s.failure_rate_upper))}</title></rect>"
        )
        if s.sample_failure_rate is not None:
            mark = rate_x + rate_w * s.sample_failure_rate / top
            out.append(
                f'<line x1="{mark:.2f}" x2="{mark:.2f}" y1="{y + 1}" y2="{y + 23}" '
                'stroke="#000" stroke-width="2"/>'
            )
        out.append(
            f'<text x="{rate_x + w + 4:.2f}" y="{y + 16}">'
            f"{_e(percent(s.failure_rate_upper))}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
