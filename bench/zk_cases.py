"""Zero-knowledge proofs (issue 6): our Groth16 pipeline against EZKL on the 784-56-10 MLP.

Ours: ``fixtures.int_models.mlp_784_56_10`` (uint8 input, int8 weights, int32 accumulation,
requantized by Mul/Div/Clip/Cast), compiled by ``circuits.compile`` to R1CS, proven by the pinned
snarkjs through ``circuits.snarkjs`` and verified in pure Python by ``circuits.groth16``. EZKL
(``bench/zk_ezkl.py``): the float model of the same architecture and weights (scaled), its
standard flow with settings calibrated for resources, KZG on BN254 (Halo2). Each row times one
step, ours against EZKL's in the same run, alternating (ratio = ours / EZKL):

* compile: ``compile_model`` (the whole graph to constraints; it also computes the witness, the
  compiler has no input-free mode) and the ``.r1cs`` file written; EZKL ``compile_circuit``;
* witness: ``compile_model`` with the inputs and the ``.wtns`` file written; EZKL ``gen_witness``;
* setup: ``groth16 setup`` (r1cs + the 2^14 powers of tau), ``zkey beacon`` (the phase-2
  contribution, here the fixed public beacon) and ``zkey export verificationkey``; EZKL ``setup``
  (proving and verification keys from its SRS);
* prove: the ``.wtns`` written and ``snarkjs groth16 prove`` (a Node process: start, zkey read,
  proof); EZKL ``prove`` (pk read, proof). Goal <= 1.0x;
* verify: ``verify_proof`` on the verification key, proof and public signals read from their
  files, in pure Python (py_ecc); EZKL ``verify`` (Rust). Goal <= 1 s, absolute.

Sizes and counts beside EZKL's are ``Figure`` rows (proof <= 1 KB). One-off costs are reported,
not timed against anything: the 2^14 powers of tau (made once by snarkjs, cached in
``bench/out``, never made again while the file is there), EZKL's SRS (``gen_srs``, cached the
same way: this machine cannot download one), EZKL's calibration and its install.

Checked once before timing: the compiled outputs equal onnxruntime's, the witness satisfies the
constraints, our proof verifies in pure Python and is refused for another output, EZKL's proof
verifies and is refused with a changed instance.

    ours = prepare_ours(tmp, cache)
    rows = zk_rows(ours, theirs)        # theirs: an EzklSide, or None when EZKL is missing
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.harness import Call, Case, Goal
from circuits.compile import Compiled, compile_model
from circuits.groth16 import read_proof, read_public, read_verification_key, verify_proof
from circuits.r1cs import check_witness, witness_bytes
from circuits.snarkjs import Snarkjs
from fixtures import int_models
from receipts.errors import ZkProofError
from receipts.model import LoadedModel, load_model_bytes
from receipts.runtime import OrtRunner, RuntimeSettings

PTAU_POWER = 14  # 13,300 constraints + 28 public signals need 2^14
PROVE_GOAL = Goal(op="<=", value=1.0)
VERIFY_UNDER_S = 1.0
PROOF_GOAL_BYTES = 1024
COMPRESSED_PROOF_BYTES = 2 * 32 + 64  # A and C compressed G1, B compressed G2 (BN254)


@dataclass(frozen=True, slots=True, kw_only=True)
class OneOff:
    """A cost paid once and cached: ``seconds`` if paid in this run, else what was noted."""

    what: str
    seconds: float | None
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ours:
    """Our pipeline on the MLP, prepared once: the files every timed call reads."""

    snarkjs: Snarkjs
    model: LoadedModel
    x: np.ndarray
    compiled: Compiled
    folder: Path
    ptau: Path
    ptau_cost: OneOff
    setup_steps: tuple[tuple[str, float], ...] = ()  # the first setup's steps, in seconds

    def path(self, name: str) -> Path:
        return self.folder / name


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """A case of step ``step``; ``solo`` when there is no EZKL to time against; ``under_s``: an
    absolute goal on our time."""

    step: str
    case: Case
    solo: bool
    under_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """A size or count, ours beside EZKL's (``ezkl`` None: not measured)."""

    name: str
    ours: int
    ezkl: int | None
    unit: str
    goal_bytes: int | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.ezkl else self.ours / self.ezkl

    @property
    def met(self) -> bool | None:
        return None if self.goal_bytes is None else self.ours <= self.goal_bytes


# --- one-off: the powers of tau ----------------------------------------------------------------


def cached_ptau(snarkjs: Snarkjs, cache: Path, power: int = PTAU_POWER) -> tuple[Path, OneOff]:
    """The beacon-only 2^``power`` file in ``cache``: made (and timed) only when missing.

    A side file ``<ptau>.json`` notes how long the making took, for the runs that find it."""
    path = (cache / f"pot{power}_beacon.ptau").resolve()
    side = path.with_name(path.name + ".json")
    what = f"powers of tau 2^{power} (snarkjs new, beacon, prepare phase2)"
    if path.exists():
        noted = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
        earlier = f"made earlier in {noted['seconds']:.1f} s" if "seconds" in noted else "cached"
        note = f"cached: {path.name}, {path.stat().st_size:,} B; {earlier}"
        return path, OneOff(what=what, seconds=None, note=note)
    start = time.perf_counter()
    snarkjs.cached_ptau(power, cache)
    seconds = time.perf_counter() - start
    made = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    side.write_text(json.dumps({"power": power, "seconds": seconds, "made_utc": made}) + "\n")
    note = f"made in this run: {path.name}, {path.stat().st_size:,} B"
    return path, OneOff(what=what, seconds=seconds, note=note)


# --- our side ----------------------------------------------------------------------------------


def prepare_ours(folder: Path, cache: Path) -> Ours:
    """Compile, check, make the keys and one proof; every file the timed calls need."""
    snarkjs = Snarkjs.locate()
    folder.mkdir(parents=True, exist_ok=True)
    proto = int_models.mlp_784_56_10()
    model = load_model_bytes(proto.SerializeToString())
    x = int_models.sample_input("mlp_784_56_10")
    compiled = compile_model(model, {"x": x})
    _check_outputs(model, x, compiled)
    check_witness(compiled.r1cs, compiled.witness)
    ptau, cost = cached_ptau(snarkjs, cache)
    ours = Ours(snarkjs=snarkjs, model=model, x=x, compiled=compiled, folder=folder,
                ptau=ptau, ptau_cost=cost)  # fmt: skip
    ours.path("circuit.r1cs").write_bytes(compiled.r1cs.to_bytes())
    steps: list[tuple[str, float]] = []
    setup_call(ours, "circuit", steps)()
    prove_call(ours)()
    _check_proof(ours)
    return replace(ours, setup_steps=tuple(steps))


def _check_outputs(model: LoadedModel, x: np.ndarray, compiled: Compiled) -> None:
    want = OrtRunner(model, RuntimeSettings()).run({"x": x})
    for name, value in compiled.outputs.items():
        if not np.array_equal(np.asarray(want[name]), value):
            raise AssertionError(f"the circuit's {name!r} differs from onnxruntime's")


def _check_proof(ours: Ours) -> None:
    verify_call(ours)()
    public = read_public(ours.path("public.json").read_bytes())
    vk = read_verification_key(ours.path("verification_key.json").read_bytes())
    proof = read_proof(ours.path("proof.json").read_bytes())
    try:
        verify_proof(vk, proof, (public[0] + 1, *public[1:]))
    except ZkProofError:
        return
    raise AssertionError("our proof was accepted for another output")


def compile_call(ours: Ours) -> Call:
    model, feed, out = ours.model, {"x": ours.x}, ours.path("compiled.r1cs")
    return lambda: out.write_bytes(compile_model(model, feed).r1cs.to_bytes())


def witness_call(ours: Ours) -> Call:
    model, feed, out = ours.model, {"x": ours.x}, ours.path("compiled.wtns")
    return lambda: out.write_bytes(witness_bytes(compile_model(model, feed).witness))


def setup_call(ours: Ours, stem: str, steps: list[tuple[str, float]] | None = None) -> Call:
    """setup + beacon + verification key, into ``<stem>.zkey`` (``circuit``: the proving key
    the prove calls use; the timed setup writes under another stem). ``steps``, if given,
    receives each step's seconds."""
    s, r1cs = ours.snarkjs, ours.path("circuit.r1cs")
    initial, zkey = ours.path(f"{stem}_0000.zkey"), ours.path(f"{stem}.zkey")
    vkey = ours.path("verification_key.json" if stem == "circuit" else f"{stem}_vk.json")
    parts: list[tuple[str, Callable[[], object]]] = [
        ("groth16 setup", lambda: s.setup(r1cs, ours.ptau, initial)),
        ("zkey beacon", lambda: s.zkey_beacon(initial, zkey)),
        ("export verificationkey", lambda: s.export_verification_key(zkey, vkey)),
    ]

    def call() -> object:
        for name, part in parts:
            start = time.perf_counter()
            part()
            if steps is not None:
                steps.append((name, time.perf_counter() - start))
        initial.unlink()
        return vkey

    return call


def prove_call(ours: Ours) -> Call:
    s, witness = ours.snarkjs, ours.compiled.witness
    zkey, wtns = ours.path("circuit.zkey"), ours.path("witness.wtns")
    proof, public = ours.path("proof.json"), ours.path("public.json")

    def call() -> object:
        wtns.write_bytes(witness_bytes(witness))
        return s.prove(zkey, wtns, proof, public)

    return call


def verify_call(ours: Ours) -> Call:
    vkey, proof, public = (ours.path(n) for n in ("verification_key.json", "proof.json",
                                                  "public.json"))  # fmt: skip
    return lambda: verify_proof(
        read_verification_key(vkey.read_bytes()),
        read_proof(proof.read_bytes()),
        read_public(public.read_bytes()),
    )


# --- the rows ----------------------------------------------------------------------------------


class Baselines:
    """EZKL's timed calls by row name (``bench/zk_ezkl_side.py`` makes them), or none."""

    def __init__(self, calls: dict[str, tuple[str, Call]] | None, missing: str = "") -> None:
        self.calls = calls
        self.missing = missing

    def get(self, row: str) -> tuple[str, Call, bool]:
        if self.calls is None:
            return f"EZKL: not measured ({self.missing})", _nothing, True
        label, call = self.calls[row]
        return label, call, False


def _nothing() -> None:
    return None


def zk_rows(ours: Ours, baselines: Baselines) -> list[Row]:
    c = ours.compiled
    n = len(c.r1cs.constraints)
    first = "first setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in ours.setup_steps)
    table: list[tuple[str, str, Callable[[], Call], Goal | None, float | None, str]] = [
        ("compile", "compile_model + .r1cs written", lambda: compile_call(ours), None, None,
         (f"{n:,} constraints, {c.r1cs.n_public} public signals, {c.r1cs.n_wires:,} wires; "
          f"circuit hash {c.circuit_hash}; compile_model also computes the witness")),
        ("witness", "compile_model + .wtns written", lambda: witness_call(ours), None, None,
         "our compiler is the witness generator: the same walk as compile"),
        ("setup", "snarkjs groth16 setup + zkey beacon + export verificationkey",
         lambda: setup_call(ours, "timed"), None, None,
         f"from the cached 2^{PTAU_POWER} powers of tau; three Node processes ({first})"),
        ("prove", "witness_bytes -> .wtns + snarkjs groth16 prove", lambda: prove_call(ours),
         PROVE_GOAL, None, "a Node process per proof (start, zkey read, prove); goal ours/EZKL"),
        ("verify", "groth16.verify_proof (pure Python, py_ecc), files read",
         lambda: verify_call(ours), None, VERIFY_UNDER_S,
         "steps (1)-(5): shape, field, curve, G2 subgroup, one pairing product; goal: absolute"),
    ]  # fmt: skip
    rows = []
    for name, label, make, goal, under, notes in table:
        base_label, base, solo = baselines.get(name)
        case = Case(name=f"zk: {name}, MLP 784-56-10", baseline_label=base_label,
                    subject_label=label, baseline=base, subject=make(), goal=goal,
                    notes=notes)  # fmt: skip
        rows.append(Row(step=name, case=case, solo=solo, under_s=under))
    return rows


def our_figures(ours: Ours, theirs: dict[str, int] | None) -> list[Figure]:
    """Sizes and counts; ``theirs`` holds EZKL's by the same keys (None: not measured)."""
    t = theirs or {}
    c = ours.compiled

    def size(name: str) -> int:
        return ours.path(name).stat().st_size

    return [
        Figure(name="constraints / rows", ours=len(c.r1cs.constraints), ezkl=t.get("rows"),
               unit="", note=f"ours: R1CS constraints (2^{PTAU_POWER} ptau); EZKL: used rows "
               + (f"of its 2^{t['logrows']}-row Halo2 circuit" if "logrows" in t else "")),
        Figure(name="public signals / instances", ours=c.r1cs.n_public,
               ezkl=t.get("instances"), unit="",
               note="ours: inputs and outputs packed several per field element"),
        Figure(name="proof, file as written", ours=size("proof.json"), ezkl=t.get("proof_file"),
               unit="B", goal_bytes=PROOF_GOAL_BYTES,
               note="snarkjs proof.json; EZKL proof.json (hex proof, instances, rescaled I/O)"),
        Figure(name="proof, points only", ours=COMPRESSED_PROOF_BYTES, ezkl=t.get("proof_raw"),
               unit="B", note="ours: 2 G1 + 1 G2 compressed; EZKL: its proof bytes"),
        Figure(name="public signals file", ours=size("public.json"), ezkl=None, unit="B",
               note="snarkjs public.json (EZKL's instances are inside its proof.json)"),
        Figure(name="proving key", ours=size("circuit.zkey"), ezkl=t.get("pk"), unit="B",
               note="snarkjs .zkey; EZKL pk.key"),
        Figure(name="verification key", ours=size("verification_key.json"), ezkl=t.get("vk"),
               unit="B", note="snarkjs verification_key.json; EZKL vk.key"),
        Figure(name="circuit file", ours=size("circuit.r1cs"), ezkl=t.get("circuit"), unit="B",
               note=".r1cs; EZKL network.ezkl"),
        Figure(name="setup file (ptau / SRS)", ours=ours.ptau.stat().st_size,
               ezkl=t.get("srs"), unit="B", note="one-off, cached in bench/out"),
    ]  # fmt: skip
