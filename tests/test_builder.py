"""The constraint builder: every gadget computes what integer arithmetic (ONNX's integer ops)
computes, its constraints hold for that witness, and they refuse the forgeries that matter.

Properties over random integers: the witness of each gadget satisfies its R1CS (the slow Python
checker) and the public output equals Python's result. Soundness: a changed output, a bit that
is not 0 or 1, and Div's quotient forged through the field's inverse of the divisor are refused.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.builder import Builder, Signal, constant, dot, signed_bits
from circuits.r1cs import R1CS, P, check_witness
from receipts.errors import CircuitFormatError, WitnessError

INT32 = st.integers(-(2**31), 2**31 - 1)
INT8 = st.integers(-128, 127)


def _prove(
    make: Callable[[Builder, list[Signal]], Signal], *values: int
) -> tuple[R1CS, list[int], int]:
    """Build ``make`` over public inputs ``values``; the R1CS, witness and the output value."""
    b = Builder()
    inputs = [b.input(v, public=True) for v in values]
    out = make(b, inputs)
    r1cs, witness = b.finish([out])
    check_witness(r1cs, witness)
    return r1cs, witness, out.value


def _signed(field_value: int) -> int:
    return field_value - P if field_value > P // 2 else field_value


def _trunc_div(a: int, d: int) -> int:
    q = abs(a) // d
    return q if a >= 0 else -q


@settings(max_examples=60, deadline=None)
@given(INT32, INT32)
def test_linear_ops_cost_nothing_and_compute_integers(a: int, b: int) -> None:
    r1cs, witness, value = _prove(lambda _, s: s[0].scale(3) - s[1] + constant(7), a, b)
    assert value == 3 * a - b + 7
    assert _signed(witness[1]) == value
    assert len(r1cs.constraints) == 1  # only the output wire's equality


@settings(max_examples=40, deadline=None)
@given(st.lists(INT8, min_size=1, max_size=16), st.data())
def test_dot_with_constant_weights_is_free(xs: list[int], data: st.DataObject) -> None:
    weights = data.draw(st.lists(INT8, min_size=len(xs), max_size=len(xs)))
    r1cs, _, value = _prove(lambda _, s: dot(s, weights), *xs)
    assert value == sum(x * w for x, w in zip(xs, weights, strict=True))
    assert len(r1cs.constraints) == 1


@settings(max_examples=40, deadline=None)
@given(INT32, INT32)
def test_mul(a: int, b: int) -> None:
    assert _prove(lambda bb, s: bb.mul(s[0], s[1]), a, b)[2] == a * b


@settings(max_examples=40, deadline=None)
@given(INT32)
def test_relu(a: int) -> None:
    _, witness, value = _prove(lambda bb, s: bb.relu(s[0], bits=32), a)
    assert value == max(a, 0)
    assert _signed(witness[1]) == max(a, 0)


@settings(max_examples=40, deadline=None)
@given(INT32, INT32)
def test_max_and_min(a: int, b: int) -> None:
    assert _prove(lambda bb, s: bb.maximum(s[0], s[1], bits=33), a, b)[2] == max(a, b)
    assert _prove(lambda bb, s: bb.minimum(s[0], s[1], bits=33), a, b)[2] == min(a, b)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), st.integers(0, 2**40))
def test_signed_bits_is_the_tightest_width(lo: int, span: int) -> None:
    hi = lo + span
    n = signed_bits(lo, hi)
    assert -(1 << (n - 1)) <= lo and hi < 1 << (n - 1)
    if n > 1:
        assert not (-(1 << (n - 2)) <= lo and hi < 1 << (n - 2))


@settings(max_examples=60, deadline=None)
@given(INT32, st.integers(1, 2**16))
def test_div_truncates_toward_zero(a: int, d: int) -> None:
    assert _prove(lambda bb, s: bb.div_trunc(s[0], d, bits=32), a)[2] == _trunc_div(a, d)


@pytest.mark.parametrize(("lo", "hi", "value"), [(0, 255, 0), (0, 255, 255), (-128, 127, -128),
                                                  (-5, 9, 9), (-5, 9, -5), (3, 3, 3)])  # fmt: skip
def test_range_checks_accept_the_bounds(lo: int, hi: int, value: int) -> None:
    b = Builder()
    b.assert_range(b.input(value, public=False), lo, hi)
    check_witness(*b.finish([]))


@pytest.mark.parametrize(("lo", "hi", "value"), [(0, 255, 256), (0, 255, -1), (-5, 9, 10),
                                                  (-5, 9, -6)])  # fmt: skip
def test_range_checks_refuse_values_outside(lo: int, hi: int, value: int) -> None:
    b = Builder()
    with pytest.raises(WitnessError, match="outside"):
        b.assert_range(b.input(value, public=False), lo, hi)


def test_bad_gadget_arguments_are_refused() -> None:
    b = Builder()
    x = b.input(5, public=True)
    with pytest.raises(CircuitFormatError):
        b.div_trunc(x, 0, bits=32)
    with pytest.raises(CircuitFormatError):
        b.bits(x, 0)
    with pytest.raises(CircuitFormatError):
        b.assert_range(x, 3, 2)
    with pytest.raises(CircuitFormatError):
        dot([x], [1, 2])


# --- soundness: the constraints refuse forged witnesses -----------------------------------------


def test_a_changed_output_breaks_the_constraints() -> None:
    r1cs, witness, _ = _prove(lambda bb, s: bb.relu(s[0], bits=32), -7)
    forged = list(witness)
    forged[1] = 5  # claim relu(-7) = 5
    with pytest.raises(WitnessError, match="constraint"):
        check_witness(r1cs, forged)


def test_a_bit_that_is_not_a_bit_breaks_the_constraints() -> None:
    b = Builder()
    x = b.input(6, public=True)
    bits = b.bits(x, 3)
    r1cs, witness = b.finish([])
    check_witness(r1cs, witness)
    # 6 = 0*1 + 1*2 + 1*4; forge bits (2, 2, 0): 2 + 4 = 6 but 2 is not a bit.
    order_of = {bit.terms[0][0]: i for i, bit in enumerate(bits)}
    assert len(order_of) == 3
    forged = list(witness)
    positions = [i for i, v in enumerate(witness) if i > 1][:3]  # the three bit wires, in order
    for position, value in zip(positions, (2, 2, 0), strict=True):
        forged[position] = value
    with pytest.raises(WitnessError, match="constraint"):
        check_witness(r1cs, forged)


class _Spy(Builder):
    """A builder that remembers the wires ``div_trunc`` makes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[Signal] = []

    def _wire(self, value: int) -> Signal:
        s = Builder._wire(self, value)
        self.made.append(s)
        return s


def test_a_quotient_forged_through_the_field_inverse_is_refused() -> None:
    """Over the field, (s - r') / d exists for every r': a prover could claim 7 / 2 = 7 * 2^-1
    mod P with remainder 0 and make every constraint on r hold. Only the range proof on q
    refuses it: the forged witness below is consistent everywhere else."""
    b = _Spy()
    s = b.input(7, public=True)
    b.made.clear()
    q = b.div_trunc(s, 2, bits=32)
    made = list(b.made)  # q, q's 32 range bits, s's 32 sign bits, signed r, r's range bit
    r1cs, witness = b.finish([q])
    check_witness(r1cs, witness)
    forged = list(witness)
    fake_q = 7 * pow(2, -1, P) % P
    forged[b.position(q)] = forged[1] = fake_q  # the quotient and the public output
    signed_r, r_bit = made[-2], made[-1]
    forged[b.position(signed_r)] = 0  # r = 7 - 2 * fake_q = 0 in the field
    forged[b.position(r_bit)] = 0
    with pytest.raises(WitnessError, match="constraint") as refused:
        check_witness(r1cs, forged)
    # The one constraint that fails is the sum of q's range bits (the 33rd of div_trunc's).
    failed = int(str(refused.value).split()[1])
    q_bits_sum = 32
    assert failed == q_bits_sum


def test_wires_are_laid_out_as_snarkjs_expects() -> None:
    b = Builder()
    hidden = b.input(2, public=False)
    shown = b.input(3, public=True)
    out = b.mul(hidden, shown)
    r1cs, witness = b.finish([out])
    assert (r1cs.n_pub_out, r1cs.n_pub_in, r1cs.n_prv_in) == (1, 1, 1)
    assert witness[:4] == [1, 6, 3, 2]  # one, output, public input, private input


def test_signal_arithmetic_drops_cancelled_terms() -> None:
    b = Builder()
    x = b.input(4, public=True)
    zero = x - x
    assert zero.terms == () and zero.value == 0
    assert x.scale(0) == Signal((), 0)
