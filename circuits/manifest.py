"""The signed circuit manifest: which model, circuit and keys a proof is checked against (zk rung).

Written by ``circuits.circuit_dir.setup`` once per circuit, read by the zk rung (step 19 of
``receipts.verifier``). A manifest ties together what the verifier cannot recompute cheaply: the
model digest, the circuit hash (anyone can recompute it from the model with ``compile_model``),
the compiler version, the digests of the proving key, the verification key and the powers-of-tau
file the keys were made from, and the layout of the public signals (which tensors, in which
order, packed how: ``circuits.packing``). Its signer vouches that the verification key is the one
set up for that circuit; the verifier pins the signer's key.

Wire form: a canonical map ``{"type": "circuit-manifest", "version": 1, "proof_system":
"groth16-bn254", "model", "circuit", "compiler", "constraints", "proving_key",
"verification_key", "ptau", "outputs", "inputs", "n_public"}`` (digests as 32 bytes, each
layout ``{"name", "dtype", "shape"}``), signed in the standard envelope under
``MANIFEST_PAYLOAD_TYPE``. Unknown fields, types and versions are refused. The file digests are
domain-separated SHA-256 (``receipts.digests``) of the exact file bytes, kinds ``proving-key``,
``verification-key`` and ``ptau``; the manifest's id is the digest (kind ``circuit-manifest``)
of its exact signed payload, and a proof names it.

    signed = sign_manifest(manifest, publisher)
    read_manifest(signed.to_bytes(), trusted=(publisher_key,)).manifest.model
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from circuits.groth16 import MAX_PUBLIC
from circuits.packing import RANGES, layout
from receipts import codec
from receipts.codec import MapReader
from receipts.digests import Digest, digest_of, hasher
from receipts.envelope import Envelope
from receipts.errors import InputError, MalformedError, SignatureError, UnsupportedVersionError
from receipts.files import open_regular
from receipts.keys import PublicKey, Signer
from receipts.tensors import MAX_RANK

MANIFEST_PAYLOAD_TYPE = "application/vnd.inference-receipts.circuit-manifest.v1+msgpack"
MANIFEST_TYPE = "circuit-manifest"
MANIFEST_VERSION = 1
INFO_TYPE = "circuit-info"
INFO_VERSION = 1
PROOF_SYSTEM = "groth16-bn254"
# Digest kinds of the files a manifest names (and of the manifest itself).
PROVING_KEY, VERIFICATION_KEY, PTAU, MANIFEST = (
    "proving-key", "verification-key", "ptau", "circuit-manifest",
)  # fmt: skip
MAX_TENSORS = 64
_CHUNK = 1 << 20


def file_digest(kind: str, path: Path) -> Digest:
    """The ``kind`` digest of a regular file's exact bytes, read in chunks (keys and ptau files
    are large, so there is no size limit). A FIFO or device, say a ``circuit.zkey`` symlinked to
    ``/dev/zero``, is refused (``InputError``) instead of blocking or hashing forever."""
    h = hasher(kind)
    with open_regular(path, kind) as f:
        try:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    return Digest(h.digest())


def manifest_id(payload: bytes) -> Digest:
    """A manifest's identifier: the digest of its exact signed payload bytes."""
    return digest_of(MANIFEST, payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorLayout:
    """One tensor the public signals pack: its name, ONNX integer type and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name.encode("utf-8")) <= 1024:
            raise MalformedError("a packed tensor's name is 1..1024 UTF-8 bytes")
        if self.dtype not in RANGES:
            raise MalformedError(f"{self.name!r}: {self.dtype!r} is not a packed integer type")
        if not isinstance(self.shape, tuple) or len(self.shape) > MAX_RANK:
            raise MalformedError(f"{self.name!r}: a shape is a tuple of at most {MAX_RANK} dims")
        if not all(type(d) is int and 0 <= d < 2**32 for d in self.shape):
            raise MalformedError(f"{self.name!r}: dims are integers in [0, 2^32)")

    @property
    def signals(self) -> int:
        """How many public signals the tensor packs into."""
        # Integer ceiling: a float quotient overflows (an OverflowError, not a typed error) on
        # the 64 dims of up to 2^32 a hostile layout may declare, and rounds long before that.
        return -(-math.prod(self.shape) // layout(self.dtype)[2])

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}{list(self.shape)}"

    def to_wire(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_wire(cls, value: object) -> TensorLayout:
        r = MapReader(value, "tensor layout")
        raw = r.array("shape", MAX_RANK)
        shape = tuple(d for d in raw if isinstance(d, int) and not isinstance(d, bool))
        if len(shape) != len(raw):
            raise MalformedError("tensor layout.shape: expected an array of integers")
        item = cls(name=r.text("name"), dtype=r.text("dtype", 16), shape=shape)
        r.close()
        return item


def _layouts(items: tuple[TensorLayout, ...], what: str) -> None:
    if not isinstance(items, tuple) or not 1 <= len(items) <= MAX_TENSORS:
        raise MalformedError(f"a circuit packs 1..{MAX_TENSORS} {what}")
    if not all(isinstance(i, TensorLayout) for i in items):
        raise MalformedError(f"{what} are tensor layouts")
    names = sorted(i.name for i in items)
    if any(a == b for a, b in itertools.pairwise(names)):
        raise MalformedError(f"{what} have unique names")


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitInfo:
    """What compiling a model gives, before any key exists: the model and circuit digests, the
    compiler that made it, its size, and the public signals' layout (outputs, then inputs)."""

    model: Digest
    circuit: Digest
    compiler: str
    constraints: int
    outputs: tuple[TensorLayout, ...]
    inputs: tuple[TensorLayout, ...]
    n_public: int

    def __post_init__(self) -> None:
        if not isinstance(self.model, Digest) or not isinstance(self.circuit, Digest):
            raise MalformedError("a circuit names its model and circuit by digest")
        # Printable: reports and the CLI print it, and circuit.info is not signed.
        if not 1 <= len(self.compiler) <= 64 or not all(" " <= c <= "~" for c in self.compiler):
            raise MalformedError("a compiler version is 1..64 printable ASCII characters")
        if not 0 <= self.constraints < 2**32:
            raise MalformedError("a constraint count is in [0, 2^32)")
        _layouts(self.outputs, "outputs")
        _layouts(self.inputs, "inputs")
        packed = sum(t.signals for t in self.layouts)
        if self.n_public != packed:
            raise MalformedError(
                f"{self.n_public} public signals, but the layout packs into {packed}"
            )
        if not 1 <= self.n_public <= MAX_PUBLIC:
            raise MalformedError(f"a circuit has 1..{MAX_PUBLIC} public signals")

    @property
    def layouts(self) -> tuple[TensorLayout, ...]:
        """The packed tensors in public-signal order: the outputs, then the inputs."""
        return self.outputs + self.inputs

    def to_wire(self) -> dict[str, object]:
        return {
            "model": self.model.value,
            "circuit": self.circuit.value,
            "compiler": self.compiler,
            "constraints": self.constraints,
            "outputs": [t.to_wire() for t in self.outputs],
            "inputs": [t.to_wire() for t in self.inputs],
            "n_public": self.n_public,
        }

    @classmethod
    def read_fields(cls, r: MapReader) -> CircuitInfo:
        return cls(
            model=Digest(r.binary("model", 32)),
            circuit=Digest(r.binary("circuit", 32)),
            compiler=r.text("compiler", 64),
            constraints=r.integer("constraints", 0, 2**32 - 1),
            outputs=tuple(TensorLayout.from_wire(t) for t in r.array("outputs", MAX_TENSORS)),
            inputs=tuple(TensorLayout.from_wire(t) for t in r.array("inputs", MAX_TENSORS)),
            n_public=r.integer("n_public", 0, MAX_PUBLIC),
        )

    def encode(self) -> bytes:
        """The ``circuit.info`` file: this record, unsigned (setup signs it into the manifest)."""
        return codec.encode({"type": INFO_TYPE, "version": INFO_VERSION, **self.to_wire()})

    @classmethod
    def decode(cls, data: bytes) -> CircuitInfo:
        r = MapReader(codec.decode(data), "circuit info")
        _check_kind(r, INFO_TYPE, INFO_VERSION)
        info = cls.read_fields(r)
        r.close()
        return info


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitManifest:
    """A circuit and the Groth16 keys set up for it (see the module docstring)."""

    info: CircuitInfo
    proving_key: Digest
    verification_key: Digest
    ptau: Digest

    def __post_init__(self) -> None:
        if not isinstance(self.info, CircuitInfo):
            raise MalformedError("a manifest holds the compiled circuit's info")
        keys = (self.proving_key, self.verification_key, self.ptau)
        if not all(isinstance(d, Digest) for d in keys):
            raise MalformedError("a manifest names its key and ptau files by digest")

    @property
    def model(self) -> Digest:
        return self.info.model

    @property
    def n_public(self) -> int:
        return self.info.n_public

    def encode(self) -> bytes:
        return codec.encode(
            {
                "type": MANIFEST_TYPE,
                "version": MANIFEST_VERSION,
                "proof_system": PROOF_SYSTEM,
                **self.info.to_wire(),
                "proving_key": self.proving_key.value,
                "verification_key": self.verification_key.value,
                "ptau": self.ptau.value,
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> CircuitManifest:
        """The signed payload as a canonical manifest v1; ``MalformedError`` and kin."""
        r = MapReader(codec.decode(payload), "circuit manifest")
        _check_kind(r, MANIFEST_TYPE, MANIFEST_VERSION)
        system = r.text("proof_system", 64)
        if system != PROOF_SYSTEM:
            raise UnsupportedVersionError(f"proof system {system!r} is not supported")
        manifest = cls(
            info=CircuitInfo.read_fields(r),
            proving_key=Digest(r.binary("proving_key", 32)),
            verification_key=Digest(r.binary("verification_key", 32)),
            ptau=Digest(r.binary("ptau", 32)),
        )
        r.close()
        return manifest


def _check_kind(r: MapReader, kind: str, version: int) -> None:
    found, number = r.text("type", 64), r.integer("version", 0, codec.INT_MAX)
    if found != kind:
        raise UnsupportedVersionError(f"not a {kind} (type {found!r})")
    if number != version:
        raise UnsupportedVersionError(f"{kind} version {number} is not supported (only {version})")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedManifest:
    """A manifest with the envelope that carries its exact signed bytes and the signer's key."""

    envelope: Envelope
    manifest: CircuitManifest
    key: PublicKey

    def __post_init__(self) -> None:
        if self.envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
            raise MalformedError(f"not a circuit manifest ({self.envelope.payload_type!r})")
        if self.key != self.envelope.signature.public_key:
            raise SignatureError("the manifest's key is not the envelope's signing key")

    @property
    def id(self) -> Digest:
        return manifest_id(self.envelope.payload)

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()


def sign_manifest(manifest: CircuitManifest, signer: Signer) -> SignedManifest:
    """Sign ``manifest`` as ``signer`` (the circuit's publisher)."""
    envelope = Envelope.sign(MANIFEST_PAYLOAD_TYPE, manifest.encode(), signer)
    return SignedManifest(envelope=envelope, manifest=manifest, key=signer.public_key)


def read_manifest(data: bytes, trusted: Sequence[PublicKey] | None) -> SignedManifest:
    """A signed manifest: a canonical envelope of the manifest type, signed (by one of
    ``trusted`` when given; ``None`` checks integrity only, for the prover's own directory)
    over the received bytes, its payload a manifest v1. Raises ``MalformedError`` kin or
    ``SignatureError``."""
    envelope = Envelope.from_bytes(data, payload_type=MANIFEST_PAYLOAD_TYPE)
    key = envelope.signature.public_key
    if trusted is not None and key not in trusted:
        raise SignatureError(
            f"manifest signed by key {key.key_id.hex()[:16]}…, which is not a trusted "
            "circuit-manifest key"
        )
    envelope.verify_signature(None)
    manifest = CircuitManifest.decode(envelope.payload)
    return SignedManifest(envelope=envelope, manifest=manifest, key=key)
