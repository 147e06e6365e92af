"""Scorecards: the Clopper-Pearson bound against known values and a brute-force exact reference,
its properties, and per-provider folding of synthetic audit populations."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.errors import AuditConfigError, MalformedError
from receipts.scorecard import (
    AuditReport,
    Duplicate,
    Finding,
    ItemResult,
    Outcome,
    ProviderScore,
    ReasonCount,
    RungCount,
    clopper_pearson_upper,
    score,
)

HONEST, CHEATER, MIXED = "aa" * 32, "cc" * 32, "bb" * 32
MISMATCH = Finding("reexec", "(9)", "output y differs beyond tolerance")
BAD_SIG = Finding("signature", "(2)", "signature does not verify")
MISSING = Finding("audit", "store", "model sha256:0123 missing from the store")
UNDECODABLE = Finding("audit", "decode", "not a receipt envelope")


def item(  # a compact ItemResult builder for the tables below
    n: int,
    provider: str | None,
    outcome: Outcome = Outcome.PASSED,
    *,
    sampled: bool = False,
    amount: int = 10,
    asset: str | None = "credit",
    findings: tuple[Finding, ...] = (),
) -> ItemResult:
    return ItemResult(
        source=f"r/{n:05d}.rcpt",
        receipt_id=None if provider is None else f"sha256:{n:064x}",
        provider=provider,
        asset=None if provider is None else asset,
        amount=0 if provider is None else amount,
        sampled=sampled,
        outcome=outcome,
        rungs=("signature", "digests", "reexec") if sampled else ("signature", "digests"),
        findings=findings,
        model=f"sha256:{n:064x}",
        inputs=f"sha256:{n + 1:064x}",
        outputs=f"sha256:{n + 2:064x}",
    )


def population(seed: int = 7) -> list[ItemResult]:
    """Three providers: HONEST (600 receipts, 10% sampled), MIXED (two assets, one unchecked),
    CHEATER (400, 25% sampled, 3 sampled failures, one failure on the signature rung, an
    unchecked sampled receipt), plus two undecodable files. Shuffled by ``seed``."""
    items = [item(i, HONEST, sampled=i % 10 == 0, amount=5 + i % 7) for i in range(600)]
    items += [
        item(1000 + i, MIXED, sampled=i % 4 == 0, asset="usd" if i % 2 else "credit")
        for i in range(99)
    ]
    items.append(item(1099, MIXED, Outcome.UNCHECKED, findings=(MISSING,)))
    for i in range(400):
        n, sampled = 2000 + i, i % 4 == 0
        if sampled and i in (8, 100, 300):
            items.append(item(n, CHEATER, Outcome.FAILED, sampled=True, findings=(MISMATCH,)))
        elif i == 16:  # a sampled receipt whose model is missing from the store
            items.append(item(n, CHEATER, Outcome.UNCHECKED, sampled=True, findings=(MISSING,)))
        else:
            items.append(item(n, CHEATER, sampled=sampled))
    items.append(item(3000, CHEATER, Outcome.FAILED, findings=(BAD_SIG,), amount=1000))
    items += [item(4000 + i, None, Outcome.UNCHECKED, findings=(UNDECODABLE,)) for i in range(2)]
    random.Random(seed).shuffle(items)
    return items


def exact_cdf(k: int, n: int, p: Fraction) -> Fraction:
    """P(X <= k), X ~ Binomial(n, p), in exact rational arithmetic: the slow reference."""
    return sum(
        (Fraction(math.comb(n, i)) * p**i * (1 - p) ** (n - i) for i in range(k + 1)),
        Fraction(0),
    )


# -- the bound --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (10, 0, 0.2589),  # 1 - 0.05 ** (1/10)
        (100, 0, 0.0295),  # the "rule of three": about 3/n
        (20, 1, 0.2161),
        (100, 5, 0.1023),
        (2, 1, 0.9747),  # k = n - 1: (1 - alpha) ** (1/n) = sqrt(0.95)
    ],
)
def test_bound_matches_published_values(n: int, k: int, expected: float) -> None:
    assert clopper_pearson_upper(n=n, k=k) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("n", "k"), [(10, 0), (100, 0), (20, 1), (100, 5), (50, 49), (7, 3)])
def test_bound_is_the_root_of_the_exact_binomial_cdf(n: int, k: int) -> None:
    u = clopper_pearson_upper(n=n, k=k)
    alpha = Fraction(1) - Fraction(0.95)
    assert exact_cdf(k, n, Fraction(u)) <= alpha * (1 + Fraction(1, 10**9))
    assert exact_cdf(k, n, Fraction(u) - Fraction(1, 10**9)) > alpha


@pytest.mark.parametrize(
    ("n", "k", "expected"), [(0, 0, 1.0), (5, 5, 1.0), (1, 0, 0.95), (1, 1, 1.0)]
)
def test_bound_edges(n: int, k: int, expected: float) -> None:
    assert clopper_pearson_upper(n=n, k=k) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("n", "k", "confidence"), [(5, 6, 0.95), (-1, 0, 0.95), (5, -1, 0.95), (5, 1, 1.0), (5, 1, 0.4)]
)
def test_bound_refuses_impossible_arguments(n: int, k: int, confidence: float) -> None:
    with pytest.raises(AuditConfigError):
        clopper_pearson_upper(n=n, k=k, confidence=confidence)


def test_bound_is_fast_and_close_to_normal_for_huge_samples() -> None:
    # n = 10^6, k = n/2: normal approximation 0.5 + 1.645 * sqrt(0.25 / n) = 0.500822.
    assert clopper_pearson_upper(n=10**6, k=5 * 10**5) == pytest.approx(0.500822, abs=2e-6)


sizes = st.integers(min_value=1, max_value=400)


@given(n=sizes, data=st.data())
def test_bound_grows_with_failures(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n - 1))
    assert clopper_pearson_upper(n=n, k=k) < clopper_pearson_upper(n=n, k=k + 1)


@given(n=sizes, data=st.data())
def test_bound_shrinks_with_more_draws(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    assert clopper_pearson_upper(n=n + 1, k=k) <= clopper_pearson_upper(n=n, k=k)


@given(n=sizes, data=st.data(), confidence=st.floats(min_value=0.5, max_value=0.999))
def test_bound_is_at_least_the_observed_rate(
    n: int, data: st.DataObject, confidence: float
) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    u = clopper_pearson_upper(n=n, k=k, confidence=confidence)
    assert k / n <= u <= 1.0
    assert u <= clopper_pearson_upper(n=n, k=k, confidence=min(confidence + 0.0005, 0.9995))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=60), data=st.data())
def test_bound_agrees_with_the_exact_reference(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n - 1))
    u = Fraction(clopper_pearson_upper(n=n, k=k))
    alpha = Fraction(1) - Fraction(0.95)
    assert exact_cdf(k, n, u) <= alpha * (1 + Fraction(1, 10**9))
    assert exact_cdf(k, n, u - Fraction(1, 10**8)) > alpha


# -- scorecards -------------------------------------------------------------------------------


def by_provider(items: list[ItemResult]) -> dict[str, ProviderScore]:
    return {s.provider: s for s in score(items)}


def test_scores_are_sorted_and_leave_undecodable_items_out() -> None:
    scores = score(population())
    assert [s.provider for s in scores] == sorted([HONEST, CHEATER, MIXED])
    assert sum(s.seen for s in scores) == 600 + 100 + 401


def test_honest_provider_has_nothing_against_it() -> None:
    s = by_provider(population())[HONEST]
    assert (s.seen, s.audited, s.passed, s.failed, s.unchecked) == (600, 60, 600, 0, 0)
    assert s.failed_by_rung == ()
    assert s.failed_by_reason == s.unchecked_by_reason == ()
    assert s.failure_rate_upper == clopper_pearson_upper(n=60, k=0)
    (credit,) = s.amounts
    assert credit.failed == 0
    assert credit.covered == sum(5 + i % 7 for i in range(600))
    sampled = sum(5 + i % 7 for i in range(0, 600, 10))
    assert credit.unverified == credit.covered - sampled
    assert credit.at_risk == math.ceil(Fraction(s.failure_rate_upper) * credit.unverified)


def test_cheater_counts_rates_and_reasons() -> None:
    s = by_provider(population())[CHEATER]
    assert (s.seen, s.passed, s.failed, s.unchecked) == (401, 396, 4, 1)
    # 100 sampled, one of them unchecked: n = 99 audited, k = 3 sampled failures; the
    # signature failure outside the sample counts as failed but not in the sample.
    assert (s.audited, s.sample_failed) == (99, 3)
    assert s.sample_failure_rate == pytest.approx(3 / 99)
    assert s.failure_rate_upper == clopper_pearson_upper(n=99, k=3)
    assert s.failed_by_rung == (
        RungCount(rung="reexec", count=3),
        RungCount(rung="signature", count=1),
    )
    assert s.failed_by_reason == (
        ReasonCount(rung="reexec", step="(9)", reason=MISMATCH.reason, count=3),
        ReasonCount(rung="signature", step="(2)", reason=BAD_SIG.reason, count=1),
    )
    assert s.unchecked_by_reason == (
        ReasonCount(rung="audit", step="store", reason=MISSING.reason, count=1),
    )


def test_amount_at_risk_is_failed_plus_bound_times_unverified() -> None:
    (credit,) = by_provider(population())[CHEATER].amounts
    assert credit.covered == 400 * 10 + 1000
    assert credit.failed == 3 * 10 + 1000
    # Neither failed nor audited: 300 unsampled passes and the unchecked sampled receipt.
    assert credit.unverified == 301 * 10
    u = Fraction(clopper_pearson_upper(n=99, k=3))
    assert credit.at_risk == credit.failed + math.ceil(u * credit.unverified)


def test_amounts_are_per_asset_and_unchecked_counts_as_unverified() -> None:
    s = by_provider(population())[MIXED]
    assert [a.asset for a in s.amounts] == ["credit", "usd"]
    credit, usd = s.amounts
    assert (credit.covered, usd.covered) == (510, 490)
    assert credit.unverified + usd.unverified == 1000 - 25 * 10


def test_no_sample_puts_every_unverified_amount_at_risk() -> None:
    (s,) = score([item(i, HONEST) for i in range(5)])
    assert s.audited == 0 and s.failure_rate_upper == 1.0
    assert s.amounts[0].at_risk == s.amounts[0].unverified == 50


def test_a_receipt_failing_two_rungs_counts_once_in_each() -> None:
    twice = item(1, HONEST, Outcome.FAILED, sampled=True, findings=(BAD_SIG, MISMATCH, MISMATCH))
    (s,) = score([twice])
    assert [r.count for r in s.failed_by_rung] == [1, 1]
    assert [r.count for r in s.failed_by_reason] == [1, 1]


@pytest.mark.parametrize(
    "changes",
    [{"seen": 5}, {"sample_failed": 2}, {"audited": 9}, {"failed": 0, "passed": 3}],
)
def test_inconsistent_scorecards_cannot_exist(changes: dict[str, int]) -> None:
    fields = {
        "provider": HONEST,
        "seen": 4,
        "audited": 3,
        "passed": 2,
        "failed": 1,
        "unchecked": 1,
        "sample_failed": 1,
        "failed_by_rung": (),
        "failed_by_reason": (),
        "unchecked_by_reason": (),
        "amounts": (),
        "confidence": 0.95,
        "failure_rate_upper": 0.9,
    }
    ProviderScore(**fields)  # type: ignore[arg-type]
    with pytest.raises(MalformedError):
        ProviderScore(**{**fields, **changes})  # type: ignore[arg-type]


outcomes = st.sampled_from(list(Outcome))
items_strategy = st.lists(
    st.builds(
        item,
        n=st.integers(min_value=0, max_value=10**6),
        provider=st.sampled_from([HONEST, CHEATER, MIXED, None]),
        outcome=outcomes,
        sampled=st.booleans(),
        amount=st.integers(min_value=0, max_value=2**64 - 1),
        asset=st.sampled_from(["credit", "usd", None]),
    ),
    max_size=60,
    unique_by=lambda i: i.source,
)


@settings(max_examples=60, deadline=None)
@given(items=items_strategy, seed=st.integers())
def test_scores_do_not_depend_on_input_order(items: list[ItemResult], seed: int) -> None:
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    assert score(shuffled) == score(items)
    assert AuditReport(items=tuple(shuffled), source="s", sampling="all", seed=1) == AuditReport(
        items=tuple(items), source="s", sampling="all", seed=1
    )


@settings(max_examples=60, deadline=None)
@given(items=items_strategy)
def test_every_item_is_counted_once_and_amounts_add_up(items: list[ItemResult]) -> None:
    report = AuditReport(items=tuple(items), source="s", sampling="all", seed=None)
    assert sum(s.seen for s in report.scores) + report.unattributed.seen == len(items)
    for s in report.scores:
        mine = [i for i in items if i.provider == s.provider]
        assert sum(a.covered for a in s.amounts) == sum(i.amount for i in mine)
        for a in s.amounts:
            assert a.failed <= a.at_risk <= a.failed + a.unverified <= a.covered


# -- the report value -------------------------------------------------------------------------


def test_report_is_a_pure_function_of_its_inputs() -> None:
    dups = [Duplicate(source="z.rcpt", receipt_id="sha256:01", first_source="a.rcpt")]
    dups.append(Duplicate(source="b.rcpt", receipt_id="sha256:00", first_source="a.rcpt"))

    def build(seed: int, order: int) -> AuditReport:
        return AuditReport(
            items=tuple(population(seed)),
            source="receipts/",
            sampling="fraction 0.1 per provider, at least 20",
            seed=42,
            policy={"rungs": ["signature", "digests"], "sample": {"fraction": 0.1}},
            duplicates=tuple(dups[::order]),
            not_checked=("b", "a")[::order],
        )

    first, second = build(1, 1), build(2, -1)
    assert first == second
    assert [i.sort_key() for i in first.items] == sorted(i.sort_key() for i in first.items)
    assert [d.source for d in first.duplicates] == ["b.rcpt", "z.rcpt"]
    assert first.not_checked == ("a", "b")
    assert first.unattributed.seen == 2
    assert first.unattributed.reasons[0].count == 2
    assert not first
    assert first.failing_providers == (CHEATER,)
    assert len(first.failed_items) == 4
    assert len(first.unchecked_items) == 4


def test_report_of_honest_population_is_true() -> None:
    report = AuditReport(
        items=tuple(item(i, HONEST, sampled=True) for i in range(3)),
        source="s",
        sampling="all",
        seed=0,
    )
    assert report
    assert report.failing_providers == ()


def test_report_refuses_a_policy_that_is_not_plain_json() -> None:
    with pytest.raises(MalformedError):
        AuditReport(items=(), source="s", sampling="all", seed=0, policy={"x": object()})
    with pytest.raises(MalformedError):
        AuditReport(items=(), source="s", sampling="all", seed=0, policy={"x": math.nan})


def test_report_refuses_a_confidence_out_of_range() -> None:
    with pytest.raises(AuditConfigError):
        AuditReport(items=(), source="s", sampling="all", seed=0, confidence=1.5)
