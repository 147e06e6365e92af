"""The TEE fixtures do what they say, and the CLI's attestation commands and tee options hold.

Covers fixtures/tee (attested receipts, simulated documents, refused cases), the real AWS
document through ``receipts attestation verify``, ``receipts run --attest-sim`` and
``receipts verify --tee-root``, and bad input on each (exit code 2, one line, no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from click.testing import CliRunner, Result

import receipts.errors as errors
from cli.main import cli
from receipts import Policy, Verifier
from receipts.attachments import NITRO_ATTESTATION, Attachment
from receipts.effects import FixedClock, seeded
from receipts.envelope import Envelope
from receipts.nitro import NitroPolicy, verify_document
from receipts.report import Status
from tests.conftest import FIXTURES, fixture_public

TEE = FIXTURES / "tee"
NITRO = FIXTURES / "nitro"
REAL = NITRO / "real-attestation-2022-07-26.cbor"
AWS_ROOT = NITRO / "aws-nitro-enclaves-root-g1.pem"
REAL_TIME = 1658860752566
SIM_ROOT = TEE / "sim-root" / "root.pem"
CASES = json.loads((TEE / "cases.json").read_text())
VECTORS = json.loads((FIXTURES / "vectors.json").read_text())["tee"]


def _policy(**options: Any) -> Policy:
    root = NitroPolicy.load_root(SIM_ROOT.read_bytes())
    return Policy(trusted_keys=(fixture_public(),), tee=NitroPolicy(roots=(root,), **options))


def _invoke(*args: str, clock_ms: int | None = None) -> Result:
    obj = {"clock": FixedClock(clock_ms)} if clock_ms is not None else None
    return CliRunner().invoke(cli, list(args), obj=obj)


# --- fixtures ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["attested_receipt.rcpt", "attested_key.rcpt"])
def test_attested_fixture_passes_the_tee_rung(name: str) -> None:
    report = Verifier(_policy()).check((TEE / name).read_bytes())
    assert report, report.first_error()
    mode = report.rung("tee").steps[-1].details["mode"]
    assert mode == ("receipt" if name == "attested_receipt.rcpt" else "key")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_refused_case_fails_its_step_with_its_error_class(case: dict[str, str]) -> None:
    report = Verifier(_policy()).check((TEE / "refused" / case["name"]).read_bytes())
    assert report.rung("signature").status is Status.PASSED  # attachments are outside it
    failed = report.rung("tee").failures()
    assert [s.step for s in failed] == [case["step"]]
    assert type(failed[0].error).__name__ == case["error"]
    with pytest.raises(getattr(errors, case["error"])):
        Verifier(_policy()).verify((TEE / "refused" / case["name"]).read_bytes())


def test_debug_case_passes_only_when_debug_enclaves_are_allowed() -> None:
    data = (TEE / "refused" / "debug_enclave.rcpt").read_bytes()
    assert Verifier(_policy(allow_debug=True)).check(data)


@pytest.mark.parametrize(
    "name", ["sim_document.cbor", "sim_document_tagged.cbor", "sim_document_indefinite.cbor"]
)
def test_simulated_documents_verify_at_their_time(name: str) -> None:
    root = NitroPolicy.load_root(SIM_ROOT.read_bytes())
    doc = verify_document(
        (TEE / name).read_bytes(),
        NitroPolicy(roots=(root,)),
        at_ms=VECTORS["sim_document"]["timestamp"],
        user_data=bytes.fromhex(VECTORS["sim_document"]["user_data"]),
    )
    assert doc.signed.sign1.tagged is (name == "sim_document_tagged.cbor")


# --- receipts attestation verify / inspect ---------------------------------------------------


def test_real_document_verifies_at_its_timestamp_through_the_cli() -> None:
    result = _invoke(
        "attestation", "verify", str(REAL), "--root", str(AWS_ROOT),
        "--at", str(REAL_TIME), "--allow-debug",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.output
    assert "PASS  N4 signature" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--at", str(REAL_TIME)], "PCR0 is all zero"),  # a debug enclave, not allowed
        (["--allow-debug"], "expired"),  # checked today
        (["--at", str(REAL_TIME), "--allow-debug", "--user-data", "00"], "user_data"),
    ],
    ids=["debug_refused", "expired_today", "other_user_data"],
)
def test_real_document_is_refused_with_the_failed_step(args: list[str], fragment: str) -> None:
    result = _invoke("attestation", "verify", str(REAL), "--root", str(AWS_ROOT), *args)
    assert result.exit_code == 1, result.output
    assert fragment in result.output
    assert "REFUSED" in result.output


def test_real_document_with_another_root_is_refused() -> None:
    result = _invoke(
        "attestation", "verify", str(REAL), "--root", str(SIM_ROOT),
        "--at", str(REAL_TIME), "--allow-debug", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    view = json.loads(result.output)
    failed = [s for s in view["steps"] if s["status"] == "failed"]
    assert [(s["step"], s["error"]) for s in failed] == [("N3 chain", "CertificateError")]


def test_inspect_shows_the_fields_unverified() -> None:
    result = _invoke("attestation", "inspect", str(REAL), "--json")
    assert result.exit_code == 0
    view = json.loads(result.output)
    assert view["verified"] is False
    assert view["timestamp"] == REAL_TIME
    assert view["debug"] is True
    assert view["user_data"] == "00" * 32
    assert len(view["certificates"]) == 5
    text = _invoke("attestation", "inspect", str(REAL)).output
    assert "NOT verified" in text
    assert "DEBUG" in text


# --- run --attest-sim, verify --tee-root ---------------------------------------------------


def test_run_with_the_simulator_then_verify_with_its_root(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert _invoke("attestation", "sim-init", str(sim)).exit_code == 0
    assert (sim / "root-key.pem").stat().st_mode & 0o077 == 0
    out = tmp_path / "out"
    result = _invoke(
        "run", str(FIXTURES / "models" / "mlp.onnx"),
        "--input", str(FIXTURES / "inputs" / "mlp.npz"),
        "--key", str(FIXTURES / "keys" / "provider_ed25519.pem"),
        "--out", str(out), "--attest-sim", str(sim), "--attest-mode", "key",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "SIMULATED, key mode" in result.output
    receipt = str(out / "receipt.rcpt")
    pub = str(FIXTURES / "keys" / "provider_ed25519.pem.pub")
    good = _invoke("verify", receipt, "--provider", pub, "--tee-root", str(sim / "root.pem"))
    assert good.exit_code == 0, good.output
    assert "17 binding: key mode" in good.output
    assert "no --pcr given" in good.output
    aws = _invoke("verify", receipt, "--provider", pub, "--tee-root", str(AWS_ROOT))
    assert aws.exit_code == 1
    assert "not a pinned root" in aws.output


def test_verify_takes_a_document_beside_the_receipt() -> None:
    # The key-mode document of the attested fixture, supplied beside the bare receipt.
    from receipts.envelope import Envelope  # noqa: PLC0415 - only this test reads envelopes

    keyed = Envelope.from_bytes((TEE / "attested_key.rcpt").read_bytes())
    report = Verifier(_policy()).check(
        (TEE / "refused" / "no_attestation.rcpt").read_bytes(),
        attestations=[keyed.attachments[0].body],
    )
    # no_attestation is the per-receipt receipt stripped: same key, so key mode binds it.
    assert report, report.first_error()


def test_verify_with_expected_pcrs(tmp_path: Path) -> None:
    pcr0 = json.loads(
        _invoke("attestation", "inspect", str(TEE / "sim_document.cbor"), "--json").output
    )["pcrs"]["0"]
    receipt = str(TEE / "attested_receipt.rcpt")
    ok = _invoke("verify", receipt, "--tee-root", str(SIM_ROOT), "--pcr", f"0={pcr0}")
    assert ok.exit_code == 0, ok.output
    bad = _invoke("verify", receipt, "--tee-root", str(SIM_ROOT), "--pcr", f"0={'ab' * 48}")
    assert bad.exit_code == 1
    assert "N5 measurements: PCR0" in bad.output


def test_text_in_an_added_attachment_cannot_drive_the_terminal(tmp_path: Path) -> None:
    # Attachments are outside the signature: anyone can add one. A document whose payload has an
    # unknown field named with escape sequences reaches the verdict line; it must be escaped.
    envelope = Envelope.from_bytes((TEE / "refused" / "no_attestation.rcpt").read_bytes())
    payload = cbor2.dumps({"\x1b]2;owned\x07\x1b[2J": 1})
    doc = cbor2.dumps([cbor2.dumps({1: -35}), {}, payload, bytes(96)])
    path = tmp_path / "receipt.rcpt"
    path.write_bytes(
        envelope.attach(Attachment(type=NITRO_ATTESTATION, version=1, body=doc)).to_bytes()
    )
    result = CliRunner().invoke(cli, ["verify", str(path), "--tee-root", str(SIM_ROOT)], color=True)
    assert result.exit_code == 1
    assert "unknown field(s) '\\x1b]2;owned\\x07" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output


# --- bad input: exit code 2, one line, no traceback ----------------------------------------


def _garbage(tmp: Path) -> Path:
    path = tmp / "garbage.cbor"
    path.write_bytes(b"\x84\x44garbage")
    return path


def _not_pem(tmp: Path) -> Path:
    path = tmp / "root.pem"
    path.write_text("not a certificate\n")
    return path


BAD = {
    "truncated_document": lambda t: ["attestation", "verify", str(_garbage(t)),
                                     "--root", str(AWS_ROOT)],
    "inspect_garbage": lambda t: ["attestation", "inspect", str(_garbage(t))],
    "root_not_pem": lambda t: ["attestation", "verify", str(REAL), "--root", str(_not_pem(t))],
    "root_missing": lambda t: ["attestation", "verify", str(REAL), "--root", str(t / "none")],
    "document_is_a_folder": lambda t: ["attestation", "inspect", str(t)],
    "pcr_not_hex": lambda t: ["attestation", "verify", str(REAL), "--root", str(AWS_ROOT),
                              "--pcr", "0=zz"],
    "pcr_index_32": lambda t: ["attestation", "verify", str(REAL), "--root", str(AWS_ROOT),
                               "--pcr", f"32={'00' * 48}"],
    "pcr_index_underscore": lambda t: ["attestation", "verify", str(REAL), "--root",
                                       str(AWS_ROOT), "--pcr", f"1_0={'00' * 48}"],
    "pcr_index_signed": lambda t: ["attestation", "verify", str(REAL), "--root", str(AWS_ROOT),
                                   "--pcr", f"+1={'00' * 48}"],
    "pcr_twice": lambda t: ["verify", str(TEE / "attested_receipt.rcpt"), "--tee-root",
                            str(SIM_ROOT), "--pcr", f"0={'00' * 48}", "--pcr", f"0={'11' * 48}"],
    "user_data_not_hex": lambda t: ["attestation", "verify", str(REAL), "--root", str(AWS_ROOT),
                                    "--user-data", "xyz"],
    "user_data_with_space": lambda t: ["attestation", "verify", str(REAL), "--root",
                                       str(AWS_ROOT), "--user-data", "00 11"],
    "tee_max_age_without_root": lambda t: ["verify", str(TEE / "attested_receipt.rcpt"),
                                           "--tee-max-age", "60"],
    "pcr_without_root": lambda t: ["verify", str(TEE / "attested_receipt.rcpt"),
                                   "--pcr", f"0={'00' * 48}"],
    "sim_root_missing": lambda t: ["run", str(FIXTURES / "models" / "mlp.onnx"),
                                   "--input", str(FIXTURES / "inputs" / "mlp.npz"),
                                   "--key", str(FIXTURES / "keys" / "provider_ed25519.pem"),
                                   "--out", str(t / "out"), "--attest-sim", str(t)],
    "attestation_garbage": lambda t: ["verify", str(TEE / "refused" / "no_attestation.rcpt"),
                                      "--tee-root", str(SIM_ROOT),
                                      "--attestation", str(_garbage(t))],
}  # fmt: skip


@pytest.mark.parametrize("make", BAD.values(), ids=BAD.keys())
def test_bad_input_exits_2_with_one_line(make: Any, tmp_path: Path) -> None:
    result = _invoke(*make(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sim_init_never_replaces_a_root(tmp_path: Path) -> None:
    assert _invoke("attestation", "sim-init", str(tmp_path)).exit_code == 0
    before = (tmp_path / "root.pem").read_bytes()
    again = _invoke("attestation", "sim-init", str(tmp_path))
    assert again.exit_code == 2
    assert (tmp_path / "root.pem").read_bytes() == before


def test_sim_init_writes_nothing_beside_an_existing_root_certificate(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_text("someone else's root\n")
    result = _invoke("attestation", "sim-init", str(tmp_path))
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.pem"]


def test_simulator_roots_differ_by_randomness(tmp_path: Path) -> None:
    for seed in (1, 2):
        result = CliRunner().invoke(
            cli, ["attestation", "sim-init", str(tmp_path / str(seed))],
            obj={"random_bytes": seeded(seed)},
        )  # fmt: skip
        assert result.exit_code == 0
    assert (tmp_path / "1" / "root.pem").read_bytes() != (tmp_path / "2" / "root.pem").read_bytes()


def test_tee_max_age_refuses_an_old_document() -> None:
    receipt = str(TEE / "attested_receipt.rcpt")
    # The fixture's document was made at the fixtures' clock (2026-09-21); checked a day later
    # it is one day old.
    day_later = VECTORS["sim_document"]["timestamp"] + 86_400_000
    args = ["verify", receipt, "--tee-root", str(SIM_ROOT)]
    assert _invoke(*args, "--tee-max-age", "172800", clock_ms=day_later).exit_code == 0
    old = _invoke(*args, "--tee-max-age", "3600", clock_ms=day_later)
    assert old.exit_code == 1
    assert "document time:" in old.output
