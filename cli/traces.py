"""The trace commands: ``spot-check``, ``dispute`` and ``judge`` (CLI; errors reach the group's
one boundary in ``cli.main``).

Exit codes follow the rest of the CLI: 0 for the good outcome (the sample checks out; a
divergence found and packaged; ``provider-fault``), 1 for the other verdict (a node failed; the
traces agree; ``challenge-rejected``), 2 for bad usage or input.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import click

from cli import render
from cli.options import existing, existing_any, json_option
from receipts import InputError, Policy, PrivateKey, PublicKey, Tolerance, Verifier
from receipts.dispute import Responder, dispute_locally
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import KeyFileError, NothingToDispute
from receipts.evidence import Evidence, write_opening
from receipts.files import read_limited, write_atomic
from receipts.graph import GraphView
from receipts.jsonview import report_json, ruling_json
from receipts.model import load_model
from receipts.receipt import Receipt, receipt_id
from receipts.referee import PROVIDER_FAULT, Referee
from receipts.report import Report
from receipts.tensorfiles import load_tensors
from receipts.trace import TraceReader

new_file = click.Path(dir_okay=False, path_type=Path)


@click.command("spot-check")
@click.argument("receipt", type=existing)
@click.option("--model", type=existing, required=True)
@click.option("--input", "inputs", type=existing_any, required=True, help=".npz or folder")
@click.option("--trace", "trace_path", type=existing, required=True, help="The provider's trace.")
@click.option("--samples", type=click.IntRange(1, 1 << 20), default=8, show_default=True)
@click.option("--seed", help="Sample seed (text); default: fresh, printed for replay.")
@click.option("--provider", "providers", type=existing, multiple=True, help="Trusted key (.pub).")
@click.option("--rtol", type=click.FloatRange(0), default=1e-5, show_default=True)
@click.option("--atol", type=click.FloatRange(0), default=1e-6, show_default=True)
@click.option("--exact", is_flag=True, help="Refuse tolerance: other runtime identities fail.")
@json_option
@click.pass_context
def spot_check(
    ctx: click.Context,
    receipt: Path,
    model: Path,
    inputs: Path,
    trace_path: Path,
    samples: int,
    seed: str | None,
    providers: tuple[Path, ...],
    rtol: float,
    atol: float,
    exact: bool,
    as_json: bool,
) -> None:
    """Open SAMPLES random nodes of RECEIPT's committed trace and re-check each one."""
    trusted = tuple(PublicKey.load(p) for p in providers) or None
    policy = Policy(
        trusted_keys=trusted,
        required=("signature", "digests", "spot-check"),
        tolerance=Tolerance(rtol=rtol, atol=atol),
        exact=exact,
        spot_samples=samples,
    )
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    seed = seed if seed is not None else secrets.token_hex(16)
    with TraceReader.open(trace_path) as reader:
        report = Verifier(policy).check(
            read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt"),
            model=loaded,
            inputs=arrays,
            trace=reader,
            seed=seed.encode("utf-8"),
        )
    if as_json:
        click.echo(json.dumps({**report_json(report), "seed": seed}, indent=2))
    else:
        click.echo(render.report_table(report))
        click.echo(f"replay with --seed {render.safe(seed)}")
    if not report:
        ctx.exit(_exit_code(report))


def _exit_code(report: Report) -> int:
    """2 when a failure is bad input (unreadable receipt or trace), else 1."""
    for rung in report.rungs:
        for step in rung.failures():
            if isinstance(step.error, InputError):
                return 2
    return 1


@click.command()
@click.argument("receipt", type=existing)
@click.option("--model", type=existing, required=True)
@click.option("--input", "inputs", type=existing_any, required=True, help=".npz or folder")
@click.option("--trace", "trace_path", type=existing, required=True, help="The provider's trace.")
@click.option("--key", type=existing, required=True, help="Your (the challenger's) private key.")
@click.option("--out", type=new_file, required=True, help="Where to write the evidence bundle.")
@click.option(
    "--provider-key",
    type=existing,
    help="The provider's private key, when you run both sides (else you relay its messages).",
)
@click.option(
    "--inject-fault",
    metavar="NODE_NAME",
    help="DRILL ONLY: corrupt your own recomputation at this node (a challenge to be rejected).",
)
@json_option
@click.pass_context
def dispute(
    ctx: click.Context,
    receipt: Path,
    model: Path,
    inputs: Path,
    trace_path: Path,
    key: Path,
    out: Path,
    provider_key: Path | None,
    inject_fault: str | None,
    as_json: bool,
) -> None:
    """Recompute RECEIPT's trace, bisect against the provider's, and package the evidence."""
    signer = PrivateKey.load(key)
    provider_signer = PrivateKey.load(provider_key) if provider_key else None
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    data = read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt")
    with TraceReader.open(trace_path) as reader:
        try:
            local = dispute_locally(
                data,
                loaded,
                arrays,
                reader,
                signer,
                provider_signer=provider_signer,
                inject_fault=inject_fault,
            )
        except NothingToDispute as e:
            if as_json:
                click.echo(json.dumps({"divergence": None, "reason": str(e)}, indent=2))
            else:
                click.echo(f"AGREE: {e}")
            ctx.exit(1)
    local.evidence.write(out)
    if as_json:
        node = local.node
        view = {
            "divergence": {"index": node.index, "name": node.name, "op": node.op_type},
            "rounds": local.result.rounds,
            "evidence": str(out),
            "evidence_digest": str(local.evidence.digest),
        }
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(render.dispute_summary(local, out))


@click.command("dispute-answer")
@click.argument("message", type=existing)
@click.option("--receipt", type=existing, required=True, help="The disputed receipt (yours).")
@click.option("--model", type=existing, required=True)
@click.option("--input", "inputs", type=existing_any, required=True, help=".npz or folder")
@click.option("--trace", "trace_path", type=existing, required=True, help="Your trace file.")
@click.option("--key", type=existing, required=True, help="Your (the provider's) private key.")
@click.option("--out", type=new_file, required=True, help="Where to write the signed reply.")
@json_option
def dispute_answer(
    message: Path,
    receipt: Path,
    model: Path,
    inputs: Path,
    trace_path: Path,
    key: Path,
    out: Path,
    as_json: bool,
) -> None:
    """Answer one challenger MESSAGE from your trace, as a provider in its own process.

    Writes the signed reply to OUT and, for a request to open a node, the opening to
    OUT.opening. An `open` message needs no reply (nothing is written)."""
    signer = PrivateKey.load(key)
    data = read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt")
    envelope = Envelope.from_bytes(data)
    decoded = Receipt.decode(envelope.payload)
    if decoded.provider != signer.public_key.key_id:
        raise KeyFileError("--key is not the key that signed this receipt")
    loaded = load_model(model)
    arrays = load_tensors(inputs, prefix="input_", names=[v.name for v in loaded.inputs])
    with TraceReader.open(trace_path) as reader:
        responder = Responder(
            decoded,
            receipt_id(envelope.payload),
            reader,
            signer,
            view=GraphView(loaded),
            inputs=loaded.check_inputs(arrays),
        )
        reply = responder.answer(read_limited(message, MAX_ENVELOPE_BYTES, "message"))
        written = []
        if reply is not None:
            if reply.opening is not None:
                opening_path = out.with_name(out.name + ".opening")
                write_opening(opening_path, reply.opening, receipt_id(envelope.payload))
                written.append(opening_path)
            write_atomic(out, reply.signed.data)
            written.insert(0, out)
    kind = reply.signed.message.kind if reply is not None else None
    if as_json:
        click.echo(json.dumps({"reply": kind, "wrote": [str(p) for p in written]}, indent=2))
    elif reply is None:
        click.echo("open: no reply needed")
    else:
        click.echo(f"{kind}: wrote {', '.join(str(p) for p in written)}")


@click.command()
@click.argument("evidence", type=existing)
@click.option("--model", type=existing, required=True)
@click.option("--key", type=existing, required=True, help="The referee's private key.")
@click.option("--out", type=new_file, required=True, help="Where to write the signed ruling.")
@click.option("--rtol", type=click.FloatRange(0), default=1e-5, show_default=True)
@click.option("--atol", type=click.FloatRange(0), default=1e-6, show_default=True)
@click.option("--provider", "providers", type=existing, multiple=True, help="Trusted key (.pub).")
@click.option(
    "--require-provider-signatures",
    is_flag=True,
    help="Refuse transcripts whose provider messages the challenger relayed.",
)
@json_option
@click.pass_context
def judge(
    ctx: click.Context,
    evidence: Path,
    model: Path,
    key: Path,
    out: Path,
    rtol: float,
    atol: float,
    providers: tuple[Path, ...],
    require_provider_signatures: bool,
    as_json: bool,
) -> None:
    """Re-run the disputed operator of EVIDENCE and sign a ruling into OUT."""
    referee = Referee(
        PrivateKey.load(key),
        tolerance=Tolerance(rtol=rtol, atol=atol),
        trusted_providers=tuple(PublicKey.load(p) for p in providers) or None,
        require_provider_signatures=require_provider_signatures,
    )
    signed = referee.judge(Evidence.read(evidence), load_model(model))
    write_atomic(out, signed.to_bytes())
    if as_json:
        click.echo(json.dumps({**ruling_json(signed.ruling), "ruling_file": str(out)}, indent=2))
    else:
        click.echo(render.ruling_text(signed, out))
    if signed.ruling.verdict != PROVIDER_FAULT:
        ctx.exit(1)
