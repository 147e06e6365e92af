"""Injected effects: the clock and the randomness that providers and verifiers use.

The core never reads the time or the random source directly; it takes a ``Clock`` and a
``RandomBytes`` function, so fixtures and tests pin them and production uses the system's.

    provider = Provider(signer, clock=FixedClock(1_700_000_000_000), random_bytes=seeded(7))
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

RandomBytes = Callable[[int], bytes]
system_random: RandomBytes = os.urandom


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class FixedClock:
    """A clock stopped at ``ms``: for fixtures, tests and re-checking a receipt as of a time."""

    ms: int

    def now_ms(self) -> int:
        return self.ms


def seeded(seed: int | bytes) -> RandomBytes:
    """A deterministic byte stream (SHA-256 in counter mode) for fixtures and tests only."""
    key = seed if isinstance(seed, bytes) else seed.to_bytes(8, "big", signed=True)
    counter = 0
    buffer = b""

    def take(n: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < n:
            buffer += hashlib.sha256(key + counter.to_bytes(8, "big")).digest()
            counter += 1
        out, buffer = buffer[:n], buffer[n:]
        return out

    return take
