"""``receipts zk ...`` and ``receipts verify --circuit`` end to end through the CLI on tiny_int:
compile, set up, a receipt from ``receipts run``, prove, verify; refusals (exit 1, the failed
step named) and bad input (exit 2, one line, no traceback).

One 2^7 powers-of-tau file per pytest cache (``Snarkjs.cached_ptau``, shared with
tests/test_zk_rung.py), one setup and one proof per run; ``zk ptau`` itself makes only 2^3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import TensorProto, helper

from circuits.circuit_dir import CircuitDir
from circuits.manifest import PTAU, file_digest
from circuits.snarkjs import SNARKJS, Snarkjs
from cli.main import cli
from fixtures.int_models import sample_input, tiny_int
from receipts.envelope import Envelope
from tests.conftest import FIXTURES

pytestmark = [
    pytest.mark.skipif(not SNARKJS.exists(), reason="snarkjs is not installed (`make setup`)"),
    pytest.mark.xdist_group("zk"),  # the same worker as test_zk_rung: one cached ptau
]
KEYS = FIXTURES / "keys"
PROVIDER, PROVIDER_PUB = KEYS / "provider_ed25519.pem", KEYS / "provider_ed25519.pem.pub"
PUBLISHER, PUBLISHER_PUB = KEYS / "other_ed25519.pem", KEYS / "other_ed25519.pem.pub"
STRANGER_PUB = KEYS / "challenger_ed25519.pem.pub"


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="session")
def ptau_file(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2^7 >= tiny_int's 68 constraints + 2 public signals + 1; made once per pytest cache."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("zk-ptau") if cache is not None else tmp_path_factory.mktemp("ptau")
    return Snarkjs.locate(timeout_s=120).cached_ptau(7, Path(folder))


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """tiny_int's files, its circuit with keys, a receipt from ``receipts run`` and the same
    receipt with its proof attached, each made through the CLI."""

    folder: Path
    model: Path
    inputs: Path
    circuit: Path
    ptau: Path
    receipt: Path
    outputs: Path
    proven: Path
    compiled: str
    setup: str
    proved: str
    small_ptau: Path  # 2^3, made by `zk ptau`: too small for tiny_int
    made_ptau: Result

    def verify(self, *extra: object, receipt: Path | None = None) -> Result:
        return invoke(
            "zk", "verify", receipt or self.proven, "--circuit", self.circuit,
            "--input", self.inputs, "--output", self.outputs,
            "--publisher", PUBLISHER_PUB, "--provider", PROVIDER_PUB, *extra,
        )  # fmt: skip


def _ok(*args: object) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def world(ptau_file: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("zkcli")
    model, inputs = folder / "tiny.onnx", folder / "x.npz"
    onnx.save(tiny_int(), model)
    np.savez(inputs, x=sample_input("tiny_int", 1))
    circuit, out = folder / "tiny.circuit", folder / "out"
    compiled = _ok("zk", "compile", model, "--out", circuit)
    setup = _ok(
        "zk", "setup", circuit, "--ptau", ptau_file, "--key", PUBLISHER,
        "--ptau-digest", str(file_digest(PTAU, ptau_file)), "--model", model,
    )  # fmt: skip
    _ok("run", model, "--input", inputs, "--key", PROVIDER, "--out", out)
    receipt = out / "receipt.rcpt"
    proved = _ok("zk", "prove", circuit, receipt, "--model", model, "--input", inputs)
    small = folder / "pot3.ptau"
    made = invoke("zk", "ptau", "--power", "3", "--out", small, "--json")
    assert made.exit_code == 0, made.output
    return World(
        folder=folder,
        model=model,
        inputs=inputs,
        circuit=circuit,
        ptau=ptau_file,
        receipt=receipt,
        outputs=out / "outputs.npz",
        proven=out / "receipt.zk.rcpt",
        compiled=compiled,
        setup=setup,
        proved=proved,
        small_ptau=small,
        made_ptau=made,
    )


# --- the flow ----------------------------------------------------------------------------------


def test_compile_prints_the_constraint_count_and_circuit_hash(world: World) -> None:
    info = CircuitDir(world.circuit).read_info()
    assert f"constraints        {info.constraints}\n" in world.compiled
    assert f"circuit            {info.circuit}\n" in world.compiled
    assert "min ptau power     7\n" in world.compiled
    view = json.loads(_ok("zk", "compile", world.model, "--out", world.folder / "again", "--json"))
    assert view["circuit"] == str(info.circuit)  # deterministic: the model alone decides it
    assert view["constraints"] == 68


def test_setup_writes_keys_and_a_manifest_signed_by_the_publisher(world: World) -> None:
    signed = CircuitDir(world.circuit).read_manifest()
    assert f"manifest           {signed.id}\n" in world.setup
    assert f"ptau               {file_digest(PTAU, world.ptau)}\n" in world.setup
    assert signed.key.key_id.hex() in world.setup
    assert "warning" not in world.setup  # the ptau was checked against its digest


def test_prove_writes_a_new_receipt_with_the_proof_attached(world: World) -> None:
    original = Envelope.from_bytes(world.receipt.read_bytes())
    proven = Envelope.from_bytes(world.proven.read_bytes())
    assert proven.payload == original.payload and proven.signature == original.signature
    assert [a.type for a in proven.attachments] == ["groth16-bn254"]
    assert f"wrote              {world.proven}" in world.proved


def test_zk_verify_accepts_the_receipt_on_its_proof_alone(world: World) -> None:
    result = world.verify()
    assert result.exit_code == 0, result.output
    assert "[PASS] zk (required)" in result.output
    assert "PASS  21 proof" in result.output
    assert "reexec" not in result.output and "digests" not in result.output
    view = json.loads(world.verify("--json").stdout)
    assert view["ok"] is True
    assert view["required"] == ["signature", "zk"]


def test_verify_with_a_circuit_adds_the_zk_rung(world: World) -> None:
    result = invoke(
        "verify", world.proven, "--model", world.model, "--input", world.inputs,
        "--output", world.outputs, "--provider", PROVIDER_PUB,
        "--circuit", world.circuit, "--publisher", PUBLISHER_PUB,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "[PASS] reexec (required)" in result.output
    assert "[PASS] zk (required)" in result.output


# --- refused: exit 1, the failed step named ---------------------------------------------------


def test_a_tampered_output_file_is_refused_at_the_binding_step(world: World) -> None:
    tampered = world.folder / "tampered.npz"
    y = np.load(world.outputs)["y"]
    np.savez(tampered, y=y + np.int32(1))
    result = invoke(
        "zk", "verify", world.proven, "--circuit", world.circuit, "--input", world.inputs,
        "--output", tampered, "--publisher", PUBLISHER_PUB,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAIL  20 binding: the supplied outputs are not the receipt's" in result.output
    assert "REFUSE" in result.output


def test_an_untrusted_publisher_is_refused_at_the_manifest_step(world: World) -> None:
    result = invoke(
        "zk", "verify", world.proven, "--circuit", world.circuit, "--input", world.inputs,
        "--output", world.outputs, "--publisher", STRANGER_PUB,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAIL  19 manifest" in result.output
    assert "not a trusted circuit-manifest key" in result.output


def test_a_receipt_without_a_proof_is_refused(world: World) -> None:
    result = world.verify(receipt=world.receipt)
    assert result.exit_code == 1
    assert "FAIL  18 attachment: no groth16-bn254 v1 proof is attached" in result.output


def test_ptau_makes_a_development_file_and_prints_its_digest(world: World) -> None:
    assert json.loads(world.made_ptau.stdout)["ptau"] == str(file_digest(PTAU, world.small_ptau))
    assert "WARNING: making a DEVELOPMENT powers-of-tau file" in world.made_ptau.stderr
    before = world.small_ptau.read_bytes()
    again = invoke("zk", "ptau", "--power", "3", "--out", world.small_ptau)
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert world.small_ptau.read_bytes() == before


# --- bad input: exit 2, one line, no traceback -------------------------------------------------


def _compiled(world: World, tmp: Path, without: str | None = None) -> Path:
    """A fresh compiled circuit (no keys yet), ``without`` one of its files."""
    circuit = tmp / "fresh.circuit"
    _ok("zk", "compile", world.model, "--out", circuit)
    if without is not None:
        (circuit / without).unlink()
    return circuit


def _garbage(tmp: Path, name: str = "garbage.bin") -> Path:
    path = tmp / name
    path.write_bytes(b"\x84\x44garbage")
    return path


def _without(world: World, tmp: Path, name: str) -> Path:
    """A copy of the circuit folder without one file."""
    copy = tmp / "copy.circuit"
    shutil.copytree(world.circuit, copy)
    (copy / name).unlink()
    return copy


def _bad(world: World, tmp: Path, name: str) -> Path:
    """A copy of the circuit folder with one file replaced by garbage."""
    copy = _without(world, tmp, name)
    _garbage(copy, name)
    return copy


def _float_model(tmp: Path) -> Path:
    """A float Relu on [1, 4]: static shapes, but not integers."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "float_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp / "float.onnx")
    return tmp / "float.onnx"


def _unsupported_op(tmp: Path) -> Path:
    """tiny_int with an Abs after the Relu: an integer model the compiler does not take."""
    model = tiny_int()
    graph = model.graph
    graph.node[-1].output[0] = "relu"
    graph.node.append(helper.make_node("Abs", ["relu"], ["y"], name="abs"))
    graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.INT32, [1, 2]))
    onnx.checker.check_model(model)
    onnx.save(model, tmp / "abs.onnx")
    return tmp / "abs.onnx"


def _zk_verify(w: World, circuit: Path, *extra: object) -> list[object]:
    return ["zk", "verify", w.proven, "--circuit", circuit, "--input", w.inputs,
            "--output", w.outputs, "--publisher", PUBLISHER_PUB, *extra]  # fmt: skip


def _prove(w: World, circuit: Path, *extra: object) -> list[object]:
    return ["zk", "prove", circuit, w.receipt, "--model", w.model, "--input", w.inputs, *extra]


def _setup(circuit: Path, ptau: Path, *extra: object) -> list[object]:
    return ["zk", "setup", circuit, "--ptau", ptau, "--key", PUBLISHER, *extra]


Make = Callable[[World, Path], list[object]]
BAD: dict[str, tuple[Make, str]] = {
    # the circuit folder
    "verify_without_a_verification_key": (
        lambda w, t: _zk_verify(w, _without(w, t, "verification_key.json")),
        "cannot read verification key",
    ),
    "verify_without_a_manifest": (
        lambda w, t: _zk_verify(w, _without(w, t, "circuit.manifest")),
        "cannot read circuit manifest",
    ),
    "verify_with_a_malformed_manifest": (
        lambda w, t: _zk_verify(w, _bad(w, t, "circuit.manifest")), "circuit.manifest: not msgpack",
    ),
    "receipts_verify_with_a_malformed_manifest": (
        lambda w, t: ["verify", w.proven, "--input", w.inputs, "--output", w.outputs,
                      "--circuit", _bad(w, t, "circuit.manifest"), "--publisher", PUBLISHER_PUB],
        "circuit.manifest: not msgpack",
    ),
    "verify_with_a_malformed_verification_key": (
        lambda w, t: _zk_verify(w, _bad(w, t, "verification_key.json")),
        "verification_key.json: verification key: not UTF-8",
    ),
    "prove_without_a_proving_key": (
        lambda w, t: _prove(w, _without(w, t, "circuit.zkey"), "--out", t / "r.rcpt"),
        "circuit.zkey: No such file",
    ),
    "setup_without_circuit_info": (
        lambda w, t: _setup(_compiled(w, t, without="circuit.info"), w.ptau),
        "cannot read circuit info",
    ),
    "setup_over_existing_keys": (
        lambda w, t: _setup(w.circuit, w.ptau), "refusing to overwrite keys",
    ),
    "verify_a_garbage_receipt": (
        lambda w, t: ["zk", "verify", _garbage(t), "--circuit", w.circuit, "--input", w.inputs,
                      "--output", w.outputs, "--publisher", PUBLISHER_PUB],
        "REFUSE",
    ),
    # compile
    "compile_a_float_model": (
        lambda w, t: ["zk", "compile", _float_model(t), "--out", t / "c"],
        "input 'x' is float32: circuits take integer tensors",
    ),
    "compile_a_model_without_static_shapes": (
        lambda w, t: ["zk", "compile", FIXTURES / "models" / "mlp.onnx", "--out", t / "c"],
        "no static shape",
    ),
    "compile_an_unsupported_op": (
        lambda w, t: ["zk", "compile", _unsupported_op(t), "--out", t / "c"],
        "op Abs is not supported",
    ),
    "compile_over_an_existing_circuit": (
        lambda w, t: ["zk", "compile", w.model, "--out", w.circuit], "already exists",
    ),
    # ptau
    "ptau_power_0": (lambda w, t: ["zk", "ptau", "--power", "0", "--out", t / "p"], "--power"),
    "ptau_power_29": (lambda w, t: ["zk", "ptau", "--power", "29", "--out", t / "p"], "--power"),
    "ptau_power_huge": (
        lambda w, t: ["zk", "ptau", "--power", "9" * 30, "--out", t / "p"], "--power",
    ),
    # setup
    "setup_with_a_garbage_ptau": (
        lambda w, t: _setup(_compiled(w, t), _garbage(t)), "snarkjs groth16 setup failed",
    ),
    "setup_with_a_ptau_too_small": (
        lambda w, t: _setup(_compiled(w, t), w.small_ptau),
        "pot3.ptau holds 2^3 powers of tau; ",  # the rest names the power needed (test below)
    ),
    "setup_with_a_ptau_that_is_a_folder": (
        lambda w, t: _setup(_compiled(w, t), t), "is a directory",
    ),
    "setup_with_a_ptau_digest_not_a_digest": (
        lambda w, t: _setup(_compiled(w, t), w.ptau, "--ptau-digest", "sha256:xyz"),
        "not a sha256 digest",
    ),
    # prove
    "prove_into_the_receipt_itself": (
        lambda w, t: _prove(w, w.circuit, "--out", w.receipt), "already exists",
    ),
    "prove_into_the_default_again": (lambda w, t: _prove(w, w.circuit), "already exists"),
    "prove_into_a_missing_folder": (
        lambda w, t: _prove(w, w.circuit, "--out", t / "missing" / "r.rcpt"),
        "missing does not exist",
    ),
    "prove_a_garbage_receipt": (
        lambda w, t: ["zk", "prove", w.circuit, _garbage(t), "--model", w.model,
                      "--input", w.inputs, "--out", t / "r.rcpt"],
        "garbage.bin: ",
    ),
    "ptau_into_a_missing_folder": (
        lambda w, t: ["zk", "ptau", "--power", "3", "--out", t / "missing" / "p.ptau"],
        "missing does not exist",
    ),
    "prove_with_inputs_of_another_shape": (
        lambda w, t: ["zk", "prove", w.circuit, w.receipt, "--model", w.model,
                      "--input", _npz(t, x=np.zeros((1, 5), np.uint8)), "--out", t / "r.rcpt"],
        "input 'x' has shape [1, 5]",
    ),
    # receipts verify --circuit: usage
    "circuit_without_publisher": (
        lambda w, t: ["verify", w.proven, "--input", w.inputs, "--output", w.outputs,
                      "--circuit", w.circuit],
        "--circuit needs --publisher",
    ),
    "circuit_without_output": (
        lambda w, t: ["verify", w.proven, "--input", w.inputs, "--circuit", w.circuit,
                      "--publisher", PUBLISHER_PUB],
        "--circuit needs",
    ),
    "publisher_without_circuit": (
        lambda w, t: ["verify", w.proven, "--publisher", PUBLISHER_PUB],
        "--publisher needs --circuit",
    ),
    "zk_verify_without_publisher": (
        lambda w, t: ["zk", "verify", w.proven, "--circuit", w.circuit, "--input", w.inputs,
                      "--output", w.outputs],
        "--publisher",
    ),
}  # fmt: skip


def _npz(tmp: Path, **arrays: Any) -> Path:
    path = tmp / "other.npz"
    np.savez(path, **arrays)
    return path


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "rror" in line]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_2_with_one_line(world: World, tmp_path: Path, name: str) -> None:
    make, fragment = BAD[name]
    result = invoke(*make(world, tmp_path))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert fragment in result.output
    if "REFUSE" not in fragment:  # a report's refusal is a table; errors are one line
        assert len(_error_lines(result)) == 1, result.stderr


# --- review of the command line: refusals before the slow part, outputs whole or not at all ----


def _one_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert [fragment in line for line in _error_lines(result)] == [True], result.stderr


def test_a_ptau_digest_mismatch_is_bad_input_refused_before_any_key_is_made(
    world: World, tmp_path: Path
) -> None:
    # Setting up keys verifies nothing: a ptau that is not the pinned ceremony's is bad input.
    circuit = _compiled(world, tmp_path)
    result = invoke(*_setup(circuit, world.ptau, "--ptau-digest", "sha256:" + "00" * 32))
    expected = (
        f"receipts: error: powers of tau {world.ptau} is {file_digest(PTAU, world.ptau)}, "
        f"not the expected sha256:{'00' * 32}"
    )
    assert result.exit_code == 2
    assert _error_lines(result) == [expected]
    assert sorted(p.name for p in circuit.iterdir()) == ["circuit.info", "circuit.r1cs"]


def test_setup_with_the_model_refuses_a_circuit_info_that_is_not_what_it_compiles_to(
    world: World, tmp_path: Path
) -> None:
    """circuit.info is unsigned until setup: swapped for one whose input is [4, 1] instead of
    [1, 4] (the same constraints), the manifest would say the signals pack another tensor."""
    circuit = _compiled(world, tmp_path)
    info = CircuitDir(circuit).read_info()
    [x] = info.inputs
    swapped = replace(info, inputs=(replace(x, shape=tuple(reversed(x.shape))),))
    (circuit / "circuit.info").write_bytes(swapped.encode())
    result = invoke(*_setup(circuit, world.ptau, "--model", world.model))
    _one_error(result, "is not what model")
    assert sorted(p.name for p in circuit.iterdir()) == ["circuit.info", "circuit.r1cs"]


def test_a_ptau_too_small_names_the_power_the_circuit_needs(world: World, tmp_path: Path) -> None:
    circuit = _compiled(world, tmp_path)
    result = invoke(*_setup(circuit, world.small_ptau))
    _one_error(
        result,
        f"{world.small_ptau} holds 2^3 powers of tau; {circuit} (68 constraints, 2 public "
        "signals) needs 2^7 or more",
    )


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_ptau_that_is_not_a_regular_file_is_refused_without_reading_it(
    world: World, tmp_path: Path, kind: str
) -> None:
    # Hashing /dev/zero or a pipe with no writer never ends: a subprocess, so a hang fails.
    circuit = _compiled(world, tmp_path)
    ptau = Path("/dev/zero")
    if kind == "fifo":
        ptau = tmp_path / "fifo.ptau"
        os.mkfifo(ptau)
    done = subprocess.run(
        [sys.executable, "-m", "cli", *map(str, _setup(circuit, ptau))],
        capture_output=True, text=True, timeout=60, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"receipts: error: {ptau}: not a regular file"


def test_prove_refuses_files_that_are_not_the_receipts_as_bad_input(
    world: World, tmp_path: Path
) -> None:
    # Proving verifies nothing: other inputs, another model or a tampered receipt are bad input
    # (2), refused before snarkjs runs and with nothing written.
    other = _npz(tmp_path, x=np.array([[9, 8, 7, 6]], np.uint8))
    signed = Envelope.from_bytes(world.receipt.read_bytes())
    forged = tmp_path / "forged.rcpt"  # the payload signed by a key that is not the signer's
    forged.write_bytes(
        replace(
            signed, signature=replace(signed.signature, sig=bytes(len(signed.signature.sig)))
        ).to_bytes()
    )
    w, out = world, tmp_path / "r.rcpt"
    cases = [
        (["zk", "prove", w.circuit, w.receipt, "--model", w.model, "--input", other,
          "--out", out], "the inputs are not the receipt's"),
        (["zk", "prove", w.circuit, w.receipt, "--model", _float_model(tmp_path),
          "--input", w.inputs, "--out", out], f"the circuit in {w.circuit} is for"),
        (["zk", "prove", w.circuit, forged, "--model", w.model, "--input", w.inputs,
          "--out", out], "signature"),
    ]  # fmt: skip
    for args, fragment in cases:
        _one_error(invoke(*args), fragment)
        assert not out.exists()


def test_prove_refuses_a_receipt_that_already_carries_this_circuits_proof(
    world: World, tmp_path: Path
) -> None:
    out = tmp_path / "twice.rcpt"
    result = invoke(
        "zk", "prove", world.circuit, world.proven, "--model", world.model,
        "--input", world.inputs, "--out", out,
    )  # fmt: skip
    manifest = CircuitDir(world.circuit).read_manifest().id
    _one_error(result, "the receipt already carries a proof under manifest")
    assert str(manifest) in result.stderr
    assert not out.exists()


def test_compile_never_half_fills_a_folder_that_holds_a_file_already(
    world: World, tmp_path: Path
) -> None:
    # Before: circuit.r1cs was linked in, then circuit.info refused, leaving a mismatched pair.
    folder = tmp_path / "stale.circuit"
    folder.mkdir()
    (folder / "circuit.info").write_bytes(b"another model's info")
    result = invoke("zk", "compile", world.model, "--out", folder)
    _one_error(result, f"{folder} already exists; refusing to overwrite it")
    assert [p.name for p in folder.iterdir()] == ["circuit.info"]
    assert (folder / "circuit.info").read_bytes() == b"another model's info"
    assert [p.name for p in tmp_path.iterdir()] == ["stale.circuit"]  # no staging left


def test_compile_fills_an_empty_folder_or_makes_a_new_one(world: World, tmp_path: Path) -> None:
    empty, nested = tmp_path / "empty", tmp_path / "a" / "b" / "c"
    empty.mkdir()
    for folder in (empty, nested):
        view = json.loads(_ok("zk", "compile", world.model, "--out", folder, "--json"))
        assert view["wrote"] == str(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["circuit.info", "circuit.r1cs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty"]


def test_an_interrupted_compile_leaves_nothing(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(model: object, out: Path) -> None:
        out.mkdir()
        (out / "circuit.r1cs").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("cli.zk.compile_circuit", interrupted)
    invoke("zk", "compile", world.model, "--out", tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_ptau_never_replaces_a_file_that_appears_while_it_runs(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "p.ptau"

    def racing(power: int, path: Path, snarkjs: object, *, entropy: bytes) -> object:
        out.write_bytes(b"someone else's")  # made while snarkjs ran (minutes, at real sizes)
        path.write_bytes(b"ours")
        return file_digest(PTAU, path)

    monkeypatch.setattr("cli.zk.ptau", racing)
    result = invoke("zk", "ptau", "--power", "3", "--out", out)
    _one_error(result, f"{out} already exists; refusing to overwrite it")
    assert out.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["p.ptau"]


def _fake_node(tmp: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``node`` first on PATH that runs ``script`` instead of snarkjs."""
    folder = tmp / "bin"
    folder.mkdir()
    node = folder / "node"
    node.write_text(f"#!/bin/sh\n{script}\n")
    node.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def test_a_hanging_snarkjs_is_stopped_after_the_timeout_and_nothing_is_written(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_node(tmp_path, "exec sleep 60", monkeypatch)
    out, ptau = tmp_path / "r.rcpt", tmp_path / "p.ptau"
    _one_error(
        invoke(*_prove(world, world.circuit, "--out", out, "--timeout", "1")),
        "snarkjs groth16 timed out after 1 s",
    )
    _one_error(
        invoke("zk", "ptau", "--power", "3", "--out", ptau, "--timeout", "1"),
        "snarkjs powersoftau timed out after 1 s",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]


def test_a_missing_node_is_bad_input(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "r.rcpt"
    _one_error(invoke(*_prove(world, world.circuit, "--out", out)), "node is not installed")
    assert not out.exists()


def test_a_large_ptau_power_warns_about_time_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_node(tmp_path, "echo '[ERROR] snarkJS: stopped by the test'; exit 1", monkeypatch)
    result = invoke("zk", "ptau", "--power", "24", "--out", tmp_path / "p.ptau")
    assert result.exit_code == 2
    assert "2^24 takes a long time" in result.stderr
    assert "writes about 16 GiB" in result.stderr
    assert not (tmp_path / "p.ptau").exists()


def test_setup_and_prove_json_is_valid_json(world: World, tmp_path: Path) -> None:
    circuit = _compiled(world, tmp_path)
    made = invoke(*_setup(circuit, world.ptau, "--json"))
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["manifest"] == str(CircuitDir(circuit).read_manifest().id)
    out = tmp_path / "r.rcpt"
    proved = invoke(*_prove(world, circuit, "--out", out, "--json"))
    assert proved.exit_code == 0, proved.output
    assert json.loads(proved.stdout)["wrote"] == str(out)


# --- the zk rung in audits (where a receipt carries a proof) -----------------------------------


def test_an_audit_runs_the_zk_rung_on_receipts_that_carry_a_proof(
    world: World, tmp_path: Path
) -> None:
    receipts, store = tmp_path / "receipts", tmp_path / "store"
    receipts.mkdir()
    shutil.copy(world.proven, receipts / "proven.rcpt")
    added = invoke("store", "add", store, world.model, world.inputs, world.outputs)
    assert added.exit_code == 0, added.output
    shutil.copy(PUBLISHER_PUB, tmp_path / "publisher.pub")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[zk]\ncircuit = "{world.circuit}"\npublishers = ["publisher.pub"]\n')
    audit = invoke("audit", receipts, "--store", store, "--sample", "0", "--seed", "s",
                   "--policy", policy, "--json", tmp_path / "a.json")  # fmt: skip
    assert audit.exit_code == 0, audit.output
    [item] = json.loads((tmp_path / "a.json").read_text())["items"]
    assert "zk" in item["rungs"] and item["outcome"] == "passed"
    # Another receipt (other inputs) carrying this proof fails the zk rung at its binding.
    np.savez(tmp_path / "other.npz", x=sample_input("tiny_int", 2))
    ran = invoke("run", world.model, "--input", tmp_path / "other.npz", "--key", PROVIDER,
                 "--out", tmp_path / "other", "--store", store)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    proof = Envelope.from_bytes(world.proven.read_bytes()).attachments[0]
    other = Envelope.from_bytes((tmp_path / "other" / "receipt.rcpt").read_bytes())
    (receipts / "forged.rcpt").write_bytes(other.attach(proof).to_bytes())
    audit = invoke("audit", receipts, "--store", store, "--sample", "0", "--seed", "s",
                   "--policy", policy, "--json", tmp_path / "b.json")  # fmt: skip
    assert audit.exit_code == 1, audit.output
    items = {i["source"]: i for i in json.loads((tmp_path / "b.json").read_text())["items"]}
    assert items["proven.rcpt"]["outcome"] == "passed"
    assert items["forged.rcpt"]["outcome"] == "failed"
    assert [f["step"] for f in items["forged.rcpt"]["findings"]] == ["20 binding"]
