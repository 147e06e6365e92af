"""The EZKL side of family 7, run by the bench-only EZKL virtualenv's Python, never the project's.

Started by ``bench/zk_ezkl.py`` as ``<ezkl-venv>/bin/python bench/ezkl_worker.py``; it imports
nothing but the standard library and ``ezkl``, so it needs none of the project's packages. It
reads one JSON request a line on stdin, ``{"op": NAME, "args": {...}}``, runs that EZKL step and
answers one JSON line, ``{"ok": true, "seconds": S, "result": R}`` or ``{"ok": false, "error":
E}``; ``seconds`` is the step alone, measured here. Paths are absolute.

EZKL's Rust code prints (calibration reports, logs) on file descriptor 1, so the answers go to a
copy of the original stdout and descriptor 1 is pointed at stderr before ``ezkl`` is imported.
A step's result that is a coroutine (some EZKL versions make ``calibrate_settings`` and
``get_srs`` async) is awaited; a witness dict is not sent back (it holds every value).

    {"op": "prove", "args": {"witness": W, "model": M, "pk_path": PK, "proof_path": P,
     "srs_path": S}}
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from typing import Any

OPS = (
    "gen_settings",
    "calibrate_settings",
    "compile_circuit",
    "gen_srs",
    "setup",
    "gen_witness",
    "prove",
    "verify",
)


def _run(ezkl: Any, op: str, args: dict[str, Any]) -> tuple[float, object]:
    """One EZKL step and its seconds (awaited if the binding returns a coroutine)."""
    fn = getattr(ezkl, op)
    if op == "gen_settings":
        run_args = ezkl.PyRunArgs()
        for key, value in args.pop("run_args", {}).items():
            setattr(run_args, key, value)
        args["py_run_args"] = run_args
    start = time.perf_counter()
    result = fn(**args)
    if inspect.isawaitable(result):
        result = asyncio.run(_wait(result))
    seconds = time.perf_counter() - start
    if isinstance(result, dict):
        result = {"keys": sorted(result)}
    return seconds, result


async def _wait(awaitable: Any) -> object:
    return await awaitable


def main() -> int:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever EZKL prints lands on stderr, never in an answer
    try:
        ezkl = importlib.import_module("ezkl")
    except ImportError as e:
        answers.write(json.dumps({"ok": False, "error": f"cannot import ezkl: {e}"}) + "\n")
        return 1
    version = getattr(ezkl, "__version__", "unknown")
    answers.write(json.dumps({"ok": True, "seconds": 0.0, "result": version}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        op, args = request.get("op"), dict(request.get("args", {}))
        if op not in OPS:
            answer: dict[str, object] = {"ok": False, "error": f"unknown op {op!r}"}
        else:
            try:
                seconds, result = _run(ezkl, op, args)
                answer = {"ok": True, "seconds": seconds, "result": result}
            except Exception as e:  # noqa: BLE001 - EZKL raises bare RuntimeError/ValueError
                traceback.print_exc()
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
        answers.write(json.dumps(answer, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
