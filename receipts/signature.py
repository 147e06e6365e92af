"""The graph's signature: what a model declares as inputs and outputs, and checking values
against it (beside ``model``, used by the provider before a run and by the verifier).

    spec = value_spec(model.graph.input[0])        # ValueSpec(name, kind, elem_type, shape)
    array = check_value(spec, [[1.0, 2.0]])         # or TensorError with a one-line reason

Kinds: ``tensor``, ``sequence`` (a list of tensors), ``optional`` (a tensor, a list, or None);
other ONNX kinds (maps) are refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from receipts.digests import Value
from receipts.errors import InputError, TensorError
from receipts.tensors import elem_type_of, elem_type_of_onnx


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueSpec:
    """A graph input or output as the model declares it (``None`` dims are symbolic)."""

    name: str
    kind: str  # "tensor", "sequence", "optional", or an ONNX kind receipts do not carry ("map")
    elem_type: str | None
    shape: tuple[int | None, ...] | None


def describe(spec: ValueSpec) -> str:
    dims = "?" if spec.shape is None else ",".join("?" if d is None else str(d) for d in spec.shape)
    return f"{spec.elem_type or '?'}[{dims}]"


def check_value(spec: ValueSpec, value: object) -> Value:
    name = spec.name
    if spec.kind == "optional" and value is None:
        return None
    if spec.kind == "sequence" or (spec.kind == "optional" and isinstance(value, list | tuple)):
        if not isinstance(value, list | tuple):
            raise TensorError(f"input {name!r} is a sequence; pass a list of arrays")
        return [
            _check_tensor(spec, _as_array(item, f"{name}[{i}]"), f"{name}[{i}]")
            for i, item in enumerate(value)
        ]
    if spec.kind in ("tensor", "optional"):
        return _check_tensor(spec, _as_array(value, name), name)
    raise TensorError(
        f"input {name!r} is an ONNX {spec.kind}; receipts carry tensors and sequences"
    )


def _as_array(value: object, name: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nesting, objects NumPy cannot hold
        raise TensorError(f"input {name!r} is not a tensor ({e})") from e


def _check_tensor(spec: ValueSpec, array: np.ndarray[Any, Any], name: str) -> np.ndarray[Any, Any]:
    actual = elem_type_of(array).name
    if spec.elem_type is not None and actual != spec.elem_type:
        raise TensorError(f"input {name!r} is {actual}; the model expects {describe(spec)}")
    if spec.shape is not None and (
        len(spec.shape) != array.ndim
        or any(d is not None and d != a for d, a in zip(spec.shape, array.shape, strict=True))
    ):
        shape = list(array.shape)
        raise TensorError(f"input {name!r} has shape {shape}; the model expects {describe(spec)}")
    return canonical_array(array)


def canonical_array(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The array as its digest sees it: C order, little-endian, booleans 0 or 1. The runner gets
    this, so two inputs with one digest can never run differently."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    array = np.require(array, requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    if array.dtype == np.bool_:
        array = np.asarray(array.view(np.uint8) != 0)  # asarray: 0-d comparisons give scalars
    return array


def value_spec(info: onnx.ValueInfoProto) -> ValueSpec:
    """What a graph input or output declares: kind, and for tensors (or the tensors inside a
    sequence or optional) element type and shape."""
    kind = info.type.WhichOneof("value") or "undefined"
    proto = info.type
    wrapped = {"tensor_type": "tensor", "sequence_type": "sequence", "optional_type": "optional"}
    if kind not in wrapped:
        return ValueSpec(
            name=info.name, kind=kind.removesuffix("_type"), elem_type=None, shape=None
        )
    inner = proto
    while inner.WhichOneof("value") in ("sequence_type", "optional_type"):
        holder = getattr(inner, inner.WhichOneof("value"))
        inner = holder.elem_type
    if inner.WhichOneof("value") != "tensor_type":
        return ValueSpec(name=info.name, kind=wrapped[kind], elem_type=None, shape=None)
    tt = inner.tensor_type
    try:
        etype: str | None = elem_type_of_onnx(tt.elem_type).name if tt.elem_type else None
    except InputError:
        etype = None
    shape = None
    if tt.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return ValueSpec(name=info.name, kind=wrapped[kind], elem_type=etype, shape=shape)
