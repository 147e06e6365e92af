"""Loading ONNX models and computing the model digest (formats layer, beside ``digests``).

The model digest is an RFC 6962 Merkle root over one *structure* leaf and one leaf per weight
tensor, wherever the tensor lives: graph initializers, sparse initializers, tensor attributes of any
node (Constant, ConstantOfShape, ...), subgraphs of If/Loop/Scan at any depth, functions and
training info. Every ``TensorProto`` in the model is lifted out of the structure and becomes a
leaf keyed by its path (``graph/initializer/0``, ``graph/node/3/attribute/0/t``, ...). Storage
does not count: a weight held in ``raw_data``, in typed fields or in an external file has the
same leaf, so a model saved with embedded or external data has the same digest.

    model = load_model("model.onnx")
    print(model.digest)                  # sha256:... (the Merkle root)
    model.weights[0].path, model.weights[0].digest

The structure leaf covers every other field of the ModelProto (opsets, nodes, attributes, graph
inputs and outputs, value infos, metadata) except ``doc_string`` fields, encoded canonically.
Models with protobuf fields this version of ``onnx`` does not know are refused: they could
change what onnxruntime computes without changing the digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import onnx
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from onnx import numpy_helper

from receipts import codec, merkle
from receipts.digests import Digest, Value, hasher, tensor_header
from receipts.errors import InputError, LimitError, ModelError, TensorError
from receipts.files import read_limited
from receipts.signature import check_value, describe, value_spec
from receipts.tensors import (
    ElemType,
    byte_length,
    canonical_chunks,
    elem_type_of_onnx,
    element_count,
)

MAX_MODEL_BYTES = (2 << 30) - 1  # protobuf cannot parse a message of 2 GiB or more
_STORAGE_FIELDS = frozenset(
    {
        "raw_data",
        "float_data",
        "int32_data",
        "string_data",
        "int64_data",
        "double_data",
        "uint64_data",
        "data_location",
        "external_data",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightLeaf:
    """One weight tensor of a model: where it sits, what it is, and its tensor digest."""

    path: str
    name: str
    elem_type: str
    shape: tuple[int, ...]
    digest: Digest

    def leaf_data(self) -> bytes:
        return weight_leaf_data(self.path, self.digest)


def weight_leaf_data(path: str, digest: Digest) -> bytes:
    """The bytes of a model-digest weight leaf (hashed as an RFC 6962 leaf)."""
    return codec.encode({"kind": "weight", "path": path, "digest": digest.value})


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDigest:
    """The model digest with the leaves it was made from (for openings and ``digest --json``)."""

    structure: Digest
    weights: tuple[WeightLeaf, ...]
    digest: Digest
    tree: merkle.MerkleTree = dataclasses.field(repr=False, compare=False)
    index: Mapping[str, int] = dataclasses.field(
        repr=False, compare=False
    )  # leaf index by weight path

    @classmethod
    def build(cls, structure: Digest, weights: list[WeightLeaf]) -> ModelDigest:
        ordered = tuple(sorted(weights, key=lambda w: w.path.encode("utf-8")))
        tree = merkle.MerkleTree(_leaf_hashes(structure, ordered))
        return cls(
            structure=structure,
            weights=ordered,
            digest=Digest(tree.root()),
            tree=tree,
            index={w.path: i for i, w in enumerate(ordered, start=1)},
        )

    def inclusion_proof(self, path: str) -> tuple[int, list[bytes]]:
        """Leaf index and audit path of the weight at ``path`` (the structure leaf is index 0)."""
        index = self.index[path]
        return index, self.tree.inclusion_proof(index)


def structure_leaf_data(structure: Digest) -> bytes:
    return codec.encode({"kind": "structure", "digest": structure.value})


def _leaf_hashes(structure: Digest, weights: tuple[WeightLeaf, ...]) -> list[bytes]:
    leaves = [merkle.leaf_hash(structure_leaf_data(structure))]
    leaves.extend(merkle.leaf_hash(w.leaf_data()) for w in weights)
    return leaves


class LoadedModel:
    """A parsed model, its digest, its signature and the exact bytes a runner should load."""

    def __init__(
        self,
        *,
        path: Path | None,
        proto: onnx.ModelProto,
        model_digest: ModelDigest,
        file_bytes: bytes,
        embedded_externals: bool,
    ) -> None:
        self.path = path
        self.proto = proto
        self.model_digest = model_digest
        self._file_bytes = file_bytes
        self._embedded_externals = embedded_externals
        initializers = {t.name for t in proto.graph.initializer}
        initializers |= {t.values.name for t in proto.graph.sparse_initializer}
        self.inputs = tuple(value_spec(v) for v in proto.graph.input if v.name not in initializers)
        self.overridable = tuple(value_spec(v) for v in proto.graph.input if v.name in initializers)
        self.outputs = tuple(value_spec(v) for v in proto.graph.output)

    @property
    def digest(self) -> Digest:
        return self.model_digest.digest

    @cached_property
    def file_sha256(self) -> Digest:
        """Plain SHA-256 of the model file (external data files not included), for reference."""
        return Digest(hashlib.sha256(self._file_bytes).digest())

    @cached_property
    def runtime_bytes(self) -> bytes:
        """The serialized model a runner loads: the file itself, or, when its weights were in
        external files, the model with exactly the hashed bytes embedded."""
        if self._embedded_externals:
            return self.proto.SerializeToString()  # type: ignore[no-any-return]
        return self._file_bytes

    def check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Value]:
        """The inputs as values (arrays; lists of arrays for sequences; None for an empty
        optional), or ``TensorError`` if names, kinds, element types or shapes do not fit."""
        declared = {v.name: v for v in (*self.inputs, *self.overridable)}
        unknown = sorted(set(inputs) - set(declared))
        if unknown:
            expected = ", ".join(v.name for v in self.inputs) or "(none)"
            raise TensorError(f"unknown input {unknown[0]!r}; the model's inputs are {expected}")
        for spec in self.inputs:
            if spec.name not in inputs:
                raise TensorError(f"missing input {spec.name!r} ({describe(spec)})")
        return {name: check_value(declared[name], value) for name, value in inputs.items()}

    @property
    def weights(self) -> tuple[WeightLeaf, ...]:
        return self.model_digest.weights


def load_model(path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES) -> LoadedModel:
    """Read, parse and digest an ONNX model file; external data must stay in its folder."""
    model_path = Path(path)
    try:
        data = read_limited(model_path, max_bytes, "model")
    except LimitError:
        raise
    except InputError as e:
        raise ModelError(str(e)) from e
    return load_model_bytes(data, base_dir=model_path.parent, path=model_path, max_bytes=max_bytes)


def load_model_bytes(
    data: bytes,
    *,
    base_dir: Path | None = None,
    path: Path | None = None,
    max_bytes: int = MAX_MODEL_BYTES,
) -> LoadedModel:
    """Parse and digest a serialized model; ``base_dir`` resolves external data, if any.

    ``max_bytes`` bounds the model and its external data together: external weights are
    embedded for the runner, and protobuf cannot hold 2 GiB."""
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (pb_message.DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(f"{path or 'model'}: not an ONNX model ({e})") from e
    if not proto.HasField("graph"):
        raise ModelError(f"{path or 'model'}: not an ONNX model (no graph)")
    walker = _Walker(base_dir, budget=max_bytes - len(data))
    structure = walker.structure(proto)
    model_digest = ModelDigest.build(structure, walker.weights)
    return LoadedModel(
        path=path,
        proto=proto,
        model_digest=model_digest,
        file_bytes=data,
        embedded_externals=walker.externals > 0,
    )


class _Walker:
    """One pass over a ModelProto: canonical structure with weights lifted out as leaves."""

    def __init__(self, base_dir: Path | None, budget: int) -> None:
        self.base_dir = base_dir
        self.budget = budget  # bytes of external data still allowed
        self.weights: list[WeightLeaf] = []
        self.externals = 0

    def structure(self, proto: onnx.ModelProto) -> Digest:
        tree = self._message(proto, "")
        h = hasher("model-structure")
        h.update(codec.encode(tree))
        return Digest(h.digest())

    def _message(self, msg: Any, path: str) -> dict[str, object]:
        if len(unknown_fields.UnknownFieldSet(msg)):
            where = path or "model"
            raise ModelError(f"{where}: protobuf fields unknown to onnx {onnx.__version__}")
        _check_text(msg, path)
        is_tensor = msg.DESCRIPTOR.full_name == "onnx.TensorProto"
        if is_tensor:
            self._weight(msg, path)
        fields = [
            (field, value)
            for field, value in msg.ListFields()
            if field.name != "doc_string" and not (is_tensor and field.name in _STORAGE_FIELDS)
        ]
        # Float fields hash by their stored bits, read from the wire: Python floats would
        # quiet a signalling NaN and merge two models onnxruntime tells apart.
        floats = _float_bits(msg) if any(f.type in _FLOAT_WIDTH for f, _ in fields) else {}
        out: dict[str, object] = {}
        for field, value in fields:
            sub = f"{path}/{field.name}" if path else field.name
            if field.type in _FLOAT_WIDTH:
                bits = floats.get(field.number, [])
                out[field.name] = bits if field.is_repeated else bits[-1]
            elif field.type != FieldDescriptor.TYPE_MESSAGE:
                out[field.name] = list(value) if field.is_repeated else value
            elif field.is_repeated:
                out[field.name] = [self._message(v, f"{sub}/{i}") for i, v in enumerate(value)]
            else:
                out[field.name] = self._message(value, sub)
        return out

    def _weight(self, tensor: onnx.TensorProto, path: str) -> None:
        where = f"weight {path} ({tensor.name!r})"
        try:
            etype = elem_type_of_onnx(tensor.data_type)
            shape = tuple(int(d) for d in tensor.dims)
            count = element_count(shape)
        except LimitError as e:
            raise LimitError(f"{where}: {e}") from e
        except InputError as e:
            raise ModelError(f"{where}: {e}") from e
        h = hasher("tensor")
        h.update(tensor_header(etype.name, shape))
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            self._external(tensor, etype, count, where, h)
        elif tensor.HasField("raw_data") and etype.name != "string":
            raw = tensor.raw_data
            _check_raw(raw, etype, count, where)
            h.update(raw)
        else:
            self._typed(tensor, etype, count, path, h)
        self.weights.append(
            WeightLeaf(
                path=path,
                name=tensor.name,
                elem_type=etype.name,
                shape=shape,
                digest=Digest(h.digest()),
            )
        )

    def _typed(
        self, tensor: onnx.TensorProto, etype: ElemType, count: int, path: str, h: Any
    ) -> None:
        where = f"weight {path} ({tensor.name!r})"
        if etype.name == "string":  # ONNX strings are bytes: hash them as stored, UTF-8 or not
            if len(tensor.string_data) != count:
                raise ModelError(f"{where}: holds {len(tensor.string_data)} of {count} strings")
            array = np.empty(count, dtype=object)
            array[:] = list(tensor.string_data)
        else:
            try:
                array = numpy_helper.to_array(tensor)
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelError(f"{where}: unreadable ({e})") from e
            if array.size != count:
                raise ModelError(f"{where}: holds {array.size} of {count} elements")
        for chunk in canonical_chunks(array):
            h.update(chunk)

    def _external(
        self, tensor: onnx.TensorProto, etype: ElemType, count: int, where: str, h: Any
    ) -> None:
        if etype.name == "string":
            raise ModelError(f"{where}: string weights cannot be stored as external data")
        for i, entry in enumerate(tensor.external_data):
            _check_text(entry, f"{where}/external_data/{i}")
        info = {entry.key: entry.value for entry in tensor.external_data}
        file = self._confined(info.get("location", ""), where)
        expected = byte_length(etype, count)
        try:
            offset = int(info.get("offset", "0"))
            length = int(info.get("length", str(expected)))
        except ValueError as e:
            raise ModelError(f"{where}: bad external data offset or length") from e
        if offset < 0 or length != expected:
            raise ModelError(f"{where}: external data length {length}, expected {expected}")
        self.budget -= length
        if self.budget < 0:
            raise LimitError(f"{where}: the model and its external data exceed the size limit")
        with file.open("rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise ModelError(f"{where}: external file {file.name} ends early")
        _check_raw(data, etype, count, where)
        h.update(data)
        # Embed the bytes we hashed so the runner loads exactly them, not a re-read file.
        tensor.ClearField("external_data")
        tensor.data_location = onnx.TensorProto.DEFAULT
        tensor.raw_data = data
        self.externals += 1

    def _confined(self, location: str, where: str) -> Path:
        if self.base_dir is None:
            raise ModelError(f"{where}: external data, but the model has no folder")
        rel = PurePosixPath(location)
        if not location or "\x00" in location or rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"{where}: external data path {location!r} escapes the model folder")
        base = self.base_dir.resolve()
        file = (base / rel).resolve()
        if not file.is_relative_to(base):
            raise ModelError(f"{where}: external data path {location!r} escapes the model folder")
        if not file.is_file():
            raise ModelError(f"{where}: external data file {location!r} is missing")
        return file


_FLOAT_WIDTH = {FieldDescriptor.TYPE_FLOAT: 4, FieldDescriptor.TYPE_DOUBLE: 8}


def _check_text(msg: Any, path: str) -> None:
    """Refuse a string field that is not UTF-8. ONNX's protobuf is proto2, which hands such a
    field back as bytes, not str: a name, an op type or an external data path would then be
    bytes where every reader expects text (and onnx's own shape inference fails to decode)."""
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            for text in value if field.is_repeated else (value,):
                if not isinstance(text, str):
                    where = f"{path}/{field.name}" if path else field.name
                    raise ModelError(f"{where}: text that is not UTF-8")


def _float_bits(msg: Any) -> dict[int, list[bytes]]:
    """The little-endian bytes of every float and double field of ``msg``, by field number,
    scanned from its wire encoding (packed or not)."""
    widths = {
        f.number: _FLOAT_WIDTH[f.type] for f in msg.DESCRIPTOR.fields if f.type in _FLOAT_WIDTH
    }
    data = msg.SerializeToString(deterministic=True)
    found: dict[int, list[bytes]] = {}
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _varint(data, i)
            continue
        if wire == 2:
            size, i = _varint(data, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ModelError(f"unexpected protobuf wire type {wire}")
        chunk, i = data[i : i + size], i + size
        width = widths.get(number)
        if width is not None:
            found.setdefault(number, []).extend(chunk[k : k + width] for k in range(0, size, width))
    return found


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _check_raw(data: bytes, etype: ElemType, count: int, where: str) -> None:
    """Raw bytes must be the canonical bytes: right length, booleans 0 or 1, no padding bits."""
    if len(data) != byte_length(etype, count):
        raise ModelError(f"{where}: raw data has the wrong length")
    if etype.name == "bool" and data.translate(None, b"\x00\x01"):
        raise ModelError(f"{where}: boolean bytes other than 0 and 1")
    per_byte = 8 // etype.bits if etype.bits < 8 else 0
    if per_byte and count % per_byte and data[-1] >> (etype.bits * (count % per_byte)):
        raise ModelError(f"{where}: padding bits set in the last byte")
