"""Reading and writing tensor files: ``.npz`` archives and ONNX test-data folders (I/O layer).

INPUTS and OUTPUTS on the command line are either an ``.npz`` file (array name = tensor name) or
a folder of ``input_0.pb``/``output_0.pb`` ``TensorProto`` files as in ONNX's test data. Both are
read with limits checked before anything large is allocated: member count, declared shape and
total bytes, and no pickled objects.

    arrays = load_tensors("inputs.npz")
    arrays = load_tensors("test_data_set_0", prefix="input_", names=["x"])
    save_npz(Path("out/outputs.npz"), arrays)

NumPy cannot store bfloat16, float8 or 2/4-bit types in ``.npz``; such a tensor is stored as its
bit patterns (uint16 for bfloat16, uint8 otherwise, one element per byte) under the member name
``NAME#TYPE``, e.g. ``y#bfloat16``, and read back as that type.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import onnx
from google.protobuf import message as pb_message
from onnx import numpy_helper

from receipts.digests import Value
from receipts.errors import InputError, LimitError, TensorError
from receipts.files import read_limited, write_atomic
from receipts.tensors import ELEM_TYPES, EXTENDED_TYPES, elem_type_of, element_count

MAX_TENSOR_BYTES = 4 << 30
MAX_TENSORS = 4096
_PB_NAME = re.compile(r"(input|output)_(\d+)\.pb$")

TensorMap = dict[str, Value]


def load_tensors(
    path: str | Path,
    *,
    prefix: str = "input_",
    names: Sequence[str] | None = None,
    max_bytes: int = MAX_TENSOR_BYTES,
) -> TensorMap:
    """Load tensors from an ``.npz`` file or an ONNX test-data folder.

    ``names`` names unnamed ``.pb`` tensors by position (the model's input or output names).
    """
    p = Path(path)
    if p.is_dir():
        return _load_pb_dir(p, prefix, names, max_bytes)
    if not p.exists():
        raise TensorError(f"{p}: no such file or folder")
    if not p.is_file():
        raise TensorError(f"{p}: not a regular file")
    return _load_npz(p, max_bytes)


def _load_npz(path: Path, max_bytes: int) -> TensorMap:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise TensorError(f"{path}: not an .npz file ({e})") from e
    except (ValueError, NotImplementedError) as e:
        # a damaged central directory: a name that is not UTF-8 (ValueError), a "version
        # needed to extract" zipfile does not know (NotImplementedError)
        raise TensorError(f"{path}: damaged .npz directory ({e})") from e
    result: dict[str, Value] = {}
    items: dict[str, dict[int, np.ndarray[Any, Any]]] = {}
    total = 0
    with archive:
        members = archive.infolist()
        if len(members) > MAX_TENSORS:
            raise LimitError(f"{path}: more than {MAX_TENSORS} tensors")
        for info in members:
            if not info.filename.endswith(".npy"):
                raise TensorError(f"{path}: member {info.filename!r} is not a .npy array")
            name, slot, etype = _split_member(info.filename[:-4])
            if not name:
                raise TensorError(f"{path}: member {info.filename!r} has no tensor name")
            try:
                with archive.open(info) as f:
                    shape, dtype = _npy_header(f)
                    nbytes = element_count(shape) * dtype.itemsize
                    if nbytes > info.file_size:  # declared larger than the data it carries
                        raise TensorError(f"{path}: member {info.filename!r} is truncated")
                    total += nbytes
                    if total > max_bytes:
                        raise LimitError(f"{path}: tensors exceed {max_bytes} bytes")
                with archive.open(info) as f:
                    array = np.lib.format.read_array(f, allow_pickle=False)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
                raise TensorError(f"{path}: member {info.filename!r} is unreadable ({e})") from e
            except (RuntimeError, NotImplementedError) as e:
                # zipfile's answer to damaged flags: "encrypted" (RuntimeError), an unknown
                # compression method (NotImplementedError); the file is at fault, not the code
                raise TensorError(f"{path}: member {info.filename!r} cannot be read ({e})") from e
            _place(result, items, name, slot, _from_stored(array, etype, path, name), path=path)
    return _assemble(result, items, path)


def _split_member(stem: str) -> tuple[str, str | None, str | None]:
    """``NAME[#seq[#i]|#none][#TYPE]`` -> (name, slot, extended type); slot None for tensors."""
    parts = stem.split("#")
    etype = parts.pop() if len(parts) > 1 and parts[-1] in EXTENDED_TYPES else None
    if len(parts) > 2 and parts[-2] == "seq" and parts[-1].isdigit():
        return "#".join(parts[:-2]), parts[-1], etype
    if len(parts) > 1 and parts[-1] in ("seq", "none"):
        return "#".join(parts[:-1]), parts[-1], etype
    return "#".join(parts), None, etype


def _place(
    result: dict[str, Value],
    items: dict[str, dict[int, np.ndarray[Any, Any]]],
    name: str,
    slot: str | None,
    array: np.ndarray[Any, Any],
    *,
    path: Path,
) -> None:
    if slot is not None and slot.isdigit():
        if int(slot) in items.setdefault(name, {}):
            raise TensorError(f"{path}: item {slot} of {name!r} appears twice")
        items[name][int(slot)] = array
        return
    if name in result:
        raise TensorError(f"{path}: tensor {name!r} appears twice")
    result[name] = [] if slot == "seq" else None if slot == "none" else array


def _assemble(
    result: dict[str, Value], items: dict[str, dict[int, np.ndarray[Any, Any]]], path: Path
) -> dict[str, Value]:
    for name, by_index in items.items():
        if name in result or sorted(by_index) != list(range(len(by_index))):
            raise TensorError(f"{path}: sequence {name!r} has missing or clashing items")
        result[name] = [by_index[i] for i in range(len(by_index))]
    return result


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed (they need pickle)")
    return tuple(shape), dtype


def _from_stored(
    array: np.ndarray[Any, Any], etype: str | None, path: Path, name: str
) -> np.ndarray[Any, Any]:
    if etype is not None:
        target = ELEM_TYPES[etype].dtype
        if array.dtype.itemsize != target.itemsize or array.dtype.kind != "u":
            raise TensorError(f"{path}: {name!r} stored as {etype} must hold unsigned bit patterns")
        return array.view(target)
    if array.dtype.kind in "US":
        return array.astype(object)
    elem_type_of(array)  # raises for dtypes with no ONNX element type
    return array


def _load_pb_dir(path: Path, prefix: str, names: Sequence[str] | None, max_bytes: int) -> TensorMap:
    files = sorted(
        (int(m.group(2)), f)
        for f in path.iterdir()
        if (m := _PB_NAME.match(f.name)) and f.name.startswith(prefix)
    )
    if not files:
        raise TensorError(f"{path}: no {prefix}N.pb files")
    if [i for i, _ in files] != list(range(len(files))):
        raise TensorError(f"{path}: {prefix}N.pb files are not numbered 0..{len(files) - 1}")
    result: TensorMap = {}
    total = 0
    for index, file in files:
        data = read_limited(file, max_bytes - total, "tensor file")  # LimitError past the budget
        total += len(data)
        tensor = onnx.TensorProto()
        try:
            tensor.ParseFromString(data)
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise TensorError(f"{file}: tensor files may not point at external data")
            element_count(tuple(tensor.dims))
            array = numpy_helper.to_array(tensor)
        except (pb_message.DecodeError, ValueError, TypeError, KeyError, RuntimeError) as e:
            raise TensorError(f"{file}: not a TensorProto ({e})") from e
        except LimitError as e:
            raise LimitError(f"{file}: {e}") from e
        except InputError as e:
            raise TensorError(f"{file}: {e}") from e
        name = tensor.name or (names[index] if names is not None and index < len(names) else "")
        if not name:
            raise TensorError(f"{file}: unnamed tensor and no model to name it by position")
        if name in result:
            raise TensorError(f"{path}: tensor {name!r} appears twice")
        result[name] = np.asarray(array)
    return result


def save_npz(path: Path, values: Mapping[str, Value]) -> None:
    """Write ``values`` as an uncompressed ``.npz``, atomically."""
    write_atomic(path, npz_writer(values))


def npz_writer(values: Mapping[str, Value]) -> Callable[[BinaryIO], None]:
    """A function writing ``values`` as an uncompressed ``.npz`` to an open file."""
    stored: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in values.items():
        if value is None:
            stored[f"{name}#none"] = np.zeros(0, np.uint8)
        elif isinstance(value, list | tuple):
            if not value:
                stored[f"{name}#seq"] = np.zeros(0, np.uint8)
            for index, item in enumerate(value):
                stored.update(_stored(f"{name}#seq#{index}", np.asarray(item)))
        else:
            stored.update(_stored(name, np.asarray(value)))

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for member, array in stored.items():
                with archive.open(f"{member}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)

    return write


def _stored(member: str, array: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    etype = elem_type_of(array).name
    if etype in EXTENDED_TYPES:
        bits = np.uint16 if array.dtype.itemsize == 2 else np.uint8
        return {f"{member}#{etype}": np.require(array, requirements="C").view(bits)}
    if etype == "string":
        return {member: np.asarray(array.tolist(), dtype=str).reshape(array.shape)}
    return {member: array}
