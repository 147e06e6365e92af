"""Shared test fixtures: paths to the committed fixture files and small loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from receipts import LoadedModel, PrivateKey, PublicKey, load_model, load_tensors

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def fixture_model(name: str) -> LoadedModel:
    return load_model(FIXTURES / "models" / f"{name}.onnx")


def fixture_inputs(name: str) -> dict[str, Any]:
    return load_tensors(FIXTURES / "inputs" / f"{name}.npz")


def fixture_key(name: str = "provider_ed25519") -> PrivateKey:
    return PrivateKey.load(FIXTURES / "keys" / f"{name}.pem")


def fixture_public(name: str = "provider_ed25519") -> PublicKey:
    return PublicKey.load(FIXTURES / "keys" / f"{name}.pem.pub")


def vectors() -> dict[str, Any]:
    return json.loads((FIXTURES / "vectors.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the conformance pass/skip counts (works under xdist: reads the collected reports)."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "skipped", "failed", "xfailed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if (
                "test_conformance.py::" not in nodeid
                or getattr(report, "when", "call") == "teardown"
            ):
                continue
            kind = nodeid.split("::")[1].split("[")[0]
            counts.setdefault(kind, {}).setdefault(outcome, 0)
            counts[kind][outcome] += 1
    if not counts:
        return
    terminalreporter.section("ONNX conformance through the receipt loop")
    for kind, by_outcome in sorted(counts.items()):
        parts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(by_outcome.items()))
        terminalreporter.write_line(f"{kind}: {parts}")
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if "test_conformance.py::" in getattr(report, "nodeid", ""):
            text = (
                str(report.longrepr[2])
                if isinstance(report.longrepr, tuple)
                else str(report.longrepr)
            )
            key = text.removeprefix("Skipped: ")[:90]
            reasons[key] = reasons.get(key, 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:12]:
        terminalreporter.write_line(f"  skipped {n:4d}: {reason}")
