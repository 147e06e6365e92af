"""A circuit directory and the prover's flow: compile, set up keys, prove (zk rung, prover side).

Between the compiler (``circuits.compile``), the snarkjs driver (``circuits.snarkjs``) and the
receipt: a provider compiles its integer model once, sets up Groth16 keys once, then proves each
receipt it issues and attaches the proof (``circuits.proof_item``). A directory holds:

  circuit.r1cs            the constraint system (``compile_circuit``)
  circuit.info            ``CircuitInfo``: model and circuit digests, compiler, signal layout
  circuit.zkey            the proving key, after a secret contribution (``setup``)
  verification_key.json   snarkjs's verification key (``setup``)
  circuit.manifest        the signed ``CircuitManifest`` (``setup``)

Files appear whole or not at all, and none is ever replaced: keys made for one circuit must not
be silently swapped for another's (start a new directory instead). The R1CS depends on the model
alone, so compiling uses zeros of the input shapes; proving recompiles with the real inputs (the
compiler is the witness generator) and checks the circuit hash still matches the keys.

    ptau(12, Path("pot12.ptau"), snarkjs)                     # development only: tau is public
    compile_circuit(model, Path("tiny.circuit"))
    setup(Path("tiny.circuit"), Path("pot12.ptau"), publisher, snarkjs)
    item = prove(Path("tiny.circuit"), model, {"x": x}, receipt_bytes, snarkjs)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from circuits.compile import COMPILER_VERSION, compile_model
from circuits.groth16 import MAX_JSON_BYTES, read_public, read_verification_key
from circuits.manifest import (
    PROVING_KEY,
    PTAU,
    VERIFICATION_KEY,
    CircuitInfo,
    CircuitManifest,
    SignedManifest,
    TensorLayout,
    file_digest,
    read_manifest,
    sign_manifest,
)
from circuits.packing import RANGES
from circuits.proof_item import ProofItem
from circuits.r1cs import witness_bytes
from circuits.snarkjs import Snarkjs, ptau_power
from receipts.attachments import GROTH16_PROOF, Attachment
from receipts.digests import Digest, TensorMapDigest, digest_of
from receipts.effects import RandomBytes, system_random
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import (
    CircuitFormatError,
    DigestMismatchError,
    InputError,
    ProverError,
    ReceiptsError,
)
from receipts.files import StorageError, make_folder, read_head, read_limited, write_together
from receipts.keys import PublicKey, Signer
from receipts.model import LoadedModel
from receipts.receipt import Receipt
from receipts.report import ZkPolicy
from receipts.signature import ValueSpec

R1CS_FILE, INFO_FILE, ZKEY_FILE = "circuit.r1cs", "circuit.info", "circuit.zkey"
VKEY_FILE, MANIFEST_FILE = "verification_key.json", "circuit.manifest"
CIRCUIT = "circuit"  # the digest kind of ``circuits.compile.circuit_hash`` (of the .r1cs bytes)
MAX_INFO_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class CircuitDir:
    """The files of one circuit under ``path`` (see the module docstring)."""

    path: Path

    @property
    def r1cs(self) -> Path:
        return self.path / R1CS_FILE

    @property
    def info(self) -> Path:
        return self.path / INFO_FILE

    @property
    def zkey(self) -> Path:
        return self.path / ZKEY_FILE

    @property
    def verification_key(self) -> Path:
        return self.path / VKEY_FILE

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST_FILE

    def read_info(self) -> CircuitInfo:
        return CircuitInfo.decode(read_limited(self.info, MAX_INFO_BYTES, "circuit info"))

    def read_manifest(self, trusted: Sequence[PublicKey] | None = None) -> SignedManifest:
        return read_manifest(self.manifest_bytes(), trusted)

    def manifest_bytes(self) -> bytes:
        return read_limited(self.manifest, MAX_ENVELOPE_BYTES, "circuit manifest")

    def verification_key_bytes(self) -> bytes:
        return read_limited(self.verification_key, MAX_JSON_BYTES, "verification key")

    def policy(self, trusted_keys: Sequence[PublicKey]) -> ZkPolicy:
        """The zk rung's policy for this circuit, its manifest signed by one of ``trusted_keys``
        (checked by the rung, step 19)."""
        return ZkPolicy(
            verification_key=self.verification_key_bytes(),
            manifest=self.manifest_bytes(),
            trusted_keys=tuple(trusted_keys),
        )


def ptau(power: int, out: Path, snarkjs: Snarkjs, *, entropy: bytes | None = None) -> Digest:
    """A single-contributor powers-of-tau file of 2^``power`` at ``out`` (never replaced), and
    its digest as a manifest records it. Beacon only, so tau is public, unless ``entropy`` is
    given; either way, for development: deployments take a ceremony file (``setup``'s
    ``expected_ptau``)."""
    if out.exists():
        raise StorageError(f"{out} already exists; refusing to overwrite it")
    snarkjs.new_ptau(power, out, entropy=entropy)
    return file_digest(PTAU, out)


def compile_circuit(model: LoadedModel, out: Path) -> CircuitInfo:
    """Compile ``model`` into ``out`` (``circuit.r1cs`` and ``circuit.info``); the info, with
    the constraint count and circuit hash. Inputs need static shapes and integer types."""
    data, info = _compiled(model)
    folder = CircuitDir(out)
    make_folder(out)
    write_together([(folder.r1cs, data), (folder.info, info.encode())], replace=False)
    return info


def _compiled(model: LoadedModel) -> tuple[bytes, CircuitInfo]:
    """The ``.r1cs`` bytes of ``model`` and their info (compiled on zero inputs)."""
    zeros = {s.name: np.zeros(_static_shape(s), np.dtype(_dtype(s))) for s in model.inputs}
    compiled = compile_model(model, zeros)
    data = compiled.r1cs.to_bytes()
    return data, CircuitInfo(
        model=model.digest,
        circuit=digest_of(CIRCUIT, data),
        compiler=COMPILER_VERSION,
        constraints=len(compiled.r1cs.constraints),
        outputs=tuple(_layout(name, a) for name, a in compiled.outputs.items()),
        inputs=tuple(_layout(name, a) for name, a in zeros.items()),
        n_public=compiled.r1cs.n_public,
    )


def _dtype(spec: ValueSpec) -> str:
    if spec.kind != "tensor" or spec.elem_type not in RANGES:
        raise CircuitFormatError(
            f"input {spec.name!r} is {spec.elem_type or spec.kind}: circuits take integer tensors"
        )
    return str(spec.elem_type)


def _static_shape(spec: ValueSpec) -> tuple[int, ...]:
    shape = tuple(d for d in spec.shape or () if d is not None)
    if spec.shape is None or len(shape) != len(spec.shape):
        raise CircuitFormatError(f"input {spec.name!r} has no static shape: a circuit needs one")
    return shape


def _layout(name: str, array: np.ndarray[Any, Any]) -> TensorLayout:
    return TensorLayout(name=name, dtype=str(array.dtype), shape=tuple(array.shape))


def setup(
    folder: Path,
    ptau_file: Path,
    signer: Signer,
    snarkjs: Snarkjs,
    *,
    random_bytes: RandomBytes = system_random,
    expected_ptau: Digest | None = None,
    model: LoadedModel | None = None,
) -> SignedManifest:
    """Groth16 keys for the circuit in ``folder`` and its manifest signed by ``signer``.

    ``ptau_file`` is any bn128 powers-of-tau file prepared for phase 2 and large enough (a
    ceremony's, checked against ``expected_ptau`` when given, or one from ``ptau``); its digest
    goes into the manifest. One secret contribution (``random_bytes``, mixed by snarkjs with its
    own) follows the setup. Refuses a directory that already has keys or a manifest.

    ``circuit.info`` is not signed before this: with ``model``, the circuit is compiled again and
    must be the folder's exactly (constraints and signal layout), so the publisher signs only
    what it derived itself; without it, the publisher vouches for the folder as it is."""
    d = CircuitDir(folder)
    for path in (d.zkey, d.verification_key, d.manifest):
        if path.exists():
            raise StorageError(f"{path} already exists; refusing to overwrite keys")
    info = d.read_info()
    circuit = file_digest(CIRCUIT, d.r1cs)
    if circuit != info.circuit:
        raise DigestMismatchError(f"{d.r1cs} is circuit {circuit}; circuit.info: {info.circuit}")
    if model is not None and _compiled(model)[1] != info:
        raise DigestMismatchError(
            f"{d.path} is not what model {model.digest} compiles to under {COMPILER_VERSION} "
            "(its constraints or its signal layout differ): compile it again"
        )
    need = min_ptau_power(info)
    have = ptau_power(read_head(ptau_file, 128, "powers of tau"))
    if have is not None and have < need:
        raise InputError(
            f"{ptau_file} holds 2^{have} powers of tau; {d.path} ({info.constraints} "
            f"constraints, {info.n_public} public signals) needs 2^{need} or more"
        )
    ptau_digest = file_digest(PTAU, ptau_file)
    if expected_ptau is not None and ptau_digest != expected_ptau:
        raise DigestMismatchError(
            f"powers of tau {ptau_file} is {ptau_digest}, not the expected {expected_ptau}"
        )
    with tempfile.TemporaryDirectory(prefix=".setup-", dir=d.path) as tmp:
        work = Path(tmp)
        snarkjs.setup(d.r1cs, ptau_file, work / "0000.zkey")
        zkey = snarkjs.zkey_contribute(
            work / "0000.zkey", work / ZKEY_FILE, entropy=random_bytes(32)
        )
        vkey = snarkjs.export_verification_key(zkey, work / VKEY_FILE).read_bytes()
        if read_verification_key(vkey).n_public != info.n_public:
            raise ProverError("snarkjs made a verification key for another number of signals")
        manifest = CircuitManifest(
            info=info,
            proving_key=file_digest(PROVING_KEY, zkey),
            verification_key=digest_of(VERIFICATION_KEY, vkey),
            ptau=ptau_digest,
        )
        signed = sign_manifest(manifest, signer)
        write_together(
            [(d.zkey, _copier(zkey)), (d.verification_key, vkey), (d.manifest, signed.to_bytes())],
            replace=False,
        )
    return signed


def _copier(source: Path) -> Callable[[BinaryIO], None]:
    def copy(f: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    return copy


def prove(
    folder: Path,
    model: LoadedModel,
    inputs: Mapping[str, Any],
    receipt: bytes,
    snarkjs: Snarkjs,
) -> Attachment:
    """A ``groth16-bn254`` proof that ``model`` on ``inputs`` gives the outputs ``receipt``
    binds, under the circuit in ``folder``: the evidence item to attach to the receipt.

    Refuses (``DigestMismatchError``) a model, inputs or receipt that are not the circuit's or
    each other's, and outputs the circuit computes that are not the receipt's: a proof is only
    made for what the receipt says."""
    d = CircuitDir(folder)
    signed = d.read_manifest()
    manifest = signed.manifest
    if model.digest != manifest.model:
        raise DigestMismatchError(
            f"the model is {model.digest}; the circuit in {folder} is for {manifest.model}"
        )
    envelope = Envelope.from_bytes(receipt)
    envelope.verify_signature(None)
    claimed = Receipt.decode(envelope.payload)
    if claimed.model != manifest.model:
        raise DigestMismatchError(f"the receipt is for model {claimed.model}, not the circuit's")
    checked = {name: np.asarray(v) for name, v in model.check_inputs(inputs).items()}
    _same_tensors(claimed.inputs, checked, "the inputs are not the receipt's")
    if file_digest(PROVING_KEY, d.zkey) != manifest.proving_key:
        raise DigestMismatchError(f"{d.zkey} is not the proving key the manifest names")
    compiled = compile_model(model, checked)
    if compiled.circuit_hash != manifest.info.circuit:
        raise CircuitFormatError(
            f"the model compiles to circuit {compiled.circuit_hash} under {COMPILER_VERSION}; "
            f"the keys are for {manifest.info.circuit} ({manifest.info.compiler})"
        )
    # The layout came from circuit.info, which nothing signs before setup and setup cannot check
    # against the R1CS: a swapped one (inputs reordered or renamed, int8 for uint8) would make
    # the manifest say the signals pack other tensors than the circuit does.
    packs = (
        tuple(_layout(name, a) for name, a in compiled.outputs.items()),
        tuple(_layout(spec.name, checked[spec.name]) for spec in model.inputs),
    )
    if packs != (manifest.info.outputs, manifest.info.inputs):
        raise CircuitFormatError(
            "the manifest's public-signal layout is not the circuit's: outputs "
            f"{_describe(manifest.info.outputs)}, inputs {_describe(manifest.info.inputs)}; the "
            f"circuit packs outputs {_describe(packs[0])}, inputs {_describe(packs[1])}"
        )
    _same_tensors(
        claimed.outputs, compiled.outputs, "the model's outputs on these inputs are not the "
        "receipt's: no proof is made for outputs the model does not give",
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="prove-") as tmp:
        work = Path(tmp)
        (work / "witness.wtns").write_bytes(witness_bytes(compiled.witness))
        proof, public = snarkjs.prove(
            d.zkey, work / "witness.wtns", work / "proof.json", work / "public.json"
        )
        proof_json, public_json = proof.read_bytes(), public.read_bytes()
    if read_public(public_json) != tuple(compiled.public):
        raise ProverError("snarkjs wrote public signals other than the circuit's")
    return ProofItem(manifest=signed.id, proof=proof_json, public=public_json).to_attachment()


def attach_proof(receipt: bytes, item: Attachment) -> bytes:
    """The receipt file with ``item`` attached (the provider's signature is unchanged); refuses
    a second proof under the same manifest (``check_not_proven``)."""
    envelope = Envelope.from_bytes(receipt)
    try:
        manifest = ProofItem.from_attachment(item).manifest
    except ReceiptsError:  # an item that is not a proof is attached as it is: the rung says so
        manifest = None
    if manifest is not None:
        check_not_proven(envelope, manifest)
    return envelope.attach(item).to_bytes()


def check_not_proven(envelope: Envelope, manifest: Digest) -> None:
    """Refuse (``InputError``) a receipt that already carries a proof under ``manifest``; a
    proof under another manifest may sit beside it (the rung accepts any one that holds)."""
    for item in envelope.attachments:
        if item.type != GROTH16_PROOF:
            continue
        try:
            named = ProofItem.from_attachment(item).manifest
        except ReceiptsError:
            continue  # not one this library made; the rung reports it
        if named == manifest:
            raise InputError(f"the receipt already carries a proof under manifest {manifest}")


def min_ptau_power(info: CircuitInfo) -> int:
    """snarkjs's rule: 2^N must exceed the constraints plus the public signals."""
    return (info.constraints + info.n_public).bit_length()


def _same_tensors(expected: TensorMapDigest, arrays: Mapping[str, Any], message: str) -> None:
    if TensorMapDigest.of(arrays).entries != expected.entries:
        raise DigestMismatchError(message)


def _describe(layouts: Sequence[TensorLayout]) -> str:
    return "[" + ", ".join(t.describe() for t in layouts) + "]"
