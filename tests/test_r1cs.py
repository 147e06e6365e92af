"""R1CS and witness files (``circuits.r1cs``): round trips, the iden3 bytes, snarkjs's reading of
them, every malformed file refused with its own error, and the slow witness checker.

Layout of the tables: a valid three-wire system (``w1 * (P-1)w2 = 5``) is rebuilt field by field
with one field made hostile, so each case says in its name what is wrong and asserts the exact
error class and a fragment of the message.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import struct
import subprocess
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.r1cs import (
    MAX_CONSTRAINTS,
    MAX_WIRES,
    R1CS,
    Constraint,
    LinearCombination,
    P,
    check_witness,
    read_witness,
    witness_bytes,
)
from receipts.errors import CircuitFormatError, LimitError, WitnessError

SETTINGS = settings(max_examples=200, deadline=None)
ROOT = Path(__file__).resolve().parent.parent
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
PRIME_LE = P.to_bytes(32, "little")
# BLS12-381's scalar field: a real prime of the right size that is not BN254's.
BLS_R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
U32_MAX, U64_MAX = (1 << 32) - 1, (1 << 64) - 1


# --- strategies and a satisfiable-by-construction generator -------------------------------

coefficients = st.one_of(st.sampled_from([1, 2, P - 2, P - 1]), st.integers(1, P - 1))
elements = st.one_of(st.sampled_from([0, 1, P - 1]), st.integers(0, P - 1))


@st.composite
def systems(draw: st.DrawFn) -> R1CS:
    n_wires = draw(st.integers(1, 6))
    n_out = draw(st.integers(0, n_wires - 1))
    n_in = draw(st.integers(0, n_wires - 1 - n_out))
    n_prv = draw(st.integers(0, n_wires - 1 - n_out - n_in))
    lcs = st.dictionaries(st.integers(0, n_wires - 1), coefficients, max_size=n_wires).map(
        lambda terms: LinearCombination(tuple(sorted(terms.items())))
    )
    constraints = draw(st.lists(st.builds(Constraint, lcs, lcs, lcs), max_size=4))
    return R1CS(
        n_wires=n_wires, n_pub_out=n_out, n_pub_in=n_in, n_prv_in=n_prv,
        constraints=tuple(constraints),
    )  # fmt: skip


def _coefficient(rng: random.Random) -> int:
    return rng.choice([1, P - 1, rng.randrange(1, P)])


def _element(rng: random.Random) -> int:
    return rng.choice([0, 1, P - 1, rng.randrange(P)])


def _random_lc(rng: random.Random, n_wires: int) -> LinearCombination:
    wires = sorted(rng.sample(range(n_wires), rng.randint(0, min(3, n_wires))))
    return LinearCombination(tuple((w, _coefficient(rng)) for w in wires))


def satisfiable(
    rng: random.Random, *, n_io: tuple[int, int, int], m: int
) -> tuple[R1CS, list[int]]:
    """A system and a witness satisfying it: free values for one and the inputs, then each
    constraint ``A * B = D + c * w_new`` with random A, B, D over the wires so far and the new
    wire solved for. Wire ``1 + sum(n_io) + j`` appears first in constraint ``j``."""
    witness = [1] + [_element(rng) for _ in range(sum(n_io))]
    constraints = []
    for _ in range(m):
        a, b, d = (_random_lc(rng, len(witness)) for _ in range(3))
        c = _coefficient(rng)
        value = (a.value(witness) * b.value(witness) - d.value(witness)) * pow(c, -1, P) % P
        constraints.append(Constraint(a, b, LinearCombination((*d.terms, (len(witness), c)))))
        witness.append(value)
    n_out, n_in, n_prv = n_io
    r1cs = R1CS(
        n_wires=len(witness), n_pub_out=n_out, n_pub_in=n_in, n_prv_in=n_prv,
        constraints=tuple(constraints),
    )  # fmt: skip
    return r1cs, witness


# --- raw builders for hostile files --------------------------------------------------------


def header(
    *,
    fs: int = 32,
    prime: bytes = PRIME_LE,
    n_wires: int = 3,
    n_out: int = 1,
    n_in: int = 1,
    n_prv: int = 0,
    n_labels: int | None = None,
    m: int = 1,
) -> bytes:
    n_lab = n_wires if n_labels is None else n_labels
    return (
        struct.pack("<I", fs)
        + prime
        + struct.pack("<IIIIQI", n_wires, n_out, n_in, n_prv, n_lab, m)
    )


def lc(*terms: tuple[int, int], count: int | None = None) -> bytes:
    """A linear combination as raw bytes: any wires, any 256-bit coefficients, any count."""
    n = len(terms) if count is None else count
    return struct.pack("<I", n) + b"".join(
        struct.pack("<I", w) + c.to_bytes(32, "little") for w, c in terms
    )


def labels(n: int = 3) -> bytes:
    return b"".join(struct.pack("<Q", i) for i in range(n))


def container(
    sections: list[tuple[int, bytes]],
    *,
    magic: bytes = b"r1cs",
    version: int = 1,
    count: int | None = None,
) -> bytes:
    n = len(sections) if count is None else count
    out = magic + struct.pack("<II", version, n)
    return out + b"".join(struct.pack("<IQ", k, len(s)) + s for k, s in sections)


BODY = lc((1, 1)) + lc((2, P - 1)) + lc((0, 5))


def r1cs_file(
    *, head: bytes | None = None, body: bytes = BODY, wires: bytes | None = None
) -> bytes:
    return container(
        [
            (1, header() if head is None else head),
            (2, body),
            (3, labels() if wires is None else wires),
        ]
    )


def wtns_header(*, fs: int = 32, prime: bytes = PRIME_LE, count: int = 3) -> bytes:
    return struct.pack("<I", fs) + prime + struct.pack("<I", count)


def values(*vs: int) -> bytes:
    return b"".join(v.to_bytes(32, "little") for v in vs)


def wtns_file(*, head: bytes | None = None, body: bytes | None = None) -> bytes:
    return container(
        [
            (1, wtns_header() if head is None else head),
            (2, values(1, 2, 3) if body is None else body),
        ],
        magic=b"wtns",
        version=2,
    )


BASE = R1CS(
    n_wires=3, n_pub_out=1, n_pub_in=1, n_prv_in=0,
    constraints=(
        Constraint(
            LinearCombination(((1, 1),)),
            LinearCombination(((2, P - 1),)),
            LinearCombination(((0, 5),)),
        ),
    ),
)  # fmt: skip
BASE_BYTES = r1cs_file()
WTNS_BYTES = wtns_file()


def test_the_raw_builders_make_the_writers_bytes() -> None:
    # The hostile tables below are variations of these two files; they must start valid.
    assert BASE.to_bytes() == BASE_BYTES
    assert R1CS.from_bytes(BASE_BYTES) == BASE
    assert witness_bytes([1, 2, 3]) == WTNS_BYTES


# --- round trips ---------------------------------------------------------------------------


@SETTINGS
@given(systems())
def test_r1cs_round_trips_and_its_bytes_are_canonical(r1cs: R1CS) -> None:
    data = r1cs.to_bytes()
    decoded = R1CS.from_bytes(data)
    assert decoded == r1cs
    assert decoded.to_bytes() == data


@SETTINGS
@given(st.lists(elements, max_size=10))
def test_witness_round_trips(witness: list[int]) -> None:
    assert read_witness(witness_bytes(witness)) == tuple(witness)


def test_witness_bytes_reduce_values_mod_p() -> None:
    assert read_witness(witness_bytes([P, P + 7, -1])) == (0, 7, P - 1)


@pytest.mark.parametrize("order", list(itertools.permutations([1, 2, 3])))
def test_sections_are_read_in_any_order(order: tuple[int, ...]) -> None:
    # r1cs_bin_format.md: "Any order of the section must be accepted."
    content = {1: header(), 2: BODY, 3: labels()}
    assert R1CS.from_bytes(container([(k, content[k]) for k in order])) == BASE


def test_witness_sections_are_read_in_either_order() -> None:
    data = container([(2, values(1, 2, 3)), (1, wtns_header())], magic=b"wtns", version=2)
    assert read_witness(data) == (1, 2, 3)


# --- the bytes, transcribed from the iden3 spec ----------------------------------------------

SPEC_SYSTEM = R1CS(
    n_wires=4, n_pub_out=1, n_pub_in=1, n_prv_in=1,
    constraints=(
        Constraint(
            LinearCombination.of({1: 1}),
            LinearCombination.of({2: -1}),
            LinearCombination.of({3: 7, 0: 5}),
        ),
    ),
)  # fmt: skip
SPEC_PRIME = "010000f0 93f5e143 9170b979 48e83328 5d588181 b64550b8 29a031e1 724e6430"
SPEC_P_MINUS_1 = "000000f0 93f5e143 9170b979 48e83328 5d588181 b64550b8 29a031e1 724e6430"
SPEC_R1CS = bytes.fromhex(
    " ".join(
        [
            "72316373",  # magic "r1cs"
            "01000000",  # version 1
            "03000000",  # three sections
            "01000000 4000000000000000",  # section 1 (header), 64 bytes
            "20000000",  # field size 32
            SPEC_PRIME,
            "04000000 01000000 01000000 01000000",  # nWires, nPubOut, nPubIn, nPrvIn
            "0400000000000000",  # nLabels (u64)
            "01000000",  # mConstraints
            "02000000 9c00000000000000",  # section 2 (constraints), 156 bytes
            "01000000 01000000",  # A: one term, wire 1
            "01" + "00" * 31,  # ... coefficient 1
            "01000000 02000000",  # B: one term, wire 2
            SPEC_P_MINUS_1,  # ... coefficient P-1
            "02000000 00000000",  # C: two terms, wire 0 first
            "05" + "00" * 31,  # ... coefficient 5
            "03000000",  # then wire 3
            "07" + "00" * 31,  # ... coefficient 7
            "03000000 2000000000000000",  # section 3 (wire -> label), 32 bytes
            "0000000000000000 0100000000000000 0200000000000000 0300000000000000",
        ]
    )
)
SPEC_WTNS = bytes.fromhex(
    " ".join(
        [
            "77746e73 02000000 02000000",  # magic "wtns", version 2, two sections
            "01000000 2800000000000000",  # section 1 (header), 40 bytes
            "20000000",  # field size 32
            SPEC_PRIME,
            "03000000",  # three values
            "02000000 6000000000000000",  # section 2 (values), 96 bytes
            "01" + "00" * 31,
            "ff" + "00" * 31,
            SPEC_P_MINUS_1,
        ]
    )
)


def test_r1cs_bytes_follow_the_spec() -> None:
    assert SPEC_R1CS[28:60] == P.to_bytes(32, "little")  # the transcription is of BN254's r
    assert SPEC_SYSTEM.to_bytes() == SPEC_R1CS
    assert R1CS.from_bytes(SPEC_R1CS) == SPEC_SYSTEM


def test_wtns_bytes_follow_the_spec() -> None:
    assert witness_bytes([1, 255, P - 1]) == SPEC_WTNS
    assert read_witness(SPEC_WTNS) == (1, 255, P - 1)


# --- snarkjs reads what we write -----------------------------------------------------------

needs_snarkjs = pytest.mark.skipif(
    not SNARKJS.exists() or shutil.which("node") is None,
    reason="snarkjs is not installed (make setup runs npm ci) or node is not on PATH",
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SNARKJS_ABORT = re.compile(r"aborting checking process at constraint (\d+)")


def _snarkjs(*args: Path | str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SNARKJS), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs: dict[str, subprocess.Popen[str]]) -> dict[str, tuple[int, str]]:
    """Wait for every process (none is left running if one fails): name -> (exit code, output)."""
    outputs = {name: proc.communicate(timeout=60)[0] for name, proc in procs.items()}
    return {name: (procs[name].returncode, ANSI.sub("", out)) for name, out in outputs.items()}


def _snarkjs_verdict(returncode: int, out: str) -> tuple[bool, int | None]:
    """(satisfied, first failing constraint) from ``snarkjs wtns check``."""
    if returncode == 0:
        assert "WITNESS IS CORRECT" in out, out
        return True, None
    failed = SNARKJS_ABORT.search(out)
    assert returncode == 1 and failed, out
    return False, int(failed.group(1))


def _our_verdict(r1cs: R1CS, witness: list[int]) -> tuple[bool, int | None]:
    try:
        check_witness(r1cs, witness)
    except WitnessError as e:
        found = re.fullmatch(r"constraint (\d+) does not hold", str(e))
        assert found, str(e)
        return False, int(found.group(1))
    return True, None


def _as_snarkjs_json(r1cs: R1CS) -> list[list[dict[str, str]]]:
    return [
        [{str(w): str(c) for w, c in comb.terms} for comb in (k.a, k.b, k.c)]
        for k in r1cs.constraints
    ]


@pytest.mark.slow
@needs_snarkjs
@pytest.mark.parametrize(
    ("seed", "n_io", "m"), [(1, (1, 1, 1), 3), (2, (2, 0, 1), 5), (3, (0, 3, 0), 4)]
)
def test_snarkjs_reads_our_files_and_agrees_with_check_witness(
    tmp_path: Path, seed: int, n_io: tuple[int, int, int], m: int
) -> None:
    rng = random.Random(seed)
    r1cs, good = satisfiable(rng, n_io=n_io, m=m)
    derived = rng.randrange(m)  # wire 1 + sum(n_io) + derived first appears in that constraint
    bad_derived = list(good)
    bad_derived[1 + sum(n_io) + derived] = (good[1 + sum(n_io) + derived] + 1) % P
    bad_any = list(good)  # any wire but the one (snarkjs does not check wire 0 on its own)
    wire = rng.randrange(1, r1cs.n_wires)
    bad_any[wire] = (good[wire] + rng.randrange(1, P)) % P
    (tmp_path / "c.r1cs").write_bytes(r1cs.to_bytes())
    for name, w in (("good", good), ("derived", bad_derived), ("any", bad_any)):
        (tmp_path / f"{name}.wtns").write_bytes(witness_bytes(w))

    # All at once: each node start costs ~0.3 s.
    results = _finish(
        {
            "export": _snarkjs("r1cs", "export", "json", tmp_path / "c.r1cs", tmp_path / "c.json"),
            "export_w": _snarkjs(
                "wtns", "export", "json", tmp_path / "good.wtns", tmp_path / "w.json"
            ),
        }
        | {
            name: _snarkjs("wtns", "check", tmp_path / "c.r1cs", tmp_path / f"{name}.wtns")
            for name in ("good", "derived", "any")
        }
    )
    assert results["export"][0] == 0, results["export"][1]
    assert results["export_w"][0] == 0, results["export_w"][1]
    verdicts = {name: _snarkjs_verdict(*results[name]) for name in ("good", "derived", "any")}

    exported = json.loads((tmp_path / "c.json").read_text())
    assert exported["prime"] == str(P)
    assert exported["n8"] == 32
    counts = [exported[k] for k in ("nVars", "nLabels", "nConstraints")]
    assert counts == [r1cs.n_wires, r1cs.n_wires, m]
    assert (exported["nOutputs"], exported["nPubInputs"], exported["nPrvInputs"]) == n_io
    assert exported["constraints"] == _as_snarkjs_json(r1cs)
    assert exported["map"] == list(range(r1cs.n_wires))
    assert json.loads((tmp_path / "w.json").read_text()) == [str(v) for v in good]

    assert verdicts["good"] == _our_verdict(r1cs, good) == (True, None)
    assert verdicts["derived"] == _our_verdict(r1cs, bad_derived) == (False, derived)
    assert verdicts["any"] == _our_verdict(r1cs, bad_any)


# --- hostile .r1cs files -------------------------------------------------------------------

CFE, LIM = CircuitFormatError, LimitError

SECTIONS = [(1, header()), (2, BODY), (3, labels())]


def case(data: bytes, error: type[Exception], fragment: str, name: str) -> object:
    return pytest.param(data, error, fragment, id=name)


# fmt: off
R1CS_CASES = [
    # the container
    case(b"", CFE, "not a .r1cs file", "empty"),
    case(b"R1CS" + BASE_BYTES[4:], CFE, "not a .r1cs file", "wrong-magic"),
    case(WTNS_BYTES, CFE, "not a .r1cs file", "a-wtns-file"),
    case(BASE_BYTES[:3], CFE, "not a .r1cs file", "truncated/in-magic"),
    case(BASE_BYTES[:10], CFE, ".r1cs: truncated header", "truncated/file-header"),
    case(container(SECTIONS, version=2), CFE, ".r1cs: version 2 (only 1)", "version-2"),
    case(container(SECTIONS, version=0), CFE, ".r1cs: version 0 (only 1)", "version-0"),
    case(BASE_BYTES[:18], CFE, "truncated section header", "truncated/section-header"),
    case(BASE_BYTES[:30], CFE, "section 1 runs past the end", "truncated/header-section"),
    case(BASE_BYTES[:120], CFE, "section 2 runs past the end", "truncated/constraints-section"),
    case(BASE_BYTES[:-1], CFE, "section 3 runs past the end", "truncated/wire-map-section"),
    case(container(SECTIONS, count=4), CFE, "truncated section header", "section-count-4"),
    case(container(SECTIONS, count=U32_MAX), CFE, "truncated section header",
         "section-count-2^32-1"),
    case(container(SECTIONS, count=2), CFE, "byte(s) after the last section", "section-count-2"),
    case(container([]), CFE, "missing section(s) [1, 2, 3]", "no-sections"),
    case(BASE_BYTES[:12] + struct.pack("<IQ", 1, U64_MAX) + BASE_BYTES[24:],
         CFE, "section 1 runs past the end", "section-size-2^64-1"),
    # One byte too many: the next section header is read one byte late (type 0x78000000).
    case(BASE_BYTES[:12] + struct.pack("<IQ", 1, 65) + BASE_BYTES[24:],
         CFE, "section 2013265920 runs past the end", "section-size-one-too-many"),
    case(container([*SECTIONS, (1, header())]),
         CFE, "unexpected or repeated section 1", "repeated-header-section"),
    case(container([*SECTIONS, (2, BODY)]),
         CFE, "unexpected or repeated section 2", "repeated-constraints-section"),
    case(container([*SECTIONS, (4, b"")]),
         CFE, "unexpected or repeated section 4", "unknown-section-4-custom-gates"),
    case(container([*SECTIONS, (U32_MAX, b"x")]),
         CFE, "unexpected or repeated section 4294967295", "unknown-section-2^32-1"),
    case(container([(0, b""), *SECTIONS]),
         CFE, "unexpected or repeated section 0", "unknown-section-0"),
    case(container(SECTIONS[:2]), CFE, "missing section(s) [3]", "no-wire-map"),
    case(container(SECTIONS[1:]), CFE, "missing section(s) [1]", "no-header"),
    case(container(SECTIONS[::2]), CFE, "missing section(s) [2]", "no-constraints"),
    case(BASE_BYTES + b"\x00", CFE, "1 byte(s) after the last section", "trailing-byte"),
    case(BASE_BYTES + struct.pack("<IQ", 4, 0), CFE, "12 byte(s) after", "trailing-section"),
    # the header section
    case(r1cs_file(head=header()[:-4]), CFE, "r1cs header: truncated", "truncated/header-fields"),
    case(r1cs_file(head=header()[:20]), CFE, "r1cs header: truncated", "truncated/prime"),
    case(r1cs_file(head=b""), CFE, "r1cs header: truncated", "empty-header"),
    case(r1cs_file(head=header() + b"\x00"), CFE, "r1cs header: 1 unread byte(s)",
         "header-longer"),
    case(r1cs_file(head=header(fs=64, prime=PRIME_LE + bytes(32))),
         CFE, "not BN254's scalar field", "field-size-64"),
    case(r1cs_file(head=struct.pack("<I", 8) + header()[4:]),
         CFE, "not BN254's scalar field", "field-size-8"),
    case(r1cs_file(head=header(fs=0, prime=b"")), CFE, "not BN254's scalar field",
         "field-size-0"),
    case(r1cs_file(head=header(prime=BLS_R.to_bytes(32, "little"))),
         CFE, "not BN254's scalar field", "bls12-381-prime"),
    case(r1cs_file(head=header(prime=P.to_bytes(32, "big"))),
         CFE, "not BN254's scalar field", "prime-big-endian"),
    case(r1cs_file(head=header(prime=(P + 2).to_bytes(32, "little"))),
         CFE, "not BN254's scalar field", "prime-plus-2"),
    case(r1cs_file(head=header(n_labels=2)), CFE, "labels for", "nlabels-lt-nwires"),
    case(r1cs_file(head=header(n_out=3)), CFE, "do not fit in the wires", "outputs-fill-wires"),
    case(r1cs_file(head=header(n_prv=1)), CFE, "do not fit in the wires", "inputs-one-past"),
    case(r1cs_file(head=header(n_out=U32_MAX, n_in=U32_MAX, n_prv=U32_MAX)),
         CFE, "do not fit in the wires", "inputs-2^32-1"),
    case(r1cs_file(head=header(n_wires=0, m=0), body=b"", wires=b""),
         LIM, "r1cs: 0 wires", "no-wires"),
    case(r1cs_file(head=header(n_wires=U32_MAX, n_labels=3)),
         CFE, "labels for", "nwires-2^32-1-labels-3"),
    case(r1cs_file(head=header(n_wires=U32_MAX)), LIM, "r1cs: 4294967295 wires", "nwires-2^32-1"),
    case(r1cs_file(head=header(n_wires=MAX_WIRES + 1)),
         LIM, f"r1cs: {MAX_WIRES + 1} wires", "nwires-2^26+1"),
    case(r1cs_file(head=header(m=U32_MAX)), LIM, "4294967295 constraints", "mconstraints-2^32-1"),
    case(r1cs_file(head=header(m=MAX_CONSTRAINTS + 1)),
         LIM, f"{MAX_CONSTRAINTS + 1} constraints", "mconstraints-2^26+1"),
    case(r1cs_file(head=header(m=MAX_CONSTRAINTS)),
         CFE, "r1cs constraints: truncated", "mconstraints-2^26-body-of-one"),
    case(r1cs_file(head=header(m=2)), CFE, "r1cs constraints: truncated", "mconstraints-2"),
    case(r1cs_file(head=header(m=0)), CFE, "r1cs constraints: 120 unread byte(s)",
         "mconstraints-0"),
    # the constraints section
    case(r1cs_file(body=BODY[:-1]), CFE, "r1cs constraints: truncated",
         "truncated/inside-coefficient"),
    case(r1cs_file(body=BODY[:-34]), CFE, "r1cs constraints: truncated",
         "truncated/inside-wire-id"),
    case(r1cs_file(body=BODY[:-38]), CFE, "r1cs constraints: truncated",
         "truncated/inside-term-count"),
    case(r1cs_file(body=BODY[:80]), CFE, "r1cs constraints: truncated", "truncated/no-c"),
    case(r1cs_file(body=lc((1, 1)) + lc((2, 1)) + lc((0, 5), count=2)),
         CFE, "r1cs constraints: truncated", "term-count-past-terms"),
    # A's second term is read from B's bytes: wire 1 (B's count) again.
    case(r1cs_file(body=lc((1, 1), count=2) + lc((2, 1)) + lc((0, 5))),
         CFE, "must ascend, each once", "term-count-reads-into-next-lc"),
    case(r1cs_file(body=lc((1, 1), count=U32_MAX) + lc((2, 1)) + lc((0, 5))),
         CFE, "r1cs constraints: truncated", "term-count-2^32-1"),
    case(r1cs_file(body=BODY + b"\x00"), CFE, "r1cs constraints: 1 unread byte(s)",
         "constraints-longer"),
    case(r1cs_file(body=lc((1, P)) + lc((2, 1)) + lc((0, 5))),
         CFE, "r1cs constraints: a value is not below the field prime", "coefficient-p"),
    case(r1cs_file(body=lc((1, 1)) + lc((2, 1)) + lc((0, (1 << 256) - 1))),
         CFE, "a value is not below the field prime", "coefficient-2^256-1"),
    case(r1cs_file(body=lc((1, 1)) + lc((2, 0)) + lc((0, 5))),
         CFE, "coefficients are field elements 1..P-1", "coefficient-0"),
    case(r1cs_file(body=lc((2, 1), (1, 1)) + lc((2, 1)) + lc((0, 5))),
         CFE, "must ascend, each once", "unsorted-wires"),
    case(r1cs_file(body=lc((1, 1)) + lc((2, 1)) + lc((0, 5), (0, 6))),
         CFE, "must ascend, each once", "repeated-wire"),
    case(r1cs_file(body=lc((1, 1)) + lc((3, 1)) + lc((0, 5))),
         CFE, "names a wire past the last one", "wire-equals-nwires"),
    case(r1cs_file(body=lc((1, 1)) + lc((2, 1)) + lc((0, 5), (U32_MAX, 1))),
         CFE, "names a wire past the last one", "wire-2^32-1"),
    # the wire-to-label map
    case(r1cs_file(wires=labels(2)), CFE, "not the identity", "wire-map-one-short"),
    case(r1cs_file(wires=labels(4)), CFE, "not the identity", "wire-map-one-long"),
    case(r1cs_file(wires=labels(3) + b"\x00"), CFE, "not the identity", "wire-map-odd"),
    case(r1cs_file(wires=b""), CFE, "not the identity", "wire-map-empty"),
    case(r1cs_file(head=header(n_wires=MAX_WIRES)), CFE, "not the identity",
         "nwires-2^26-wire-map-of-3"),
]
# fmt: on


@pytest.mark.parametrize(("data", "error", "fragment"), R1CS_CASES)
def test_hostile_r1cs_is_refused(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=re.escape(fragment)) as caught:
        R1CS.from_bytes(data)
    assert caught.type is error


# --- hostile .wtns files -------------------------------------------------------------------


def _wtns(*sections: tuple[int, bytes], version: int = 2, count: int | None = None) -> bytes:
    return container(list(sections), magic=b"wtns", version=version, count=count)


# fmt: off
WTNS_CASES = [
    case(b"", CFE, "not a .wtns file", "empty"),
    case(b"WTNS" + WTNS_BYTES[4:], CFE, "not a .wtns file", "wrong-magic"),
    case(BASE_BYTES, CFE, "not a .wtns file", "an-r1cs-file"),
    case(WTNS_BYTES[:11], CFE, ".wtns: truncated header", "truncated/file-header"),
    case(_wtns((1, wtns_header()), (2, values(1, 2, 3)), version=1),
         CFE, ".wtns: version 1 (only 2)", "version-1"),
    case(WTNS_BYTES[:20], CFE, "truncated section header", "truncated/section-header"),
    case(WTNS_BYTES[:40], CFE, "section 1 runs past the end", "truncated/header-section"),
    case(WTNS_BYTES[:-1], CFE, "section 2 runs past the end", "truncated/values-section"),
    case(_wtns((1, wtns_header()), (2, values(1, 2, 3)), count=3),
         CFE, "truncated section header", "section-count-3"),
    case(_wtns((1, wtns_header()), (2, values(1, 2, 3)), (1, wtns_header())),
         CFE, "unexpected or repeated section 1", "repeated-header-section"),
    case(_wtns((1, wtns_header()), (2, values(1, 2, 3)), (3, b"")),
         CFE, "unexpected or repeated section 3", "unknown-section-3"),
    case(_wtns((1, wtns_header())), CFE, "missing section(s) [2]", "no-values"),
    case(_wtns((2, values(1, 2, 3))), CFE, "missing section(s) [1]", "no-header"),
    case(WTNS_BYTES + b"\x00", CFE, "1 byte(s) after the last section", "trailing-byte"),
    case(wtns_file(head=wtns_header()[:-1]), CFE, "wtns header: truncated", "truncated/count"),
    case(wtns_file(head=wtns_header() + b"\x00"), CFE, "wtns header: 1 unread byte(s)",
         "header-longer"),
    case(wtns_file(head=wtns_header(fs=64, prime=PRIME_LE + bytes(32))),
         CFE, "not BN254's scalar field", "field-size-64"),
    case(wtns_file(head=wtns_header(prime=BLS_R.to_bytes(32, "little"))),
         CFE, "not BN254's scalar field", "bls12-381-prime"),
    case(wtns_file(body=values(1, P, 3)),
         CFE, "wtns values: a value is not below the field prime", "value-p"),
    case(wtns_file(body=values(1, 2, (1 << 256) - 1)),
         CFE, "a value is not below the field prime", "value-2^256-1"),
    case(wtns_file(head=wtns_header(count=4)), CFE, "wtns values: truncated", "count-past-data"),
    case(wtns_file(body=values(1, 2, 3)[:-1]), CFE, "wtns values: truncated",
         "truncated/inside-value"),
    case(wtns_file(head=wtns_header(count=2)), CFE, "wtns values: 32 unread byte(s)",
         "count-short-of-data"),
    case(wtns_file(head=wtns_header(count=MAX_WIRES)), CFE, "wtns values: truncated",
         "count-2^26-values-3"),
    case(wtns_file(head=wtns_header(count=MAX_WIRES + 1)), LIM, f"{MAX_WIRES + 1} values",
         "count-2^26+1"),
    case(wtns_file(head=wtns_header(count=U32_MAX)), LIM, "4294967295 values", "count-2^32-1"),
]
# fmt: on


@pytest.mark.parametrize(("data", "error", "fragment"), WTNS_CASES)
def test_hostile_wtns_is_refused(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=re.escape(fragment)) as caught:
        read_witness(data)
    assert caught.type is error


def test_every_truncation_is_refused() -> None:
    for cut in range(len(BASE_BYTES)):
        with pytest.raises(CircuitFormatError):
            R1CS.from_bytes(BASE_BYTES[:cut])
    for cut in range(len(WTNS_BYTES)):
        with pytest.raises(CircuitFormatError):
            read_witness(WTNS_BYTES[:cut])


HUGE = [
    pytest.param(R1CS.from_bytes, r1cs_file(head=header(m=MAX_CONSTRAINTS)), CFE, id="m-2^26"),
    pytest.param(R1CS.from_bytes, r1cs_file(head=header(m=U32_MAX)), LIM, id="m-2^32-1"),
    pytest.param(R1CS.from_bytes, r1cs_file(head=header(n_wires=U32_MAX)), LIM, id="n-2^32-1"),
    pytest.param(R1CS.from_bytes, r1cs_file(head=header(n_wires=MAX_WIRES)), CFE, id="n-2^26"),
    pytest.param(
        R1CS.from_bytes,
        r1cs_file(body=lc((1, 1), count=MAX_WIRES) + lc() + lc()),
        CFE,
        id="terms-2^26",
    ),
    pytest.param(read_witness, wtns_file(head=wtns_header(count=MAX_WIRES)), CFE, id="wtns-2^26"),
    pytest.param(read_witness, wtns_file(head=wtns_header(count=U32_MAX)), LIM, id="wtns-2^32-1"),
]


@pytest.mark.parametrize(("parse", "data", "error"), HUGE)
def test_huge_counts_fail_without_allocating(
    parse: Callable[[bytes], object], data: bytes, error: type[Exception]
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.type is error
    assert peak < 256 * 1024, f"peak {peak} bytes while refusing a {len(data)}-byte file"


# --- any single-byte change ---------------------------------------------------------------


@SETTINGS
@given(systems(), st.data())
def test_any_byte_change_of_an_r1cs_is_refused_or_decodes_to_another_system(
    r1cs: R1CS, data: st.DataObject
) -> None:
    original = r1cs.to_bytes()
    at = data.draw(st.integers(0, len(original) - 1), label="offset")
    delta = data.draw(st.integers(1, 255), label="delta")
    changed = bytearray(original)
    changed[at] = (changed[at] + delta) % 256
    try:
        decoded = R1CS.from_bytes(bytes(changed))
    except (CircuitFormatError, LimitError):
        return
    assert decoded != r1cs


def test_every_byte_of_the_base_file_is_checked() -> None:
    # The deterministic floor under the property above: each byte of BASE, three ways.
    for at in range(len(BASE_BYTES)):
        for mask in (0x01, 0x80, 0xFF):
            changed = bytearray(BASE_BYTES)
            changed[at] ^= mask
            try:
                decoded = R1CS.from_bytes(bytes(changed))
            except (CircuitFormatError, LimitError):
                continue
            assert decoded != BASE, (at, mask)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(r1cs_file(head=header(n_labels=4)), id="nlabels-nwires+1"),
        pytest.param(r1cs_file(head=header(n_labels=U64_MAX)), id="nlabels-2^64-1"),
        pytest.param(r1cs_file(wires=labels(2) + struct.pack("<Q", 7)), id="wire-2-label-7"),
        pytest.param(r1cs_file(wires=struct.pack("<QQQ", 1, 0, 2)), id="wire-0-label-1"),
    ],
)
def test_label_changes_are_refused(changed: bytes) -> None:
    with pytest.raises(CircuitFormatError):
        R1CS.from_bytes(changed)


@SETTINGS
@given(st.lists(elements, max_size=6), st.data())
def test_any_byte_change_of_a_wtns_is_refused_or_decodes_to_other_values(
    witness: list[int], data: st.DataObject
) -> None:
    original = witness_bytes(witness)
    at = data.draw(st.integers(0, len(original) - 1), label="offset")
    delta = data.draw(st.integers(1, 255), label="delta")
    changed = bytearray(original)
    changed[at] = (changed[at] + delta) % 256
    try:
        decoded = read_witness(bytes(changed))
    except (CircuitFormatError, LimitError):
        return
    assert decoded != tuple(witness)


# --- check_witness -------------------------------------------------------------------------

GOOD = [1, 2, -5 * pow(2, -1, P) % P]  # BASE says w1 * -w2 = 5


def test_check_witness_accepts_the_base_witness() -> None:
    check_witness(BASE, GOOD)


@pytest.mark.parametrize(
    ("witness", "fragment"),
    [
        pytest.param([], "the witness has 0 values, the circuit 3", id="empty"),
        pytest.param(GOOD[:2], "the witness has 2 values, the circuit 3", id="one-short"),
        pytest.param([*GOOD, 0], "the witness has 4 values, the circuit 3", id="one-long"),
        pytest.param([0, *GOOD[1:]], "wire 0 (the constant one) is not 1", id="wire0-0"),
        pytest.param([P - 1, *GOOD[1:]], "wire 0 (the constant one) is not 1", id="wire0-minus1"),
        pytest.param([P + 1, *GOOD[1:]], "wire 0 (the constant one) is not 1", id="wire0-p+1"),
        pytest.param([1, P + 2, GOOD[2]], "not a field element", id="value-p+2"),
        pytest.param([1, GOOD[1], GOOD[2] + P], "not a field element", id="value-shifted-by-p"),
        pytest.param([1, -1, GOOD[2]], "not a field element", id="value-negative"),
        pytest.param([1, 3, GOOD[2]], "constraint 0 does not hold", id="unsatisfied"),
    ],
)
def test_check_witness_refuses(witness: list[int], fragment: str) -> None:
    with pytest.raises(WitnessError, match=re.escape(fragment)) as caught:
        check_witness(BASE, witness)
    assert caught.type is WitnessError


def test_check_witness_names_the_first_unsatisfied_constraint() -> None:
    r1cs, witness = satisfiable(random.Random(7), n_io=(1, 1, 1), m=5)
    check_witness(r1cs, witness)
    witness[4 + 2] = (witness[4 + 2] + 1) % P  # the wire solved for in constraint 2
    with pytest.raises(WitnessError, match=r"^constraint 2 does not hold$"):
        check_witness(r1cs, witness)


@SETTINGS
@given(
    st.randoms(use_true_random=False),
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    st.integers(1, 6),
    st.data(),
)
def test_check_witness_accepts_a_solution_and_names_a_broken_constraint(
    rng: random.Random, n_io: tuple[int, int, int], m: int, data: st.DataObject
) -> None:
    r1cs, witness = satisfiable(rng, n_io=n_io, m=m)
    check_witness(r1cs, witness)
    assert R1CS.from_bytes(r1cs.to_bytes()) == r1cs
    broken = data.draw(st.integers(0, m - 1), label="constraint")
    delta = data.draw(st.integers(1, P - 1), label="delta")
    witness[1 + sum(n_io) + broken] = (witness[1 + sum(n_io) + broken] + delta) % P
    with pytest.raises(WitnessError, match=rf"^constraint {broken} does not hold$"):
        check_witness(r1cs, witness)
