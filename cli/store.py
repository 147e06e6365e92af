"""``receipts store ...`` and ``receipts run --store``: the content-addressed store (CLI).

Thin wiring over ``receipts.objects``; errors reach the one boundary in ``cli.main``. Exit codes
as everywhere: 0 done (``check``: the store is sound), 1 ``check`` found problems, 2 bad input.

    receipts store add objects/ model.onnx inputs.npz test_data_set_0/    # prints the digests
    receipts store check objects/ [--json]

``file_run`` is what ``receipts run --store`` calls: it files the run's model, inputs and
outputs and checks they are filed under the digests the receipt holds.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import click

from cli import render
from receipts.digests import Digest, Value
from receipts.errors import InputError, ModelError
from receipts.model import LoadedModel
from receipts.objects import ObjectStore, StoreCheck
from receipts.provider import Issued

TEST_DATA_PREFIXES = ("input_", "output_")


@click.group("store")
def store() -> None:
    """File models and tensor maps under their digests; check a store."""


@store.command("add")
@click.argument("store_dir", metavar="STORE", type=click.Path(path_type=Path))
@click.argument(
    "files", metavar="FILE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
def add(store_dir: Path, files: tuple[Path, ...], as_json: bool) -> None:
    """File models (.onnx, or any file that parses as one) and tensor maps (.npz, or test-data
    folders of input_N.pb / output_N.pb) into STORE, made if missing. Prints kind, digest, file."""
    objects = ObjectStore.create(store_dir)
    rows: list[dict[str, str]] = []
    for file in files:
        for kind, digest, shown in add_file(objects, file):
            rows.append({"kind": kind, "digest": str(digest), "file": shown})
            if not as_json:
                click.echo(f"{kind:<8} {digest}  {render.safe(shown)}")
    if as_json:
        click.echo(json.dumps({"store": str(store_dir), "added": rows}, indent=2))


def add_file(objects: ObjectStore, file: Path) -> Iterator[tuple[str, Digest, str]]:
    """File one command-line FILE: (kind, digest, what was read) per object filed."""
    if file.is_dir():
        prefixes = [p for p in TEST_DATA_PREFIXES if any(file.glob(f"{p}*.pb"))]
        if not prefixes:
            raise InputError(f"{file}: a folder with no input_N.pb or output_N.pb files")
        for prefix in prefixes:
            yield "tensors", objects.add_tensor_file(file, prefix=prefix), f"{file}/{prefix}*.pb"
        return
    if not file.exists():
        raise InputError(f"{file}: no such file or folder")
    if file.suffix == ".onnx":
        yield "model", objects.add_model_file(file), str(file)
    elif file.suffix == ".npz" or _is_zip(file):
        yield "tensors", objects.add_tensor_file(file), str(file)
    else:
        try:
            yield "model", objects.add_model_file(file), str(file)
        except ModelError as e:
            raise InputError(f"{file}: neither an .npz tensor file nor an ONNX model") from e


def _is_zip(file: Path) -> bool:
    try:
        return file.is_file() and zipfile.is_zipfile(file)
    except OSError:
        return False  # unreadable: the model reader names the error


@store.command("check")
@click.argument("store_dir", metavar="STORE", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def check(ctx: click.Context, store_dir: Path, as_json: bool) -> None:
    """Read and digest every object of STORE; list corrupt, misfiled, unreadable, stray and
    temporary files. Exit 0 sound, 1 problems found, 2 not a store."""
    objects = ObjectStore.open(store_dir)
    with render.terminal_progress("checking") as progress:
        result = objects.check(progress=progress)
    click.echo(json.dumps(check_json(result), indent=2) if as_json else check_text(result))
    ctx.exit(0 if result else 1)


def check_json(result: StoreCheck) -> dict[str, object]:
    return {
        "store": str(result.root),
        "objects": result.objects,
        "sound": bool(result),
        "problems": [
            {
                "path": str(p.path),
                "digest": None if p.digest is None else str(p.digest),
                "reason": p.reason.value,
                "detail": p.detail,
            }
            for p in result.problems
        ],
    }


def check_text(result: StoreCheck) -> str:
    lines = [render.safe(p.describe()) for p in result.problems]
    verdict = "sound" if result else f"{len(result.problems)} problem(s)"
    lines.append(f"checked {result.objects} object(s) in {result.root}: {verdict}")
    return "\n".join(lines)


# -- receipts run --store ----------------------------------------------------------------------


def open_for_run(store_dir: Path | None) -> ObjectStore | None:
    """The store ``run --store`` files into, made if missing; opened before anything runs, so
    a path that is no store is refused first."""
    return None if store_dir is None else ObjectStore.create(store_dir)


def file_run(
    objects: ObjectStore, model: LoadedModel, inputs: Mapping[str, Value], issued: Issued
) -> str:
    """File the run's model, inputs and outputs (before the receipt is written, so no receipt
    names objects the store lacks) and check they are the digests the receipt holds."""
    receipt = issued.receipt
    filed = {
        "model": (objects.add_model(model), receipt.model),
        "inputs": (objects.add_tensors(inputs), receipt.inputs.digest),
        "outputs": (objects.add_tensors(issued.outputs), receipt.outputs.digest),
    }
    for what, (digest, held) in filed.items():
        if digest != held:  # the values run are not the ones digested: a bug, never input
            raise RuntimeError(f"{what} filed as {digest}, but the receipt holds {held}")
    return "\n".join(f"stored       {what} {digest}" for what, (digest, _) in filed.items())
