"""The ``receipts`` command line: thin click wiring over the library, one error boundary.

Each command is one or two library calls; presentation lives in ``cli.render``. Exit codes: 0 when
everything required passed, 1 when a verification rung failed (each reason printed), 2 for bad
usage or unreadable/malformed input. Errors print one line on stderr; ``--debug`` shows the
traceback.

    receipts keygen provider.pem
    receipts request model.onnx --input x.npz --payer-key payer.pem --max-amount 500 \
        --asset credit --out req.rreq
    receipts run model.onnx --input x.npz --key provider.pem --out out/ --request req.rreq
    receipts verify out/receipt.rcpt --model model.onnx --input x.npz --provider provider.pem.pub
    receipts spot-check out/receipt.rcpt --model model.onnx --input x.npz --trace out/trace.rtrc
    receipts dispute out/receipt.rcpt --model m.onnx --input x.npz --trace T --key me.pem --out E
    receipts judge E --model model.onnx --key referee.pem --out ruling.rrul
    receipts verify R --input x.npz --output y.npz --circuit model.circuit --publisher pub.pem.pub
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cli import attest, render, settle, traces, zk
from cli import audit as audit_cli
from cli import store as store_cli
from cli import verify as verify_cli
from cli.options import (
    effects,
    existing,
    existing_any,
    json_option,
)
from receipts import (
    InputError,
    PrivateKey,
    Provider,
    PublicKey,
    ReceiptsError,
    RuntimeSettings,
    load_model,
    load_tensors,
)
from receipts.bls import BlsPrivateKey
from receipts.digests import TensorMapDigest
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import UnsupportedVersionError
from receipts.files import read_limited, write_atomic
from receipts.jsonview import model_json, receipt_json
from receipts.keys import SCHEMES
from receipts.meter import Price
from receipts.nitro_sim import SimulatedNitro, SimulatedRoot
from receipts.provider import ATTEST_MODES
from receipts.receipt import Receipt, receipt_id
from receipts.request import (
    REQUEST_PAYLOAD_TYPE,
    Request,
    make_request,
    read_request,
    request_id,
)
from receipts.runtime import OPT_LEVELS

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3  # a bug in this tool, never a verdict


class ReceiptsGroup(click.Group):
    """The one error boundary: library errors become one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReceiptsError as e:
            if ctx.params.get("debug"):
                raise
            code = EXIT_USAGE if isinstance(e, InputError) else EXIT_FAILED
            click.echo(f"receipts: error: {render.safe(str(e))}", err=True)
            ctx.exit(code)
        except OSError as e:  # a file we were pointed at vanished or is unreadable
            if ctx.params.get("debug"):
                raise
            click.echo(f"receipts: error: {e.strerror or e}: {e.filename or ''}", err=True)
            ctx.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:  # the boundary: a bug must not reach the user as a traceback
            if ctx.params.get("debug"):
                raise
            click.echo(
                f"receipts: internal error ({type(e).__name__}: {e}); "
                "rerun with --debug and report it",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=ReceiptsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="inference-receipts", prog_name="receipts")
def cli(debug: bool) -> None:
    """Signed, checkable receipts for paid ONNX inference."""


@cli.command()
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--scheme", type=click.Choice((*SCHEMES, "bls12-381")), default="ed25519", show_default=True
)
@click.pass_context
def keygen(ctx: click.Context, keyfile: Path, scheme: str) -> None:
    """Write a new private key to KEYFILE (mode 0600) and its public key to KEYFILE.pub
    (for bls12-381, with its proof of possession)."""
    _, random_bytes = effects(ctx)
    if scheme == "bls12-381":
        bls = BlsPrivateKey.generate(random_bytes=random_bytes)
        public = bls.save(keyfile)
        click.echo(bls.public_key.raw.hex())
    else:
        key = PrivateKey.generate(scheme, random_bytes=random_bytes)
        public = key.save(keyfile)
        click.echo(key.public_key.key_id.hex())
    click.echo(f"wrote {keyfile} (private, 0600) and {public} ({scheme})", err=True)


@cli.command()
@click.argument("model", type=existing)
@json_option
def digest(model: Path, as_json: bool) -> None:
    """Print the model digest of MODEL (Merkle root over structure and weights)."""
    loaded = load_model(model)
    if as_json:
        click.echo(json.dumps(model_json(loaded), indent=2))
        return
    click.echo(str(loaded.digest))
    click.echo(render.model_summary(loaded))


@cli.command()
@click.argument("model", type=existing)
@click.option(
    "--input", "inputs", type=existing_any, required=True, help=".npz or test-data folder"
)
@click.option("--key", type=existing, required=True, help="Provider private key (PEM).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option(
    "--opt-level", type=click.Choice(list(OPT_LEVELS)), default="disable", show_default=True
)
@click.option("--unit-price", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--base-fee", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True)
@click.option("--asset", default="credit", show_default=True)
@click.option(
    "--trace", "traced", is_flag=True, help="Record every node's outputs (OUT/trace.rtrc)."
)
@click.option(
    "--inject-fault",
    metavar="NODE_NAME",
    help="DRILL ONLY: corrupt this node's outputs (name or #INDEX) to test audit pipelines.",
)
@click.option(
    "--request", "request_file", type=existing, help="The payer's signed request this run answers."
)
@click.option(
    "--attest-sim",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="ROOTDIR",
    help="DRILL/TEST: attach a SIMULATED Nitro attestation signed below ROOTDIR's root.",
)
@click.option(
    "--attest-mode",
    type=click.Choice(ATTEST_MODES),
    default="receipt",
    show_default=True,
    help="receipt: user_data is the receipt id; key: public_key is the signing key.",
)
@click.option(
    "--store",
    "store_dir",
    type=click.Path(path_type=Path),
    metavar="STORE",
    help="Also file the model, inputs and outputs in this content-addressed store.",
)
@click.pass_context
def run(
    ctx: click.Context,
    model: Path,
    inputs: Path,
    key: Path,
    out: Path,
    threads: int,
    opt_level: str,
    unit_price: int,
    base_fee: int,
    asset: str,
    traced: bool,
    inject_fault: str | None,
    request_file: Path | None,
    attest_sim: Path | None,
    attest_mode: str,
    store_dir: Path | None,
) -> None:
    """Run MODEL on INPUTS and issue a signed receipt into OUT.

    With --trace the receipt commits to every node's outputs and OUT/trace.rtrc keeps them, for
    spot checks and disputes. --inject-fault is a drill aid: the provider corrupts that node's
    outputs while signing the honest model digest, so auditors can check they catch it.
    With --request the run must be one the payer's request covers (model, inputs, this key,
    asset, amount, expiry); otherwise nothing is run or signed and the reason is printed.
    --attest-sim attaches a document from the Nitro simulator (drills and tests only: it proves
    nothing about an enclave and verifies only against that ROOTDIR/root.pem).
    --store files the model, inputs and outputs under their digests before the receipt is
    written (see `receipts store`)."""
    objects = store_cli.open_for_run(store_dir)
    signed = None
    if request_file is not None:
        signed = read_request(read_limited(request_file, MAX_ENVELOPE_BYTES, "request"))
    signer = PrivateKey.load(key)
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    clock, random_bytes = effects(ctx)
    attester = None
    if attest_sim is not None:
        root = SimulatedRoot.load(attest_sim)
        attester = SimulatedNitro(root, clock=clock, random_bytes=random_bytes)
    provider = Provider(
        signer,
        price=Price(unit_price=unit_price, base_fee=base_fee, asset=asset),
        settings=RuntimeSettings(graph_optimization=opt_level, intra_op_threads=threads),
        clock=clock,
        random_bytes=random_bytes,
        attester=attester,
        attest_mode=attest_mode,
    )
    issued = provider.session(loaded).run(
        arrays, request=signed, trace=traced, inject_fault=inject_fault
    )
    filed = None if objects is None else store_cli.file_run(objects, loaded, arrays, issued)
    paths = issued.write(out)
    click.echo(render.issued_summary(issued, paths, inject_fault))
    if filed is not None:
        click.echo(filed)
    for item in issued.envelope.attachments:
        click.echo(f"attached     {item.describe()} (SIMULATED, {attest_mode} mode)")
    if signed is not None:
        click.echo(f"request      {signed.id} (max {signed.request.max_amount} {asset})")


@cli.command()
@click.argument("model", type=existing)
@click.option(
    "--input", "inputs", type=existing_any, required=True, help=".npz or test-data folder"
)
@click.option("--payer-key", type=existing, required=True, help="Payer private key (PEM).")
@click.option(
    "--max-amount",
    type=click.IntRange(0, 2**64 - 1),
    required=True,
    help="The most the payer pays, in the asset's smallest unit.",
)
@click.option("--asset", required=True, help="The asset the payer pays in.")
@click.option("--provider", type=existing, help="Only this provider's key (.pub); default any.")
@click.option(
    "--allow-model", "also", type=existing, multiple=True, help="Also allowed (repeatable)."
)
@click.option("--expires-in", type=click.IntRange(1, 2**32), default=3600, show_default=True)
@click.option("--ledger", help="The settlement ledger (its log origin) that may hold it.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@json_option
@click.pass_context
def request(
    ctx: click.Context,
    model: Path,
    inputs: Path,
    payer_key: Path,
    max_amount: int,
    asset: str,
    provider: Path | None,
    also: tuple[Path, ...],
    expires_in: int,
    ledger: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Sign the payer's request to run MODEL (or an --allow-model) on INPUTS, into OUT.

    A provider answers it with `receipts run ... --request OUT`; the request expires after
    --expires-in seconds."""
    payer = PrivateKey.load(payer_key)
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    clock, random_bytes = effects(ctx)
    signed = make_request(
        payer,
        models=[loaded.digest, *(load_model(m).digest for m in also)],
        # The digest of the inputs as the provider will see them (canonical arrays).
        inputs=TensorMapDigest.of(loaded.check_inputs(arrays)).digest,
        max_amount=max_amount,
        asset=asset,
        provider=PublicKey.load(provider).key_id if provider else None,
        expires_at=clock.now_ms() + expires_in * 1000,
        random_bytes=random_bytes,
        ledger=ledger,
    )
    write_atomic(out, signed.to_bytes())
    _show_request(signed.envelope, signed.request, as_json=as_json, checked=True)
    click.echo(f"wrote {out}", err=True)


@cli.command()
@click.argument("receipt", type=existing)
@json_option
def inspect(receipt: Path, as_json: bool) -> None:
    """Show the decoded RECEIPT or request file (its signature is not checked; use verify)."""
    envelope = _read_envelope(read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt"))
    if envelope.payload_type == REQUEST_PAYLOAD_TYPE:
        decoded_request = Request.decode(envelope.payload)
        _show_request(envelope, decoded_request, as_json=as_json, checked=False)
        return
    decoded = Receipt.decode(envelope.payload)
    if as_json:
        view = {
            "receipt_id": str(receipt_id(envelope.payload)),
            "signature_checked": False,
            "signer": envelope.signature.key_id.hex(),
            "receipt": receipt_json(decoded),
            "attachments": [
                {"type": a.type, "version": a.version, "bytes": len(a.body), "known": a.known}
                for a in envelope.attachments
            ],
        }
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(render.receipt_text(decoded, receipt_id(envelope.payload), envelope))


def _read_envelope(data: bytes) -> Envelope:
    """A receipt envelope, or else a request envelope (the receipt's error if neither)."""
    try:
        return Envelope.from_bytes(data)
    except UnsupportedVersionError as e:
        try:
            return Envelope.from_bytes(data, payload_type=REQUEST_PAYLOAD_TYPE)
        except ReceiptsError:
            raise e from None


def _show_request(envelope: Envelope, req: Request, *, as_json: bool, checked: bool) -> None:
    rid = request_id(envelope.payload)
    fields: dict[str, Any] = {
        "payer": req.payer.hex(),
        "models": [str(m) for m in req.models],
        "inputs": str(req.inputs),
        "max_amount": req.max_amount,
        "asset": req.asset,
        "provider": None if req.provider is None else req.provider.hex(),  # None: any provider
        "nonce": req.nonce.hex(),
        "expires_at": req.expires_at,
        "ledger": req.ledger,  # None: no ledger may hold it
    }
    if as_json:
        view = {
            "request_id": str(rid),
            "signature_checked": checked,
            "signer": envelope.signature.key_id.hex(),
            "request": {"type": "request", "version": 1, **fields},
        }
        click.echo(json.dumps(view, indent=2))
        return
    note = "" if checked else "   (signature NOT checked; `receipts run --request` checks it)"
    lines = [f"request      {rid}{note}"]
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            text = (
                ("none" if name == "ledger" else "any") if item is None else render.safe(str(item))
            )
            lines.append(f"{name.replace('_', ' '):<12} {text}")
    click.echo("\n".join(lines))


cli.add_command(verify_cli.verify)
cli.add_command(traces.spot_check)
cli.add_command(traces.dispute)
cli.add_command(traces.dispute_answer)
cli.add_command(traces.judge)
cli.add_command(settle.ledger)
cli.add_command(settle.log_group)
cli.add_command(settle.batch_group)
cli.add_command(attest.attestation)
cli.add_command(zk.zk)
cli.add_command(store_cli.store)
cli.add_command(audit_cli.audit)


def main() -> None:
    """Console-script entry point."""
    try:
        # Not standalone: click's own handler turns Ctrl-C into "Aborted!" and exit 1, which
        # here means "a step failed".
        code = cli.main(prog_name="receipts", standalone_mode=False)
    except click.ClickException as e:  # usage errors: click's message, exit 2
        e.show()
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("receipts: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
