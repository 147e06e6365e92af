"""C2SP signed notes, Ed25519 only: the signature layer under the settlement log's checkpoints.

Formats layer. The settlement log publishes each checkpoint (``receipts.checkpoint``) as a signed
note (https://c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line, then one or
more signature lines ``— <key name> base64(key id(4) || signature)``. Witnesses co-sign by
appending lines; a verifier opens the note with the keys it trusts and ignores all others.

    note = sign_note("hello, log\\n", "example.com/log", signer)
    opened = open_note(note, [VerifierKey.of("example.com/log", signer.public_key)])   # raises

Only signature type 0x01 (Ed25519 over the exact UTF-8 text bytes) is implemented; its key id is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and its verifier key string is
``<name>+<hex key id>+<base64(0x01 || public key)>``. Base64 is standard (RFC 4648 section 4) and,
when read, must be the one canonical encoding of its bytes.

Opening a note (``open_note``):
  (1) limits     at most ``MAX_NOTE_BYTES`` bytes and ``MAX_SIGNATURES`` signature lines
  (2) parse      valid UTF-8, no control character but newline; the text ends at the last blank
                 line and is followed by well-formed signature lines only
  (3) match      a line counts only if both its key name and key id are a verifier's; others are
                 ignored; a known key may sign only once
  (4) verify     every line of a known key verifies over the text, else the note is rejected
  (5) signed     at least one known key signed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from receipts.errors import LimitError, MalformedError, NoteError, SignatureError
from receipts.keys import PublicKey, Signer

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
ED25519_TYPE = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline
_HEX_KEY_ID = re.compile("[0-9a-f]{8}")


def encode_base64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4)."""
    return base64.b64encode(data).decode("ascii")


def decode_base64(text: str, what: str) -> bytes:
    """Bytes whose canonical standard base64 is exactly ``text``; ``NoteError`` otherwise.

    Decoders disagree on missing padding and on non-zero bits after the last byte; accepting only
    the canonical form gives every value one spelling, so signed texts cannot be re-spelled.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"{what} is not standard base64") from e
    if encode_base64(raw) != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def note_key_id(name: str, public_key: PublicKey) -> bytes:
    """The 4-byte key id of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    _check_key(name, public_key)
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key.raw
    ).digest()[:4]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifierKey:
    """A trusted note key: its name, its derived key id and its Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: PublicKey

    def __post_init__(self) -> None:
        if self.key_id != note_key_id(self.name, self.public_key):
            raise NoteError(
                f"key id of note key {self.name!r} is not derived from its name and key"
            )

    @classmethod
    def of(cls, name: str, public_key: PublicKey) -> VerifierKey:
        return cls(name=name, key_id=note_key_id(name, public_key), public_key=public_key)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """A verifier key from ``<name>+<8 lowercase hex key id>+<base64(0x01 || key)>``."""
        # The base64 key may itself hold '+': split at the first two only.
        name, plus1, rest = text.partition("+")
        key_id, plus2, encoded = rest.partition("+")
        if not (plus1 and plus2):
            raise NoteError("verifier key is not <name>+<key id>+<key>")
        if not _HEX_KEY_ID.fullmatch(key_id):
            raise NoteError("verifier key id is not 8 lowercase hex digits")
        raw = decode_base64(encoded, "verifier public key")
        if len(raw) != 33 or raw[0] != ED25519_TYPE:
            raise NoteError("verifier key is not 0x01 followed by a 32-byte Ed25519 key")
        try:
            public_key = PublicKey.parse("ed25519", raw[1:])
        except MalformedError as e:
            raise NoteError(f"verifier key {name!r} holds an invalid Ed25519 key") from e
        return cls(name=name, key_id=bytes.fromhex(key_id), public_key=public_key)

    def format(self) -> str:
        raw = bytes([ED25519_TYPE]) + self.public_key.raw
        return f"{self.name}+{self.key_id.hex()}+{encode_base64(raw)}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteSignature:
    """One signature line as read: who claims to have signed, not yet verified."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.key_id) != 4:
            raise NoteError("a note key id is 4 bytes")
        if not self.signature:
            raise NoteError(f"empty signature by {self.name!r}")

    @classmethod
    def parse(cls, line: str) -> NoteSignature:
        """A signature line without its final newline."""
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("signature line does not start with an em dash and a space")
        name, space, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        if not space:
            raise NoteError("signature line has no space between key name and signature")
        raw = decode_base64(encoded, f"signature by {name!r}")
        return cls(name=name, key_id=raw[:4], signature=raw[4:])

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {encode_base64(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnverifiedNote:
    """A note's text and signature lines, well-formed but not verified: do not act on the text."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_note_text(self.text)
        if not self.signatures:
            raise NoteError("a signed note needs at least one signature line")
        if len(self.signatures) > MAX_SIGNATURES:
            raise LimitError(f"note has more than {MAX_SIGNATURES} signature lines")

    def to_bytes(self) -> bytes:
        lines = "".join(s.line() for s in self.signatures)
        data = f"{self.text}\n{lines}".encode()
        if len(data) > MAX_NOTE_BYTES:
            raise LimitError(f"note is over {MAX_NOTE_BYTES} bytes")
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedNote:
    """A note's text and the known keys whose signatures over it verified."""

    text: str
    keys: tuple[VerifierKey, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the keys that signed, in line order, each once."""
        return tuple(dict.fromkeys(k.name for k in self.keys))


def check_note_text(text: str) -> None:
    """Raise ``NoteError`` unless ``text`` can be a note's text (non-empty, ends in newline)."""
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    _check_characters(text, "note text")


def parse_note(note: bytes) -> UnverifiedNote:
    """Steps (1) and (2): split a note into text and signature lines, checking nothing signed."""
    # (1) limits
    if len(note) > MAX_NOTE_BYTES:
        raise LimitError(f"note is over {MAX_NOTE_BYTES} bytes")
    # (2) parse
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("note is not valid UTF-8") from e
    _check_characters(decoded, "note")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note does not end in a complete signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:  # (1) counted before any line is decoded
        raise LimitError(f"note has more than {MAX_SIGNATURES} signature lines")
    return UnverifiedNote(text=text, signatures=tuple(NoteSignature.parse(x) for x in lines))


def open_note(note: bytes, verifiers: Sequence[VerifierKey]) -> OpenedNote:
    """The note's text once a known key's signature verifies; raise ``SignatureError`` if none."""
    parsed = parse_note(note)  # (1) (2)
    known = _index(verifiers)
    message = parsed.text.encode()
    seen: list[VerifierKey] = []
    for sig in parsed.signatures:
        # (3) match
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if key in seen:
            raise NoteError(f"note carries two signatures by {key}")
        seen.append(key)
        # (4) verify
        try:
            key.public_key.verify(sig.signature, message)
        except SignatureError as e:
            raise SignatureError(f"signature by {key} does not verify over the note") from e
    # (5) signed
    if not seen:
        raise SignatureError("note carries no signature by a known key")
    return OpenedNote(text=parsed.text, keys=tuple(seen))


def sign_note(text: str, name: str, signer: Signer) -> bytes:
    """A note of ``text`` with one signature line by ``signer`` under key name ``name``."""
    check_note_text(text)
    return UnverifiedNote(text=text, signatures=(_sign(text, name, signer),)).to_bytes()


def add_signature(note: bytes, name: str, signer: Signer) -> bytes:
    """``note``'s exact bytes with one more signature line (a co-signature) appended.

    The existing lines are not verified here; the new key must not have signed already.
    """
    parsed = parse_note(note)
    sig = _sign(parsed.text, name, signer)
    if any((s.name, s.key_id) == (sig.name, sig.key_id) for s in parsed.signatures):
        raise NoteError(f"note is already signed by {name}+{sig.key_id.hex()}")
    if len(parsed.signatures) >= MAX_SIGNATURES:
        raise LimitError(f"note already has {MAX_SIGNATURES} signature lines")
    cosigned = note + sig.line().encode()
    if len(cosigned) > MAX_NOTE_BYTES:
        raise LimitError(f"note would be over {MAX_NOTE_BYTES} bytes")
    return cosigned


def _sign(text: str, name: str, signer: Signer) -> NoteSignature:
    key_id = note_key_id(name, signer.public_key)
    return NoteSignature(name=name, key_id=key_id, signature=signer.sign(text.encode()))


def _index(verifiers: Sequence[VerifierKey]) -> dict[tuple[str, bytes], VerifierKey]:
    known: dict[tuple[str, bytes], VerifierKey] = {}
    for key in verifiers:
        previous = known.setdefault((key.name, key.key_id), key)
        if previous != key:
            # Colliding name and id: which key a line means would be a guess.
            raise MalformedError(
                f"two different verifier keys are both {key.name}+{key.key_id.hex()}"
            )
    return known


def _check_key(name: str, public_key: PublicKey) -> None:
    _check_name(name)
    if public_key.scheme != "ed25519":
        raise NoteError(f"note key {name!r} is {public_key.scheme}; notes here use Ed25519 only")


def _check_name(name: str) -> None:
    """Key names are non-empty and printable, without Unicode spaces or '+'."""
    if not name or not name.isprintable() or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"invalid note key name {name!r}")


def _check_characters(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise NoteError(f"{what} contains a control character other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates in a str
        raise NoteError(f"{what} is not valid Unicode") from e
