"""The constraint builder the compiler emits into: signals with their values, and the gadgets
integer ONNX ops need (circuits layer, between the compiler and ``circuits.r1cs``).

A ``Signal`` is a linear combination of wires together with its integer value (the witness is
computed as the circuit is built, so every gadget is checked against plain integer arithmetic).
Linear operations (adding signals, multiplying by a constant, so a MatMulInteger with constant
weights) cost no constraint; a product of two signals costs one; proving a value lies in
``[lo, hi]`` costs one constraint per bit plus one. Values are ordinary Python integers (signed);
the field sees them mod P, and range checks keep them far from wrapping (|v| < 2^200).

``finish`` lays the wires out as snarkjs expects (one, public outputs, public inputs, private
inputs, the rest) and returns the ``R1CS`` with its witness.

    b = Builder()
    x = b.input(-5, public=True)
    y = b.relu(x, bits=32)                  # 0, with the sign proven from 32 bits
    r1cs, witness = b.finish(outputs=[y])
    check_witness(r1cs, witness)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from circuits.r1cs import R1CS, Constraint, LinearCombination, P
from receipts.errors import CircuitFormatError, WitnessError

MAX_BITS = 200  # values stay far below P / 2 (about 2^253), so no range check can wrap


@dataclass(frozen=True, slots=True)
class Signal:
    """``sum(coefficient * wire)`` (wire 0 is the constant one) and its integer value."""

    terms: tuple[tuple[int, int], ...]
    value: int

    def __add__(self, other: Signal) -> Signal:
        return Signal(_merge(self.terms, other.terms, 1), self.value + other.value)

    def __sub__(self, other: Signal) -> Signal:
        return Signal(_merge(self.terms, other.terms, -1), self.value - other.value)

    def scale(self, k: int) -> Signal:
        """``k * self`` for a constant ``k`` (free: no constraint)."""
        if k == 0:
            return Signal((), 0)
        return Signal(tuple((w, c * k % P) for w, c in self.terms), self.value * k)

    def shift(self, k: int) -> Signal:
        """``self + k`` for a constant ``k``."""
        return self + constant(k)


def constant(k: int) -> Signal:
    return Signal(((0, k % P),) if k % P else (), k)


def _merge(
    a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...], sign: int
) -> tuple[tuple[int, int], ...]:
    out = dict(a)
    for w, c in b:
        out[w] = (out.get(w, 0) + sign * c) % P
    return tuple(sorted((w, c) for w, c in out.items() if c))


def signed_bits(lo: int, hi: int) -> int:
    """The fewest bits ``n`` with ``[lo, hi]`` inside ``[-2^(n-1), 2^(n-1))``."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, max(hi, 0).bit_length()) + 1


def dot(signals: Sequence[Signal], weights: Sequence[int]) -> Signal:
    """``sum(w_i * s_i)`` for constant weights: one pass, no constraint (MatMulInteger rows)."""
    if len(signals) != len(weights):
        raise CircuitFormatError("dot: as many weights as signals")
    acc: dict[int, int] = {}
    value = 0
    for s, k in zip(signals, weights, strict=True):
        if k:
            value += s.value * k
            for w, c in s.terms:
                acc[w] = (acc.get(w, 0) + c * k) % P
    return Signal(tuple(sorted((w, c) for w, c in acc.items() if c)), value)


@dataclass(slots=True)
class Builder:
    """Wires, their values and the constraints, in the order the compiler makes them."""

    values: list[int] = field(default_factory=lambda: [1])
    constraints: list[tuple[Signal, Signal, Signal]] = field(default_factory=list)
    public_inputs: list[int] = field(default_factory=list)
    private_inputs: list[int] = field(default_factory=list)
    layout: dict[int, int] = field(default_factory=dict)  # set by ``finish``: wire -> position

    def position(self, s: Signal) -> int:
        """Where the single wire ``s`` sits in the finished witness (tests, debugging)."""
        if len(s.terms) != 1 or s.terms[0][1] != 1:
            raise CircuitFormatError("only a single wire has a position")
        return self.layout[s.terms[0][0]]

    def _wire(self, value: int) -> Signal:
        self.values.append(value)
        return Signal(((len(self.values) - 1, 1),), value)

    def input(self, value: int, *, public: bool) -> Signal:
        """A new input wire (public inputs become public signals)."""
        s = self._wire(value)
        (self.public_inputs if public else self.private_inputs).append(s.terms[0][0])
        return s

    def enforce(self, a: Signal, b: Signal, c: Signal) -> None:
        """Add ``a * b = c``; the values must already satisfy it (a builder bug otherwise)."""
        if (a.value * b.value - c.value) % P:
            raise WitnessError("a gadget produced values that break its own constraint")
        self.constraints.append((a, b, c))

    def mul(self, a: Signal, b: Signal) -> Signal:
        """``a * b`` on a new wire: one constraint."""
        out = self._wire(a.value * b.value)
        self.enforce(a, b, out)
        return out

    def bits(self, s: Signal, n: int) -> list[Signal]:
        """The ``n`` low bits of ``s``, proven: each bit is 0 or 1 and they sum to ``s``, so
        ``0 <= s < 2^n`` holds (n + 1 constraints). Raises if the value does not fit."""
        if not 1 <= n <= MAX_BITS:
            raise CircuitFormatError(f"a range check of {n} bits (1..{MAX_BITS})")
        if not 0 <= s.value < 1 << n:
            raise WitnessError(f"value {s.value} is outside [0, 2^{n})")
        out = []
        for i in range(n):
            bit = self._wire(s.value >> i & 1)
            self.enforce(bit, bit, bit)  # b * b = b: b is 0 or 1
            out.append(bit)
        self.enforce(dot(out, [1 << i for i in range(n)]), constant(1), s)
        return out

    def assert_range(self, s: Signal, lo: int, hi: int) -> None:
        """Prove ``lo <= s <= hi`` (both sides when the span is not a power of two)."""
        span = hi - lo
        if span < 0:
            raise CircuitFormatError("an empty range")
        if not lo <= s.value <= hi:
            raise WitnessError(f"value {s.value} is outside [{lo}, {hi}]")
        n = max(1, span.bit_length())
        self.bits(s.shift(-lo), n)
        if span + 1 != 1 << n:
            self.bits(constant(hi) - s, n)

    def is_nonnegative(self, s: Signal, bits: int) -> Signal:
        """1 if ``s >= 0`` else 0, for ``s`` in ``[-2^(bits-1), 2^(bits-1))`` (proven)."""
        shifted = self.bits(s.shift(1 << (bits - 1)), bits)
        return shifted[-1]  # the top bit of s + 2^(bits-1)

    def select(self, flag: Signal, a: Signal, b: Signal) -> Signal:
        """``a`` if ``flag`` (a proven bit) else ``b``: ``b + flag * (a - b)``, one constraint."""
        return b + self.mul(flag, a - b)

    def relu(self, s: Signal, *, bits: int) -> Signal:
        return self.mul(self.is_nonnegative(s, bits), s)

    def maximum(self, a: Signal, b: Signal, *, bits: int) -> Signal:
        """``max(a, b)``; ``bits`` is the signed width of ``a - b`` (``signed_bits``)."""
        return self.select(self.is_nonnegative(a - b, bits), a, b)

    def minimum(self, a: Signal, b: Signal, *, bits: int) -> Signal:
        """``min(a, b)``; ``bits`` as for ``maximum``."""
        return self.select(self.is_nonnegative(a - b, bits), b, a)

    def div_trunc(
        self, s: Signal, d: int, *, bits: int, q_range: tuple[int, int] | None = None
    ) -> Signal:
        """``s / d`` truncated toward zero (ONNX integer Div) for a positive constant ``d`` and
        ``s`` of signed width ``bits``: ``s = q*d + r`` with ``|r| < d`` and ``r`` of the sign
        of ``s`` (or zero), all proven. ``q_range`` bounds the quotient (default: ``bits``)."""
        if d <= 0:
            raise CircuitFormatError("Div by a constant: only positive divisors")
        q_value = abs(s.value) // d * (1 if s.value >= 0 else -1)
        q = self._wire(q_value)
        # q must be proven small too: over the field, (s - r') / d exists for every r', so a
        # range on r alone leaves q free. With both small, s = q*d + r holds over the integers.
        q_lo, q_hi = q_range or (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        self.assert_range(q, q_lo, q_hi)
        r = s - q.scale(d)
        nonneg = self.is_nonnegative(s, bits)
        # |r| < d with r's sign following s: r * (2*nonneg - 1) in [0, d-1].
        signed_r = self.mul(nonneg.scale(2).shift(-1), r)
        self.assert_range(signed_r, 0, d - 1)
        return q

    def finish(self, outputs: Sequence[Signal]) -> tuple[R1CS, list[int]]:
        """The R1CS and witness with wires laid out as snarkjs expects; each output becomes a
        public-output wire equal to its signal (one constraint each)."""
        out_wires = [self._wire(s.value) for s in outputs]
        for wire, s in zip(out_wires, outputs, strict=True):
            self.constraints.append((wire, constant(1), s))
        order = [0, *(w.terms[0][0] for w in out_wires), *self.public_inputs,
                 *self.private_inputs]  # fmt: skip
        placed = set(order)
        order += [w for w in range(len(self.values)) if w not in placed]
        where = {old: new for new, old in enumerate(order)}
        self.layout = where

        def lc(s: Signal) -> LinearCombination:
            return LinearCombination.of({where[w]: c for w, c in s.terms})

        r1cs = R1CS(
            n_wires=len(order),
            n_pub_out=len(outputs),
            n_pub_in=len(self.public_inputs),
            n_prv_in=len(self.private_inputs),
            constraints=tuple(Constraint(lc(a), lc(b), lc(c)) for a, b, c in self.constraints),
        )
        return r1cs, [self.values[old] % P for old in order]
