"""Integer ONNX graphs to R1CS, with onnxruntime's integer semantics (the zk rung's compiler).

Reads a ``LoadedModel`` and the input tensors, walks the graph in order and emits constraints into
a ``circuits.builder.Builder``; the witness is computed alongside, so compiling is also the
witness generator. Weights and other initializers are circuit constants: a product with them is
linear and costs nothing, and the constraint system depends on the model alone, never on the
input values (``compile_model`` with any valid inputs gives the same R1CS; that is the circuit
hash anyone can reproduce from the model file).

Every value stays inside its ONNX type, so no int32 wraps around where onnxruntime would. Static
interval analysis (bounds from the inputs' proven ranges and the constants) shows most values
cannot leave their type, and those cost nothing; the others are range-proven, and a model and
input that would overflow are refused (``WitnessError`` naming the node). Gadgets use the
widths the bounds allow (a Relu of a value known non-negative is free).
Inputs are private wires proven in their type's range and packed into public signals, outputs
likewise (``circuits.packing``); public signals are the outputs, then the inputs.

Ops: MatMulInteger, ConvInteger (zero points, strides, dilations, pads or auto_pad; one group),
Add, Sub, Mul, Div by a positive constant (truncating), Relu, Max, Min, Clip, Cast between
integer types, MaxPool (strides, dilations, pads or auto_pad; no ceil_mode), and the
shape-only Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Slice, Gather (constant
indices), Identity. Anything else is refused naming the op and the node.

    compiled = compile_model(load_model("mlp_int8.onnx"), {"x": x})
    check_witness(compiled.r1cs, compiled.witness)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from circuits.builder import Builder, Signal, constant, dot, signed_bits
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
    """A value in the graph: its ONNX element type, constants or signals, and bounds that hold
    for every element (static interval analysis: from the inputs' proven ranges and the
    constants, so they depend on the model alone)."""

    dtype: str
    data: Value
    lo: int
    hi: int

    @property
    def constant(self) -> bool:
        return self.data.dtype != object

    @property
    def bits(self) -> int:
        """The signed width every element fits in."""
        return signed_bits(self.lo, self.hi)


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
        env[spec.name] = Tensor(dtype, wires, lo, hi)
        publics.append((wires.reshape(-1).tolist(), dtype))
    for node in graph.node:
        try:
            results = _apply(b, node, [env[name] if name else None for name in node.input])
        except KeyError as e:
            raise CircuitFormatError(f"node {node.name!r} reads {e} before it is made") from e
        except ReceiptsError as e:
            raise type(e)(f"node {node.name or node.op_type!r} ({node.op_type}): {e}") from e
        except (TypeError, ValueError, IndexError) as e:
            # An attribute or operand form the op's code does not handle (per-channel zero
            # points, a 1-D kernel, an index out of range): refused, never a traceback.
            raise CircuitFormatError(
                f"node {node.name or node.op_type!r} ({node.op_type}): unsupported form ({e})"
            ) from e
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
    return _constant(dtype, numpy_helper.to_array(t).astype(np.int64))


def _constant(dtype: str, data: np.ndarray) -> Tensor:
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    return Tensor(dtype, data, lo, hi)


def _signals(t: Tensor) -> np.ndarray:
    if not t.constant:
        return t.data
    return np.vectorize(constant, otypes=[object])(t.data) if t.data.size else t.data


def _const(t: Tensor | None, what: str) -> np.ndarray:
    if t is None or not t.constant:
        raise CircuitFormatError(f"{what} must be a constant (an initializer)")
    return t.data


def _checked(b: Builder, data: np.ndarray, dtype: str, lo: int, hi: int) -> Tensor:
    """``data`` (signals bounded by ``[lo, hi]``) inside ``dtype``'s range: free when the bounds
    already fit, proven element by element otherwise (a value outside then refuses to compile,
    where onnxruntime would wrap around)."""
    type_lo, type_hi = RANGES[dtype]
    if type_lo <= lo and hi <= type_hi:
        return Tensor(dtype, data, lo, hi)
    for s in data.reshape(-1):
        b.assert_range(s, type_lo, type_hi)
    return Tensor(dtype, data, max(lo, type_lo), min(hi, type_hi))


def _linear_bounds(lo: int, hi: int, weights: np.ndarray) -> tuple[int, int]:
    """Bounds of ``sum(w_k * x_k)`` over columns of ``weights`` [K, N], each ``x_k`` in
    ``[lo, hi]``."""
    w = weights.astype(object)
    low = np.where(w > 0, w * lo, w * hi).sum(axis=0)
    high = np.where(w > 0, w * hi, w * lo).sum(axis=0)
    return int(low.min()), int(high.max())


def _product_bounds(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    products = [x * y for x in a for y in b]
    return min(products), max(products)


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
    lo, hi = _linear_bounds(a.lo - za, a.hi - za, weights)
    return [_checked(b, out.reshape(shape), "int32", lo, hi)]


def _conv_integer(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x, w = args[0], args[1]
    zx = int(_const(args[2], "x_zero_point")) if len(args) > 2 and args[2] else 0
    zw = int(_const(args[3], "w_zero_point")) if len(args) > 3 and args[3] else 0
    kernel = _const(w, "ConvInteger's W") - zw  # [M, C, kh, kw]
    if _attr(node, "group", 1) != 1 or x.constant or x.data.ndim != 4 or kernel.ndim != 4:
        raise CircuitFormatError("ConvInteger: one group, a variable NCHW input, a 2-D kernel")
    n, channels, h, wd = x.data.shape
    m, _, kh, kw = kernel.shape
    if list(_attr(node, "kernel_shape", [kh, kw])) != [kh, kw]:
        raise CircuitFormatError("ConvInteger: kernel_shape differs from W's shape")
    windows = _windows(node, (h, wd), (kh, kw))
    out = np.empty((n, m, *windows.shape), dtype=object)
    shifted = np.vectorize(lambda s: s.shift(-zx), otypes=[object])(x.data)
    for bn, k, (i, j) in itertools.product(range(n), range(m), np.ndindex(windows.shape)):
        # A tap in the padding reads x_zero_point (as onnxruntime pads): it adds nothing.
        taps = [(c, *tap) for c in range(channels) for tap in windows.taps[i][j]]
        out[bn, k, i, j] = dot([shifted[bn, c, r, q] for c, r, q, _, _ in taps],
                               [int(kernel[k, c, ki, kj]) for c, _, _, ki, kj in taps])  # fmt: skip
    lo, hi = x.lo - zx, x.hi - zx
    if windows.padded:  # a padded tap contributes 0, so the bounds must hold 0
        lo, hi = min(lo, 0), max(hi, 0)
    lo, hi = _linear_bounds(lo, hi, kernel.reshape(m, -1).T)
    return [_checked(b, out, "int32", lo, hi)]


@dataclass(frozen=True, slots=True)
class _Windows:
    """Where a 2-D sliding window (ConvInteger, MaxPool) reads: for output ``[i][j]``, the
    ``(row, col, kernel_row, kernel_col)`` taps inside the input; taps in the padding are left
    out, and ``padded`` says whether any was; ``pads`` are as applied."""

    shape: tuple[int, int]
    taps: list[list[list[tuple[int, int, int, int]]]]
    padded: bool
    pads: tuple[int, ...]


def _windows(node: onnx.NodeProto, size: tuple[int, int], kernel: tuple[int, int]) -> _Windows:
    """The ONNX geometry of ``node``: strides, dilations, explicit ``pads`` [top, left, bottom,
    right] or ``auto_pad`` (VALID, SAME_UPPER, SAME_LOWER); floor rounding (no ceil_mode)."""
    strides = list(_attr(node, "strides", [1, 1]))
    dilations = list(_attr(node, "dilations", [1, 1]))
    if len(strides) != 2 or len(dilations) != 2:
        raise CircuitFormatError("strides and dilations of 2 (2-D windows only)")
    if min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1:
        raise CircuitFormatError("strides, dilations and the kernel must be positive")
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    pads = _pads(node, size, span, strides, dilations)
    if any(size[a] + pads[a] + pads[a + 2] < span[a] for a in (0, 1)):
        # onnxruntime's sizes (C division, truncating) differ from ONNX's floor here
        raise CircuitFormatError("the kernel is larger than the padded input")
    oh, ow = ((size[a] + pads[a] + pads[a + 2] - span[a]) // strides[a] + 1 for a in (0, 1))
    taps: list[list[list[tuple[int, int, int, int]]]] = [[[] for _ in range(ow)] for _ in range(oh)]
    padded = False
    for i, j, ki, kj in itertools.product(range(oh), range(ow), range(kernel[0]), range(kernel[1])):
        r = i * strides[0] - pads[0] + ki * dilations[0]
        q = j * strides[1] - pads[1] + kj * dilations[1]
        if 0 <= r < size[0] and 0 <= q < size[1]:
            taps[i][j].append((r, q, ki, kj))
        else:
            padded = True
    return _Windows((oh, ow), taps, padded, tuple(pads))


def _pads(
    node: onnx.NodeProto, size: tuple[int, int], span: list[int], strides: list[int],
    dilations: list[int],
) -> list[int]:  # fmt: skip
    """[top, left, bottom, right]: the ``pads`` attribute, or what ``auto_pad`` makes."""
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    auto = _attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if len(pads) != 4 or min(pads) < 0:
        raise CircuitFormatError("pads are 4 numbers, none negative (2-D windows only)")
    if auto in ("NOTSET", "VALID"):
        if auto == "VALID" and any(pads):
            raise CircuitFormatError("auto_pad VALID together with pads")
        return pads
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise CircuitFormatError(f"auto_pad {auto} is not an ONNX value")
    if any(pads):
        raise CircuitFormatError(f"auto_pad {auto} together with pads")
    if max(dilations) > 1:  # onnxruntime's ConvInteger refuses these; its pools differ
        raise CircuitFormatError(f"dilations with auto_pad {auto} are not supported")
    for axis in (0, 1):
        out = -(-size[axis] // strides[axis])
        total = (out - 1) * strides[axis] + span[axis] - size[axis]
        if total < 0:  # onnxruntime's pools then read from a negative pad; not modelled
            raise CircuitFormatError(f"auto_pad {auto} with a stride larger than the kernel")
        small, large = total // 2, total - total // 2
        pads[axis], pads[axis + 2] = (small, large) if auto == "SAME_UPPER" else (large, small)
    return pads


Bounds = Callable[[tuple[int, int], tuple[int, int]], tuple[int, int]]


def _elementwise(
    fn: Callable[[Signal, Signal], Signal],
    bounds: Bounds,
    scale: Callable[[Signal, int], Signal] | None = None,
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
        lo, hi = bounds((left.lo, left.hi), (right.lo, right.hi))
        return [_checked(b, data.reshape(pairs.shape), dtype, lo, hi)]

    return op


def _div(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x, d = args
    divisor = _const(d, "Div's divisor")
    if x.constant or divisor.size != 1 or int(divisor.reshape(-1)[0]) <= 0:
        raise CircuitFormatError("Div: a variable by one positive constant")
    d = int(divisor.reshape(-1)[0])
    q_range = (_trunc(x.lo, d), _trunc(x.hi, d))
    data = np.vectorize(lambda s: b.div_trunc(s, d, bits=x.bits, q_range=q_range),
                        otypes=[object])(x.data)  # fmt: skip
    return [Tensor(x.dtype, data, *q_range)]


def _trunc(value: int, d: int) -> int:
    return abs(value) // d * (1 if value >= 0 else -1)


def _relu(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    if x.lo >= 0:
        return [x]  # already non-negative: Relu is the identity, no constraint
    data = np.vectorize(lambda s: b.relu(s, bits=x.bits), otypes=[object])(x.data)
    return [Tensor(x.dtype, data, 0, max(x.hi, 0))]


def _pick(b: Builder, pick: str, a: Tensor, c: Tensor) -> Tensor:
    """Elementwise max or min of two tensors (broadcast), the difference's width from bounds."""
    bits = signed_bits(a.lo - c.hi, a.hi - c.lo)
    gadget = b.maximum if pick == "Max" else b.minimum
    pairs = np.broadcast(_signals(a), _signals(c))
    data = np.array([gadget(x, y, bits=bits) for x, y in pairs], dtype=object)
    if pick == "Max":
        lo, hi = max(a.lo, c.lo), max(a.hi, c.hi)
    else:
        lo, hi = min(a.lo, c.lo), min(a.hi, c.hi)
    return Tensor(a.dtype if not a.constant else c.dtype, data.reshape(pairs.shape), lo, hi)


def _clip(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    # onnxruntime's order, min(max(x, low), high): with low > high every value becomes high.
    if len(args) > 1 and args[1] is not None:
        x = _pick(b, "Max", x, args[1]) if x.lo < args[1].hi else x
    if len(args) > 2 and args[2] is not None:
        x = _pick(b, "Min", x, args[2]) if x.hi > args[2].lo else x
    return [x]


def _extreme(pick: str) -> Op:
    def op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
        if all(a.constant for a in args):
            raise CircuitFormatError(f"{pick}: no variable operand")
        acc = args[0]
        for other in args[1:]:
            acc = _pick(b, pick, acc, other)
        return [acc]

    return op


def _cast(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    target = _dtype_of(_attr(node, "to"), "Cast's target")
    if x.constant:  # converted as onnxruntime does (wrapping), not merely relabelled
        return [_constant(target, x.data.astype(np.dtype(target)).astype(np.int64))]
    # Proven in range: where onnxruntime would wrap around, compiling refuses.
    return [_checked(b, x.data, target, x.lo, x.hi)]


def _maxpool(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
    x = args[0]
    if x.constant or x.data.ndim != 4:
        raise CircuitFormatError("MaxPool: a variable NCHW input")
    if _attr(node, "ceil_mode", 0) or len(node.output) > 1:
        raise CircuitFormatError("MaxPool: no ceil_mode, no indices output")
    n, c, h, w = x.data.shape
    kernel = list(_attr(node, "kernel_shape", []))
    if len(kernel) != 2:
        raise CircuitFormatError("MaxPool: a 2-D kernel_shape")
    windows = _windows(node, (h, w), (kernel[0], kernel[1]))
    if any(p >= k for p, k in zip(windows.pads, kernel * 2, strict=True)):
        raise CircuitFormatError("MaxPool: pads not smaller than the kernel (onnxruntime refuses)")
    bits = signed_bits(x.lo - x.hi, x.hi - x.lo)
    out = np.empty((n, c, *windows.shape), dtype=object)
    for bn, ch, (i, j) in itertools.product(range(n), range(c), np.ndindex(windows.shape)):
        # Padding is never the maximum (onnxruntime skips it): only taps inside are compared.
        window = [x.data[bn, ch, r, q] for r, q, _, _ in windows.taps[i][j]]
        if not window:
            raise CircuitFormatError("MaxPool: a window lies wholly in the padding")
        best = window[0]
        for s in window[1:]:
            best = b.maximum(best, s, bits=bits)
        out[bn, ch, i, j] = best
    return [Tensor(x.dtype, out, x.lo, x.hi)]


def _shape_op(fn: Callable[[onnx.NodeProto, np.ndarray, list[Any]], np.ndarray]) -> Op:
    def op(b: Builder, node: onnx.NodeProto, args: list[Any]) -> list[Tensor]:
        x = args[0]
        return [Tensor(x.dtype, fn(node, x.data, args), x.lo, x.hi)]

    return op


def _reshape(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    shape = [int(d) for d in _const(args[1], "Reshape's shape")]
    shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return data.reshape(shape)


def _flatten(node: onnx.NodeProto, data: np.ndarray, args: list[Any]) -> np.ndarray:
    axis = _attr(node, "axis", 1)
    axis = axis + data.ndim if axis < 0 else axis  # ONNX: -r <= axis <= r; r gives [N, 1]
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
    data = np.concatenate(parts, axis=_attr(node, "axis"))
    return [Tensor(dtype, data, min(a.lo for a in args), max(a.hi for a in args))]


_OPS: dict[str, Op] = {
    "MatMulInteger": _matmul_integer,
    "ConvInteger": _conv_integer,
    "Add": _elementwise(
        lambda x, y: x + y, lambda a, c: (a[0] + c[0], a[1] + c[1]), lambda s, k: s.shift(k)
    ),
    "Sub": _elementwise(lambda x, y: x - y, lambda a, c: (a[0] - c[1], a[1] - c[0])),
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
    return _elementwise(b.mul, _product_bounds, lambda s, k: s.scale(k))(b, node, args)


_OPS["Mul"] = _mul_op
