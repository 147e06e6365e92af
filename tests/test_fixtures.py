"""The committed fixtures are what the generator makes, and every named case does what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import receipts.errors as errors
from cli.main import cli
from fixtures.models import BUILDERS
from receipts import Policy, Verifier, load_model, load_tensors
from receipts.batch import verify_batch
from receipts.bls import Committee
from receipts.checkpoint import verify_consistency_proof, verify_inclusion_proof
from receipts.codec import encode
from receipts.digests import TensorMapDigest, tensor_digest
from receipts.envelope import pae
from receipts.events import decode_event
from receipts.evidence import Evidence
from receipts.reconcile import audit, replay
from receipts.referee import Referee, read_ruling
from receipts.runtime import RuntimeSettings, local_profile
from receipts.tlog import Log
from receipts.trace import TraceReader
from tests.conftest import (
    FIXTURES,
    ROOT,
    fixture_inputs,
    fixture_key,
    fixture_model,
    fixture_public,
    vectors,
)

CASES = json.loads((FIXTURES / "invalid" / "cases.json").read_text())
MACHINE_DEPENDENT = ("receipts", "invalid", "vectors.json", "disputes", "settlement", "tee")


def _same_identity() -> bool:
    return str(local_profile(RuntimeSettings()).identity) == vectors()["runtime"]["identity"]


def _files(root: Path) -> dict[str, bytes]:
    """The generated files under ``root``: not the generator's own modules (the top-level
    ``*.py``), not nitro/ (a real AWS document copied with its provenance, not generated)."""
    skip = {"__pycache__", "nitro"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not skip & set(p.relative_to(root).parts)
        and not (p.parent == root and p.suffix == ".py")
    }


@pytest.mark.slow
def test_committed_fixtures_equal_a_fresh_run(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--out", str(tmp_path)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    fresh, committed = _files(tmp_path), _files(FIXTURES)
    if not _same_identity():
        for files in (fresh, committed):
            for name in [n for n in files if n.startswith(MACHINE_DEPENDENT)]:
                del files[name]
    assert sorted(fresh) == sorted(committed)
    differing = [name for name in fresh if fresh[name] != committed[name]]
    assert differing == []
    if not _same_identity():
        pytest.skip("receipts were generated under another runtime identity; compared the rest")


def _material(case: dict[str, object], name: str = "mlp") -> dict[str, object]:
    material: dict[str, object] = {}
    if "model" in case["material"]:  # type: ignore[operator]
        material["model"] = fixture_model(name)
    if "inputs" in case["material"]:  # type: ignore[operator]
        material["inputs"] = fixture_inputs(name)
    if "outputs" in case["material"]:  # type: ignore[operator]
        material["outputs"] = load_tensors(FIXTURES / "receipts" / f"{name}.outputs.npz")
    return material


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_invalid_case_raises_its_error_class(case: dict[str, str]) -> None:
    data = (FIXTURES / "invalid" / case["name"]).read_bytes()
    verifier = Verifier(Policy(trusted_keys=(fixture_public(),)))
    with pytest.raises(getattr(errors, case["error"])):
        verifier.verify(data, **_material(case))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_invalid_case_exit_code(case: dict[str, object]) -> None:
    args = ["verify", str(FIXTURES / "invalid" / str(case["name"]))]
    args += ["--provider", str(FIXTURES / "keys" / "provider_ed25519.pem.pub")]
    flags = {"model": "--model", "inputs": "--input", "outputs": "--output"}
    paths = {
        "model": FIXTURES / "models" / "mlp.onnx",
        "inputs": FIXTURES / "inputs" / "mlp.npz",
        "outputs": FIXTURES / "receipts" / "mlp.outputs.npz",
    }
    for item in case["material"]:  # type: ignore[attr-defined]
        args += [flags[item], str(paths[item])]
    result = CliRunner().invoke(cli, args)
    error = getattr(errors, str(case["error"]))
    expected = 2 if issubclass(error, errors.InputError) else 1
    assert result.exit_code == expected, result.output
    assert "Traceback" not in result.output


RECEIPTS = sorted(p.stem for p in (FIXTURES / "receipts").glob("*.rcpt"))


@pytest.mark.parametrize("name", RECEIPTS)
def test_fixture_receipt_passes_every_rung(name: str) -> None:
    model_name = name.removesuffix("_secp256k1")
    key = "provider_secp256k1" if name.endswith("_secp256k1") else "provider_ed25519"
    verified = Verifier(Policy(trusted_keys=(fixture_public(key),))).verify(
        (FIXTURES / "receipts" / f"{name}.rcpt").read_bytes(),
        model=fixture_model(model_name),
        inputs=fixture_inputs(model_name),
        outputs=load_tensors(FIXTURES / "receipts" / f"{name}.outputs.npz"),
    )
    assert str(verified.receipt_id) == vectors()["receipts"][name]["receipt_id"]
    assert verified.report.required == ("signature", "digests", "reexec")


def test_codec_vectors_match_the_encoder() -> None:
    def plain(value: object) -> object:
        if isinstance(value, dict) and set(value) == {"$bytes"}:
            return bytes.fromhex(str(value["$bytes"]))
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    for vector in vectors()["codec"]:
        assert encode(plain(vector["value"])).hex() == vector["hex"]


def test_digest_and_key_vectors_match() -> None:
    v = vectors()
    assert v["pae"]["pae"] == "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae(v["pae"]["payload_type"], v["pae"]["payload"].encode()).decode() == v["pae"]["pae"]
    example = np.array([[1.0, -2.0], [0.5, 0.0]], dtype=np.float32)
    assert str(tensor_digest(example)) == v["tensors"]["float32_2x2"]["digest"]
    pair = {"float32_2x2": example, "int64_scalar": np.array(7, dtype=np.int64)}
    assert str(TensorMapDigest.of(pair).digest) == v["tensor_map"]["digest"]
    for name in BUILDERS:
        assert str(load_model(FIXTURES / "models" / f"{name}.onnx").digest) == v["models"][name]
    for name, key in v["keys"].items():
        assert fixture_key(name).public_key.key_id.hex() == key["key_id"]


def test_external_data_fixture_has_the_embedded_digest() -> None:
    external = load_model(FIXTURES / "models" / "mlp_external" / "model.onnx")
    assert external.digest == fixture_model("mlp").digest


@pytest.mark.parametrize(
    ("bundle", "verdict"),
    [("provider_fault", "provider-fault"), ("challenge_rejected", "challenge-rejected")],
)
def test_committed_disputes_are_judged_as_named(bundle: str, verdict: str, tmp_path: Path) -> None:
    referee = fixture_key("referee_ed25519")
    signed = read_ruling(
        (FIXTURES / "disputes" / f"{bundle}.ruling").read_bytes(), (referee.public_key,)
    )
    evidence = Evidence.read(FIXTURES / "disputes" / f"{bundle}.revd")
    assert signed.ruling.verdict == verdict
    assert signed.ruling.evidence == evidence.digest
    fresh = Referee(referee).judge(evidence, fixture_model("convnet"))
    assert fresh.ruling.verdict == verdict
    assert fresh.ruling.node == signed.ruling.node == evidence.index


def test_committed_trace_matches_its_vectors() -> None:
    v = vectors()["trace"]
    with TraceReader.open(FIXTURES / "disputes" / "honest" / "trace.rtrc") as trace:
        trace.check_all()
        assert len(trace) == v["nodes"]
        assert str(trace.root) == v["root"]
        assert trace.leaves[0].data.hex() == v["leaf_0"]
        assert trace.leaves[0].hash.hex() == v["leaf_0_hash"]


def test_settlement_fixtures_verify_with_the_log_key_alone() -> None:
    folder, log_key = FIXTURES / "settlement", fixture_public("log_ed25519")
    found = verify_inclusion_proof((folder / "entry3.tlog-proof").read_bytes(), log_key)
    assert decode_event(found.entry).kind == "hold"
    old, new = verify_consistency_proof(
        (folder / "consistency.txt").read_bytes(),
        (folder / "checkpoint-old.txt").read_bytes(),
        log_key,
    )
    assert (old.size, new.size) == (12, 14)
    batch, signed = verify_batch(
        (folder / "batch.cosigned").read_bytes(),
        log_key,
        Committee.load(folder / "committee.json"),
        threshold=2,
    )
    assert (batch.first, batch.end, len(signed.signers)) == (0, 14, 2)


def test_settlement_fixture_log_rebuilds_a_conserved_ledger() -> None:
    log = json.loads((FIXTURES / "settlement" / "log.json").read_text())
    store = replay(bytes.fromhex(item["entry"]) for item in log)
    checked = audit(store)
    assert checked.requests == {"released": 1, "refunded": 2}
    settled = vectors()["settlement"]
    assert Log(store, settled["origin"]).root().hex() == settled["root"]
    slashed = [decode_event(bytes.fromhex(i["entry"])) for i in log if i["kind"] == "slash"]
    assert [e.amount for e in slashed] == [500]  # type: ignore[union-attr]
