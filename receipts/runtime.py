"""Runtime profiles and the deterministic onnxruntime runner (the runtime layer).

Providers and verifiers run models only through the ``Runner`` protocol; ``OrtRunner`` is the
onnxruntime adapter. A runner is built from ``RuntimeSettings`` (what a user chooses: threads,
optimization level, execution mode, prepacking) and reports the full ``RuntimeProfile`` it
runs under: the settings plus engine version and the CPU instruction-set class. Two runs whose
profiles are equal promise bit-identical outputs (docs/adr/0002-runtime-profile.md).

    runner = OrtRunner(load_model("mlp.onnx"), RuntimeSettings())
    outputs = runner.run({"x": x})
    runner.profile.identity        # sha256:... of the profile

The runner refuses what is known to break reproducibility: ``ORT_LOAD_CONFIG_FROM_MODEL`` in the
environment (it silently replaces session options) and denormal flushing (a process-wide switch
whose results vary with threads), including a process where some other library turned it on.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from receipts.codec import MapReader
from receipts.digests import Digest, Value, record_digest
from receipts.errors import MalformedError, RuntimeRefusedError, UnsupportedVersionError
from receipts.model import LoadedModel
from receipts.tensors import (
    ELEM_TYPES,
    EXTENDED_TYPES,
    ElemType,
    canonical_bytes,
    elem_type_of,
    element_count,
    unpack_subbyte,
)

OPT_LEVELS: dict[str, Any] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
EXECUTION_MODES: dict[str, Any] = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}
MAX_THREADS = 256
ENGINE = "onnxruntime"
EXECUTION_PROVIDER = "CPUExecutionProvider"

ort.set_default_logger_severity(4)  # failures reach us as exceptions; keep C++ logs off stderr


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuClass:
    """Architecture and the instruction-set class onnxruntime's kernels dispatch on."""

    arch: str
    isa: str

    def __post_init__(self) -> None:
        known = (*ISA_CLASSES.get(self.arch, ()), "unknown")
        if self.isa not in known:
            raise MalformedError(f"unknown CPU class {self.arch}/{self.isa}")
        if not self.arch or len(self.arch) > 32 or not self.arch.isprintable():
            raise MalformedError("CPU architecture must be 1..32 printable characters")

    def to_wire(self) -> dict[str, object]:
        return {"arch": self.arch, "isa": self.isa}


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    """The numeric knobs a provider chooses; the default is the reproducible baseline."""

    graph_optimization: str = "disable"
    intra_op_threads: int = 1
    execution_mode: str = "sequential"
    prepacking: bool = True
    x64_quant_precision: bool = True
    denormal_as_zero: bool = False

    def __post_init__(self) -> None:
        if self.graph_optimization not in OPT_LEVELS:
            raise MalformedError(f"unknown optimization level {self.graph_optimization!r}")
        if self.execution_mode not in EXECUTION_MODES:
            raise MalformedError(f"unknown execution mode {self.execution_mode!r}")
        if not 1 <= self.intra_op_threads <= MAX_THREADS:
            raise MalformedError(f"intra-op threads must be 1..{MAX_THREADS}")
        if self.denormal_as_zero:
            raise RuntimeRefusedError(
                "denormal flushing is refused: it is process-wide and its results vary with threads"
            )

    def describe(self) -> str:
        return (
            f"opt={self.graph_optimization} threads={self.intra_op_threads} "
            f"mode={self.execution_mode} prepacking={'on' if self.prepacking else 'off'}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeProfile:
    """Everything that changes numerics: settings, engine, version, provider and CPU class."""

    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    engine: str = ENGINE
    engine_version: str
    execution_provider: str = EXECUTION_PROVIDER
    cpu: CpuClass

    def __post_init__(self) -> None:
        if (self.engine, self.execution_provider) != (ENGINE, EXECUTION_PROVIDER):
            raise UnsupportedVersionError(
                f"runtime {self.engine}/{self.execution_provider} is not supported "
                f"(only {ENGINE}/{EXECUTION_PROVIDER})"
            )
        if not _VERSION.fullmatch(self.engine_version):
            raise MalformedError(f"engine version {self.engine_version[:40]!r} is not N.N.N")

    def to_wire(self) -> dict[str, object]:
        s = self.settings
        return {
            "engine": self.engine,
            "engine_version": self.engine_version,
            "execution_provider": self.execution_provider,
            "graph_optimization": s.graph_optimization,
            "intra_op_threads": s.intra_op_threads,
            "execution_mode": s.execution_mode,
            "prepacking": s.prepacking,
            "x64_quant_precision": s.x64_quant_precision,
            "cpu": self.cpu.to_wire(),
        }

    @classmethod
    def from_wire(cls, r: MapReader) -> RuntimeProfile:
        cpu = r.map("cpu")
        profile = cls(
            engine=r.text("engine", 64),
            engine_version=r.text("engine_version", 64),
            execution_provider=r.text("execution_provider", 128),
            settings=RuntimeSettings(
                graph_optimization=r.text("graph_optimization", 16),
                intra_op_threads=r.integer("intra_op_threads", 1, MAX_THREADS),
                execution_mode=r.text("execution_mode", 16),
                prepacking=r.boolean("prepacking"),
                x64_quant_precision=r.boolean("x64_quant_precision"),
            ),
            cpu=CpuClass(arch=cpu.text("arch", 32), isa=cpu.text("isa", 32)),
        )
        cpu.close()
        r.close()
        return profile

    @property
    def identity(self) -> Digest:
        """The numeric identity: equal identities promise bit-identical outputs."""
        return record_digest("runtime-profile", self.to_wire())

    def describe(self) -> str:
        return (
            f"{self.engine} {self.engine_version} {self.execution_provider} "
            f"{self.settings.describe()} cpu={self.cpu.arch}/{self.cpu.isa}"
        )


# Checked in order; the first class whose flags are all present wins.
_X86_CLASSES = (
    ("avx512-amx", {"avx512f", "amx_int8", "amx_tile"}),
    ("avx512-vnni", {"avx512f", "avx512bw", "avx512_vnni"}),
    ("avx512", {"avx512f", "avx512bw"}),
    ("avx2-vnni", {"avx2", "fma", "avx_vnni"}),
    ("avx2-fma", {"avx2", "fma"}),
    ("avx", {"avx"}),
)
_ARM_CLASSES = (
    ("sve", {"sve"}),
    ("neon-i8mm", {"i8mm"}),
    ("neon-dotprod", {"asimddp"}),
)
ISA_CLASSES: dict[str, tuple[str, ...]] = {
    "x86_64": (*(name for name, _ in _X86_CLASSES), "sse"),
    "aarch64": (*(name for name, _ in _ARM_CLASSES), "neon"),
}
_VERSION = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,6}")


def _isa_class(flags: set[str], table: tuple[tuple[str, set[str]], ...], default: str) -> str:
    return next((name for name, needed in table if needed <= flags), default)


@cache
def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuClass:
    """The CPU class of this machine, from /proc/cpuinfo (``unknown`` where it is unreadable)."""
    arch = platform.machine().lower() or "unknown"
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuClass(arch=arch, isa="unknown")
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            break
    if arch == "x86_64":
        return CpuClass(arch=arch, isa=_isa_class(flags, _X86_CLASSES, "sse"))
    if arch == "aarch64":
        return CpuClass(arch=arch, isa=_isa_class(flags, _ARM_CLASSES, "neon"))
    return CpuClass(arch=arch, isa="unknown")


def local_profile(settings: RuntimeSettings) -> RuntimeProfile:
    """The profile this process would run ``settings`` under."""
    return RuntimeProfile(settings=settings, engine_version=ort.__version__, cpu=detect_cpu())


class Runner(Protocol):
    """Runs one loaded model under one profile; the seam tests and other engines plug into."""

    @property
    def profile(self) -> RuntimeProfile: ...

    def run(self, inputs: Mapping[str, Value]) -> dict[str, Value]:
        """Outputs by name, in the model's output order."""
        ...


class RunnerFactory(Protocol):
    def __call__(self, model: LoadedModel | bytes, settings: RuntimeSettings) -> Runner: ...


def check_environment() -> None:
    """Refuse process state that would make results differ from what the profile promises."""
    if os.environ.get("ORT_LOAD_CONFIG_FROM_MODEL", "0") not in ("", "0"):
        raise RuntimeRefusedError(
            "ORT_LOAD_CONFIG_FROM_MODEL is set: it lets the model replace session options; unset it"
        )
    tiny = np.array([1e-40], dtype=np.float32) * np.float32(1.0)
    if tiny[0] == 0:
        raise RuntimeRefusedError(
            "this process flushes denormals to zero (another library enabled it); "
            "results would not reproduce"
        )


def _session_options(settings: RuntimeSettings) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = OPT_LEVELS[settings.graph_optimization]
    so.execution_mode = EXECUTION_MODES[settings.execution_mode]
    so.intra_op_num_threads = settings.intra_op_threads
    so.inter_op_num_threads = 1
    so.use_deterministic_compute = True
    so.add_session_config_entry(
        "session.x64quantprecision", "1" if settings.x64_quant_precision else "0"
    )
    so.add_session_config_entry("session.disable_prepacking", "0" if settings.prepacking else "1")
    so.add_session_config_entry("session.set_denormal_as_zero", "0")
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ")


def ort_reason(error: Exception) -> str:
    """onnxruntime's message on one line, without its bracketed status prefix."""
    return _ORT_STATUS.sub("", " ".join(str(error).split()))[:400]


class OrtRunner:
    """The onnxruntime adapter: one InferenceSession built from the model's exact bytes."""

    def __init__(self, model: LoadedModel | bytes, settings: RuntimeSettings) -> None:
        """``model`` is a loaded model, or serialized bytes a library layer derived from one
        (the traced and single-operator models of ``receipts.graph``)."""
        check_environment()
        self._profile = local_profile(settings)
        data = model if isinstance(model, bytes) else model.runtime_bytes
        try:
            self._session = ort.InferenceSession(
                data, _session_options(settings), providers=[EXECUTION_PROVIDER]
            )
        except Exception as e:  # onnxruntime raises bare Exceptions of private classes
            raise RuntimeRefusedError(
                f"onnxruntime refused the model under [{self._profile.describe()}]: {ort_reason(e)}"
            ) from e
        self._outputs = [o.name for o in self._session.get_outputs()]
        types = [o.type for o in self._session.get_outputs()] + [
            i.type for i in self._session.get_inputs()
        ]
        self._raw_io = any(t in _ORT_TYPE_NAMES for t in types)

    @property
    def profile(self) -> RuntimeProfile:
        return self._profile

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying session (benchmarks compare against a bare ``session.run``)."""
        return self._session

    def run(self, inputs: Mapping[str, Value]) -> dict[str, Value]:
        try:
            if self._raw_io:
                return self._run_ort_values(inputs)
            results = self._session.run(self._outputs, dict(inputs))
        except Exception as e:  # onnxruntime raises bare Exceptions of private classes
            raise RuntimeRefusedError(
                f"onnxruntime failed to run the model under [{self._profile.describe()}]: "
                f"{ort_reason(e)}"
            ) from e
        return dict(zip(self._outputs, results, strict=True))

    def _run_ort_values(self, inputs: Mapping[str, Value]) -> dict[str, Value]:
        # Element types NumPy cannot hand to onnxruntime (bfloat16, float8, 2/4-bit) travel as
        # their canonical bytes, which are exactly onnxruntime's in-memory layout.
        feeds = {}
        for name, value in inputs.items():
            if not isinstance(value, np.ndarray):
                raise RuntimeRefusedError(
                    f"input {name!r}: sequences of bfloat16, float8 or 2/4-bit tensors "
                    "are not supported"
                )
            feeds[name] = _to_ort_value(value)
        values = self._session.run_with_ort_values(self._outputs, feeds)
        return {
            name: _from_ort_value(value) for name, value in zip(self._outputs, values, strict=True)
        }


_ORT_TYPE_NAMES = {f"tensor({name})": name for name in EXTENDED_TYPES}


def _to_ort_value(array: np.ndarray[Any, Any]) -> Any:
    etype = elem_type_of(array)
    if etype.name not in EXTENDED_TYPES:
        return ort.OrtValue.ortvalue_from_numpy(np.require(array, requirements="C"))
    value = ort.OrtValue.ortvalue_from_shape_and_type(list(array.shape), etype.onnx)
    data = canonical_bytes(array)
    if data:
        ctypes.memmove(value.data_ptr(), data, len(data))
    return value


def _from_ort_value(value: Any) -> np.ndarray[Any, Any]:
    name = _ORT_TYPE_NAMES.get(value.data_type())
    if name is None:
        return value.numpy()  # type: ignore[no-any-return]
    etype: ElemType = ELEM_TYPES[name]
    shape = tuple(value.shape())
    count = element_count(shape)
    data = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes()) if count else b""
    if etype.bits < 8:
        return unpack_subbyte(data, count, etype).reshape(shape)
    return np.frombuffer(data, dtype=etype.dtype).reshape(shape).copy()
