"""The tee rung: a Nitro attestation binds this receipt to a measured enclave (verification).

Called by ``receipts.verifier`` after the signature rung passed; the document-level steps N1-N6
are in ``receipts.nitro``. Steps, numbered with the verifier's:

  (15) attachments  the envelope's evidence items, and any documents supplied beside it, are
                    read; items of an unknown type or version are reported and never counted
  (16) attestation  a Nitro document passes N1-N5, its chain checked at the document's own
                    timestamp, which must not be after the verifier's clock (beyond the skew)
                    nor, if the policy says so, older than its max age
  (17) binding      N6 for receipts: ``user_data`` is the receipt id (per-receipt mode; the
                    document dates from ``issued_at`` less the skew to ``issued_at`` plus
                    ``max_attest_delay_ms``), or ``public_key`` is the DER SubjectPublicKeyInfo
                    of the key that signed the receipt (key mode; the receipt was issued at most
                    ``max_key_age_ms`` after the document). Both read the provider-signed
                    ``issued_at``: only ``max_age_ms`` (step 16) bounds a key that leaked.

With several documents the rung passes when one of them passes 16 and 17; otherwise the report
follows the one that got furthest (earliest among equals), so an attachment anyone can add
cannot hide why the real one failed.

    steps = Steps()
    check_tee(steps, envelope=env, receipt=receipt, key=key, policy=tee_policy, now_ms=now)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from receipts.attachments import NITRO_ATTESTATION, Attachment
from receipts.certchain import load_certificate, name_of
from receipts.cose import CoseSign1
from receipts.envelope import Envelope
from receipts.errors import (
    AttestationBindingError,
    AttestationError,
    InputError,
    ReceiptsError,
)
from receipts.keys import PublicKey
from receipts.nitro import (
    AttestationDocument,
    NitroPolicy,
    SignedDocument,
    VerifiedAttestation,
    check_chain,
    check_measurements,
    check_signature,
    check_user_data,
)
from receipts.receipt import Receipt, receipt_id
from receipts.report import RungResult, Steps

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    """One document's result: its verification (16) and binding (17), or the first error."""

    index: int
    verified: VerifiedAttestation | None = None
    attestation: Mapping[str, object] | None = None
    binding: Mapping[str, object] | None = None
    error: ReceiptsError | None = None
    failed_step: str = ""


def check_tee(
    steps: Steps,
    *,
    envelope: Envelope,
    receipt: Receipt,
    key: PublicKey,
    policy: NitroPolicy,
    now_ms: int,
    supplied: Sequence[bytes] = (),
) -> None:
    """Steps 15-17 into ``steps``; never raises for a failed step."""
    items: list[Attachment] = list(envelope.attachments)
    # Only Nitro documents: other known items (zk proofs) are another rung's evidence.
    documents = [a.body for a in items if a.known and a.type == NITRO_ATTESTATION] + list(supplied)
    unknown = [a.describe() for a in items if not a.known]

    def attachments() -> Mapping[str, object]:  # (15) attachments
        note = f"; not counted (unknown type): {', '.join(unknown)}" if unknown else ""
        if not documents:
            raise AttestationError(f"no Nitro attestation document is attached or supplied{note}")
        return {
            "summary": f"{len(documents)} Nitro document(s){note}",
            "documents": len(documents),
            "unknown": unknown,
        }

    if not steps.run("15 attachments", attachments):
        steps.skip("16-17 attestation", "no attestation document to check")
        return
    rid = receipt_id(envelope.payload).value
    outcomes = []
    for index, data in enumerate(documents):
        outcome = _one(index, data, receipt=receipt, rid=rid, key=key, policy=policy, now=now_ms)
        outcomes.append(outcome)
        if outcome.error is None:
            break
    _record(steps, max(outcomes, key=_progress), of=len(documents))


def _progress(outcome: _Outcome) -> tuple[int, int, int]:
    """How far a document got (success, then a binding failure, then a verification failure,
    then bad bytes), earliest first among equals: an added garbage attachment cannot hide the
    reason a real document failed."""
    if outcome.error is None:
        return (3, 0, -outcome.index)
    bound = outcome.failed_step == "17 binding"
    return (int(bound), int(not isinstance(outcome.error, InputError)), -outcome.index)


def _record(steps: Steps, best: _Outcome, *, of: int) -> None:
    """Steps 16 and 17 as ``best`` went (prefixed with the document's rank when several)."""
    prefix = f"document {best.index + 1} of {of}: " if of > 1 else ""
    if best.attestation is None:
        assert best.error is not None
        steps.fail("16 attestation", best.error, prefix + str(best.error))
        steps.skip("17 binding", "the document did not verify")
        return
    attestation = best.attestation
    steps.run("16 attestation", lambda: attestation)
    if best.error is not None:
        steps.fail("17 binding", best.error, prefix + str(best.error))
    else:
        binding = best.binding
        steps.run("17 binding", lambda: binding)


def _one(
    index: int,
    data: bytes,
    *,
    receipt: Receipt,
    rid: bytes,
    key: PublicKey,
    policy: NitroPolicy,
    now: int,
) -> _Outcome:
    try:
        verified, details = _attestation(data, policy, now)
    except ReceiptsError as e:
        return _Outcome(index=index, error=e, failed_step="16 attestation")
    try:
        binding = _binding(verified, receipt=receipt, rid=rid, key=key, policy=policy)
    except ReceiptsError as e:
        return _Outcome(index=index, attestation=details, error=e, failed_step="17 binding")
    return _Outcome(index=index, verified=verified, attestation=details, binding=binding)


def _attestation(
    data: bytes, policy: NitroPolicy, now: int
) -> tuple[VerifiedAttestation, Mapping[str, object]]:  # (16) attestation
    signed = _step("N1-N2 document", lambda: SignedDocument.parse(data))
    doc = signed.document
    if doc.timestamp > now + policy.max_skew_ms:
        raise AttestationError(
            f"document time: dated {doc.timestamp - now} ms after the verifier's clock"
        )
    if policy.max_age_ms is not None and now - doc.timestamp > policy.max_age_ms:
        raise AttestationError(
            f"document time: {now - doc.timestamp} ms old; the policy allows {policy.max_age_ms}"
        )
    # (N3) at the document's own time: the leaf lives hours, the receipt is checked for longer.
    leaf = _step("N3 chain", lambda: check_chain(signed, policy, doc.timestamp))
    _step("N4 signature", lambda: check_signature(signed, leaf))
    measured = _step("N5 measurements", lambda: check_measurements(doc, policy))
    image = (
        "any enclave image (no PCR expected)"
        if measured["any_image"]
        else (f"PCR {', '.join(str(i) for i in sorted(policy.pcrs))} as expected")
    )
    debug = ", DEBUG enclave allowed" if doc.debug else ""
    # Which pinned root: with several pinned (AWS and a drill simulator), the reader must see it.
    root_certificate = load_certificate(doc.cabundle[0], "cabundle[0]")
    root = name_of(root_certificate)
    return VerifiedAttestation(signed=signed, leaf=leaf, checked_at=doc.timestamp), {
        "summary": f"module {doc.module_id[:80]} under root {root}, {image}{debug}",
        "module_id": doc.module_id,
        "root": root,
        "root_sha256": root_certificate.fingerprint(hashes.SHA256()).hex(),
        "timestamp": doc.timestamp,
        **measured,
    }


def _step(name: str, fn: Callable[[], T]) -> T:
    """Run one of the document's steps; a failure keeps its class and names the step."""
    try:
        return fn()
    except ReceiptsError as e:
        raise type(e)(f"{name}: {e}", details=e.details) from e


def _binding(
    verified: VerifiedAttestation,
    *,
    receipt: Receipt,
    rid: bytes,
    key: PublicKey,
    policy: NitroPolicy,
) -> Mapping[str, object]:  # (17) binding
    doc = verified.document
    if doc.user_data == rid:
        delay = doc.timestamp - receipt.issued_at
        if delay < -policy.max_skew_ms:
            raise AttestationBindingError(
                f"the document names this receipt but is dated {-delay} ms before the "
                "receipt was issued"
            )
        if delay > policy.max_attest_delay_ms:
            raise AttestationBindingError(
                f"the document names this receipt but was made {delay} ms after it was issued; "
                f"the policy allows {policy.max_attest_delay_ms}"
            )
        return {
            "summary": f"per-receipt: user_data is the receipt id, attested {max(delay, 0)} ms "
            "after issue",
            "mode": "receipt",
            "attest_delay_ms": delay,
        }
    if doc.public_key is not None and doc.public_key == key.to_der():
        age = receipt.issued_at - doc.timestamp
        if age < -policy.max_skew_ms:
            raise AttestationBindingError(
                f"the receipt was issued {-age} ms before its signing key was attested"
            )
        if age > policy.max_key_age_ms:
            raise AttestationBindingError(
                f"the receipt was issued {age} ms after its key was attested; the policy "
                f"allows {policy.max_key_age_ms}"
            )
        return {
            "summary": f"key mode: public_key is the signing key, attested {max(age, 0)} ms "
            "before the receipt",
            "mode": "key",
            "key_age_ms": age,
        }
    user_data = "absent" if doc.user_data is None else f"{doc.user_data.hex()[:16]}…"
    public_key = "absent" if not doc.public_key else "another key"
    raise AttestationBindingError(
        f"the document binds neither this receipt nor its key (user_data {user_data}, "
        f"public_key {public_key})"
    )


def check_document(
    data: bytes, policy: NitroPolicy, *, at_ms: int, user_data: bytes | None = None
) -> RungResult:
    """Steps N1-N5 (N6 with ``user_data``) of one document on its own, at ``at_ms``, as a
    report that never raises for a failed step (``receipts attestation verify``)."""
    return _DocumentCheck(data, policy, at_ms).run(user_data)


class _DocumentCheck:
    """One document's steps in order, each reading what the previous ones established."""

    def __init__(self, data: bytes, policy: NitroPolicy, at_ms: int) -> None:
        self.data, self.policy, self.at_ms = data, policy, at_ms
        self.sign1: CoseSign1 | None = None
        self.signed: SignedDocument | None = None
        self.leaf: x509.Certificate | None = None

    def run(self, user_data: bytes | None) -> RungResult:
        steps = Steps()
        named = [
            ("N1 cose", self.cose),
            ("N2 fields", self.fields),
            ("N3 chain", self.chain),
            ("N4 signature", self.signature),
            ("N5 measurements", self.measurements),
        ]
        if all(steps.run(step, fn) for step, fn in named):  # all() stops at the first failure
            if user_data is None:
                steps.skip("N6 binding", "no --user-data to compare")
            else:
                assert self.signed is not None
                document = self.signed.document
                steps.run("N6 binding", lambda: check_user_data(document, user_data))
        return steps.take("attestation")

    def cose(self) -> Mapping[str, object]:  # (N1)
        self.sign1 = CoseSign1.parse(self.data)
        tagged = self.sign1.tagged
        return {"summary": "tag 18" if tagged else "untagged", "tagged": tagged}

    def fields(self) -> Mapping[str, object]:  # (N2)
        assert self.sign1 is not None
        doc = AttestationDocument.decode(self.sign1.payload)
        self.signed = SignedDocument(sign1=self.sign1, document=doc)
        return {"summary": f"module {doc.module_id[:80]}, timestamp {doc.timestamp}"}

    def chain(self) -> Mapping[str, object]:  # (N3)
        assert self.signed is not None
        self.leaf = check_chain(self.signed, self.policy, self.at_ms)
        depth = len(self.signed.document.cabundle) + 1
        return {"summary": f"{depth} certificates to a pinned root, checked at {self.at_ms}"}

    def signature(self) -> Mapping[str, object]:  # (N4)
        assert self.signed is not None and self.leaf is not None
        check_signature(self.signed, self.leaf)
        return {"summary": "ES384 by the leaf over the received bytes"}

    def measurements(self) -> Mapping[str, object]:  # (N5)
        assert self.signed is not None
        details = check_measurements(self.signed.document, self.policy)
        what = "any image (no PCR expected)" if details["any_image"] else "expected PCRs"
        debug = ", DEBUG enclave allowed" if details["debug"] else ""
        return {"summary": what + debug, **details}
