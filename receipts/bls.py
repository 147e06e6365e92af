"""Committee co-signatures: BLS12-381 keys, proofs of possession, aggregation (the crypto layer).

Settlement auditors each hold a ``BlsPrivateKey`` and co-sign a settlement batch root; the
collector aggregates their signatures into one 96-byte signature, and the settlement batch module
checks it against the auditor ``Committee`` with ``verify_cosigned``. The scheme is the IETF BLS
signature draft's proof-of-possession ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``
(48-byte G1 public keys, 96-byte G2 signatures); the arithmetic lives in ``receipts.bls_backends``.

    signature = aggregate([key.sign(batch_root) for key in auditor_keys])
    verify_cosigned(committee, signers, batch_root, signature, threshold=2)  # raises if not

``verify_cosigned`` runs these steps, in this order, and each failure raises:

1. threshold: ``1 <= threshold <= len(committee)``, else ``MalformedError``.
2. signers: distinct (``MalformedError``) members of the committee (``SignatureError``).
3. count: at least ``threshold`` signers, else ``ThresholdError``; no pairing has run yet.
4. possession: every signer's proof of possession verifies (the defense against rogue keys,
   which FastAggregateVerify relies on), else ``SignatureError`` naming the signer.
5. signature: FastAggregateVerify of the signers' keys over the message, else ``SignatureError``.

Files. A private key file (mode 0600, never written over an existing file) is the armor line
``-----BEGIN BLS12-381 PRIVATE KEY-----``, the standard base64 of the 32-byte big-endian secret
on one line, and ``-----END BLS12-381 PRIVATE KEY-----``, each ending in a newline; the armor
label names the format, so a later format gets a new label. Beside it, ``<key>.pub`` is JSON
``{"type": "bls-public-key", "version": 1, "scheme": "bls12-381", "public_key": hex, "pop": hex}``
and a committee file is JSON ``{"type": "bls-committee", "version": 1, "members": [{"public_key":
hex, "pop": hex}, ...]}``. Parsing is strict: exact key sets, no duplicate keys, lowercase hex of
the exact length, key files at most 64 KiB, committee files at most 1 MiB and 1024 members.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from receipts import strictjson
from receipts.bls_backends import (
    CIPHERSUITE,
    POP_DST,
    PUBLIC_KEY_SIZE,
    SECRET_SIZE,
    SIGNATURE_SIZE,
    ArkworksBackend,
    BlsBackend,
    check_secret,
    default_backend,
)
from receipts.effects import RandomBytes, system_random
from receipts.errors import (
    InputError,
    KeyFileError,
    LimitError,
    MalformedError,
    SignatureError,
    ThresholdError,
    UnsupportedVersionError,
)
from receipts.files import StorageError, read_limited, write_atomic, write_new_file

__all__ = [
    "CIPHERSUITE",
    "MAX_MEMBERS",
    "POP_DST",
    "ArkworksBackend",
    "BlsBackend",
    "BlsMember",
    "BlsPrivateKey",
    "BlsPublicKey",
    "Committee",
    "aggregate",
    "default_backend",
    "verify_cosigned",
]

MAX_MEMBERS = 1024
_MAX_KEY_FILE = 64 * 1024
_MAX_COMMITTEE_FILE = 1024 * 1024
_BEGIN = b"-----BEGIN BLS12-381 PRIVATE KEY-----"
_END = b"-----END BLS12-381 PRIVATE KEY-----"
_PUBLIC_TYPE, _COMMITTEE_TYPE, _VERSION, _SCHEME = "bls-public-key", "bls-committee", 1, "bls12-381"
_HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlsPublicKey:
    """A 48-byte compressed G1 public key that passed KeyValidate (not identity, in subgroup)."""

    raw: bytes

    def __post_init__(self) -> None:
        default_backend().key_validate(self.raw)  # raises MalformedError

    def __str__(self) -> str:
        return self.raw.hex()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlsMember:
    """A registered auditor key with its proof of possession (checked by ``verify_pop``)."""

    public_key: BlsPublicKey
    pop: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, BlsPublicKey):
            raise MalformedError("a member's public key must be a BlsPublicKey")
        if not isinstance(self.pop, bytes) or len(self.pop) != SIGNATURE_SIZE:
            raise MalformedError(f"BLS proof of possession must be {SIGNATURE_SIZE} bytes")

    def verify_pop(self, backend: BlsBackend | None = None) -> None:
        """Raise ``SignatureError`` unless ``pop`` proves possession of ``public_key``."""
        (backend or default_backend()).pop_verify(self.public_key.raw, self.pop)

    def to_dict(self) -> dict[str, str]:
        return {"public_key": self.public_key.raw.hex(), "pop": self.pop.hex()}

    @classmethod
    def from_dict(cls, value: object) -> BlsMember:
        """A member from ``{"public_key": hex, "pop": hex}``; ``MalformedError`` otherwise."""
        fields = _exact(value, {"public_key", "pop"}, "member")
        raw = _hex(fields["public_key"], PUBLIC_KEY_SIZE, "public_key")
        return cls(public_key=BlsPublicKey(raw=raw), pop=_hex(fields["pop"], SIGNATURE_SIZE, "pop"))

    def to_public_file(self) -> bytes:
        record = {"type": _PUBLIC_TYPE, "version": _VERSION, "scheme": _SCHEME, **self.to_dict()}
        return (json.dumps(record, indent=2) + "\n").encode()

    @classmethod
    def from_public_file(cls, data: bytes) -> BlsMember:
        """Parse a ``.pub`` file; ``UnsupportedVersionError`` for another type or version,
        ``KeyFileError`` for anything else that is wrong."""
        try:
            record = _load_json(data, _PUBLIC_TYPE)
            fields = _exact(record, {"type", "version", "scheme", "public_key", "pop"}, "file")
            _check_scheme(fields["scheme"])
            return cls.from_dict({"public_key": fields["public_key"], "pop": fields["pop"]})
        except UnsupportedVersionError:
            raise
        except (MalformedError, LimitError) as e:
            raise KeyFileError(f"not a BLS public key file: {e}") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BlsMember:
        target = Path(path)
        data = _read_key_file(target)
        try:
            return cls.from_public_file(data)
        except (KeyFileError, UnsupportedVersionError) as e:
            raise type(e)(f"{target}: {e}") from e


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BlsPrivateKey:
    """An auditor's secret scalar in ``[1, r)``; signs batch roots and proves possession."""

    secret: int
    _public: BlsPublicKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        check_secret(self.secret)  # raises MalformedError
        raw = default_backend().sk_to_pk(self.secret)
        object.__setattr__(self, "_public", BlsPublicKey(raw=raw))

    def __repr__(self) -> str:
        return f"BlsPrivateKey(public_key={self._public})"

    @property
    def public_key(self) -> BlsPublicKey:
        return self._public

    @classmethod
    def generate(cls, *, random_bytes: RandomBytes = system_random) -> BlsPrivateKey:
        """A new key: the IETF KeyGen (HKDF-SHA-256) over 32 bytes of ``random_bytes``."""
        # py_ecc takes ~0.4 s to import; only making a key needs it (receipts.bls_pyecc)
        from py_ecc.bls.ciphersuites import G2ProofOfPossession  # noqa: PLC0415

        ikm = random_bytes(SECRET_SIZE)
        return cls(secret=G2ProofOfPossession.KeyGen(ikm))

    def sign(self, message: bytes, backend: BlsBackend | None = None) -> bytes:
        return (backend or default_backend()).sign(self.secret, message)

    def prove_possession(self, backend: BlsBackend | None = None) -> bytes:
        return (backend or default_backend()).pop_prove(self.secret)

    def member(self, backend: BlsBackend | None = None) -> BlsMember:
        """This key as a committee member: the public key and a fresh proof of possession."""
        return BlsMember(public_key=self._public, pop=self.prove_possession(backend))

    def to_bytes(self) -> bytes:
        return self.secret.to_bytes(SECRET_SIZE, "big")

    def to_file(self) -> bytes:
        return b"%s\n%s\n%s\n" % (_BEGIN, base64.b64encode(self.to_bytes()), _END)

    @classmethod
    def from_file(cls, data: bytes) -> BlsPrivateKey:
        """Parse the private key armor; ``KeyFileError`` for anything not exactly that."""
        lines = data.split(b"\n")
        if len(lines) != 4 or lines[3] or lines[0] != _BEGIN or lines[2] != _END:
            raise KeyFileError(f"not a BLS12-381 private key file (expected {_BEGIN.decode()})")
        try:
            secret = base64.b64decode(lines[1], validate=True)
        except binascii.Error as e:
            raise KeyFileError("BLS private key is not valid base64") from e
        if len(secret) != SECRET_SIZE or base64.b64encode(secret) != lines[1]:
            raise KeyFileError(f"BLS private key must be {SECRET_SIZE} bytes in canonical base64")
        try:
            return cls(secret=int.from_bytes(secret, "big"))
        except MalformedError as e:
            raise KeyFileError(str(e)) from e

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BlsPrivateKey:
        target = Path(path)
        data = _read_key_file(target)
        try:
            return cls.from_file(data)
        except KeyFileError as e:
            raise KeyFileError(f"{target}: {e}") from e

    def save(self, path: str | os.PathLike[str], backend: BlsBackend | None = None) -> Path:
        """Write ``path`` (mode 0600) and ``path.pub``; refuses to replace an existing file."""
        target = Path(path)
        public = target.with_name(target.name + ".pub")
        for existing in (target, public):
            if existing.exists():
                raise KeyFileError(f"{existing} already exists; refusing to overwrite a key")
        public_file = self.member(backend).to_public_file()
        try:
            write_new_file(target, self.to_file(), mode=0o600)
            try:
                write_new_file(public, public_file, mode=0o644)
            except StorageError:
                target.unlink(missing_ok=True)  # both files or neither
                raise
        except StorageError as e:
            raise KeyFileError(str(e)) from e
        return public


@dataclass(frozen=True, slots=True, kw_only=True)
class Committee:
    """The registered auditors: 1 to 1024 members with distinct public keys, in file order."""

    members: tuple[BlsMember, ...]
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        members = tuple(self.members)
        object.__setattr__(self, "members", members)
        if not members:
            raise MalformedError("a committee needs at least one member")
        if len(members) > MAX_MEMBERS:
            raise LimitError(f"a committee has at most {MAX_MEMBERS} members")
        index: dict[bytes, int] = {}
        for i, member in enumerate(members):
            if member.public_key.raw in index:
                first = index[member.public_key.raw]
                raise MalformedError(f"member {i} repeats the public key of member {first}")
            index[member.public_key.raw] = i
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.members)

    def index(self, public_key: BlsPublicKey) -> int | None:
        """The member number of ``public_key``, or ``None`` if it is not a member."""
        return self._index.get(public_key.raw)

    def verify_pops(self, backend: BlsBackend | None = None) -> None:
        """Raise ``SignatureError`` naming the first member whose proof of possession fails."""
        for i, member in enumerate(self.members):
            _verify_member_pop(member, i, backend)

    def to_json(self) -> bytes:
        record = {
            "type": _COMMITTEE_TYPE,
            "version": _VERSION,
            "members": [member.to_dict() for member in self.members],
        }
        return (json.dumps(record, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Committee:
        """Parse a committee file; ``LimitError`` over the limits, ``UnsupportedVersionError``
        for another type or version, ``MalformedError`` for anything else that is wrong."""
        record = _load_json(data, _COMMITTEE_TYPE, limit=_MAX_COMMITTEE_FILE)
        fields = _exact(record, {"type", "version", "members"}, "committee")
        members = fields["members"]
        if not isinstance(members, list):
            raise MalformedError("committee members must be a list")
        if len(members) > MAX_MEMBERS:
            raise LimitError(f"committee has {len(members)} members; the limit is {MAX_MEMBERS}")
        parsed = []
        for i, item in enumerate(members):
            try:
                parsed.append(BlsMember.from_dict(item))
            except MalformedError as e:
                raise MalformedError(f"committee member {i}: {e}") from e
        return cls(members=tuple(parsed))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Committee:
        target = Path(path)
        data = read_limited(target, _MAX_COMMITTEE_FILE, "committee file")
        try:
            return cls.from_json(data)
        except InputError as e:
            raise type(e)(f"{target}: {e}") from e

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the committee file atomically (replacing an older version whole)."""
        write_atomic(Path(path), self.to_json(), mode=0o644)


def aggregate(signatures: Sequence[bytes], backend: BlsBackend | None = None) -> bytes:
    """The sum of ``signatures`` (each a valid G2 point of the subgroup), as 96 bytes.

    Aggregation verifies nothing; ``verify_cosigned`` does. ``MalformedError`` for an empty
    list or an input that is not a signature encoding.
    """
    return (backend or default_backend()).aggregate(list(signatures))


def verify_cosigned(
    committee: Committee,
    signers: Sequence[BlsPublicKey],
    message: bytes,
    signature: bytes,
    threshold: int,
    *,
    backend: BlsBackend | None = None,
) -> None:
    """Raise unless ``signature`` is the aggregate signature of ``message`` by ``signers``, at
    least ``threshold`` distinct members of ``committee`` (steps 1-5 of the module docstring)."""
    backend = backend or default_backend()
    # (1) threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise MalformedError("threshold must be an integer")
    if not 1 <= threshold <= len(committee):
        raise MalformedError(f"threshold {threshold} is not in 1..{len(committee)}")
    # (2) signers
    members = _signing_members(committee, signers)
    # (3) count
    if len(members) < threshold:
        raise ThresholdError(f"{len(members)} co-signers; the threshold is {threshold}")
    # (4) possession
    for i, member in members:
        _verify_member_pop(member, i, backend)
    # (5) signature
    keys = [member.public_key.raw for _, member in members]
    try:
        backend.fast_aggregate_verify(keys, message, signature)
    except SignatureError as e:
        raise SignatureError(f"co-signature of {len(keys)} committee members: {e}") from e


def _signing_members(
    committee: Committee, signers: Sequence[BlsPublicKey]
) -> list[tuple[int, BlsMember]]:
    members: list[tuple[int, BlsMember]] = []
    seen: set[int] = set()
    for position, signer in enumerate(signers):
        if not isinstance(signer, BlsPublicKey):
            raise MalformedError(f"signer {position} is not a BlsPublicKey")
        index = committee.index(signer)
        if index is None:
            raise SignatureError(f"signer {position} ({signer}) is not a committee member")
        if index in seen:
            raise MalformedError(f"signer {position} ({signer}) is listed twice")
        seen.add(index)
        members.append((index, committee.members[index]))
    return members


def _verify_member_pop(member: BlsMember, index: int, backend: BlsBackend | None) -> None:
    try:
        member.verify_pop(backend)
    except SignatureError as e:
        raise SignatureError(f"committee member {index} ({member.public_key}): {e}") from e


# --- strict JSON ------------------------------------------------------------------------------


def _load_json(data: bytes, kind: str, *, limit: int = _MAX_KEY_FILE) -> dict[str, Any]:
    """A JSON object of type ``kind`` and version 1: no duplicate keys, no NaN, within ``limit``."""
    value = strictjson.load(data, f"{kind} file", limit=limit)
    if not isinstance(value, dict):
        raise MalformedError(f"{kind} file must hold a JSON object")
    if value.get("type") != kind:
        raise UnsupportedVersionError(f"record type {value.get('type')!r} is not {kind!r}")
    version = value.get("version")
    if isinstance(version, bool) or version != _VERSION:
        raise UnsupportedVersionError(f"{kind} version {version!r} is not supported")
    return value


def _exact(value: object, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{what} must be a JSON object")
    if set(value) != keys:
        raise MalformedError(f"{what} must have exactly the keys {', '.join(sorted(keys))}")
    return value


def _check_scheme(scheme: object) -> None:
    if scheme != _SCHEME:
        raise MalformedError(f"unknown scheme {scheme!r}; expected {_SCHEME!r}")


def _hex(value: object, size: int, name: str) -> bytes:
    # bytes.fromhex alone would accept upper case and skip spaces; one spelling per value.
    if not isinstance(value, str) or len(value) != 2 * size or not set(value) <= _HEX_DIGITS:
        raise MalformedError(f"{name} must be {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


def _read_key_file(path: Path) -> bytes:
    try:
        return read_limited(path, _MAX_KEY_FILE, "key file")
    except InputError as e:
        raise KeyFileError(str(e)) from e
