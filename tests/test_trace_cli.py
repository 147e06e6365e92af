"""The trace commands through click's runner: run --trace/--inject-fault, spot-check, dispute,
judge; their files, outputs and exit codes (0 / 1 / 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from receipts.evidence import Evidence
from receipts.referee import read_ruling
from tests.conftest import FIXTURES
from tests.tracekit import referee_key, rounds_bound

MODEL = str(FIXTURES / "models" / "convnet.onnx")
INPUTS = str(FIXTURES / "inputs" / "convnet.npz")
OTHER_MODEL = str(FIXTURES / "models" / "mlp.onnx")
KEYS = FIXTURES / "keys"
PROVIDER_KEY = str(KEYS / "provider_ed25519.pem")
CHALLENGER_KEY = str(KEYS / "challenger_ed25519.pem")
REFEREE_KEY = str(KEYS / "referee_ed25519.pem")
NODES = 10  # convnet


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("receipts: error:")
    assert result.stderr.count("\n") == 1
    assert fragment in result.stderr


@dataclass(frozen=True, slots=True)
class Run:
    out: Path

    @property
    def receipt(self) -> Path:
        return self.out / "receipt.rcpt"

    @property
    def trace(self) -> Path:
        return self.out / "trace.rtrc"


@dataclass(frozen=True, slots=True)
class Runs:
    honest: Run
    drill: Run
    honest_stdout: str
    drill_stdout: str
    folder: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folder = tmp_path_factory.mktemp("cli")
    base = ["run", MODEL, "--input", INPUTS, "--key", PROVIDER_KEY, "--trace"]
    honest = invoke(*base, "--out", folder / "honest")
    drill = invoke(*base, "--out", folder / "drill", "--inject-fault", "relu1")
    assert honest.exit_code == 0, honest.output
    assert drill.exit_code == 0, drill.output
    return Runs(
        honest=Run(folder / "honest"),
        drill=Run(folder / "drill"),
        honest_stdout=honest.stdout,
        drill_stdout=drill.stdout,
        folder=folder,
    )


def spot_check(run: Run, *extra: str | Path) -> Result:
    return invoke(
        "spot-check", run.receipt, "--model", MODEL, "--input", INPUTS, "--trace", run.trace, *extra
    )


def dispute(run: Run, out: Path, *extra: str | Path) -> Result:
    return invoke(
        "dispute",
        run.receipt,
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--trace",
        run.trace,
        "--key",
        CHALLENGER_KEY,
        "--out",
        out,
        *extra,
    )


def judge(evidence: Path, out: Path, *extra: str | Path, model: str = MODEL) -> Result:
    return invoke("judge", evidence, "--model", model, "--key", REFEREE_KEY, "--out", out, *extra)


@pytest.fixture(scope="module")
def evidence(runs: Runs) -> Path:
    path = runs.folder / "drill.revd"
    assert dispute(runs.drill, path).exit_code == 0
    return path


# -- run ---------------------------------------------------------------------------------------


def test_traced_run_writes_the_trace_and_states_its_commitment(runs: Runs) -> None:
    files = ["outputs.npz", "receipt.rcpt", "trace.rtrc"]
    assert sorted(p.name for p in runs.honest.out.iterdir()) == files
    assert f"trace        {NODES} nodes, root sha256:" in runs.honest_stdout
    assert "DRILL" not in runs.honest_stdout
    assert "DRILL        node relu1 corrupted on purpose; this receipt is WRONG" in (
        runs.drill_stdout
    )


def test_run_inspect_shows_the_trace_commitment(runs: Runs) -> None:
    view = json.loads(invoke("inspect", runs.drill.receipt, "--json").stdout)
    assert view["receipt"]["trace"]["nodes"] == NODES


# -- spot-check ------------------------------------------------------------------------------------


def test_spot_check_of_every_node_names_the_faulted_one(runs: Runs) -> None:
    result = spot_check(runs.drill, "--samples", str(NODES), "--seed", "s1")
    assert result.exit_code == 1, result.output
    assert "FAIL #2 Relu 'relu1': re-run bit-exact" in result.stdout
    assert "REFUSE: node #2 Relu 'relu1' failed the spot check" in result.stdout
    assert f"sampled {NODES} of {NODES} nodes" in result.stdout
    assert "caught with probability 1.000" in result.stdout
    assert "replay with --seed s1" in result.stdout
    assert "Freivalds ok" in result.stdout  # the honest Conv and Gemm rows


def test_spot_check_json_reports_the_failure(runs: Runs) -> None:
    result = spot_check(runs.drill, "--samples", "64", "--seed", "s1", "--json")
    assert result.exit_code == 1
    view = json.loads(result.stdout)
    assert view["ok"] is False
    assert view["seed"] == "s1"
    spot = next(r for r in view["rungs"] if r["rung"] == "spot-check")
    nodes = next(s for s in spot["steps"] if s["step"] == "13-14 nodes")
    assert nodes["error"] == "SpotCheckError"
    assert nodes["details"]["detection_probability"] == 1.0
    failed = [row["index"] for row in nodes["details"]["checks"] if not row["ok"]]
    assert failed == [2]


def test_spot_check_of_an_honest_trace_passes(runs: Runs) -> None:
    result = spot_check(runs.honest, "--samples", str(NODES), "--seed", "s1")
    assert result.exit_code == 0, result.output
    assert "RELEASE: every required rung passed" in result.stdout
    view = json.loads(spot_check(runs.honest, "--samples", "3", "--json").stdout)
    assert view["ok"] is True
    spot = next(r for r in view["rungs"] if r["rung"] == "spot-check")
    details = spot["steps"][1]["details"]
    assert details["samples"] == 3
    assert details["detection_probability"] == 3 / NODES
    assert len(view["seed"]) == 32  # a fresh seed, printed for replay


def test_spot_check_with_a_trace_of_another_receipt_exits_2(runs: Runs) -> None:
    result = invoke(
        "spot-check",
        runs.honest.receipt,
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--trace",
        runs.drill.trace,
        "--seed",
        "s",
    )
    assert result.exit_code == 2, result.output
    assert "the trace is not the receipt's" in result.stdout


def test_spot_check_with_another_model_fails_the_digests_rung(runs: Runs) -> None:
    """Like ``verify``: a model that is not the receipt's is a failed check (exit 1)."""
    result = invoke(
        "spot-check",
        runs.honest.receipt,
        "--model",
        OTHER_MODEL,
        "--input",
        FIXTURES / "inputs" / "mlp.npz",
        "--trace",
        runs.honest.trace,
    )
    assert result.exit_code == 1, result.output
    assert "model mismatch" in result.stdout


# -- dispute and judge ----------------------------------------------------------------------------


def test_dispute_finds_the_faulted_node_and_writes_evidence(runs: Runs, evidence: Path) -> None:
    result = dispute(runs.drill, runs.folder / "again.revd")
    assert result.exit_code == 0, result.output
    assert "divergence   node #2 Relu 'relu1': inputs agreed, outputs differ" in result.stdout
    rounds = int(result.stdout.split("rounds", 1)[1].split()[0])
    assert 1 <= rounds <= rounds_bound(NODES)
    assert f"({rounds - 1} bisection + 1 opening)" in result.stdout
    assert Evidence.read(evidence).index == 2


def test_dispute_json(runs: Runs, tmp_path: Path) -> None:
    result = dispute(runs.drill, tmp_path / "e.revd", "--json")
    assert result.exit_code == 0
    view = json.loads(result.stdout)
    assert view["divergence"] == {"index": 2, "name": "relu1", "op": "Relu"}
    assert 1 <= view["rounds"] <= rounds_bound(NODES)
    assert view["evidence"] == str(tmp_path / "e.revd")
    assert view["evidence_digest"] == str(Evidence.read(tmp_path / "e.revd").digest)


def test_dispute_of_an_honest_trace_exits_1(runs: Runs, tmp_path: Path) -> None:
    result = dispute(runs.honest, tmp_path / "e.revd")
    assert result.exit_code == 1
    assert "AGREE: the recomputed trace has the receipt's root" in result.stdout
    view = json.loads(dispute(runs.honest, tmp_path / "e.revd", "--json").stdout)
    assert view["divergence"] is None
    assert not (tmp_path / "e.revd").exists()


def test_judge_rules_provider_fault_and_signs_the_ruling(evidence: Path, tmp_path: Path) -> None:
    result = judge(evidence, tmp_path / "ruling.rrul")
    assert result.exit_code == 0, result.output
    assert "RULING: provider-fault" in result.stdout
    assert "node         #2 Relu 'relu1'" in result.stdout
    signed = read_ruling(
        (tmp_path / "ruling.rrul").read_bytes(), trusted=(referee_key().public_key,)
    )
    assert (signed.ruling.verdict, signed.ruling.node) == ("provider-fault", 2)
    assert signed.ruling.evidence == Evidence.read(evidence).digest


def test_judge_json(evidence: Path, tmp_path: Path) -> None:
    result = judge(evidence, tmp_path / "ruling.rrul", "--json")
    assert result.exit_code == 0
    view = json.loads(result.stdout)
    assert view["verdict"] == "provider-fault"
    assert view["node"] == {"index": 2, "name": "relu1", "op": "Relu"}
    assert view["comparison"] == "bit-exact"
    assert view["ruling_file"] == str(tmp_path / "ruling.rrul")


def test_lying_challengers_evidence_is_rejected_with_exit_1(runs: Runs, tmp_path: Path) -> None:
    lie = tmp_path / "lie.revd"
    result = dispute(runs.honest, lie, "--inject-fault", "conv2")
    assert result.exit_code == 0, result.output  # the challenger's own drill diverges at conv2
    assert "node #4 Conv 'conv2'" in result.stdout
    ruling = judge(lie, tmp_path / "ruling.rrul")
    assert ruling.exit_code == 1, ruling.output
    assert "RULING: challenge-rejected" in ruling.stdout
    signed = read_ruling((tmp_path / "ruling.rrul").read_bytes())
    assert signed.ruling.verdict == "challenge-rejected"


def test_dispute_with_the_providers_own_key(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "e.revd"
    result = dispute(runs.drill, path, "--provider-key", PROVIDER_KEY)
    assert result.exit_code == 0, result.output
    assert judge(path, tmp_path / "r.rrul").exit_code == 0


# -- bad input: exit 2, one line, no traceback ---------------------------------------------------


@pytest.fixture(scope="module")
def truncated(runs: Runs, evidence: Path) -> tuple[Path, Path]:
    trace = runs.folder / "truncated.rtrc"
    trace.write_bytes(runs.drill.trace.read_bytes()[:-100])
    bundle = runs.folder / "truncated.revd"
    bundle.write_bytes(evidence.read_bytes()[:-100])
    return trace, bundle


def test_spot_check_of_a_truncated_trace_exits_2(runs: Runs, truncated: tuple[Path, Path]) -> None:
    result = invoke(
        "spot-check",
        runs.drill.receipt,
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--trace",
        truncated[0],
    )
    one_line_error(result, "truncated trace")


def test_dispute_of_a_truncated_trace_exits_2(
    runs: Runs, truncated: tuple[Path, Path], tmp_path: Path
) -> None:
    result = invoke(
        "dispute",
        runs.drill.receipt,
        "--model",
        MODEL,
        "--input",
        INPUTS,
        "--trace",
        truncated[0],
        "--key",
        CHALLENGER_KEY,
        "--out",
        tmp_path / "e.revd",
    )
    one_line_error(result, "truncated trace")
    assert not (tmp_path / "e.revd").exists()


def test_judge_of_a_truncated_bundle_exits_2(truncated: tuple[Path, Path], tmp_path: Path) -> None:
    result = judge(truncated[1], tmp_path / "r.rrul")
    one_line_error(result, "truncated evidence bundle")
    assert not (tmp_path / "r.rrul").exists()


def test_judge_of_a_receipt_instead_of_a_bundle_exits_2(runs: Runs, tmp_path: Path) -> None:
    one_line_error(judge(runs.drill.receipt, tmp_path / "r.rrul"), "(bad magic)")


def test_judge_with_the_wrong_model_exits_2(evidence: Path, tmp_path: Path) -> None:
    result = judge(evidence, tmp_path / "r.rrul", model=OTHER_MODEL)
    one_line_error(result, "(j2) the model is not the receipt's")


def test_dispute_with_the_wrong_model_exits_2(runs: Runs, tmp_path: Path) -> None:
    result = invoke(
        "dispute",
        runs.drill.receipt,
        "--model",
        OTHER_MODEL,
        "--input",
        FIXTURES / "inputs" / "mlp.npz",
        "--trace",
        runs.drill.trace,
        "--key",
        CHALLENGER_KEY,
        "--out",
        tmp_path / "e.revd",
    )
    one_line_error(result, "the model is not the receipt's")


@pytest.mark.parametrize(
    ("model", "extra", "fragment"),
    [
        ("constants", ["--inject-fault", "shape"], "onnxruntime failed to run the model"),
        ("convnet", ["--inject-fault", "no_such_node"], "no node named 'no_such_node'"),
        ("convnet", ["--inject-fault", "#10"], "node index 10 is out of range"),
        ("convnet", ["--opt-level", "all"], "traced runs need graph optimization 'disable'"),
    ],
    ids=["drill_breaks_a_later_node", "unknown_node", "index_out_of_range", "fused_graph"],
)
def test_refused_traced_run_exits_2_and_writes_nothing(
    tmp_path: Path, model: str, extra: list[str], fragment: str
) -> None:
    result = invoke(
        "run",
        FIXTURES / "models" / f"{model}.onnx",
        "--input",
        FIXTURES / "inputs" / f"{model}.npz",
        "--key",
        PROVIDER_KEY,
        "--out",
        tmp_path / "o",
        "--trace",
        *extra,
    )
    one_line_error(result, fragment)
    assert not (tmp_path / "o").exists()


def test_console_script_judge_of_a_truncated_bundle(truncated: tuple[Path, Path]) -> None:
    """The installed entry point, in its own process: exit 2, one line, no traceback."""
    script = Path(sys.executable).parent / "receipts"
    done = subprocess.run(
        [
            str(script),
            "judge",
            str(truncated[1]),
            "--model",
            MODEL,
            "--key",
            REFEREE_KEY,
            "--out",
            str(truncated[1].with_suffix(".rrul")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("receipts: error: truncated evidence bundle")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr + done.stdout


def test_drill_without_a_trace_is_caught_by_reexecution(tmp_path: Path) -> None:
    out = tmp_path / "o"
    run = invoke(
        "run", MODEL, "--input", INPUTS, "--key", PROVIDER_KEY, "--out", out, "--inject-fault", "fc"
    )
    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in out.iterdir()) == ["outputs.npz", "receipt.rcpt"]
    assert "trace " not in run.stdout
    verify = invoke("verify", out / "receipt.rcpt", "--model", MODEL, "--input", INPUTS)
    assert verify.exit_code == 1, verify.output
    assert "re-execution under the same runtime identity gave different bits" in verify.stdout
