"""Atomic file writes: a file the library writes appears whole or not at all (storage layer).

Receipts, outputs and keys are written to a temporary file in the target folder, flushed to disk
and then moved into place, so a crash or a full disk never leaves half a file behind.

    write_atomic(Path("out/receipt.rcpt"), data)            # replaces an older file whole
    write_new_file(Path("key.pem"), pem, mode=0o600)        # refuses to replace anything
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from receipts.errors import InputError


class StorageError(InputError):
    """A file could not be written (missing folder, permissions, disk full, already exists)."""


def write_atomic(
    path: Path,
    data: bytes | Callable[[BinaryIO], None],
    *,
    mode: int = 0o644,
    replace: bool = True,
) -> None:
    """Write ``data`` (bytes, or a function that writes to a file) to ``path`` atomically.

    With ``replace=False`` the final step is a hard link, which fails if ``path`` exists, so an
    existing file is never replaced; otherwise it is ``os.replace``.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            Path(tmp).replace(path)
        else:
            os.link(tmp, path)
        _sync_folder(path.parent)
    except FileExistsError as e:
        raise StorageError(f"{path} already exists; refusing to overwrite it") from e
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)


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
