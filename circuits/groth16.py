"""The pure-Python Groth16 verifier of snarkjs proofs on BN254 (verifier side of the zk rung).

Reads snarkjs's ``verification_key.json``, ``proof.json`` and ``public.json`` (made by
``circuits.snarkjs``) and checks them with py_ecc's ``optimized_bn128``: no Node, no Rust. The
procedure, numbered once (reports, errors and tests use these step names):

  (1) shape     each file is strict JSON (no duplicate keys, within the size limits) of exactly
                snarkjs's fields: protocol "groth16", curve "bn128"; values are canonical decimal
                strings of at most 78 digits; G1 points ``[x, y, "1"]``, G2 points
                ``[[x0, x1], [y0, y1], ["1", "0"]]`` with each Fp2 coordinate as ``[c0, c1]``
                (``c0 + c1*u``, py_ecc's ``FQ2([c0, c1])``); only affine points (z = 1: snarkjs
                writes no other, and the point at infinity never occurs in an honest key or
                proof); ``nPublic`` = len(IC) - 1 = the number of public signals
  (2) field     every coordinate is below the base field modulus q and every public signal
                below the scalar field modulus r (no aliasing of ``s`` and ``s + r``)
  (3) curve     every point is on its curve: G1 on y^2 = x^3 + 3, G2 on the twist
                y^2 = x^3 + 3/(9 + u)
  (4) subgroup  every G2 point (the proof's B, the key's beta, gamma, delta) has order r:
                [r]P is the point at infinity (G1 has cofactor 1, so (3) suffices there)
  (5) pairing   with vk_x = IC[0] + sum(s_i * IC[i + 1]):
                e(-A, B) * e(alpha, beta) * e(vk_x, gamma) * e(C, delta) == 1, as one product
                of Miller loops and a single final exponentiation

Values built in Python are held to (1)'s types when constructed: ``Proof`` and
``VerificationKey`` coordinates are ints in tuples, and public signals a list or tuple of ints.
Step (1) raises ``CircuitFormatError`` or ``LimitError`` (nothing was verified); steps (2)-(5)
raise ``ZkProofError`` naming the step. ``verify_proof`` raises; ``check_proof`` reports.
Stricter than ``snarkjs groth16 verify``, which ignores ``nPublic`` and the protocol name, reduces
coordinates >= q, accepts Jacobian z != 1 and reads numbers, hex and leading zeros; on everything
else the two agree (``tests/test_groth16.py`` holds both tables).

    vk = read_verification_key(Path("verification_key.json").read_bytes())
    verify_proof(vk, read_proof(proof_bytes), read_public(public_bytes))  # or ZkProofError
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128.optimized_curve import (
    add,
    b,
    b2,
    curve_order,
    field_modulus,
    is_inf,
    is_on_curve,
    multiply,
    neg,
)
from py_ecc.optimized_bn128.optimized_pairing import final_exponentiate, pairing

from circuits.r1cs import P
from receipts import strictjson
from receipts.errors import CircuitFormatError, LimitError, ZkProofError
from receipts.report import Status, StepResult, Steps

Q = field_modulus  # BN254 base field
assert curve_order == P  # the scalar field the circuits are written over
STEPS = ("shape", "field", "curve", "subgroup", "pairing")
MAX_JSON_BYTES = 8 << 20
MAX_PUBLIC = 1 << 14  # each public signal costs one G1 multiplication (~5 ms) to verify
MAX_DIGITS = 78  # 2^256 has 78 decimal digits
MAX_DEPTH = 8  # snarkjs's deepest value (vk_alphabeta_12) nests 4 levels
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_VK_FIELDS = {"protocol", "curve", "nPublic", "vk_alpha_1", "vk_beta_2", "vk_gamma_2",
              "vk_delta_2", "IC"}  # fmt: skip
_VK_OPTIONAL = {"vk_alphabeta_12"}  # e(alpha, beta), precomputed: ignored, never trusted
_PROOF_FIELDS = {"pi_a", "pi_b", "pi_c", "protocol"}
_PROOF_OPTIONAL = {"curve"}

G1 = tuple[int, int]  # affine (x, y)
G2 = tuple[tuple[int, int], tuple[int, int]]  # affine ((x_c0, x_c1), (y_c0, y_c1))


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationKey:
    """A Groth16 verification key as read (unverified: steps (2)-(4) check its points)."""

    alpha1: G1
    beta2: G2
    gamma2: G2
    delta2: G2
    ic: tuple[G1, ...]

    def __post_init__(self) -> None:
        _is_g1(self.alpha1, "vk_alpha_1")
        for name, point in (("vk_beta_2", self.beta2), ("vk_gamma_2", self.gamma2),
                            ("vk_delta_2", self.delta2)):  # fmt: skip
            _is_g2(point, name)
        if not isinstance(self.ic, tuple):
            raise CircuitFormatError("a verification key's IC is a tuple of G1 points")
        if not 1 <= len(self.ic) <= MAX_PUBLIC + 1:
            raise LimitError(f"a verification key has 1..{MAX_PUBLIC + 1} IC points")
        for index, ic in enumerate(self.ic):
            _is_g1(ic, f"IC[{index}]")

    @property
    def n_public(self) -> int:
        return len(self.ic) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """A Groth16 proof (A, B, C) as read (unverified until ``verify_proof``)."""

    a: G1
    b: G2
    c: G1

    def __post_init__(self) -> None:
        _is_g1(self.a, "pi_a")
        _is_g2(self.b, "pi_b")
        _is_g1(self.c, "pi_c")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofReport:
    """One ``StepResult`` per step of ``STEPS``; true when all passed."""

    steps: tuple[StepResult, ...]

    def __bool__(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.status is Status.PASSED for s in self.steps)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if s.status is Status.FAILED), None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_g1(value: object, what: str) -> None:
    """A value built in Python rather than read holds the types the steps compute with: a
    coordinate of another type would raise TypeError inside py_ecc (or, as a list, in the
    subgroup cache) instead of a typed error. Ranges are step (2)'s."""
    if not (isinstance(value, tuple) and len(value) == 2 and all(map(_is_int, value))):
        raise CircuitFormatError(f"{what}: not an affine G1 point (a tuple of two ints)")


def _is_g2(value: object, what: str) -> None:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise CircuitFormatError(f"{what}: not an affine G2 point (two tuples of two ints)")
    for fp2 in value:
        if not (isinstance(fp2, tuple) and len(fp2) == 2 and all(map(_is_int, fp2))):
            raise CircuitFormatError(f"{what}: not an affine G2 point (two tuples of two ints)")


# --- (1) shape: the readers ------------------------------------------------------------------


def read_verification_key(data: bytes | str) -> VerificationKey:
    """Step (1) for ``verification_key.json``."""
    fields = _object(_load(data, "verification key"), _VK_FIELDS, _VK_OPTIONAL, "verification key")
    _groth16_bn128(fields, "verification key")
    n_public = fields["nPublic"]
    if not isinstance(n_public, int) or isinstance(n_public, bool) or n_public < 0:
        raise CircuitFormatError("verification key: nPublic is not a non-negative integer")
    ic = fields["IC"]
    if not isinstance(ic, list):
        raise CircuitFormatError("verification key: IC is not a list of points")
    if not 1 <= len(ic) <= MAX_PUBLIC + 1:
        raise LimitError(f"verification key: IC must list 1..{MAX_PUBLIC + 1} points")
    if n_public != len(ic) - 1:
        raise CircuitFormatError(f"verification key: nPublic {n_public} but {len(ic)} IC points")
    return VerificationKey(
        alpha1=_g1(fields["vk_alpha_1"], "vk_alpha_1"),
        beta2=_g2(fields["vk_beta_2"], "vk_beta_2"),
        gamma2=_g2(fields["vk_gamma_2"], "vk_gamma_2"),
        delta2=_g2(fields["vk_delta_2"], "vk_delta_2"),
        ic=tuple(_g1(point, f"IC[{i}]") for i, point in enumerate(ic)),
    )


def read_proof(data: bytes | str) -> Proof:
    """Step (1) for ``proof.json``."""
    fields = _object(_load(data, "proof"), _PROOF_FIELDS, _PROOF_OPTIONAL, "proof")
    _groth16_bn128(fields, "proof")
    return Proof(
        a=_g1(fields["pi_a"], "pi_a"), b=_g2(fields["pi_b"], "pi_b"), c=_g1(fields["pi_c"], "pi_c")
    )


def read_public(data: bytes | str) -> tuple[int, ...]:
    """Step (1) for ``public.json``: the public signals, outputs then inputs."""
    value = _load(data, "public signals")
    if not isinstance(value, list):
        raise CircuitFormatError("public signals: not a JSON list")
    if len(value) > MAX_PUBLIC:
        raise LimitError(f"public signals: {len(value)} (limit {MAX_PUBLIC})")
    return tuple(_decimal(v, f"public signal {i}") for i, v in enumerate(value))


def _load(data: bytes | str, what: str) -> Any:
    return strictjson.load(
        data, what, limit=MAX_JSON_BYTES, max_depth=MAX_DEPTH, error=CircuitFormatError
    )


def _object(value: object, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CircuitFormatError(f"{what}: not a JSON object")
    missing, unknown = required - set(value), set(value) - required - optional
    if missing or unknown:
        raise CircuitFormatError(
            f"{what}: missing {sorted(missing)}, unknown {sorted(unknown)} field(s)"
        )
    return value


def _groth16_bn128(fields: dict[str, Any], what: str) -> None:
    if fields["protocol"] != "groth16":
        raise CircuitFormatError(f"{what}: protocol {fields['protocol']!r} is not 'groth16'")
    if fields.get("curve", "bn128") != "bn128":
        raise CircuitFormatError(f"{what}: curve {fields['curve']!r} is not 'bn128'")


def _decimal(value: object, what: str) -> int:
    if not isinstance(value, str):
        raise CircuitFormatError(f"{what}: not a decimal string")
    if len(value) > MAX_DIGITS:
        raise LimitError(f"{what}: more than {MAX_DIGITS} digits")
    if not _DECIMAL.fullmatch(value):  # ASCII digits, no sign, no leading zero
        raise CircuitFormatError(f"{what}: not a canonical decimal string")
    return int(value)


def _list(value: object, length: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        raise CircuitFormatError(f"{what}: not a list of {length}")
    return value


def _g1(value: object, what: str) -> G1:
    x, y, z = (_decimal(v, what) for v in _list(value, 3, what))
    if z != 1:
        raise CircuitFormatError(f"{what}: z = {z}; only affine points (z = 1) are read")
    return x, y


def _g2(value: object, what: str) -> G2:
    x, y, z = (_list(v, 2, what) for v in _list(value, 3, what))
    if [_decimal(c, what) for c in z] != [1, 0]:
        raise CircuitFormatError(f"{what}: z is not [1, 0]; only affine points are read")
    x0, x1 = (_decimal(c, what) for c in x)
    y0, y1 = (_decimal(c, what) for c in y)
    return (x0, x1), (y0, y1)


# --- steps (2)-(5) ----------------------------------------------------------------------------


def _fail(step: str, reason: str) -> ZkProofError:
    number = STEPS.index(step) + 1
    return ZkProofError(f"({number}) {step}: {reason}", details={"step": step})


def _g1_points(vk: VerificationKey, proof: Proof) -> list[tuple[str, G1]]:
    named = [("pi_a", proof.a), ("pi_c", proof.c), ("vk_alpha_1", vk.alpha1)]
    return named + [(f"IC[{i}]", point) for i, point in enumerate(vk.ic)]


def _g2_points(vk: VerificationKey, proof: Proof) -> list[tuple[str, G2]]:
    return [
        ("pi_b", proof.b), ("vk_beta_2", vk.beta2), ("vk_gamma_2", vk.gamma2),
        ("vk_delta_2", vk.delta2),
    ]  # fmt: skip


def _field(vk: VerificationKey, proof: Proof, public: Sequence[int]) -> None:
    """(2) coordinates below q, public signals below r."""
    for name, (x, y) in _g1_points(vk, proof):
        if not (0 <= x < Q and 0 <= y < Q):
            raise _fail("field", f"a coordinate of {name} is not below the base field modulus")
    for name, ((x0, x1), (y0, y1)) in _g2_points(vk, proof):
        if not all(0 <= c < Q for c in (x0, x1, y0, y1)):
            raise _fail("field", f"a coordinate of {name} is not below the base field modulus")
    for index, signal in enumerate(public):
        if not 0 <= signal < P:
            raise _fail("field", f"public signal {index} is not below the scalar field modulus")


def _point1(point: G1) -> tuple[Any, Any, Any]:
    return FQ(point[0]), FQ(point[1]), FQ.one()


def _point2(point: G2) -> tuple[Any, Any, Any]:
    (x0, x1), (y0, y1) = point
    return FQ2([x0, x1]), FQ2([y0, y1]), FQ2.one()


def _curve(vk: VerificationKey, proof: Proof, _public: Sequence[int]) -> None:
    """(3) every point on its curve."""
    for name, point in _g1_points(vk, proof):
        if not is_on_curve(_point1(point), b):
            raise _fail("curve", f"{name} is not on the curve")
    for name, point2 in _g2_points(vk, proof):
        if not is_on_curve(_point2(point2), b2):
            raise _fail("curve", f"{name} is not on the twist curve")


def _subgroup(vk: VerificationKey, proof: Proof, _public: Sequence[int]) -> None:
    """(4) every G2 point of order r."""
    for name, point in _g2_points(vk, proof):
        if not _in_subgroup(point):
            raise _fail("subgroup", f"{name} is not in the order-r subgroup of the twist")


@lru_cache(maxsize=256)
def _in_subgroup(point: G2) -> bool:
    """[r]P is the point at infinity. Remembered per point: the answer depends on the point
    alone, and a verifier checks the same key's beta, gamma and delta for every proof."""
    return bool(is_inf(multiply(_point2(point), curve_order)))


def _pairing(vk: VerificationKey, proof: Proof, public: Sequence[int]) -> None:
    """(5) the pairing product, one final exponentiation."""
    vk_x = _point1(vk.ic[0])
    for signal, point in zip(public, vk.ic[1:], strict=True):
        vk_x = add(vk_x, multiply(_point1(point), signal))
    pairs = (
        (_point2(proof.b), neg(_point1(proof.a))),
        (_point2(vk.beta2), _point1(vk.alpha1)),
        (_point2(vk.gamma2), vk_x),
        (_point2(vk.delta2), _point1(proof.c)),
    )
    product = FQ12.one()
    for g2, g1 in pairs:
        product = product * pairing(g2, g1, final_exponentiate=False)
    if final_exponentiate(product) != FQ12.one():
        raise _fail("pairing", "the pairing product is not 1: the proof does not verify")


_CHECKS: tuple[tuple[str, Callable[[VerificationKey, Proof, Sequence[int]], None]], ...] = (
    ("field", _field),
    ("curve", _curve),
    ("subgroup", _subgroup),
    ("pairing", _pairing),
)


def _fits(vk: VerificationKey, public: object) -> tuple[int, ...]:
    """The last part of (1): a sequence of ints (signals given in Python, not read by
    ``read_public``, may be anything), as many as the key expects."""
    if not isinstance(public, list | tuple) or not all(map(_is_int, public)):
        raise CircuitFormatError("public signals: not a list or tuple of ints")
    if len(public) != vk.n_public:
        raise CircuitFormatError(
            f"{len(public)} public signal(s) for a verification key of {vk.n_public}"
        )
    return tuple(public)


def verify_proof(vk: VerificationKey, proof: Proof, public: Sequence[int]) -> Proof:
    """Steps (2)-(5) (and the signal count of (1)): the proof, or the step's typed error."""
    signals = _fits(vk, public)
    for _, check in _CHECKS:
        check(vk, proof, signals)
    return proof


def check_proof(
    vk: VerificationKey | bytes | str,
    proof: Proof | bytes | str,
    public: Sequence[int] | bytes | str,
) -> ProofReport:
    """Steps (1)-(5) as a report that never raises for a failed step; whatever is still JSON is
    read in step (1)."""
    steps = Steps()
    read: list[tuple[VerificationKey, Proof, tuple[int, ...]]] = []

    def shape() -> None:
        key = vk if isinstance(vk, VerificationKey) else read_verification_key(vk)
        parsed = proof if isinstance(proof, Proof) else read_proof(proof)
        signals = read_public(public) if isinstance(public, bytes | str) else public
        read.append((key, parsed, _fits(key, signals)))

    passed = steps.run("shape", shape)
    for name, check in _CHECKS:
        if passed:
            passed = steps.run(name, partial(check, *read[0]))
        else:
            steps.skip(name, "an earlier step failed")
    return ProofReport(steps=tuple(steps.results))
