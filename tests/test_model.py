"""The model digest and model loading (receipts/model.py): properties, hostile files, a reference.

Properties: the digest does not depend on storage layout (embedded, external files, raw or typed
fields); one changed weight element changes the digest and exactly that weight's leaf; attribute,
opset, signature and node changes change it, doc strings do not; every weight leaf opens against the
root. Hostile model files each raise their own error class. A slow reference written from the
documented rules recomputes the weight leaves and the Merkle root of every fixture and light model.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from fixtures.models import BUILDERS, mlp, sample_inputs
from receipts import merkle
from receipts.digests import Digest, tensor_digest
from receipts.errors import InputError, LimitError, ModelError, TensorError, VerificationError
from receipts.graph import GraphView
from receipts.meter import MeterPlan
from receipts.model import (
    LoadedModel,
    load_model,
    load_model_bytes,
    structure_leaf_data,
)
from receipts.runtime import OrtRunner, RuntimeSettings
from receipts.signature import ValueSpec
from receipts.tensorfiles import load_tensors
from receipts.tensors import ELEM_TYPES
from tests.conftest import FIXTURES

NAMES = sorted(BUILDERS)
LIGHT = sorted((Path(onnx.__file__).parent / "backend/test/data/light").glob("*.onnx"))
PROPERTY = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=8, deadline=None)


# --- helpers ---------------------------------------------------------------------------------


@cache
def _embedded(name: str) -> LoadedModel:
    """The fixture model as the builder makes it, all weights embedded in raw_data."""
    return load_model_bytes(BUILDERS[name]().SerializeToString())


def _leaves(model: LoadedModel) -> dict[str, Digest]:
    return {w.path: w.digest for w in model.weights}


def _graph_tensors(graph: onnx.GraphProto, at: str) -> Iterator[tuple[str, TensorProto]]:
    for i, tensor in enumerate(graph.initializer):
        yield f"{at}/initializer/{i}", tensor
    for i, sparse in enumerate(graph.sparse_initializer):
        yield from _sparse_tensors(sparse, f"{at}/sparse_initializer/{i}")
    for i, node in enumerate(graph.node):
        yield from _node_tensors(node, f"{at}/node/{i}")


def _sparse_tensors(sparse: onnx.SparseTensorProto, at: str) -> Iterator[tuple[str, TensorProto]]:
    for part in ("values", "indices"):
        if sparse.HasField(part):
            yield f"{at}/{part}", getattr(sparse, part)


def _node_tensors(node: onnx.NodeProto, at: str) -> Iterator[tuple[str, TensorProto]]:
    for j, attr in enumerate(node.attribute):
        a = f"{at}/attribute/{j}"
        if attr.HasField("t"):
            yield f"{a}/t", attr.t
        for k, tensor in enumerate(attr.tensors):
            yield f"{a}/tensors/{k}", tensor
        if attr.HasField("sparse_tensor"):
            yield from _sparse_tensors(attr.sparse_tensor, f"{a}/sparse_tensor")
        for k, sparse in enumerate(attr.sparse_tensors):
            yield from _sparse_tensors(sparse, f"{a}/sparse_tensors/{k}")
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g, f"{a}/g")
        for k, graph in enumerate(attr.graphs):
            yield from _graph_tensors(graph, f"{a}/graphs/{k}")


def model_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, TensorProto]]:
    """Every TensorProto of a model with its path, walked by the ONNX schema (not generically)."""
    if model.HasField("graph"):
        yield from _graph_tensors(model.graph, "graph")
    for i, function in enumerate(model.functions):
        for j, node in enumerate(function.node):
            yield from _node_tensors(node, f"functions/{i}/node/{j}")
    for i, info in enumerate(model.training_info):
        for part in ("initialization", "algorithm"):
            if info.HasField(part):
                yield from _graph_tensors(getattr(info, part), f"training_info/{i}/{part}")


def tensor_at(model: onnx.ModelProto, path: str) -> TensorProto:
    obj: Any = model
    for part in path.split("/"):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    assert isinstance(obj, TensorProto)
    return obj


def all_messages(msg: Any) -> Iterator[Any]:
    """``msg`` and every message nested in it, depth first in field order."""
    yield msg
    for field, value in msg.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                yield from all_messages(item)


def all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes of ``graph`` and of its subgraphs at any depth."""
    return [m for m in all_messages(graph) if m.DESCRIPTOR.full_name == "onnx.NodeProto"]


_BY_CODE = {e.onnx: e for e in ELEM_TYPES.values()}
_TYPED_FIELDS = {
    "float64": "double_data",
    "complex128": "double_data",
    "int64": "int64_data",
    "uint32": "uint64_data",
    "uint64": "uint64_data",
}  # float32 and complex64 go to float_data, every other type to int32_data (onnx.proto)


def to_typed(tensor: TensorProto) -> None:
    """Re-store ``tensor`` in its typed field instead of raw_data, by onnx.proto's rules."""
    et = _BY_CODE[tensor.data_type]
    if et.name == "string":
        return  # strings have no raw_data form: they are typed already
    array = numpy_helper.to_array(tensor).reshape(-1)
    tensor.ClearField("raw_data")
    if et.name in ("float32", "complex64"):
        # Packed float_data (field 4) written as wire bytes: a Python float would quiet sNaNs.
        payload = array.astype(array.dtype.newbyteorder("<")).tobytes()
        tensor.MergeFromString(b"\x22" + _varint(len(payload)) + payload)
    elif et.name in _TYPED_FIELDS:
        values = array.view(np.float64) if et.name == "complex128" else array
        getattr(tensor, _TYPED_FIELDS[et.name]).extend(values.tolist())
    elif et.bits < 8:  # 2- and 4-bit types: one packed byte per int32, first element low
        per, mask = 8 // et.bits, (1 << et.bits) - 1
        lanes = np.zeros(-(-array.size // per) * per, np.uint8)
        lanes[: array.size] = array.view(np.uint8) & mask
        lanes = lanes.reshape(-1, per).astype(np.int32) << (np.arange(per) * et.bits)
        tensor.int32_data.extend(lanes.sum(axis=1).tolist())
    elif et.name in ("int8", "int16", "int32", "uint8", "uint16", "bool"):
        tensor.int32_data.extend(array.astype(np.int64).tolist())
    else:  # float16, bfloat16 and the float8 types travel as their bit patterns
        tensor.int32_data.extend(array.view(f"<u{et.dtype.itemsize}").tolist())


def save_external(
    model: onnx.ModelProto,
    folder: Path,
    *,
    one_file: bool = True,
    location: str = "weights.bin",
    convert_attribute: bool = True,
) -> Path:
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=one_file,
        location=location,
        size_threshold=0,
        convert_attribute=convert_attribute,
    )
    return path


def flip_bit(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


def assert_only_leaf_changed(before: LoadedModel, after: LoadedModel, path: str) -> None:
    assert after.digest != before.digest
    assert after.model_digest.structure == before.model_digest.structure
    old, new = _leaves(before), _leaves(after)
    assert old.keys() == new.keys()
    assert {p for p in old if old[p] != new[p]} == {path}


def assert_structure_changed(name: str, changed: onnx.ModelProto) -> None:
    before, after = _embedded(name), load_model_bytes(changed.SerializeToString())
    assert after.model_digest.structure != before.model_digest.structure
    assert after.digest != before.digest
    assert _leaves(after) == _leaves(before)


# --- storage layout --------------------------------------------------------------------------


@PROPERTY
@given(
    name=st.sampled_from(NAMES),
    typed=st.sets(st.integers(0, 9)),
    external=st.booleans(),
    one_file=st.booleans(),
    location=st.sampled_from(["weights.bin", "data/weights.bin", "w.onnx_data"]),
    convert_attribute=st.booleans(),
)
def test_digest_does_not_depend_on_storage_layout(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    typed: set[int],
    external: bool,
    one_file: bool,
    location: str,
    convert_attribute: bool,
) -> None:
    model = BUILDERS[name]()
    tensors = list(model_tensors(model))
    for i in typed & set(range(len(tensors))):
        to_typed(tensors[i][1])
    folder = tmp_path_factory.mktemp("layout")
    if external:
        path = save_external(
            model, folder, one_file=one_file, location=location, convert_attribute=convert_attribute
        )
    else:
        path = folder / "model.onnx"
        onnx.save_model(model, str(path))
    loaded = load_model(path)
    assert loaded.digest == _embedded(name).digest
    assert _leaves(loaded) == _leaves(_embedded(name))


def _bit_pattern_array(etype: str, shape: tuple[int, ...], data: bytes) -> np.ndarray[Any, Any]:
    """Any bit pattern of ``etype`` (booleans and 2/4-bit values kept to their valid codes)."""
    et = ELEM_TYPES[etype]
    count = int(np.prod(shape))
    if et.bits <= 8 and (et.bits < 8 or etype == "bool"):
        mask = 1 if etype == "bool" else (1 << et.bits) - 1
        return (np.frombuffer(data[:count], np.uint8) & mask).view(et.dtype).reshape(shape)
    return np.frombuffer(data[: count * et.dtype.itemsize], et.dtype).reshape(shape).copy()


@PROPERTY
@given(
    etype=st.sampled_from(sorted(set(ELEM_TYPES) - {"string"})),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    data=st.binary(min_size=5**3 * 16, max_size=5**3 * 16),
)
def test_raw_typed_and_external_storage_give_one_leaf_for_every_element_type(
    tmp_path_factory: pytest.TempPathFactory, etype: str, shape: tuple[int, ...], data: bytes
) -> None:
    array = _bit_pattern_array(etype, shape, data)
    tensors = [numpy_helper.from_array(array, "w") for _ in range(3)]
    to_typed(tensors[1])
    models = [
        helper.make_model(helper.make_graph([], "g", [], [], initializer=[t])) for t in tensors
    ]
    leaves = [
        load_model_bytes(models[0].SerializeToString()).weights,
        load_model_bytes(models[1].SerializeToString()).weights,
        load_model(save_external(models[2], tmp_path_factory.mktemp("dtype"))).weights,
    ]
    assert leaves[0] == leaves[1] == leaves[2]
    assert leaves[0][0].digest == tensor_digest(array)


# --- a changed weight element ----------------------------------------------------------------

WEIGHT_KINDS = [
    pytest.param("mlp", "graph/initializer/0", id="graph-initializer"),
    pytest.param("integer", "graph/initializer/0", id="int8-initializer"),
    pytest.param("constants", "graph/node/0/attribute/0/t", id="constant-node"),
    pytest.param("constants", "graph/node/4/attribute/0/t", id="constant-of-shape"),
    pytest.param("constants", "graph/sparse_initializer/0/values", id="sparse-values"),
    pytest.param("constants", "graph/sparse_initializer/0/indices", id="sparse-indices"),
    pytest.param(
        "control_flow", "graph/node/2/attribute/0/g/initializer/0", id="if-branch-initializer"
    ),
    pytest.param(
        "control_flow", "graph/node/2/attribute/1/g/node/1/attribute/0/t", id="if-branch-constant"
    ),
]


@pytest.mark.parametrize(("name", "path"), WEIGHT_KINDS)
@FEW
@given(data=st.data())
def test_changing_one_weight_element_changes_exactly_that_leaf(
    name: str, path: str, data: st.DataObject
) -> None:
    model = BUILDERS[name]()
    tensor = tensor_at(model, path)
    assert path in _leaves(_embedded(name))
    bits = next(ELEM_TYPES[w.elem_type].bits for w in _embedded(name).weights if w.path == path)
    element = data.draw(st.integers(0, len(tensor.raw_data) * 8 // bits - 1), label="element")
    bit = data.draw(st.integers(0, bits - 1), label="bit")
    tensor.raw_data = flip_bit(tensor.raw_data, element * bits + bit)
    assert_only_leaf_changed(_embedded(name), load_model_bytes(model.SerializeToString()), path)


@PROPERTY
@given(name=st.sampled_from(NAMES), one_file=st.booleans(), data=st.data())
def test_changing_one_byte_of_an_external_file_changes_exactly_that_leaf(
    tmp_path_factory: pytest.TempPathFactory, name: str, one_file: bool, data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("external")
    path = save_external(BUILDERS[name](), folder, one_file=one_file)
    before = load_model(path)
    assert before.digest == _embedded(name).digest
    stored = onnx.load(str(path), load_external_data=False)
    external = [(p, t) for p, t in model_tensors(stored) if t.data_location == TensorProto.EXTERNAL]
    leaf, tensor = data.draw(st.sampled_from(external), label="leaf")
    info = {e.key: e.value for e in tensor.external_data}
    position = data.draw(st.integers(0, int(info["length"]) * 8 - 1), label="bit")
    file = folder / info["location"]
    content = file.read_bytes()
    file.write_bytes(flip_bit(content, int(info.get("offset", "0")) * 8 + position))
    assert_only_leaf_changed(before, load_model(path), leaf)


# --- structure changes -----------------------------------------------------------------------

_SCALAR_ATTRIBUTES = (AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT)
ATTRIBUTE_SITES = [
    (name, n, a)
    for name in NAMES
    for n, node in enumerate(all_nodes(BUILDERS[name]().graph))
    for a, attr in enumerate(node.attribute)
    if attr.type in _SCALAR_ATTRIBUTES
]
NODE_SITES = [(name, n) for name in NAMES for n in range(len(all_nodes(BUILDERS[name]().graph)))]
DOC_SITES = [
    (name, i)
    for name in NAMES
    for i, msg in enumerate(all_messages(BUILDERS[name]()))
    if "doc_string" in msg.DESCRIPTOR.fields_by_name
]


@PROPERTY
@given(site=st.sampled_from(ATTRIBUTE_SITES), delta=st.integers(1, 7), add=st.booleans())
def test_changing_an_attribute_changes_the_digest(
    site: tuple[str, int, int], delta: int, add: bool
) -> None:
    name, n, a = site
    model = BUILDERS[name]()
    node = all_nodes(model.graph)[n]
    attr = node.attribute[a]
    if add:
        node.attribute.append(helper.make_attribute("extra", delta))
    elif attr.type == AttributeProto.INT:
        attr.i += delta
    elif attr.type == AttributeProto.INTS:
        attr.ints[-1] += delta
    else:
        attr.f += delta
    assert_structure_changed(name, model)


def _constant_value_float(bits: int) -> bytes:
    """A model whose output is a Constant ``value_float`` with exactly these float32 bits."""
    attr = AttributeProto(name="value_float", type=AttributeProto.FLOAT)
    wire = attr.SerializeToString() + bytes([(2 << 3) | 5]) + struct.pack("<I", bits)  # field f
    node = helper.make_node("Constant", [], ["y"], name="c")
    node.attribute.add().ParseFromString(wire)
    graph = helper.make_graph(
        [node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("bits", "other"),
    [
        pytest.param(0x3F800000, 0x3F800001, id="last-mantissa-bit"),
        pytest.param(0x3F800000, 0xBF800000, id="sign-bit"),
        pytest.param(
            0x7F800001,
            0x7FC00001,
            id="signalling-vs-quiet-nan",
        ),
    ],
)
def test_changing_one_bit_of_a_float_attribute_changes_the_digest(bits: int, other: int) -> None:
    digests = {load_model_bytes(_constant_value_float(b)).digest for b in (bits, other)}
    assert len(digests) == 2


@PROPERTY
@given(
    name=st.sampled_from(NAMES),
    change=st.sampled_from(["default-opset", "extra-domain", "ir-version"]),
    version=st.integers(1, 30),
)
def test_changing_the_opsets_changes_the_digest(name: str, change: str, version: int) -> None:
    model = BUILDERS[name]()
    if change == "default-opset":
        version += model.opset_import[0].version  # never the same version
        model.opset_import[0].version = version
    elif change == "extra-domain":
        model.opset_import.append(helper.make_opsetid("com.microsoft", version))
    else:
        model.ir_version += version
    assert_structure_changed(name, model)


SIGNATURE_SITES = [
    (name, side, i)
    for name in NAMES
    for side in ("input", "output")
    for i, value in enumerate(getattr(BUILDERS[name]().graph, side))
    if value.type.HasField("tensor_type")
]


@PROPERTY
@given(
    site=st.sampled_from(SIGNATURE_SITES),
    change=st.sampled_from(["elem-type", "dim-value", "dim-param", "add-dim", "drop-dim"]),
    size=st.integers(1, 64),
    data=st.data(),
)
def test_changing_a_graph_input_or_output_signature_changes_the_digest(
    site: tuple[str, str, int], change: str, size: int, data: st.DataObject
) -> None:
    name, side, i = site
    model = BUILDERS[name]()
    tensor_type = getattr(model.graph, side)[i].type.tensor_type
    dims = tensor_type.shape.dim
    if not dims and change != "elem-type":
        change = "add-dim"  # a scalar has no dimension to change
    d = data.draw(st.integers(0, max(len(dims) - 1, 0)), label="dim")
    if change == "elem-type":
        others = [t.onnx for t in ELEM_TYPES.values() if t.onnx != tensor_type.elem_type]
        tensor_type.elem_type = data.draw(st.sampled_from(others), label="elem_type")
    elif change == "dim-value":
        dims[d].dim_value = dims[d].dim_value + size  # a symbolic dim becomes static
    elif change == "dim-param":
        dims[d].dim_param = f"{dims[d].dim_param}n{size}"
    elif change == "add-dim":
        dims.add().dim_value = size
    else:
        del dims[d]
    assert_structure_changed(name, model)


@PROPERTY
@given(
    site=st.sampled_from(NODE_SITES),
    change=st.sampled_from(["op-type", "name", "inputs", "outputs", "domain"]),
    op_type=st.sampled_from(["Sigmoid", "Sub", "Identity", "Gemm", "If"]),
)
def test_changing_a_node_changes_the_digest(
    site: tuple[str, int], change: str, op_type: str
) -> None:
    name, n = site
    model = BUILDERS[name]()
    node = all_nodes(model.graph)[n]
    if change == "op-type":
        node.op_type = op_type if op_type != node.op_type else "Tanh"
    elif change == "name":
        node.name += "_renamed"
    elif change == "inputs" and len(node.input) >= 2 and node.input[0] != node.input[1]:
        node.input[0], node.input[1] = node.input[1], node.input[0]
    elif change == "inputs":
        node.input.append("x")
    elif change == "outputs":
        node.output[0] += "_rewired"
    else:
        node.domain = "com.example"
    assert_structure_changed(name, model)


@PROPERTY
@given(site=st.sampled_from(DOC_SITES), text=st.text(min_size=1, max_size=40))
def test_changing_a_doc_string_keeps_the_digest(site: tuple[str, int], text: str) -> None:
    name, i = site
    model = BUILDERS[name]()
    list(all_messages(model))[i].doc_string = text
    changed = load_model_bytes(model.SerializeToString())
    assert changed.file_sha256 != _embedded(name).file_sha256  # the file did change
    assert changed.digest == _embedded(name).digest


# --- inclusion proofs ------------------------------------------------------------------------


SMALL_LIGHT = [p for p in LIGHT if p.stem in ("light_squeezenet", "light_zfnet512")]


@pytest.mark.parametrize("source", [*NAMES, *(str(p) for p in SMALL_LIGHT)])
def test_every_weight_leaf_opens_against_the_digest_and_no_other_leaf_does(source: str) -> None:
    model = (_embedded(source) if source in BUILDERS else load_model(source)).model_digest
    root, size = model.digest.value, len(model.weights) + 1
    forged = Digest(hashlib.sha256(b"not this weight").digest())
    for position, leaf in enumerate(model.weights):
        index, proof = model.inclusion_proof(leaf.path)
        assert index == position + 1
        merkle.verify_inclusion(merkle.leaf_hash(leaf.leaf_data()), index, size, proof, root)
        others = [
            replace(leaf, digest=forged).leaf_data(),  # same path, another tensor
            structure_leaf_data(model.structure),
            *(w.leaf_data() for w in model.weights[max(position - 1, 0) : position + 2]),
        ]
        for other in others:
            if other != leaf.leaf_data():
                with pytest.raises(VerificationError):
                    merkle.verify_inclusion(merkle.leaf_hash(other), index, size, proof, root)
        wrong = index - 1 if index > 1 else (index + 1) % size
        with pytest.raises(VerificationError):  # the right leaf at the wrong place
            merkle.verify_inclusion(merkle.leaf_hash(leaf.leaf_data()), wrong, size, proof, root)


# --- hostile model files ---------------------------------------------------------------------


def _unknown_field(message_bytes: bytes) -> bytes:
    """Field 999 as a varint, appended to a serialized message."""
    return message_bytes + bytes([0xB8, 0x3E, 0x01])  # key (999 << 3 | 0) = 0xB8 0x3E


def _with_unknown_in(path: str) -> Callable[[Path], Path]:
    """A model with an unknown field inside the message at ``path`` (node, tensor, subgraph)."""

    def build(folder: Path) -> Path:
        model = BUILDERS["control_flow"]()
        obj: Any = model
        for part in filter(None, path.split("/")):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        obj.ParseFromString(_unknown_field(obj.SerializeToString()))
        return _write(folder, model.SerializeToString())

    return build


def _write(folder: Path, data: bytes, name: str = "model.onnx") -> Path:
    (folder / name).write_bytes(data)
    return folder / name


def _mlp_bytes(folder: Path, edit: Callable[[onnx.ModelProto], object]) -> Path:
    model = mlp()
    edit(model)
    return _write(folder, model.SerializeToString())


def _w0(model: onnx.ModelProto) -> TensorProto:
    return model.graph.initializer[0]


def external_mlp(
    folder: Path,
    *,
    location: str = "w.bin",
    offset: str | None = None,
    length: str | None = None,
    payload: Callable[[bytes], bytes] = lambda b: b,
    write_to: str | None = "w.bin",
) -> Path:
    """mlp with its first weight moved to an external file we place and describe by hand."""
    model = mlp()
    tensor = _w0(model)
    data = tensor.raw_data
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": offset, "length": length}
    for key, value in entries.items():
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    model_dir = folder / "model"
    model_dir.mkdir(exist_ok=True)
    if write_to is not None:
        (model_dir / write_to).write_bytes(payload(data))
    return _write(model_dir, model.SerializeToString())


def _outside(folder: Path, name: str = "outside.bin") -> Path:
    """The right weight bytes, placed outside the model folder."""
    (folder / name).write_bytes(_w0(mlp()).raw_data)
    return folder / name


_THEN_NODE = "graph/node/2/attribute/0/g/node/0"


def _rng_bytes(n: int) -> bytes:
    return np.random.default_rng(7).bytes(n)


def _tensor_bytes() -> bytes:
    return numpy_helper.from_array(np.ones(4, np.float32)).SerializeToString()


def _cut(data: bytes) -> bytes:
    return data[:-1]


def _length(length: int) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return external_mlp(folder, length=str(length), payload=lambda b: b + bytes(8))

    return build


def _absolute(folder: Path) -> Path:
    return external_mlp(folder, location=str(_outside(folder)), write_to=None)


def _dotdot_inside(folder: Path) -> Path:
    """``data/../w.bin`` names a file inside the folder, but ``..`` is refused outright."""
    path = external_mlp(folder, location="data/../w.bin")
    (path.parent / "data").mkdir()
    return path


def _external_strings(folder: Path) -> Path:
    tensor = TensorProto(name="s", data_type=TensorProto.STRING, dims=[2])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "s.bin"
    _write(folder, b"\x01\x00\x00\x00a\x01\x00\x00\x00b", "s.bin")
    graph = helper.make_graph([], "g", [], [], initializer=[tensor])
    return _write(folder, helper.make_model(graph).SerializeToString())


def _dotdot(folder: Path) -> Path:
    _outside(folder)
    return external_mlp(folder, location="../outside.bin", write_to=None)


def _symlink_out(folder: Path) -> Path:
    path = external_mlp(folder, write_to=None)
    (path.parent / "w.bin").symlink_to(_outside(folder))
    return path


def _symlinked_dir_out(folder: Path) -> Path:
    path = external_mlp(folder, location="sub/w.bin", write_to=None)
    (folder / "elsewhere").mkdir()
    (folder / "elsewhere" / "w.bin").write_bytes(_w0(mlp()).raw_data)
    (path.parent / "sub").symlink_to(folder / "elsewhere", target_is_directory=True)
    return path


def _dims(dims: list[int]) -> Callable[[Path], Path]:
    return lambda f: _mlp_bytes(f, lambda m: _w0(m).dims.__setitem__(slice(None), dims))


def _data_type(code: int) -> Callable[[Path], Path]:
    return lambda f: _mlp_bytes(f, lambda m: setattr(_w0(m), "data_type", code))


def _raw_length(delta: int) -> Callable[[Path], Path]:
    def edit(model: onnx.ModelProto) -> None:
        raw = _w0(model).raw_data
        _w0(model).raw_data = raw[:delta] if delta < 0 else raw + bytes(delta)

    return lambda f: _mlp_bytes(f, edit)


def _typed_wrong_count(model: onnx.ModelProto) -> None:
    tensor = _w0(model)
    tensor.ClearField("raw_data")
    tensor.float_data.extend([1.0, 2.0, 3.0])


def _too_deep(folder: Path) -> Path:
    """If nodes nested far past protobuf's recursion limit, encoded by hand."""

    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    graph = b""
    for _ in range(150):
        attr = field(1, b"then_branch") + field(6, graph) + _varint(20 << 3) + _varint(5)
        graph = field(1, field(4, b"If") + field(5, attr))  # GraphProto.node = NodeProto
    return _write(folder, field(7, graph))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def hostile(
    case_id: str, build: Callable[[Path], Path], error: type[Exception], **kwargs: Any
) -> Any:
    return pytest.param(build, error, kwargs, id=case_id)


W0_BYTES = 16 * 32 * 4  # mlp's first weight: float32[16, 32]
HOSTILE = [
    # Bytes that are not a model.
    hostile("random-garbage", lambda f: _write(f, _rng_bytes(4096)), ModelError),
    hostile("truncated-file", lambda f: _write(f, mlp().SerializeToString()[:-100]), ModelError),
    hostile("empty-file", lambda f: _write(f, b""), ModelError),
    hostile("tensor-proto-not-model", lambda f: _write(f, _tensor_bytes()), ModelError),
    hostile("no-such-file", lambda f: f / "absent.onnx", ModelError),
    hostile("a-directory", lambda f: f, ModelError),
    hostile("subgraphs-nested-too-deep", _too_deep, ModelError),
    # Fields this onnx does not know.
    hostile("unknown-field-in-model", _with_unknown_in(""), ModelError),
    hostile("unknown-field-in-node", _with_unknown_in("graph/node/0"), ModelError),
    hostile("unknown-field-in-weight", _with_unknown_in("graph/initializer/0"), ModelError),
    hostile("unknown-field-in-if-branch", _with_unknown_in(_THEN_NODE), ModelError),
    # External data that escapes, is missing or does not fit.
    hostile("external-dotdot", _dotdot, ModelError),
    hostile("external-dotdot-staying-inside", _dotdot_inside, ModelError),
    hostile("external-absolute-path", _absolute, ModelError),
    hostile("external-symlink-out-of-folder", _symlink_out, ModelError),
    hostile("external-symlinked-dir-out-of-folder", _symlinked_dir_out, ModelError),
    hostile("external-file-missing", lambda f: external_mlp(f, write_to=None), ModelError),
    hostile("external-location-is-the-folder", lambda f: external_mlp(f, location="."), ModelError),
    hostile("external-location-empty", lambda f: external_mlp(f, location=""), ModelError),
    hostile("external-location-nul", lambda f: external_mlp(f, location="w.bin\x00"), ModelError),
    hostile("external-file-too-short", lambda f: external_mlp(f, payload=_cut), ModelError),
    hostile("external-length-below-shape", _length(W0_BYTES - 4), ModelError),
    hostile("external-length-above-shape", _length(W0_BYTES + 4), ModelError),
    hostile("external-offset-past-data", lambda f: external_mlp(f, offset="8"), ModelError),
    hostile("external-offset-negative", lambda f: external_mlp(f, offset="-4"), ModelError),
    hostile("external-offset-not-decimal", lambda f: external_mlp(f, offset="0x10"), ModelError),
    hostile("external-string-tensor", _external_strings, ModelError),
    # Weights whose bytes do not fit their declared type and shape.
    hostile("raw-data-too-short", _raw_length(-4), ModelError),
    hostile("raw-data-too-long", _raw_length(4), ModelError),
    hostile("typed-data-wrong-count", lambda f: _mlp_bytes(f, _typed_wrong_count), ModelError),
    hostile("negative-dim", _dims([16, -32]), ModelError),
    hostile("absurd-shape", _dims([2**40, 2**40]), LimitError),
    hostile("rank-over-limit", _dims([1] * 65), LimitError),
    hostile("elem-type-float6e2m3-unsupported", _data_type(27), ModelError),
    hostile("elem-type-invalid-code", _data_type(99), ModelError),
    hostile("elem-type-undefined", _data_type(0), ModelError),
    # Limits.
    hostile(
        "file-over-max-bytes",
        lambda f: _write(f, mlp().SerializeToString()),
        LimitError,
        max_bytes=1024,
    ),
]


@pytest.mark.parametrize(("build", "error", "kwargs"), HOSTILE)
def test_hostile_model_file_raises_its_error(
    build: Callable[[Path], Path], error: type[Exception], kwargs: dict[str, Any], tmp_path: Path
) -> None:
    path = build(tmp_path)
    with pytest.raises(error):
        load_model(path, **kwargs)


def _single_weight(etype: int, dims: list[int], raw: bytes) -> bytes:
    tensor = TensorProto(name="w", data_type=etype, dims=dims, raw_data=raw)
    return helper.make_model(
        helper.make_graph([], "g", [], [], initializer=[tensor])
    ).SerializeToString()


@pytest.mark.parametrize(
    ("etype", "dims", "raw", "canonical"),
    [
        pytest.param(TensorProto.INT4, [3], b"\x21\xf3", b"\x21\x03", id="int4-padding-bits"),
        pytest.param(TensorProto.UINT2, [1], b"\xfd", b"\x01", id="uint2-padding-bits"),
        pytest.param(TensorProto.BOOL, [2], b"\x02\x00", b"\x01\x00", id="bool-byte-2"),
    ],
)
def test_non_canonical_raw_bytes_are_refused(
    etype: int, dims: list[int], raw: bytes, canonical: bytes
) -> None:
    load_model_bytes(_single_weight(etype, dims, canonical))
    with pytest.raises(ModelError):
        load_model_bytes(_single_weight(etype, dims, raw))


@PROPERTY
@given(
    name=st.sampled_from(NAMES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_any_byte_change_of_a_model_file_loads_or_raises_an_input_error(
    name: str, edits: list[tuple[float, int]]
) -> None:
    data = bytearray(BUILDERS[name]().SerializeToString())
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    with contextlib.suppress(InputError):
        load_model_bytes(bytes(data))


def test_hand_placed_external_data_loads_when_it_is_right(tmp_path: Path) -> None:
    """The baseline of the external cases above: unedited, the same file loads with mlp's digest."""
    assert load_model(external_mlp(tmp_path)).digest == _embedded("mlp").digest
    exact = external_mlp(tmp_path, offset="0", length=str(W0_BYTES))
    assert load_model(exact).digest == _embedded("mlp").digest


def test_external_data_may_be_a_symlink_that_stays_in_the_folder(tmp_path: Path) -> None:
    path = external_mlp(tmp_path, location="link.bin")
    (path.parent / "link.bin").symlink_to(path.parent / "w.bin")
    assert load_model(path).digest == _embedded("mlp").digest


def test_external_data_at_an_offset_in_a_subfolder_loads(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "data").mkdir()
    path = external_mlp(
        tmp_path,
        location="data/w.bin",
        offset="3",
        write_to="data/w.bin",
        payload=lambda b: b"abc" + b + b"trailing",
    )
    assert load_model(path).digest == _embedded("mlp").digest


def test_external_data_without_a_folder_is_refused(tmp_path: Path) -> None:
    data = external_mlp(tmp_path).read_bytes()
    with pytest.raises(ModelError, match="no folder"):
        load_model_bytes(data)


def test_file_at_max_bytes_loads(tmp_path: Path) -> None:
    data = mlp().SerializeToString()
    assert load_model(_write(tmp_path, data), max_bytes=len(data)).digest == _embedded("mlp").digest


# --- loading and running ---------------------------------------------------------------------


def _run(model: LoadedModel, name: str) -> dict[str, np.ndarray[Any, Any]]:
    return OrtRunner(model, RuntimeSettings()).run(sample_inputs(name))


@pytest.mark.parametrize("name", NAMES)
def test_external_data_model_runs_like_the_embedded_model(name: str, tmp_path: Path) -> None:
    path = save_external(BUILDERS[name](), tmp_path, one_file=name != "mlp")
    external = load_model(path)
    assert external.digest == _embedded(name).digest
    expected = _run(_embedded(name), name)
    for weights in tmp_path.iterdir():  # the runner must not re-read the files we hashed
        if weights != path:
            weights.write_bytes(bytes(weights.stat().st_size))
    actual = _run(external, name)
    assert actual.keys() == expected.keys()
    for key, value in expected.items():  # sequence outputs come as lists of arrays
        pairs = (
            zip(actual[key], value, strict=True)
            if isinstance(value, list)
            else [(actual[key], value)]
        )
        for got, want in pairs:
            np.testing.assert_array_equal(got, want, strict=True)


def test_embedded_model_runs_from_its_exact_file_bytes(tmp_path: Path) -> None:
    data = BUILDERS["convnet"]().SerializeToString()
    model = load_model(_write(tmp_path, data))
    assert model.runtime_bytes == data
    assert model.file_sha256 == Digest(hashlib.sha256(data).digest())


COMMITTED = [
    *(pytest.param(f"{name}.onnx", name, id=name) for name in NAMES),
    pytest.param("mlp_external/model.onnx", "mlp", id="mlp_external"),
]


@pytest.mark.parametrize(("file", "name"), COMMITTED)
def test_committed_fixture_models_load_with_their_builders_digest(file: str, name: str) -> None:
    path = FIXTURES / "models" / file
    model = load_model(path)
    assert model.digest == _embedded(name).digest
    assert model.file_sha256 == Digest(hashlib.sha256(path.read_bytes()).digest())
    assert model.path == path


def test_signature_lists_inputs_outputs_and_overridable_initializers() -> None:
    model = mlp()
    model.graph.input.append(helper.make_tensor_value_info("b2", TensorProto.FLOAT, [8]))
    loaded = load_model_bytes(model.SerializeToString())
    assert loaded.inputs == (
        ValueSpec(name="x", kind="tensor", elem_type="float32", shape=(None, 16)),
    )
    assert loaded.outputs == (
        ValueSpec(name="y", kind="tensor", elem_type="float32", shape=(None, 8)),
    )
    assert loaded.overridable == (
        ValueSpec(name="b2", kind="tensor", elem_type="float32", shape=(8,)),
    )
    x = np.zeros((2, 16), np.float32)
    assert loaded.check_inputs({"x": x}).keys() == {"x"}
    assert loaded.check_inputs({"x": x, "b2": np.ones(8, np.float32)}).keys() == {"x", "b2"}
    with pytest.raises(TensorError, match=r"'b2' has shape \[9\]"):
        loaded.check_inputs({"x": x, "b2": np.ones(9, np.float32)})


def _scalar_model() -> LoadedModel:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["y"])],
        "scalar",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    return load_model_bytes(helper.make_model(graph).SerializeToString())


def test_check_inputs_accepts_numpy_scalars_as_zero_d_arrays() -> None:
    checked = _scalar_model().check_inputs({"s": np.float32(2.5)})
    assert isinstance(checked["s"], np.ndarray)
    assert checked["s"].shape == ()
    assert checked["s"].dtype == np.float32


def test_check_inputs_accepts_any_size_on_a_symbolic_dim() -> None:
    for batch in (0, 1, 7):
        x = np.zeros((batch, 16), np.float32)
        assert _embedded("mlp").check_inputs({"x": x})["x"] is not None


X = np.zeros((4, 16), np.float32)
BAD_INPUTS = [
    pytest.param({}, r"missing input 'x' \(float32\[\?,16\]\)", id="missing"),
    pytest.param({"x": X, "z": X}, r"unknown input 'z'; the model's inputs are x", id="unknown"),
    pytest.param({"x": X.astype(np.float64)}, r"'x' is float64; .*float32\[\?,16\]", id="dtype"),
    pytest.param({"x": X[0]}, r"'x' has shape \[16\]; .*float32\[\?,16\]", id="rank-low"),
    pytest.param({"x": X[None]}, r"'x' has shape \[1, 4, 16\]", id="rank-high"),
    pytest.param({"x": np.float32(1)}, r"'x' has shape \[\]", id="scalar-for-matrix"),
    pytest.param({"x": X[:, :15]}, r"'x' has shape \[4, 15\]; .*float32\[\?,16\]", id="static-dim"),
    pytest.param(
        {"x": [[1.0] * 16, [1.0] * 3]},
        r"'x'",
        id="ragged-list",
    ),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_INPUTS)
def test_check_inputs_rejects_what_does_not_fit_the_signature(
    inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TensorError, match=message):
        _embedded("mlp").check_inputs(inputs)


def test_check_inputs_refuses_inputs_receipts_do_not_carry() -> None:
    map_type = helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", ["m"], ["y"])],
        "map",
        [helper.make_value_info("m", map_type)],
        [helper.make_value_info("y", map_type)],
    )
    model = load_model_bytes(helper.make_model(graph).SerializeToString())
    assert model.inputs[0].kind == "map"
    with pytest.raises(TensorError, match="'m' is an ONNX map"):
        model.check_inputs({"m": np.zeros(2, np.float32)})


# --- a slow reference from the documented rules ----------------------------------------------


def _mp_str(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    if len(data) < 256:
        return bytes([0xD9, len(data)]) + data
    return bytes([0xDA]) + len(data).to_bytes(2, "big") + data


def _mp_map(entries: dict[str, bytes]) -> bytes:
    """A msgpack map of already-encoded values, keys in UTF-8 byte order."""
    assert len(entries) < 16
    body = b"".join(
        _mp_str(k) + v for k, v in sorted(entries.items(), key=lambda kv: kv[0].encode())
    )
    return bytes([0x80 | len(entries)]) + body


def _mp_bin32(data: bytes) -> bytes:
    assert len(data) == 32
    return bytes([0xC4, 32]) + data


def _weight_leaf_data(path: str, digest: bytes) -> bytes:
    return _mp_map({"kind": _mp_str("weight"), "path": _mp_str(path), "digest": _mp_bin32(digest)})


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively: split at the largest power of two below n."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def reference_digest(
    structure: Digest, with_data: onnx.ModelProto
) -> tuple[bytes, dict[str, bytes]]:
    """The model digest from the module docstring's rules, given the structure digest."""
    weights = {
        p: tensor_digest(numpy_helper.to_array(t)).value for p, t in model_tensors(with_data)
    }
    leaf_data = [_mp_map({"kind": _mp_str("structure"), "digest": _mp_bin32(structure.value)})]
    ordered = sorted(weights, key=lambda p: p.encode("utf-8"))
    leaf_data += [_weight_leaf_data(path, weights[path]) for path in ordered]
    return _mth([hashlib.sha256(b"\x00" + d).digest() for d in leaf_data]), weights


REFERENCE_CASES = [
    *(pytest.param(name, False, id=f"{name}-embedded") for name in NAMES),
    *(pytest.param(name, True, id=f"{name}-external") for name in NAMES),
    *(pytest.param(str(path), False, id=path.stem) for path in LIGHT),
]


@pytest.mark.parametrize(("source", "external"), REFERENCE_CASES)
def test_digest_equals_a_slow_reference_of_the_documented_rules(
    source: str, external: bool, tmp_path: Path
) -> None:
    if source in BUILDERS:
        model = BUILDERS[source]()
        path = (
            save_external(model, tmp_path)
            if external
            else _write(tmp_path, model.SerializeToString())
        )
    else:
        path = Path(source)
    loaded = load_model(path)
    root, weights = reference_digest(loaded.model_digest.structure, onnx.load(str(path)))
    assert weights  # every case has weights to check
    assert {w.path: w.digest.value for w in loaded.weights} == weights
    assert loaded.digest.value == root
    assert [w.path for w in loaded.weights] == sorted(weights, key=lambda p: p.encode("utf-8"))


def test_reference_leaf_encoding_matches_the_library_leaf_data() -> None:
    """The hand-written msgpack above is the canonical encoding the library uses for leaves."""
    model = _embedded("control_flow").model_digest
    for leaf in model.weights:  # paths from 19 to 48 bytes: both fixstr and str8
        assert leaf.leaf_data() == _weight_leaf_data(leaf.path, leaf.digest.value)
    structure = _mp_map({"kind": _mp_str("structure"), "digest": _mp_bin32(model.structure.value)})
    assert structure_leaf_data(model.structure) == structure


def test_external_data_counts_toward_the_size_limit(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    onnx.save_model(
        BUILDERS["mlp"](),
        folder / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )
    small = (folder / "model.onnx").stat().st_size
    weights = (folder / "w.bin").stat().st_size
    load_model(folder / "model.onnx", max_bytes=small + weights)
    with pytest.raises(LimitError, match="external data exceed"):
        load_model(folder / "model.onnx", max_bytes=small + weights - 1)


def _flips(data: bytes) -> Iterator[bytes]:
    for offset in range(len(data)):
        for bit in range(8):
            yield data[:offset] + bytes([data[offset] ^ (1 << bit)]) + data[offset + 1 :]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sequence", "constants", "control_flow", "integer"])
def test_every_flipped_bit_of_a_model_loads_whole_or_is_a_typed_error(name: str) -> None:
    """Each one-bit flip of the file: the model loads and every reader of it works (its graph,
    the input check, the meter), or a typed error says why. A sweep over every bit found
    names that were not UTF-8 (protobuf hands them back as bytes) reaching those readers."""
    inputs = load_tensors(FIXTURES / "inputs" / f"{name}.npz")
    refused = 0
    for data in _flips((FIXTURES / "models" / f"{name}.onnx").read_bytes()):
        try:
            model = load_model_bytes(data)
            GraphView(model)
            model.check_inputs(inputs)
            MeterPlan(model).units({k: np.shape(v) for k, v in inputs.items()})
        except InputError:
            refused += 1
    assert refused > 0


def test_a_name_that_is_not_utf8_is_refused_naming_the_field() -> None:
    data = (FIXTURES / "models" / "sequence.onnx").read_bytes()
    assert data.count(b"sequence") == 1  # the graph's name
    with pytest.raises(ModelError, match=r"^graph/name: text that is not UTF-8$"):
        load_model_bytes(data.replace(b"sequence", b"sequenc\xe9"))
