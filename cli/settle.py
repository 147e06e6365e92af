"""The settlement commands: ``ledger``, ``log`` and ``batch`` groups (CLI; errors reach the one
boundary in ``cli.main``).

Exit codes follow the rest of the CLI: 0 done, 1 refused by the ledger's rules or a proof that
does not verify (the reason on one line), 2 bad usage or input.

    receipts ledger init ledger.db --origin example.com/ledger --referee referee.pem.pub
    receipts ledger hold ledger.db req.rreq; receipts ledger claim ledger.db out/receipt.rcpt ...
    receipts log checkpoint ledger.db --key log.pem; receipts log prove ledger.db --entry 3
    receipts batch make ledger.db --out b.rbat; receipts batch verify b.cosigned --committee c.json
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cli import render
from cli.options import effects, existing, existing_any, json_option
from receipts.batch import (
    Batch,
    Cosignature,
    aggregate_cosignatures,
    batch_digest,
    cosign_batch,
    verify_batch,
)
from receipts.bls import BlsMember, BlsPrivateKey, Committee
from receipts.checkpoint import (
    unverified_checkpoint,
    verify_checkpoint,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import InputError, ProofError
from receipts.evidence import Evidence
from receipts.files import read_limited, write_atomic
from receipts.jsonview import event_json
from receipts.keys import PrivateKey, PublicKey
from receipts.ledger import DAY_MS, LEDGER_RUNGS, Ledger, LedgerRules
from receipts.model import load_model
from receipts.notice import sign_notice
from receipts.receipt import receipt_id
from receipts.reconcile import audit, replay, state_of
from receipts.tensorfiles import load_tensors

new_file = click.Path(dir_okay=False, path_type=Path)
db_argument = click.argument("db", type=click.Path(dir_okay=False, path_type=Path))
MAX_TEXT = 1 << 20
MAX_BATCH = 256 << 20


@contextmanager
def _ledger(ctx: click.Context, db: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(db, clock=effects(ctx)[0])
    try:
        yield ledger
    finally:
        ledger.close()


def _amount_options(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option(
        "--reference", help="Your payment id: a retry with the same one is refused, not paid twice."
    )(fn)
    fn = click.option("--asset", required=True, help="The asset, as the ledger names it.")(fn)
    fn = click.option("--amount", type=click.IntRange(1, 2**63 - 1), required=True)(fn)
    return click.option(
        "--account", type=existing, required=True, help="The account's public key (.pub)."
    )(fn)


def _reference(text: str | None) -> bytes | None:
    if text is None:
        return None
    data = text.encode("utf-8")
    if not 1 <= len(data) <= 64:
        raise InputError("a reference is 1..64 bytes of UTF-8")
    return data


# -- ledger -----------------------------------------------------------------------------------


@click.group()
def ledger() -> None:
    """The escrow ledger: deposits, holds, claims, disputes, settlement."""


@ledger.command("init")
@db_argument
@click.option("--origin", required=True, help="The log's name, e.g. example.com/ledger.")
@click.option(
    "--asset", "assets", multiple=True, help="An asset the ledger holds (default credit)."
)
@click.option("--window", type=click.IntRange(0, 2**40), default=DAY_MS // 1000, show_default=True,
              help="Challenge window in seconds.")  # fmt: skip
@click.option("--slash", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Bond slashed from a provider found at fault.")  # fmt: skip
@click.option("--rung", "rungs", multiple=True, type=click.Choice(LEDGER_RUNGS),
              help="Rungs a claim must pass (default signature, digests).")  # fmt: skip
@click.option("--referee", "referees", type=existing, multiple=True, help="Trusted referee .pub.")
@click.pass_context
def init(
    ctx: click.Context,
    db: Path,
    origin: str,
    assets: tuple[str, ...],
    window: int,
    slash: int,
    rungs: tuple[str, ...],
    referees: tuple[Path, ...],
) -> None:
    """Create the ledger file DB (refuses an existing file)."""
    rules = LedgerRules(
        origin=origin,
        assets=tuple(dict.fromkeys(assets)) or ("credit",),
        window_ms=window * 1000,
        slash_amount=slash,
        rungs=tuple(dict.fromkeys(("signature", "digests", *rungs))),
        referees=tuple(PublicKey.load(p) for p in referees),
    )
    Ledger.create(db, rules, clock=effects(ctx)[0]).close()
    click.echo(f"created {db}: log {origin}, assets {', '.join(rules.assets)}, "
               f"window {window} s, rungs {', '.join(rules.rungs)}")  # fmt: skip


@ledger.command("deposit")
@db_argument
@_amount_options
@click.pass_context
def deposit(
    ctx: click.Context, db: Path, account: Path, amount: int, asset: str, reference: str | None
) -> None:
    """Credit AMOUNT of ASSET to a payer's deposit."""
    with _ledger(ctx, db) as led:
        index = led.deposit(
            PublicKey.load(account).key_id, asset, amount, reference=_reference(reference)
        )
    click.echo(f"deposited {amount} {asset} (log entry {index})")


@ledger.command("bond")
@db_argument
@_amount_options
@click.pass_context
def bond(
    ctx: click.Context, db: Path, account: Path, amount: int, asset: str, reference: str | None
) -> None:
    """Lock AMOUNT of ASSET as a provider's bond (slashable on a proven fault)."""
    with _ledger(ctx, db) as led:
        index = led.bond(
            PublicKey.load(account).key_id, asset, amount, reference=_reference(reference)
        )
    click.echo(f"bonded {amount} {asset} (log entry {index})")


@ledger.command("hold")
@db_argument
@click.argument("request", type=existing)
@click.pass_context
def hold(ctx: click.Context, db: Path, request: Path) -> None:
    """Authorize the signed REQUEST and hold its maximum in escrow."""
    with _ledger(ctx, db) as led:
        signed = led.hold(read_limited(request, MAX_ENVELOPE_BYTES, "request"))
    r = signed.request
    click.echo(f"held {r.max_amount} {r.asset} for request {signed.id}")


@ledger.command("claim")
@db_argument
@click.argument("receipt", type=existing)
@click.option("--model", type=existing, help="The model (the ledger recomputes the meter).")
@click.option("--input", "inputs", type=existing_any, help="Inputs (.npz or test-data folder).")
@click.option("--output", "outputs", type=existing_any, help="Outputs (.npz or folder).")
@json_option
@click.pass_context
def claim(
    ctx: click.Context,
    db: Path,
    receipt: Path,
    model: Path | None,
    inputs: Path | None,
    outputs: Path | None,
    as_json: bool,
) -> None:
    """Claim payment for a held request with the provider's RECEIPT; opens the window."""
    loaded = load_model(model) if model else None
    names_in = [v.name for v in loaded.inputs] if loaded else None
    names_out = [v.name for v in loaded.outputs] if loaded else None
    arrays_in = load_tensors(inputs, prefix="input_", names=names_in) if inputs else None
    arrays_out = load_tensors(outputs, prefix="output_", names=names_out) if outputs else None
    with _ledger(ctx, db) as led:
        claimed = led.claim(
            read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt"),
            model=loaded,
            inputs=arrays_in,
            outputs=arrays_out,
        )
    if as_json:
        click.echo(json.dumps({
            "request": str(claimed.request), "receipt": str(claimed.receipt),
            "amount": claimed.amount, "window_ends": claimed.window_ends}, indent=2))  # fmt: skip
        return
    click.echo(f"claimed {claimed.amount} for request {claimed.request}; "
               f"the challenge window closes at {claimed.window_ends} ms")  # fmt: skip


@ledger.command("dispute")
@db_argument
@click.argument("receipt", type=existing)
@click.option("--ruling", type=existing, help="A referee's signed ruling on RECEIPT.")
@click.option("--evidence", type=existing, help="The payer's evidence bundle (receipts dispute).")
@click.option(
    "--payer-key", type=existing, help="With --evidence: the payer's key signs the notice."
)
@click.option("--notice", type=existing, help="With --evidence: the payer's signed notice.")
@click.pass_context
def dispute(
    ctx: click.Context,
    db: Path,
    receipt: Path,
    ruling: Path | None,
    evidence: Path | None,
    payer_key: Path | None,
    notice: Path | None,
) -> None:
    """Open a dispute on a claimed RECEIPT inside its window with the payer's --evidence, or
    settle it by a referee's --ruling."""
    data = read_limited(receipt, MAX_ENVELOPE_BYTES, "receipt")
    ruled = read_limited(ruling, MAX_ENVELOPE_BYTES, "ruling") if ruling else None
    bundle = Evidence.read(evidence) if evidence else None
    signed_notice = read_limited(notice, MAX_ENVELOPE_BYTES, "notice") if notice else None
    with _ledger(ctx, db) as led:
        if bundle is not None and payer_key is not None and signed_notice is None:
            signed_notice = sign_notice(
                PrivateKey.load(payer_key),
                ledger=led.rules.origin,
                receipt=receipt_id(Envelope.from_bytes(data).payload),
                evidence=bundle.digest,
            )
        result = led.dispute(data, ruled, evidence=bundle, notice=signed_notice)
        window = led.rules.window_ms
    if result.outcome == "open":
        click.echo(f"request {result.request} disputed; a ruling is due within {window // 1000} s")
    else:
        slashed = f", {result.slashed} slashed from the bond" if result.slashed else ""
        click.echo(f"request {result.request} {result.outcome} by the ruling{slashed}")


@ledger.command("settle")
@db_argument
@click.option("--now", type=click.IntRange(0, 2**63 - 1), help="Settle as of UNIX_MS.")
@click.pass_context
def settle(ctx: click.Context, db: Path, now: int | None) -> None:
    """Release claims whose window closed; refund expired, unclaimed requests."""
    with _ledger(ctx, db) as led:
        done = led.settle(now)
    click.echo(f"released {len(done.released)}, refunded {len(done.refunded)}")


@ledger.command("balances")
@db_argument
@json_option
@click.pass_context
def balances(ctx: click.Context, db: Path, as_json: bool) -> None:
    """Every balance and open hold, and the conservation check."""
    with _ledger(ctx, db) as led:
        rows = led.store.balances()
        held = led.store.requests()
        checked = audit(led.store, check_log=False)
    if as_json:
        click.echo(json.dumps({
            "balances": [{"account": b.account.hex(), "asset": b.asset, "kind": b.kind,
                          "amount": b.amount} for b in rows],
            "supply": checked.assets, "requests": checked.requests}, indent=2))  # fmt: skip
        return
    click.echo(render.balances_table(rows, held))
    click.echo(f"conserved: balances + holds = supply ({render.supply(checked.assets)})")


@ledger.command("history")
@db_argument
@json_option
@click.pass_context
def history(ctx: click.Context, db: Path, as_json: bool) -> None:
    """Every log entry, oldest first."""
    with _ledger(ctx, db) as led:
        events = led.history()
    if as_json:
        click.echo(json.dumps([event_json(i, e) for i, e in events], indent=2))
        return
    for index, event in events:
        click.echo(render.event_line(index, event))


@ledger.command("audit")
@db_argument
@click.pass_context
def audit_command(ctx: click.Context, db: Path) -> None:
    """Check conservation and states, and rebuild the ledger from its log alone."""
    with _ledger(ctx, db) as led:
        checked = audit(led.store)
        rebuilt = replay(led.store.entries(0, led.store.size()))
        same = state_of(rebuilt) == state_of(led.store)
    if not same:
        raise ProofError("the ledger's tables differ from what its log rebuilds")
    click.echo(f"ok: {checked.log_size} log entries rebuild the same ledger; "
               f"supply {render.supply(checked.assets)}; requests {checked.requests}")  # fmt: skip


# -- log --------------------------------------------------------------------------------------


@click.group("log")
def log_group() -> None:
    """The ledger's append-only log: checkpoints and proofs (C2SP formats)."""


@log_group.command("checkpoint")
@db_argument
@click.option("--key", type=existing, required=True, help="The log's Ed25519 private key.")
@click.option("--out", type=new_file, help="Also write the signed checkpoint here.")
@click.pass_context
def checkpoint(ctx: click.Context, db: Path, key: Path, out: Path | None) -> None:
    """Sign the log's current tree head (C2SP tlog-checkpoint) and print it."""
    if out is not None:
        _check_new(out)  # before the head is signed and stored: a refused command changes nothing
    with _ledger(ctx, db) as led:
        note = led.log.checkpoint(PrivateKey.load(key))
    if out:
        write_atomic(out, note, replace=False)
    click.echo(note.decode(), nl=False)


@log_group.command("prove")
@db_argument
@click.option("--entry", type=click.IntRange(0), required=True)
@click.option("--out", type=new_file)
@click.pass_context
def prove(ctx: click.Context, db: Path, entry: int, out: Path | None) -> None:
    """An inclusion proof of log entry N against the latest checkpoint (c2sp tlog-proof)."""
    with _ledger(ctx, db) as led:
        text = led.log.prove(entry)
    _emit(text, out)


@log_group.command("consistency")
@db_argument
@click.option("--old-size", type=click.IntRange(0), required=True)
@click.option("--out", type=new_file)
@click.pass_context
def consistency(ctx: click.Context, db: Path, old_size: int, out: Path | None) -> None:
    """A consistency proof from size N to the latest checkpoint."""
    with _ledger(ctx, db) as led:
        text = led.log.prove_consistency(old_size)
    _emit(text, out)


@log_group.command("verify")
@click.argument("proof", type=existing)
@click.option("--log-key", type=existing, required=True, help="The log's public key (.pub).")
@click.option("--old-checkpoint", type=existing, help="For a consistency proof: the older head.")
@click.option("--origin", help="The log's name (default: the checkpoint's).")
def verify_proof(
    proof: Path, log_key: Path, old_checkpoint: Path | None, origin: str | None
) -> None:
    """Verify a checkpoint, an inclusion proof or a consistency proof with the log's key."""
    key = PublicKey.load(log_key)
    data = read_limited(proof, MAX_TEXT, "proof")
    if data.startswith(b"c2sp.org/tlog-proof@v1\n"):
        found = verify_inclusion_proof(data, key, origin=origin)
        click.echo(f"ok: entry {found.index} is in {found.checkpoint.origin} "
                   f"at size {found.checkpoint.size}")  # fmt: skip
    elif data.startswith(b"old "):
        if old_checkpoint is None:
            raise click.UsageError("a consistency proof needs --old-checkpoint")
        old, new = verify_consistency_proof(
            data, read_limited(old_checkpoint, MAX_TEXT, "checkpoint"), key, origin=origin
        )
        click.echo(f"ok: {new.origin} grew from {old.size} to {new.size} without rewriting")
    else:
        head = verify_checkpoint(data, key, origin)
        click.echo(f"ok: checkpoint of {head.origin} at size {head.size}")


def _emit(text: bytes, out: Path | None) -> None:
    if out:
        write_atomic(out, text, replace=False)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text.decode(), nl=False)


# -- batch ------------------------------------------------------------------------------------


@click.group("batch")
def batch_group() -> None:
    """Settlement batches co-signed by auditors (BLS12-381 aggregate signatures)."""


@batch_group.command("make")
@db_argument
@click.option("--out", type=new_file, help="Default: batch-FIRST-END.rbat beside DB.")
@click.option("--again", type=click.IntRange(0), help="Make the recorded batch at FIRST again.")
@click.pass_context
def make(ctx: click.Context, db: Path, out: Path | None, again: int | None) -> None:
    """Batch the entries since the last batch, up to the latest checkpoint (or, with --again,
    write a batch made before once more)."""
    if out is not None:
        _check_new(out)  # before the batch is recorded: a failed write must not lose it
    with _ledger(ctx, db) as led:
        data = led.make_batch() if again is None else led.recorded_batch(again)
    batch = Batch.decode(data)
    target = out or db.with_name(f"batch-{batch.first}-{batch.end}.rbat")
    write_atomic(target, data, replace=False)
    click.echo(f"wrote {target}: entries [{batch.first}, {batch.end}) of {batch.origin}, "
               f"digest {batch_digest(batch)}")  # fmt: skip


def _check_new(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise InputError(f"{path} already exists; refusing to replace it")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent} is not a folder")


@batch_group.command("cosign")
@click.argument("batch", type=existing)
@click.option("--bls-key", type=existing, required=True, help="The auditor's BLS private key.")
@click.option("--log-key", type=existing, required=True, help="The log's public key (.pub).")
@click.option("--out", type=new_file, help="Default: BATCH.KEYID.sig")
def cosign(batch: Path, bls_key: Path, log_key: Path, out: Path | None) -> None:
    """Check BATCH against the log's checkpoints, then sign its digest."""
    data = read_limited(batch, MAX_BATCH, "batch")
    key = BlsPrivateKey.load(bls_key)
    signature = cosign_batch(data, key, PublicKey.load(log_key))
    target = out or batch.with_name(f"{batch.name}.{key.public_key.raw.hex()[:8]}.sig")
    write_atomic(target, signature.encode(), replace=False)
    click.echo(f"checked and co-signed {signature.batch}; wrote {target}")


@batch_group.command("aggregate")
@click.argument("batch", type=existing)
@click.argument("signatures", type=existing, nargs=-1, required=True)
@click.option("--out", type=new_file, help="Default: BATCH.cosigned")
def aggregate_command(batch: Path, signatures: tuple[Path, ...], out: Path | None) -> None:
    """Aggregate the auditors' co-signatures of BATCH into one."""
    data = read_limited(batch, MAX_BATCH, "batch")
    sigs = [Cosignature.decode(read_limited(p, 4096, "co-signature")) for p in signatures]
    cosigned = aggregate_cosignatures(data, sigs)
    target = out or batch.with_name(batch.name + ".cosigned")
    write_atomic(target, cosigned.encode(), replace=False)
    click.echo(f"aggregated {len(sigs)} co-signatures; wrote {target}")


@batch_group.command("verify")
@click.argument("cosigned", type=existing)
@click.option("--committee", type=existing, required=True, help="Committee file (JSON).")
@click.option("--threshold", type=click.IntRange(1), required=True)
@click.option("--log-key", type=existing, required=True, help="The log's public key (.pub).")
@click.option("--origin", help="The log the batch must be of (default: the batch's own).")
@click.option("--db", type=existing, help="Also check it is a batch this ledger made.")
@json_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    cosigned: Path,
    committee: Path,
    threshold: int,
    log_key: Path,
    origin: str | None,
    db: Path | None,
    as_json: bool,
) -> None:
    """Verify a co-signed batch: checkpoints, entries, totals, and the committee threshold."""
    data = read_limited(cosigned, MAX_BATCH, "co-signed batch")
    batch, signed = verify_batch(
        data, PublicKey.load(log_key), Committee.load(committee), threshold
    )
    if origin is not None and batch.origin != origin:
        raise ProofError(f"the batch is of log {batch.origin!r}, not {origin!r}")
    if db is not None:
        with _ledger(ctx, db) as led:
            _reconcile(led, batch)
    payouts = [t for t in batch.totals if t.kind == "payout"]
    if as_json:
        click.echo(json.dumps({
            "origin": batch.origin, "first": batch.first, "end": batch.end,
            "digest": str(batch_digest(batch)), "signers": len(signed.signers),
            "totals": [{"account": t.account.hex(), "asset": t.asset, "kind": t.kind,
                        "amount": t.amount, "count": t.count} for t in batch.totals]},
            indent=2))  # fmt: skip
        return
    click.echo(f"ok: entries [{batch.first}, {batch.end}) of {batch.origin} co-signed by "
               f"{len(signed.signers)} of the committee (threshold {threshold})")  # fmt: skip
    for t in payouts:
        click.echo(f"  payout {t.amount} {t.asset} to {t.account.hex()[:16]}… ({t.count} receipts)")


def _reconcile(led: Ledger, batch: Batch) -> None:
    """The batch is one this ledger made and recorded (same span, same digest), so a payout
    service paying recorded batches pays each span once; and its end is this log's root."""
    recorded = {first: (end, digest) for first, end, digest in led.store.batches()}
    if recorded.get(batch.first) != (batch.end, batch_digest(batch).value):
        raise ProofError(f"entries [{batch.first}, {batch.end}) are not a batch this ledger made")
    if batch.origin != led.rules.origin:
        raise ProofError(f"the batch is of log {batch.origin!r}, this ledger's is "
                         f"{led.rules.origin!r}")  # fmt: skip
    if led.log.root(batch.end) != unverified_checkpoint(batch.checkpoint).root:
        raise ProofError("the batch does not match this ledger's log")


@click.command("committee")
@click.argument("members", type=existing, nargs=-1, required=True)
@click.option("--out", type=new_file, required=True)
def committee_command(members: tuple[Path, ...], out: Path) -> None:
    """Write a committee file from auditors' BLS public key files (proofs checked)."""
    _check_new(out)
    committee = Committee(members=tuple(BlsMember.load(p) for p in members))
    committee.verify_pops()
    committee.save(out)
    click.echo(f"wrote {out}: {len(members)} members, every proof of possession valid")


batch_group.add_command(committee_command)
