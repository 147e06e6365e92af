"""Nitro attestation documents (issue 5): one document's verification against one ECDSA P-384.

Subjects, each with ``NitroPolicy(roots=(root,), allow_debug=True)`` at the document's own time:

* ``verify_document`` (N1-N5) of the real AWS document
  (``fixtures/nitro/real-attestation-2022-07-26.cbor``, AWS root G1, ``at_ms=1658860752566``);
  goal <= 10x: parsing and chain checks must not dominate;
* the same on a simulated document (``SimulatedNitro``, seeded keys, fixed clock): the real
  layout, a root of its own, 16 PCRs and 32 bytes of user_data; goal <= 10x;
* the real document step by step: N1+N2 ``SignedDocument.parse``; N3 ``check_chain`` (5
  certificates parsed, 4 links each an ECDSA P-384 verification, validity, constraints, the
  document's time in the leaf's); N4 ``check_signature`` (the document's ES384 signature);
* ``verify_document`` and ``check_chain`` of the real document again, with its 4 links already
  verified and its 5 certificates parsed (``receipts.certchain`` remembers verified links and
  parsed certificates by their exact DER bytes): what each further document with the same
  cabundle and leaf costs. No goal.

The other rows are cold: ``certchain.clear_link_cache()`` (links and parsed certificates) runs at
the start of every call (inside its timing), so each call parses every certificate and verifies
all four links as the first document a verifier sees does.

Baseline for every row: ``EllipticCurvePublicKey.verify`` (cryptography) of one ECDSA P-384 /
SHA-384 signature over the real document's Sig_structure bytes (4,360 B), by a key derived from a
fixed seed (deterministic signature): the document's own signature with nothing around it. An
uncached verification makes five such verifications (4 links and the document), so ~5x is its
floor.

Checked once before timing, with the link cache empty and again with both documents' links
remembered: the real document verifies at its time and is refused a day later (its leaf has
expired), under another root, and with one signature byte changed; the simulated one verifies
under its root and is refused under AWS's; the baseline refuses another message.

    docs = nitro_documents()
    results = run_family(nitro_cases(docs), plan)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench.harness import Call, Case, Goal
from receipts.certchain import clear_link_cache
from receipts.effects import FixedClock, seeded
from receipts.errors import AttestationError, CertificateError
from receipts.nitro import (
    NitroPolicy,
    SignedDocument,
    check_chain,
    check_signature,
    verify_document,
)
from receipts.nitro_sim import SimulatedNitro, SimulatedRoot, derive_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nitro"
REAL_DOCUMENT = FIXTURES / "real-attestation-2022-07-26.cbor"
AWS_ROOT = FIXTURES / "aws-nitro-enclaves-root-g1.pem"
REAL_AT_MS = 1_658_860_752_566  # the real document's own timestamp
SIM_AT_MS = 1_700_000_000_000
DAY_MS = 86_400_000
GOAL = Goal(op="<=", value=10.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A document's bytes, the policy that accepts it and the instant it is checked at."""

    data: bytes
    policy: NitroPolicy
    at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NitroDocuments:
    real: Document
    simulated: Document


def nitro_documents() -> NitroDocuments:
    aws = NitroPolicy.load_root(AWS_ROOT.read_bytes())
    clock = FixedClock(SIM_AT_MS)
    root = SimulatedRoot.generate(clock=clock, random_bytes=seeded(b"bench nitro root"))
    attester = SimulatedNitro(root, clock=clock, random_bytes=seeded(b"bench nitro attester"))
    user_data = hashlib.sha256(b"bench nitro receipt").digest()
    return NitroDocuments(
        real=Document(
            data=REAL_DOCUMENT.read_bytes(),
            policy=NitroPolicy(roots=(aws,), allow_debug=True),
            at_ms=REAL_AT_MS,
        ),
        simulated=Document(
            data=attester.document(user_data=user_data),
            policy=NitroPolicy(roots=(root.certificate,), allow_debug=True),
            at_ms=SIM_AT_MS,
        ),
    )


def _verify(d: Document) -> Call:
    return lambda: verify_document(d.data, d.policy, at_ms=d.at_ms)


def _cold(fn: Call) -> Call:
    """``fn`` with no link remembered: the cache is cleared first, inside the timed call."""

    def call() -> object:
        clear_link_cache()
        return fn()

    return call


def _refused(what: str, error: type[Exception], fn: Callable[[], object]) -> None:
    try:
        fn()
    except error:
        return
    raise AssertionError(f"{what} was accepted")


def _check(docs: NitroDocuments) -> None:
    """Every refusal holds with the link cache empty and with both documents' links in it."""
    for warm in (False, True):
        clear_link_cache()
        if warm:
            _verify(docs.real)()
            _verify(docs.simulated)()
        _check_refusals(docs)
    clear_link_cache()


def _check_refusals(docs: NitroDocuments) -> None:
    real, sim = docs.real, docs.simulated
    at, data = real.at_ms, real.data
    _refused(
        "the real document a day after its time",
        CertificateError,
        lambda: verify_document(data, real.policy, at_ms=at + DAY_MS),
    )
    _refused(
        "the real document under the simulator's root",
        CertificateError,
        lambda: verify_document(data, sim.policy, at_ms=at),
    )
    _refused(
        "the simulated document under the AWS root",
        CertificateError,
        lambda: verify_document(sim.data, real.policy, at_ms=sim.at_ms),
    )
    forged = data[:-1] + bytes([data[-1] ^ 1])  # the last byte of the signature's s
    _refused(
        "the real document with a changed signature byte",
        AttestationError,
        lambda: verify_document(forged, real.policy, at_ms=at),
    )
    verify_document(real.data, real.policy, at_ms=at)
    verify_document(sim.data, sim.policy, at_ms=sim.at_ms)


def ecdsa_p384(message: bytes) -> Call:
    """The baseline: one ECDSA P-384 / SHA-384 verification of ``message``, fixed key."""
    key = derive_key(seeded(b"bench nitro baseline key"))
    algorithm = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
    signature = key.sign(message, algorithm)
    public = key.public_key()
    verify = ec.ECDSA(hashes.SHA384())
    public.verify(signature, message, verify)
    _refused(
        "the baseline signature over another message",
        InvalidSignature,
        lambda: public.verify(signature, message + b"\0", verify),
    )
    return lambda: public.verify(signature, message, verify)


def nitro_cases(docs: NitroDocuments) -> list[Case]:
    _check(docs)
    real = docs.real
    signed = SignedDocument.parse(real.data)
    leaf = check_chain(signed, real.policy, real.at_ms)
    message = signed.sign1.sig_structure()
    baseline = ecdsa_p384(message)
    label = f"EllipticCurvePublicKey.verify, ECDSA P-384/SHA-384 over {len(message):,} B"
    n_certs = len(signed.document.cabundle) + 1

    def chain() -> object:
        return check_chain(signed, real.policy, real.at_ms)

    def case(name: str, subject: tuple[str, Call], goal: Goal | None, notes: str) -> Case:
        return Case(
            name=name,
            baseline_label=label,
            subject_label=subject[0],
            baseline=baseline,
            subject=subject[1],
            goal=goal,
            notes=notes,
        )

    policy = "NitroPolicy(roots=(root,), allow_debug=True), checked at the document's time"
    return [
        case(
            "nitro: verify_document, real AWS document",
            ("clear_link_cache + nitro.verify_document", _cold(_verify(real))),
            GOAL,
            f"N1-N5 on the real document ({len(real.data):,} B, {n_certs} certificates, 4 "
            f"links); {policy}; checked: verifies, refused a day later, under another root "
            "and with a changed signature byte",
        ),
        case(
            "nitro: verify_document, simulated document",
            ("clear_link_cache + nitro.verify_document", _cold(_verify(docs.simulated))),
            GOAL,
            f"N1-N5 on a SimulatedNitro document ({len(docs.simulated.data):,} B, seeded keys, "
            f"fixed clock, same layout and chain depth); {policy}; checked: verifies, refused "
            "under the AWS root",
        ),
        case(
            "nitro: N1+N2 parse, real document",
            ("SignedDocument.parse", lambda: SignedDocument.parse(real.data)),
            None,
            "COSE_Sign1 split and the payload's fields decoded and checked (strict CBOR)",
        ),
        case(
            "nitro: N3 chain, real document",
            ("clear_link_cache + nitro.check_chain", _cold(chain)),
            None,
            f"{n_certs} certificates parsed, 4 links (verify_directly_issued_by, ECDSA P-384 "
            "each), validity, constraints, the document's time in the leaf's",
        ),
        case(
            "nitro: N4 signature, real document",
            ("nitro.check_signature", lambda: check_signature(signed, leaf)),
            None,
            "Sig_structure built from the received bytes, r || s to DER, one ES384 verification",
        ),
        case(
            "nitro: verify_document, real, links remembered",
            ("nitro.verify_document (warm link cache)", _verify(real)),
            None,
            "N1-N5 as the first row, the 4 links and 5 certificates found in the caches "
            "(validity, constraints, the leaf's rules and the document's signature still checked "
            "every call): a further document from the same enclave",
        ),
        case(
            "nitro: N3 chain, real, links remembered",
            ("nitro.check_chain (warm link cache)", chain),
            None,
            f"{n_certs} certificates from the parse cache and checked, no link signature verified",
        ),
    ]
