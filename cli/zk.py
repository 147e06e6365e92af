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

Outputs appear whole or not at all and never replace anything: a ptau file or a circuit folder is
built in a hidden staging folder beside its target and moved into place at the end (a circuit
folder over an empty folder only), a proven receipt is written atomically, and a missing parent
folder, an existing target or a ptau too small for the circuit is refused before the slow part.
Setting up keys and proving verify nothing, so a file that is not another's (a ptau that is not
the pinned ceremony's; a model, inputs or receipt that are not the circuit's) is bad input (2).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from circuits.circuit_dir import (
    CircuitDir,
    attach_proof,
    check_not_proven,
    compile_circuit,
    min_ptau_power,
    prove,
    ptau,
    setup,
)
from circuits.snarkjs import DEFAULT_TIMEOUT_S, MAX_POWER, Snarkjs
from cli import render
from cli.options import (
    circuit_folder,
    effects,
    existing,
    existing_any,
    json_option,
    provider_warning,
    publisher_option,
    report_exit_code,
    zk_policy,
)
from receipts import Policy, PrivateKey, PublicKey, Verifier, load_model, load_tensors
from receipts.digests import Digest
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import InputError, ReceiptsError, VerificationError
from receipts.files import (
    check_new_target,
    make_folder,
    read_head,
    read_limited,
    staged,
    write_atomic,
)
from receipts.jsonview import report_json

SLOW_POWER = 16  # above this, `zk ptau` runs for many minutes (hours near MAX_POWER)

new_file = click.Path(dir_okay=False, path_type=Path)
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
timeout_option = click.option(
    "--timeout",
    "timeout_s",
    type=click.IntRange(min=1),
    default=int(DEFAULT_TIMEOUT_S),
    show_default=True,
    metavar="SECONDS",
    help="Stop a snarkjs step that runs longer than this (nothing is written).",
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
@timeout_option
@json_option
@click.pass_context
def make_ptau(ctx: click.Context, power: int, out: Path, timeout_s: int, as_json: bool) -> None:
    """DEVELOPMENT ONLY: a single-contributor powers-of-tau file of 2^N at OUT, and its digest.

    One secret contribution from this machine, then a public beacon: whoever can read this
    machine's memory could forge proofs. Deployments use a multi-party ceremony's file, checked
    by `zk setup --ptau-digest`. Slow above 2^16 (minutes)."""
    click.echo(
        f"WARNING: making a DEVELOPMENT powers-of-tau file (2^{power}, one contributor: this "
        "machine); use a public ceremony's file for anything real",
        err=True,
    )
    if power > SLOW_POWER:
        click.echo(
            f"warning: 2^{power} takes a long time (minutes above 2^{SLOW_POWER}, hours near "
            f"2^{MAX_POWER}) and writes about {_size(power)}; each snarkjs step is "
            f"stopped after --timeout {timeout_s} s",
            err=True,
        )
    snarkjs = Snarkjs.locate(timeout_s=timeout_s)
    with staged(out) as staging:
        digest = ptau(power, staging, snarkjs, entropy=effects(ctx)[1](32))
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
    loaded = load_model(model)
    make_folder(out.parent)
    with staged(out) as staging:
        info = compile_circuit(loaded, staging)
    _show(
        {
            "model": str(info.model),
            "circuit": str(info.circuit),
            "compiler": info.compiler,
            "constraints": info.constraints,
            "public_signals": info.n_public,
            "min_ptau_power": min_ptau_power(info),
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
    help="Refuse a --ptau file whose digest is not this: its `ptau` digest as `zk ptau` and "
    "`zk setup` print it and manifests record it (domain-separated SHA-256, sha256:...; not "
    "the output of sha256sum).",
)
@click.option(
    "--model",
    type=existing,
    help="The model CIRCUIT was compiled from: compile it again and refuse a folder that "
    "differs (circuit.info is not signed until now).",
)
@timeout_option
@json_option
@click.pass_context
def setup_command(
    ctx: click.Context,
    circuit: Path,
    ptau_file: Path,
    key: Path,
    ptau_digest: str | None,
    model: Path | None,
    timeout_s: int,
    as_json: bool,
) -> None:
    """Make CIRCUIT's Groth16 keys (one secret contribution) and its manifest signed by --key.

    Verifiers pin the publisher's public key (`--publisher KEY.pub`)."""
    expected = None if ptau_digest is None else Digest.parse(ptau_digest)
    signer = PrivateKey.load(key)
    snarkjs = Snarkjs.locate(timeout_s=timeout_s)
    with _prover_input():
        signed = setup(
            circuit,
            ptau_file,
            signer,
            snarkjs,
            random_bytes=effects(ctx)[1],
            expected_ptau=expected,
            model=None if model is None else load_model(model),
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
@timeout_option
@json_option
def prove_command(
    circuit: Path,
    receipt: Path,
    model: Path,
    inputs: Path,
    out: Path | None,
    timeout_s: int,
    as_json: bool,
) -> None:
    """Prove that the circuit's model gives RECEIPT's outputs on its --input, and write RECEIPT
    with the proof attached to --out (the provider's signature is unchanged).

    Nothing is proven for outputs the model does not give: they are recomputed and must be the
    receipt's."""
    target = out or receipt.with_suffix(".zk.rcpt")
    check_new_target(target)  # checked first to save the proving; the write below refuses too
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    data = read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt")
    check_not_proven(_envelope(receipt, data), CircuitDir(circuit).read_manifest().id)
    read_head(CircuitDir(circuit).zkey, 0, "proving key")
    snarkjs = Snarkjs.locate(timeout_s=timeout_s)
    with _prover_input():
        item = prove(circuit, loaded, arrays, data, snarkjs)
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


# --- checks made before the slow part, and outputs that appear whole -------------------------


@contextmanager
def _prover_input() -> Iterator[None]:
    """Setting up keys and proving verify nothing: a file that is not another's (a ptau that is
    not the pinned ceremony's; a model, inputs or receipt that are not the circuit's or each
    other's; a receipt whose signature does not hold) is bad input, exit 2, not a failed
    verification."""
    try:
        yield
    except VerificationError as e:
        raise InputError(str(e), details=e.details) from e


def _size(power: int) -> str:
    """About what a prepared 2^``power`` file takes on disk (1 KiB a power, as pot7 shows)."""
    return f"{1 << (power - 20)} GiB" if power >= 20 else f"{1 << (power - 10)} MiB"


def _envelope(path: Path, data: bytes) -> Envelope:
    try:
        return Envelope.from_bytes(data)
    except ReceiptsError as e:
        raise type(e)(f"{path}: {e}", details=e.details) from e
