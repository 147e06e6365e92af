"""Audit reports: the same audit renders to the same bytes in any order, the JSON follows its
schema and round-trips to the scorecards, the HTML is self-contained and escapes hostile names,
and dispute commands are exact, shell-quoted argv."""

from __future__ import annotations

import dataclasses
import json
import random
import shlex
from html.parser import HTMLParser

import pytest

from receipts.audit_html import to_html
from receipts.audit_report import (
    FORMAT,
    VERSION,
    DisputeHints,
    dispute_command,
    to_json,
    to_text,
)
from receipts.scorecard import (
    AssetAmounts,
    AuditReport,
    Duplicate,
    Finding,
    ItemResult,
    Outcome,
    ProviderScore,
    ReasonCount,
    RungCount,
)
from tests.test_scorecard import CHEATER, HONEST, MISMATCH, item, population

HOSTILE = "<script>alert(1)</script>.rcpt"
STORE = {f"sha256:{n:064x}": f"store/objects/{n:064x}" for n in range(5000)}


def report(seed: int = 7, items: list[ItemResult] | None = None) -> AuditReport:
    return AuditReport(
        items=tuple(population(seed) if items is None else items),
        source="receipts/",
        sampling="fraction 0.25 per provider, at least 20",
        seed=42,
        policy={"rungs": ["signature", "digests", "reexec"], "sample": {"fraction": 0.25}},
        duplicates=(Duplicate(source="copy.rcpt", receipt_id="sha256:07d8", first_source="a"),),
        not_checked=("tee rung: no --tee-root given",),
    )


def hostile_failure() -> ItemResult:
    return dataclasses.replace(
        item(9, CHEATER, Outcome.FAILED, sampled=True),
        source=HOSTILE,
        findings=(Finding("reexec", "(9)", "output <img src=x onerror=alert(1)> differs"),),
    )


# -- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [to_json, to_text, to_html])
def test_shuffled_results_render_to_identical_bytes(render: object) -> None:
    assert callable(render)
    hints = DisputeHints(objects=STORE, key="me.key")
    assert render(report(1), hints) == render(report(2), hints) == render(report(3), hints)


# -- JSON -------------------------------------------------------------------------------------


def test_json_has_its_format_version_and_top_level_keys() -> None:
    doc = json.loads(to_json(report()))
    assert list(doc)[:2] == ["format", "version"]
    assert (doc["format"], doc["version"]) == (FORMAT, VERSION)
    assert set(doc) == {
        "format", "version", "verdict", "source", "sampling", "seed", "confidence", "policy",
        "providers", "unattributed", "items", "duplicates", "not_checked",
    }  # fmt: skip
    assert doc["verdict"] == {
        "ok": False,
        "headline": "1 provider failed receipts (4 of 1103 receipts failed)",
        "receipts": 1103,
        "failed": 4,
        "unchecked": 4,
        "duplicates": 1,
        "failing_providers": [CHEATER],
    }
    assert doc["unattributed"]["seen"] == 2
    assert doc["duplicates"] == [
        {"source": "copy.rcpt", "receipt_id": "sha256:07d8", "first_source": "a"}
    ]


def test_json_providers_round_trip_to_the_scorecards() -> None:
    r = report()
    providers = json.loads(to_json(r))["providers"]

    def back(d: dict[str, object]) -> ProviderScore:
        d = dict(d)
        d["failed_by_rung"] = tuple(RungCount(**x) for x in d["failed_by_rung"])  # type: ignore[attr-defined]
        for key in ("failed_by_reason", "unchecked_by_reason"):
            d[key] = tuple(ReasonCount(**x) for x in d[key])  # type: ignore[attr-defined]
        d["amounts"] = tuple(AssetAmounts(**x) for x in d["amounts"])  # type: ignore[attr-defined]
        return ProviderScore(**d)  # type: ignore[arg-type]

    assert tuple(back(p) for p in providers) == r.scores


def test_json_items_are_sorted_and_only_failures_carry_a_dispute() -> None:
    r = report()
    items = json.loads(to_json(r, DisputeHints(objects=STORE)))["items"]
    assert [i["source"] for i in items] == [i.source for i in r.items]
    assert set(items[0]) == {f.name for f in dataclasses.fields(ItemResult)} | {"dispute"}
    for doc, value in zip(items, r.items, strict=True):
        assert doc["outcome"] == value.outcome.value
        assert (doc["dispute"] is not None) == (value.outcome is Outcome.FAILED)
        assert doc["findings"] == [dataclasses.asdict(f) for f in value.findings]


def test_json_is_plain_ascii_even_for_hostile_names() -> None:
    text = to_json(report(items=[hostile_failure(), item(1, "\u202e" + HONEST)]))
    assert text.isascii()
    sources = {i["source"] for i in json.loads(text)["items"]}
    assert sources == {HOSTILE, "r/00001.rcpt"}


# -- text -------------------------------------------------------------------------------------


def test_text_has_one_row_per_provider_and_each_failure_with_its_dispute() -> None:
    text = to_text(report(), DisputeHints(objects=STORE, key="me.key"))
    assert text.splitlines()[3] == "FAILED: 1 provider failed receipts (4 of 1103 receipts failed)"
    header = next(line for line in text.splitlines() if line.startswith("provider"))
    assert header.split()[:6] == ["provider", "seen", "audited", "passed", "failed", "unchecked"]
    rows = [line for line in text.splitlines() if line.startswith(("aaa", "bbb", "ccc"))]
    assert len(rows) == 3
    assert rows[2].split()[1:7] == ["401", "99", "396", "4", "1", "7.65%"]
    assert text.count("dispute: receipts dispute ") == 4
    assert "Unchecked receipts (4)" in text
    assert "r/02016.rcpt: audit store: model sha256:0123 missing from the store" in text
    assert "copy.rcpt: receipt sha256:07d8 already read from a" in text
    assert "tee rung: no --tee-root given" in text


def test_text_neutralizes_terminal_control_sequences() -> None:
    evil = dataclasses.replace(hostile_failure(), source="a\x1b[2J\rb.rcpt")
    text = to_text(report(items=[evil]))
    assert "\x1b" not in text
    assert "\r" not in text
    assert "a\\x1b[2J\\rb.rcpt" in text


@pytest.mark.parametrize(
    ("items", "first"),
    [
        ([item(1, HONEST, sampled=True)], "OK: All 1 receipts checked out"),
        ([], "OK: All 0 receipts checked out"),
        (
            [item(1, None, Outcome.UNCHECKED, findings=(MISMATCH,))],
            "OK: No receipt failed; 1 could not be checked",
        ),
    ],
)
def test_text_verdict_line(items: list[ItemResult], first: str) -> None:
    assert to_text(report(items=items)).splitlines()[3] == first


# -- HTML -------------------------------------------------------------------------------------


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


def test_html_is_self_contained() -> None:
    page = to_html(report(), DisputeHints(objects=STORE))
    lowered = page.lower()
    for banned in ("http://", "https://", "<script", "<link", "<img", "<iframe", "@import", "url("):
        assert banned not in lowered
    tags = parse(page)
    assert set(tags.tags) <= {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "dl", "dt",
        "dd", "code", "svg", "text", "rect", "line", "table", "thead", "tbody", "tr", "th", "td",
        "span", "br", "ul", "li",
    }  # fmt: skip
    assert not [name for name, _ in tags.attrs if name.startswith("on")]
    assert "src" not in {name for name, _ in tags.attrs}
    assert tags.tags.count("svg") == 1
    assert tags.tags.count("rect") >= 3 * 2  # a count bar and a rate bar per provider


def test_html_leads_with_the_verdict_and_lists_failures_with_disputes() -> None:
    page = to_html(report(), DisputeHints(objects=STORE))
    text = "".join(parse(page).text)
    assert page.index('class="verdict bad"') < page.index("<table")
    assert "1 provider failed receipts (4 of 1103 receipts failed)" in text
    assert "Failed receipts (4)" in text
    assert text.count("receipts dispute ") == 4
    assert "Unchecked receipts (4)" in text
    assert "tee rung: no --tee-root given" in text


@pytest.mark.parametrize(
    ("items", "tone"),
    [
        ([item(1, HONEST, sampled=True)], "ok"),
        ([item(1, HONEST, Outcome.UNCHECKED, findings=(MISMATCH,))], "warn"),
        ([item(1, HONEST, Outcome.FAILED, sampled=True, findings=(MISMATCH,))], "bad"),
    ],
)
def test_html_banner_tone(items: list[ItemResult], tone: str) -> None:
    assert f'class="verdict {tone}"' in to_html(report(items=items))


def test_html_escapes_everything_from_receipts_and_file_names() -> None:
    r = dataclasses.replace(report(items=[hostile_failure()]), source=HOSTILE)
    page = to_html(r)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.rcpt" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    tags = parse(page)
    assert "script" not in tags.tags
    assert HOSTILE in "".join(tags.text)  # the person still reads the name as it is


def test_empty_report_renders() -> None:
    r = report(items=[])
    assert json.loads(to_json(r))["providers"] == []
    assert "no receipt could be attributed" in to_text(r)
    assert "<svg" not in to_html(r)


# -- dispute commands -------------------------------------------------------------------------


def test_dispute_command_is_exact_argv_with_placeholders_for_the_unknown() -> None:
    failed = item(9, CHEATER, Outcome.FAILED, sampled=True, findings=(MISMATCH,))
    argv = shlex.split(dispute_command(failed))
    assert argv == [
        "receipts", "dispute", "r/00009.rcpt",
        "--model", "MODEL", "--input", "INPUTS", "--trace", "PROVIDER_TRACE",
        "--key", "YOUR_KEY", "--out", f"evidence-{9:064x}.revd",
    ]  # fmt: skip


def test_dispute_command_takes_paths_from_mappings_or_callables_and_quotes_them() -> None:
    failed = dataclasses.replace(
        item(9, CHEATER, Outcome.FAILED, sampled=True), source="x; rm -rf ~ $(id).rcpt"
    )
    hints = DisputeHints(
        objects=lambda digest: f"my store/{digest}",
        traces={failed.receipt_id or "": "traces/it's.rtrc"},
        key="keys/challenger key.pem",
    )
    argv = shlex.split(dispute_command(failed, hints))
    assert argv[2] == "x; rm -rf ~ $(id).rcpt"
    assert argv[4] == f"my store/{failed.model}"
    assert argv[6] == f"my store/{failed.inputs}"
    assert argv[8] == "traces/it's.rtrc"
    assert argv[10] == "keys/challenger key.pem"


def test_dispute_command_for_a_receipt_without_a_file() -> None:
    failed = dataclasses.replace(
        item(9, CHEATER, Outcome.FAILED, sampled=True), source="ledger entry 12", receipt_id=None
    )
    argv = shlex.split(dispute_command(failed, DisputeHints(receipts={})))
    assert argv[2] == "RECEIPT"
    assert argv[-1] == "EVIDENCE"


def test_shuffling_items_never_changes_which_command_goes_with_which_receipt() -> None:
    items = population(5)
    random.Random(1).shuffle(items)
    doc = json.loads(to_json(report(items=items)))
    for entry in doc["items"]:
        if entry["dispute"] is not None:
            assert shlex.split(entry["dispute"])[2] == entry["source"]


def test_a_bytes_seed_renders_as_hex() -> None:
    r = dataclasses.replace(report(items=[]), seed=b"\x01\xff")
    assert json.loads(to_json(r))["seed"] == "01ff"
    assert "seed: 01ff;" in to_text(r)
    assert "<code>01ff</code>" in to_html(r)


def test_compact_json_holds_the_same_document() -> None:
    r = report()
    assert json.loads(to_json(r, indent=None)) == json.loads(to_json(r))
    assert "\n" not in to_json(r, indent=None).rstrip("\n")
