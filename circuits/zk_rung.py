"""The zk rung: a Groth16 proof attached to the receipt shows that the manifest's model gives the
receipt's outputs on the receipt's inputs (verification; pure Python, no model, no re-run).

Called by ``receipts.verifier`` after the signature rung passed. Steps, numbered with the
verifier's:

  (18) attachment  the envelope carries a ``groth16-bn254`` v1 item (``circuits.proof_item``)
                   whose body decodes: the manifest id, ``proof.json`` and ``public.json``
                   through step (1) of ``circuits.groth16``; items of other types are reported
                   and never counted
  (19) manifest    the policy's manifest is signed by one of its trusted keys, names the
                   supplied verification key by digest (a key whose signal count is the
                   manifest's), is for the receipt's model, and is the manifest the proof names
  (20) binding     the supplied outputs and inputs have the receipt's tensor-map digests and the
                   receipt's entries have the manifest's layout (names, plain tensors: no
                   sequence or optional; integer types, shapes), and the proof's public
                   signals, each below the scalar field modulus, are exactly their packing
                   (``circuits.packing``): the outputs, then the inputs
  (21) proof       steps (2)-(5) of ``circuits.groth16`` against the verification key: field,
                   curve, subgroup, pairing

With several proof items the rung passes when one passes 18-21; otherwise the report follows the
one that got furthest (earliest among equals), so an item anyone can add cannot hide why the
real one failed. The cheap steps come first: only a proof bound to this receipt costs a pairing.

    steps = Steps()
    check_zk(steps, envelope=env, receipt=receipt, policy=zk_policy, inputs=x, outputs=y)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from circuits.groth16 import Proof, VerificationKey, read_verification_key, verify_proof
from circuits.manifest import VERIFICATION_KEY, CircuitManifest, SignedManifest, read_manifest
from circuits.packing import pack_values
from circuits.proof_item import PROOF_ITEM_VERSION, ProofItem
from circuits.r1cs import P
from receipts.attachments import GROTH16_PROOF, Attachment
from receipts.digests import SequenceEntry, TensorEntry, TensorMapDigest, digest_of
from receipts.envelope import Envelope
from receipts.errors import (
    CircuitBindingError,
    DigestMismatchError,
    PolicyError,
    ReceiptsError,
    ZkProofError,
)
from receipts.receipt import Receipt
from receipts.report import Status, StepResult, Steps, ZkPolicy

STEPS = ("18 attachment", "19 manifest", "20 binding", "21 proof")
TensorMap = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """What every proof item is checked against: the receipt, the supplied tensors, and the
    policy's circuit as read once (or the error reading it, which step 19 reports)."""

    receipt: Receipt
    inputs: TensorMap | None
    outputs: TensorMap | None
    signed: SignedManifest | None = None
    key: VerificationKey | None = None
    error: ReceiptsError | None = None


def check_zk(
    steps: Steps,
    *,
    envelope: Envelope,
    receipt: Receipt,
    policy: ZkPolicy,
    inputs: TensorMap | None,
    outputs: TensorMap | None,
) -> None:
    """Steps 18-21 into ``steps``; never raises for a failed step."""
    proofs = [a for a in envelope.attachments if _is_proof(a)]
    others = [a.describe() for a in envelope.attachments if not _is_proof(a)]
    note = f"; not counted: {', '.join(others)}" if others else ""
    if not proofs:
        missing = f"no {GROTH16_PROOF} v{PROOF_ITEM_VERSION} proof is attached{note}"
        steps.fail(STEPS[0], PolicyError(missing))
        for later in STEPS[1:]:
            steps.skip(later, "no proof to check")
        return
    try:
        signed, key = _read_circuit(policy)
        context = _Context(receipt=receipt, inputs=inputs, outputs=outputs, signed=signed, key=key)
    except ReceiptsError as e:
        context = _Context(receipt=receipt, inputs=inputs, outputs=outputs, error=e)
    outcomes: list[list[StepResult]] = []
    for item in proofs:
        outcomes.append(_ProofCheck(item, context, note).run())
        if all(r.status is Status.PASSED for r in outcomes[-1]):
            break
    best = max(range(len(outcomes)), key=lambda i: (_passed(outcomes[i]), -i))
    prefix = f"proof {best + 1} of {len(proofs)}: " if len(proofs) > 1 else ""
    for result in outcomes[best]:
        failed = result.status is Status.FAILED and prefix
        steps.results.append(replace(result, reason=prefix + result.reason) if failed else result)


def _is_proof(item: Attachment) -> bool:
    return (item.type, item.version) == (GROTH16_PROOF, PROOF_ITEM_VERSION)


def _passed(results: list[StepResult]) -> int:
    return sum(r.status is Status.PASSED for r in results)


def _read_circuit(policy: ZkPolicy) -> tuple[SignedManifest, VerificationKey]:
    """The policy's part of step 19: a trusted manifest naming the supplied key."""
    signed = read_manifest(policy.manifest, policy.trusted_keys)
    named = signed.manifest.verification_key
    supplied = digest_of(VERIFICATION_KEY, policy.verification_key)
    if named != supplied:
        raise CircuitBindingError(
            f"the manifest names verification key {named}; the supplied key is {supplied} "
            "(a key of another circuit or another setup)"
        )
    key = read_verification_key(policy.verification_key)
    if key.n_public != signed.manifest.n_public:
        raise CircuitBindingError(
            f"the verification key takes {key.n_public} public signals; the manifest's layout "
            f"packs {signed.manifest.n_public}"
        )
    return signed, key


class _ProofCheck:
    """One proof item's steps in order, each reading what the previous ones established."""

    def __init__(self, item: Attachment, context: _Context, note: str) -> None:
        self.item, self.context, self.note = item, context, note
        self.decoded: ProofItem | None = None
        self.proof: Proof | None = None
        self.public: tuple[int, ...] = ()

    def run(self) -> list[StepResult]:
        steps = Steps()
        named: list[tuple[str, Callable[[], Mapping[str, object]]]] = [
            (STEPS[0], self.attachment),
            (STEPS[1], self.manifest),
            (STEPS[2], self.binding),
            (STEPS[3], self.verify),
        ]
        for index, (name, fn) in enumerate(named):
            if not steps.run(name, fn):
                for later, _ in named[index + 1 :]:
                    steps.skip(later, "an earlier step failed")
                break
        return steps.results

    def attachment(self) -> Mapping[str, object]:  # (18) attachment
        self.decoded = ProofItem.from_attachment(self.item)
        self.proof, self.public = self.decoded.read()
        return {
            "summary": f"{self.item.describe()}, {len(self.public)} public signals{self.note}",
            "bytes": len(self.item.body),
        }

    def manifest(self) -> Mapping[str, object]:  # (19) manifest
        context, decoded = self.context, self.decoded
        if context.error is not None:
            raise context.error
        assert context.signed is not None and decoded is not None
        manifest = context.signed.manifest
        if manifest.model != context.receipt.model:
            raise CircuitBindingError(
                f"the manifest is for model {manifest.model}; the receipt's model is "
                f"{context.receipt.model}"
            )
        if decoded.manifest != context.signed.id:
            raise CircuitBindingError(
                f"the proof was made under manifest {decoded.manifest}, not the supplied one "
                f"({context.signed.id})"
            )
        return {
            "summary": f"circuit {manifest.info.circuit} ({manifest.info.compiler}, "
            f"{manifest.info.constraints} constraints) for the receipt's model, signed by key "
            f"{context.signed.key.key_id.hex()[:16]}…",
            "manifest": str(context.signed.id),
            "circuit": str(manifest.info.circuit),
            "ptau": str(manifest.ptau),
        }

    def binding(self) -> Mapping[str, object]:  # (20) binding
        context = self.context
        assert context.signed is not None
        if context.inputs is None or context.outputs is None:
            raise PolicyError(
                "the zk rung needs the outputs and inputs the receipt binds: the proof's public "
                "signals are their packing"
            )
        _same_tensors("outputs", context.receipt.outputs, context.outputs)
        _same_tensors("inputs", context.receipt.inputs, context.inputs)
        expected, owners = _packing(
            context.signed.manifest, context.receipt, context.outputs, context.inputs
        )
        for index, signal in enumerate(self.public):
            if not 0 <= signal < P:
                raise ZkProofError(
                    f"field: public signal {index} is not below the scalar field modulus",
                    details={"step": "field"},
                )
        if len(self.public) != len(expected):
            raise CircuitBindingError(
                f"the proof carries {len(self.public)} public signals; the manifest's layout "
                f"packs {len(expected)}"
            )
        differ = [i for i, (a, b) in enumerate(zip(self.public, expected, strict=True)) if a != b]
        if differ:
            raise CircuitBindingError(
                f"public signal {differ[0]} is not the packing of the supplied {owners[differ[0]]} "
                f"({len(differ)} of {len(expected)} differ): the proof is for other outputs or "
                "inputs",
                details={"differ": differ},
            )
        return {
            "summary": f"{len(expected)} public signals are the packing of the receipt's "
            f"outputs and inputs",
            "public_signals": len(expected),
        }

    def verify(self) -> Mapping[str, object]:  # (21) proof
        key, proof = self.context.key, self.proof
        assert key is not None and proof is not None
        verify_proof(key, proof, self.public)
        return {"summary": "Groth16 over BN254: field, curve, subgroup and pairing checks hold"}


def _same_tensors(what: str, expected: TensorMapDigest, arrays: TensorMap) -> None:
    if TensorMapDigest.of(arrays).entries != expected.entries:
        raise DigestMismatchError(f"the supplied {what} are not the receipt's")


def _packing(
    manifest: CircuitManifest, receipt: Receipt, outputs: TensorMap, inputs: TensorMap
) -> tuple[list[int], list[str]]:
    """The public signals the manifest's layout makes of the tensors, and which tensor each
    signal packs.

    The layout is compared with the receipt's entries, which the supplied tensors were just
    shown to give exactly: their kind (a sequence or an empty optional is not the tensor the
    circuit packs, even when ``np.asarray`` would make one of it), element type and shape. The
    values are then read from the supplied arrays, whatever their byte order."""
    expected: list[int] = []
    owners: list[str] = []
    for role, layouts, claimed, tensors in (
        ("output", manifest.info.outputs, receipt.outputs, outputs),
        ("input", manifest.info.inputs, receipt.inputs, inputs),
    ):
        entries = claimed.by_name()
        extra = sorted(set(entries) - {t.name for t in layouts})
        if extra:
            raise CircuitBindingError(f"the circuit does not prove {role}(s) {', '.join(extra)}")
        for t in layouts:
            entry = entries.get(t.name)
            if entry is None:
                raise CircuitBindingError(f"the circuit packs {role} {t.name!r}, absent here")
            if not isinstance(entry, TensorEntry):
                kind = "a sequence" if isinstance(entry, SequenceEntry) else "an empty optional"
                raise CircuitBindingError(
                    f"{role} {t.name!r} is {kind}; the circuit packs the tensor {t.describe()}"
                )
            if (entry.spec.elem_type, entry.spec.shape) != (t.dtype, t.shape):
                raise CircuitBindingError(
                    f"{role} {t.name!r} is {entry.spec.elem_type}{list(entry.spec.shape)}; the "
                    f"circuit packs {t.dtype}{list(t.shape)}"
                )
            packed = pack_values(np.asarray(tensors[t.name]), t.dtype)
            expected += packed
            owners += [f"{role} {t.name!r}"] * len(packed)
    return expected, owners
