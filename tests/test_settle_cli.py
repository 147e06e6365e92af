"""The `ledger`, `log` and `batch` commands: the settlement flow end to end through the command
line, exit 0 when done, 1 when the ledger's rules or a proof refuse (one line on stderr), 2 for
bad input (one line, no traceback), and JSON that parses wherever --json is offered."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from receipts.batch import CosignedBatch, aggregate_cosignatures, cosign_batch, make_batch
from receipts.bls import BlsPrivateKey
from receipts.dispute import dispute_locally
from receipts.effects import FixedClock, seeded
from receipts.envelope import Envelope
from receipts.evidence import Evidence
from receipts.keys import PrivateKey
from receipts.ledger import Ledger
from receipts.meter import Price
from receipts.provider import TRACE_FILE, Provider
from receipts.receipt import Receipt
from receipts.reconcile import state_of
from receipts.request import read_request
from receipts.trace import TraceReader
from tests.conftest import FIXTURES
from tests.settlekit import (
    LIE_AT,
    LOG_KEY,
    NOW,
    ORIGIN,
    PAYER,
    mlp,
    mlp_inputs,
    provider_key,
    ruling,
    sign_receipt,
)

MODEL = str(FIXTURES / "models" / "mlp.onnx")
OTHER_MODEL = str(FIXTURES / "models" / "convnet.onnx")
INPUTS = str(FIXTURES / "inputs" / "mlp.npz")
PROVIDER_KEY = str(FIXTURES / "keys" / "provider_ed25519.pem")
PROVIDER_PUB = PROVIDER_KEY + ".pub"
REFEREE_PUB = str(FIXTURES / "keys" / "referee_ed25519.pem.pub")
WINDOW_S = 60


def invoke(*args: object, now: int = NOW, seed: int = 21) -> Result:
    effects = {"clock": FixedClock(now), "random_bytes": seeded(seed)}
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=effects)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    return result


def ok(*args: object, **kwargs: Any) -> Result:
    result = invoke(*args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


def refused(code: int, *args: object, match: str = "", **kwargs: Any) -> Result:
    """Exit ``code`` with the reason on one line of stderr: the library's one line, or click's
    usage block whose last line is the ``Error:`` (options click checks itself)."""
    result = invoke(*args, **kwargs)
    assert result.exit_code == code, result.output
    if result.stderr.startswith("Usage:"):
        assert code == 2
        reason = result.stderr.rstrip("\n").rsplit("\n", 1)[-1]
        assert reason.startswith("Error: "), result.stderr
    else:
        assert result.stderr.startswith("receipts: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        reason = result.stderr
    assert match in reason, reason
    assert result.stdout == "" or code == 2, result.stdout
    return result


@dataclass(frozen=True, slots=True)
class Desk:
    """The files of one settlement: keys, the ledger, and where runs and proofs go."""

    root: Path
    db: Path
    payer: Path
    log_key: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def request(
        self, name: str, *extra: object, seed: int, now: int = NOW, ledger: str | None = ORIGIN
    ) -> Path:
        """The payer's request for the ledger named ``ledger`` (default: this desk's)."""
        out = self.path(f"{name}.rreq")
        named = [] if ledger is None else ["--ledger", ledger]
        ok("request", MODEL, "--input", INPUTS, "--payer-key", self.payer, "--asset", "credit",
           "--out", out, *named, *extra, seed=seed, now=now)  # fmt: skip
        return out

    def run(self, request: Path, fee: int = 7, now: int = NOW, *, traced: bool = False) -> Path:
        out = self.path(f"run-{request.stem}")
        ok("run", MODEL, "--input", INPUTS, "--key", PROVIDER_KEY, "--out", out, "--request",
           request, "--base-fee", fee, *(["--trace"] if traced else []), now=now,
           seed=zlib.crc32(request.stem.encode()))  # fmt: skip
        return out / "receipt.rcpt"

    def hold_and_claim(
        self, name: str, *, seed: int, fee: int = 7, max_amount: int = 50, traced: bool = False
    ) -> Path:
        request = self.request(name, "--max-amount", max_amount, seed=seed)
        ok("ledger", "hold", self.db, request)
        receipt = self.run(request, fee, traced=traced)
        ok("ledger", "claim", self.db, receipt, "--model", MODEL)
        return receipt

    def evidence(self, receipt: Path) -> Path:
        """The payer's evidence bundle on a traced run's ``receipt`` (the payer lying at node
        ``LIE_AT`` makes a divergence even from an honest provider); made once."""
        out = receipt.with_suffix(".revd")
        if not out.exists():
            with TraceReader.open(receipt.parent / TRACE_FILE) as trace:
                found = dispute_locally(receipt.read_bytes(), mlp(), mlp_inputs(), trace, PAYER,
                                        inject_fault=LIE_AT)  # fmt: skip
            found.evidence.write(out)
        return out

    def ruling(self, receipt: Path, verdict: str, signer: PrivateKey | None = None) -> Path:
        """A ruling (by the referee, or ``signer``) on the payer's evidence against ``receipt``."""
        digest = Evidence.read(self.evidence(receipt)).digest
        out = receipt.with_suffix(f".{verdict}.rrul")
        out.write_bytes(ruling(receipt.read_bytes(), verdict, signer, evidence=digest))
        return out


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    payer, log_key = tmp_path / "payer.pem", tmp_path / "log.pem"
    PAYER.save(payer)
    LOG_KEY.save(log_key)
    d = Desk(tmp_path, tmp_path / "ledger.db", payer, log_key)
    ok("ledger", "init", d.db, "--origin", ORIGIN, "--window", WINDOW_S, "--slash", 30,
       "--referee", REFEREE_PUB)  # fmt: skip
    ok("ledger", "deposit", d.db, "--account", f"{payer}.pub", "--amount", 1000, "--asset",
       "credit")  # fmt: skip
    ok("ledger", "bond", d.db, "--account", PROVIDER_PUB, "--amount", 100, "--asset", "credit")
    return d


def _balances(d: Desk) -> dict[tuple[str, str], int]:
    shown = json.loads(ok("ledger", "balances", d.db, "--json").stdout)
    return {(b["account"][:8], b["kind"]): b["amount"] for b in shown["balances"]}


PAYER_HEX = PAYER.public_key.key_id.hex()[:8]
PROVIDER_HEX = provider_key().public_key.key_id.hex()[:8]


def _request_id(receipt: Path) -> str:
    return str(Receipt.decode(Envelope.from_bytes(receipt.read_bytes()).payload).request)


def test_the_settlement_flow_through_the_command_line(desk: Desk) -> None:
    d = desk
    fair = d.hold_and_claim("fair", seed=1, fee=7)
    faulty = d.hold_and_claim("faulty", seed=2, fee=9, traced=True)
    challenged = d.hold_and_claim("challenged", seed=3, fee=4, traced=True)
    lapsed = d.hold_and_claim("lapsed", seed=5, fee=3, traced=True)
    expiring = d.request("expiring", "--max-amount", 20, "--expires-in", 30, seed=4)
    ok("ledger", "hold", d.db, expiring)
    fault = d.ruling(faulty, "provider-fault")
    refused(1, "ledger", "dispute", d.db, faulty, "--ruling", fault,
            match="a ruling settles a dispute the payer opened")  # fmt: skip
    ok("ledger", "dispute", d.db, faulty, "--evidence", d.evidence(faulty), "--payer-key", d.payer)
    shown = ok("ledger", "dispute", d.db, faulty, "--ruling", fault).stdout
    assert "refunded by the ruling, 30 slashed from the bond" in shown
    shown = ok("ledger", "dispute", d.db, challenged, "--evidence", d.evidence(challenged),
               "--payer-key", d.payer).stdout  # fmt: skip
    assert shown == (
        f"request {_request_id(challenged)} disputed; a ruling is due within {WINDOW_S} s\n"
    )
    opened = NOW + 1000  # the deadline of `lapsed` is one window later: NOW + 61 s
    shown = ok("ledger", "dispute", d.db, lapsed, "--evidence", d.evidence(lapsed),
               "--payer-key", d.payer,
               now=opened).stdout  # fmt: skip
    assert f"a ruling is due within {WINDOW_S} s" in shown
    rejected = d.ruling(challenged, "challenge-rejected")
    shown = ok("ledger", "dispute", d.db, challenged, "--ruling", rejected,
               now=NOW + WINDOW_S * 500).stdout  # fmt: skip
    assert shown == f"request {_request_id(challenged)} released by the ruling\n"
    later = NOW + WINDOW_S * 1000
    assert ok("ledger", "settle", d.db, now=later).stdout == "released 1, refunded 1\n"
    deadline = opened + WINDOW_S * 1000
    assert ok("ledger", "settle", d.db, now=deadline - 1).stdout == "released 0, refunded 0\n"
    assert ok("ledger", "settle", d.db, now=deadline).stdout == "released 1, refunded 0\n"
    assert ok("ledger", "settle", d.db, now=deadline).stdout == "released 0, refunded 0\n"
    refused(1, "ledger", "dispute", d.db, lapsed, "--ruling", d.ruling(lapsed, "provider-fault"),
            now=deadline, match="is released")  # fmt: skip
    balances = _balances(d)
    assert balances[PROVIDER_HEX, "earnings"] == 7 + 4 + 3
    assert balances[PROVIDER_HEX, "bond"] == 100 - 30
    assert balances[PAYER_HEX, "deposit"] == 1000 - 7 - 4 - 3 + 30
    text = ok("ledger", "balances", d.db).stdout
    assert "conserved: balances + holds = supply (1100 credit)" in text
    history = json.loads(ok("ledger", "history", d.db, "--json").stdout)
    kinds = [e["kind"] for e in history]
    assert kinds.count("claim") == 4 and kinds.count("slash") == 1 and kinds[0] == "open"
    assert kinds.count("dispute") == 5 and kinds.count("release") == 3  # 3 opened, 2 ruled
    opening = next(e for e in history if e["kind"] == "dispute" and e.get("deadline") == deadline)
    assert opening["evidence"] == str(Evidence.read(lapsed.with_suffix(".revd")).digest)
    assert [e["index"] for e in history] == list(range(len(history)))
    lines = ok("ledger", "history", d.db).stdout.splitlines()
    assert len(lines) == len(history)
    assert "ok: " in ok("ledger", "audit", d.db).stdout
    refused(1, "ledger", "claim", d.db, fair, "--model", MODEL, match="already claimed")


def test_log_checkpoints_and_proofs_through_the_command_line(desk: Desk) -> None:
    d, pub = desk, f"{desk.log_key}.pub"
    first = d.path("cp-3.txt")
    ok("log", "checkpoint", d.db, "--key", d.log_key, "--out", first)
    assert first.read_bytes().startswith(f"{ORIGIN}\n3\n".encode())
    assert (
        "ok: checkpoint of example.com/ledger at size 3"
        in ok("log", "verify", first, "--log-key", pub).stdout
    )
    d.hold_and_claim("a", seed=1)
    printed = ok("log", "checkpoint", d.db, "--key", d.log_key).stdout
    assert printed.startswith(f"{ORIGIN}\n5\n")
    ok("log", "prove", d.db, "--entry", 3, "--out", d.path("entry3.proof"))
    shown = ok("log", "verify", d.path("entry3.proof"), "--log-key", pub).stdout
    assert shown == f"ok: entry 3 is in {ORIGIN} at size 5\n"
    ok("log", "consistency", d.db, "--old-size", 3, "--out", d.path("grew.proof"))
    shown = ok("log", "verify", d.path("grew.proof"), "--log-key", pub, "--old-checkpoint",
               first).stdout  # fmt: skip
    assert shown == f"ok: {ORIGIN} grew from 3 to 5 without rewriting\n"
    proof = d.path("entry3.proof").read_bytes()
    head, _, note = proof.partition(b"\n\n")
    lines = head.split(b"\n")
    lines[3] = b"A" * 43 + b"="  # another hash: still well-formed
    d.path("forged.proof").write_bytes(b"\n".join(lines) + b"\n\n" + note)
    refused(1, "log", "verify", d.path("forged.proof"), "--log-key", pub, match="not proven")
    refused(1, "log", "verify", d.path("entry3.proof"), "--log-key", PROVIDER_PUB,
            match="no signature by a known key")  # fmt: skip
    refused(2, "log", "verify", d.path("grew.proof"), "--log-key", pub,
            match="--old-checkpoint")  # fmt: skip
    refused(2, "log", "prove", d.db, "--entry", 9, match="not covered")
    d.path("junk.proof").write_bytes(b"c2sp.org/tlog-proof@v1\nindex x\n\nnot a note\n")
    refused(2, "log", "verify", d.path("junk.proof"), "--log-key", pub)


def test_batches_through_the_command_line(desk: Desk) -> None:
    d, pub = desk, f"{desk.log_key}.pub"
    d.hold_and_claim("a", seed=1, fee=7)
    d.hold_and_claim("b", seed=2, fee=5)
    ok("ledger", "settle", d.db, now=NOW + WINDOW_S * 1000)
    refused(2, "batch", "make", d.db, match="no checkpoint")
    ok("log", "checkpoint", d.db, "--key", d.log_key)
    auditors = [d.path(f"auditor{n}.pem") for n in (1, 2, 3)]
    for n, auditor in enumerate(auditors):  # keygen draws from the injected seed: one each
        made = ok("keygen", "--scheme", "bls12-381", auditor, seed=40 + n)
        assert len(made.stdout.strip()) == 96  # the 48-byte public key, in hex
    committee = d.path("committee.json")
    ok("batch", "committee", *[f"{a}.pub" for a in auditors], "--out", committee)
    batch = d.path("b.rbat")
    batch.write_bytes(b"an earlier file")  # refused before the batch is recorded: not lost
    history = ok("ledger", "history", d.db, "--json").stdout
    refused(2, "batch", "make", d.db, "--out", batch, match="already exists")
    assert ok("ledger", "history", d.db, "--json").stdout == history
    assert batch.read_bytes() == b"an earlier file"
    batch.unlink()
    assert "entries [0, 9)" in ok("batch", "make", d.db, "--out", batch).stdout
    refused(2, "batch", "make", d.db, "--out", d.path("again.rbat"), match="nothing to batch")
    made = ok("batch", "make", d.db, "--again", 0, "--out", d.path("again.rbat")).stdout
    assert f"entries [0, 9) of {ORIGIN}" in made
    assert d.path("again.rbat").read_bytes() == batch.read_bytes()
    refused(2, "batch", "make", d.db, "--again", 1, "--out", d.path("none.rbat"),
            match="no batch starts at entry 1")  # fmt: skip
    sigs = []
    for n, auditor in enumerate(auditors[:2]):
        sigs.append(d.path(f"s{n}.sig"))
        ok("batch", "cosign", batch, "--bls-key", auditor, "--log-key", pub, "--out", sigs[-1])
    cosigned = d.path("b.cosigned")
    ok("batch", "aggregate", batch, *sigs, "--out", cosigned)
    args = ["batch", "verify", cosigned, "--committee", committee, "--log-key", pub]
    shown = json.loads(ok(*args, "--threshold", 2, "--db", d.db, "--json").stdout)
    assert (shown["first"], shown["end"], shown["signers"]) == (0, 9, 2)
    payouts = {t["account"][:8]: t["amount"] for t in shown["totals"] if t["kind"] == "payout"}
    assert payouts == {PROVIDER_HEX: 12}
    assert shown["origin"] == ORIGIN
    text = ok(*args, "--threshold", 2).stdout
    assert "co-signed by 2 of the committee (threshold 2)" in text
    assert "payout 12 credit" in text
    ok(*args, "--threshold", 2, "--origin", ORIGIN)
    refused(1, *args, "--threshold", 2, "--origin", "example.com/other",
            match="not 'example.com/other'")  # fmt: skip
    refused(1, *args, "--threshold", 3, match="threshold is 3")
    refused(2, *args, "--threshold", 4, match="not in 1..3")
    forged = CosignedBatch.decode(cosigned.read_bytes())
    d.path("forged.cosigned").write_bytes(
        replace(forged, signature=forged.signature[::-1]).encode()
    )
    refused(1, "batch", "verify", d.path("forged.cosigned"), *args[3:], "--threshold", 2,
            match="not a compressed G2 point")  # fmt: skip
    refused(2, "batch", "verify", batch, *args[3:], "--threshold", 2, match="co-signed batch")
    other = d.path("other.rbat")
    d.hold_and_claim("c", seed=3)
    ok("log", "checkpoint", d.db, "--key", d.log_key)
    ok("batch", "make", d.db, "--out", other)
    ok("batch", "cosign", other, "--bls-key", auditors[2], "--log-key", pub, "--out",
       d.path("other.sig"))  # fmt: skip
    refused(2, "batch", "aggregate", batch, sigs[0], d.path("other.sig"), "--out",
            d.path("mixed.cosigned"), match="another batch")  # fmt: skip
    refused(1, "batch", "cosign", batch, "--bls-key", auditors[0], "--log-key", PROVIDER_PUB,
            "--out", d.path("wrong.sig"))  # fmt: skip
    # Both spans in one batch, made by hand: it verifies on its own (the log signed both
    # heads), but the ledger never recorded it, so a payout service must not pay it.
    with _opened(d) as led:
        heads = dict(led.store.checkpoints())
        spanning = make_batch(led.store, ORIGIN, old=None, new=heads[max(heads)]).encode()
    keys = [BlsPrivateKey.load(a) for a in auditors[:2]]
    both = aggregate_cosignatures(spanning, [cosign_batch(spanning, k, LOG_KEY.public_key)
                                             for k in keys])  # fmt: skip
    d.path("both.cosigned").write_bytes(both.encode())
    assert "entries [0, " in ok("batch", "verify", d.path("both.cosigned"), *args[3:],
                                "--threshold", 2).stdout  # fmt: skip
    refused(1, "batch", "verify", d.path("both.cosigned"), *args[3:], "--threshold", 2,
            "--db", d.db, match="are not a batch this ledger made")  # fmt: skip


@contextmanager
def _opened(d: Desk) -> Iterator[Ledger]:
    ledger = Ledger.open(d.db, clock=FixedClock(NOW))
    try:
        yield ledger
    finally:
        ledger.close()


def test_settle_as_of_an_earlier_time_but_not_a_later_one(desk: Desk) -> None:
    d = desk
    d.hold_and_claim("a", seed=1)
    closes = NOW + WINDOW_S * 1000
    later = closes + 5000
    refused(1, "ledger", "settle", d.db, "--now", later + 1, now=later,
            match="after the ledger's clock")  # fmt: skip
    shown = ok("ledger", "settle", d.db, "--now", closes - 1, now=later).stdout
    assert shown == "released 0, refunded 0\n"
    assert ok("ledger", "settle", d.db, "--now", closes, now=later).stdout == (
        "released 1, refunded 0\n"
    )


def _forged_over_max(request: Path, fee: int) -> bytes:
    """The provider signs without checking the request: an over-maximum receipt bound to it."""
    signed = read_request(request.read_bytes())
    provider = Provider(provider_key(), price=Price(base_fee=fee, asset="credit"),
                        clock=FixedClock(NOW), random_bytes=seeded(99))  # fmt: skip
    issued = provider.session(mlp()).run(mlp_inputs())
    return sign_receipt(replace(issued.receipt, request=signed.id))


def test_refusals_by_the_rules_exit_1_with_one_line(desk: Desk) -> None:
    d = desk
    receipt = d.hold_and_claim("a", seed=1, traced=True)
    evidence = d.evidence(receipt)
    before = d.db.read_bytes(), _balances(d)
    refused(1, "ledger", "hold", d.db, d.path("a.rreq"), match="already held")
    refused(1, "ledger", "claim", d.db, receipt, "--model", MODEL, match="already claimed")
    reused = d.request("reused", "--max-amount", 51, seed=1)  # the same nonce, other terms
    refused(1, "ledger", "hold", d.db, reused, match="already used nonce")
    small = d.request("small", "--max-amount", 5, seed=5)
    ok("ledger", "hold", d.db, small)
    d.path("over.rcpt").write_bytes(_forged_over_max(small, fee=6))
    refused(1, "ledger", "claim", d.db, d.path("over.rcpt"), "--model", MODEL,
            match="over the request's maximum of 5")  # fmt: skip
    refused(1, "ledger", "claim", d.db, d.path("over.rcpt"), match="supply the model")
    refused(1, "ledger", "claim", d.db, d.path("over.rcpt"), "--model", OTHER_MODEL,
            match="model")  # fmt: skip
    refused(1, "ledger", "deposit", d.db, "--account", f"{d.payer}.pub", "--amount", 5,
            "--asset", "gold", match="does not hold 'gold'")  # fmt: skip
    big = d.request("big", "--max-amount", 10_000, seed=6)
    refused(1, "ledger", "hold", d.db, big, match="the change needs 10000")
    expired = d.request("expired", "--max-amount", 5, "--expires-in", 1, seed=7)
    refused(1, "ledger", "hold", d.db, expired, now=NOW + 1000, match="expired at")
    refused(1, "ledger", "dispute", d.db, receipt, match="needs the payer's evidence bundle")
    early = d.ruling(receipt, "challenge-rejected")  # before the payer disputed: refused
    refused(1, "ledger", "dispute", d.db, receipt, "--ruling", early,
            match="is claimed: a ruling settles")  # fmt: skip
    unnamed = d.request("unnamed", "--max-amount", 5, seed=8, ledger=None)
    refused(1, "ledger", "hold", d.db, unnamed, match="names no ledger")
    elsewhere = d.request("elsewhere", "--max-amount", 5, seed=9, ledger="example.com/other")
    refused(1, "ledger", "hold", d.db, elsewhere, match="names ledger 'example.com/other'")
    refused(1, "ledger", "settle", d.db, "--now", NOW + WINDOW_S * 1000,
            match="after the ledger's clock")  # fmt: skip
    refused(1, "ledger", "dispute", d.db, receipt, "--evidence", evidence, "--payer-key", d.payer,
            now=NOW + WINDOW_S * 1000, match="closed")  # fmt: skip
    refused(1, "ledger", "dispute", d.db, receipt, "--evidence", evidence,
            match="signed notice")  # fmt: skip
    refused(1, "ledger", "dispute", d.db, receipt, "--evidence", evidence, "--payer-key", d.log_key,
            match="notice is not signed by the payer")  # fmt: skip
    d.path("junk.revd").write_bytes(b"not an evidence bundle")
    refused(2, "ledger", "dispute", d.db, receipt, "--evidence", d.path("junk.revd"))
    stranger = d.ruling(receipt, "provider-fault", signer=LOG_KEY)
    refused(1, "ledger", "dispute", d.db, receipt, "--ruling", stranger, match="not a trusted")
    after = _balances(d)
    assert after == {**before[1], (PAYER_HEX, "deposit"): before[1][PAYER_HEX, "deposit"] - 5}


def _sqlite_not_a_ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()


BAD_DB: dict[str, Any] = {
    "missing_db": lambda p: None,
    "text_file_as_db": lambda p: p.write_text("hello\n" * 200),
    "sqlite_file_that_is_no_ledger": _sqlite_not_a_ledger,
    "directory_as_db": lambda p: p.mkdir(),
}


DB_COMMANDS = [["ledger", "settle"], ["ledger", "balances"], ["ledger", "audit"],
               ["log", "prove", "--entry", "0"]]  # fmt: skip


@pytest.mark.parametrize("make", BAD_DB.values(), ids=BAD_DB)
@pytest.mark.parametrize("command", DB_COMMANDS, ids=["-".join(c[:2]) for c in DB_COMMANDS])
def test_a_db_that_is_not_a_ledger_exits_2(tmp_path: Path, make: Any, command: list[str]) -> None:
    db = tmp_path / "x.db"
    make(db)
    refused(2, *command[:2], db, *command[2:])


@pytest.mark.parametrize("content", [b"", b"\x81\xa1a\x01", b"not msgpack at all"])
def test_a_malformed_request_file_exits_2_and_changes_nothing(desk: Desk, content: bytes) -> None:
    bad = desk.path("bad.rreq")
    bad.write_bytes(content)
    before = _balances(desk)
    refused(2, "ledger", "hold", desk.db, bad, match="receipts: error:")
    assert _balances(desk) == before


BAD_INPUT: dict[str, tuple[list[object], str]] = {
    "init_over_an_existing_ledger": (["ledger", "init", "{db}", "--origin", "x"], "exists"),
    "init_with_a_spaced_origin": (["ledger", "init", "{new}", "--origin", "a b"], "no spaces"),
    "deposit_of_zero": (
        [
            "ledger",
            "deposit",
            "{db}",
            "--account",
            "{payer}.pub",
            "--amount",
            0,
            "--asset",
            "credit",
        ],
        "Invalid value",
    ),
    "account_that_is_not_a_key": (
        ["ledger", "deposit", "{db}", "--account", INPUTS, "--amount", 1, "--asset", "credit"],
        "receipts: error:",
    ),
    "claim_of_a_file_that_is_not_a_receipt": (
        ["ledger", "claim", "{db}", INPUTS, "--model", MODEL],
        "receipts: error:",
    ),
    "consistency_without_a_checkpoint": (
        ["log", "consistency", "{db}", "--old-size", 1],
        "no checkpoint",
    ),
    "cosign_a_file_that_is_not_a_batch": (
        ["batch", "cosign", INPUTS, "--bls-key", "{payer}", "--log-key", "{payer}.pub"],
        "receipts: error:",
    ),
}


@pytest.mark.parametrize(("args", "match"), BAD_INPUT.values(), ids=BAD_INPUT)
def test_bad_input_exits_2_with_one_line(desk: Desk, args: list[object], match: str) -> None:
    names = {"db": desk.db, "new": desk.path("new.db"), "payer": desk.payer}
    filled = [a.format(**names) if isinstance(a, str) else a for a in args]
    before = desk.db.read_bytes()
    refused(2, *filled, match=match)
    assert not desk.path("new.db").exists()
    assert desk.db.read_bytes() == before


def test_audit_of_a_ledger_whose_tables_disagree_with_its_log_exits_1(desk: Desk) -> None:
    desk.hold_and_claim("a", seed=1)
    copy = desk.path("copy.db")
    shutil.copy(desk.db, copy)
    db = sqlite3.connect(copy)
    db.execute("UPDATE balances SET amount = amount + 1 WHERE kind = 'bond'")
    db.execute("UPDATE balances SET amount = amount - 1 WHERE kind = 'deposit'")
    db.commit()
    db.close()
    refused(1, "ledger", "audit", copy, match="differ from what its log rebuilds")
    db = sqlite3.connect(copy)
    db.execute("UPDATE assets SET supply = supply + 1")
    db.commit()
    db.close()
    refused(1, "ledger", "audit", copy, match="money was created or lost")
    refused(1, "ledger", "balances", copy, match="money was created or lost")


def test_claim_json_reports_the_claim(desk: Desk) -> None:
    request = desk.request("j", "--max-amount", 50, seed=8)
    ok("ledger", "hold", desk.db, request)
    receipt = desk.run(request, fee=3)
    shown = json.loads(ok("ledger", "claim", desk.db, receipt, "--model", MODEL, "--input",
                          INPUTS, "--json").stdout)  # fmt: skip
    envelope = Envelope.from_bytes(receipt.read_bytes())
    parsed = Receipt.decode(envelope.payload)
    assert shown["amount"] == 3 == parsed.meter.amount
    assert shown["request"] == str(parsed.request)
    assert shown["window_ends"] == NOW + WINDOW_S * 1000


@dataclass(frozen=True, slots=True)
class Batched:
    """A desk with a batch made and co-signed once, and more entries since, so that every
    command that writes a file would also have something new to write."""

    desk: Desk
    batch: Path
    auditor: Path
    signature: Path


@pytest.fixture
def batched(desk: Desk) -> Batched:
    d = desk
    d.hold_and_claim("a", seed=1)
    ok("log", "checkpoint", d.db, "--key", d.log_key)
    batch, auditor, signature = d.path("b.rbat"), d.path("auditor.pem"), d.path("s.sig")
    ok("batch", "make", d.db, "--out", batch)
    ok("keygen", "--scheme", "bls12-381", auditor, seed=40)
    ok("batch", "cosign", batch, "--bls-key", auditor, "--log-key", f"{d.log_key}.pub", "--out",
       signature)  # fmt: skip
    for _ in range(2):  # a checkpoint past the batch, and an entry past the checkpoint
        ok("ledger", "deposit", d.db, "--account", f"{d.payer}.pub", "--amount", 1, "--asset",
           "credit")  # fmt: skip
        ok("log", "checkpoint", d.db, "--key", d.log_key)
    ok("ledger", "deposit", d.db, "--account", f"{d.payer}.pub", "--amount", 1, "--asset",
       "credit")  # fmt: skip
    return Batched(d, batch, auditor, signature)


OUT_COMMANDS: dict[str, list[object]] = {
    "log_checkpoint": ["log", "checkpoint", "{db}", "--key", "{log_key}"],
    "log_prove": ["log", "prove", "{db}", "--entry", 0],
    "log_consistency": ["log", "consistency", "{db}", "--old-size", 1],
    "batch_make": ["batch", "make", "{db}"],
    "batch_make_again": ["batch", "make", "{db}", "--again", 0],
    "batch_cosign": [
        "batch",
        "cosign",
        "{batch}",
        "--bls-key",
        "{auditor}",
        "--log-key",
        "{log_key}.pub",
    ],
    "batch_aggregate": ["batch", "aggregate", "{batch}", "{signature}"],
    "batch_committee": ["batch", "committee", "{auditor}.pub"],
}


def _ledger_now(d: Desk) -> tuple[object, ...]:
    with _opened(d) as led:
        return state_of(led.store), led.store.checkpoints()


@pytest.mark.parametrize("args", OUT_COMMANDS.values(), ids=OUT_COMMANDS)
def test_every_out_option_refuses_an_existing_file_and_changes_nothing(
    batched: Batched, args: list[object]
) -> None:
    d = batched.desk
    names = {"db": d.db, "log_key": d.log_key, "batch": batched.batch,
             "auditor": batched.auditor, "signature": batched.signature}  # fmt: skip
    filled = [a.format(**names) if isinstance(a, str) else a for a in args]
    target = d.path("taken.out")
    target.write_bytes(b"keep me")
    before = _ledger_now(d)
    refused(2, *filled, "--out", target, match="already exists")
    assert target.read_bytes() == b"keep me"
    assert _ledger_now(d) == before
    ok(*filled, "--out", d.path("fresh.out"))  # onto a new file the command works
    assert d.path("fresh.out").stat().st_size > 0
