"""Machine facts, the printed table and the JSON written to ``bench/out/results.json``."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import cryptography
import msgpack
import numpy as np
import onnx
import onnxruntime as ort

from bench.breakdowns import Breakdown
from bench.harness import Plan, Result

HEADER_FACTS = (
    "cpu_model",
    "cpu_count",
    "python",
    "onnxruntime",
    "cryptography",
    "runtime_profile",
    "blas_threads",
    "load_average_start",
)
LEGEND = (
    "ratio = median over rounds of subject/baseline time (issue, digest, trace, spot, freivalds, "
    "judge)\nor of subject/baseline throughput (verify), each round comparing the median call of "
    "a baseline block\nwith that of the adjacent subject block; IQR = interquartile range of the "
    "per-round ratios;\nbaseline and subject columns: median per-call time or calls/s."
)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def machine_facts(root: Path, extra: Mapping[str, str]) -> dict[str, object]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "cryptography": cryptography.__version__,
        "msgpack": ".".join(str(p) for p in msgpack.version),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default (all cores)"),
        "load_average_start": list(os.getloadavg()),
        "git_commit": git_commit(root),
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def header(machine: Mapping[str, object]) -> str:
    return "\n".join(f"{k}: {machine[k]}" for k in HEADER_FACTS)


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _row(r: Result) -> list[str]:
    def value(s: float) -> str:  # NaN: not measured (a family without its baseline)
        if math.isnan(s):
            return "-"
        return f"{1 / s:,.0f}/s" if r.throughput else fmt_time(s)

    met = "-" if r.met is None else ("met" if r.met else "NOT MET")
    ratio, iqr = f"{r.ratio:.3f}", f"{r.ratio_q1:.3f}-{r.ratio_q3:.3f}"
    if math.isnan(r.ratio):
        ratio, iqr = "-", "-"
    return [r.name, value(r.baseline_s), value(r.subject_s), ratio, iqr, r.goal or "-", met]


def table(results: Sequence[Result]) -> str:
    rows = [["name", "baseline", "subject", "ratio", "IQR", "goal", "met"]]
    rows += [_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = (c.rjust(w) if 1 <= i <= 4 else c.ljust(w) for i, (c, w) in pairs)
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def details(results: Sequence[Result]) -> str:
    return "\n".join(
        f"* {r.name}: baseline = {r.baseline_label}; subject = {r.subject_label}; "
        f"{r.blocks} rounds of {r.baseline_calls_per_block} / {r.subject_calls_per_block} "
        f"calls; ratio of block means {r.ratio_of_block_means:.3f}; {r.notes}"
        for r in results
    )


def breakdown_text(breakdowns: Sequence[Breakdown]) -> str:
    out = []
    for b in breakdowns:
        out.append(f"{b.name} ({b.note}):")
        width = max(len(s.step) for s in b.steps)
        out.extend(f"  {s.step.ljust(width)}  {fmt_time(s.seconds):>10}" for s in b.steps)
    return "\n".join(out)


def write_json(
    path: Path,
    *,
    machine: Mapping[str, object],
    plans: Mapping[str, Plan],
    results: Sequence[Result],
    breakdowns: Sequence[Breakdown],
    total_seconds: float,
    extra: Mapping[str, object] | None = None,
) -> None:
    """The run as JSON; ``extra``: further top-level sections (a family's sizes and costs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {**machine, "load_average_end": list(os.getloadavg())},
        "plans": {name: asdict(plan) for name, plan in plans.items()},
        "ratio_definition": LEGEND.replace("\n", " "),
        "results": [asdict(r) for r in results],
        "breakdowns": [asdict(b) for b in breakdowns],
        "total_seconds": round(total_seconds, 2),
        **(extra or {}),
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
