"""An audit's report as one self-contained HTML file a person reads at a glance (audit layer).

Presentation only, over a ``receipts.scorecard.AuditReport``, beside the JSON and terminal
views of ``receipts.audit_report`` (whose words it shares). Inline CSS and an inline SVG chart,
no script, nothing fetched (a ``default-src 'none'`` content security policy); everything that
comes from receipts or file names is escaped, control characters first.

    Path("audit.html").write_text(to_html(report, DisputeHints(objects=store_paths)))
"""

from __future__ import annotations

import html
import json

from receipts.audit_report import (
    FORMAT,
    VERSION,
    DisputeHints,
    amounts_text,
    asset_name,
    clean,
    dispute_command,
    finding_text,
    headline,
    percent,
    seed_text,
    short,
)
from receipts.scorecard import UNKNOWN_ASSET, AuditReport, ProviderScore

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
    return f'<span class="key" title="{_e(key)}">{_e(short(key, 24))}</span>'


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
        out.append(f'<text x="0" y="{y + 16}">{_e(short(s.provider))}</text>')
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
