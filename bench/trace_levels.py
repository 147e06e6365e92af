"""Does exposing every intermediate value change the final outputs? Per optimization level.

The dispute work records every node's outputs ("traced" runs) by exposing intermediates as graph
outputs. A traced run must give the same final bits as an untraced one under the same profile,
so the default optimization level must be one where exposing intermediates changes nothing.
This script measures that on the fixture models and the onnx package's light models and prints
one row per model and level: how many final outputs differ and by how much.

    python bench/trace_levels.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.models import BUILDERS, sample_inputs
from receipts.runtime import OPT_LEVELS, RuntimeSettings, _session_options

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def traced(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every node output also exposed as a graph output."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    finals = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in finals:
                copy.graph.output.append(onnx.ValueInfoProto(name=name))
    return copy


def run(model: onnx.ModelProto, level: str, feeds: dict[str, Any]) -> list[np.ndarray[Any, Any]]:
    options = _session_options(RuntimeSettings(graph_optimization=level))
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in model.graph.output]
    return session.run(names, feeds)  # type: ignore[no-any-return]


def light_inputs(model: onnx.ModelProto) -> dict[str, Any]:
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        n = int(np.prod(shape))
        feeds[value.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


def cases() -> list[tuple[str, onnx.ModelProto, dict[str, Any]]]:
    found = [(name, build(), sample_inputs(name)) for name, build in BUILDERS.items()]
    for path in sorted(LIGHT.glob("light_*.onnx")):
        if path.stem in ("light_vgg19", "light_zfnet512", "light_bvlc_alexnet"):
            continue  # seconds per run; the convnets below cover the same fusions
        model = onnx.load(path)
        found.append((path.stem, model, light_inputs(model)))
    return found


def main() -> None:
    print(f"{'model':<22}" + "".join(f"{level:>22}" for level in OPT_LEVELS))
    for name, model, feeds in cases():
        cells = []
        tmodel = traced(model)
        for level in OPT_LEVELS:
            plain = run(model, level, feeds)
            with_trace = run(tmodel, level, feeds)[: len(plain)]
            diffs = [
                float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                if a.size
                else 0.0
                for a, b in zip(plain, with_trace, strict=True)
                if a.tobytes() != b.tobytes()
            ]
            cells.append("identical" if not diffs else f"differs {max(diffs):.1e}")
        print(f"{name:<22}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
