"""Deterministic ONNX models for the benchmark (built in memory; nothing is committed).

mlp_bytes(layers=8, width=512, batch=32)        # MatMul+Relu stack, float32
convnet_bytes()                                 # Conv/Relu/MaxPool x4, GAP, Gemm
big_mlp(layers=6, width=2048)                   # ~100 MB of float32 weights (a ModelProto)
matmul_bytes(1024)                              # one MatMul node, a [n, n] @ b [n, n]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
CONVNET_INPUT = (8, 3, 32, 32)
CONVNET_CHANNELS = (32, 64, 128, 256)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _weights(rng: np.random.Generator, *shape: int, fan_in: int) -> np.ndarray[Any, Any]:
    return rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(fan_in))


def _zeros(size: int, name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(size, np.float32), name)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="bench")
    model.ir_version = 8
    return model


def mlp(*, layers: int, width: int, batch: int | str, seed: int = 0) -> onnx.ModelProto:
    """``layers`` square MatMul layers, each followed by Relu; input and output [batch, width]."""
    rng = _rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(_weights(rng, width, width, fan_in=width), f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"matmul{i}"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [out], name=f"relu{i}"))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])],
        initializer=inits,
    )
    return _model(graph)


def mlp_bytes(*, layers: int = 8, width: int = 512, batch: int = 32) -> bytes:
    data: bytes = mlp(layers=layers, width=width, batch=batch).SerializeToString()
    return data


def convnet(
    input_shape: tuple[int, int, int, int] = CONVNET_INPUT,
    channels: tuple[int, ...] = CONVNET_CHANNELS,
    seed: int = 1,
) -> onnx.ModelProto:
    """Per stage a 3x3 Conv (pad 1) + Relu + 2x2 MaxPool; then GlobalAveragePool, Gemm to 10."""
    rng = _rng(seed)
    nodes, inits, prev, cin = [], [], "x", input_shape[1]
    for i, cout in enumerate(channels):
        w = _weights(rng, cout, cin, 3, 3, fan_in=cin * 9)
        inits += [numpy_helper.from_array(w, f"w{i}"), _zeros(cout, f"b{i}")]
        nodes += [
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        prev, cin = f"p{i}", cout
    inits += [
        numpy_helper.from_array(_weights(rng, cin, 10, fan_in=cin), "fc_w"),
        _zeros(10, "fc_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [prev], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_shape[0], 10])],
        initializer=inits,
    )
    return _model(graph)


def convnet_bytes() -> bytes:
    data: bytes = convnet().SerializeToString()
    return data


def big_mlp(*, layers: int = 6, width: int = 2048) -> onnx.ModelProto:
    """``layers * width**2`` float32 weights: 6 x 2048 x 2048 is 25.2 M weights, 100.7 MB."""
    return mlp(layers=layers, width=width, batch="batch", seed=2)


def matmul_bytes(n: int) -> bytes:
    """One MatMul node: inputs ``a`` and ``b`` and output ``c``, each float32 [n, n]."""
    square = [n, n]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"], name="matmul")],
        "matmul",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, square),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, square),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, square)],
    )
    data: bytes = _model(graph).SerializeToString()
    return data


def float_input(shape: tuple[int, ...], seed: int = 3) -> np.ndarray[Any, Any]:
    return _rng(seed).standard_normal(shape, dtype=np.float32)
