"""Options and effects shared by several ``receipts`` commands (CLI wiring only).

``effects(ctx)`` gives the clock and randomness commands use: the system's unless a caller passed
others as ``cli.main(obj={"clock": ..., "random_bytes": ...})`` (tests pin them). The TEE options
(``--pcr``, ``--allow-debug``) and ``tee_policy`` serve ``receipts verify`` and
``receipts attestation verify``; ``--publisher`` and ``zk_policy`` serve ``receipts verify`` and
``receipts zk verify``, as do ``report_exit_code`` and ``provider_warning``.

    @pcr_option
    @debug_option
    def command(pcrs: dict[int, bytes], allow_debug: bool) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from circuits.circuit_dir import CircuitDir
from circuits.groth16 import read_verification_key
from circuits.manifest import MANIFEST_PAYLOAD_TYPE, CircuitManifest
from receipts.effects import Clock, RandomBytes, SystemClock, system_random
from receipts.envelope import Envelope
from receipts.errors import InputError, ReceiptsError
from receipts.files import read_limited
from receipts.keys import PublicKey
from receipts.nitro import PCR_SIZE, NitroPolicy
from receipts.report import Report, ZkPolicy

# Path types every command group shares: an existing file, or an existing file or folder.
existing = click.Path(exists=True, dir_okay=False, path_type=Path)
existing_any = click.Path(exists=True, path_type=Path)

F = TypeVar("F", bound=Callable[..., Any])
circuit_folder = click.Path(exists=True, file_okay=False, path_type=Path)


def parse_pcrs(
    _ctx: click.Context | None, _param: click.Parameter | None, values: tuple[str, ...]
) -> dict[int, bytes]:
    """``INDEX=HEX`` options as a PCR map (click callback: a bad value is a usage error)."""
    pcrs: dict[int, bytes] = {}
    for value in values:
        index, sep, hexpart = value.partition("=")
        try:
            # ASCII digits only: int() would also take "1_0", "+1", " 1" and other scripts' digits.
            number = int(index) if index.isascii() and index.isdigit() else -1
            digest = bytes.fromhex(hexpart)
        except ValueError:
            number, digest = -1, b""
        if not sep or not 0 <= number < 32 or len(digest) != PCR_SIZE:
            raise click.BadParameter(f"{value[:40]!r}: expected INDEX=HEX, index 0-31, 48 bytes")
        if number in pcrs:
            raise click.BadParameter(f"PCR{number} given twice")
        pcrs[number] = digest
    return pcrs


def pcr_option(f: F) -> F:
    return click.option(
        "--pcr",
        "pcrs",
        multiple=True,
        callback=parse_pcrs,
        metavar="INDEX=HEX",
        help="Expected PCR value (repeatable), e.g. 0=<96 hex digits>.",
    )(f)


def debug_option(f: F) -> F:
    return click.option(
        "--allow-debug",
        is_flag=True,
        help="Accept debug-mode enclaves (PCR0 all zero; the host can read their memory).",
    )(f)


def tee_policy(
    roots: tuple[Path, ...],
    pcrs: dict[int, bytes],
    *,
    allow_debug: bool,
    max_key_age: int | None = None,
    max_age: int | None = None,
) -> NitroPolicy:
    certificates = tuple(
        NitroPolicy.load_root(read_limited(p, 64 * 1024, "root certificate")) for p in roots
    )
    extra: dict[str, Any] = {}
    if max_key_age is not None:
        extra["max_key_age_ms"] = max_key_age * 1000
    if max_age is not None:
        extra["max_age_ms"] = max_age * 1000
    return NitroPolicy(roots=certificates, pcrs=pcrs, allow_debug=allow_debug, **extra)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def effects(ctx: click.Context) -> tuple[Clock, RandomBytes]:
    """The injected clock and randomness, or the system's."""
    obj = ctx.find_root().obj
    given = obj if isinstance(obj, dict) else {}
    return given.get("clock") or SystemClock(), given.get("random_bytes") or system_random


def publisher_option(*, required: bool) -> Callable[[F], F]:
    return click.option(
        "--publisher",
        "publishers",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        multiple=True,
        required=required,
        help="Trusted circuit-manifest signer's public key (.pub; repeatable).",
    )


def zk_policy(circuit: Path, publishers: tuple[Path, ...]) -> ZkPolicy:
    """The zk rung's policy for the circuit folder, its manifest signers pinned. A manifest or
    verification key that does not even parse is bad input (2), like a document given beside a
    receipt; whether it holds (signer, model, key digest) is the rung's step 19."""
    folder = CircuitDir(circuit)
    policy = folder.policy(tuple(PublicKey.load(p) for p in publishers))
    _parses(folder.manifest, lambda: CircuitManifest.decode(_manifest_payload(policy.manifest)))
    _parses(folder.verification_key, lambda: read_verification_key(policy.verification_key))
    return policy


def _manifest_payload(data: bytes) -> bytes:
    return Envelope.from_bytes(data, payload_type=MANIFEST_PAYLOAD_TYPE).payload


def _parses(path: Path, parse: Callable[[], object]) -> None:
    """Run ``parse``; its error, if any, names the file (the library's message does not)."""
    try:
        parse()
    except ReceiptsError as e:
        raise type(e)(f"{path}: {e}", details=e.details) from e


def report_exit_code(report: Report) -> int:
    """2 when the receipt file itself is unreadable or malformed, else 1 (a failed report)."""
    for step in report.rung("signature").failures():
        if isinstance(step.error, InputError):
            return 2
    return 1


def provider_warning() -> None:
    click.echo(
        "warning: provider key not pinned (pass --provider); the signature shows "
        "the receipt is intact, not who issued it",
        err=True,
    )
