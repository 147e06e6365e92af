"""The command line through click's runner: outputs, files and exit codes (0 / 1 / 2)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import numpy_helper

from cli.main import cli, main
from receipts import Envelope, PrivateKey, Provider, Receipt, load_model_bytes
from receipts.envelope import RECEIPT_PAYLOAD_TYPE
from tests.conftest import FIXTURES

MODEL = str(FIXTURES / "models" / "mlp.onnx")
INPUTS = str(FIXTURES / "inputs" / "mlp.npz")
KEY = str(FIXTURES / "keys" / "provider_ed25519.pem")
PUB = str(FIXTURES / "keys" / "provider_ed25519.pem.pub")
OTHER_PUB = str(FIXTURES / "keys" / "other_ed25519.pem.pub")


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def issued(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    result = invoke(
        "run", MODEL, "--input", INPUTS, "--key", KEY, "--out", str(out), "--unit-price", "2"
    )
    assert result.exit_code == 0, result.output
    return out


def test_keygen_writes_an_owner_only_key_and_prints_its_id(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    result = invoke("keygen", str(key), "--scheme", "secp256k1")
    assert result.exit_code == 0
    assert len(result.stdout.strip()) == 64
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "k.pem.pub").exists()
    again = invoke("keygen", str(key))
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.output


def test_digest_prints_the_model_digest_first(tmp_path: Path) -> None:
    result = invoke("digest", MODEL)
    assert result.exit_code == 0
    first = result.stdout.splitlines()[0]
    assert first.startswith("sha256:") and len(first) == 71
    view = json.loads(invoke("digest", MODEL, "--json").stdout)
    assert view["model_digest"] == first
    assert view["file_sha256"].startswith("sha256:")
    assert {w["path"] for w in view["weights"]} >= {"graph/initializer/0"}


def test_run_writes_outputs_and_receipt_and_prints_the_id(issued: Path) -> None:
    assert sorted(p.name for p in issued.iterdir()) == ["outputs.npz", "receipt.rcpt"]


def test_verify_strongest_mode_passes(issued: Path) -> None:
    result = invoke(
        "verify",
        str(issued / "receipt.rcpt"),
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--output",
        str(issued / "outputs.npz"),
        "--provider",
        PUB,
    )
    assert result.exit_code == 0, result.output
    assert "RELEASE" in result.stdout
    assert "11 outputs: bit-exact" in result.stdout


@pytest.mark.parametrize(
    ("mode", "expected_required"),
    [
        ("signature", ["signature"]),
        ("digests", ["signature", "digests"]),
        ("reexec", ["signature", "digests", "reexec"]),
    ],
)
def test_verify_modes_json(issued: Path, mode: str, expected_required: list[str]) -> None:
    result = invoke(
        "verify",
        str(issued / "receipt.rcpt"),
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--mode",
        mode,
        "--provider",
        PUB,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["required"] == expected_required


def test_verify_refuses_an_untrusted_provider_with_exit_1(issued: Path) -> None:
    result = invoke("verify", str(issued / "receipt.rcpt"), "--provider", OTHER_PUB)
    assert result.exit_code == 1
    assert "not a trusted provider key" in result.stdout


def test_verify_flipped_output_bit_exits_1(issued: Path, tmp_path: Path) -> None:
    outputs = dict(np.load(issued / "outputs.npz"))
    outputs["y"].view(np.uint32).reshape(-1)[3] ^= 1
    np.savez(tmp_path / "tampered.npz", **outputs)
    result = invoke(
        "verify", str(issued / "receipt.rcpt"), "--output", str(tmp_path / "tampered.npz")
    )
    assert result.exit_code == 1
    assert "outputs mismatch: y differs" in result.stdout


def test_unpinned_key_warns(issued: Path) -> None:
    result = invoke("verify", str(issued / "receipt.rcpt"))
    assert result.exit_code == 0
    assert "not pinned" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "RECEIPT", "--mode", "reexec"],
        ["verify", "RECEIPT", "--mode", "digests"],
        ["verify", "/no/such/file"],
        ["run", MODEL, "--input", INPUTS, "--key", "/no/such/key", "--out", "OUT"],
        ["run", MODEL, "--input", INPUTS, "--key", KEY, "--out", "OUT", "--opt-level", "max"],
        ["keygen", "K", "--scheme", "rsa"],
    ],
)
def test_bad_usage_exits_2(issued: Path, tmp_path: Path, args: list[str]) -> None:
    args = [
        a.replace("RECEIPT", str(issued / "receipt.rcpt")).replace("OUT", str(tmp_path / "o"))
        for a in args
    ]
    assert invoke(*args).exit_code == 2


def test_malformed_model_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    result = invoke("digest", str(bad))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("receipts: error:")


def test_wrong_input_name_exits_2(tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", wrong=np.zeros((1, 16), np.float32))
    result = invoke(
        "run",
        MODEL,
        "--input",
        str(tmp_path / "in.npz"),
        "--key",
        KEY,
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 2
    assert "unknown input 'wrong'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_model_onnxruntime_refuses_exits_2_with_reason(tmp_path: Path) -> None:
    model = onnx.load(MODEL)
    model.graph.node[0].op_type = "MatMulNoSuchOp"
    path = tmp_path / "refused.onnx"
    onnx.save(model, path)
    result = invoke("run", str(path), "--input", INPUTS, "--key", KEY, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "onnxruntime refused the model under [onnxruntime" in result.stderr
    assert result.stderr.count("\n") == 1


def test_test_data_folder_inputs_are_named_by_position(tmp_path: Path) -> None:
    folder = tmp_path / "test_data_set_0"
    folder.mkdir()
    x = np.load(INPUTS)["x"]
    (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x).SerializeToString())
    out = tmp_path / "o"
    assert (
        invoke("run", MODEL, "--input", str(folder), "--key", KEY, "--out", str(out)).exit_code == 0
    )
    result = invoke("verify", str(out / "receipt.rcpt"), "--model", MODEL, "--input", INPUTS)
    assert result.exit_code == 0, result.output


def test_inspect_shows_the_receipt(issued: Path) -> None:
    text = invoke("inspect", str(issued / "receipt.rcpt"))
    assert text.exit_code == 0
    assert "signature NOT checked" in text.stdout
    view = json.loads(invoke("inspect", str(issued / "receipt.rcpt"), "--json").stdout)
    assert view["receipt"]["meter"]["unit_price"] == 2
    assert view["signature_checked"] is False


def test_inspect_malformed_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rcpt"
    bad.write_bytes(b"\x81\xa1a\x01")
    result = invoke("inspect", str(bad))
    assert result.exit_code == 2
    assert "receipts: error:" in result.stderr


def _pb(tensor: onnx.TensorProto, folder: Path) -> Path:
    folder.mkdir()
    (folder / "input_0.pb").write_bytes(tensor.SerializeToString())
    return folder


@pytest.mark.parametrize(
    "case",
    [
        "pb_external_absolute",
        "pb_external_relative",
        "pb_unknown_dtype",
        "npz_truncated_member",
        "npz_empty_name",
        "fifo_receipt",
        "device_receipt",
        "device_model",
    ],
)
def test_hostile_files_exit_2_without_reading_forever(tmp_path: Path, case: str) -> None:
    args: list[str]
    if case.startswith("pb_"):
        tensor = numpy_helper.from_array(np.zeros((1, 16), np.float32), "x")
        if case == "pb_unknown_dtype":
            tensor.data_type = 99
        else:
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            location = "/etc/passwd" if case.endswith("absolute") else "conftest.py"
            tensor.external_data.add(key="location", value=location)
        folder = _pb(tensor, tmp_path / "in")
        args = ["run", MODEL, "--input", str(folder), "--key", KEY, "--out", str(tmp_path / "o")]
    elif case.startswith("npz_"):
        path = tmp_path / "x.npz"
        with zipfile.ZipFile(path, "w") as archive:
            name = ".npy" if case == "npz_empty_name" else "x.npy"
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 30,)}
            )
            archive.writestr(name, header.getvalue() + b"\x00" * 16)
        args = ["run", MODEL, "--input", str(path), "--key", KEY, "--out", str(tmp_path / "o")]
    elif case == "fifo_receipt":
        fifo = tmp_path / "pipe.rcpt"
        os.mkfifo(fifo)
        args = ["verify", str(fifo)]
    elif case == "device_receipt":
        args = ["inspect", "/dev/zero"]
    else:
        args = ["digest", "/dev/zero"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("receipts: error:")
    assert not (tmp_path / "o").exists()


def test_inspect_survives_a_date_past_the_calendar(tmp_path: Path) -> None:
    payload = Envelope.from_bytes((FIXTURES / "receipts" / "mlp.rcpt").read_bytes()).payload
    far = replace(Receipt.decode(payload), issued_at=253_402_300_800_000)
    key = PrivateKey.load(KEY)
    (tmp_path / "far.rcpt").write_bytes(
        Envelope.sign(RECEIPT_PAYLOAD_TYPE, far.encode(), key).to_bytes()
    )
    result = invoke("inspect", str(tmp_path / "far.rcpt"))
    assert result.exit_code == 0
    assert "outside the calendar" in result.stdout


def test_max_age_and_exact_options(issued: Path) -> None:
    receipt = str(issued / "receipt.rcpt")
    assert invoke("verify", receipt, "--max-age", "3600").exit_code == 0
    old = CliRunner().invoke(
        cli, ["verify", str(FIXTURES / "receipts" / "mlp.rcpt"), "--max-age", "60"]
    )
    assert old.exit_code == 1
    assert "ago" in old.stdout
    exact = invoke("verify", receipt, "--model", MODEL, "--input", INPUTS, "--exact")
    assert exact.exit_code == 0


def test_terminal_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    model = onnx.load(MODEL)
    evil = "\x1b[2J\x1b[31mPAID"
    model.graph.output[0].name = evil
    model.graph.node[-1].output[0] = evil
    loaded = load_model_bytes(model.SerializeToString())
    issued = Provider(PrivateKey.load(KEY)).session(loaded).run(dict(np.load(INPUTS)))
    issued.write(tmp_path / "o")
    result = invoke("inspect", str(tmp_path / "o" / "receipt.rcpt"))
    assert result.exit_code == 0
    assert "\x1b" not in result.stdout
    assert "\\x1b[2J" in result.stdout


# --- the entry point's exit codes -------------------------------------------------------------


def _exit_code(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["receipts", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


def test_ctrl_c_exits_130_not_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 means "a step failed": an interrupted command must not look like a failed
    verification (click's standalone handler exits 1 with "Aborted!")."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("cli.main.load_model", interrupted)
    assert _exit_code(["digest", str(FIXTURES / "models" / "mlp.onnx")], monkeypatch) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), (["no-such-command"], 2), (["verify"], 2), (["keygen", "--bogus"], 2)],
)
def test_the_entry_point_keeps_clicks_exit_codes(
    argv: list[str], code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _exit_code(argv, monkeypatch) == code


def test_the_command_line_does_not_import_the_reference_bls_backend() -> None:
    """py_ecc's BLS12-381 package costs ~0.4 s to import: a command that does not make a BLS key
    must not pay it (receipts.bls_pyecc holds the reference backend, imported by no command)."""
    probe = (
        "import sys, cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith(('py_ecc.bls', "
        "'py_ecc.optimized_bls12_381', 'receipts.bls_pyecc'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
