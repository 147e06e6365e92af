"""The snarkjs driver (``circuits.snarkjs``): deterministic beacon-only files, and every failure a
one-line ``ProverError`` (never a traceback from the subprocess, never a half-written file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import circuits.snarkjs as driver
from circuits.r1cs import R1CS, Constraint, LinearCombination
from circuits.snarkjs import SNARKJS, Snarkjs
from receipts.errors import ProverError
from tests.conftest import FIXTURES

ZK = FIXTURES / "zk"
needs_snarkjs = pytest.mark.skipif(
    not SNARKJS.exists(), reason="snarkjs is not installed (`make setup` runs npm ci)"
)


@pytest.fixture(scope="module")
def snarkjs() -> Snarkjs:
    return Snarkjs.locate(timeout_s=120)


def _one_line(error: pytest.ExceptionInfo[ProverError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_a_missing_snarkjs_is_a_one_line_prover_error(tmp_path: Path) -> None:
    with pytest.raises(ProverError, match="make setup") as caught:
        Snarkjs.locate(link=tmp_path / "node_modules" / ".bin" / "snarkjs")
    _one_line(caught)


def test_a_missing_node_is_a_one_line_prover_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver.shutil, "which", lambda _name: None)
    with pytest.raises(ProverError, match="node is not installed") as caught:
        Snarkjs.locate()
    _one_line(caught)


def test_an_interpreter_that_cannot_run_is_a_prover_error(tmp_path: Path) -> None:
    broken = Snarkjs(node=tmp_path / "no-node", cli=tmp_path / "cli.cjs")
    with pytest.raises(ProverError, match="cannot run snarkjs") as caught:
        broken.run("r1cs", "info", tmp_path / "c.r1cs")
    _one_line(caught)


@pytest.mark.parametrize("power", [0, 29, -1])
def test_a_power_outside_what_snarkjs_makes_is_refused(power: int, tmp_path: Path) -> None:
    broken = Snarkjs(node=tmp_path / "no-node", cli=tmp_path / "cli.cjs")  # never runs
    with pytest.raises(ProverError, match="outside"):
        broken.new_ptau(power, tmp_path / "x.ptau")


def test_a_cached_ptau_is_not_made_again(tmp_path: Path) -> None:
    shutil.copy(ZK / "pot4_beacon.ptau", tmp_path / "pot4_beacon.ptau")
    broken = Snarkjs(node=tmp_path / "no-node", cli=tmp_path / "cli.cjs")  # would fail if run
    assert broken.cached_ptau(4, tmp_path) == (tmp_path / "pot4_beacon.ptau").resolve()


@needs_snarkjs
def test_the_beacon_only_ptau_is_deterministic(snarkjs: Snarkjs, tmp_path: Path) -> None:
    made = snarkjs.cached_ptau(4, tmp_path)
    assert made.read_bytes() == (ZK / "pot4_beacon.ptau").read_bytes()


@needs_snarkjs
def test_setup_and_beacon_reproduce_the_committed_keys(snarkjs: Snarkjs, tmp_path: Path) -> None:
    folder = ZK / "multiply"
    zkey = snarkjs.zkey_beacon(
        snarkjs.setup(folder / "circuit.r1cs", ZK / "pot4_beacon.ptau", tmp_path / "0.zkey"),
        tmp_path / "1.zkey",
    )
    assert zkey.read_bytes() == (folder / "circuit.zkey").read_bytes()
    vkey = snarkjs.export_verification_key(zkey, tmp_path / "vk.json")
    assert vkey.read_bytes() == (folder / "verification_key.json").read_bytes()


@needs_snarkjs
def test_a_circuit_too_big_for_the_ptau_fails_and_leaves_no_key(
    snarkjs: Snarkjs, tmp_path: Path
) -> None:
    # snarkjs logs this error yet exits 0 and leaves an empty zkey behind.
    lc = LinearCombination.of
    big = R1CS(
        n_wires=4, n_pub_out=1, n_pub_in=1, n_prv_in=1,
        constraints=(Constraint(lc({2: 1}), lc({3: 1}), lc({1: 1})),) * 20,
    )  # fmt: skip
    (tmp_path / "big.r1cs").write_bytes(big.to_bytes())
    with pytest.raises(ProverError, match="circuit too big") as caught:
        snarkjs.setup(tmp_path / "big.r1cs", ZK / "pot4_beacon.ptau", tmp_path / "big.zkey")
    assert _one_line(caught).startswith("snarkjs groth16 setup failed: ")
    assert not (tmp_path / "big.zkey").exists()


@needs_snarkjs
def test_proving_from_a_file_that_is_not_a_witness_fails(snarkjs: Snarkjs, tmp_path: Path) -> None:
    with pytest.raises(ProverError, match="Invalid File format") as caught:
        snarkjs.prove(
            ZK / "multiply" / "circuit.zkey",
            ZK / "multiply" / "circuit.r1cs",
            tmp_path / "p.json",
            tmp_path / "s.json",
        )
    _one_line(caught)
    assert not (tmp_path / "p.json").exists()


@needs_snarkjs
def test_a_timeout_is_a_prover_error(tmp_path: Path) -> None:
    impatient = Snarkjs.locate(timeout_s=0.001)
    with pytest.raises(ProverError, match="timed out") as caught:
        impatient.new_ptau(4, tmp_path / "x.ptau")
    _one_line(caught)
    assert list(tmp_path.iterdir()) == []


@needs_snarkjs
def test_snarkjs_verify_answers_true_and_false(snarkjs: Snarkjs, tmp_path: Path) -> None:
    folder = ZK / "multiply"
    vkey, proof = folder / "verification_key.json", folder / "proof.json"
    assert snarkjs.verify(vkey, folder / "public.json", proof)
    (tmp_path / "public.json").write_text('["12", "4"]')
    assert not snarkjs.verify(vkey, tmp_path / "public.json", proof)
    (tmp_path / "garbage.json").write_text("{")
    assert not snarkjs.verify(tmp_path / "garbage.json", folder / "public.json", proof)


def test_the_ptau_header_states_its_power(tmp_path: Path) -> None:
    head = (FIXTURES / "zk" / "pot4_beacon.ptau").read_bytes()[:128]
    assert driver.ptau_power(head) == 4
    assert driver.ptau_power(b"ptau" + bytes(124)) is None  # section 0: not a layout it knows
    assert driver.ptau_power(b"zkey" + head[4:]) is None
    assert driver.ptau_power(head[:20]) is None
