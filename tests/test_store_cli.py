"""``receipts store add|check`` and ``receipts run --store`` through click's runner (0 / 1 / 2)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import numpy_helper

from cli.main import cli
from receipts import Envelope, Receipt, load_model, load_tensors
from receipts.digests import Digest, TensorMapDigest
from receipts.objects import MARKER, ObjectStore
from tests.conftest import FIXTURES

MODEL = FIXTURES / "models" / "mlp.onnx"
INPUTS = FIXTURES / "inputs" / "mlp.npz"
KEY = FIXTURES / "keys" / "provider_ed25519.pem"


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def tree(path: Path) -> list[tuple[str, bytes]]:
    """Every file under ``path`` with its bytes (to show a refusal changed nothing)."""
    if not path.exists():
        return []
    if path.is_file():
        return [(path.name, path.read_bytes())]
    return sorted((str(p), p.read_bytes()) for p in path.rglob("*") if p.is_file())


def test_add_prints_kind_digest_and_file_per_object(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = invoke("store", "add", store, MODEL, INPUTS, FIXTURES / "models" / "mlp_external")
    assert result.exit_code == 2  # a folder with no .pb files is refused, after the others
    assert result.stderr.count("\n") == 1 and "no input_N.pb or output_N.pb" in result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [
        ["model", str(load_model(MODEL).digest), str(MODEL)],
        ["tensors", str(TensorMapDigest.of(load_tensors(INPUTS)).digest), str(INPUTS)],
    ]
    again = invoke("store", "add", store, FIXTURES / "models" / "mlp_external" / "model.onnx")
    assert again.exit_code == 0 and again.stdout.split()[1] == rows[0][1]


def test_add_json_and_files_known_by_their_content(tmp_path: Path) -> None:
    shutil.copy(MODEL, tmp_path / "model.bin")
    shutil.copy(INPUTS, tmp_path / "inputs.dat")
    folder = tmp_path / "test_data_set_0"
    folder.mkdir()
    x, y = np.ones((1, 2), np.float32), np.arange(3, dtype=np.int64)
    (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (folder / "output_0.pb").write_bytes(numpy_helper.from_array(y, "y").SerializeToString())
    result = invoke(
        "store", "add", tmp_path / "s", tmp_path / "model.bin", tmp_path / "inputs.dat", folder,
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert [(r["kind"], r["digest"]) for r in view["added"]] == [
        ("model", str(load_model(MODEL).digest)),
        ("tensors", str(TensorMapDigest.of(load_tensors(INPUTS)).digest)),
        ("tensors", str(TensorMapDigest.of({"x": x}).digest)),
        ("tensors", str(TensorMapDigest.of({"y": y}).digest)),
    ]
    assert view["added"][3]["file"] == f"{folder}/output_*.pb"


def test_check_exits_0_when_sound_and_1_listing_every_problem(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert invoke("store", "add", store, MODEL, INPUTS).exit_code == 0
    clean = invoke("store", "check", store)
    assert clean.exit_code == 0
    assert clean.stdout == f"checked 2 object(s) in {store}: sound\n"
    objects = ObjectStore.open(store)
    model = objects.model_path(load_model(MODEL).digest)
    model.chmod(0o644)
    model.write_bytes(model.read_bytes()[:-7])  # truncated
    (model.parent / ".tmp-x").write_bytes(b"")
    result = invoke("store", "check", store)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"temp  {model.parent / '.tmp-x'}: ")
    assert lines[1].startswith(f"corrupt  {model}: not a sound model (not an ONNX model")
    assert lines[2] == f"checked 2 object(s) in {store}: 2 problem(s)"
    view = json.loads(invoke("store", "check", store, "--json").stdout)
    assert view["objects"] == 2 and view["sound"] is False
    assert [(p["reason"], p["digest"]) for p in view["problems"]] == [
        ("temp", None),
        ("corrupt", str(load_model(MODEL).digest)),
    ]


def _store_with_marker(text: str) -> Any:
    def make(tmp: Path) -> Path:
        (tmp / "store").mkdir()
        (tmp / "store" / MARKER).write_text(text)
        return tmp / "store"

    return make


def _folder_with(name: str, data: bytes) -> Any:
    def make(tmp: Path) -> Path:
        (tmp / "store").mkdir()
        (tmp / "store" / name).write_bytes(data)
        return tmp / "store"

    return make


def _file(name: str, data: bytes) -> Any:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def _escaping_model(tmp: Path) -> Path:
    proto = onnx.load(
        str(FIXTURES / "models" / "mlp_external" / "model.onnx"), load_external_data=False
    )
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(proto, str(tmp / "escape.onnx"))
    return tmp / "escape.onnx"


def _pickled(tmp: Path) -> Path:
    np.savez(tmp / "p.npz", a=np.array([{}], dtype=object))
    return tmp / "p.npz"


def _marked_encrypted(tmp: Path) -> Path:
    data = bytearray(INPUTS.read_bytes())
    data[data.index(b"PK\x01\x02") + 8] |= 1  # the central directory's "encrypted" flag
    (tmp / "locked.npz").write_bytes(bytes(data))
    return tmp / "locked.npz"


def _a_name_twice(tmp: Path) -> Path:
    members: dict[str, np.ndarray[Any, Any]] = {"x": np.ones(2), "x#none": np.zeros(0, np.uint8)}
    np.savez(tmp / "odd.npz", **members)  # type: ignore[arg-type]
    return tmp / "odd.npz"


# (what STORE is, what FILE is, a piece of the one-line message)
HOSTILE: dict[str, tuple[Any, Any, str]] = {
    "store is a file": (_file("s", b"x"), lambda t: MODEL, "not a folder"),
    "store holds other things": (_folder_with("a.txt", b"x"), lambda t: MODEL, "not empty"),
    "store marker of version 2": (
        _store_with_marker('{"format": "inference-receipts/objects", "version": 2}'),
        lambda t: MODEL,
        "version 2 is not supported",
    ),
    "store marker not json": (_store_with_marker("{"), lambda t: MODEL, "not an object store"),
    "file missing": (lambda t: t / "s", lambda t: t / "nothing.onnx", "no such file"),
    "onnx that is not a model": (
        lambda t: t / "s",
        _file("m.onnx", b"\x00\x01junk"),
        "not an ONNX",
    ),
    "file that is neither": (lambda t: t / "s", _file("notes.txt", b"hello"), "neither an .npz"),
    "npz truncated": (
        lambda t: t / "s",
        _file("x.npz", INPUTS.read_bytes()[:100]),
        "not an .npz file",
    ),
    "npz with a pickled object array": (
        lambda t: t / "s",
        _pickled,
        "pickle",
    ),
    "npz marked encrypted": (lambda t: t / "s", _marked_encrypted, "cannot be read"),
    "external data escaping its folder": (lambda t: t / "s", _escaping_model, "escapes"),
    "empty folder": (lambda t: t / "s", lambda t: (t / "d").mkdir() or t / "d", "no input_N.pb"),
    "npz holding one name twice": (
        lambda t: t / "s",
        _a_name_twice,
        "appears twice",
    ),
}


@pytest.mark.parametrize(("make_store", "make_file", "match"), HOSTILE.values(), ids=HOSTILE)
def test_bad_input_to_add_exits_2_with_one_line_and_files_nothing(
    tmp_path: Path, make_store: Any, make_file: Any, match: str
) -> None:
    store, file = make_store(tmp_path), make_file(tmp_path)
    before = tree(store)
    result = invoke("store", "add", store, file)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("receipts: error: ") and result.stderr.count("\n") == 1
    assert match in result.stderr
    after = [(name, data) for name, data in tree(store) if not name.endswith(MARKER)]
    assert after == [(n, d) for n, d in before if not n.endswith(MARKER)]  # no object, no temp


NOT_STORES = {
    "missing": lambda t: t / "missing",
    "a file": _file("f", b"x"),
    "an empty folder": lambda t: (t / "e").mkdir() or t / "e",
    "marker of another format": _store_with_marker('{"format": "x", "version": 1}'),
}


@pytest.mark.parametrize("make", NOT_STORES.values(), ids=NOT_STORES)
def test_check_of_what_is_not_a_store_exits_2(tmp_path: Path, make: Any) -> None:
    result = invoke("store", "check", make(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("receipts: error: ") and result.stderr.count("\n") == 1
    assert result.stdout == ""


# -- receipts run --store --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "sequence", "integer"])
def test_run_store_files_the_three_digests_the_receipt_holds(tmp_path: Path, name: str) -> None:
    model, inputs = FIXTURES / "models" / f"{name}.onnx", FIXTURES / "inputs" / f"{name}.npz"
    store, out = tmp_path / "store", tmp_path / "out"
    result = invoke("run", model, "--input", inputs, "--key", KEY, "--out", out, "--store", store)
    assert result.exit_code == 0, result.output
    receipt = Receipt.decode(Envelope.from_bytes((out / "receipt.rcpt").read_bytes()).payload)
    objects = ObjectStore.open(store)
    assert objects.model(receipt.model).digest == receipt.model
    assert objects.model_path(receipt.model).read_bytes() == model.read_bytes()
    stored_inputs = objects.tensors(receipt.inputs.digest)
    assert (
        TensorMapDigest.of(stored_inputs).digest == TensorMapDigest.of(load_tensors(inputs)).digest
    )
    stored_outputs = objects.tensors(receipt.outputs.digest)
    written = load_tensors(out / "outputs.npz")
    assert TensorMapDigest.of(written).digest == receipt.outputs.digest
    assert sorted(stored_outputs) == sorted(written)
    for what, digest in [("model", receipt.model), ("inputs", receipt.inputs.digest)]:
        assert f"stored       {what} {digest}" in result.stdout.splitlines()
    assert invoke("store", "check", store).exit_code == 0


def test_two_runs_into_one_store_share_the_model_and_inputs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for out in ("a", "b"):
        args = ("run", MODEL, "--input", INPUTS, "--key", KEY, "--out", tmp_path / out)
        assert invoke(*args, "--store", store).exit_code == 0
    check = ObjectStore.open(store).check()
    assert check and check.objects == 3  # the outputs are bit-identical too


def test_run_with_a_store_that_is_not_one_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mine.txt").write_text("not a store")
    out = tmp_path / "out"
    result = invoke(
        "run", MODEL, "--input", INPUTS, "--key", KEY, "--out", out, "--store", tmp_path / "store"
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "not empty and not an object store" in result.stderr
    assert not out.exists()
    assert sorted(os.listdir(tmp_path / "store")) == ["mine.txt"]


def test_the_digests_printed_by_run_find_the_objects(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = invoke(
        "run", MODEL, "--input", INPUTS, "--key", KEY, "--out", tmp_path / "out",
        "--store", store,
    )  # fmt: skip
    printed = {
        line.split()[1]: Digest.parse(line.split()[2])
        for line in result.stdout.splitlines()
        if line.startswith("stored ")
    }
    objects = ObjectStore.open(store)
    assert set(printed) == {"model", "inputs", "outputs"}
    assert objects.model_path(printed["model"]).is_file()
    assert objects.tensors_path(printed["inputs"]).is_file()
    assert objects.tensors_path(printed["outputs"]).is_file()
