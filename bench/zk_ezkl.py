"""EZKL, the baseline of family 7: its own virtualenv, a worker process, and its float model.

EZKL is installed with pip into a bench-only virtualenv, ``bench/out/ezkl-venv`` (git-ignored,
outside the project's ``.venv``), pinned to ``EZKL_VERSION``; ``ensure_ezkl`` makes it when it is
missing or holds another version, and says why when it cannot (``EzklUnavailableError``: the family
then reports "EZKL: not measured (reason)" and measures our side alone). Its steps run in one
long-lived ``bench/ezkl_worker.py`` process of that virtualenv (``EzklWorker``), so a timed call
is one EZKL step plus a pipe round trip, never a Python start and an ``import ezkl``.

EZKL proves float models (it quantizes them itself), so it gets ``float_mlp``: the 784-56-10
network of ``fixtures.int_models.mlp_784_56_10`` as Gemm, Relu, Gemm in float32, its weights the
integer ones scaled (W1 = w1 * 3/4096, b1 = b1 * 3/(4096 * 255), W2 = w2 / 127, b2 = 0) and its
input the integer input / 255, so its hidden layer is the integer one's requantized value / 255
(without the clip at 255).

    install = ensure_ezkl()
    with EzklWorker.start(install.python, log) as ezkl:
        seconds, ok = ezkl.call("verify", proof_path=..., settings_path=..., vk_path=...)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EZKL_VERSION = "23.0.5"  # pinned: EZKL's Python API changes between versions
HERE = Path(__file__).resolve().parent
VENV = HERE / "out" / "ezkl-venv"
WORKER = HERE / "ezkl_worker.py"
INSTALL_TIMEOUT_S = 900.0
CALL_TIMEOUT_S = 600.0


class EzklUnavailableError(Exception):
    """EZKL could not be installed or started here; the message is the reason."""


class EzklStepError(Exception):
    """An EZKL step failed (its own error message)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EzklInstall:
    """The virtualenv's Python, the EZKL version it imports, and the install's seconds if it
    was installed in this run (``None``: it was there already)."""

    python: Path
    version: str
    install_seconds: float | None


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", "import ezkl; print(ezkl.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines or ["no output"])[-1][:300]


def ensure_ezkl(venv: Path = VENV, version: str = EZKL_VERSION) -> EzklInstall:
    """The pinned EZKL in ``venv``, made (venv and ``pip install ezkl==version``) if missing."""
    python = venv / "bin" / "python"
    if _installed_version(python) == version:
        return EzklInstall(python=python, version=version, install_seconds=None)
    start = time.perf_counter()
    commands = [
        ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
        (f"pip install ezkl=={version}",
         [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          f"ezkl=={version}"]),
    ]  # fmt: skip
    for what, command in commands[0 if not python.exists() else 1 :]:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise EzklUnavailableError(f"{what} failed: {e}") from e
        if done.returncode != 0:
            raise EzklUnavailableError(f"{what}: {_last_line(done.stderr)}")
    found = _installed_version(python)
    if found != version:
        raise EzklUnavailableError(f"ezkl=={version} installed, but the venv imports {found!r}")
    return EzklInstall(python=python, version=version, install_seconds=time.perf_counter() - start)


class EzklWorker:
    """One ``bench/ezkl_worker.py`` process; ``call`` runs one EZKL step in it."""

    def __init__(self, process: subprocess.Popen[str], version: str) -> None:
        self._process = process
        self.version = version

    @classmethod
    def start(cls, python: Path, log: Path) -> EzklWorker:
        """Start the worker (EZKL's own output goes to ``log``) and read its greeting."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as errors:
            process = subprocess.Popen(
                [str(python), str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                bufsize=1,
            )
        hello = _answer(process.stdout)
        if not hello.get("ok"):
            process.kill()
            process.wait()
            raise EzklUnavailableError(str(hello.get("error", "the EZKL worker did not start")))
        return cls(process, str(hello["result"]))

    def call(self, op: str, **args: Any) -> tuple[float, Any]:
        """Run ``ezkl.<op>(**args)``: the step's own seconds and its result."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, "args": _plain(args)}) + "\n")
        self._process.stdin.flush()
        answer = _answer(self._process.stdout)
        if not answer.get("ok"):
            raise EzklStepError(f"ezkl.{op}: {answer.get('error', 'no answer')}")
        return float(answer["seconds"]), answer["result"]

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> EzklWorker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in args.items()}


def _answer(stream: IO[str] | None) -> dict[str, Any]:
    line = stream.readline() if stream is not None else ""
    if not line:
        return {"ok": False, "error": "the EZKL worker exited (see its log)"}
    answer: dict[str, Any] = json.loads(line)
    return answer


# --- the float model ---------------------------------------------------------------------------


def float_mlp(int_model: onnx.ModelProto) -> onnx.ModelProto:
    """The float32 784-56-10 MLP (Gemm, Relu, Gemm) of the integer model's weights, scaled."""
    w = {t.name: numpy_helper.to_array(t) for t in int_model.graph.initializer}
    weights = {
        "w1": w["w1"].astype(np.float32) * np.float32(3 / 4096),
        "b1": w["b1"].reshape(-1).astype(np.float32) * np.float32(3 / (4096 * 255)),
        "w2": w["w2"].astype(np.float32) / np.float32(127),
        "b2": np.zeros(w["w2"].shape[1], dtype=np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["h1_relu"], name="relu1"),
        helper.make_node("Gemm", ["h1_relu", "w2", "b2"], ["logits"], name="fc2"),
    ]
    n_in, n_out = w["w1"].shape[0], w["w2"].shape[1]
    graph = helper.make_graph(
        nodes,
        "mlp_784_56_10_float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, n_out])],
        [numpy_helper.from_array(a.astype(np.float32), name) for name, a in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "inference-receipts bench"
    onnx.checker.check_model(model)
    return model


def float_input(x: np.ndarray) -> np.ndarray:
    """The integer input as EZKL's float input: uint8 / 255."""
    return (x.astype(np.float32) / np.float32(255)).reshape(1, -1)


def write_inputs(folder: Path, int_model: onnx.ModelProto, x: np.ndarray) -> tuple[Path, Path]:
    """``mlp.onnx`` and ``input.json`` (EZKL's ``{"input_data": [[...]]}``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model, data = folder / "mlp.onnx", folder / "input.json"
    model.write_bytes(float_mlp(int_model).SerializeToString())
    flat = [float(v) for v in float_input(x).reshape(-1)]
    data.write_text(json.dumps({"input_data": [flat]}), encoding="utf-8")
    return model, data
