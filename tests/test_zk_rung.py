"""The zk rung (steps 18-21) end to end on ``tiny_int``: compile, set up keys, prove a real receipt,
attach, verify in pure Python; then the issue's bad input as failed steps naming their error, the
signed circuit manifest, and the prover's refusals.

One 2^7 powers-of-tau file per pytest cache (``Snarkjs.cached_ptau``); one setup and two proofs
per run; a pairing only for the cases that get that far (the rest fail on a cheaper step).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from circuits.circuit_dir import (
    CircuitDir,
    attach_proof,
    compile_circuit,
    prove,
    ptau,
    setup,
)
from circuits.compile import COMPILER_VERSION, compile_model
from circuits.manifest import (
    MANIFEST_PAYLOAD_TYPE,
    PROVING_KEY,
    PTAU,
    VERIFICATION_KEY,
    SignedManifest,
    TensorLayout,
    file_digest,
    read_manifest,
    sign_manifest,
)
from circuits.proof_item import ProofItem
from circuits.r1cs import P
from circuits.snarkjs import SNARKJS, Snarkjs
from circuits.zk_rung import STEPS
from fixtures.int_models import sample_input, tiny_int
from receipts import codec
from receipts.attachments import GROTH16_PROOF, Attachment
from receipts.digests import Digest, TensorMapDigest, digest_of
from receipts.effects import FixedClock, seeded
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.errors import (
    CircuitBindingError,
    CircuitFormatError,
    DigestMismatchError,
    MalformedError,
    NonCanonicalError,
    PolicyError,
    ReceiptsError,
    SignatureError,
    UnsupportedVersionError,
    ZkProofError,
)
from receipts.files import StorageError
from receipts.model import LoadedModel, load_model_bytes
from receipts.provider import Issued, Provider
from receipts.receipt import Receipt
from receipts.report import Policy, Report, Status, ZkPolicy, allowed_rungs
from receipts.verifier import Verifier
from tests.conftest import FIXTURES, fixture_key, fixture_model, fixture_public
from tests.nitrokit import NOW, sim_policy

pytestmark = [
    pytest.mark.skipif(not SNARKJS.exists(), reason="snarkjs is not installed (`make setup`)"),
    pytest.mark.xdist_group("zk"),  # one worker builds the keys once for the whole module
]
PUBLISHER = fixture_key("other_ed25519")  # signs circuit manifests
PROVIDER = fixture_key()
OTHER_VK = (FIXTURES / "zk" / "other" / "verification_key.json").read_bytes()  # 2 signals too


@pytest.fixture(scope="session")
def snarkjs() -> Snarkjs:
    return Snarkjs.locate(timeout_s=120)


@pytest.fixture(scope="session")
def ptau_file(request: pytest.FixtureRequest, snarkjs: Snarkjs, tmp_path_factory: Any) -> Path:
    """2^7 >= tiny_int's 68 constraints + 2 public signals + 1; made once per pytest cache."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("zk-ptau") if cache is not None else tmp_path_factory.mktemp("ptau")
    return snarkjs.cached_ptau(7, Path(folder))


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """One circuit for tiny_int with its keys, and two receipts, each with its own proof."""

    model: LoadedModel
    folder: Path
    signed: SignedManifest
    vk: bytes
    ptau: Path
    a: Issued
    b: Issued
    proof_a: Attachment
    proof_b: Attachment
    inputs: dict[Digest, dict[str, np.ndarray]]

    def x(self, issued: Issued) -> dict[str, np.ndarray]:
        """The inputs ``issued`` was run on."""
        return self.inputs[issued.receipt_id]

    def zk(self, **changes: Any) -> ZkPolicy:
        base = {
            "verification_key": self.vk,
            "manifest": self.signed.to_bytes(),
            "trusted_keys": (PUBLISHER.public_key,),
        }
        return ZkPolicy(**{**base, **changes})


@pytest.fixture(scope="module")
def world(snarkjs: Snarkjs, ptau_file: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    model = load_model_bytes(tiny_int().SerializeToString())
    folder = tmp_path_factory.mktemp("zk") / "tiny.circuit"
    compile_circuit(model, folder)
    signed = setup(folder, ptau_file, PUBLISHER, snarkjs, random_bytes=seeded(7))
    issued, inputs = [], {}
    for seed in (1, 2):
        x = {"x": sample_input("tiny_int", seed)}
        provider = Provider(PROVIDER, clock=FixedClock(NOW), random_bytes=seeded(seed))
        issued.append(provider.session(model).run(x))
        inputs[issued[-1].receipt_id] = x
    a, b = issued
    assert not np.array_equal(a.outputs["y"], b.outputs["y"])
    return World(
        model=model,
        folder=folder,
        signed=signed,
        vk=CircuitDir(folder).verification_key_bytes(),
        ptau=ptau_file,
        a=a,
        b=b,
        proof_a=prove(folder, model, inputs[a.receipt_id], a.to_bytes(), snarkjs),
        proof_b=prove(folder, model, inputs[b.receipt_id], b.to_bytes(), snarkjs),
        inputs=inputs,
    )


def _check(
    data: bytes,
    zk: ZkPolicy,
    *,
    inputs: dict[str, Any] | None,
    outputs: dict[str, Any] | None,
) -> Report:
    policy = Policy(trusted_keys=(PROVIDER.public_key,), required=("signature", "zk"), zk=zk)
    return Verifier(policy, clock=FixedClock(NOW)).check(data, inputs=inputs, outputs=outputs)


# --- the rung passes ------------------------------------------------------------------------


def test_a_proof_attached_to_its_receipt_passes_every_rung(world: World) -> None:
    data = attach_proof(world.a.to_bytes(), world.proof_a)
    verifier = Verifier(
        Policy(trusted_keys=(PROVIDER.public_key,), zk=world.zk()), clock=FixedClock(NOW)
    )
    a = world.a
    verified = verifier.verify(data, model=world.model, inputs=world.x(a), outputs=a.outputs)
    report = verified.report
    assert report.required == ("signature", "digests", "reexec", "zk")
    zk = report.rung("zk")
    assert [s.step for s in zk.steps] == list(STEPS)
    assert zk.status is Status.PASSED
    assert zk.steps[1].details["manifest"] == str(world.signed.id)


def test_the_zk_rung_needs_neither_the_model_nor_a_rerun(world: World) -> None:
    data = attach_proof(world.a.to_bytes(), world.proof_a)
    report = _check(data, world.zk(), inputs=world.x(world.a), outputs=world.a.outputs)
    assert report, report.first_error()
    assert [r.rung for r in report.rungs if r.status is Status.PASSED] == ["signature", "zk"]


def test_the_rung_reads_values_whatever_their_byte_order(world: World) -> None:
    # A big-endian array (as some .npz writers store it) has the receipt's digest; its dtype
    # is ">i4", not "int32", but it is the same tensor.
    outputs = {"y": world.a.outputs["y"].astype(">i4")}
    inputs = {"x": world.x(world.a)["x"].astype(">u1")}
    data = attach_proof(world.a.to_bytes(), world.proof_a)
    report = _check(data, world.zk(), inputs=inputs, outputs=outputs)
    assert report, report.first_error()


def test_the_zk_rung_joins_the_rungs_the_material_allows() -> None:
    assert allowed_rungs(None, None, None, zk=True) == ("signature", "zk")
    assert allowed_rungs(1, 1, 1, tee=True, zk=True)[-2:] == ("tee", "zk")
    with pytest.raises(MalformedError, match="zk rung needs a zk policy"):
        Policy(required=("signature", "zk"))
    with pytest.raises(MalformedError, match="at least one trusted"):
        ZkPolicy(verification_key=b"{}", manifest=b"x", trusted_keys=())


# --- bad input: each a failed step with its error class ---------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    data: bytes
    zk: ZkPolicy
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None


def _honest(w: World, item: Attachment | None = None, **zk: Any) -> Case:
    data = w.a.to_bytes() if item is None else attach_proof(w.a.to_bytes(), item)
    return Case(data=data, zk=w.zk(**zk), inputs=w.x(w.a), outputs=w.a.outputs)


def _item(w: World, **changes: Any) -> Attachment:
    """Receipt a's proof item with fields changed (the item is outside every signature)."""
    item = ProofItem.from_attachment(w.proof_a)
    return replace(item, **changes).to_attachment()


def _json(data: bytes, change: Callable[[Any], None]) -> bytes:
    value = json.loads(data)
    change(value)
    return json.dumps(value).encode()


def _proof(w: World, change: Callable[[dict[str, Any]], None]) -> Attachment:
    return _item(w, proof=_json(ProofItem.from_attachment(w.proof_a).proof, change))


def _public(w: World, change: Callable[[list[str]], None]) -> Attachment:
    return _item(w, public=_json(ProofItem.from_attachment(w.proof_a).public, change))


def _body(w: World, body: bytes) -> Attachment:
    return Attachment(type=GROTH16_PROOF, version=1, body=body)


def _wire(w: World, **changes: object) -> bytes:
    item = ProofItem.from_attachment(w.proof_a)
    wire: dict[str, object] = {
        "manifest": item.manifest.value,
        "proof": item.proof,
        "public": item.public,
    }
    wire.update(changes)
    return codec.encode({k: v for k, v in wire.items() if v is not None})


def _resigned(w: World, item: Attachment | None = None, **changes: Any) -> Case:
    """A manifest signed by the trusted publisher with ``changes``, named by the proof."""
    manifest = w.signed.manifest
    if "model" in changes:
        manifest = replace(manifest, info=replace(manifest.info, model=changes.pop("model")))
    signed = sign_manifest(replace(manifest, **changes), PUBLISHER)
    named = item or _item(w, manifest=signed.id)
    vk = OTHER_VK if "verification_key" in changes else w.vk
    return _honest(w, named, manifest=signed.to_bytes(), verification_key=vk)


def _lying_receipt(w: World) -> tuple[bytes, dict[str, Any]]:
    """Receipt a re-signed by its provider with outputs the model does not give."""
    outputs = {"y": w.a.outputs["y"] + np.int32(1)}
    receipt = replace(w.a.receipt, outputs=TensorMapDigest.of(outputs))
    envelope = Envelope.sign(RECEIPT_PAYLOAD_TYPE, receipt.encode(), PROVIDER)
    return envelope.to_bytes(), outputs


def _lying(w: World) -> Case:
    data, outputs = _lying_receipt(w)
    return Case(data=attach_proof(data, w.proof_a), zk=w.zk(), inputs=w.x(w.a), outputs=outputs)


def _resigned_outputs(w: World, outputs: dict[str, Any]) -> Case:
    """Receipt a re-signed by its provider with ``outputs`` in place of its own, a's proof
    attached, and those outputs supplied (so they are exactly the receipt's)."""
    receipt = replace(w.a.receipt, outputs=TensorMapDigest.of(outputs))
    data = Envelope.sign(RECEIPT_PAYLOAD_TYPE, receipt.encode(), PROVIDER).to_bytes()
    return Case(data=attach_proof(data, w.proof_a), zk=w.zk(), inputs=w.x(w.a), outputs=outputs)


def _as_sequence(w: World) -> Case:
    """The proven values of y, claimed as a sequence of one int32[2] tensor: ``np.asarray``
    of that list is the int32[1, 2] tensor the circuit packs, but the receipt says otherwise."""
    return _resigned_outputs(w, {"y": [w.a.outputs["y"][0]]})


def _ragged(w: World) -> Case:
    """y claimed as a sequence of tensors of two shapes, which no array holds."""
    return _resigned_outputs(w, {"y": [np.zeros(2, np.int32), np.zeros(3, np.int32)]})


def _swap_a_c(proof: dict[str, Any]) -> None:
    proof["pi_a"], proof["pi_c"] = proof["pi_c"], proof["pi_a"]


def _off_curve(proof: dict[str, Any]) -> None:
    proof["pi_a"][1] = str(int(proof["pi_a"][1]) + 1)


def _alias(public: list[str]) -> None:
    public[0] = str(int(public[0]) + P)


BAD: dict[str, tuple[Callable[[World], Case], str, type[ReceiptsError], str]] = {
    # (18) attachment
    "no_proof_attached": (_honest, "18", PolicyError, "no groth16-bn254"),
    "only_an_unknown_version_attached": (
        lambda w: _honest(w, replace(w.proof_a, version=2)),
        "18", PolicyError, "not counted: groth16-bn254 v2",
    ),
    "body_not_msgpack": (lambda w: _honest(w, _body(w, b"\xc1")), "18", MalformedError, "body"),
    "body_not_canonical": (
        lambda w: _honest(w, _body(w, msgpack.packb({"public": b"[]", "proof": b"{}",
                                                     "manifest": b"\0" * 32}))),
        "18", NonCanonicalError, "unsorted",
    ),
    "body_with_an_unknown_field": (
        lambda w: _honest(w, _body(w, _wire(w, extra=b"x"))), "18", MalformedError, "unknown",
    ),
    "body_without_public_signals": (
        lambda w: _honest(w, _body(w, _wire(w, public=None))), "18", MalformedError, "missing",
    ),
    "body_with_a_short_manifest_id": (
        lambda w: _honest(w, _body(w, _wire(w, manifest=b"\1" * 31))),
        "18", MalformedError, "32 bytes",
    ),
    "proof_json_not_json": (
        lambda w: _honest(w, _item(w, proof=b"{not json")), "18", CircuitFormatError, "JSON",
    ),
    "proof_json_without_pi_c": (
        lambda w: _honest(w, _proof(w, lambda p: p.pop("pi_c"))),
        "18", CircuitFormatError, "pi_c",
    ),
    "public_json_not_a_list": (
        lambda w: _honest(w, _item(w, public=b'{"0": "1"}')), "18", CircuitFormatError, "list",
    ),
    "public_signal_in_hex": (
        lambda w: _honest(w, _public(w, lambda s: s.__setitem__(0, hex(int(s[0]))))),
        "18", CircuitFormatError, "public signal 0",
    ),
    # (19) manifest
    "verification_key_of_another_circuit": (
        lambda w: _honest(w, w.proof_a, verification_key=OTHER_VK),
        "19", CircuitBindingError, "names verification key",
    ),
    "manifest_for_another_model": (
        lambda w: _resigned(w, model=fixture_model("mlp").digest),
        "19", CircuitBindingError, "manifest is for model",
    ),
    "manifest_by_an_untrusted_key": (
        lambda w: _honest(w, w.proof_a, trusted_keys=(fixture_public("challenger_ed25519"),)),
        "19", SignatureError, "not a trusted circuit-manifest key",
    ),
    "manifest_unsigned": (
        lambda w: _honest(w, w.proof_a, manifest=w.signed.envelope.payload),
        "19", UnsupportedVersionError, "not a signed envelope",
    ),
    "manifest_signature_broken": (
        lambda w: _honest(w, w.proof_a, manifest=_bad_signature(w.signed.envelope)),
        "19", SignatureError, "does not verify",
    ),
    "proof_names_another_manifest": (
        lambda w: _honest(w, _item(w, manifest=Digest(b"\7" * 32))),
        "19", CircuitBindingError, "made under manifest",
    ),
    # (20) binding
    "proof_of_another_receipt": (
        lambda w: _honest(w, w.proof_b), "20", CircuitBindingError, "other outputs or inputs",
    ),
    "proof_of_the_inputs_on_a_receipt_with_other_outputs": (
        _lying, "20", CircuitBindingError, "not the packing of the supplied output 'y'",
    ),
    "outputs_not_the_receipts": (
        lambda w: replace(_honest(w, w.proof_a), outputs=w.b.outputs),
        "20", DigestMismatchError, "outputs are not the receipt's",
    ),
    "no_inputs_supplied": (
        lambda w: replace(_honest(w, w.proof_a), inputs=None), "20", PolicyError, "needs",
    ),
    "public_signal_aliased_by_the_field_modulus": (
        lambda w: _honest(w, _public(w, _alias)), "20", ZkProofError, "scalar field modulus",
    ),
    "output_a_sequence_of_the_proven_values": (
        _as_sequence, "20", CircuitBindingError, "output 'y' is a sequence",
    ),
    "output_a_sequence_of_two_shapes": (
        _ragged, "20", CircuitBindingError, "output 'y' is a sequence",
    ),
    "output_an_empty_optional": (
        lambda w: _resigned_outputs(w, {"y": None}),
        "20", CircuitBindingError, "output 'y' is an empty optional",
    ),
    "one_public_signal_too_many": (
        lambda w: _honest(w, _public(w, lambda s: s.append("0"))),
        "20", CircuitBindingError, "3 public signals",
    ),
    # (21) proof
    "proof_points_swapped": (
        lambda w: _honest(w, _proof(w, _swap_a_c)), "21", ZkProofError, "pairing",
    ),
    "proof_point_off_the_curve": (
        lambda w: _honest(w, _proof(w, _off_curve)), "21", ZkProofError, "curve",
    ),
    "another_circuits_key_named_by_a_trusted_manifest": (
        lambda w: _resigned(w, verification_key=digest_of(VERIFICATION_KEY, OTHER_VK)),
        "21", ZkProofError, "pairing",
    ),
}  # fmt: skip


def _bad_signature(envelope: Envelope) -> bytes:
    signature = replace(envelope.signature, sig=_flip(envelope.signature.sig, 0))
    return replace(envelope, signature=signature).to_bytes()


def _flip(data: bytes, index: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_fails_the_named_step(world: World, name: str) -> None:
    make, step, error, reason = BAD[name]
    case = make(world)
    report = _check(case.data, case.zk, inputs=case.inputs, outputs=case.outputs)
    assert not report
    assert report.rung("signature").status is Status.PASSED
    zk = report.rung("zk")
    [failed] = zk.failures()
    assert failed.step.split()[0] == step, failed.reason
    assert type(failed.error) is error, failed.reason
    assert reason in failed.reason
    assert report.first_error() is failed.error
    later = [s.status for s in zk.steps[[s.step for s in zk.steps].index(failed.step) + 1 :]]
    assert all(s is Status.NOT_RUN for s in later)


def test_verify_raises_the_failed_steps_error(world: World) -> None:
    data = attach_proof(world.a.to_bytes(), world.proof_b)
    policy = Policy(required=("signature", "zk"), zk=world.zk())
    with pytest.raises(CircuitBindingError, match="other outputs or inputs"):
        Verifier(policy, clock=FixedClock(NOW)).verify(
            data, inputs=world.x(world.a), outputs=world.a.outputs
        )


def test_an_added_item_cannot_hide_a_valid_proof(world: World) -> None:
    garbage = Attachment(type=GROTH16_PROOF, version=1, body=b"\xc1")
    data = attach_proof(attach_proof(world.a.to_bytes(), garbage), world.proof_a)
    report = _check(data, world.zk(), inputs=world.x(world.a), outputs=world.a.outputs)
    assert report, report.first_error()


def test_with_no_valid_proof_the_report_follows_the_one_that_got_furthest(world: World) -> None:
    garbage = Attachment(type=GROTH16_PROOF, version=1, body=b"\xc1")
    data = attach_proof(attach_proof(world.a.to_bytes(), garbage), world.proof_b)
    report = _check(data, world.zk(), inputs=world.x(world.a), outputs=world.a.outputs)
    [failed] = report.rung("zk").failures()
    assert failed.step == "20 binding"
    assert failed.reason.startswith("proof 2 of 2: ")


def test_the_tee_rung_does_not_read_a_proof_as_an_attestation(world: World) -> None:
    data = attach_proof(world.a.to_bytes(), world.proof_a)
    policy = Policy(required=("signature", "tee"), tee=sim_policy())
    report = Verifier(policy, clock=FixedClock(NOW)).check(data)
    [failed] = report.rung("tee").failures()
    assert failed.step == "15 attachments"
    assert "no Nitro attestation document" in failed.reason


# --- the signed circuit manifest --------------------------------------------------------------


def test_the_manifest_binds_model_circuit_keys_and_ptau(world: World) -> None:
    manifest = world.signed.manifest
    folder = CircuitDir(world.folder)
    compiled = compile_model(world.model, world.x(world.a))
    assert manifest.model == world.model.digest
    assert manifest.info.circuit == compiled.circuit_hash == folder.read_info().circuit
    assert manifest.info.compiler == COMPILER_VERSION
    assert manifest.info.constraints == len(compiled.r1cs.constraints) == 68
    assert manifest.proving_key == file_digest(PROVING_KEY, folder.zkey)
    assert manifest.verification_key == digest_of(VERIFICATION_KEY, world.vk)
    assert manifest.ptau == file_digest(PTAU, world.ptau)
    assert manifest.info.outputs == (TensorLayout(name="y", dtype="int32", shape=(1, 2)),)
    assert manifest.info.inputs == (TensorLayout(name="x", dtype="uint8", shape=(1, 4)),)
    assert manifest.n_public == json.loads(world.vk)["nPublic"] == 2
    again = read_manifest(folder.manifest_bytes(), (PUBLISHER.public_key,))
    assert again == world.signed == folder.read_manifest()
    assert again.envelope.payload_type == MANIFEST_PAYLOAD_TYPE


def test_any_single_byte_change_of_a_signed_manifest_is_refused(world: World) -> None:
    data = world.signed.to_bytes()
    for index in range(len(data)):
        with pytest.raises(ReceiptsError):
            read_manifest(_flip(data, index), (PUBLISHER.public_key,))


def _signed_wire(world: World, **changes: object) -> bytes:
    wire = codec.decode(world.signed.manifest.encode())
    wire.update(changes)
    payload = codec.encode({k: v for k, v in wire.items() if v is not None})
    return Envelope.sign(MANIFEST_PAYLOAD_TYPE, payload, PUBLISHER).to_bytes()


@pytest.mark.parametrize(
    ("changes", "error", "reason"),
    [
        ({"extra": 1}, MalformedError, "unknown field"),
        ({"version": 2}, UnsupportedVersionError, "version 2"),
        ({"type": "receipt"}, UnsupportedVersionError, "not a circuit-manifest"),
        ({"proof_system": "plonk-bn254"}, UnsupportedVersionError, "proof system"),
        ({"n_public": 3}, MalformedError, "packs into 2"),
        ({"ptau": None}, MalformedError, "missing field 'ptau'"),
        ({"outputs": []}, MalformedError, "1..64 outputs"),
        ({"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 4]}]}, MalformedError,
         "not a packed integer type"),
    ],
)  # fmt: skip
def test_manifest_decoding_is_strict(
    world: World, changes: dict[str, object], error: type[ReceiptsError], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        read_manifest(_signed_wire(world, **changes), (PUBLISHER.public_key,))


def test_a_manifest_of_another_payload_type_is_refused(world: World) -> None:
    other = Envelope.sign(RECEIPT_PAYLOAD_TYPE, world.signed.envelope.payload, PUBLISHER)
    with pytest.raises(UnsupportedVersionError, match="unexpected payload type"):
        read_manifest(other.to_bytes(), None)


# --- the prover's refusals ----------------------------------------------------------------------


def test_setup_refuses_to_overwrite_keys(world: World, snarkjs: Snarkjs) -> None:
    with pytest.raises(StorageError, match="refusing to overwrite keys"):
        setup(world.folder, world.ptau, PUBLISHER, snarkjs)


def test_compiling_refuses_to_overwrite_a_circuit(world: World) -> None:
    with pytest.raises(StorageError, match="already exists"):
        compile_circuit(world.model, world.folder)


def test_setup_checks_a_supplied_ptau_by_its_digest(
    world: World, snarkjs: Snarkjs, tmp_path: Path
) -> None:
    compile_circuit(world.model, tmp_path / "c")
    with pytest.raises(DigestMismatchError, match="not the expected"):
        setup(tmp_path / "c", world.ptau, PUBLISHER, snarkjs, expected_ptau=Digest(b"\0" * 32))


def test_setup_refuses_an_r1cs_that_is_not_the_compiled_circuit(
    world: World, snarkjs: Snarkjs, tmp_path: Path
) -> None:
    compile_circuit(world.model, tmp_path / "c")
    r1cs = CircuitDir(tmp_path / "c").r1cs
    r1cs.write_bytes(_flip(r1cs.read_bytes(), -1))
    with pytest.raises(DigestMismatchError, match=r"circuit\.info"):
        setup(tmp_path / "c", world.ptau, PUBLISHER, snarkjs)


def test_the_ptau_command_refuses_to_overwrite(world: World, snarkjs: Snarkjs) -> None:
    with pytest.raises(StorageError, match="already exists"):
        ptau(7, world.ptau, snarkjs)


def test_a_float_model_does_not_compile(tmp_path: Path) -> None:
    with pytest.raises(CircuitFormatError, match=r"integer tensors|static shape"):
        compile_circuit(fixture_model("mlp"), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_prove_refuses_outputs_the_model_does_not_give(world: World, snarkjs: Snarkjs) -> None:
    data, _ = _lying_receipt(world)
    with pytest.raises(DigestMismatchError, match="outputs on these inputs"):
        prove(world.folder, world.model, world.x(world.a), data, snarkjs)


def test_prove_refuses_inputs_that_are_not_the_receipts(world: World, snarkjs: Snarkjs) -> None:
    with pytest.raises(DigestMismatchError, match="inputs are not the receipt's"):
        prove(world.folder, world.model, world.x(world.b), world.a.to_bytes(), snarkjs)


def test_prove_refuses_a_model_that_is_not_the_circuits(world: World, snarkjs: Snarkjs) -> None:
    other = fixture_model("integer")
    with pytest.raises(DigestMismatchError, match="the circuit in"):
        prove(world.folder, other, {}, world.a.to_bytes(), snarkjs)


def test_prove_refuses_a_manifest_whose_layout_is_not_the_circuits(
    world: World, snarkjs: Snarkjs, tmp_path: Path
) -> None:
    # circuit.info is unsigned until setup, and setup cannot check the layout against the
    # R1CS: x declared [4, 1] instead of [1, 4] packs into as many signals, so the manifest
    # would vouch for proofs about a tensor of a shape the model does not take.
    folder = CircuitDir(tmp_path / "c")
    info = compile_circuit(world.model, folder.path)
    [x] = info.inputs
    folder.info.unlink()
    folder.info.write_bytes(replace(info, inputs=(replace(x, shape=(4, 1)),)).encode())
    setup(folder.path, world.ptau, PUBLISHER, snarkjs, random_bytes=seeded(8))
    with pytest.raises(CircuitFormatError, match="layout is not the circuit's"):
        prove(folder.path, world.model, world.x(world.a), world.a.to_bytes(), snarkjs)


def test_receipt_round_trip_keeps_the_proof_outside_the_signature(world: World) -> None:
    data = attach_proof(world.a.to_bytes(), world.proof_a)
    envelope = Envelope.from_bytes(data)
    assert envelope.payload == world.a.envelope.payload
    assert envelope.attachments == (world.proof_a,)
    assert Receipt.decode(envelope.payload) == world.a.receipt
    assert len(world.proof_a.body) < 1200  # proof.json (~800 B) and two signals
