"""Rank-1 constraint systems over BN254's scalar field, and the iden3 ``.r1cs``/``.wtns`` files.

The floor of the ZK rung (``circuits``): the compiler builds an ``R1CS``, the witness generator a
list of field elements, and snarkjs reads both from the files written here. Formats (iden3
binary containers: magic, version, sections of ``type u32 | size u64 | content``, all
little-endian; field elements as 32-byte little-endian integers below the prime):

* ``.r1cs`` version 1: header (field size 32, prime, nWires, nPubOut, nPubIn, nPrvIn, nLabels
  u64, mConstraints), constraints (each A, B, C as ``count u32`` then ``wire u32 | value``
  sorted by wire), and the wire-to-label map (``u64`` per wire; here the identity);
* ``.wtns`` version 2: header (field size 32, prime, nWitness), then the values.

Wire 0 is the constant one; then the public outputs, the public inputs, the private inputs, then
the rest. Reading is strict: unknown or repeated sections, values not below the prime, unsorted
or repeated wires, a wire map other than the identity (the files this compiler writes label each
wire by its index), and trailing bytes are refused (``CircuitFormatError``).

    data = r1cs.to_bytes(); same = R1CS.from_bytes(data)
    check_witness(r1cs, witness)          # the slow, obviously correct check (WitnessError)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from receipts.errors import CircuitFormatError, LimitError, WitnessError

P = 21888242871839275222246405745257275088548364400416034343698204186575808495617  # BN254 r
FS = 32  # bytes per field element
_PRIME = P.to_bytes(FS, "little")
R1CS_MAGIC, WTNS_MAGIC = b"r1cs", b"wtns"
MAX_WIRES = 1 << 26
MAX_CONSTRAINTS = 1 << 26


@dataclass(frozen=True, slots=True)
class LinearCombination:
    """Sum of ``coefficient * wire`` terms: wires ascending and distinct, coefficients in
    ``1..P-1`` (zero terms are dropped)."""

    terms: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        wires = [w for w, _ in self.terms]
        if wires != sorted(set(wires)):
            raise CircuitFormatError("a linear combination's wires must ascend, each once")
        if any(not 0 < c < P for _, c in self.terms) or any(w < 0 for w in wires):
            raise CircuitFormatError("coefficients are field elements 1..P-1 on wires >= 0")

    @classmethod
    def of(cls, terms: dict[int, int]) -> LinearCombination:
        """From ``{wire: coefficient}`` (any integers; reduced mod P, zeros dropped)."""
        reduced = ((w, c % P) for w, c in sorted(terms.items()))
        return cls(tuple((w, c) for w, c in reduced if c))

    def value(self, witness: Sequence[int]) -> int:
        return sum(c * witness[w] for w, c in self.terms) % P


@dataclass(frozen=True, slots=True)
class Constraint:
    """``a * b = c`` over the field."""

    a: LinearCombination
    b: LinearCombination
    c: LinearCombination


@dataclass(frozen=True, slots=True, kw_only=True)
class R1CS:
    """A constraint system with its wire layout (wire 0 is one; outputs, inputs, private)."""

    n_wires: int
    n_pub_out: int
    n_pub_in: int
    n_prv_in: int
    constraints: tuple[Constraint, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.n_wires <= MAX_WIRES or len(self.constraints) > MAX_CONSTRAINTS:
            raise LimitError("an R1CS has 1..2^26 wires and at most 2^26 constraints")
        if min(self.n_pub_out, self.n_pub_in, self.n_prv_in) < 0 or (
            1 + self.n_pub_out + self.n_pub_in + self.n_prv_in > self.n_wires
        ):
            raise CircuitFormatError("the public and private inputs do not fit in the wires")
        for constraint in self.constraints:
            for lc in (constraint.a, constraint.b, constraint.c):
                if lc.terms and lc.terms[-1][0] >= self.n_wires:
                    raise CircuitFormatError("a constraint names a wire past the last one")

    @property
    def n_public(self) -> int:
        """Public signals, as snarkjs counts them: outputs then inputs."""
        return self.n_pub_out + self.n_pub_in

    def to_bytes(self) -> bytes:
        header = (
            struct.pack("<I", FS)
            + _PRIME
            + struct.pack(
                "<IIIIQI",
                self.n_wires,
                self.n_pub_out,
                self.n_pub_in,
                self.n_prv_in,
                self.n_wires,  # labels: one per wire (the identity map below)
                len(self.constraints),
            )
        )
        body = b"".join(_lc_bytes(lc) for k in self.constraints for lc in (k.a, k.b, k.c))
        labels = b"".join(struct.pack("<Q", w) for w in range(self.n_wires))
        return _container(R1CS_MAGIC, 1, [(1, header), (2, body), (3, labels)])

    @classmethod
    def from_bytes(cls, data: bytes) -> R1CS:
        sections = _sections(data, R1CS_MAGIC, 1, required=(1, 2, 3))
        head = _Reader(sections[1], "r1cs header")
        head.prime()
        n_wires, n_out, n_in, n_prv = (head.u32() for _ in range(4))
        n_labels, m = head.u64(), head.u32()
        head.end()
        if n_labels != n_wires:
            raise CircuitFormatError(
                f"r1cs: {n_labels} labels for {n_wires} wires (this format's files label each "
                "wire by its index)"
            )
        if not 1 <= n_wires <= MAX_WIRES or m > MAX_CONSTRAINTS:
            raise LimitError(f"r1cs: {n_wires} wires, {m} constraints (limit 2^26 each)")
        body = _Reader(sections[2], "r1cs constraints")
        constraints = tuple(Constraint(body.lc(), body.lc(), body.lc()) for _ in range(m))
        body.end()
        # Length first: the identity map is built only for a map the file really holds.
        if len(sections[3]) != 8 * n_wires or sections[3] != b"".join(
            struct.pack("<Q", w) for w in range(n_wires)
        ):
            raise CircuitFormatError("r1cs: the wire-to-label map is not the identity")
        return cls(
            n_wires=n_wires, n_pub_out=n_out, n_pub_in=n_in, n_prv_in=n_prv,
            constraints=constraints,
        )  # fmt: skip


def witness_bytes(values: Sequence[int]) -> bytes:
    """A ``.wtns`` (version 2) file of ``values`` (each reduced mod P)."""
    header = struct.pack("<I", FS) + _PRIME + struct.pack("<I", len(values))
    body = b"".join((v % P).to_bytes(FS, "little") for v in values)
    return _container(WTNS_MAGIC, 2, [(1, header), (2, body)])


def read_witness(data: bytes) -> tuple[int, ...]:
    sections = _sections(data, WTNS_MAGIC, 2, required=(1, 2))
    head = _Reader(sections[1], "wtns header")
    head.prime()
    count = head.u32()
    head.end()
    if count > MAX_WIRES:
        raise LimitError(f"wtns: {count} values (limit 2^26)")
    body = _Reader(sections[2], "wtns values")
    values = tuple(body.element() for _ in range(count))
    body.end()
    return values


def check_witness(r1cs: R1CS, witness: Sequence[int]) -> None:
    """Raise ``WitnessError`` unless ``witness`` (wire 0 = 1) satisfies every constraint. Slow
    and simple on purpose: the reference beside snarkjs."""
    if len(witness) != r1cs.n_wires:
        raise WitnessError(f"the witness has {len(witness)} values, the circuit {r1cs.n_wires}")
    if witness[0] != 1:
        raise WitnessError("wire 0 (the constant one) is not 1")
    if any(not 0 <= v < P for v in witness):
        raise WitnessError("a witness value is not a field element")
    for index, k in enumerate(r1cs.constraints):
        if k.a.value(witness) * k.b.value(witness) % P != k.c.value(witness):
            raise WitnessError(f"constraint {index} does not hold")


# --- the iden3 binary container -------------------------------------------------------------


def _lc_bytes(lc: LinearCombination) -> bytes:
    return struct.pack("<I", len(lc.terms)) + b"".join(
        struct.pack("<I", w) + c.to_bytes(FS, "little") for w, c in lc.terms
    )


def _container(magic: bytes, version: int, sections: list[tuple[int, bytes]]) -> bytes:
    out = [magic, struct.pack("<II", version, len(sections))]
    for kind, content in sections:
        out += [struct.pack("<IQ", kind, len(content)), content]
    return b"".join(out)


def _sections(
    data: bytes, magic: bytes, version: int, *, required: tuple[int, ...]
) -> dict[int, bytes]:
    what = magic.decode()
    if data[:4] != magic:
        raise CircuitFormatError(f"not a .{what} file (magic {data[:4]!r})")
    if len(data) < 12:
        raise CircuitFormatError(f".{what}: truncated header")
    found_version, count = struct.unpack_from("<II", data, 4)
    if found_version != version:
        raise CircuitFormatError(f".{what}: version {found_version} (only {version})")
    sections: dict[int, bytes] = {}
    at = 12
    for _ in range(count):
        if at + 12 > len(data):
            raise CircuitFormatError(f".{what}: truncated section header")
        kind, size = struct.unpack_from("<IQ", data, at)
        at += 12
        if size > len(data) - at:
            raise CircuitFormatError(f".{what}: section {kind} runs past the end of the file")
        if kind in sections or kind not in required:
            raise CircuitFormatError(f".{what}: unexpected or repeated section {kind}")
        sections[kind] = data[at : at + size]
        at += size
    if at != len(data):
        raise CircuitFormatError(f".{what}: {len(data) - at} byte(s) after the last section")
    missing = [k for k in required if k not in sections]
    if missing:
        raise CircuitFormatError(f".{what}: missing section(s) {missing}")
    return sections


class _Reader:
    """Little-endian fields of one section, with a typed error for every short read."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise CircuitFormatError(f"{self.what}: truncated")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def u32(self) -> int:
        return int(struct.unpack("<I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self._take(8))[0])

    def prime(self) -> None:
        if self.u32() != FS or self._take(FS) != _PRIME:
            raise CircuitFormatError(f"{self.what}: the field is not BN254's scalar field")

    def element(self) -> int:
        value = int.from_bytes(self._take(FS), "little")
        if value >= P:
            raise CircuitFormatError(f"{self.what}: a value is not below the field prime")
        return value

    def lc(self) -> LinearCombination:
        count = self.u32()
        if count * (4 + FS) > len(self.data) - self.at:
            raise CircuitFormatError(f"{self.what}: truncated")
        return LinearCombination(tuple((self.u32(), self.element()) for _ in range(count)))

    def end(self) -> None:
        if self.at != len(self.data):
            raise CircuitFormatError(f"{self.what}: {len(self.data) - self.at} unread byte(s)")


def iter_public(witness: Sequence[int], r1cs: R1CS) -> Iterator[int]:
    """The public signals, in snarkjs's order (outputs, then inputs)."""
    yield from witness[1 : 1 + r1cs.n_public]
