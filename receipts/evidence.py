"""The evidence bundle a dispute produces and a referee reads (formats, dispute layer).

One file holds everything a referee needs besides the model: the signed receipt, the
challenger's public key, the signed transcript, the disputed node's index, the challenger's
claimed leaf for it, and the provider's opening of it (leaf, producer leaves, weights with their
model-digest proofs, and the tensors). Layout (``receipts.frames``):

    magic     b"\\x89REVIDN\\n"
    manifest  canonical map {type: "evidence", version: 1, receipt, challenger, node, claim,
              transcript, opening}   (the opening's tensors listed by entry, digests included)
    tensor*   the opening's tensors in manifest order, each checked against its entry's digest

The bundle's digest is the digest of the manifest, which binds every tensor through its entry.

    evidence.write(Path("evidence.revd"))
    same = Evidence.read(Path("evidence.revd"))       # EvidenceError on anything malformed

An *opening file* (magic ``b"\\x89ROPENG\\n"``, manifest ``{type: "opening", version: 1, receipt,
opening}``, then the tensors) carries one opening from a provider answering in another process
to the challenger, who packages it into the bundle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from receipts import codec
from receipts.codec import Limits, MapReader
from receipts.digests import Digest, TensorEntry, digest_of, record_digest
from receipts.errors import EvidenceError, LimitError, MalformedError
from receipts.files import write_atomic
from receipts.frames import FrameReader, write_frame, write_tensor_frame
from receipts.keys import PublicKey
from receipts.opening import (
    Opening,
    TensorSource,
    opening_digest,
    opening_from_wire,
    opening_to_wire,
)
from receipts.trace import MAX_NODES, TraceLeaf, decode_tensor

EVIDENCE_MAGIC = b"\x89REVIDN\n"
OPENING_MAGIC = b"\x89ROPENG\n"
EVIDENCE_VERSION = 1
_MANIFEST, _TENSOR = 1, 3
_MANIFEST_LIMITS = Limits(max_bytes=16 << 20, max_depth=12)
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """A packaged dispute: the receipt, the transcript, the disputed node and its opening."""

    receipt: bytes  # the receipt envelope, as signed
    challenger: PublicKey
    index: int
    claim: TraceLeaf  # the challenger's leaf for the disputed node
    opening: Opening
    transcript: tuple[bytes, ...]
    # As read from a file: the manifest's bytes and its opening map (their digests then need no
    # second pass over the tensors, which were checked against the map's entries when read).
    raw: bytes | None = field(default=None, repr=False, compare=False)
    opening_wire: object = field(default=None, repr=False, compare=False)

    def manifest(self) -> tuple[dict[str, object], list[np.ndarray[Any, Any]]]:
        opening, tensors = opening_to_wire(self.opening)
        manifest = {
            "type": "evidence",
            "version": EVIDENCE_VERSION,
            "receipt": self.receipt,
            "challenger": {"scheme": self.challenger.scheme, "public": self.challenger.raw},
            "node": self.index,
            "claim": self.claim.data,
            "transcript": list(self.transcript),
            "opening": opening,
        }
        return manifest, tensors

    @property
    def digest(self) -> Digest:
        if self.raw is not None:
            return digest_of("evidence", self.raw)
        return record_digest("evidence", self.manifest()[0])

    @property
    def opening_digest(self) -> bytes:
        """What the transcript's ``opening`` message names: the digest of the opening map."""
        if self.opening_wire is not None:
            return record_digest("opening", self.opening_wire).value
        return opening_digest(self.opening)

    def write(self, path: Path) -> None:
        """Write the bundle atomically (a crash leaves the old file or none, never half)."""
        manifest, tensors = self.manifest()
        _write(path, EVIDENCE_MAGIC, manifest, tensors)

    @classmethod
    def read(cls, path: Path) -> Evidence:
        """The bundle at ``path``; ``EvidenceError`` on anything malformed."""
        return _read(path, EVIDENCE_MAGIC, "evidence bundle", cls._parse)

    @classmethod
    def _parse(cls, r: MapReader, read: TensorSource, raw: bytes) -> Evidence:
        if r.text("type", 16) != "evidence":
            raise EvidenceError("not an evidence manifest")
        if r.integer("version", 0, 255) != EVIDENCE_VERSION:
            raise EvidenceError("evidence version is not supported (only 1)")
        key = r.map("challenger")
        challenger = PublicKey.parse(key.text("scheme", 16), key.binary("public", max_len=128))
        key.close()
        evidence = cls(
            receipt=r.binary("receipt"),
            challenger=challenger,
            index=r.integer("node", 0, MAX_NODES - 1),
            claim=TraceLeaf.decode(r.binary("claim")),
            transcript=tuple(_binaries(r.array("transcript", 256))),
            opening=opening_from_wire(r.raw("opening"), read),
            raw=raw,
            opening_wire=r.raw("opening"),
        )
        if evidence.opening.index != evidence.index:
            raise EvidenceError("the opening is of another node than the one disputed")
        return evidence


def write_opening(path: Path, opening: Opening, receipt_id: Digest) -> None:
    """An opening on its own, as a provider answering from another process hands it over."""
    wire, tensors = opening_to_wire(opening)
    manifest = {"type": "opening", "version": 1, "receipt": receipt_id.value, "opening": wire}
    _write(path, OPENING_MAGIC, manifest, tensors)


def read_opening(path: Path) -> tuple[Digest, Opening]:
    """The receipt id and the opening in an opening file (checked only as a file: the opening
    itself is checked against a receipt by ``check_opening``)."""

    def parse(r: MapReader, read: TensorSource, _raw: bytes) -> tuple[Digest, Opening]:
        if r.text("type", 16) != "opening" or r.integer("version", 0, 255) != 1:
            raise EvidenceError("not an opening file v1")
        rid = Digest(r.binary("receipt", 32))
        return rid, opening_from_wire(r.raw("opening"), read)

    return _read(path, OPENING_MAGIC, "opening file", parse)


def _write(
    path: Path, magic: bytes, manifest: dict[str, object], tensors: list[np.ndarray[Any, Any]]
) -> None:
    data = codec.encode(manifest)

    def write(f: IO[bytes]) -> None:
        f.write(magic)
        write_frame(f, _MANIFEST, data)
        for array in tensors:
            write_tensor_frame(f, _TENSOR, array)

    write_atomic(path, write)


def _read(
    path: Path, magic: bytes, what: str, parse: Callable[[MapReader, TensorSource, bytes], T]
) -> T:
    """Read a manifest-and-tensors file: every tensor frame read in the order the manifest
    lists it and checked against its entry, nothing after the last one."""
    if not path.is_file():
        raise EvidenceError(f"cannot read {what} {path}: not a regular file")
    try:
        with path.open("rb") as f:
            frames = FrameReader(
                f, os.fstat(f.fileno()).st_size, what=what, error_type=EvidenceError
            )
            frames.magic(magic)
            raw = frames.read(_MANIFEST, "manifest", _MANIFEST_LIMITS.max_bytes)
            count = 0

            def read(entry: TensorEntry) -> np.ndarray[Any, Any]:
                nonlocal count
                count += 1
                offset, length = frames.skip(_TENSOR, f"tensor {count} ({entry.name!r})")
                f.seek(offset)
                return decode_tensor(entry, f.read(length), what)

            r = MapReader(codec.decode(raw, limits=_MANIFEST_LIMITS), what)
            result = parse(r, read, raw)
            r.close()
            frames.end()
            return result
    except OSError as e:
        raise EvidenceError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except (EvidenceError, LimitError):
        raise
    except MalformedError as e:  # a trace leaf, key, entry or field inside the file
        raise EvidenceError(f"{what}: {e}") from e


def _binaries(items: list[object]) -> list[bytes]:
    if not all(isinstance(i, bytes) for i in items):
        raise EvidenceError("transcript messages must be byte strings")
    return [i for i in items if isinstance(i, bytes)]
