"""``receipts attestation ...``: Nitro attestation documents on their own (CLI, TEE rung).

Thin wiring over ``receipts.nitro``, ``receipts.tee`` and ``receipts.nitro_sim``; errors reach the
one boundary in ``cli.main``. Exit codes as everywhere: 0 verified, 1 a step failed, 2 bad input.

    receipts attestation inspect doc.cbor [--json]
    receipts attestation verify doc.cbor --root aws-root.pem --at 1658860752566 --allow-debug
    receipts attestation sim-init sim-root/        # a simulator CA for drills (never AWS's)

Shared with ``receipts verify``: ``--pcr INDEX=HEX`` and the TEE policy built from the options.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli import render
from cli.options import debug_option, effects, existing, pcr_option, tee_policy
from receipts.cose import MAX_DOCUMENT_BYTES
from receipts.files import read_limited
from receipts.jsonview import attestation_json
from receipts.nitro import SignedDocument
from receipts.nitro_sim import ROOT_CERT, SimulatedRoot
from receipts.report import Status
from receipts.tee import check_document


@click.group("attestation")
def attestation() -> None:
    """Inspect and verify AWS Nitro attestation documents; make a simulator root."""


@attestation.command("inspect")
@click.argument("document", type=existing)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
def inspect_document(document: Path, as_json: bool) -> None:
    """Show the fields of DOCUMENT (nothing is verified; use `attestation verify`)."""
    signed = SignedDocument.parse(read_limited(document, MAX_DOCUMENT_BYTES, "attestation"))
    view = attestation_json(signed)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(render.attestation_text(view))


@attestation.command("verify")
@click.argument("document", type=existing)
@click.option(
    "--root", "roots", type=existing, multiple=True, required=True, help="Pinned root (PEM)."
)
@click.option(
    "--at", "at_ms", type=click.IntRange(1, 2**63 - 1), help="Check as of UNIX_MS (default now)."
)
@pcr_option
@click.option("--user-data", help="Expected user_data, as hex (N6).")
@debug_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def verify_document(
    ctx: click.Context,
    document: Path,
    roots: tuple[Path, ...],
    at_ms: int | None,
    pcrs: dict[int, bytes],
    user_data: str | None,
    allow_debug: bool,
    as_json: bool,
) -> None:
    """Verify DOCUMENT: COSE, fields, chain to a --root at --at, signature, PCRs, user_data."""
    hexdigits = set("0123456789abcdefABCDEF")
    if user_data is not None and (len(user_data) % 2 or not set(user_data) <= hexdigits):
        raise click.BadParameter(
            "not hex (an even number of 0-9a-f digits)", param_hint="--user-data"
        )
    expected = None if user_data is None else bytes.fromhex(user_data)
    policy = tee_policy(roots, pcrs, allow_debug=allow_debug)
    when = at_ms if at_ms is not None else effects(ctx)[0].now_ms()
    data = read_limited(document, MAX_DOCUMENT_BYTES, "attestation")
    result = check_document(data, policy, at_ms=when, user_data=expected)
    if as_json:
        click.echo(json.dumps(render.rung_json(result, checked_at=when), indent=2))
    else:
        click.echo(render.rung_text(result, checked_at=when))
    if result.status is not Status.PASSED:
        failed = result.failures()[0]
        ctx.exit(2 if failed.error is not None and render.is_input_error(failed.error) else 1)


@attestation.command("sim-init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def sim_init(ctx: click.Context, folder: Path) -> None:
    """Create a SIMULATOR root CA in FOLDER (root.pem, owner-only root-key.pem) for drills.

    Documents it signs prove nothing about an enclave; verifiers accept them only when given
    FOLDER/root.pem as a root on purpose."""
    clock, random_bytes = effects(ctx)
    SimulatedRoot.create(folder, clock=clock, random_bytes=random_bytes)
    click.echo(f"wrote {folder / ROOT_CERT} (simulator root: NOT an AWS root)")
