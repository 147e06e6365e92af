"""Atomic file writes: a file the library writes appears whole or not at all (storage layer).

Receipts, outputs and keys are written to a temporary file in the target folder, flushed to disk
and then moved into place, so a crash or a full disk never leaves half a file behind.

    write_atomic(Path("out/receipt.rcpt"), data)            # replaces an older file whole
    write_new_file(Path("key.pem"), pem, mode=0o600)        # refuses to replace anything
    with staged(Path("circuit")) as folder: build(folder)    # a folder, whole or not at all
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from receipts.errors import InputError, LimitError


class StorageError(InputError):
    """A file could not be written (missing folder, permissions, disk full, already exists)."""


def read_limited(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; never blocks on a pipe or device.

    Raises ``InputError`` for a missing or unreadable file or a non-regular one, ``LimitError``
    (reading at most ``limit + 1`` bytes to find out) for a larger one.
    """
    data = read_head(path, limit + 1, what)
    if len(data) > limit:
        raise LimitError(f"{path}: {what} larger than the limit of {limit} bytes")
    return data


def read_head(path: Path, size: int, what: str = "file") -> bytes:
    """The first ``size`` bytes (``0``: none, only the checks) of the regular file at ``path``;
    never blocks on a pipe or device, which it refuses (``InputError``)."""
    with open_regular(path, what) as f:
        try:
            return f.read(size)
        except OSError as e:
            raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from e


@contextmanager
def open_regular(path: Path, what: str = "file") -> Iterator[BinaryIO]:
    """``path`` open for reading if it is a regular file; a missing or unreadable one, a pipe or
    a device (which would block, or never end) is an ``InputError``. Read errors inside the
    block are the caller's to name."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before fstat could refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from e
    except ValueError as e:  # a NUL byte in the path: no file can have that name
        raise InputError(f"cannot read {what} {str(path)!r}: a path with a NUL byte") from e
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError as e:
        os.close(fd)
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if not regular:  # a folder, a pipe, a device
        os.close(fd)
        raise InputError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        yield f


Content = bytes | Callable[[BinaryIO], None]


def write_atomic(path: Path, data: Content, *, mode: int = 0o644, replace: bool = True) -> None:
    """Write ``data`` (bytes, or a function that writes to a file) to ``path`` atomically.

    With ``replace=False`` the final step is a hard link, which fails if ``path`` exists, so an
    existing file is never replaced; otherwise it is ``os.replace``.
    """
    write_together([(path, data)], mode=mode, replace=replace)


def write_together(
    files: list[tuple[Path, Content]], *, mode: int = 0o644, replace: bool = True
) -> None:
    """Write several files so that none changes unless all of them are written out: every file
    is staged and synced first, then each is moved into place (a set that belongs together,
    like outputs and the receipt that binds them)."""
    for path, _ in files:
        if path.is_dir():
            raise StorageError(f"cannot write {path}: it is a folder")
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            staged.append((stage(path.parent, data, mode=mode, prefix=f".{path.name}."), path))
        for tmp, path in staged:
            if replace:
                tmp.replace(path)
            else:
                os.link(tmp, path)
            sync_folder(path.parent)
    except FileExistsError as e:
        raise StorageError(
            f"{e.filename2 or e.filename} already exists; refusing to overwrite it"
        ) from e
    except OSError as e:
        raise StorageError(f"cannot write {e.filename2 or e.filename}: {e.strerror or e}") from e
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def stage(folder: Path, data: Content, *, mode: int, prefix: str) -> Path:
    """A synced temporary file in ``folder`` (named ``prefix``...``.tmp``) with ``mode``,
    holding ``data``; the caller moves it into place or unlinks it. On any error nothing is
    left behind and the error propagates (OSError, or whatever ``data`` raised)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode``, whole or not at all; never replaces an existing file."""
    write_atomic(path, data, mode=mode, replace=False)


def sync_folder(folder: Path) -> None:
    """Make a new directory entry in ``folder`` durable (the file's bytes were synced before
    the rename or link); given a file, its bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- outputs built elsewhere (a tool writes them) and moved into place whole -----------------


def check_new_target(target: Path, *, empty_folder: bool = False) -> None:
    """Refuse (``StorageError``) a target that exists (an empty folder too unless
    ``empty_folder``: a folder output may take its place) or whose folder does not: checked
    before slow work whose result could not be written."""
    if empty_folder and target.is_dir() and not any(target.iterdir()):
        return
    if target.exists() or target.is_symlink():
        raise StorageError(f"{target} already exists; refusing to overwrite it")
    if not target.parent.is_dir():
        why = "is not a folder" if target.parent.exists() else "does not exist"
        raise StorageError(f"cannot write {target}: {target.parent} {why}")


def make_folder(folder: Path) -> None:
    """``folder`` and its parents (``StorageError`` if that cannot be done)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {folder}: {e.strerror or e}") from e


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A path to build ``target`` at (a file or a folder, by code that writes it its own way),
    in a hidden staging folder beside it; moved into place when the block ends without error,
    a file by hard link, a folder by rename over nothing or an empty folder, so nothing is ever
    replaced. On any error or Ctrl-C the staging folder is removed and ``target`` is untouched.
    Files in a staged folder must be synced by whoever wrote them; a staged file is synced
    here."""
    check_new_target(target, empty_folder=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise StorageError(f"cannot write in {target.parent}: {e.strerror or e}") from e
    try:
        built = staging / target.name
        yield built
        try:
            if built.is_dir():
                built.rename(target)  # fails over a file or a folder that is not empty
            else:
                sync_folder(built)  # tools (snarkjs) do not sync what they write
                os.link(built, target)  # fails over anything
        except FileExistsError as e:
            raise StorageError(f"{target} already exists; refusing to overwrite it") from e
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.ENOTDIR):
                raise StorageError(f"{target} already exists; refusing to overwrite it") from e
            raise StorageError(f"cannot write {target}: {e.strerror or e}") from e
        sync_folder(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
