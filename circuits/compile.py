"""Integer ONNX graphs to R1CS, with onnxruntime's integer semantics (the zk rung's compiler).

Reads a ``LoadedModel`` and the input tensors, walks the graph in order and emits constraints into
a ``circuits.builder.Builder``; the witness is computed alongside, so compiling is also the
witness generator. Weights and other initializers are circuit constants: a product with them is
linear and costs nothing, and the constraint system depends on the model alone, never on the
input values (``compile_model`` with any valid inputs gives the same R1CS; that is the circuit
hash anyone can reproduce from the model file).

Every value is proven to stay inside its ONNX type, so no int32 wraps around where onnxruntime
would: a model and input that would overflow are refused (``WitnessError`` naming the node).
Inputs are private wires proven in their type's range and packed into public signals, outputs
likewise (``circuits.packing``); public signals are the outputs, then the inputs.

Ops: MatMulInteger, ConvInteger (zero points, no padding or dilation), Add, Sub, Mul, Div by a
positive constant (truncating), Relu, Max, Min, Clip, Cast between integer types, MaxPool
(no padding), and the shape-only Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Slice,
Gather (constant indices), Identity. Anything else is refused naming the op and the node.

    compiled = compile_model(load_model("mlp_int8.onnx"), {"x": x})
    check_witness(compiled.r1cs, compiled.witness)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from circuits.builder import Builder, Signal, constant, dot
from circuits.packing import RANGES, pack_signals
from circuits.r1cs import R1CS
from receipts.digests import Digest, digest_of
from receipts.errors import CircuitFormatError, ReceiptsError
from receipts.model import LoadedModel

COMPILER_VERSION = "circuits/1"
_ONNX_TYPES = {
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",  # constants only (shapes, axes, indices)
}
Value = np.ndarray  # an int64 array (constant) or an object array of Signal (wires)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A value in the graph: its ONNX element type, and either constants or signals."""

    dtype: str
    data: Value

    @property
    def constant(self) -> bool:
        return self.data.dtype != object


@dataclass(frozen=True, slots=True, kw_only=True)
class Compiled:
    """The constraint system, its witness, and the public signals' meaning."""

    r1cs: R1CS
    witness: list[int]
    outputs: dict[str, np.ndarray]  # the outputs as onnxruntime computes them
    public: list[int]

    @property
    def circuit_hash(self) -> Digest:
        return circuit_hash(self.r1cs)


def circuit_hash(r1cs: R1CS) -> Digest:
    """The digest of the exact ``.r1cs`` bytes (domain-separated, ``sha256:...``)."""
    return digest_of("circuit", r1cs.to_bytes())


def compile_model(model: LoadedModel, inputs: Mapping[str, np.ndarray]) -> Compiled:
    """Compile ``model`` and compute its witness on ``inputs`` (see the module docstring)."""
    graph = model.proto.graph
    b = Builder()
    env: dict[str, Tensor] = {t.name: _initializer(t) for t in graph.initializer}
    publics = []
    for spec in model.inputs:
        dtype = _dtype_of(spec.elem_type, f"input {spec.name!r}")
        if spec.name not in inputs:
            raise CircuitFormatError(f"input {spec.name!r} is missing")
        array = np.asarray(inputs[spec.name])
        if array.dtype != np.dtype(dtype):
            raise CircuitFormatError(
                f"input {spec.name!r} is {array.dtype}, the model says {dtype}"
            )
        lo, hi = RANGES[dtype]
        wires = np.empty(array.shape, dtype=object)
        for index, value in np.ndenumerate(array):
            wire = b.input(int(value), public=False)
            b.assert_range(wire, lo, hi)
            wires[index] = wire
        env[spec.name] = Tensor(dtype, wires)
        publics.append((wires.reshape(-1).tolist(), dtype))
    for node in graph.node:
        try:
            results = _apply(b, node, [env[name] if name else None for name in node.input])
        except KeyError as e:
            raise CircuitFormatError(f"node {node.name!r} reads {e} before it is made") from e
        except ReceiptsError as e:
            raise type(e)(f"node {node.name or node.op_type!r} ({node.op_type}): {e}") from e
        env.update(zip(node.output, results, strict=True))
    outputs, out_signals = {}, []
    for spec in model.outputs:
        tensor = env[spec.name]
        if tensor.constant:
            raise CircuitFormatError(f"output {spec.name!r} does not depend on the inputs")
        outputs[spec.name] = np.vectorize(lambda s: s.value)(tensor.data).astype(tensor.dtype)
        out_signals += pack_signals(tensor.data.reshape(-1).tolist(), tensor.dtype)
    for signals, dtype in publics:
        for packed in pack_signals(signals, dtype):
            wire = b.input(packed.value, public=True)
            b.enforce(wire, constant(1), packed)
    r1cs, witness = b.finish(out_signals)
    return Compiled(r1cs=r1cs, witness=witness, outputs=outputs,
                    public=witness[1 : 1 + r1cs.n_public])  # fmt: skip


# --- values ----------------------------------------------------------------------------------


def _dtype_of(elem_type: Any, what: str) -> str:
    name = elem_type if isinstance(elem_type, str) else _ONNX_TYPES.get(elem_type)
    if name not in RANGES and name != "int64":
        raise CircuitFormatError(f"{what} is {name or elem_type}: only integer types are compiled")
    return str(name)


def _initializer(t: onnx.TensorProto) -> Tensor:
    dtype = _dtype_of(t.data_type, f"initializer {t.name!r}")
    return Tensor(dtype, numpy_helper.to_array(t).astype(np.int64))


def _signals(t: Tensor) -> np.ndarray:
    if not t.constant:
        return t.data
    return np.vectorize(constant, otypes=[object])(t.data) if t.data.size else t.data


def _const(t: Tensor | None, what: str) -> np.ndarray:
    if t is None or not t.constant:
        raise CircuitFormatError(f"{what} must be a constant (an initializer)")
    return t.data


def _checked(b: Builder, data: np.ndarray, dtype: str) -> Tensor:
    """``data`` (signals) proven inside ``dtype``'s range."""
    lo, hi = RANGES[dtype]
    for s in data.reshape(-1):
        b.assert_range(s, lo, hi)
    return Tensor(dtype, data)


# --- ops -------------------------------------------------------------------------------------

Op = Callable[[Builder, onnx.NodeProto, list[Any]], list[Tensor]]


def _apply(b: Builder, node: onnx.NodeProto, args: list[Tensor | None]) -> list[Tensor]:
    op = _OPS.get(node.op_type)
    if op is None or node.domain not in ("", "ai.onnx"):
        raise CircuitFormatError(f"op {node.op_type} is not supported")
    return op(b, node, args)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _matmul_integer(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    a, w = args[0], args[1]
    za = int(_const(args[2], "the A zero point")) if len(args) > 2 and args[2] else 0
    zw = int(_const(args[3], "the B zero point")) if len(args) > 3 and args[3] else 0
    weights = _const(w, "MatMulInteger's B") - zw
    if a.constant or a.data.ndim < 1 or weights.ndim != 2:
        raise CircuitFormatError("MatMulInteger: variable A [..., K] times constant B [K, N]")
    rows = a.data.reshape(-1, a.data.shape[-1])
    out = np.empty((rows.shape[0], weights.shape[1]), dtype=object)
    for i, row in enumerate(rows):
        shifted = [s.shift(-za) for s in row]
        for j in range(weights.shape[1]):
            out[i, j] = dot(shifted, weights[:, j].tolist())
    shape = (*a.data.shape[:-1], weights.shape[1])
    return [_checked(b, out.reshape(shape), "int32")]


def _conv_integer(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x, w = args[0], args[1]
    zx = int(_const(args[2], "x_zero_point")) if len(args) > 2 and args[2] else 0
    zw = int(_const(args[3], "w_zero_point")) if len(args) > 3 and args[3] else 0
    kernel = _const(w, "ConvInteger's W") - zw  # [M, C, kh, kw]
    if any(_attr(node, "pads", [0])) or any(d != 1 for d in _attr(node, "dilations", [1])):
        raise CircuitFormatError("ConvInteger: padding and dilation are not supported")
    if _attr(node, "group", 1) != 1 or x.constant or x.data.ndim != 4:
        raise CircuitFormatError("ConvInteger: one group, a variable NCHW input")
    sh, sw = _attr(node, "strides", [1, 1])
    n, _, h, wd = x.data.shape
    m, _, kh, kw = kernel.shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.empty((n, m, oh, ow), dtype=object)
    shifted = np.vectorize(lambda s: s.shift(-zx), otypes=[object])(x.data)
    for bn, k, i, j in np.ndindex(n, m, oh, ow):
        patch = shifted[bn, :, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
        out[bn, k, i, j] = dot(patch.tolist(), kernel[k].reshape(-1).tolist())
    return [_checked(b, out, "int32")]


def _elementwise(
    fn: Callable[[Signal, Signal], Signal], scale: Callable[[Signal, int], Signal] | None = None
) -> Op:
    def op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
        left, right = args
        dtype = left.dtype if not left.constant else right.dtype
        if left.constant and right.constant:
            raise CircuitFormatError("both operands are constants (fold them before compiling)")
        if scale is not None and (left.constant or right.constant):
            var, k = (right, left) if left.constant else (left, right)
            pairs = np.broadcast(var.data, k.data)
            data = np.array([scale(s, int(c)) for s, c in pairs], dtype=object)
        else:
            pairs = np.broadcast(_signals(left), _signals(right))
            data = np.array([fn(x, y) for x, y in pairs], dtype=object)
        return [_checked(b, data.reshape(pairs.shape), dtype)]

    return op


def _div(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x, d = args
    divisor = _const(d, "Div's divisor")
    if x.constant or divisor.size != 1 or int(divisor.reshape(-1)[0]) <= 0:
        raise CircuitFormatError("Div: a variable by one positive constant")
    bits = RANGES[x.dtype][1].bit_length() + 1
    data = np.vectorize(lambda s: b.div_trunc(s, int(divisor.reshape(-1)[0]), bits=bits),
                        otypes=[object])(x.data)  # fmt: skip
    return [Tensor(x.dtype, data)]


def _bits(dtype: str) -> int:
    lo, hi = RANGES[dtype]
    return max(hi.bit_length(), (-lo).bit_length()) + 1


def _relu(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    data = np.vectorize(lambda s: b.relu(s, bits=_bits(x.dtype)), otypes=[object])(x.data)
    return [Tensor(x.dtype, data)]


def _clip(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    lo_t = args[1] if len(args) > 1 else None
    hi_t = args[2] if len(args) > 2 else None
    bits = _bits(x.dtype)

    def clip(s: Signal) -> Signal:
        if hi_t is not None:
            s = b.minimum(s, constant(int(_const(hi_t, "Clip's max"))), bits=bits)
        if lo_t is not None:
            s = b.maximum(s, constant(int(_const(lo_t, "Clip's min"))), bits=bits)
        return s

    return [Tensor(x.dtype, np.vectorize(clip, otypes=[object])(x.data))]


def _extreme(pick: str) -> Op:
    def op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
        variables = [a for a in args if not a.constant]
        if not variables:
            raise CircuitFormatError(f"{pick}: no variable operand")
        dtype = variables[0].dtype
        bits = _bits(dtype)
        gadget = b.maximum if pick == "Max" else b.minimum
        acc = _signals(args[0])
        for other in args[1:]:
            pairs = np.broadcast(acc, _signals(other))
            acc = np.array([gadget(x, y, bits=bits) for x, y in pairs], dtype=object).reshape(
                pairs.shape
            )
        return [Tensor(dtype, acc)]

    return op


def _cast(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    target = _dtype_of(_attr(node, "to"), "Cast's target")
    if x.constant:
        return [Tensor(target, x.data)]
    return [_checked(b, x.data, target)]  # proven in range: onnxruntime would wrap, we refuse


def _maxpool(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    if any(_attr(node, "pads", [0])) or _attr(node, "ceil_mode", 0) or len(node.output) > 1:
        raise CircuitFormatError("MaxPool: no padding, no ceil_mode, no indices output")
    kh, kw = _attr(node, "kernel_shape")
    sh, sw = _attr(node, "strides", [1, 1])
    n, c, h, w = x.data.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    bits = _bits(x.dtype)
    out = np.empty((n, c, oh, ow), dtype=object)
    for bn, ch, i, j in np.ndindex(n, c, oh, ow):
        window = x.data[bn, ch, i * sh : i * sh + kh, j * sw : j * sw + kw].reshape(-1)
        best = window[0]
        for s in window[1:]:
            best = b.maximum(best, s, bits=bits)
        out[bn, ch, i, j] = best
    return [Tensor(x.dtype, out)]


def _shape_op(fn: Callable[[onnx.NodeProto, np.ndarray, list[Any]], np.ndarray]) -> Op:
    def op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
        x = args[0]
        return [Tensor(x.dtype, fn(node, x.data, args))]

    return op


def _reshape(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    shape = [int(d) for d in _const(args[1], "Reshape's shape")]
    shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _flatten(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    axis = _attr(node, "axis", 1) % max(data.ndim, 1)
    return data.reshape(int(np.prod(data.shape[:axis])), -1)


def _axes(node: onnx.NodeProto, args: list[Any]) -> list[int] | None:
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in _const(args[1], "axes")]
    found = _attr(node, "axes")
    return None if found is None else list(found)


def _squeeze(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    axes = _axes(node, args)
    return np.squeeze(data, axis=None if axes is None else tuple(axes))


def _unsqueeze(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    axes = _axes(node, args) or []
    out = data
    for axis in sorted(a % (data.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, axis)
    return out


def _slice(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    starts, ends = (_const(args[i], "Slice's bounds") for i in (1, 2))
    axes = _const(args[3], "axes") if len(args) > 3 and args[3] is not None else range(len(starts))
    steps = _const(args[4], "steps") if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def _gather(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    indices = _const(args[1], "Gather's indices")
    return np.take(data, indices, axis=_attr(node, "axis", 0))


def _concat(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    dtype = next((a.dtype for a in args if not a.constant), args[0].dtype)
    parts = [_signals(a) for a in args]
    return [Tensor(dtype, np.concatenate(parts, axis=_attr(node, "axis")))]


_OPS: dict[str, Op] = {
    "MatMulInteger": _matmul_integer,
    "ConvInteger": _conv_integer,
    "Add": _elementwise(lambda x, y: x + y, lambda s, k: s.shift(k)),
    "Sub": _elementwise(lambda x, y: x - y),
    "Div": _div,
    "Relu": _relu,
    "Clip": _clip,
    "Max": _extreme("Max"),
    "Min": _extreme("Min"),
    "Cast": _cast,
    "MaxPool": _maxpool,
    "Reshape": _shape_op(_reshape),
    "Flatten": _shape_op(_flatten),
    "Transpose": _shape_op(lambda n, d, a: np.transpose(d, _attr(n, "perm"))),
    "Squeeze": _shape_op(_squeeze),
    "Unsqueeze": _shape_op(_unsqueeze),
    "Slice": _shape_op(_slice),
    "Gather": _shape_op(_gather),
    "Identity": _shape_op(lambda n, d, a: d),
    "Concat": _concat,
}


def _mul_op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    return _elementwise(b.mul, lambda s, k: s.scale(k))(b, node, args)


_OPS["Mul"] = _mul_op
