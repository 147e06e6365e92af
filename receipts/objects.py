"""A content-addressed store of models and tensor maps, filed under the digests receipts hold
(storage layer, beside ``files``): providers file what they ran (``receipts run --store``),
auditors find a receipt's model, inputs and outputs by the receipt's digests.

    store = ObjectStore.create(Path("objects"))         # or ObjectStore.open: refuses a non-store
    model = store.model(store.add_model_file(Path("model.onnx")))   # digest checked on every read

Layout (format ``inference-receipts/objects``, version 1)::

    STORE/receipts-objects.json     {"format": "inference-receipts/objects", "version": 1}
    STORE/models/ab/<hex>.onnx      a self-contained model whose model digest is sha256:ab<...>
    STORE/tensors/ab/<hex>.npz      a tensor map (as ``save_npz`` writes it) with that digest
    STORE/*/ab/.tmp-*               an add in progress, or one that crashed (``check`` lists it)

Models are filed under their model digest (the Merkle root of ``receipts.model``) and tensor
maps under their tensor-map digest (``TensorMapDigest.of(values).digest``), both independent of
how the file stores them. An add digests the value, writes a temporary file beside its place,
syncs it, reads it back and digests it again, then hard-links it into place: the link fails if a
concurrent adder won, whose identical object is left as it is. So an object is whole or absent
and never replaced. Every read recomputes the digest: the store is trusted no more than a disk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from receipts import strictjson
from receipts.digests import Digest, TensorMapDigest, Value
from receipts.errors import (
    InputError,
    MalformedError,
    ObjectCorruptError,
    ObjectMissingError,
    ObjectStoreError,
)
from receipts.files import make_folder, read_head, read_limited, stage, sync_folder, write_atomic
from receipts.model import MAX_MODEL_BYTES, LoadedModel, load_model, load_model_bytes
from receipts.tensorfiles import load_tensors, npz_writer

FORMAT = "inference-receipts/objects"
VERSION = 1
MARKER = "receipts-objects.json"
TEMP_PREFIX = ".tmp-"
_MARKER_BYTES = json.dumps({"format": FORMAT, "version": VERSION}).encode() + b"\n"
_FANOUT = re.compile(r"[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class _Kind:
    folder: str
    suffix: str
    what: str


MODELS = _Kind("models", ".onnx", "model")
TENSORS = _Kind("tensors", ".npz", "tensor map")
_KINDS = {kind.folder: kind for kind in (MODELS, TENSORS)}
_NAME = re.compile(r"([0-9a-f]{64})(\.onnx|\.npz)")


class Problem(StrEnum):
    """What ``ObjectStore.check`` can find wrong with one entry of a store."""

    CORRUPT = "corrupt"  # does not parse as its kind, or gives another digest than its name
    MISFILED = "misfiled"  # an object name in the wrong folder (fan-out or kind)
    UNREADABLE = "unreadable"  # cannot be opened or listed, or is not a regular file
    STRAY = "stray"  # a name that is no part of the layout
    TEMP = "temp"  # a temporary file left by an add that is running or crashed


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreProblem:
    """One entry of a store that is not a sound object; ``digest`` is the one its name says."""

    path: Path
    digest: Digest | None
    reason: Problem
    detail: str

    def describe(self) -> str:
        return f"{self.reason}  {self.path}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCheck:
    """The result of checking a whole store: objects read and digested, and every problem."""

    root: Path
    objects: int
    problems: tuple[StoreProblem, ...]

    def __bool__(self) -> bool:
        return not self.problems


Progress = Callable[[int, int], None]  # (objects checked, objects found)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectStore:
    """A store folder; get one from ``create`` or ``open``, which check its marker."""

    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ObjectStore:
        """The store at ``path``; ``ObjectStoreError`` unless its marker names this format."""
        root = Path(path)
        marker = root / MARKER
        if not root.is_dir():
            why = "not a folder" if root.exists() else "no such folder"
            raise ObjectStoreError(f"{root}: {why}, not an object store")
        if not marker.exists():
            raise ObjectStoreError(f"{root}: not an object store (no {MARKER})")
        try:
            data = read_limited(marker, 4096, "store marker")
        except InputError as e:
            raise ObjectStoreError(f"{marker}: unreadable store marker ({e})") from e
        try:
            fields = strictjson.load(data, str(marker), limit=4096)
        except MalformedError as e:  # not UTF-8, not JSON, nested too deeply, duplicate keys
            raise ObjectStoreError(f"{marker}: not an object store marker") from e
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            raise ObjectStoreError(f"{marker}: not an object store marker")
        version = fields.get("version")
        if type(version) is not int or version != VERSION:  # not 1.0, not true
            version = str(version)[:20]
            raise ObjectStoreError(
                f"{marker}: store format version {version} is not supported (only {VERSION})"
            )
        if set(fields) != {"format", "version"}:
            unknown = sorted(set(fields) - {"format", "version"})
            raise ObjectStoreError(f"{marker}: unknown keys {unknown} in a version 1 marker")
        return cls(root=root)

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> ObjectStore:
        """The store at ``path``, made there if the folder is missing or empty; a folder that
        holds anything else is refused (``ObjectStoreError``). Safe to race with itself."""
        root = Path(path)
        marker = root / MARKER
        if not marker.exists():
            if root.exists() and not root.is_dir():
                raise ObjectStoreError(f"{root}: not a folder, not an object store")
            try:
                make_folder(root)
            except InputError as e:
                raise ObjectStoreError(str(e)) from e
            if _foreign_entries(root):
                raise ObjectStoreError(
                    f"{root}: not empty and not an object store; refusing to make one there"
                )
            try:
                write_atomic(marker, _MARKER_BYTES, replace=False)
            except InputError as e:
                if not marker.exists():  # otherwise a concurrent create won: open its store
                    raise ObjectStoreError(str(e)) from e
        return cls.open(root)

    # -- paths -----------------------------------------------------------------------------

    def model_path(self, digest: Digest) -> Path:
        """Where the model with model digest ``digest`` is (or would be) filed."""
        return self._path(MODELS, digest)

    def tensors_path(self, digest: Digest) -> Path:
        """Where the tensor map with tensor-map digest ``digest`` is (or would be) filed."""
        return self._path(TENSORS, digest)

    def _path(self, kind: _Kind, digest: Digest) -> Path:
        hexdigest = digest.value.hex()
        return self.root / kind.folder / hexdigest[:2] / f"{hexdigest}{kind.suffix}"

    # -- adding ----------------------------------------------------------------------------

    def add_model_file(self, path: str | os.PathLike[str]) -> Digest:
        """File the ONNX model at ``path`` (external data embedded); returns its model digest."""
        return self.add_model(load_model(path))

    def add_model(self, loaded: LoadedModel) -> Digest:
        """File ``loaded`` as the bytes a runner loads: the file itself, or, if its weights were
        external, the model with them embedded (the model digest does not depend on where
        weights are stored; the read-back check confirms it)."""
        data = loaded.runtime_bytes

        def write(f: BinaryIO) -> None:
            f.write(data)

        self._file(MODELS, loaded.digest, write, lambda path: _model_at(path).digest)
        return loaded.digest

    def add_tensor_file(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "input_",
        names: Sequence[str] | None = None,
    ) -> Digest:
        """File the tensors of an ``.npz`` file or test-data folder (as ``load_tensors`` reads
        it); returns their tensor-map digest."""
        return self.add_tensors(load_tensors(Path(path), prefix=prefix, names=names))

    def add_tensors(self, values: Mapping[str, Value]) -> Digest:
        """File ``values`` (tensors, sequences, empty optionals) as an ``.npz``; values that do
        not read back with the same digest (see ADR 0005's reserved names) are refused."""
        digest = TensorMapDigest.of(values).digest
        try:
            write = npz_writer(values)
        except (ValueError, TypeError) as e:  # bytes that are not ASCII: NumPy cannot hold them
            raise ObjectStoreError(f"tensor map {digest} cannot be stored as .npz ({e})") from e
        self._file(TENSORS, digest, write, _tensors_digest_at)
        return digest

    def _file(
        self,
        kind: _Kind,
        digest: Digest,
        write: Callable[[BinaryIO], None],
        digest_at: Callable[[Path], Digest],
    ) -> None:
        target = self._path(kind, digest)
        if target.exists():
            return  # content-addressed: the object is there already (check() verifies it)
        folder = target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ObjectStoreError(f"cannot write in {folder}: {e.strerror or e}") from e
        staged = _stage(folder, write, f"{kind.what} {digest}")
        try:
            try:
                again = digest_at(staged)
            except InputError as e:
                raise ObjectStoreError(
                    f"{kind.what} {digest} does not read back from its file ({e})"
                ) from e
            if again != digest:
                raise ObjectStoreError(
                    f"{kind.what} {digest} reads back from its file as {again}; not stored"
                )
            try:
                os.link(staged, target)
                sync_folder(folder)
            except FileExistsError:
                pass  # a concurrent adder filed the same object first
            except OSError as e:
                raise ObjectStoreError(f"cannot write {target}: {e.strerror or e}") from e
        finally:
            staged.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------

    def model(self, digest: Digest) -> LoadedModel:
        """The model filed under ``digest``, digested again; ``ObjectMissingError`` or
        ``ObjectCorruptError`` otherwise. Parsing is the cost: callers cache the result."""
        path = self._present(MODELS, digest)
        try:
            return _sound_model(path, digest)
        except _UnsoundError as e:
            raise ObjectCorruptError(f"model {digest}: {path}: {e}") from e.__cause__

    def tensors(self, digest: Digest) -> dict[str, Value]:
        """The tensor map filed under ``digest``, digested again (errors as ``model``)."""
        path = self._present(TENSORS, digest)
        try:
            return _sound_tensors(path, digest)
        except _UnsoundError as e:
            raise ObjectCorruptError(f"tensor map {digest}: {path}: {e}") from e.__cause__

    def _present(self, kind: _Kind, digest: Digest) -> Path:
        path = self._path(kind, digest)
        if not path.exists() and not path.is_symlink():
            raise ObjectMissingError(f"no {kind.what} {digest} in {self.root} ({path})")
        if path.is_symlink():  # as check() says: objects are regular files
            raise ObjectStoreError(f"{kind.what} {digest}: {path} is a link, not an object")
        try:
            read_head(path, 0, kind.what)  # a regular file we may open
        except InputError as e:
            raise ObjectStoreError(f"{kind.what} {digest}: {e}") from e
        return path

    # -- checking --------------------------------------------------------------------------

    def check(self, *, progress: Progress | None = None) -> StoreCheck:
        """Read and digest every object and list every problem (never stops at the first).
        Temporary files of adds still running are listed too: check a store at rest."""
        problems: list[StoreProblem] = []
        found: list[tuple[_Kind, Digest]] = []
        for entry in _listing(self.root, problems):
            kind = _KINDS.get(entry.name)
            if entry.name == MARKER:
                continue
            if kind is not None and entry.is_dir() and not entry.is_symlink():
                self._scan(kind, entry, found, problems)
            else:
                problems.append(_odd(entry))
        for done, (kind, digest) in enumerate(found, start=1):
            problem = self._check_object(kind, digest)
            if problem is not None:
                problems.append(problem)
            if progress is not None:
                progress(done, len(found))
        ordered = tuple(sorted(problems, key=lambda p: str(p.path)))
        return StoreCheck(root=self.root, objects=len(found), problems=ordered)

    def _scan(
        self,
        kind: _Kind,
        folder: Path,
        found: list[tuple[_Kind, Digest]],
        problems: list[StoreProblem],
    ) -> None:
        for sub in _listing(folder, problems):
            if not (_FANOUT.fullmatch(sub.name) and sub.is_dir() and not sub.is_symlink()):
                problems.append(_odd(sub))
                continue
            for entry in _listing(sub, problems):
                named = _NAME.fullmatch(entry.name)
                if named is None:
                    problems.append(_odd(entry))
                    continue
                digest = Digest(bytes.fromhex(named.group(1)))
                home = self._path(
                    _KINDS["models" if named.group(2) == ".onnx" else "tensors"], digest
                )
                if entry != home:
                    detail = f"filed here, but it belongs at {home.relative_to(self.root)}"
                    problems.append(_problem(entry, Problem.MISFILED, detail, digest))
                elif entry.is_symlink() or not entry.is_file():
                    problems.append(
                        _problem(entry, Problem.UNREADABLE, "not a regular file", digest)
                    )
                else:
                    found.append((kind, digest))

    def _check_object(self, kind: _Kind, digest: Digest) -> StoreProblem | None:
        path = self._path(kind, digest)
        try:
            self._present(kind, digest)
            if kind is MODELS:
                _sound_model(path, digest)
            else:
                _sound_tensors(path, digest)
        except _UnsoundError as e:
            return _problem(path, Problem.CORRUPT, str(e), digest)
        except ObjectStoreError as e:  # vanished or unreadable since it was listed
            return _problem(path, Problem.UNREADABLE, str(e), digest)
        return None


class _UnsoundError(Exception):
    """Why an object's bytes do not give its digest (the caller names the object)."""


def _sound_model(path: Path, digest: Digest) -> LoadedModel:
    try:
        loaded = _model_at(path)
    except InputError as e:
        raise _UnsoundError(f"not a sound model ({_without(path, e)})") from e
    if loaded.digest != digest:
        raise _UnsoundError(f"holds model {loaded.digest}")
    return loaded


def _sound_tensors(path: Path, digest: Digest) -> dict[str, Value]:
    try:
        values = load_tensors(path)
        again = TensorMapDigest.of(values).digest
    except InputError as e:
        raise _UnsoundError(f"not a sound tensor map ({_without(path, e)})") from e
    if again != digest:
        raise _UnsoundError(f"holds tensor map {again}")
    return values


def _model_at(path: Path) -> LoadedModel:
    # No base folder: a stored model is self-contained, and one naming external data is refused.
    return load_model_bytes(read_limited(path, MAX_MODEL_BYTES, "model"), path=path)


def _tensors_digest_at(path: Path) -> Digest:
    return TensorMapDigest.of(load_tensors(path)).digest


def _without(path: Path, error: InputError) -> str:
    """The error's reason without the path the caller names already."""
    return str(error).removeprefix(f"{path}: ")


def _stage(folder: Path, write: Callable[[BinaryIO], None], what: str) -> Path:
    """A synced, read-only temporary file in ``folder`` holding what ``write`` writes
    (objects never change: a stray edit needs a chmod first)."""
    try:
        return stage(folder, write, mode=0o444, prefix=TEMP_PREFIX)
    except OSError as e:
        raise ObjectStoreError(f"cannot write in {folder}: {e.strerror or e}") from e
    except (ValueError, TypeError) as e:  # text NumPy cannot hold as str, and the like
        raise ObjectStoreError(f"{what} cannot be stored as a file ({e})") from e


def _foreign_entries(root: Path) -> list[str]:
    """Names in ``root`` other than the marker and a concurrent create's staged marker."""
    try:
        names = [p.name for p in root.iterdir()]
    except OSError as e:
        raise ObjectStoreError(f"cannot list {root}: {e.strerror or e}") from e
    return [n for n in names if n != MARKER and not n.startswith(f".{MARKER}.")]


def _listing(folder: Path, problems: list[StoreProblem]) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        problems.append(_problem(folder, Problem.UNREADABLE, f"cannot list: {e.strerror or e}"))
        return []


def _odd(entry: Path) -> StoreProblem:
    """A problem for an entry that is no object: a temporary file or a stray."""
    if entry.name.startswith((TEMP_PREFIX, f".{MARKER}.")):
        return _problem(entry, Problem.TEMP, "temporary file of an unfinished add")
    kind = "folder" if entry.is_dir() else "file"
    return _problem(entry, Problem.STRAY, f"a {kind} that is no part of the store's layout")


def _problem(
    path: Path, reason: Problem, detail: str, digest: Digest | None = None
) -> StoreProblem:
    return StoreProblem(path=path, digest=digest, reason=reason, detail=detail)
