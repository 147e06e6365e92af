"""The pure-Python Groth16 verifier (``circuits.groth16``) against snarkjs and hostile JSON.

Material: the committed ``fixtures/zk`` set (``fixtures/zk.py``): the circuit x * y = z with
public signals [z, x] = ["12", "3"], its beacon-only keys, one proof, and the key of another
circuit. The differential table tampers with the valid proof one way per case and asserts that
our verdict equals ``snarkjs groth16 verify`` and that we fail at the named step. A second table
lists where we are stricter than snarkjs on purpose (non-canonical encodings it accepts).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.optimized_bn128.optimized_curve import (
    b2,
    curve_order,
    is_inf,
    is_on_curve,
    multiply,
    normalize,
)

from circuits.groth16 import (
    MAX_JSON_BYTES,
    MAX_PUBLIC,
    STEPS,
    Proof,
    Q,
    VerificationKey,
    check_proof,
    read_proof,
    read_public,
    read_verification_key,
    verify_proof,
)
from circuits.r1cs import P, check_witness, witness_bytes
from circuits.snarkjs import SNARKJS, Snarkjs
from fixtures.zk import multiply_circuit
from receipts.errors import CircuitFormatError, LimitError, WitnessError, ZkProofError
from receipts.report import Status
from tests.conftest import FIXTURES

ZK = FIXTURES / "zk"
MULTIPLY = ZK / "multiply"
Json = Any
Material = tuple[Json, Json, Json]  # verification key, proof, public signals (parsed JSON)

needs_snarkjs = pytest.mark.skipif(
    not SNARKJS.exists(), reason="snarkjs is not installed (`make setup` runs npm ci)"
)


def _json(path: Path) -> Json:
    return json.loads(path.read_text())


def _material() -> Material:
    return (
        _json(MULTIPLY / "verification_key.json"),
        _json(MULTIPLY / "proof.json"),
        _json(MULTIPLY / "public.json"),
    )


@pytest.fixture(scope="module")
def snarkjs() -> Snarkjs:
    return Snarkjs.locate(timeout_s=120)


# --- the committed proof -----------------------------------------------------------------------


def test_the_committed_proof_verifies_in_pure_python() -> None:
    vk = read_verification_key((MULTIPLY / "verification_key.json").read_bytes())
    proof = read_proof((MULTIPLY / "proof.json").read_bytes())
    public = read_public((MULTIPLY / "public.json").read_bytes())
    assert public == (12, 3)
    assert vk.n_public == 2
    assert verify_proof(vk, proof, public) is proof


def test_check_proof_reports_every_step_passed() -> None:
    vk, proof, public = (
        (MULTIPLY / n).read_bytes() for n in ("verification_key.json", "proof.json", "public.json")
    )
    report = check_proof(vk, proof, public)
    assert bool(report)
    assert [s.step for s in report.steps] == list(STEPS)
    assert report.failed is None


def test_a_failed_step_is_reported_and_the_later_ones_not_run() -> None:
    vk, proof, _ = _material()
    report = check_proof(json.dumps(vk), json.dumps(proof), json.dumps([str(P + 12), "3"]))
    assert not report
    assert report.failed is not None and report.failed.step == "field"
    assert isinstance(report.failed.error, ZkProofError)
    assert [s.status for s in report.steps] == [Status.PASSED, Status.FAILED] + [Status.NOT_RUN] * 3


@pytest.mark.parametrize(
    ("public", "step"),
    [((12, 4), "pairing"), ((12 + P, 3), "field"), ((-1, 3), "field")],
)
def test_verify_raises_the_step_on_parsed_values(public: tuple[int, int], step: str) -> None:
    vk = read_verification_key((MULTIPLY / "verification_key.json").read_bytes())
    proof = read_proof((MULTIPLY / "proof.json").read_bytes())
    with pytest.raises(ZkProofError, match=rf"^\({STEPS.index(step) + 1}\) {step}:") as caught:
        verify_proof(vk, proof, public)
    assert caught.value.details == {"step": step}


def test_verify_refuses_a_signal_count_the_key_does_not_have() -> None:
    vk = read_verification_key((MULTIPLY / "verification_key.json").read_bytes())
    proof = read_proof((MULTIPLY / "proof.json").read_bytes())
    with pytest.raises(CircuitFormatError, match="public signal"):
        verify_proof(vk, proof, (12,))


# --- tampering: a point off the curve, a G2 point outside the subgroup ------------------------


def _fp_sqrt(value: int) -> int | None:
    root = pow(value, (Q + 1) // 4, Q)  # q = 3 mod 4
    return root if root * root % Q == value % Q else None


def _fp2_sqrt(a: Any) -> Any | None:
    """A square root in Fp2 = Fp[u]/(u^2 + 1) by the norm (the "complex" method)."""
    a0, a1 = a.coeffs
    norm = _fp_sqrt((a0 * a0 + a1 * a1) % Q)
    if norm is None:
        return None
    half = pow(2, -1, Q)
    for candidate in ((a0 + norm) * half % Q, (a0 - norm) * half % Q):
        x0 = _fp_sqrt(candidate)
        if x0:
            root = FQ2([x0, a1 * pow(2 * x0, -1, Q) % Q])
            if root * root == a:
                return root
    return None


def _twist_point_outside_subgroup() -> Json:
    """A point on the twist y^2 = x^3 + 3/(9+u) whose order is not r (its cofactor is ~q)."""
    for k in range(1, 100):
        x = FQ2([k, 1])
        y = _fp2_sqrt(x**3 + b2)
        if y is None:
            continue
        point = (x, y, FQ2.one())
        assert is_on_curve(point, b2)
        if not is_inf(multiply(point, curve_order)):
            return [[str(c) for c in x.coeffs], [str(c) for c in y.coeffs], ["1", "0"]]
    raise AssertionError("no point found")


OUTSIDE_SUBGROUP = _twist_point_outside_subgroup()


def _g1_neg(point: Json) -> Json:
    return [point[0], str(Q - int(point[1])), "1"]


def _bump(value: str, by: int = 1, modulus: int = Q) -> str:
    return str((int(value) + by) % modulus)


def _times_g1(point: Json, k: int) -> Json:
    x, y = normalize(multiply((FQ(int(point[0])), FQ(int(point[1])), FQ.one()), k))
    return [str(x.n), str(y.n), "1"]


def _times_g2(point: Json, k: int) -> Json:
    jacobian = (FQ2([int(c) for c in point[0]]), FQ2([int(c) for c in point[1]]), FQ2.one())
    x, y = normalize(multiply(jacobian, k))
    return [[str(c) for c in x.coeffs], [str(c) for c in y.coeffs], ["1", "0"]]


def _rescale(k: int) -> Callable[[Json, Json, Json], None]:
    """(kA, B/k, C) is another valid proof of the same statement: Groth16 proofs are malleable,
    so a verifier must accept it (snarkjs does)."""

    def mutate(_vk_: Json, proof: Json, _public_: Json) -> None:
        proof["pi_a"] = _times_g1(proof["pi_a"], k)
        proof["pi_b"] = _times_g2(proof["pi_b"], pow(k, -1, P))

    return mutate


# --- the differential table --------------------------------------------------------------------

Mutation = Callable[[Json, Json, Json], None]  # edits (vk, proof, public) in place
_OTHER_VK = _json(ZK / "other" / "verification_key.json")


def _set(path: tuple[Any, ...], value: Callable[[Any], Any], target: int) -> Mutation:
    def mutate(vk: Json, proof: Json, public: Json) -> None:
        node = (vk, proof, public)[target]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]])

    return mutate


def _proof(*path: Any, value: Callable[[Any], Any]) -> Mutation:
    return _set(path, value, 1)


def _vk(*path: Any, value: Callable[[Any], Any]) -> Mutation:
    return _set(path, value, 0)


def _public(mutate: Callable[[list[str]], None]) -> Mutation:
    return lambda _vk_, _proof_, public: mutate(public)


def _swap(first: str, second: str) -> Mutation:
    def mutate(_vk_: Json, proof: Json, _public_: Json) -> None:
        proof[first], proof[second] = proof[second], proof[first]

    return mutate


def _other_key(vk: Json, _proof_: Json, _public_: Json) -> None:
    vk.clear()
    vk.update(copy.deepcopy(_OTHER_VK))


def _drop_ic(vk: Json, _proof_: Json, _public_: Json) -> None:
    vk["IC"].pop()
    vk["nPublic"] = len(vk["IC"]) - 1


def _extra_ic(vk: Json, _proof_: Json, _public_: Json) -> None:
    vk["IC"].append(vk["IC"][1])
    vk["nPublic"] = len(vk["IC"]) - 1


def _extra_ic_and_zero_signal(vk: Json, proof: Json, public: Json) -> None:
    # The extra IC point is multiplied by 0: the same vk_x, so the proof still verifies (the
    # verification key's digest in the manifest, not this check, fixes the circuit).
    _extra_ic(vk, proof, public)
    public.append("0")


def _drop_field(target: int, key: str) -> Mutation:
    def mutate(*material: Json) -> None:
        material[target].pop(key)

    return mutate


def _signal(index: int, value: Callable[[str], str]) -> Mutation:
    def mutate(public: list[str]) -> None:
        public[index] = value(public[index])

    return _public(mutate)


COORDINATES = [("pi_a", i) for i in (0, 1)] + [("pi_c", i) for i in (0, 1)]
COORDINATES_2 = [("pi_b", i, j) for i in (0, 1) for j in (0, 1)]

# (case, mutation, the step where we fail or None for a valid proof)
DIFFERENTIAL: list[tuple[str, Mutation | None, str | None]] = [
    ("valid", None, None),
    ("public_0_changed", _signal(0, lambda s: _bump(s, modulus=P)), "pairing"),
    ("public_1_changed", _signal(1, lambda s: _bump(s, modulus=P)), "pairing"),
    ("public_0_plus_r", _signal(0, lambda s: str(int(s) + P)), "field"),
    ("public_1_is_r", _signal(1, lambda _s: str(P)), "field"),
    ("public_0_is_2^256", _signal(0, lambda _s: str(2**256)), "field"),
    ("public_too_short", _public(lambda p: p.pop()), "shape"),
    ("public_too_long", _public(lambda p: p.append("1")), "shape"),
    ("public_swapped", _public(lambda p: p.reverse()), "pairing"),
    *[(f"{name}_{i}_plus_1", _proof(name, i, value=_bump), "curve") for name, i in COORDINATES],
    *[
        (f"{name}_{i}_{j}_plus_1", _proof(name, i, j, value=_bump), "curve")
        for name, i, j in COORDINATES_2
    ],
    ("pi_a_negated", _proof("pi_a", value=_g1_neg), "pairing"),
    ("pi_c_negated", _proof("pi_c", value=_g1_neg), "pairing"),
    ("a_and_c_swapped", _swap("pi_a", "pi_c"), "pairing"),
    ("a_and_b_swapped", _swap("pi_a", "pi_b"), "shape"),
    ("b_and_c_swapped", _swap("pi_b", "pi_c"), "shape"),
    ("pi_a_off_curve", _proof("pi_a", value=lambda _p: ["1", "3", "1"]), "curve"),
    ("pi_a_z_2", _proof("pi_a", 2, value=lambda _z: "2"), "shape"),
    ("pi_a_at_infinity", _proof("pi_a", value=lambda _p: ["0", "1", "0"]), "shape"),
    ("pi_b_outside_subgroup", _proof("pi_b", value=lambda _p: OUTSIDE_SUBGROUP), "subgroup"),
    (
        "pi_b_c0_c1_reversed",
        _proof("pi_b", value=lambda p: [c[::-1] for c in p[:2]] + [p[2]]),
        "curve",
    ),
    ("vk_alpha_off_curve", _vk("vk_alpha_1", 1, value=_bump), "curve"),
    (
        "vk_delta_outside_subgroup",
        _vk("vk_delta_2", value=lambda _p: OUTSIDE_SUBGROUP),
        "subgroup",
    ),
    (
        "vk_ic_1_changed",
        _vk("IC", 1, value=lambda _p: _json(MULTIPLY / "proof.json")["pi_a"]),
        "pairing",
    ),
    ("vk_one_ic_point_less", _drop_ic, "shape"),
    ("vk_of_another_circuit", _other_key, "pairing"),
    ("vk_curve_bls12381", _vk("curve", value=lambda _c: "bls12381"), "shape"),
    ("proof_coordinate_as_number", _proof("pi_a", 0, value=int), "shape"),
    # valid proofs that are not the committed bytes: refusing them would refuse a valid proof
    ("a_times_5_and_b_over_5", _rescale(5), None),
    ("a_and_b_negated", _rescale(-1 % P), None),
    ("vk_alphabeta_12_removed", _drop_field(0, "vk_alphabeta_12"), None),
    ("vk_alphabeta_12_wrong", _vk("vk_alphabeta_12", value=lambda _v: [[["1", "2"]]]), None),
    ("proof_curve_removed", _drop_field(1, "curve"), None),
    ("vk_extra_ic_and_zero_signal", _extra_ic_and_zero_signal, None),
    # more tampering
    ("pi_b_negated", _proof("pi_b", value=lambda p: _times_g2(p, -1 % P)), "pairing"),
    ("pi_c_doubled", _proof("pi_c", value=lambda p: _times_g1(p, 2)), "pairing"),
    ("pi_c_is_pi_a", lambda _v, proof, _p: proof.update(pi_c=proof["pi_a"]), "pairing"),
    ("pi_b_x_and_y_swapped", _proof("pi_b", value=lambda p: [p[1], p[0], p[2]]), "curve"),
    ("pi_a_at_infinity_jacobian", _proof("pi_a", value=lambda _p: ["1", "1", "0"]), "shape"),
    ("pi_c_at_infinity", _proof("pi_c", value=lambda _p: ["0", "1", "0"]), "shape"),
    (
        "pi_b_at_infinity",
        _proof("pi_b", value=lambda _p: [["0", "0"], ["1", "0"], ["0", "0"]]),
        "shape",
    ),
    ("pi_b_z_one_coordinate", _proof("pi_b", 2, value=lambda _z: ["1"]), "shape"),
    ("vk_ic_0_at_infinity", _vk("IC", 0, value=lambda _p: ["0", "1", "0"]), "shape"),
    ("vk_gamma_is_delta", lambda vk, _p, _s: vk.update(vk_gamma_2=vk["vk_delta_2"]), "pairing"),
    ("public_0_is_r_minus_1", _signal(0, lambda _s: str(P - 1)), "pairing"),
    ("public_0_is_0", _signal(0, lambda _s: "0"), "pairing"),
    ("public_1_negative", _signal(1, lambda s: "-" + s), "shape"),
    ("public_1_minus_r", _signal(1, lambda s: str(int(s) - P)), "shape"),
    ("public_0_plus_sign", _signal(0, lambda s: "+" + s), "shape"),
    ("public_0_leading_space", _signal(0, lambda s: " " + s), "shape"),
    ("public_0_trailing_space", _signal(0, lambda s: s + " "), "shape"),
    ("public_0_exponent", _signal(0, lambda _s: "1.2e1"), "shape"),
    ("public_0_empty", _signal(0, lambda _s: ""), "shape"),
    ("public_0_arabic_digits", _signal(0, lambda _s: "\u0661\u0662"), "shape"),
    ("public_0_bool", _public(lambda p: p.__setitem__(0, True)), "shape"),
    ("public_0_null", _public(lambda p: p.__setitem__(0, None)), "shape"),
]


def _write(folder: Path, vk: Json, proof: Json, public: Json) -> tuple[Path, Path, Path]:
    paths = (folder / "vk.json", folder / "proof.json", folder / "public.json")
    for path, value in zip(paths, (vk, proof, public), strict=True):
        path.write_text(json.dumps(value))
    return paths


def _verdicts(
    snarkjs: Snarkjs, folder: Path, mutate: Mutation | None
) -> tuple[bool, bool, str | None]:
    vk, proof, public = _material()
    if mutate is not None:
        mutate(vk, proof, public)
    vk_path, proof_path, public_path = _write(folder, vk, proof, public)
    theirs = snarkjs.verify(vk_path, public_path, proof_path)
    report = check_proof(vk_path.read_bytes(), proof_path.read_bytes(), public_path.read_bytes())
    return bool(report), theirs, report.failed.step if report.failed else None


@needs_snarkjs
@pytest.mark.slow
@pytest.mark.parametrize(
    ("mutate", "step"), [(m, s) for _, m, s in DIFFERENTIAL], ids=[n for n, _, _ in DIFFERENTIAL]
)
def test_pure_python_verdict_equals_snarkjs(
    snarkjs: Snarkjs, tmp_path: Path, mutate: Mutation | None, step: str | None
) -> None:
    ours, theirs, failed = _verdicts(snarkjs, tmp_path, mutate)
    assert ours == theirs == (step is None)
    assert failed == step


def _jacobian_z2(point: Json) -> Json:
    # snarkjs reads [X, Y, Z] as Jacobian (x = X/Z^2, y = Y/Z^3); we read only z = 1.
    x, y = int(point[0]), int(point[1])
    return [str(x * 4 % Q), str(y * 8 % Q), "2"]


# Encodings snarkjs accepts and we refuse on purpose: each value has one spelling, and nPublic
# must say what IC holds. (If snarkjs starts refusing one, move it to the table above.)
STRICTER_THAN_SNARKJS: list[tuple[str, Mutation]] = [
    ("pi_a_x_plus_q", _proof("pi_a", 0, value=lambda s: str(int(s) + Q))),
    ("pi_b_x0_plus_q", _proof("pi_b", 0, 0, value=lambda s: str(int(s) + Q))),
    ("pi_a_jacobian_z_2", _proof("pi_a", value=_jacobian_z2)),
    ("public_as_json_numbers", _public(lambda p: p.__setitem__(slice(None), [12, 3]))),
    ("public_leading_zero", _signal(0, lambda s: "0" + s)),
    ("public_hex", _signal(0, lambda s: hex(int(s)))),
    ("vk_npublic_3_with_2_signals", _vk("nPublic", value=lambda _n: 3)),
    ("vk_unused_extra_ic_point", _extra_ic),
    ("vk_npublic_missing", _drop_field(0, "nPublic")),
    ("vk_protocol_missing", _drop_field(0, "protocol")),
    ("vk_curve_bn254", _vk("curve", value=lambda _c: "bn254")),
    ("proof_protocol_plonk", _proof("protocol", value=lambda _p: "plonk")),
    ("proof_protocol_missing", _drop_field(1, "protocol")),
    ("pi_a_two_coordinates", _proof("pi_a", value=lambda p: p[:2])),
    ("pi_a_fourth_coordinate", _proof("pi_a", value=lambda p: [*p, "5"])),
    ("pi_b_two_coordinates", _proof("pi_b", value=lambda p: p[:2])),
]


@needs_snarkjs
@pytest.mark.slow
@pytest.mark.parametrize(
    "mutate", [m for _, m in STRICTER_THAN_SNARKJS], ids=[n for n, _ in STRICTER_THAN_SNARKJS]
)
def test_encodings_snarkjs_accepts_and_we_refuse(
    snarkjs: Snarkjs, tmp_path: Path, mutate: Mutation
) -> None:
    ours, theirs, failed = _verdicts(snarkjs, tmp_path, mutate)
    assert theirs and not ours
    assert failed in ("shape", "field")


@needs_snarkjs
@pytest.mark.slow
def test_a_duplicate_key_snarkjs_resolves_to_its_last_value_is_refused(
    snarkjs: Snarkjs, tmp_path: Path
) -> None:
    # JSON.parse keeps the last "pi_a"; a reader that kept the first would judge another proof.
    vk, proof, public = _material()
    vk_path, proof_path, public_path = _write(tmp_path, vk, proof, public)
    bogus = json.dumps(["1", "2", "1"])
    text = proof_path.read_text().replace('"pi_a": ', f'"pi_a": {bogus}, "pi_a": ', 1)
    proof_path.write_text(text)
    assert snarkjs.verify(vk_path, public_path, proof_path)
    report = check_proof(vk_path.read_bytes(), proof_path.read_bytes(), public_path.read_bytes())
    assert report.failed is not None and report.failed.step == "shape"
    assert isinstance(report.failed.error, CircuitFormatError)


# --- a fresh proof, end to end -----------------------------------------------------------------


@needs_snarkjs
def test_a_fresh_snarkjs_proof_of_a_new_witness_verifies_in_python(
    snarkjs: Snarkjs, tmp_path: Path
) -> None:
    witness = (1, 35, 5, 7)
    check_witness(multiply_circuit(), witness)
    (tmp_path / "w.wtns").write_bytes(witness_bytes(witness))
    proof_path, public_path = snarkjs.prove(
        MULTIPLY / "circuit.zkey", tmp_path / "w.wtns", tmp_path / "p.json", tmp_path / "s.json"
    )
    vk = read_verification_key((MULTIPLY / "verification_key.json").read_bytes())
    public = read_public(public_path.read_bytes())
    assert public == (35, 5)
    verify_proof(vk, read_proof(proof_path.read_bytes()), public)


@needs_snarkjs
def test_a_proof_of_an_unsatisfying_witness_does_not_verify(
    snarkjs: Snarkjs, tmp_path: Path
) -> None:
    witness = (1, 36, 5, 7)  # 5 * 7 != 36
    with pytest.raises(WitnessError):
        check_witness(multiply_circuit(), witness)
    (tmp_path / "w.wtns").write_bytes(witness_bytes(witness))
    proof_path, public_path = snarkjs.prove(
        MULTIPLY / "circuit.zkey", tmp_path / "w.wtns", tmp_path / "p.json", tmp_path / "s.json"
    )
    vk = read_verification_key((MULTIPLY / "verification_key.json").read_bytes())
    with pytest.raises(ZkProofError, match="pairing"):
        verify_proof(vk, read_proof(proof_path.read_bytes()), read_public(public_path.read_bytes()))


# --- hostile JSON: each case its error class ---------------------------------------------------

_VK = (MULTIPLY / "verification_key.json").read_text()
_PROOF = (MULTIPLY / "proof.json").read_text()


def _edit(text: str, edit: Callable[[Json], None]) -> str:
    value = json.loads(text)
    edit(value)
    return json.dumps(value)


def _put(key: str, value: Json) -> Callable[[Json], None]:
    return lambda obj: obj.__setitem__(key, value)


def _drop(key: str) -> Callable[[Json], None]:
    return lambda obj: obj.pop(key)


Reader = Callable[[bytes | str], object]
HOSTILE: list[tuple[str, Reader, bytes | str, type[Exception]]] = [
    ("vk_truncated", read_verification_key, _VK[: len(_VK) // 2], CircuitFormatError),
    ("vk_empty", read_verification_key, b"", CircuitFormatError),
    ("vk_not_utf8", read_verification_key, b'{"protocol": "\xff"}', CircuitFormatError),
    ("vk_a_list", read_verification_key, "[]", CircuitFormatError),
    (
        "vk_nan",
        read_verification_key,
        _VK.replace('"nPublic": 2', '"nPublic": NaN'),
        CircuitFormatError,
    ),
    (
        "vk_duplicate_key",
        read_verification_key,
        _VK.replace('"nPublic": 2', '"nPublic": 2, "nPublic": 2'),
        CircuitFormatError,
    ),
    ("vk_missing_ic", read_verification_key, _edit(_VK, _drop("IC")), CircuitFormatError),
    (
        "vk_missing_delta",
        read_verification_key,
        _edit(_VK, _drop("vk_delta_2")),
        CircuitFormatError,
    ),
    ("vk_unknown_field", read_verification_key, _edit(_VK, _put("extra", 1)), CircuitFormatError),
    (
        "vk_protocol_plonk",
        read_verification_key,
        _edit(_VK, _put("protocol", "plonk")),
        CircuitFormatError,
    ),
    (
        "vk_npublic_string",
        read_verification_key,
        _edit(_VK, _put("nPublic", "2")),
        CircuitFormatError,
    ),
    (
        "vk_npublic_bool",
        read_verification_key,
        _edit(_VK, _put("nPublic", True)),
        CircuitFormatError,
    ),
    (
        "vk_npublic_negative",
        read_verification_key,
        _edit(_VK, _put("nPublic", -1)),
        CircuitFormatError,
    ),
    ("vk_ic_empty", read_verification_key, _edit(_VK, _put("IC", [])), LimitError),
    ("vk_ic_not_a_list", read_verification_key, _edit(_VK, _put("IC", {})), CircuitFormatError),
    (
        "vk_ic_too_many",
        read_verification_key,
        _edit(_VK, lambda v: v.update(IC=v["IC"][:1] * (MAX_PUBLIC + 2), nPublic=MAX_PUBLIC + 1)),
        LimitError,
    ),
    (
        "vk_alpha_two_coordinates",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].pop()),
        CircuitFormatError,
    ),
    (
        "vk_alpha_number",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].__setitem__(0, 5)),
        CircuitFormatError,
    ),
    (
        "vk_alpha_hex",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].__setitem__(0, "0x5")),
        CircuitFormatError,
    ),
    (
        "vk_alpha_negative",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].__setitem__(0, "-5")),
        CircuitFormatError,
    ),
    (
        "vk_alpha_fullwidth_digit",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].__setitem__(0, "\uff15")),
        CircuitFormatError,
    ),
    (
        "vk_alpha_79_digits",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_alpha_1"].__setitem__(0, "9" * 79)),
        LimitError,
    ),
    (
        "vk_npublic_huge_json_integer",
        read_verification_key,
        _VK.replace('"nPublic": 2', '"nPublic": 1' + "0" * 5000),
        CircuitFormatError,
    ),
    (
        "vk_beta_flat",
        read_verification_key,
        _edit(_VK, lambda v: v.update(vk_beta_2=v["vk_alpha_1"])),
        CircuitFormatError,
    ),
    (
        "vk_beta_z_1_1",
        read_verification_key,
        _edit(_VK, lambda v: v["vk_beta_2"].__setitem__(2, ["1", "1"])),
        CircuitFormatError,
    ),
    ("vk_deeply_nested", read_verification_key, "[" * 100_000 + "]" * 100_000, CircuitFormatError),
    ("vk_oversize", read_verification_key, " " * (MAX_JSON_BYTES + 1), LimitError),
    ("proof_missing_pi_c", read_proof, _edit(_PROOF, _drop("pi_c")), CircuitFormatError),
    ("proof_unknown_field", read_proof, _edit(_PROOF, _put("pi_d", [])), CircuitFormatError),
    ("proof_protocol_missing", read_proof, _edit(_PROOF, _drop("protocol")), CircuitFormatError),
    ("proof_curve_bls", read_proof, _edit(_PROOF, _put("curve", "bls12381")), CircuitFormatError),
    ("proof_pi_a_null", read_proof, _edit(_PROOF, _put("pi_a", None)), CircuitFormatError),
    (
        "proof_pi_b_as_g1",
        read_proof,
        _edit(_PROOF, lambda p: p.update(pi_b=p["pi_a"])),
        CircuitFormatError,
    ),
    (
        "proof_pi_a_z_0",
        read_proof,
        _edit(_PROOF, lambda p: p["pi_a"].__setitem__(2, "0")),
        CircuitFormatError,
    ),
    (
        "proof_pi_a_leading_zero",
        read_proof,
        _edit(_PROOF, lambda p: p["pi_a"].__setitem__(0, "0" + p["pi_a"][0])),
        CircuitFormatError,
    ),
    (
        "proof_pi_a_empty_string",
        read_proof,
        _edit(_PROOF, lambda p: p["pi_a"].__setitem__(0, "")),
        CircuitFormatError,
    ),
    ("public_object", read_public, "{}", CircuitFormatError),
    ("public_number", read_public, "[12, 3]", CircuitFormatError),
    ("public_float", read_public, '["12.0", "3"]', CircuitFormatError),
    ("public_null", read_public, "[null]", CircuitFormatError),
    ("public_spaces", read_public, '[" 12", "3"]', CircuitFormatError),
    ("public_huge", read_public, json.dumps(["1" * 100]), LimitError),
    ("public_too_many", read_public, json.dumps(["1"] * (MAX_PUBLIC + 1)), LimitError),
    ("public_trailing_garbage", read_public, '["12", "3"] x', CircuitFormatError),
]


@pytest.mark.parametrize(
    ("reader", "data", "error"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_json_is_refused_with_its_error(
    reader: Reader, data: bytes | str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        reader(data)


def test_hostile_json_fails_the_shape_step_of_the_report() -> None:
    report = check_proof(_VK, _edit(_PROOF, _drop("pi_c")), '["12", "3"]')
    assert not report
    assert report.failed is not None and report.failed.step == "shape"
    assert isinstance(report.failed.error, CircuitFormatError)


# --- values built in Python, not read: typed errors, never TypeError from py_ecc ---------------

_VK_READ = read_verification_key(_VK)
_PROOF_READ = read_proof(_PROOF)
_A, _B, _IC = _PROOF_READ.a, _PROOF_READ.b, _VK_READ.ic

BUILT: list[tuple[str, Callable[[], object]]] = [
    ("proof_a_float", lambda: dataclasses.replace(_PROOF_READ, a=(float(_A[0]), _A[1]))),
    ("proof_a_bool", lambda: dataclasses.replace(_PROOF_READ, a=(True, _A[1]))),
    ("proof_a_projective", lambda: dataclasses.replace(_PROOF_READ, a=(*_A, 1))),
    ("proof_a_decimal_strings", lambda: dataclasses.replace(_PROOF_READ, a=(str(_A[0]), "1"))),
    ("proof_b_lists", lambda: dataclasses.replace(_PROOF_READ, b=[list(_B[0]), list(_B[1])])),
    ("proof_b_a_g1_point", lambda: dataclasses.replace(_PROOF_READ, b=_A)),
    ("proof_c_none", lambda: dataclasses.replace(_PROOF_READ, c=None)),
    ("vk_alpha_list", lambda: dataclasses.replace(_VK_READ, alpha1=list(_VK_READ.alpha1))),
    ("vk_gamma_flat", lambda: dataclasses.replace(_VK_READ, gamma2=(1, 2))),
    ("vk_ic_a_list", lambda: dataclasses.replace(_VK_READ, ic=list(_IC))),
    ("vk_ic_float", lambda: dataclasses.replace(_VK_READ, ic=(_IC[0], (1.0, 2), _IC[2]))),
    ("vk_ic_none", lambda: dataclasses.replace(_VK_READ, ic=None)),
    ("signals_strings", lambda: verify_proof(_VK_READ, _PROOF_READ, ("12", "3"))),
    ("signals_floats", lambda: verify_proof(_VK_READ, _PROOF_READ, (12.0, 3.0))),
    ("signals_bool", lambda: verify_proof(_VK_READ, _PROOF_READ, (12, True))),
    ("signals_none", lambda: verify_proof(_VK_READ, _PROOF_READ, None)),
    ("signals_a_string", lambda: verify_proof(_VK_READ, _PROOF_READ, "12")),
]


@pytest.mark.parametrize("build", [b for _, b in BUILT], ids=[n for n, _ in BUILT])
def test_values_built_in_python_with_wrong_types_are_refused_typed(
    build: Callable[[], object],
) -> None:
    with pytest.raises(CircuitFormatError):
        build()


def test_values_built_in_python_with_the_right_types_verify() -> None:
    proof = Proof(a=_PROOF_READ.a, b=_PROOF_READ.b, c=_PROOF_READ.c)
    vk = VerificationKey(
        alpha1=_VK_READ.alpha1,
        beta2=_VK_READ.beta2,
        gamma2=_VK_READ.gamma2,
        delta2=_VK_READ.delta2,
        ic=_VK_READ.ic,
    )
    assert verify_proof(vk, proof, [12, 3]) is proof


@pytest.mark.parametrize("public", [["12", "3"], [12, None], None, 12], ids=repr)
def test_check_proof_reports_signals_of_wrong_types_as_a_failed_shape(public: Any) -> None:
    report = check_proof(_VK, _PROOF, public)
    assert report.failed is not None and report.failed.step == "shape"
    assert isinstance(report.failed.error, CircuitFormatError)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["1", "0"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_readers_raise_only_typed_errors_on_any_json(value: Json) -> None:
    text = json.dumps(value)
    for reader in (read_verification_key, read_proof, read_public):
        with contextlib.suppress(CircuitFormatError, LimitError):
            reader(text)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_field_of_the_proof_replaced_by_any_json_is_refused_or_typed(
    data: st.DataObject,
) -> None:
    proof = json.loads(_PROOF)
    key = data.draw(st.sampled_from(sorted(proof)))
    proof[key] = data.draw(JSON_VALUES)
    with contextlib.suppress(CircuitFormatError, LimitError):
        read_proof(json.dumps(proof))
