"""Results restated per item and marked against an absolute goal (the settlement family).

The harness compares a baseline and a subject call by call (``bench/harness.py``). Some of the
settlement figures need two more things: a call that handles a block of items (a block of 200
requests, so that settling them takes one transaction as it would in service) is restated per
item, and the goal is a figure of the subject itself (at least 1,000 requests/s, under 1 ms a
proof) rather than a ratio. ``measure`` runs ``compare`` and then does both; the ratio and its
quartiles are untouched, since both sides of every round handle the same number of items.

    m = Measure(case=case, per_call=200, goal=Absolute(at_least_per_s=1000))
    results = run_measures([m], plan)    # baseline_s / subject_s are per request
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bench.harness import Case, Plan, Result, compare
from bench.report import fmt_time


@dataclass(frozen=True, slots=True, kw_only=True)
class Absolute:
    """A goal on the subject's own figure: at least so many items a second, or under a time."""

    at_least_per_s: float | None = None
    under_s: float | None = None

    def __post_init__(self) -> None:
        if (self.at_least_per_s is None) == (self.under_s is None):
            raise ValueError("an absolute goal is a rate or a time, exactly one of them")

    def met(self, subject_s: float) -> bool:
        if self.at_least_per_s is not None:
            return 1 / subject_s >= self.at_least_per_s
        assert self.under_s is not None
        return subject_s < self.under_s

    def __str__(self) -> str:
        if self.at_least_per_s is not None:
            return f">= {self.at_least_per_s:,.0f}/s"
        assert self.under_s is not None
        return f"< {fmt_time(self.under_s)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    """A case whose calls each handle ``per_call`` items, with an optional absolute goal.

    The case itself carries no goal (``Case.goal`` is a goal on the ratio)."""

    case: Case
    per_call: int = 1
    goal: Absolute | None = None

    def __post_init__(self) -> None:
        if self.case.goal is not None:
            raise ValueError(f"{self.case.name}: the goal of a measure is absolute")
        if self.per_call < 1:
            raise ValueError("a call handles at least one item")


def measure(m: Measure, plan: Plan) -> Result:
    """``compare``, then per-item times and the absolute goal marked."""
    result = compare(m.case, plan)
    n = m.per_call
    result = replace(result, baseline_s=result.baseline_s / n, subject_s=result.subject_s / n)
    if m.goal is None:
        return result
    return replace(result, goal=str(m.goal), met=m.goal.met(result.subject_s))


def run_measures(measures: Sequence[Measure], plan: Plan) -> list[Result]:
    results = []
    for m in measures:
        print(f"  {m.case.name} ...", file=sys.stderr, flush=True)
        results.append(measure(m, plan))
    return results
