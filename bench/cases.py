"""The comparisons the benchmark runs: subjects, baselines, goals, and a check of each subject.

Three families, each a subject against a baseline measured in the same run:

* issuance: ``ModelSession.run(...).to_bytes()`` against a bare ``session.run`` of the same
  onnxruntime session the provider holds (8x512x512 MLP at batch 32; a small convnet);
* verification: ``Verifier.check`` on one receipt of the fixtures MLP against one raw Ed25519
  verification (cryptography) of a message as long as the receipt's signed PAE bytes;
* model digest: ``load_model(path)`` on a ~100 MB model against reading the file(s) and SHA-256
  over the bytes, once with embedded weights and once with external data.

Before timing, every case checks once that the subject does what it claims (bit-identical outputs,
exactly the expected verification steps passed, equal digests for both storage layouts, file
SHA-256 and runtime bytes left uncomputed by ``load_model``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.harness import Call, Case, Goal
from bench.models import big_mlp, convnet_bytes, float_input, mlp_bytes
from receipts import (
    Envelope,
    LoadedModel,
    ModelSession,
    OrtRunner,
    Policy,
    PrivateKey,
    Provider,
    Report,
    Status,
    Verifier,
    load_model,
    load_model_bytes,
    pae,
)

Arrays = dict[str, np.ndarray[Any, Any]]
FIXTURE_MLP = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "mlp.onnx"

# -- issuance -------------------------------------------------------------------------------------


def bare_session(session: ModelSession) -> ort.InferenceSession:
    if not isinstance(session.runner, OrtRunner):
        raise TypeError("the provider's runner is not an OrtRunner")
    return session.runner.session


def arrays(values: Mapping[str, object]) -> Arrays:
    """``values`` as plain arrays; these benchmarks' models take and give tensors only."""
    if not all(isinstance(v, np.ndarray) for v in values.values()):
        raise TypeError("expected tensors only")
    return {name: np.asarray(v) for name, v in values.items()}


def open_session(model_bytes: bytes) -> tuple[ModelSession, PrivateKey]:
    key = PrivateKey.generate()
    return Provider(key).session(load_model_bytes(model_bytes)), key


def issuance_case(name: str, model_bytes: bytes, x: np.ndarray[Any, Any], goal: Goal) -> Case:
    session, _ = open_session(model_bytes)
    bare = bare_session(session)
    feeds = {"x": x}
    issued = arrays(session.run(feeds).outputs)
    expected = arrays(dict(zip(issued, bare.run(None, feeds), strict=True)))
    for out, got in issued.items():
        if got.dtype != expected[out].dtype or got.tobytes() != expected[out].tobytes():
            raise AssertionError(f"{name}: output {out!r} differs from the bare session's")
    return Case(
        name=name,
        baseline_label="InferenceSession.run",
        subject_label="ModelSession.run + to_bytes",
        baseline=lambda: bare.run(None, feeds),
        subject=lambda: session.run(feeds).to_bytes(),
        goal=goal,
        notes=f"input float32{list(x.shape)}; {session.runner.profile.settings.describe()}",
    )


ISSUANCE = (  # name, model bytes, input shape, goal: ratio at most
    ("issue: MLP 8x512x512, batch 32", mlp_bytes, (32, 512), 1.10),
    ("issue: convnet 4 conv stages", convnet_bytes, (8, 3, 32, 32), 1.02),
)


def issuance_cases() -> list[Case]:
    return [
        issuance_case(name, build(), float_input(shape), Goal(op="<=", value=goal))
        for name, build, shape, goal in ISSUANCE
    ]


# -- verification ---------------------------------------------------------------------------------

SIGNATURE_STEPS = ("1-2 decode", "3 signature", "4 payload", "5 time")
DIGEST_STEPS = ("6 model", "7 inputs", "8 outputs", "9 meter")


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """One receipt of the fixtures MLP, with the material a verifier is handed."""

    model: LoadedModel
    key: PrivateKey
    inputs: Arrays
    outputs: Arrays
    envelope: Envelope
    data: bytes


def signed_receipt() -> Signed:
    model = load_model(FIXTURE_MLP)
    inputs = {"x": float_input((4, 16))}
    key = PrivateKey.generate()
    issued = Provider(key).session(model).run(inputs)
    return Signed(
        model=model,
        key=key,
        inputs=inputs,
        outputs=arrays(issued.outputs),
        envelope=issued.envelope,
        data=issued.to_bytes(),
    )


def verifier(r: Signed, *rungs: str) -> Verifier:
    return Verifier(Policy(trusted_keys=(r.key.public_key,), required=rungs))


def expect(report: Report, passed: tuple[str, ...], what: str) -> None:
    """Fail loudly unless the report holds and exactly ``passed`` steps passed (none failed)."""
    steps = [(s.step, s.status) for rung in report.rungs for s in rung.steps]
    got = tuple(step for step, status in steps if status is Status.PASSED)
    failed = [step for step, status in steps if status is Status.FAILED]
    if not report or failed or got != passed:
        raise AssertionError(f"{what}: passed {got}, failed {failed}; expected {passed}")


def raw_verify(envelope: Envelope) -> tuple[Call, int]:
    """A raw Ed25519 verification of a message as long as the envelope's signed PAE bytes."""
    length = len(pae(envelope.payload_type, envelope.payload))
    private = ed25519.Ed25519PrivateKey.generate()
    public, message = private.public_key(), os.urandom(length)
    signature = private.sign(message)
    return lambda: public.verify(signature, message), length


def verification_cases() -> list[Case]:
    r = signed_receipt()
    data, model, inputs, outputs = r.data, r.model, r.inputs, r.outputs
    baseline, message_len = raw_verify(r.envelope)
    full = verifier(r, "signature", "digests")
    signature_only = verifier(r, "signature")
    # Passing the model and the inputs would allow re-execution; "reexec" is not required, so it
    # must not run (the expected steps end at 9).
    report = full.check(data, model=model, inputs=inputs, outputs=outputs)
    expect(report, (*SIGNATURE_STEPS, *DIGEST_STEPS), "signature + digests")
    expect(signature_only.check(data), SIGNATURE_STEPS, "signature only")
    shapes = f"x float32{list(inputs['x'].shape)}, y float32{list(outputs['y'].shape)}"

    def case(name: str, subject: Call, goal: Goal | None, notes: str) -> Case:
        return Case(
            name=name,
            baseline_label=f"Ed25519PublicKey.verify, {message_len} B",
            subject_label="Verifier.check",
            baseline=baseline,
            subject=subject,
            goal=goal,
            throughput=True,
            notes=notes,
        )

    return [
        case(
            "verify: signature + digests (model, inputs, outputs)",
            lambda: full.check(data, model=model, inputs=inputs, outputs=outputs),
            Goal(op=">=", value=0.6),
            f"steps 1-9 ({shapes}; LoadedModel precomputed, meter plan cached); "
            "reexec not required, not run",
        ),
        case(
            "verify: signature only",
            lambda: signature_only.check(data),
            None,
            "steps 1-5: decode, type, signature, payload, time",
        ),
    ]


# -- model digest ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFiles:
    """The same ~100 MB model saved twice: weights embedded, and weights in one external file."""

    embedded: Path
    external: Path
    external_data: Path


def write_big_model(folder: Path) -> ModelFiles:
    proto = big_mlp()
    files = ModelFiles(
        embedded=folder / "embedded" / "big_mlp.onnx",
        external=folder / "external" / "big_mlp.onnx",
        external_data=folder / "external" / "big_mlp.data",
    )
    files.embedded.parent.mkdir()
    files.external.parent.mkdir()
    files.embedded.write_bytes(proto.SerializeToString())
    onnx.save_model(  # converts ``proto`` to external data in place; not used afterwards
        proto,
        str(files.external),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=files.external_data.name,
        size_threshold=1024,
    )
    return files


def read_and_hash(paths: tuple[Path, ...]) -> bytes:
    """The baseline: read each file whole (as ``load_model`` does) and SHA-256 all the bytes."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.digest()


def _check_digests(files: ModelFiles) -> LoadedModel:
    embedded, external = load_model(files.embedded), load_model(files.external)
    if embedded.digest != external.digest:
        raise AssertionError("embedded and external-data models have different digests")
    for model in (embedded, external):  # lazy: computed on first use, not by load_model
        if {"file_sha256", "runtime_bytes"} & set(vars(model)):
            raise AssertionError("load_model computed the file SHA-256 or the runtime bytes")
    return embedded


def digest_cases(files: ModelFiles) -> list[Case]:
    model = _check_digests(files)
    size = f"{files.embedded.stat().st_size / 1e6:.1f} MB model, {len(model.weights)} weights"

    def case(name: str, paths: tuple[Path, ...], notes: str) -> Case:
        return Case(
            name=name,
            baseline_label=f"read + hashlib.sha256 ({len(paths)} file{'s' * (len(paths) > 1)})",
            subject_label="load_model",
            baseline=lambda: read_and_hash(paths),
            subject=lambda: load_model(paths[0]),
            goal=Goal(op="<=", value=3.0),
            notes=f"{size}; {notes}; no file SHA-256, no runtime bytes; warm page cache",
        )

    return [
        case(
            "digest: load_model, embedded weights",
            (files.embedded,),
            "read + parse + walk + weight SHA-256 + Merkle root",
        ),
        case(
            "digest: load_model, external data",
            (files.external, files.external_data),
            "read + parse + walk (reads the data file, embeds its bytes) + SHA-256 + Merkle root",
        ),
    ]


def machine_profile() -> Mapping[str, str]:
    session, _ = open_session(mlp_bytes(layers=1, width=8, batch=1))
    return {"runtime_profile": session.runner.profile.describe()}
