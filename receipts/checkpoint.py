"""tlog checkpoints and proof texts: what the settlement log publishes and what clients check.

Formats layer, above ``receipts.merkle`` and ``receipts.note``. The append-only settlement log
keeps an RFC 6962 tree of its entries and signs each tree head as a checkpoint
(c2sp.org/tlog-checkpoint), a signed note whose key name is the log's origin. Whoever holds an
entry checks an inclusion proof (c2sp.org/tlog-proof@v1; the log puts the entry's own bytes in
its ``extra`` line, so the proof stands alone); whoever holds an older checkpoint (a witness, a
monitor, a counterparty) checks a consistency proof, written as the body of a c2sp.org/tlog-witness
``add-checkpoint`` request: ``old <size>``, the proof hashes, a blank line, the new checkpoint.

    text = InclusionProof(index=i, hashes=path, checkpoint=signed, extra=entry).to_text()
    verified = verify_inclusion_proof(text, log_key, origin="example.com/log")   # or raises

Checking an inclusion proof (``verify_inclusion_proof``):
  (1) parse       the text is a tlog-proof@v1 within the limits, hashes canonical base64
  (2) checkpoint  the checkpoint is signed by the log key under its origin (the origin asked for)
  (3) entry       the entry is the caller's or the extra data; if both are given they are equal
  (4) path        SHA-256(0x00 || entry) at the index leads to the checkpoint's root at its size

Checking a consistency proof (``verify_consistency_proof``):
  (1) parse       the text is an add-checkpoint body within the limits
  (2) checkpoints both checkpoints are signed by the log key, and name one origin
  (3) sizes       the ``old`` line is the old checkpoint's size, not above the new one's
  (4) fork        equal sizes with different roots are a fork (``ForkError``)
  (5) path        the hashes prove the old tree a prefix of the new one (RFC 6962 2.1.2)

Tree sizes are trusted only as they appear in signed checkpoints, never from the proof's lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from receipts import merkle
from receipts.errors import (
    ForkError,
    LimitError,
    NoteError,
    ProofError,
    SignatureError,
    VerificationError,
)
from receipts.keys import PublicKey, Signer
from receipts.note import (
    MAX_NOTE_BYTES,
    VerifierKey,
    decode_base64,
    encode_base64,
    open_note,
    parse_note,
    sign_note,
)

PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_TEXT_BYTES = MAX_NOTE_BYTES
MAX_TREE_SIZE = (1 << 64) - 1
MAX_INCLUSION_HASHES = 64  # a tree of fewer than 2^64 leaves is at most 64 levels deep
MAX_CONSISTENCY_HASHES = 63  # tlog-witness: clients MUST NOT send more than 63 proof lines
_DECIMAL = re.compile("0|[1-9][0-9]{0,19}")
_CONTROL = re.compile("[\x00-\x1f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root, and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError(f"tree size must be an integer in [0, 2^64), got {self.size!r}")
        if type(self.root) is not bytes or len(self.root) != 32:
            raise NoteError("checkpoint root must be 32 bytes")
        if type(self.extensions) is not tuple:
            raise NoteError("checkpoint extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "checkpoint extension line")

    def text(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each newline-ended."""
        lines = (self.origin, str(self.size), encode_base64(self.root), *self.extensions)
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its note text, exactly as ``text`` writes it; ``NoteError`` if not."""
        if len(text) > MAX_TEXT_BYTES:
            raise LimitError(f"checkpoint text is over {MAX_TEXT_BYTES} bytes")
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint text needs origin, size and root lines")
        origin, size, root, *extensions = lines
        return cls(
            origin=origin,
            size=_parse_decimal(size, "tree size"),
            root=_decode_hash(root),
            extensions=tuple(extensions),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """A c2sp.org/tlog-proof@v1: index, audit path (leaf side first), signed checkpoint bytes."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        _check_index(self.index, "leaf index")
        _check_hashes(self.hashes, MAX_INCLUSION_HASHES)
        unverified_checkpoint(self.checkpoint)
        if self.extra is not None and type(self.extra) is not bytes:
            raise NoteError("extra data must be bytes")

    def to_text(self) -> bytes:
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {encode_base64(self.extra)}")
        lines.append(f"index {self.index}")
        return _join(lines, self.hashes, self.checkpoint)

    @classmethod
    def parse(cls, data: bytes) -> InclusionProof:
        lines, checkpoint = _split(data, max_lines=3 + MAX_INCLUSION_HASHES)
        if lines[0] != PROOF_HEADER:
            raise NoteError(f"proof does not start with {PROOF_HEADER}")
        extra = None
        if len(lines) > 1 and lines[1].startswith("extra "):
            extra = decode_base64(lines.pop(1).removeprefix("extra "), "extra data")
        if len(lines) < 2 or not lines[1].startswith("index "):
            raise NoteError("proof has no index line")
        if len(lines) - 2 > MAX_INCLUSION_HASHES:
            raise LimitError(f"proof has more than {MAX_INCLUSION_HASHES} hashes")
        return cls(
            index=_parse_decimal(lines[1].removeprefix("index "), "leaf index"),
            hashes=tuple(_decode_hash(h) for h in lines[2:]),
            checkpoint=checkpoint,
            extra=extra,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyProof:
    """An add-checkpoint body: the old size, RFC 6962 consistency hashes, the new checkpoint."""

    old_size: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes

    def __post_init__(self) -> None:
        _check_index(self.old_size, "old tree size")
        _check_hashes(self.hashes, MAX_CONSISTENCY_HASHES)
        unverified_checkpoint(self.checkpoint)

    def to_text(self) -> bytes:
        return _join([f"old {self.old_size}"], self.hashes, self.checkpoint)

    @classmethod
    def parse(cls, data: bytes) -> ConsistencyProof:
        lines, checkpoint = _split(data, max_lines=1 + MAX_CONSISTENCY_HASHES)
        if not lines[0].startswith("old "):
            raise NoteError("consistency proof does not start with an old size line")
        return cls(
            old_size=_parse_decimal(lines[0].removeprefix("old "), "old tree size"),
            hashes=tuple(_decode_hash(h) for h in lines[1:]),
            checkpoint=checkpoint,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedInclusion:
    """An entry proven to sit at ``index`` in the tree a signed checkpoint commits to."""

    checkpoint: Checkpoint
    index: int
    entry: bytes


def unverified_checkpoint(data: bytes) -> Checkpoint:
    """The checkpoint a signed note claims, signatures unchecked: for routing, never for trust."""
    return Checkpoint.parse(parse_note(data).text)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> bytes:
    """The checkpoint as a signed note by ``signer`` under key name = its origin."""
    return sign_note(checkpoint.text(), checkpoint.origin, signer)


def verify_checkpoint(data: bytes, log_key: PublicKey, origin: str | None = None) -> Checkpoint:
    """The checkpoint in a signed note, once ``log_key`` under its origin's name has signed it.

    Without ``origin`` the note's own origin line picks the key name; pass ``origin`` whenever one
    key may sign for several logs. Other signature lines (witnesses) are ignored.
    """
    name = unverified_checkpoint(data).origin if origin is None else origin
    checkpoint = Checkpoint.parse(open_note(data, [VerifierKey.of(name, log_key)]).text)
    if checkpoint.origin != name:
        raise SignatureError(f"checkpoint of origin {checkpoint.origin!r} signed as {name!r}")
    return checkpoint


def verify_inclusion_proof(
    data: bytes, log_key: PublicKey, *, origin: str | None = None, entry: bytes | None = None
) -> VerifiedInclusion:
    """The entry, index and checkpoint a tlog-proof@v1 proves; raise if it does not hold."""
    proof = InclusionProof.parse(data)  # (1) parse
    checkpoint = verify_checkpoint(proof.checkpoint, log_key, origin)  # (2) checkpoint
    # (3) entry
    if entry is None and proof.extra is None:
        raise NoteError("no entry given and the proof carries no extra data")
    if entry is not None and proof.extra is not None and entry != proof.extra:
        raise ProofError("the proof's extra data is not the entry given")
    leaf = entry if entry is not None else proof.extra
    assert leaf is not None  # one of the two, checked above
    # (4) path
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf), proof.index, checkpoint.size, proof.hashes, checkpoint.root
        )
    except VerificationError as e:
        raise ProofError(
            f"entry {proof.index} is not proven in {checkpoint.origin} at size {checkpoint.size}"
            f" ({e})"
        ) from e
    return VerifiedInclusion(checkpoint=checkpoint, index=proof.index, entry=leaf)


def verify_consistency_proof(
    data: bytes, old_checkpoint: bytes, log_key: PublicKey, *, origin: str | None = None
) -> tuple[Checkpoint, Checkpoint]:
    """The (old, new) checkpoints once the new tree is proven to extend the old one."""
    proof = ConsistencyProof.parse(data)  # (1) parse
    # (2) checkpoints
    old = verify_checkpoint(old_checkpoint, log_key, origin)
    new = verify_checkpoint(proof.checkpoint, log_key, origin)
    if new.origin != old.origin:
        raise ProofError(f"checkpoints of two logs: {old.origin!r} and {new.origin!r}")
    # (3) sizes
    if proof.old_size != old.size:
        raise ProofError(f"proof starts at size {proof.old_size}, the old checkpoint is {old.size}")
    if new.size < old.size:
        raise ProofError(f"new checkpoint size {new.size} is below the old size {old.size}")
    # (4) fork
    check_not_forked(old, new)
    # (5) path
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof.hashes)
    except VerificationError as e:
        raise ProofError(
            f"{old.origin}: size {old.size} is not proven a prefix of size {new.size} ({e})"
        ) from e
    return old, new


def check_not_forked(a: Checkpoint, b: Checkpoint) -> None:
    """Raise ``ForkError`` if two checkpoints of one log give one size two roots.

    Raises (``details`` holds both checkpoints, the evidence) rather than reporting, because a
    fork is never a step that may fail quietly. Checkpoints of different logs raise ProofError.
    """
    if a.origin != b.origin:
        raise ProofError(f"checkpoints of two logs: {a.origin!r} and {b.origin!r}")
    if a.size == b.size and a.root != b.root:
        raise ForkError(f"{a.origin} signed two roots for size {a.size}", details=(a, b))


def _split(data: bytes, *, max_lines: int) -> tuple[list[str], bytes]:
    """A proof text's lines before its first blank line (ASCII only), and the bytes after it.

    The line count is checked before any hash is decoded.
    """
    if len(data) > MAX_TEXT_BYTES:
        raise LimitError(f"proof is over {MAX_TEXT_BYTES} bytes")
    split = data.find(b"\n\n")
    if split < 0:
        raise NoteError("proof has no blank line before its checkpoint")
    try:
        lines = data[:split].decode("ascii").split("\n")
    except UnicodeDecodeError as e:
        raise NoteError("proof lines are not ASCII") from e
    if len(lines) > max_lines:
        raise LimitError(f"proof has more than {max_lines} lines before its checkpoint")
    return lines, data[split + 2 :]


def _join(lines: list[str], hashes: Sequence[bytes], checkpoint: bytes) -> bytes:
    lines = [*lines, *(encode_base64(h) for h in hashes)]
    text = "".join(f"{line}\n" for line in lines).encode("ascii") + b"\n" + checkpoint
    if len(text) > MAX_TEXT_BYTES:
        raise LimitError(f"proof is over {MAX_TEXT_BYTES} bytes")
    return text


def _decode_hash(text: str) -> bytes:
    raw = decode_base64(text, "hash")
    if len(raw) != 32:
        raise NoteError(f"hash is {len(raw)} bytes, not 32")
    return raw


def _parse_decimal(text: str, what: str) -> int:
    """ASCII decimal without leading zeros (``0`` alone), below 2^64."""
    if not _DECIMAL.fullmatch(text):
        raise NoteError(f"{what} {text[:24]!r} is not a decimal without leading zeros")
    value = int(text)
    if value > MAX_TREE_SIZE:
        raise NoteError(f"{what} {value} is 2^64 or more")
    return value


def _check_index(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise NoteError(f"{what} must be an integer in [0, 2^64), got {value!r}")


def _check_hashes(hashes: tuple[bytes, ...], limit: int) -> None:
    if type(hashes) is not tuple:
        raise NoteError("proof hashes must be a tuple")
    if len(hashes) > limit:
        raise LimitError(f"proof has more than {limit} hashes")
    if any(type(h) is not bytes or len(h) != 32 for h in hashes):
        raise NoteError("proof hashes must be 32 bytes each")


def _check_line(line: str, what: str) -> None:
    """One non-empty line of a checkpoint: no newline or other control character."""
    if not line:
        raise NoteError(f"{what} is empty")
    if _CONTROL.search(line):
        raise NoteError(f"{what} contains a newline or control character")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteError(f"{what} is not valid Unicode") from e
