"""Which receipts an audit re-executes: audit step (a4), sample.

Below ``receipts.audit`` (which re-exports these). Per provider, the receipts whose keyed hash
SHA-256(domain, seed, receipt id) ranks lowest: the choice is a function of the set of receipt
ids and the seed alone, not of their order, the worker count or the machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from receipts.audit_policy import MAX_RECEIPTS
from receipts.errors import AuditConfigError

__all__ = ["SAMPLE_DOMAIN", "SamplingRule", "choose_sample", "sample_key"]

SAMPLE_DOMAIN = b"inference-receipts/v1/audit-sample\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingRule:
    """How many receipts of each provider get the sample rungs: a ``fraction`` of each
    provider's receipts (rounded up), or a total ``count`` split across providers in proportion
    to their receipts (largest remainders); never fewer than ``min_per_provider`` (nor more than
    the provider has)."""

    fraction: float | None = None
    count: int | None = None
    min_per_provider: int = 5

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise AuditConfigError("sample by a fraction or by a count, not both")
        if self.fraction is not None and not 0 <= self.fraction <= 1:
            raise AuditConfigError("the sample fraction must be in [0, 1]")
        if self.count is not None and not 0 <= self.count <= MAX_RECEIPTS:
            raise AuditConfigError("the sample count must be a count")
        if not 0 <= self.min_per_provider <= MAX_RECEIPTS:
            raise AuditConfigError("min_per_provider must be a count")

    def sizes(self, strata: Mapping[str, int]) -> dict[str, int]:
        """How many to sample in each stratum (provider -> its receipt count)."""
        if self.fraction is not None:
            # As the decimal the user wrote: 0.07 of 100 is 7, not ceil(7.000000000000001).
            share = Fraction(repr(self.fraction))
            wanted = {p: math.ceil(share * n) for p, n in strata.items()}
        else:
            assert self.count is not None
            total = sum(strata.values())
            if total == 0:
                return dict.fromkeys(strata, 0)
            exact = {p: self.count * n / total for p, n in strata.items()}
            wanted = {p: math.floor(x) for p, x in exact.items()}
            left = max(0, min(self.count, total) - sum(wanted.values()))
            for p in sorted(strata, key=lambda p: (-(exact[p] - wanted[p]), p))[:left]:
                wanted[p] += 1
        return {p: min(n, max(wanted[p], self.min_per_provider)) for p, n in strata.items()}

    def describe(self) -> str:
        base = (
            "every receipt"
            if self.fraction == 1
            else f"{self.fraction:.4g} of each provider's receipts"
            if self.fraction is not None
            else f"{self.count} receipts in proportion to each provider's"
        )
        return f"{base}, at least {self.min_per_provider} per provider"


def sample_key(seed: bytes, rid: bytes) -> bytes:
    """Where a receipt ranks in its provider's sampling order (lowest first)."""
    return hashlib.sha256(SAMPLE_DOMAIN + len(seed).to_bytes(4, "big") + seed + rid).digest()


def choose_sample(
    receipts: Mapping[str, Sequence[bytes]], rule: SamplingRule, seed: bytes
) -> set[bytes]:
    """The receipt ids (per provider: key id hex -> receipt ids) the rule picks under ``seed``."""
    sizes = rule.sizes({p: len(ids) for p, ids in receipts.items()})
    chosen: set[bytes] = set()
    for provider, ids in receipts.items():
        ranked = sorted(ids, key=lambda rid: sample_key(seed, rid))
        chosen.update(ranked[: sizes[provider]])
    return chosen
