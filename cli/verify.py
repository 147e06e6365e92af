"""``receipts verify``: check a receipt on every rung its material allows (CLI).

Thin wiring over ``receipts.verifier``: the supplied files decide the rungs (or ``--mode``), the
pinned keys, TEE roots and circuit decide what is trusted; the report is printed rung by rung.
Errors reach the one boundary in ``cli.main``. Exit codes: 0 every required rung passed, 1 one
failed, 2 bad input.

    receipts verify out/receipt.rcpt --model model.onnx --input x.npz --provider provider.pem.pub
    receipts verify R --input x.npz --output y.npz --circuit model.circuit --publisher pub.pem.pub
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli import render
from cli.options import (
    circuit_folder,
    debug_option,
    effects,
    existing,
    existing_any,
    json_option,
    pcr_option,
    provider_warning,
    publisher_option,
    report_exit_code,
    tee_policy,
    zk_policy,
)
from receipts import (
    Policy,
    PublicKey,
    Tolerance,
    Verifier,
    load_model,
    load_tensors,
)
from receipts.cose import MAX_DOCUMENT_BYTES
from receipts.envelope import MAX_ENVELOPE_BYTES
from receipts.files import read_limited
from receipts.jsonview import report_json
from receipts.nitro import SignedDocument
from receipts.report import LADDER, ZkPolicy, allowed_rungs
from receipts.verifier import TensorMap as TensorMapType


@click.command("verify")
@click.argument("receipt", type=existing)
@click.option("--model", type=existing, help="The model, for the digests and reexec rungs.")
@click.option("--input", "inputs", type=existing_any, help="Inputs (.npz or test-data folder).")
@click.option("--output", "outputs", type=existing_any, help="Claimed outputs (.npz or folder).")
@click.option(
    "--mode",
    type=click.Choice(LADDER),
    help="Strongest rung to run (default: all the files allow).",
)
@click.option("--rtol", type=click.FloatRange(0), default=1e-5, show_default=True)
@click.option("--atol", type=click.FloatRange(0), default=1e-6, show_default=True)
@click.option(
    "--provider",
    "providers",
    type=existing,
    multiple=True,
    help="Trusted provider public key (repeatable).",
)
@click.option("--max-age", type=click.IntRange(0), help="Refuse receipts issued over SECONDS ago.")
@click.option("--exact", is_flag=True, help="Require bit-exact re-execution (no tolerance).")
@click.option(
    "--tee-root",
    "tee_roots",
    type=existing,
    multiple=True,
    help="Pinned Nitro root (PEM; repeatable): requires the tee rung.",
)
@pcr_option
@debug_option
@click.option(
    "--attestation",
    "attestations",
    type=existing,
    multiple=True,
    help="A Nitro document beside the receipt (e.g. the key's; repeatable).",
)
@click.option(
    "--tee-key-max-age",
    type=click.IntRange(0),
    help="Key mode: receipts count as attested up to SECONDS after the key's document "
    "[default: 86400].",
)
@click.option(
    "--tee-max-age",
    type=click.IntRange(0),
    help="Refuse attestation documents older than SECONDS (bounds a key that left the enclave).",
)
@click.option(
    "--circuit",
    type=circuit_folder,
    help="A circuit folder (`receipts zk setup`): requires the zk rung (needs --input, --output "
    "and --publisher).",
)
@publisher_option(required=False)
@json_option
@click.pass_context
def verify(
    ctx: click.Context,
    receipt: Path,
    model: Path | None,
    inputs: Path | None,
    outputs: Path | None,
    mode: str | None,
    rtol: float,
    atol: float,
    providers: tuple[Path, ...],
    max_age: int | None,
    exact: bool,
    tee_roots: tuple[Path, ...],
    pcrs: dict[int, bytes],
    allow_debug: bool,
    attestations: tuple[Path, ...],
    tee_key_max_age: int | None,
    tee_max_age: int | None,
    circuit: Path | None,
    publishers: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check RECEIPT rung by rung; exit 0 if every required rung passed, 1 if one failed.

    With --tee-root the tee rung is required too: an attached (or --attestation) Nitro document
    must chain to that root at its own time, show the --pcr values (a debug enclave only with
    --allow-debug), and bind this receipt or its signing key. With --circuit the zk rung is
    required too: an attached proof under that circuit's manifest, signed by a --publisher, must
    show that the manifest's model gives --output on --input."""
    mode = mode or allowed_rungs(model, inputs, outputs)[-1]
    _check_material(mode, model, inputs, outputs)
    tee_options = (pcrs, allow_debug, attestations, tee_key_max_age is not None, tee_max_age)
    if any(tee_options) and not tee_roots:
        raise click.UsageError(
            "--pcr, --allow-debug, --attestation, --tee-key-max-age and --tee-max-age need "
            "--tee-root"
        )
    tee = None
    rungs = LADDER[: LADDER.index(mode) + 1]
    if tee_roots:
        tee = tee_policy(
            tee_roots,
            pcrs,
            allow_debug=allow_debug,
            max_key_age=tee_key_max_age,
            max_age=tee_max_age,
        )
        rungs = (*rungs, "tee")
    zk_rung = _zk(circuit, publishers, inputs, outputs)
    if zk_rung is not None:
        rungs = (*rungs, "zk")
    trusted = tuple(PublicKey.load(p) for p in providers) or None
    policy = Policy(
        trusted_keys=trusted,
        required=rungs,
        tolerance=Tolerance(rtol=rtol, atol=atol),
        max_age_ms=None if max_age is None else max_age * 1000,
        exact=exact,
        tee=tee,
        zk=zk_rung,
    )
    loaded = load_model(model) if model and mode != "signature" else None
    names_in = [v.name for v in loaded.inputs] if loaded else None
    names_out = [v.name for v in loaded.outputs] if loaded else None
    load = mode != "signature" or zk_rung is not None
    input_arrays = _tensors(inputs, "input_", names_in, load=load)
    output_arrays = _tensors(outputs, "output_", names_out, load=load)
    report = Verifier(policy, clock=effects(ctx)[0]).check(
        read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt"),
        model=loaded,
        inputs=input_arrays,
        outputs=output_arrays,
        attestations=[_document(p) for p in attestations],
    )
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        click.echo(render.report_table(report))
    if trusted is None:
        provider_warning()
    if tee is not None and not tee.pcrs:
        click.echo(
            "warning: no --pcr given; the tee rung accepts any enclave image under that root",
            err=True,
        )
    if not report:
        ctx.exit(report_exit_code(report))


def _document(path: Path) -> bytes:
    """A document given beside the receipt: one that does not even parse is bad input (2)."""
    data = read_limited(path, MAX_DOCUMENT_BYTES, "attestation")
    SignedDocument.parse(data)
    return data


def _check_material(
    mode: str, model: Path | None, inputs: Path | None, outputs: Path | None
) -> None:
    if mode == "reexec" and not (model and inputs):
        raise click.UsageError("--mode reexec needs --model and --input")
    if mode == "digests" and not (model or inputs or outputs):
        raise click.UsageError("--mode digests needs at least one of --model, --input, --output")


def _zk(
    circuit: Path | None, publishers: tuple[Path, ...], inputs: Path | None, outputs: Path | None
) -> ZkPolicy | None:
    if circuit is None:
        if publishers:
            raise click.UsageError("--publisher needs --circuit")
        return None
    if not (publishers and inputs and outputs):
        raise click.UsageError(
            "--circuit needs --publisher (the manifest signer's key), --input and --output "
            "(the proof's public signals are their packing)"
        )
    return zk_policy(circuit, publishers)


def _tensors(
    path: Path | None, prefix: str, names: list[str] | None, *, load: bool
) -> TensorMapType | None:
    if path is None or not load:
        return None
    return load_tensors(path, prefix=prefix, names=names)
