"""Atomic writes: a file appears whole or not at all, and failures leave nothing behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.errors import InputError
from receipts.files import (
    StorageError,
    check_new_target,
    read_head,
    read_limited,
    staged,
    write_atomic,
    write_new_file,
)


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_storage_errors_are_input_errors() -> None:
    assert issubclass(StorageError, InputError)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_write_atomic_replaces_the_whole_file(
    tmp_path_factory: pytest.TempPathFactory, old: bytes, new: bytes
) -> None:
    folder = tmp_path_factory.mktemp("atomic")
    target = folder / "out.bin"
    write_atomic(target, old)
    write_atomic(target, new)
    assert target.read_bytes() == new
    assert names_in(folder) == ["out.bin"]


def test_write_atomic_accepts_a_writer_function(tmp_path: Path) -> None:
    def writer(f: BinaryIO) -> None:
        f.write(b"part one, ")
        f.write(b"part two")

    target = tmp_path / "out.bin"
    write_atomic(target, writer)
    assert target.read_bytes() == b"part one, part two"


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640])
def test_write_atomic_sets_the_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a", b"x", mode=mode)
        write_new_file(tmp_path / "b", b"x", mode=mode)
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b").stat().st_mode & 0o777 == mode


def test_write_new_file_creates_a_file(tmp_path: Path) -> None:
    write_new_file(tmp_path / "new", b"data", mode=0o600)
    assert (tmp_path / "new").read_bytes() == b"data"
    assert names_in(tmp_path) == ["new"]


def test_write_new_file_refuses_an_existing_file_and_keeps_it(tmp_path: Path) -> None:
    target = tmp_path / "existing"
    target.write_bytes(b"precious")
    with pytest.raises(StorageError, match="already exists"):
        write_new_file(target, b"intruder", mode=0o600)
    assert target.read_bytes() == b"precious"
    assert names_in(tmp_path) == ["existing"]


def test_write_new_file_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError):
        write_new_file(link, b"data", mode=0o600)
    assert names_in(tmp_path) == ["link"]


def test_write_atomic_replace_false_is_write_new_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"one", replace=False)
    with pytest.raises(StorageError):
        write_atomic(target, b"two", replace=False)
    assert target.read_bytes() == b"one"


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda p: write_atomic(p, b"data"), id="write_atomic"),
        pytest.param(lambda p: write_new_file(p, b"data", mode=0o600), id="write_new_file"),
    ],
)
def test_a_missing_target_folder_is_a_storage_error_with_nothing_left(
    tmp_path: Path, write: Callable[[Path], None]
) -> None:
    with pytest.raises(StorageError) as info:
        write(tmp_path / "missing" / "out")
    assert isinstance(info.value.__cause__, OSError)
    assert names_in(tmp_path) == []


def test_replacing_a_folder_is_a_storage_error_with_no_temp_file_left(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(StorageError):
        write_atomic(tmp_path / "folder", b"data")
    assert names_in(tmp_path) == ["folder"]
    assert names_in(tmp_path / "folder") == []


def test_a_writer_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")

    def failing(f: BinaryIO) -> None:
        f.write(b"half of the ")
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError, match="No space left"):
        write_atomic(target, failing)
    assert target.read_bytes() == b"old"
    assert names_in(tmp_path) == ["out"]


def test_a_writer_that_raises_anything_else_still_leaves_no_temp_file(tmp_path: Path) -> None:
    def failing(f: BinaryIO) -> None:
        f.write(b"partial")
        raise RuntimeError("bug in the writer")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "out", failing)
    assert names_in(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_folder_is_a_storage_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StorageError):
            write_atomic(folder / "out", b"data")
    finally:
        folder.chmod(0o700)
    assert names_in(folder) == []


# --- staged outputs: built by other code, moved into place whole -------------------------------


def test_a_staged_file_appears_whole_and_leaves_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with staged(target) as path:
        path.write_bytes(b"made by a tool")
        assert not target.exists()
    assert target.read_bytes() == b"made by a tool"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_staged_folder_may_take_an_empty_folders_place(tmp_path: Path) -> None:
    target = tmp_path / "circuit"
    target.mkdir()
    with staged(target) as path:
        path.mkdir()
        (path / "a").write_bytes(b"1")
    assert (target / "a").read_bytes() == b"1"
    assert os.listdir(tmp_path) == ["circuit"]


@pytest.mark.parametrize("existing", ["file", "folder with a file"])
def test_staged_never_replaces_anything(tmp_path: Path, existing: str) -> None:
    target = tmp_path / "out"
    if existing == "file":
        target.write_bytes(b"keep")
    else:
        target.mkdir()
        (target / "keep").write_bytes(b"keep")
    with pytest.raises(StorageError, match="already exists"), staged(target):
        pass
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_target_that_appears_while_staging_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(StorageError, match="already exists"), staged(target) as path:
        path.write_bytes(b"new")
        target.write_bytes(b"raced")
    assert target.read_bytes() == b"raced"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_an_error_while_staging_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt), staged(target) as path:
        path.write_bytes(b"half")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_target_in_a_missing_folder_is_refused_before_the_work(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        check_new_target(tmp_path / "missing" / "out.bin")


def test_read_head_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_head(fifo, 16)


def test_read_head_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        read_head(tmp_path, 16)


def test_a_path_with_a_nul_byte_is_bad_input_not_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a path with a NUL byte"):
        read_limited(tmp_path / "a\x00b", 10)
