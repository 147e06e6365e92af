"""EZKL's standard flow on the float 784-56-10 MLP, prepared once; its timed calls and sizes.

The flow (EZKL's Python API, run in the worker of ``bench/zk_ezkl.py``): ``gen_settings``
(default run arguments: input and output public, parameters fixed), ``calibrate_settings``
(target "resources": the cheapest circuit that keeps the outputs close, so EZKL's fastest prover
setting), ``compile_circuit``, an SRS of the calibrated size (``gen_srs``; made once and cached in
``bench/out/ezkl``, as ``get_srs`` would download one and this machine reaches no such server),
``gen_witness``, ``setup``, ``prove``, ``verify``. The proof must verify, and must be refused
once one output instance is changed.

    side = prepare_ezkl(worker, tmp / "ezkl", cache)
    side.calls      # row name -> (label, call), the baselines of ``bench/zk_cases.py``
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Call
from bench.zk_cases import OneOff
from bench.zk_ezkl import EzklStepError, EzklWorker, write_inputs
from fixtures import int_models


@dataclass(frozen=True, slots=True, kw_only=True)
class EzklSide:
    """The prepared flow: files, settings, one-off costs, the timed calls and the sizes."""

    version: str
    folder: Path
    settings: dict[str, Any]
    costs: tuple[OneOff, ...]
    calls: dict[str, tuple[str, Call]]
    sizes: dict[str, int]


def prepare_ezkl(worker: EzklWorker, folder: Path, cache: Path) -> EzklSide:
    files = _Files(folder)
    model, data = write_inputs(folder, int_models.mlp_784_56_10(),
                               int_models.sample_input("mlp_784_56_10"))  # fmt: skip
    worker.call("gen_settings", model=model, output=files.settings)
    calibrate_s, _ = worker.call("calibrate_settings", data=data, model=model,
                                 settings=files.settings, target="resources")  # fmt: skip
    settings = json.loads(files.settings.read_text(encoding="utf-8"))
    logrows = int(settings["run_args"]["logrows"])
    worker.call("compile_circuit", model=model, compiled_circuit=files.circuit,
                settings_path=files.settings)  # fmt: skip
    srs, srs_cost = _cached_srs(worker, cache / "ezkl", logrows)
    worker.call("gen_witness", data=data, model=files.circuit, output=files.witness)
    worker.call("setup", model=files.circuit, vk_path=files.vk, pk_path=files.pk, srs_path=srs)
    worker.call("prove", witness=files.witness, model=files.circuit, pk_path=files.pk,
                proof_path=files.proof, srs_path=srs)  # fmt: skip
    _check(worker, files, srs)
    run_args = settings["run_args"]
    calibrated = OneOff(
        what="EZKL calibrate_settings (target resources)",
        seconds=calibrate_s,
        note=f"chose logrows {logrows}, input_scale {run_args['input_scale']}, "
        f"param_scale {run_args['param_scale']}; every run",
    )
    return EzklSide(
        version=worker.version,
        folder=folder,
        settings=settings,
        costs=(srs_cost, calibrated),
        calls=_calls(worker, files, model, data, srs),
        sizes=_sizes(files, settings, srs),
    )


class _Files:
    def __init__(self, folder: Path) -> None:
        self.settings = folder / "settings.json"
        self.circuit = folder / "network.ezkl"
        self.witness = folder / "witness.json"
        self.pk, self.vk = folder / "pk.key", folder / "vk.key"
        self.proof = folder / "proof.json"
        self.timed_pk, self.timed_vk = folder / "timed_pk.key", folder / "timed_vk.key"
        self.timed_circuit = folder / "timed_network.ezkl"


def _cached_srs(worker: EzklWorker, cache: Path, logrows: int) -> tuple[Path, OneOff]:
    path = (cache / f"kzg{logrows}.srs").resolve()
    side = path.with_name(path.name + ".json")
    what = f"EZKL SRS 2^{logrows} (gen_srs, KZG on BN254)"
    if path.exists():
        noted = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        earlier = f"made earlier in {noted['seconds']:.1f} s" if "seconds" in noted else "cached"
        note = f"cached: {path.name}, {path.stat().st_size:,} B; {earlier}"
        return path, OneOff(what=what, seconds=None, note=note)
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    worker.call("gen_srs", srs_path=path, logrows=logrows)
    seconds = time.perf_counter() - start
    made = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    side.write_text(json.dumps({"logrows": logrows, "seconds": seconds, "made_utc": made}) + "\n")
    note = f"made in this run: {path.name}, {path.stat().st_size:,} B"
    return path, OneOff(what=what, seconds=seconds, note=note)


def _verify(worker: EzklWorker, files: _Files, proof: Path, srs: Path) -> bool:
    try:
        _, ok = worker.call("verify", proof_path=proof, settings_path=files.settings,
                            vk_path=files.vk, srs_path=srs)  # fmt: skip
    except EzklStepError:
        return False
    return bool(ok)


def _check(worker: EzklWorker, files: _Files, srs: Path) -> None:
    if not _verify(worker, files, files.proof, srs):
        raise EzklStepError("EZKL's own proof did not verify")
    proof = json.loads(files.proof.read_text(encoding="utf-8"))
    outputs = proof["instances"][0]
    last = int.from_bytes(bytes.fromhex(outputs[-1]), "little")  # EZKL writes felts LE hex
    outputs[-1] = (last ^ 1).to_bytes(32, "little").hex()
    tampered = files.proof.with_name("tampered_proof.json")
    tampered.write_text(json.dumps(proof), encoding="utf-8")
    if _verify(worker, files, tampered, srs):
        raise EzklStepError("EZKL's proof was accepted with a changed output instance")


def _calls(
    worker: EzklWorker, files: _Files, model: Path, data: Path, srs: Path
) -> dict[str, tuple[str, Call]]:
    def step(op: str, **args: Any) -> Call:
        return lambda: worker.call(op, **args)

    return {
        "compile": ("ezkl.compile_circuit (calibrated settings)",
                    step("compile_circuit", model=model, compiled_circuit=files.timed_circuit,
                         settings_path=files.settings)),
        "witness": ("ezkl.gen_witness",
                    step("gen_witness", data=data, model=files.circuit, output=files.witness)),
        "setup": ("ezkl.setup (pk + vk from the SRS)",
                  step("setup", model=files.circuit, vk_path=files.timed_vk,
                       pk_path=files.timed_pk, srs_path=srs)),
        "prove": ("ezkl.prove (pk read, Halo2/KZG proof)",
                  step("prove", witness=files.witness, model=files.circuit, pk_path=files.pk,
                       proof_path=files.proof, srs_path=srs)),
        "verify": ("ezkl.verify (Rust)",
                   step("verify", proof_path=files.proof, settings_path=files.settings,
                        vk_path=files.vk, srs_path=srs)),
    }  # fmt: skip


def _sizes(files: _Files, settings: dict[str, Any], srs: Path) -> dict[str, int]:
    proof = json.loads(files.proof.read_text(encoding="utf-8"))
    raw = proof.get("hex_proof") or ""
    raw_bytes = len(raw.removeprefix("0x")) // 2 if raw else len(proof.get("proof", []))
    instances = sum(len(column) for column in proof.get("instances", []))
    return {
        "rows": int(settings.get("num_rows", 0)),
        "logrows": int(settings["run_args"]["logrows"]),
        "instances": instances,
        "proof_file": files.proof.stat().st_size,
        "proof_raw": raw_bytes,
        "pk": files.pk.stat().st_size,
        "vk": files.vk.stat().st_size,
        "circuit": files.circuit.stat().st_size,
        "srs": srs.stat().st_size,
    }
