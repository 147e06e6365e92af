"""The rounding bound of the Freivalds check (verification layer, below ``receipts.freivalds``
and ``receipts.freivalds_conv``, which number the check's steps (1) to (6)).

A float claim is accepted when its residual is within what honest rounding can explain. This
module holds that bound, step (5): the float types' constants, the coefficients (``_Rounding``),
the row and column norms it is computed from (``_norms``, ``_squares``), and the finiteness
helpers through which NaN and infinities make the check not applicable (step (1)). It also holds
what both check modules share: the multiply-add counter and the two internal outcomes.

    rounding = _Rounding.of(1024, 1024, np.dtype(np.float32))  # g, h and the underflow terms
    row_a = _norms("ij,ij->i", a, 1024, _Counted())  # upper bounds on the rows' 2-norms

Float bound. Let ``u`` be the tensor type's unit roundoff (2**-11 float16, 2**-8 bfloat16,
2**-24 float32, 2**-53 float64), ``v`` the working type's, ``e = 2**-53``, ``t_u`` and ``t_v``
the two types' smallest normal numbers and ``gamma_j(x) = j x / (1 - j x)``. For a claim
``Y ~ alpha A B + beta C`` (MatMul: ``alpha = 1``, ``beta = 0``) with inner dimension ``k`` and
checksum length ``n``, the check accepts element ``i`` of round ``r`` when

    |Y r - alpha A (B r) - beta C r|_i <= g S_i + h T_i + U_i
    S_i = |alpha| ||a_i|| sum_j ||b_j|| |r_j| + |beta| (|C| |r|)_i  >= (|alpha| |A| |B| |r| + ...)_i
    T_i = ||y_i|| ||r||                                              >= (|Y| |r|)_i
    g = 2 (gamma_{k+2}(u) + gamma_{n+1}(v) + gamma_k(v) + gamma_{n+1}(v) gamma_k(v) + 4 e)
    h = 2 gamma_n(v)
    U_i = 6 (k + 2) t_u sum(|r|) + t_v (6 n (1 + |beta|) + |alpha| (9 n sqrt(k) ||a_i|| + 6 k))

``||.||`` is the 2-norm (rows ``a_i`` of A and ``y_i`` of Y, columns ``b_j`` of B; for ``C``:
``|c_i| sum(|r|)`` when C has one column, else ``||c_i|| ||r||``); Cauchy-Schwarz gives
``(|A| |B|)_ij <= ||a_i|| ||b_j||``. The terms: in any summation order (blocked, FMA, wider
accumulators, a final rounding to the tensor type) the claim is within
``gamma_{k+2}(u) (|alpha| |A| |B| + |beta| |C|)`` of the exact value, ``+ 2`` covering Gemm's
scaling and addend and Conv's bias. Computing ``Y r`` in the working type adds at most
``gamma_n(v) |Y| |r|``; ``A (B r)`` at most
``(gamma_n + gamma_k + gamma_n gamma_k)(v) |A| |B| |r|`` (``B r`` rounded, then ``A`` times it);
Gemm's ``C r`` and Conv's ``r^T b`` at most ``gamma_{n+1}(v) |C| |r|`` (``n + 1``: a one-column C
multiplies ``sum(r)`` in float64); ``4 e`` the float64 scaling and adding of the two sides.
Underflow: each multiply or add may lose up to ``t`` (flush-to-zero included), so a length-``L``
inner product up to ``3 L t``; ``sqrt(k) ||a_i||`` bounds ``sum_l |a_il|``. The norms are computed
in the working type by ``np.einsum`` (sums of squares, no temporaries) and made upper bounds: every
term is >= 0, so the exact sum is at most ``(s + 3 L t_v) / (1 - gamma_L(v))`` for a computed ``s``
(a proven margin where a fixed one such as 1.01 would be a guess); a float32 sum that overflows, or
is so small that ``3 L t_v`` would swamp it, is recomputed in float64. The factor 2 is the safety
margin; it also covers the last rounding of the difference and the bound's own float64 evaluation
(a few dozen roundings of ``e``). ``g < 1`` keeps every ``gamma`` above below 1/2. Conv is the same
with ``X``'s windows as the rows of A: ``||a_i||`` is the 2-norm of the receptive field (over the
group's input channels and the kernel), ``b_j`` the filter of output channel ``j``,
``n = C_out/group`` and ``k = C_in/group * kernel volume``.

Non-finite values are found by the norms, at no extra pass: numpy's own einsum loops (not BLAS,
which may skip zeros) sum squares, so a NaN stays NaN and an infinity gives infinity (all terms >=
0, no ``inf - inf``); only then is the tensor scanned, to tell them from overflow. Small tensors
(bias, one-column addend) are scanned directly.

Not covered, so false alarms are possible: arithmetic narrower than the tensor type (TF32,
bfloat16 "fast math"), subnormal inputs read as zero (denormals-are-zero), and algorithms outside
the bound (Winograd or FFT convolution, Strassen). An element off by ``d`` changes residual
``i`` by ``d r_j`` (and its bound by at most ``h ||r|| |d|``, a small fraction); a round misses
it with probability of about ``b_i / |d|`` at most, ``b_i`` being the bound with ``|r|``
replaced by ones: about ``g n k`` for unit-scale data, far above typical rounding. Smaller
errors go unseen; the check catches gross errors, not subtle ones (1024**3 float32, N(0, 1):
bounds near 200, a corruption of 400 caught in 16 of 20 trials, of 6400 in all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

# Unit roundoff and smallest normal number of each float type the check handles.
_FLOATS = {
    "float16": (2.0**-11, 2.0**-14),
    "bfloat16": (2.0**-8, 2.0**-126),
    "float32": (2.0**-24, 2.0**-126),
    "float64": (2.0**-53, 2.0**-1022),
}
_U64 = 2.0**-53
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


# The check's two internal outcomes; ``check_node`` catches both, so neither escapes it.


class _NotApplicableError(Exception):
    """Internal, never escapes: the node is outside what the check handles (-> None)."""


class _DoesNotFitError(Exception):
    """Internal, never escapes: inputs or claimed output do not fit the operator (-> failed)."""


class _Counted:
    """Matrix products that count their multiply-adds (batch broadcasting included). Counted:
    every pass over tensor data (checksums, norms as one multiply-add per element, addend and
    bias); not the arithmetic on ``r`` alone or on the bound's short vectors."""

    __slots__ = ("macs",)

    def __init__(self) -> None:
        self.macs = 0

    def mul(self, x: Array, y: Array) -> Array:
        out: Array = np.matmul(x, y)
        self.macs += int(out.size) * int(x.shape[-1])
        return out


@dataclass(frozen=True, slots=True)
class _Rounding:
    """(5) The float bound's coefficients for inner dimension ``k`` and checksum length ``n``
    (module docstring): ``g`` on S, ``h`` on T, and the underflow terms."""

    k: int
    n: int
    g: float
    h: float
    claim_tiny: float  # per unit of sum(|r|)
    work_tiny: float

    @classmethod
    def of(cls, k: int, n: int, dtype: np.dtype[Any]) -> _Rounding:
        """Not applicable when ``g`` reaches 1 (the bound would accept zero for anything)."""
        u, tiny = _float_type(dtype)
        v, work_tiny = _FLOATS["float64" if dtype == _F64 else "float32"]
        claim, inner, outer = _gamma(k + 2, u), _gamma(k, v), _gamma(n + 1, v)
        g = 2.0 * (claim + outer + inner + outer * inner + 4 * _U64)
        if g >= 1:
            raise _NotApplicableError
        return cls(k, n, g, 2.0 * _gamma(n, v), 6.0 * (k + 2) * tiny, work_tiny)

    def bound(
        self,
        *,
        size: Array,
        y_size: Array,
        row_a: Array,
        r_abs_sum: Array,
        alpha: float,
        beta: float,
    ) -> Array:
        """``g S + h T + U`` elementwise (arguments broadcast to the residual's shape)."""
        k, n = self.k, self.n
        checks = 6 * n * (1 + abs(beta)) + abs(alpha) * (9 * n * math.sqrt(k) * row_a + 6 * k)
        under = self.claim_tiny * r_abs_sum + self.work_tiny * checks
        bound: Array = self.g * size + self.h * y_size + under
        return bound


def _gamma(j: int, u: float) -> float:
    """``gamma_j(u) = j u / (1 - j u)``; not applicable from ``j u >= 1/2`` on (gamma >= 1)."""
    if j * u >= 0.5:
        raise _NotApplicableError
    return j * u / (1 - j * u)


def _norms(subscripts: str, x: Array, length: int, count: _Counted) -> Array:
    """Upper bounds on the 2-norms of ``x``'s rows or columns (float64)."""
    return np.sqrt(_squares(subscripts, x, length, count))


def _squares(subscripts: str, x: Array, length: int, count: _Counted) -> Array:
    """Upper bounds on sums of ``length`` squares of ``x`` (float64), by ``np.einsum`` in ``x``'s
    type (no temporary copy). All terms are >= 0, so a computed sum ``s`` is within
    ``gamma_L s`` of the exact one, plus ``3 L t`` of underflow. NaN or infinity in ``x`` -> None.
    float32 sums beyond float32's range, or so small that the underflow term would swamp them
    (operands scaled far apart), are recomputed in float64 (buffered, still no copy)."""
    u, tiny = _FLOATS[x.dtype.name]
    count.macs += x.size
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.einsum(subscripts, x, x).astype(np.float64)
    overflow = not np.isfinite(sums).all()
    if overflow and not np.isfinite(x).all():
        raise _NotApplicableError  # NaN or infinity: the caller re-executes instead
    if x.dtype == _F32 and (overflow or ((sums > 0) & (sums < 2.0**20 * length * tiny)).any()):
        u, tiny = _FLOATS["float64"]
        count.macs += x.size
        sums = np.einsum(subscripts, x, x, dtype=np.float64)
    elif overflow:
        raise _NotApplicableError  # float64 squares beyond float64's range
    upper: Array = (sums + 3 * length * tiny) / (1 - _gamma(length, u))
    return upper


def _float_type(dtype: np.dtype[Any]) -> tuple[float, float]:
    if dtype.name not in _FLOATS:
        raise _NotApplicableError  # complex, float8 and other types: no bound here
    return _FLOATS[dtype.name]


def _working(dtype: np.dtype[Any], *arrays: Array) -> list[Array]:
    """The arrays in the working type: float64 stays, float32 stays (no copy), float16 and
    bfloat16 become float32 (exactly)."""
    work = _F64 if dtype == _F64 else _F32
    return [np.asarray(x, dtype=work) for x in arrays]


def _finite(x: Array) -> Array:
    """An intermediate checksum (``B r``, ``r^T W``) that overflowed the working type makes the
    check not applicable here already, not only through the residual."""
    if not np.isfinite(x).all():
        raise _NotApplicableError
    return x


def _finite64(x: Array) -> Array:
    """A small array (bias, one-column addend) in float64; NaN or infinity -> None."""
    x64 = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x64).all():
        raise _NotApplicableError  # NaN or infinity: the caller re-executes instead
    return x64
