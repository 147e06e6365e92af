"""``receipts audit`` through click's runner: exit 0 when every audited receipt passed, 1 when
one failed (each listed with a dispute command that names files that exist), 2 for bad input
with one error line, no traceback, and no report file written; JSON and HTML outputs; the same
report from one worker, two, and a real loopback Dask cluster; a ledger's claims as the source;
hostile receipt folders, huge amounts, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from fixtures.models import BUILDERS, sample_inputs
from fixtures.population import CLOCK_MS, FAULT_NODE, Population, make_population
from receipts.codec import INT_MAX
from receipts.effects import FixedClock, seeded
from receipts.envelope import MAX_ENVELOPE_BYTES
from receipts.keys import PrivateKey
from receipts.meter import Price
from receipts.model import load_model_bytes
from receipts.objects import ObjectStore
from receipts.provider import Provider
from tests.clusterkit import dask_cluster, spawned_workers
from tests.conftest import FIXTURES, ROOT
from tests.settlekit import ORIGIN, PAYER

PER_PROVIDER = 60
AT_MS = CLOCK_MS + 60_000
SEED = "cli-audit"
MODEL = FIXTURES / "models" / "mlp.onnx"
INPUTS = FIXTURES / "inputs" / "mlp.npz"
PROVIDER_KEY = FIXTURES / "keys" / "provider_ed25519.pem"
REFEREE_PUB = FIXTURES / "keys" / "referee_ed25519.pem.pub"


def invoke(*args: object, now: int = AT_MS, seed: int = 5) -> Result:
    effects = {"clock": FixedClock(now), "random_bytes": seeded(seed)}
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=effects)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    return result


def audit(*args: object, **kwargs: Any) -> Result:
    return invoke("audit", *args, **kwargs)


def refused(*args: object, match: str) -> Result:
    """Exit 2 with one error line: the library's, or the ``Error:`` line closing click's usage
    block; nothing on stdout (no report was printed)."""
    result = audit(*args)
    assert result.exit_code == 2, result.output
    if result.stderr.startswith("Usage:"):
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, result.stderr
        [reason] = errors
    else:
        assert result.stderr.startswith("receipts: error: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        reason = result.stderr
    assert match in reason, reason
    assert result.stdout == "", result.stdout
    return result


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    return make_population(tmp_path_factory.mktemp("population"), per_provider=PER_PROVIDER)


@pytest.fixture(scope="module")
def honest(population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with only the honest providers' receipts (alpha holds the corrupted object)."""
    folder = tmp_path_factory.mktemp("honest") / "receipts"
    for name in ("alpha", "beta"):
        shutil.copytree(population.folder / name, folder / name)
    return folder


def report_json(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_bytes())
    assert isinstance(doc, dict)
    return doc


# --- verdicts and outputs ----------------------------------------------------------------------


def test_an_honest_population_exits_0_and_says_what_it_could_not_check(
    population: Population, honest: Path
) -> None:
    result = audit(honest, "--store", population.store, "--sample", 1.0, "--seed", SEED)
    assert result.exit_code == 0, result.output
    assert "OK: No receipt failed; 1 could not be checked" in result.stdout
    assert "Unchecked receipts (1)" in result.stdout and "a5 objects" in result.stdout
    assert result.stdout.endswith(f"replay with --seed {SEED} --at {AT_MS}\n")


def test_the_cheater_fails_the_audit_and_each_failed_receipt_has_a_runnable_dispute_command(
    population: Population, tmp_path: Path
) -> None:
    result = audit(population.folder, "--store", population.store, "--sample", 1.0)
    assert result.exit_code == 1, result.output
    assert "FAILED: 1 provider failed receipts" in result.stdout
    assert f"Failed receipts ({len(population.cheated)})" in result.stdout
    commands = [
        line.split("dispute: ", 1)[1]
        for line in result.stdout.splitlines()
        if line.lstrip().startswith("dispute: ")
    ]
    assert len(commands) == len(population.cheated)
    options = {o for p in cli.commands["dispute"].params for o in p.opts}
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ["receipts", "dispute"]
        assert Path(words[2]).is_file()  # the receipt file, as audited
        named = dict(zip(words[3::2], words[4::2], strict=True))
        assert set(named) <= options
        assert Path(named["--model"]).is_file() and Path(named["--input"]).is_file()


def test_json_has_the_documented_keys_and_html_is_one_self_contained_file(
    population: Population, tmp_path: Path
) -> None:
    out_json, out_html = tmp_path / "audit.json", tmp_path / "audit.html"
    result = audit(population.folder, "--store", population.store, "--sample", 1.0,
                   "--seed", SEED, "--json", out_json, "--html", out_html)  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = report_json(out_json)
    assert list(doc) == [
        "format", "version", "verdict", "source", "sampling", "seed", "confidence", "policy",
        "providers", "unattributed", "items", "duplicates", "not_checked",
    ]  # fmt: skip
    assert (doc["format"], doc["version"], doc["seed"]) == (
        "inference-receipts/audit-report", 1, SEED,
    )  # fmt: skip
    assert doc["verdict"]["ok"] is False
    assert doc["verdict"]["failing_providers"] == [population.keys[population.cheater]]
    failed = {i["receipt_id"] for i in doc["items"] if i["outcome"] == "failed"}
    assert failed == set(population.cheated)
    assert all((i["dispute"] is None) == (i["outcome"] != "failed") for i in doc["items"])
    page = out_html.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    for outside in ("<script", "<link", "<img", "src=", "http://", "https://", "@import"):
        assert outside not in page.lower(), outside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.html", "audit.json"]
    assert result.stderr == f"wrote {out_json}\nwrote {out_html}\n"


@pytest.mark.parametrize("which", ["--json", "--html"])
def test_an_existing_report_target_is_refused_before_the_work_and_kept(
    population: Population, tmp_path: Path, which: str
) -> None:
    kept, other = tmp_path / "kept", tmp_path / "other"
    kept.write_bytes(b"keep me")
    other_option = "--html" if which == "--json" else "--json"
    refused(population.folder, "--store", population.store, which, kept, other_option, other,
            match="already exists")  # fmt: skip
    assert kept.read_bytes() == b"keep me"
    assert not other.exists()


def test_a_non_terminal_stderr_gets_no_progress_bar(population: Population, honest: Path) -> None:
    result = audit(honest, "--store", population.store, "--sample", 1.0, "--seed", SEED)
    assert result.exit_code == 0
    assert result.stderr == ""


# --- the same report whoever runs it -----------------------------------------------------------


def _without_workers(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "policy": {k: v for k, v in doc["policy"].items() if k != "workers"}}


@pytest.mark.slow
def test_one_two_and_dask_workers_give_the_same_report(
    population: Population, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["receipts", "--store", "store", "--sample", 0.25, "--seed", SEED]
    docs, codes = {}, set()
    with dask_cluster(tmp_path, workers=2) as cluster:
        # Relative paths on purpose: the Dask workers run in another working folder.
        monkeypatch.chdir(population.folder.parent)
        for name, how in (
            ("one", ["--workers", 1]),
            ("two", ["--workers", 2]),
            ("dask", ["--scheduler", cluster.address]),
        ):
            out = tmp_path / f"{name}.json"
            codes.add(audit(*common, *how, "--json", out).exit_code)
            docs[name] = report_json(out)
    assert len(codes) == 1
    assert docs["dask"]["verdict"]["unchecked"] == 1  # the corrupted object, nothing more
    one = _without_workers(docs["one"])
    assert _without_workers(docs["two"]) == one
    assert _without_workers(docs["dask"]) == one


@pytest.mark.slow
def test_one_and_two_workers_give_byte_identical_json(
    population: Population, tmp_path: Path
) -> None:
    outs = []
    for workers in (1, 2):
        outs.append(tmp_path / f"{workers}.json")
        audit(population.folder, "--store", population.store, "--seed", SEED,
              "--workers", workers, "--json", outs[-1])  # fmt: skip
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.slow
def test_a_pool_started_where_the_receipts_folder_is_called_receipts_checks_every_receipt(
    population: Population, tmp_path: Path
) -> None:
    """``receipts audit receipts --workers 2`` from the folder that holds ``receipts/``, as
    the issue writes it: Python 3.11's forkserver imported ``receipts`` from that folder, so
    every worker failed to start, every receipt came back unchecked, and the audit exited 0
    with the cheater unseen (found on a clean clone). The console script, in a subprocess."""
    shutil.copytree(population.folder, tmp_path / "receipts")
    outs = []
    for workers in (1, 2):
        outs.append(tmp_path / f"{workers}.json")
        done = subprocess.run(
            [Path(sys.executable).with_name("receipts"), "audit", "receipts",
             "--store", population.store, "--sample", "1", "--seed", SEED, "--at", str(AT_MS),
             "--workers", str(workers), "--json", outs[-1]],
            cwd=tmp_path, capture_output=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr.decode()  # the cheater's receipts fail
        assert b"Traceback" not in done.stderr
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_a_replay_with_the_printed_seed_and_time_gives_the_same_json(
    population: Population, tmp_path: Path
) -> None:
    first = audit(population.folder, "--store", population.store, "--json", tmp_path / "a.json")
    replay = first.stdout.splitlines()[-1].removeprefix("replay with ").split()
    second = audit(population.folder, "--store", population.store, *replay,
                   "--json", tmp_path / "b.json", now=AT_MS + 3_600_000, seed=99)  # fmt: skip
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert second.stdout == first.stdout


# --- bad input: exit 2, one line, nothing written ----------------------------------------------


def _policy(tmp: Path, text: str) -> Path:
    path = tmp / "policy.toml"
    path.write_text(text)
    return path


MISSING_KEY = 'trusted_keys = ["missing.pub"]\n'
REFUSED = "tcp://127.0.0.1:9"  # discard: nothing listens there
QUICK = ("--scheduler-timeout", 1)

BAD_INPUT: dict[str, tuple[Any, str]] = {
    "source_a_random_file": (
        lambda t, p: [t / "random.bin", "--store", p.store],
        "is not a ledger database",
    ),
    "source_a_fifo": (lambda t, p: [t / "source.fifo", "--store", p.store], "no ledger at"),
    "source_an_empty_folder": (lambda t, p: [t / "empty", "--store", p.store], "nothing to audit"),
    "store_not_a_store": (lambda t, p: [p.folder, "--store", t], "not an object store"),
    "sample_and_count": (
        lambda t, p: [p.folder, "--store", p.store, "--sample", 0.1, "--count", 3],
        "--sample and --count are exclusive",
    ),
    "workers_and_scheduler": (
        lambda t, p: [p.folder, "--store", p.store, "--workers", 2, "--scheduler", "tcp://x:1"],
        "--workers and --scheduler are exclusive",
    ),
    "sample_above_one": (
        lambda t, p: [p.folder, "--store", p.store, "--sample", 1.5],
        "1.5 is not in the range",
    ),
    "policy_unknown_key": (
        lambda t, p: [p.folder, "--store", p.store, "--policy", _policy(t, "bogus = 1\n")],
        "unknown key(s) bogus",
    ),
    "policy_not_toml": (
        lambda t, p: [p.folder, "--store", p.store, "--policy", _policy(t, "exact = \n")],
        "not a TOML policy",
    ),
    "policy_missing_key_file": (
        lambda t, p: [p.folder, "--store", p.store, "--policy", _policy(t, MISSING_KEY)],
        "missing.pub",
    ),
    "scheduler_refused": (
        lambda t, p: [p.folder, "--store", p.store, "--scheduler", REFUSED, *QUICK],
        "cannot reach the Dask scheduler at tcp://127.0.0.1:9",
    ),
    "scheduler_not_an_address": (
        lambda t, p: [p.folder, "--store", p.store, "--scheduler", "nonsense"],
        "missing port number",
    ),
    "scheduler_tls_without_context": (
        lambda t, p: [p.folder, "--store", p.store, "--scheduler", "tls://127.0.0.1:9"],
        "cannot reach the Dask scheduler",
    ),
    "json_into_a_missing_folder": (
        lambda t, p: [p.folder, "--store", p.store, "--json", t / "missing" / "a.json"],
        "missing does not exist",
    ),
    "json_and_html_the_same_file": (
        lambda t, p: [p.folder, "--store", p.store, "--json", t / "a", "--html", t / "a"],
        "--json and --html name the same file",
    ),
}


@pytest.mark.parametrize(("make", "match"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    population: Population, tmp_path: Path, make: Any, match: str
) -> None:
    (tmp_path / "random.bin").write_bytes(os.urandom(1000))
    os.mkfifo(tmp_path / "source.fifo")
    (tmp_path / "empty").mkdir()
    args = make(tmp_path, population)
    before = sorted(tmp_path.iterdir())
    if "--json" not in args:
        args += ["--json", tmp_path / "out.json", "--html", tmp_path / "out.html"]
    started = time.monotonic()
    refused(*args, match=match)
    assert time.monotonic() - started < 5  # a scheduler given 1 s answers within it
    assert sorted(tmp_path.iterdir()) == before


@contextlib.contextmanager
def _stranger(reply: bytes | None) -> Iterator[str]:
    """A TCP server on loopback that is no Dask scheduler: it sends ``reply`` and hangs up, or
    (None) accepts and never says anything."""
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                conns.append(conn)
                if reply is not None:
                    conn.sendall(reply)
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in conns:
            conn.close()


@pytest.mark.parametrize(
    "reply", [None, b"HTTP/1.0 400 Bad Request\r\n\r\n"], ids=["silent", "http"]
)
def test_a_scheduler_address_where_no_dask_scheduler_answers_fails_in_time(
    population: Population, tmp_path: Path, reply: bytes | None
) -> None:
    # Before the probe, the silent peer hung the audit for good and the HTTP one raised
    # numpy's MemoryError (exit 3): Dask read the reply as a frame length.
    with _stranger(reply) as address:
        started = time.monotonic()
        refused(population.folder, "--store", population.store, "--scheduler", address,
                "--scheduler-timeout", 1, "--json", tmp_path / "a.json",
                match="cannot reach the Dask scheduler")  # fmt: skip
        assert time.monotonic() - started < 5
    assert not (tmp_path / "a.json").exists()


@pytest.mark.slow
def test_the_default_scheduler_timeout_is_ten_seconds(population: Population) -> None:
    started = time.monotonic()
    refused(population.folder, "--store", population.store, "--scheduler", "tcp://127.0.0.1:9",
            match="cannot reach the Dask scheduler")  # fmt: skip
    assert 9 < time.monotonic() - started < 15


# --- a ledger's claims as the source -----------------------------------------------------------


def _ok(*args: object, seed: int = 21) -> Result:
    result = invoke(*args, now=CLOCK_MS, seed=seed)
    assert result.exit_code == 0, result.output
    return result


def _claimed_ledger(root: Path) -> tuple[Path, Path]:
    """A ledger with three claims, the last of a run whose outputs the fault drill corrupted;
    every run filed its model, inputs and outputs in the store (``run --store``)."""
    db, store, payer = root / "ledger.db", root / "store", root / "payer.pem"
    PAYER.save(payer)
    _ok("ledger", "init", db, "--origin", ORIGIN, "--window", 60, "--slash", 30,
        "--referee", REFEREE_PUB)  # fmt: skip
    _ok("ledger", "deposit", db, "--account", f"{payer}.pub", "--amount", 1000, "--asset",
        "credit")  # fmt: skip
    _ok("ledger", "bond", db, "--account", f"{PROVIDER_KEY}.pub", "--amount", 100, "--asset",
        "credit")  # fmt: skip
    for n, fault in enumerate((None, None, FAULT_NODE)):
        request, out = root / f"{n}.rreq", root / f"run{n}"
        _ok("request", MODEL, "--input", INPUTS, "--payer-key", payer, "--asset", "credit",
            "--max-amount", 50, "--ledger", ORIGIN, "--out", request, seed=n + 1)  # fmt: skip
        _ok("ledger", "hold", db, request)
        drill = ["--inject-fault", fault] if fault else []
        _ok("run", MODEL, "--input", INPUTS, "--key", PROVIDER_KEY, "--out", out, "--request",
            request, "--base-fee", 7, "--store", store, *drill, seed=100 + n)  # fmt: skip
        _ok("ledger", "claim", db, out / "receipt.rcpt", "--model", MODEL)
    return db, store


def test_a_ledger_is_audited_claim_by_claim(tmp_path: Path) -> None:
    db, store = _claimed_ledger(tmp_path)
    out = tmp_path / "audit.json"
    result = audit(db, "--store", store, "--sample", 1.0, "--seed", SEED, "--json", out)
    assert result.exit_code == 1, result.output
    doc = report_json(out)
    sources = {i["source"]: i["outcome"] for i in doc["items"]}
    assert sorted(sources.values()) == ["failed", "passed", "passed"]
    assert all(s.startswith("ledger entry ") for s in sources)
    [failed] = [i for i in doc["items"] if i["outcome"] == "failed"]
    assert failed["findings"][0]["rung"] == "reexec"
    # A claim has no receipt file: the command keeps the placeholder; the objects are filed.
    words = shlex.split(failed["dispute"])
    assert words[2] == "RECEIPT"
    assert Path(words[words.index("--model") + 1]).is_file()
    assert Path(words[words.index("--input") + 1]).is_file()
    assert f"  {failed['source']}  receipt {failed['receipt_id']}" in result.stdout


def test_a_damaged_ledger_entry_is_reported_and_the_other_claims_audited(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    db, store = _claimed_ledger(tmp_path)
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        [[last]] = connection.execute("SELECT max(idx) FROM entries").fetchall()
        connection.execute("UPDATE entries SET data = ? WHERE idx = ?", (b"\x00junk", last))
    out = tmp_path / "audit.json"
    result = audit(db, "--store", store, "--sample", 1.0, "--seed", SEED, "--json", out)
    doc = report_json(out)
    outcomes = {i["source"]: i["outcome"] for i in doc["items"]}
    assert outcomes[f"ledger entry {last}"] == "unchecked"
    assert len(outcomes) >= 3, result.output  # the other claims were still audited


def test_a_ledger_without_claims_is_nothing_to_audit(tmp_path: Path) -> None:
    db, store = tmp_path / "ledger.db", ObjectStore.create(tmp_path / "store").root
    _ok("ledger", "init", db, "--origin", ORIGIN, "--window", 60, "--slash", 30,
        "--referee", REFEREE_PUB)  # fmt: skip
    refused(db, "--store", store, match="nothing to audit (no claim found)")


# --- hostile folders, amounts and stores -------------------------------------------------------


def test_hostile_files_are_reported_and_both_reports_are_written(
    population: Population, tmp_path: Path
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for n in range(3):
        shutil.copy(population.folder / "beta" / f"{n:06d}.rcpt", folder)
    cheated = os.fsdecode(b"cheated-\xfe.rcpt")  # not UTF-8: a surrogate escape in Python
    shutil.copy(population.folder / population.cheater / "000024.rcpt", folder / cheated)
    (folder / os.fsdecode(b"junk-\xff\x1b[31m.rcpt")).write_bytes(b"\x00junk")
    os.mkfifo(folder / "pipe.rcpt")
    (folder / "self.rcpt").symlink_to("self.rcpt")
    (folder / "loop").symlink_to(".")
    with (folder / "huge.rcpt").open("wb") as f:
        f.truncate(MAX_ENVELOPE_BYTES + 1)
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    result = audit(folder, "--store", population.store, "--sample", 1.0, "--seed", SEED,
                   "--json", out_json, "--html", out_html)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.stdout
    doc = report_json(out_json)
    why = {i["source"]: (i["outcome"], i["findings"][0]["step"] if i["findings"] else "")
           for i in doc["items"]}  # fmt: skip
    assert why == {
        **{f"{n:06d}.rcpt": ("passed", "") for n in range(3)},
        cheated: ("failed", "11 outputs"),
        os.fsdecode(b"junk-\xff\x1b[31m.rcpt"): ("unchecked", "a2 decode"),
        "pipe.rcpt": ("unchecked", "a1 read"),
        "self.rcpt": ("unchecked", "a1 read"),
        "huge.rcpt": ("unchecked", "a1 read"),
    }  # the symlinked folder was not followed: nothing was read twice
    page = out_html.read_bytes().decode("utf-8")  # before the fix: UnicodeEncodeError, exit 3
    assert "\\udcfe" in page


def test_the_html_report_carries_no_control_characters(
    population: Population, tmp_path: Path
) -> None:
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "junk-\x1b[31m.rcpt").write_bytes(b"\x00junk")
    out = tmp_path / "a.html"
    audit(folder, "--store", population.store, "--html", out)
    page = out.read_text("utf-8")
    assert not [c for c in page if ord(c) < 32 and c not in "\n\t"]


def test_the_dispute_command_of_a_non_utf8_file_name_names_that_file(
    population: Population, tmp_path: Path
) -> None:
    folder = tmp_path / "names"
    folder.mkdir()
    shutil.copy(population.folder / population.cheater / "000024.rcpt",
                folder / os.fsdecode(b"c\xfe.rcpt"))  # fmt: skip
    result = audit(folder, "--store", population.store, "--sample", 1.0)
    [command] = [line.split("dispute: ", 1)[1] for line in result.stdout.splitlines()
                 if "dispute: " in line]  # fmt: skip
    receipt = command.split(" ")[2]
    assert receipt.startswith("$'") and "\\xfe" in receipt  # bash's quoting of the real bytes
    shell = subprocess.run(["bash", "-c", f"test -f {receipt}"], check=False)
    assert shell.returncode == 0, receipt


def _rich_population(root: Path, *, cheat: bool) -> tuple[Path, Path]:
    """Three receipts of one provider, each metered at the largest amount a receipt can hold
    (2^64 - 1), the last one faulted when ``cheat``."""
    store = ObjectStore.create(root / "store")
    model = load_model_bytes(BUILDERS["mlp"]().SerializeToString())
    store.add_model(model)
    key = PrivateKey.generate(random_bytes=seeded(11))
    price = Price(unit_price=0, base_fee=INT_MAX, asset="credit")
    provider = Provider(key, price=price, clock=FixedClock(CLOCK_MS), random_bytes=seeded(12))
    session = provider.session(model)
    folder = root / "receipts"
    folder.mkdir()
    for n in range(3):
        inputs = sample_inputs("mlp", batch=1, seed=n)
        issued = session.run(inputs, inject_fault=FAULT_NODE if cheat and n == 2 else None)
        store.add_tensors(inputs)
        store.add_tensors(issued.outputs)
        (folder / f"{n}.rcpt").write_bytes(issued.to_bytes())
    return folder, store.root


@pytest.mark.parametrize(
    ("cheat", "sample", "code", "at_risk"),
    [(False, 0.0, 0, 3 * INT_MAX), (False, 1.0, 0, 0), (True, 1.0, 1, INT_MAX)],
    ids=["nothing_audited_everything_at_risk", "all_audited_none_at_risk", "one_failed"],
)
def test_amounts_near_2_64_add_up_exactly(
    tmp_path: Path, cheat: bool, sample: float, code: int, at_risk: int
) -> None:
    folder, store = _rich_population(tmp_path, cheat=cheat)
    policy = _policy(tmp_path, "min_per_provider = 0\n")
    out = tmp_path / "a.json"
    result = audit(folder, "--store", store, "--sample", sample, "--policy", policy,
                   "--json", out, "--html", tmp_path / "a.html")  # fmt: skip
    assert result.exit_code == code, result.output
    [provider] = report_json(out)["providers"]
    [amounts] = provider["amounts"]
    assert amounts["covered"] == 3 * INT_MAX  # beyond 64 bits, exact
    assert amounts["at_risk"] == at_risk
    assert amounts["failed"] == (INT_MAX if cheat else 0)
    assert f"{at_risk:,} credit" in result.stdout


def test_a_provider_with_nothing_sampled_has_everything_at_risk(
    population: Population, honest: Path, tmp_path: Path
) -> None:
    policy = _policy(tmp_path, "min_per_provider = 0\n")
    out = tmp_path / "a.json"
    result = audit(honest, "--store", population.store, "--count", 0, "--policy", policy,
                   "--json", out)  # fmt: skip
    assert result.exit_code == 0
    for provider in report_json(out)["providers"]:
        assert (provider["audited"], provider["failure_rate_upper"]) == (0, 1.0)
        [amounts] = provider["amounts"]
        assert amounts["at_risk"] == amounts["covered"]


def test_count_0_and_sample_0_still_take_the_policy_minimum(
    population: Population, honest: Path
) -> None:
    for how in (["--count", 0], ["--sample", 0]):
        result = audit(honest, "--store", population.store, *how, "--seed", SEED)
        assert result.exit_code == 0
        assert "at least 5 per provider" in result.stdout
        rows = [line.split() for line in result.stdout.splitlines() if "credit" in line]
        assert [row[2] for row in rows] == ["5", "5"]  # audited, per provider


def test_a_folder_of_undecodable_files_exits_0_and_says_none_could_be_checked(
    population: Population, tmp_path: Path
) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.rcpt").write_bytes(b"junk %d" % n)
    out = tmp_path / "a.json"
    result = audit(folder, "--store", population.store, "--json", out)
    assert result.exit_code == 0, result.output
    assert "OK: No receipt failed; 3 could not be checked" in result.stdout
    assert report_json(out)["unattributed"]["seen"] == 3


def test_a_store_object_replaced_by_a_link_leaves_its_receipts_unchecked(
    population: Population, honest: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(population.store, store, symlinks=True)
    [model] = (store / "models").rglob("*.onnx")
    moved = tmp_path / "model.onnx"
    model.rename(moved)
    model.symlink_to(moved)  # the same bytes, but not an object of the store
    result = audit(honest, "--store", store, "--seed", SEED)
    assert result.exit_code == 0, result.output
    assert f"Unchecked receipts ({2 * PER_PROVIDER})" in result.stdout
    assert "is a link, not an object" in result.stdout


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_mid_audit_exits_130_and_leaves_no_report_or_worker(
    population: Population, tmp_path: Path
) -> None:
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    command = [
        sys.executable, "-m", "cli", "audit", population.folder, "--store", population.store,
        "--sample", "1", "--workers", "2", "--json", out_json, "--html", out_html,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    me = psutil.Process(process.pid)
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline and process.poll() is None:
        workers = spawned_workers(me)  # there only while the checks run
        time.sleep(0.01)
    assert workers, "the audit ended before its pool started"
    family = me.children(recursive=True)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.decode().splitlines()[-1] == "receipts: interrupted"
    assert b"Traceback" not in err
    assert not out_json.exists() and not out_html.exists()
    assert list(tmp_path.iterdir()) == []
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == []
