"""Atomic file writes: a file the library writes appears whole or not at all (storage layer).

Receipts, outputs and keys are written to a temporary file in the target folder, flushed to disk
and then moved into place, so a crash or a full disk never leaves half a file behind.

    write_atomic(Path("out/receipt.rcpt"), data)            # replaces an older file whole
    write_new_file(Path("key.pem"), pem, mode=0o600)        # refuses to replace anything
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
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
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before fstat could refuse it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(f"{path}: not a regular file")
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if len(data) > limit:
        raise LimitError(f"{path}: {what} larger than the limit of {limit} bytes")
    return data


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
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            staged.append((_stage(path, data, mode), path))
        for tmp, path in staged:
            if replace:
                Path(tmp).replace(path)
            else:
                os.link(tmp, path)
            _sync_folder(path.parent)
    except FileExistsError as e:
        raise StorageError(
            f"{e.filename2 or e.filename} already exists; refusing to overwrite it"
        ) from e
    except OSError as e:
        raise StorageError(f"cannot write {e.filename2 or e.filename}: {e.strerror or e}") from e
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _stage(path: Path, data: Content, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode``, whole or not at all; never replaces an existing file."""
    write_atomic(path, data, mode=mode, replace=False)


def _sync_folder(folder: Path) -> None:
    """Make the new directory entry durable (the file's bytes were synced before the rename)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
