"""What an audit found, receipt by receipt, and per provider (audit layer, after the runner).

``receipts.audit`` checks each receipt of a population and makes one ``ItemResult`` each; this
module holds those values and folds them into one ``ProviderScore`` per provider: receipts seen,
audited, passed, failed by rung and reason, amounts covered and at risk, and an upper confidence
bound on the provider's failure rate from its sample. ``AuditReport`` holds the whole audit.
Rendering (JSON, a terminal table, an HTML file) is ``receipts.audit_report``'s.

Every value here is a pure function of the item results, which are sorted before they are
folded: the same population and seed give the same scorecards whatever the worker count or the
order results came back in.

    scores = score(items)                      # ProviderScore per provider, sorted by key id
    clopper_pearson_upper(n=100, k=0)          # 0.0295...: no failure in 100 sampled receipts

The failure-rate bound is the exact one-sided Clopper-Pearson bound: the largest p for which
seeing at most k failures in n draws still has probability at least 1 - confidence. It is a
binomial (with replacement) bound; a sample drawn without replacement from a finite population
is less variable, so the bound is conservative there. See docs/audit.md.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from types import MappingProxyType

from receipts.errors import AuditConfigError, MalformedError

UNKNOWN_ASSET = ""  # the asset key of receipts whose asset is unknown (assets are never empty)


class Outcome(Enum):
    """What became of one receipt."""

    PASSED = "passed"  # every rung the policy ran on it passed
    FAILED = "failed"  # a rung failed: the evidence is against the receipt
    UNCHECKED = "unchecked"  # it could not be checked (undecodable, objects missing or corrupt)


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason: a failed step (``rung``, ``step`` as the verifier numbers it, ``reason``) or,
    for an unchecked receipt, why it could not be checked (rung ``"audit"``)."""

    rung: str
    step: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemResult:
    """One receipt's audit. ``source`` says where it was read (a path relative to the audited
    folder, or ``ledger entry N``); ``provider`` is the signing key id (hex), None when the
    receipt did not decode; ``amount`` is its metered amount in ``asset``'s smallest unit (0
    when unknown); ``sampled`` whether the seeded rule picked it for the expensive rungs;
    ``rungs`` the rungs that ran; the digests name its objects in the store (for disputes)."""

    source: str
    receipt_id: str | None
    provider: str | None
    asset: str | None
    amount: int
    sampled: bool
    outcome: Outcome
    rungs: tuple[str, ...]
    findings: tuple[Finding, ...]
    model: str | None = None
    inputs: str | None = None
    outputs: str | None = None

    def sort_key(self) -> tuple[str, str, str]:
        return (self.provider or "", self.receipt_id or "", self.source)

    @property
    def audited(self) -> bool:
        """Sampled and checked: one of the n draws of its provider's failure-rate bound."""
        return self.sampled and self.outcome is not Outcome.UNCHECKED


# -- the failure-rate bound -------------------------------------------------------------------


def clopper_pearson_upper(*, n: int, k: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound on a failure rate after ``k`` failures in ``n`` draws.

    Exact Clopper-Pearson: the p with P(X <= k | n, p) = 1 - confidence, found by bisection on
    the binomial CDF (computed in log space). Closed forms at the edges: n = 0 gives 1.0
    (nothing is known), k = n gives 1.0, k = 0 gives 1 - alpha^(1/n). The bisection returns the
    end of its bracket where the computed CDF is <= alpha; the CDF itself is accurate to about
    1e-9 relative (log-gamma cancellation at n ~ 10^7), far below any rate worth printing."""
    if not 0.5 <= confidence < 1.0:
        raise AuditConfigError(f"confidence must be in [0.5, 1), not {confidence!r}")
    if n < 0 or not 0 <= k <= n:
        raise AuditConfigError(f"need 0 <= k <= n, not k={k}, n={n}")
    alpha = 1.0 - confidence
    if k == n:  # n = 0 too: nothing known
        return 1.0
    if k == 0:
        return -math.expm1(math.log(alpha) / n)
    target = math.log(alpha)
    # At p = k/n the CDF is at least 1/2 (the median of a binomial with integer mean is the
    # mean), so with confidence >= 1/2 the root lies in [k/n, 1].
    lo, hi = k / n, 1.0
    while True:
        mid = (lo + hi) / 2
        if mid in (lo, hi):  # the bracket is two adjacent floats
            return hi
        if _log_binom_cdf(k, n, mid) > target:
            lo = mid
        else:
            hi = mid


def _log_binom_cdf(k: int, n: int, p: float) -> float:
    """log P(X <= k) for X ~ Binomial(n, p), for k/n <= p < 1 and 0 <= k < n.

    Sums the probability masses from k down: for p >= k/n each is smaller than the one above it
    (their ratio i(1-p) / ((n-i+1)p) < 1), so the sum stops once the terms no longer change it."""
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    odds = (1.0 - p) / p
    term, total = 1.0, 1.0
    for i in range(k, 0, -1):
        term *= i * odds / (n - i + 1)
        total += term
        if term < total * 1e-17:
            break
    return log_pmf + math.log(total)


# -- per provider -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RungCount:
    """How many failed receipts had a failed step in ``rung``."""

    rung: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasonCount:
    """How many receipts carried one finding (a failed step, or why a receipt was unchecked)."""

    rung: str
    step: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetAmounts:
    """One provider's amounts in one asset, in its smallest unit.

    ``covered``: every receipt seen. ``failed``: the receipts that failed. ``unverified``: the
    receipts neither failed nor audited (not sampled, or unchecked): what the sample vouches for
    only statistically. ``at_risk`` = failed + ceil(failure_rate_upper x unverified)."""

    asset: str
    covered: int
    failed: int
    unverified: int
    at_risk: int

    def __post_init__(self) -> None:
        if not 0 <= self.failed <= self.covered or not 0 <= self.unverified <= self.covered:
            raise MalformedError(f"amounts of {self.asset!r} do not add up")
        if not self.failed <= self.at_risk <= self.failed + self.unverified:
            raise MalformedError(f"amount at risk of {self.asset!r} out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderScore:
    """One provider's scorecard. ``seen`` = ``passed`` + ``failed`` + ``unchecked``;
    ``audited`` (n) counts its sampled, checked receipts and ``sample_failed`` (k) those of them
    that failed; ``failure_rate_upper`` is ``clopper_pearson_upper(n, k, confidence)``.
    Failures count receipts: one with failed steps in two rungs counts once in each."""

    provider: str
    seen: int
    audited: int
    passed: int
    failed: int
    unchecked: int
    sample_failed: int
    failed_by_rung: tuple[RungCount, ...]
    failed_by_reason: tuple[ReasonCount, ...]
    unchecked_by_reason: tuple[ReasonCount, ...]
    amounts: tuple[AssetAmounts, ...]
    confidence: float
    failure_rate_upper: float

    def __post_init__(self) -> None:
        if self.seen != self.passed + self.failed + self.unchecked:
            raise MalformedError("seen is not passed + failed + unchecked")
        if not 0 <= self.sample_failed <= min(self.audited, self.failed):
            raise MalformedError("sample failures out of range")
        if not 0 <= self.audited <= self.passed + self.failed:
            raise MalformedError("audited out of range")

    @property
    def sample_failure_rate(self) -> float | None:
        """k/n, the observed rate; None when nothing was audited."""
        return self.sample_failed / self.audited if self.audited else None


def score(items: Iterable[ItemResult], confidence: float = 0.95) -> tuple[ProviderScore, ...]:
    """One scorecard per provider, sorted by key id; undecodable items (provider None) are left
    out (see ``unattributed``)."""
    groups: dict[str, list[ItemResult]] = {}
    for item in items:
        if item.provider is not None:
            groups.setdefault(item.provider, []).append(item)
    return tuple(_score_one(key, groups[key], confidence) for key in sorted(groups))


def _score_one(provider: str, items: list[ItemResult], confidence: float) -> ProviderScore:
    outcomes = Counter(item.outcome for item in items)
    audited = sum(item.audited for item in items)
    k = sum(item.audited and item.outcome is Outcome.FAILED for item in items)
    bound = clopper_pearson_upper(n=audited, k=k, confidence=confidence)
    failed = [item for item in items if item.outcome is Outcome.FAILED]
    unchecked = [item for item in items if item.outcome is Outcome.UNCHECKED]
    by_rung = Counter(rung for item in failed for rung in {f.rung for f in item.findings})
    return ProviderScore(
        provider=provider,
        seen=len(items),
        audited=audited,
        passed=outcomes[Outcome.PASSED],
        failed=outcomes[Outcome.FAILED],
        unchecked=outcomes[Outcome.UNCHECKED],
        sample_failed=k,
        failed_by_rung=tuple(RungCount(rung=r, count=by_rung[r]) for r in sorted(by_rung)),
        failed_by_reason=reason_counts(failed),
        unchecked_by_reason=reason_counts(unchecked),
        amounts=_amounts(items, bound),
        confidence=confidence,
        failure_rate_upper=bound,
    )


def reason_counts(items: Iterable[ItemResult]) -> tuple[ReasonCount, ...]:
    """Findings counted once per receipt that carries them, sorted by (rung, step, reason)."""
    counts = Counter(
        key for item in items for key in {(f.rung, f.step, f.reason) for f in item.findings}
    )
    return tuple(
        ReasonCount(rung=r, step=s, reason=why, count=counts[r, s, why])
        for r, s, why in sorted(counts)
    )


def _amounts(items: list[ItemResult], bound: float) -> tuple[AssetAmounts, ...]:
    covered: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    unverified: Counter[str] = Counter()
    for item in items:
        asset = item.asset if item.asset is not None else UNKNOWN_ASSET
        covered[asset] += item.amount
        if item.outcome is Outcome.FAILED:
            failed[asset] += item.amount
        elif not item.audited:
            unverified[asset] += item.amount
    # The bound is a float; its exact binary value times an integer amount, rounded up, keeps
    # the amount at risk exact and never below the bound's share.
    rate = Fraction(bound)
    return tuple(
        AssetAmounts(
            asset=asset,
            covered=covered[asset],
            failed=failed[asset],
            unverified=unverified[asset],
            at_risk=failed[asset] + math.ceil(rate * unverified[asset]),
        )
        for asset in sorted(covered)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Unattributed:
    """Items no provider can be charged with (the receipt did not decode), and why."""

    seen: int
    reasons: tuple[ReasonCount, ...]


def unattributed(items: Iterable[ItemResult]) -> Unattributed:
    orphans = [item for item in items if item.provider is None]
    return Unattributed(seen=len(orphans), reasons=reason_counts(orphans))


# -- the whole audit --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A receipt read twice: ``source`` was left out, ``first_source`` was audited."""

    source: str
    receipt_id: str
    first_source: str


def _item_order(item: ItemResult) -> tuple[object, ...]:
    # ``sort_key`` first; the rest only breaks ties, so that no input order can show through.
    return (
        item.sort_key(),
        item.outcome.value,
        item.sampled,
        item.asset or "",
        item.amount,
        item.rungs,
        tuple((f.rung, f.step, f.reason) for f in item.findings),
        (item.model or "", item.inputs or "", item.outputs or ""),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """A whole audit, a pure function of its fields: ``items`` sorted by ``ItemResult.sort_key``,
    ``duplicates`` by (receipt id, source), ``not_checked`` (what could not be checked beyond
    single receipts, and why) sorted; ``policy`` is a JSON-able summary, copied with its keys
    sorted. ``seed`` is the sampling seed as given (text as is, bytes as hex). ``scores`` and
    ``unattributed`` are derived at construction. No clock inside."""

    items: tuple[ItemResult, ...]
    source: str
    sampling: str
    seed: str | int | bytes | None
    policy: Mapping[str, object] = field(default_factory=dict, hash=False)
    duplicates: tuple[Duplicate, ...] = ()
    not_checked: tuple[str, ...] = ()
    confidence: float = 0.95
    scores: tuple[ProviderScore, ...] = field(init=False)
    unattributed: Unattributed = field(init=False)

    def __post_init__(self) -> None:
        clopper_pearson_upper(n=0, k=0, confidence=self.confidence)  # checks the confidence
        items = tuple(sorted(self.items, key=_item_order))
        try:
            policy = json.loads(json.dumps(dict(self.policy), sort_keys=True, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise MalformedError(f"the policy summary is not plain JSON: {e}") from e
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "items", items)
        set_(self, "policy", MappingProxyType(policy))
        set_(self, "duplicates", tuple(sorted(self.duplicates, key=_duplicate_order)))
        set_(self, "not_checked", tuple(sorted(self.not_checked)))
        set_(self, "scores", score(items, self.confidence))
        set_(self, "unattributed", unattributed(items))

    def __bool__(self) -> bool:
        """True when no receipt failed (unchecked ones are reported, not held against it)."""
        return not any(i.outcome is Outcome.FAILED for i in self.items)

    @property
    def failed_items(self) -> tuple[ItemResult, ...]:
        return tuple(i for i in self.items if i.outcome is Outcome.FAILED)

    @property
    def unchecked_items(self) -> tuple[ItemResult, ...]:
        return tuple(i for i in self.items if i.outcome is Outcome.UNCHECKED)

    @property
    def failing_providers(self) -> tuple[str, ...]:
        return tuple(s.provider for s in self.scores if s.failed)


def _duplicate_order(d: Duplicate) -> tuple[str, str, str]:
    return (d.receipt_id, d.source, d.first_source)
