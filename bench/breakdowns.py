"""Per-step breakdowns that explain the ratios: the parts of each subject timed on their own.

Every row is a public call of the library (or a "floor": the bare hashlib / cryptography call the
step cannot beat). Each step runs alone on the same data, so caches are warmer than inside the
real pipeline and the rows need not add up; the steps take turns round by round, so a drift in
machine speed does not land on one row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.cases import (
    ISSUANCE,
    ModelFiles,
    arrays,
    bare_session,
    open_session,
    raw_verify,
    signed_receipt,
    verifier,
)
from bench.harness import Call, profile_steps
from bench.models import float_input
from receipts import (
    Envelope,
    MeterPlan,
    Receipt,
    TensorMapDigest,
    load_model,
    load_model_bytes,
    pae,
)
from receipts.codec import decode

FLOOR = "  floor: "


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    step: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    name: str
    note: str
    steps: tuple[Step, ...]


def breakdown_of(
    name: str, note: str, calls: list[tuple[str, Call]], *, rounds: int, block: float
) -> Breakdown:
    timed = profile_steps(calls, rounds=rounds, block_seconds=block)
    return Breakdown(name=name, note=note, steps=tuple(Step(step=s, seconds=t) for s, t in timed))


def issuance(name: str, model_bytes: bytes, x: np.ndarray[Any, Any], rounds: int) -> Breakdown:
    """The steps of ``ModelSession.run`` one by one, with the hashing and signing floors."""
    session, key = open_session(model_bytes)
    bare = bare_session(session)
    feeds = {"x": x}
    issued = session.run(feeds)
    outputs, receipt, envelope = arrays(issued.outputs), issued.receipt, issued.envelope
    payload = receipt.encode()
    message = pae(envelope.payload_type, payload)
    raw_key = ed25519.Ed25519PrivateKey.generate()
    tensors = [np.ascontiguousarray(a) for a in (*feeds.values(), *outputs.values())]
    calls: list[tuple[str, Call]] = [
        ("onnxruntime run (bare session)", lambda: bare.run(None, feeds)),
        ("session.runner.run (OrtRunner, as issuance calls it)", lambda: session.runner.run(feeds)),
        ("full issuance + to_bytes", lambda: session.run(feeds).to_bytes()),
        ("model.check_inputs", lambda: session.model.check_inputs(feeds)),
        ("TensorMapDigest.of(inputs)", lambda: TensorMapDigest.of(feeds)),
        ("TensorMapDigest.of(outputs)", lambda: TensorMapDigest.of(outputs)),
        (
            FLOOR + "hashlib.sha256 of input and output bytes",
            lambda: [hashlib.sha256(t.data).digest() for t in tensors],
        ),
        ("meter_plan.units (cached)", lambda: session.meter_plan.units({"x": x.shape})),
        ("receipt.encode()", receipt.encode),
        (
            "Envelope.sign (PAE + Ed25519)",
            lambda: Envelope.sign(envelope.payload_type, payload, key),
        ),
        (FLOOR + "Ed25519 sign of the PAE bytes", lambda: raw_key.sign(message)),
        ("envelope.to_bytes()", envelope.to_bytes),
    ]
    return breakdown_of(
        name, "each step alone, same data; rows overlap", calls, rounds=rounds, block=0.01
    )


def issuance_all(rounds: int) -> list[Breakdown]:
    return [
        issuance(name, build(), float_input(shape), rounds) for name, build, shape, _ in ISSUANCE
    ]


def verification(rounds: int) -> Breakdown:
    """The parts of ``Verifier.check`` with signature + digests on model, inputs and outputs."""
    r = signed_receipt()
    envelope, data, payload = r.envelope, r.data, r.envelope.payload
    trusted = (r.key.public_key,)
    baseline, _ = raw_verify(envelope)
    full, signature_only = verifier(r, "signature", "digests"), verifier(r, "signature")
    plan = MeterPlan(r.model)
    shapes = {name: a.shape for name, a in r.inputs.items()}
    calls: list[tuple[str, Call]] = [
        (
            "Verifier.check, signature + digests (1-9)",
            lambda: full.check(data, model=r.model, inputs=r.inputs, outputs=r.outputs),
        ),
        ("Verifier.check, signature only (1-5)", lambda: signature_only.check(data)),
        ("Envelope.from_bytes (1-2)", lambda: Envelope.from_bytes(data)),
        ("  of which codec.decode(envelope bytes)", lambda: decode(data)),
        ("envelope.verify_signature (3)", lambda: envelope.verify_signature(trusted)),
        (FLOOR + "Ed25519PublicKey.verify, preloaded key", baseline),
        ("Receipt.decode (4)", lambda: Receipt.decode(payload)),
        ("  of which codec.decode(payload)", lambda: decode(payload)),
        ("TensorMapDigest.of(inputs) (7)", lambda: TensorMapDigest.of(r.inputs)),
        ("TensorMapDigest.of(outputs) (8)", lambda: TensorMapDigest.of(r.outputs)),
        ("MeterPlan.units, cached plan (9)", lambda: plan.units(shapes)),
    ]
    return breakdown_of(
        "verify: signature + digests (model, inputs, outputs)",
        f"each step alone; receipt payload {len(payload)} B, envelope {len(data)} B",
        calls,
        rounds=rounds,
        block=0.01,
    )


def digest(files: ModelFiles, rounds: int) -> Breakdown:
    """Where ``load_model`` spends its time, and what it now leaves for later (lazy)."""
    data = files.embedded.read_bytes()
    external = load_model(files.external)

    def parse() -> object:
        return onnx.ModelProto().ParseFromString(data)

    calls: list[tuple[str, Call]] = [
        ("load_model, embedded weights (total)", lambda: load_model(files.embedded)),
        ("  Path.read_bytes of the .onnx file", files.embedded.read_bytes),
        ("  load_model_bytes (no read)", lambda: load_model_bytes(data)),
        ("    of which ModelProto.ParseFromString", parse),
        (FLOOR + "hashlib.sha256 of the file bytes (in memory)", lambda: hashlib.sha256(data)),
        ("load_model, external data (total)", lambda: load_model(files.external)),
        ("  Path.read_bytes of the data file", files.external_data.read_bytes),
        ("lazy, not in load_model: runtime bytes (external)", external.proto.SerializeToString),
    ]
    return breakdown_of(
        "digest: load_model", "each step alone, warm page cache", calls, rounds=rounds, block=0.0
    )
