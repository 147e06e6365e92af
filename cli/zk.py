"""``receipts zk ...``: zero-knowledge proofs of integer ONNX inference (CLI, zk rung).

Thin wiring over ``circuits.circuit_dir`` (the prover's flow, driving the pinned snarkjs) and the
verifier's zk rung (pure Python); errors reach the one boundary in ``cli.main``. Exit codes as
everywhere: 0 verified (or done), 1 a step failed, 2 bad usage or input.

    receipts zk ptau --power 12 --out pot12.ptau          # DEVELOPMENT ONLY: one contributor
    receipts zk compile model.onnx --out model.circuit    # constraint count, circuit hash
    receipts zk setup model.circuit --ptau pot12.ptau --key publisher.pem
    receipts zk prove model.circuit out/receipt.rcpt --model model.onnx --input x.npz
    receipts zk verify out/receipt.zk.rcpt --circuit model.circuit --input x.npz \
        --output out/outputs.npz --publisher publisher.pem.pub

``receipts verify ... --circuit DIR --publisher PUB`` adds the same rung to the usual checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from circuits.circuit_dir import CircuitDir, attach_proof, compile_circuit, prove, ptau, setup
from circuits.snarkjs import MAX_POWER, Snarkjs
from cli import render
from cli.options import (
    circuit_folder,
    effects,
    existing,
    existing_any,
    provider_warning,
    publisher_option,
    report_exit_code,
    zk_policy,
)
from receipts import Policy, PrivateKey, PublicKey, Verifier, load_model, load_tensors
from receipts.digests import Digest
from receipts.envelope import MAX_ENVELOPE_BYTES
from receipts.files import StorageError, read_limited, write_atomic
from receipts.jsonview import report_json

new_file = click.Path(dir_okay=False, path_type=Path)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
input_option = click.option(
    "--input",
    "inputs",
    type=existing_any,
    required=True,
    help="The receipt's inputs (.npz/folder).",
)
output_option = click.option(
    "--output", "outputs", type=existing_any, required=True, help="Its outputs (.npz/folder)."
)


def _show(view: dict[str, object], *, as_json: bool) -> None:
    """One command's result: JSON for machines, aligned ``label value`` lines for people."""
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    for label, value in view.items():
        for item in value if isinstance(value, list) else [value]:
            click.echo(f"{label.replace('_', ' '):<18} {render.safe(str(item))}")


@click.group("zk")
def zk() -> None:
    """Zero-knowledge proofs of integer ONNX inference (Groth16 over BN254; snarkjs proves,
    pure Python verifies)."""


@zk.command("ptau")
@click.option(
    "--power",
    type=click.IntRange(1, MAX_POWER),
    required=True,
    help="2^N powers: enough for circuits whose `zk compile` asks for power N or less.",
)
@click.option("--out", type=new_file, required=True, help="The file to write (never replaced).")
@json_option
@click.pass_context
def make_ptau(ctx: click.Context, power: int, out: Path, as_json: bool) -> None:
    """DEVELOPMENT ONLY: a single-contributor powers-of-tau file of 2^N at OUT, and its digest.

    One secret contribution from this machine, then a public beacon: whoever can read this
    machine's memory could forge proofs. Deployments use a multi-party ceremony's file, checked
    by `zk setup --ptau-digest`. Slow above 2^16 (minutes)."""
    click.echo(
        f"WARNING: making a DEVELOPMENT powers-of-tau file (2^{power}, one contributor: this "
        "machine); use a public ceremony's file for anything real",
        err=True,
    )
    digest = ptau(power, out, Snarkjs.locate(), entropy=effects(ctx)[1](32))
    _show(
        {"ptau": str(digest), "power": power, "wrote": f"{out} (DEVELOPMENT ONLY)"},
        as_json=as_json,
    )


@zk.command("compile")
@click.argument("model", type=existing)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The circuit folder (circuit.r1cs, circuit.info); never replaced.",
)
@json_option
def compile_command(model: Path, out: Path, as_json: bool) -> None:
    """Compile the integer MODEL into a circuit in OUT: print its constraint count and hash.

    Weights are constants of the circuit, so anyone recompiling MODEL gets the same hash."""
    info = compile_circuit(load_model(model), out)
    _show(
        {
            "model": str(info.model),
            "circuit": str(info.circuit),
            "compiler": info.compiler,
            "constraints": info.constraints,
            "public_signals": info.n_public,
            # snarkjs's rule: 2^N must exceed the constraints plus the public signals.
            "min_ptau_power": (info.constraints + info.n_public).bit_length(),
            "outputs": [t.describe() for t in info.outputs],
            "inputs": [t.describe() for t in info.inputs],
            "wrote": str(out),
        },
        as_json=as_json,
    )


@zk.command("setup")
@click.argument("circuit", type=circuit_folder)
@click.option(
    "--ptau", "ptau_file", type=existing, required=True, help="A powers-of-tau file (phase 2)."
)
@click.option("--key", type=existing, required=True, help="The publisher's private key (PEM).")
@click.option(
    "--ptau-digest",
    metavar="DIGEST",
    help="Refuse a --ptau file whose digest is not this (sha256:..., a ceremony's).",
)
@json_option
@click.pass_context
def setup_command(
    ctx: click.Context,
    circuit: Path,
    ptau_file: Path,
    key: Path,
    ptau_digest: str | None,
    as_json: bool,
) -> None:
    """Make CIRCUIT's Groth16 keys (one secret contribution) and its manifest signed by --key.

    Verifiers pin the publisher's public key (`--publisher KEY.pub`)."""
    expected = None if ptau_digest is None else Digest.parse(ptau_digest)
    signer = PrivateKey.load(key)
    signed = setup(
        circuit,
        ptau_file,
        signer,
        Snarkjs.locate(),
        random_bytes=effects(ctx)[1],
        expected_ptau=expected,
    )
    manifest, folder = signed.manifest, CircuitDir(circuit)
    _show(
        {
            "manifest": str(signed.id),
            "publisher": signed.key.key_id.hex(),
            "model": str(manifest.model),
            "circuit": str(manifest.info.circuit),
            "proving_key": str(manifest.proving_key),
            "verification_key": str(manifest.verification_key),
            "ptau": str(manifest.ptau),
            "wrote": [str(folder.zkey), str(folder.verification_key), str(folder.manifest)],
        },
        as_json=as_json,
    )
    if expected is None:
        click.echo(
            "warning: the powers-of-tau file was not checked against a ceremony's digest "
            "(--ptau-digest); keys from a development file are for development",
            err=True,
        )


@zk.command("prove")
@click.argument("circuit", type=circuit_folder)
@click.argument("receipt", type=existing)
@click.option("--model", type=existing, required=True, help="The circuit's model (ONNX).")
@input_option
@click.option(
    "--out",
    type=new_file,
    help="The receipt with the proof attached [default: RECEIPT with suffix .zk.rcpt]; "
    "never replaced.",
)
@json_option
def prove_command(
    circuit: Path, receipt: Path, model: Path, inputs: Path, out: Path | None, as_json: bool
) -> None:
    """Prove that the circuit's model gives RECEIPT's outputs on its --input, and write RECEIPT
    with the proof attached to --out (the provider's signature is unchanged).

    Nothing is proven for outputs the model does not give: they are recomputed and must be the
    receipt's."""
    target = out or receipt.with_suffix(".zk.rcpt")
    if target.exists():  # checked first to save the proving; the write below refuses too
        raise StorageError(f"{target} already exists; refusing to overwrite it")
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    data = read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt")
    item = prove(circuit, loaded, arrays, data, Snarkjs.locate())
    write_atomic(target, attach_proof(data, item), replace=False)
    _show({"attached": item.describe(), "wrote": str(target)}, as_json=as_json)


@zk.command("verify")
@click.argument("receipt", type=existing)
@click.option(
    "--circuit",
    type=circuit_folder,
    required=True,
    help="The circuit folder (verification_key.json and circuit.manifest are read).",
)
@input_option
@output_option
@publisher_option(required=True)
@click.option(
    "--provider",
    "providers",
    type=existing,
    multiple=True,
    help="Trusted provider public key (repeatable).",
)
@json_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    receipt: Path,
    circuit: Path,
    inputs: Path,
    outputs: Path,
    publishers: tuple[Path, ...],
    providers: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check RECEIPT's signature and its attached proof alone (pure Python: no model, no re-run).

    Exit 0 if the proof shows the circuit's model gives --output on --input, and both are the
    receipt's; 1 if a step failed; 2 for bad input."""
    trusted = tuple(PublicKey.load(p) for p in providers) or None
    policy = Policy(
        trusted_keys=trusted, required=("signature", "zk"), zk=zk_policy(circuit, publishers)
    )
    report = Verifier(policy, clock=effects(ctx)[0]).check(
        read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt"),
        inputs=load_tensors(inputs, prefix="input_"),
        outputs=load_tensors(outputs, prefix="output_"),
    )
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        click.echo(render.report_table(report, only_required=True))
    if trusted is None:
        provider_warning()
    if not report:
        ctx.exit(report_exit_code(report))
