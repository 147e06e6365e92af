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
