"""Interleaved ratio timing: a baseline and a subject alternate in blocks on the same machine.

Absolute times drift on a shared machine, so every figure is a ratio against a baseline measured
in the same run. After a warm-up, ``compare`` runs ``blocks`` rounds; each round times one block
of baseline calls and one block of subject calls (the order alternates between rounds, so neither
side always runs second). Each side's block holds as many calls as fill about ``block_seconds``,
so the two blocks of a round cover about the same stretch of wall time. Every call is timed on its
own and a block is summarized by its median call, so a call that lost the CPU to another process
does not move the block; each round yields one ratio of block medians, and the result is the
median of those ratios with their interquartile range. The ratio of block means (which does
count the rare slow call, e.g. a garbage-collection pause) is kept beside it in the JSON.

    result = compare(case, plan)
    result.ratio, result.ratio_q1, result.ratio_q3
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Call = Callable[[], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How long to warm up and how many interleaved rounds of what length to run."""

    blocks: int
    block_seconds: float
    warmup_seconds: float
    max_calls: int = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Goal:
    """A target for the median ratio: ``ratio <= value`` or ``ratio >= value``."""

    op: str  # "<=" or ">="
    value: float

    def met(self, ratio: float) -> bool:
        return ratio <= self.value if self.op == "<=" else ratio >= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One comparison. ``throughput`` cases report calls per second and baseline/subject."""

    name: str
    baseline_label: str
    subject_label: str
    baseline: Call
    subject: Call
    goal: Goal | None
    throughput: bool = False
    notes: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """Medians of per-call seconds, and the median and quartiles of the per-round ratios."""

    name: str
    baseline_label: str
    subject_label: str
    throughput: bool
    baseline_s: float
    subject_s: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    ratio_of_block_means: float
    goal: str | None
    met: bool | None
    blocks: int
    baseline_calls_per_block: int
    subject_calls_per_block: int
    notes: str = ""
    round_ratios: list[float] = field(default_factory=list)


def time_calls(fn: Call, calls: int) -> tuple[float, float]:
    """Median and mean seconds of ``calls`` back-to-back, individually timed calls."""
    clock = time.perf_counter
    times = []
    for _ in range(calls):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times), sum(times) / calls


def warm_up(fns: Sequence[Call], seconds: float) -> list[float]:
    """Call each function in turn (at least once) for about ``seconds``; each one's fastest call."""
    fastest = [float("inf")] * len(fns)
    deadline = time.perf_counter() + seconds
    while True:
        for i, fn in enumerate(fns):
            fastest[i] = min(fastest[i], time_calls(fn, 1)[0])
        if time.perf_counter() >= deadline:
            return fastest


def calls_for(seconds_per_call: float, plan: Plan) -> int:
    """How many calls fill one block of ``plan.block_seconds`` (at least one)."""
    return max(1, min(plan.max_calls, round(plan.block_seconds / max(seconds_per_call, 1e-9))))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def compare(case: Case, plan: Plan) -> Result:
    """Warm up, then alternate baseline and subject blocks; see the module docstring."""
    gc.collect()
    fastest = warm_up((case.baseline, case.subject), plan.warmup_seconds)
    n_base, n_subj = calls_for(fastest[0], plan), calls_for(fastest[1], plan)
    base: list[tuple[float, float]] = []
    subj: list[tuple[float, float]] = []
    for i in range(plan.blocks):
        if i % 2 == 0:
            base.append(time_calls(case.baseline, n_base))
            subj.append(time_calls(case.subject, n_subj))
        else:
            subj.append(time_calls(case.subject, n_subj))
            base.append(time_calls(case.baseline, n_base))

    def ratio(b: float, s: float) -> float:  # above 1: subject slower (time) or faster (rate)
        return b / s if case.throughput else s / b

    ratios = [ratio(b[0], s[0]) for b, s in zip(base, subj, strict=True)]
    q1, median, q3 = quartiles(ratios)
    return Result(
        name=case.name,
        baseline_label=case.baseline_label,
        subject_label=case.subject_label,
        throughput=case.throughput,
        baseline_s=statistics.median(b[0] for b in base),
        subject_s=statistics.median(s[0] for s in subj),
        ratio=median,
        ratio_q1=q1,
        ratio_q3=q3,
        ratio_of_block_means=statistics.median(
            ratio(b[1], s[1]) for b, s in zip(base, subj, strict=True)
        ),
        goal=str(case.goal) if case.goal else None,
        met=case.goal.met(median) if case.goal else None,
        blocks=plan.blocks,
        baseline_calls_per_block=n_base,
        subject_calls_per_block=n_subj,
        notes=case.notes,
        round_ratios=ratios,
    )


def profile_steps(
    steps: Sequence[tuple[str, Call]], *, rounds: int, block_seconds: float
) -> list[tuple[str, float]]:
    """Median seconds per call of each step (median call of each block, median over rounds).

    For breakdowns: each step runs alone (warm caches), but the steps take turns round by round,
    so a drift of the machine's speed does not land on one step only.
    """
    fastest = warm_up([fn for _, fn in steps], 0.0)
    plan = Plan(blocks=rounds, block_seconds=block_seconds, warmup_seconds=0.0)
    calls = [calls_for(t, plan) for t in fastest]
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(rounds):
        for i, (_, fn) in enumerate(steps):
            times[i].append(time_calls(fn, calls[i])[0])
    return [(label, statistics.median(t)) for (label, _), t in zip(steps, times, strict=True)]
