"""The tee rung (steps 15-17): receipts from a provider with a simulated Nitro attester, in
per-receipt and key mode, and every way the evidence can fail to bind; envelope attachments."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts import codec
from receipts.attachments import MAX_ATTACHMENT_BYTES, NITRO_ATTESTATION, Attachment
from receipts.effects import FixedClock, seeded
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.errors import (
    AttestationBindingError,
    AttestationError,
    AttestationFormatError,
    CertificateError,
    MalformedError,
    MeasurementError,
    ReceiptsError,
    SignatureError,
)
from receipts.model import LoadedModel
from receipts.nitro import NitroPolicy
from receipts.nitro_sim import simulated_pcrs
from receipts.provider import Issued, Provider
from receipts.receipt import receipt_id
from receipts.report import Policy, Report, Status
from receipts.verifier import Verifier
from tests.conftest import fixture_inputs, fixture_key, fixture_model, fixture_public
from tests.nitrokit import (
    DAY_MS,
    HOUR_MS,
    NOW,
    OTHER_ROOT,
    ROOT,
    nitro,
    sim_policy,
)

MINUTE_MS = 60_000
KEY_DER = fixture_public().to_der()
OTHER_KEY_DER = fixture_public("other_ed25519").to_der()
UNKNOWN = Attachment(type="example-evidence", version=1, body=b"x")
NITRO_V2 = Attachment(type=NITRO_ATTESTATION, version=2, body=b"yz")
# cryptography warns (negative serial, odd attribute length) on some changed certificates.
PARSE_WARNINGS = "ignore::UserWarning"
TEE_STEPS = ["15 attachments", "16 attestation", "17 binding"]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return fixture_model("mlp")


@pytest.fixture(scope="module")
def issued(model: LoadedModel) -> dict[str, Issued]:
    """One receipt per attest mode, and one without evidence, all issued at ``NOW``."""
    inputs = fixture_inputs("mlp")
    out = {}
    for seed, (name, attester, mode) in enumerate(
        (("receipt", nitro(), "receipt"), ("key", nitro(), "key"), ("bare", None, "receipt"))
    ):
        provider = Provider(
            fixture_key(),
            clock=FixedClock(NOW),
            random_bytes=seeded(seed),  # each its own nonce, so its own receipt id
            attester=attester,
            attest_mode=mode,
        )
        out[name] = provider.session(model).run(inputs)
    assert len({i.receipt_id for i in out.values()}) == 3
    return out


def _verifier(at: int = NOW + 1000, **tee: Any) -> Verifier:
    policy = Policy(trusted_keys=(fixture_public(),), tee=sim_policy(**tee))
    return Verifier(policy, clock=FixedClock(at))


def _steps(report: Report) -> list[tuple[str, Status]]:
    return [(s.step, s.status) for s in report.rung("tee").steps]


def _step(report: Report, name: str) -> Any:
    return next(s for s in report.rung("tee").steps if s.step == name)


def _with(issued: Issued, *items: Attachment) -> bytes:
    """``issued``'s receipt file carrying exactly ``items``."""
    return replace(issued.envelope, attachments=items).to_bytes()


def _nitro_item(**document: Any) -> Attachment:
    at = document.pop("at", NOW)
    root = document.pop("root", ROOT)
    return nitro(at=at, root=root).attest(**document)


def _rid(issued: Issued) -> bytes:
    return receipt_id(issued.envelope.payload).value


# --- attested receipts pass ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["receipt", "key"])
def test_an_attested_receipt_passes_the_tee_rung(issued: dict[str, Issued], mode: str) -> None:
    data = issued[mode].to_bytes()
    report = _verifier().check(data)
    assert report and report.required == ("signature", "tee")
    assert _steps(report) == [(step, Status.PASSED) for step in TEE_STEPS]
    assert _step(report, "17 binding").details["mode"] == mode
    attestation = _step(report, "16 attestation").details
    assert attestation["any_image"] and not attestation["debug"]
    assert attestation["timestamp"] == NOW
    verified = _verifier().verify(data)
    assert verified.receipt == issued[mode].receipt


def test_the_report_names_the_pinned_root_the_document_reached(issued: dict[str, Issued]) -> None:
    # With a drill root pinned beside another, a simulated document must not pass unmarked.
    report = _verifier(roots=(OTHER_ROOT.certificate, ROOT.certificate)).check(
        issued["receipt"].to_bytes()
    )
    attestation = _step(report, "16 attestation").details
    assert attestation["root"] == "'simulated.nitro-enclaves'"
    assert attestation["root_sha256"] == ROOT.certificate.fingerprint(hashes.SHA256()).hex()
    assert "under root 'simulated.nitro-enclaves'" in attestation["summary"]


def test_expected_pcrs_pass_and_others_fail_step_16(issued: dict[str, Issued]) -> None:
    data = issued["receipt"].to_bytes()
    pcrs = simulated_pcrs("inference-receipts-provider")
    assert _verifier(pcrs={0: pcrs[0], 4: pcrs[4]}).check(data)
    report = _verifier(pcrs={0: pcrs[1]}).check(data)
    assert _steps(report)[1:] == [("16 attestation", Status.FAILED), ("17 binding", Status.NOT_RUN)]
    assert type(_step(report, "16 attestation").error) is MeasurementError


def test_key_mode_attests_once_and_receipt_mode_each_receipt(
    issued: dict[str, Issued], model: LoadedModel
) -> None:
    inputs = fixture_inputs("mlp")
    for mode, same in (("key", True), ("receipt", False)):
        provider = Provider(
            fixture_key(),
            clock=FixedClock(NOW),
            random_bytes=seeded(4),
            attester=nitro(),
            attest_mode=mode,
        )
        session = provider.session(model)
        first, second = session.run(inputs), session.run(inputs)
        assert first.receipt_id != second.receipt_id
        bodies = [i.envelope.attachments[0].body for i in (first, second)]
        assert (bodies[0] == bodies[1]) is same
    with pytest.raises(MalformedError, match="attest mode"):
        Provider(fixture_key(), attester=nitro(), attest_mode="both")


# --- step 15: attachments -----------------------------------------------------------------------


def test_a_receipt_without_attachments_fails_step_15(issued: dict[str, Issued]) -> None:
    report = _verifier().check(issued["bare"].to_bytes())
    assert not report and report.rung("signature").status is Status.PASSED
    assert _steps(report) == [
        ("15 attachments", Status.FAILED),
        ("16-17 attestation", Status.NOT_RUN),
    ]
    error = _step(report, "15 attachments").error
    assert type(error) is AttestationError and "no Nitro attestation document" in str(error)


def test_unknown_attachments_are_reported_beside_a_good_document(
    issued: dict[str, Issued],
) -> None:
    good = issued["receipt"].envelope.attachments
    report = _verifier().check(_with(issued["receipt"], UNKNOWN, NITRO_V2, *good))
    assert report
    step = _step(report, "15 attachments")
    assert step.details["documents"] == 1
    assert step.details["unknown"] == [
        "example-evidence v1 (1 bytes)",
        "aws-nitro-attestation v2 (2 bytes)",
    ]
    assert "not counted (unknown type): example-evidence v1" in step.details["summary"]


def test_only_unknown_attachments_fail_step_15(issued: dict[str, Issued]) -> None:
    report = _verifier().check(_with(issued["bare"], UNKNOWN, NITRO_V2))
    assert not report
    step = _step(report, "15 attachments")
    assert step.status is Status.FAILED and type(step.error) is AttestationError
    assert "unknown type" in step.reason and "example-evidence v1" in step.reason


def test_attachments_are_outside_the_signature(issued: dict[str, Issued]) -> None:
    attested = issued["receipt"]
    stripped = _with(attested)
    added = _with(attested, *attested.envelope.attachments, UNKNOWN)
    foreign = _with(issued["bare"], *attested.envelope.attachments)
    for data in (attested.to_bytes(), stripped, added, foreign):
        report = _verifier().check(data)
        assert report.rung("signature").status is Status.PASSED
    # Stripping gives back the envelope as signed, byte for byte, with the same receipt id.
    unattached = replace(attested.envelope, attachments=())
    assert stripped == unattached.to_bytes() and b"attachments" not in stripped
    assert _verifier().check(stripped).receipt_id == attested.receipt_id
    assert not _verifier().check(stripped)
    assert _verifier().check(added)
    # Another receipt's evidence, moved over, verifies (16) but binds nothing here (17).
    report = _verifier().check(foreign)
    assert _steps(report)[1:] == [("16 attestation", Status.PASSED), ("17 binding", Status.FAILED)]


# --- steps 16 and 17 ----------------------------------------------------------------------------


def _bare_with(issued: dict[str, Issued], **document: Any) -> bytes:
    """The unattested receipt carrying a simulated document with ``document``'s values (a
    ``user_data=...`` of ``"rid"`` stands for this receipt's id)."""
    if document.get("user_data") == "rid":
        document["user_data"] = _rid(issued["bare"])
    return _with(issued["bare"], _nitro_item(**document))


TEE_BAD = [
    pytest.param(
        {"root": OTHER_ROOT, "user_data": "rid"},
        {},
        "16 attestation",
        CertificateError,
        "not a pinned root",
        id="another_simulated_root",
    ),
    pytest.param(
        {"user_data": "rid"},
        {"allow_debug": False, "pcrs": {2: bytes(48)}},
        "16 attestation",
        MeasurementError,
        "PCR2 is",
        id="pcr_mismatch",
    ),
    pytest.param(
        {"user_data": "rid", "at": NOW + 10 * MINUTE_MS},
        {},
        "16 attestation",
        AttestationError,
        "document time: dated 599000 ms after the verifier's clock",
        id="document_from_the_future",
    ),
    pytest.param(
        {"public_key": KEY_DER, "at": NOW - 2 * HOUR_MS},
        {"max_age_ms": HOUR_MS},
        "16 attestation",
        AttestationError,
        "7201000 ms old; the policy allows 3600000",
        id="document_older_than_max_age",
    ),
    pytest.param(
        {"public_key": KEY_DER, "at": NOW - 25 * HOUR_MS},
        {},
        "17 binding",
        AttestationBindingError,
        "issued 90000000 ms after its key was attested; the policy allows 86400000",
        id="key_mode_beyond_max_key_age",
    ),
    pytest.param(
        {"public_key": KEY_DER, "at": NOW - 2 * HOUR_MS},
        {"max_key_age_ms": HOUR_MS},
        "17 binding",
        AttestationBindingError,
        "after its key was attested; the policy allows 3600000",
        id="key_mode_beyond_a_shorter_max_key_age",
    ),
    pytest.param(
        {"user_data": "rid", "at": NOW - HOUR_MS},
        {},
        "17 binding",
        AttestationBindingError,
        "names this receipt but is dated 3600000 ms before the receipt was issued",
        id="per_receipt_document_before_the_receipt",
    ),
    pytest.param(
        {"public_key": OTHER_KEY_DER},
        {},
        "17 binding",
        AttestationBindingError,
        "binds neither this receipt nor its key \\(user_data absent, public_key another key\\)",
        id="public_key_of_another_key",
    ),
    pytest.param(
        {"user_data": bytes(32)},
        {},
        "17 binding",
        AttestationBindingError,
        "binds neither .* \\(user_data 0000000000000000…, public_key absent\\)",
        id="user_data_of_another_receipt",
    ),
    pytest.param(
        {"public_key": b""},
        {},
        "17 binding",
        AttestationBindingError,
        "public_key absent",
        id="empty_public_key",
    ),
    pytest.param(
        {},
        {},
        "17 binding",
        AttestationBindingError,
        "user_data absent, public_key absent",
        id="nothing_bound",
    ),
]


@pytest.mark.parametrize(("document", "policy", "step", "error", "match"), TEE_BAD)
def test_the_tee_rung_names_the_failed_step(
    issued: dict[str, Issued],
    document: dict[str, Any],
    policy: dict[str, Any],
    step: str,
    error: type[ReceiptsError],
    match: str,
) -> None:
    data = _bare_with(issued, **document)
    report = _verifier(**policy).check(data)
    assert not report and report.rung("signature").status is Status.PASSED
    failed = report.rung("tee").failures()
    assert [s.step for s in failed] == [step]
    assert type(failed[0].error) is error
    assert failed[0].reason == str(failed[0].error)  # one document: no "document i of n"
    with pytest.raises(error, match=match) as caught:
        _verifier(**policy).verify(data)
    assert type(caught.value) is error
    if step == "16 attestation":
        assert _steps(report)[2] == ("17 binding", Status.NOT_RUN)


def test_a_receipt_issued_long_before_its_key_was_attested_fails_17(
    issued: dict[str, Issued],
) -> None:
    data = _bare_with(issued, public_key=KEY_DER, at=NOW + 6 * MINUTE_MS)
    report = _verifier(at=NOW + 10 * MINUTE_MS).check(data)
    step = _step(report, "17 binding")
    assert step.status is Status.FAILED and type(step.error) is AttestationBindingError
    assert "issued 360000 ms before its signing key was attested" in step.reason
    # Within the skew, a key attested just after the receipt still covers it.
    assert _verifier(at=NOW + 10 * MINUTE_MS).check(
        _bare_with(issued, public_key=KEY_DER, at=NOW + 4 * MINUTE_MS)
    )


def test_key_mode_within_the_age_limits_passes(issued: dict[str, Issued]) -> None:
    old = _bare_with(issued, public_key=KEY_DER, at=NOW - 23 * HOUR_MS)
    report = _verifier().check(old)
    assert report and _step(report, "17 binding").details["key_age_ms"] == 23 * HOUR_MS
    older = _bare_with(issued, public_key=KEY_DER, at=NOW - 25 * HOUR_MS)
    assert _verifier(max_key_age_ms=2 * DAY_MS).check(older)


@pytest.mark.parametrize("bound", ["user_data", "public_key"])
def test_documents_supplied_beside_the_file_count(issued: dict[str, Issued], bound: str) -> None:
    bare = issued["bare"]
    value = _rid(bare) if bound == "user_data" else KEY_DER
    document = nitro().document(**{bound: value})
    report = _verifier().check(bare.to_bytes(), attestations=[document])
    assert report and _step(report, "15 attachments").details["documents"] == 1
    assert _step(report, "17 binding").details["mode"] == (
        "receipt" if bound == "user_data" else "key"
    )
    # Beside another receipt: a key-mode document covers it (same key), a per-receipt one not.
    other = _verifier().check(_with(issued["receipt"]), attestations=[document])
    assert bool(other) is (bound == "public_key")


def test_one_good_document_among_several_passes(issued: dict[str, Issued]) -> None:
    bare = issued["bare"]
    bad = _nitro_item(root=OTHER_ROOT, user_data=_rid(bare))
    good = _nitro_item(user_data=_rid(bare))
    report = _verifier().check(_with(bare, bad, good))
    assert report and _step(report, "15 attachments").details["documents"] == 2
    unbound = _nitro_item(public_key=OTHER_KEY_DER)
    # Neither passes: the report follows the one that got further (it verified, then did not
    # bind), whichever comes first, so an added bad attachment cannot hide the real reason.
    for items, rank in (
        ((bad, unbound), "document 2 of 2: "),
        ((unbound, bad), "document 1 of 2: "),
    ):
        report = _verifier().check(_with(bare, *items))
        assert _step(report, "16 attestation").status is Status.PASSED
        step = _step(report, "17 binding")
        assert step.status is Status.FAILED and step.reason.startswith(rank)
        assert type(step.error) is AttestationBindingError
    garbage = Attachment(type=NITRO_ATTESTATION, version=1, body=b"\x84\x40\xa0\x40\x40")
    report = _verifier().check(_with(bare, garbage, bad))
    step = _step(report, "16 attestation")
    assert step.reason.startswith("document 2 of 2: ")
    assert type(step.error) is CertificateError  # not the garbage's format error


def test_a_malformed_document_fails_step_16(issued: dict[str, Issued]) -> None:
    item = Attachment(type=NITRO_ATTESTATION, version=1, body=b"\x84\x40\xa0\x40\x40")
    report = _verifier().check(_with(issued["bare"], item))
    step = _step(report, "16 attestation")
    assert step.status is Status.FAILED and type(step.error) is AttestationFormatError


def test_the_tee_rung_runs_only_after_the_signature_rung_and_when_required(
    issued: dict[str, Issued],
) -> None:
    data = issued["receipt"].to_bytes()
    stranger = Policy(trusted_keys=(fixture_public("other_ed25519"),), tee=sim_policy())
    report = Verifier(stranger, clock=FixedClock(NOW)).check(data)
    assert _steps(report) == [("15-17 tee", Status.NOT_RUN)]
    with pytest.raises(SignatureError):
        Verifier(stranger, clock=FixedClock(NOW)).verify(data)
    plain = Verifier(Policy(), clock=FixedClock(NOW)).check(data)
    assert plain and _steps(plain) == [("15-17 tee", Status.NOT_RUN)]
    with pytest.raises(MalformedError, match="leave out the tee rung"):
        Policy(required=("signature",), tee=sim_policy())  # contradictory: refused, not skipped


@pytest.mark.filterwarnings(PARSE_WARNINGS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_of_the_attestation_never_passes(
    issued: dict[str, Issued], data: st.DataObject
) -> None:
    attested = issued[data.draw(st.sampled_from(["receipt", "key"]))]
    [item] = attested.envelope.attachments
    index = data.draw(st.integers(0, len(item.body) - 1))
    mask = data.draw(st.integers(1, 255))
    body = bytearray(item.body)
    body[index] ^= mask
    report = _verifier().check(_with(attested, replace(item, body=bytes(body))))
    assert not report
    assert report.rung("signature").status is Status.PASSED
    assert report.rung("tee").status is Status.FAILED
    assert all(isinstance(s.error, ReceiptsError) for s in report.rung("tee").failures())


# --- attachments in the envelope -----------------------------------------------------------------


def test_envelopes_round_trip_with_their_attachments(issued: dict[str, Issued]) -> None:
    envelope = issued["receipt"].envelope.attach(UNKNOWN)
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope and again.to_bytes() == envelope.to_bytes()
    assert [a.type for a in again.attachments] == [NITRO_ATTESTATION, "example-evidence"]
    bare = issued["bare"].envelope
    assert Envelope.from_bytes(bare.to_bytes()).attachments == ()


def _wire(issued: Issued, **changes: object) -> bytes:
    wire = codec.decode(issued.to_bytes())
    wire.update(changes)
    return codec.encode(wire)


def _item_wire(**changes: object) -> dict[str, object]:
    return {**UNKNOWN.to_wire(), **changes}


ENVELOPE_BAD = [
    pytest.param(
        {"attachments": []}, "an empty attachments array is written as no field", id="empty_array"
    ),
    pytest.param({"attachments": [UNKNOWN.to_wire()] * 9}, "more than 8 items", id="nine"),
    pytest.param({"attachments": UNKNOWN.to_wire()}, "expected an array", id="not_an_array"),
    pytest.param({"attachments": [b"item"]}, "attachment: expected a map", id="item_not_a_map"),
    pytest.param({"attachments": [_item_wire(extra=1)]}, "unknown field", id="item_extra_field"),
    pytest.param(
        {"attachments": [{"type": "x", "version": 1}]},
        "missing field 'body'",
        id="item_without_body",
    ),
    pytest.param(
        {"attachments": [_item_wire(version=0)]}, "attachment version 0 is not", id="item_version_0"
    ),
    pytest.param({"attachments": [_item_wire(type="")]}, "1-64 printable", id="item_type_empty"),
    pytest.param(
        {"attachments": [_item_wire(type="evidence\n")]},
        "1-64 printable ASCII",
        id="item_type_newline",
    ),
    pytest.param(
        {"attachments": [_item_wire(body=bytes(MAX_ATTACHMENT_BYTES + 1))]},
        "attachment.body: longer than 65536 bytes",
        id="item_body_too_large",
    ),
]


@pytest.mark.parametrize(("changes", "match"), ENVELOPE_BAD)
def test_malformed_attachments_are_refused(
    issued: dict[str, Issued], changes: dict[str, object], match: str
) -> None:
    data = _wire(issued["bare"], **changes)
    with pytest.raises(MalformedError, match=match):
        Envelope.from_bytes(data)
    report = _verifier().check(data)
    assert [s.step for s in report.rung("signature").failures()] == ["1-2 decode"]


@pytest.mark.parametrize("version", [True, 1.0])
def test_an_attachment_version_is_an_integer_not_one_that_equals_it(version: Any) -> None:
    # True == 1.0 == 1 in Python: such an item would count as Nitro v1 and be unreadable on the
    # wire (the codec refuses booleans and floats where an integer belongs).
    with pytest.raises(MalformedError, match="an integer version"):
        Attachment(type=NITRO_ATTESTATION, version=version, body=b"x")


def test_only_receipt_envelopes_carry_attachments() -> None:
    request_type = "application/vnd.inference-receipts.request.v1+msgpack"
    envelope = Envelope.sign(request_type, b"\x80", fixture_key()).attach(UNKNOWN)
    with pytest.raises(MalformedError, match="only receipt envelopes carry attachments"):
        Envelope.from_bytes(envelope.to_bytes(), payload_type=request_type)
    Envelope.from_bytes(replace(envelope, attachments=()).to_bytes(), payload_type=request_type)


def test_an_envelope_holds_at_most_eight_attachments(issued: dict[str, Issued]) -> None:
    envelope = issued["bare"].envelope
    assert len(envelope.attach(*[UNKNOWN] * 8).attachments) == 8
    with pytest.raises(MalformedError, match="at most 8 attachments"):
        envelope.attach(*[UNKNOWN] * 9)
    with pytest.raises(MalformedError, match="at most 8 attachments"):
        Envelope(
            payload_type=RECEIPT_PAYLOAD_TYPE,
            payload=envelope.payload,
            signature=envelope.signature,
            attachments=(UNKNOWN,) * 9,
        )


# --- policies ------------------------------------------------------------------------------------

POLICY_BAD = [
    pytest.param({"roots": ()}, "at least one pinned root", id="no_roots"),
    pytest.param({"pcrs": {0: b"short"}}, "PCR0: an index 0-31 with a 48-byte value", id="short"),
    pytest.param({"pcrs": {0: bytes(49)}}, "PCR0: an index", id="pcr_49_bytes"),
    pytest.param({"pcrs": {32: bytes(48)}}, "PCR32: an index 0-31", id="pcr_index_32"),
    pytest.param({"pcrs": {-1: bytes(48)}}, "PCR-1: an index", id="pcr_index_negative"),
    pytest.param({"pcrs": {True: bytes(48)}}, "PCRTrue: an index", id="pcr_index_bool"),
    pytest.param({"pcrs": {0: "x" * 48}}, "PCR0: an index", id="pcr_value_text"),
    pytest.param({"max_key_age_ms": -1}, "must not be negative", id="negative_key_age"),
    pytest.param({"max_skew_ms": -1}, "must not be negative", id="negative_skew"),
    pytest.param({"max_age_ms": -1}, "must not be negative", id="negative_max_age"),
]


@pytest.mark.parametrize(("changes", "match"), POLICY_BAD)
def test_nitro_policy_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(MalformedError, match=match) as caught:
        NitroPolicy(**{"roots": (ROOT.certificate,), **changes})
    assert type(caught.value) is MalformedError


def test_policy_roots_load_from_pem_only() -> None:
    assert NitroPolicy.load_root(ROOT.certificate_pem()) == ROOT.certificate
    for junk in (b"", b"not a certificate", ROOT.certificate_pem()[:-40]):
        with pytest.raises(MalformedError, match="not a PEM certificate"):
            NitroPolicy.load_root(junk)


def test_a_policy_does_not_change_with_the_values_it_was_made_from() -> None:
    pcrs = {0: bytes(range(48))}
    policy = sim_policy(pcrs=pcrs)
    pcrs.clear()  # a caller reusing its dict must not unpin the policy's PCRs
    assert policy.pcrs == {0: bytes(range(48))}
    with pytest.raises(TypeError):
        policy.pcrs[1] = bytes(48)  # type: ignore[index]


def test_a_root_file_with_several_certificates_is_refused() -> None:
    # Reading only the first would pin one root while the user believes they pinned both.
    bundle = ROOT.certificate_pem() + OTHER_ROOT.certificate_pem()
    with pytest.raises(MalformedError, match="one PEM certificate, not 2"):
        NitroPolicy.load_root(bundle)


def test_requiring_the_tee_rung_needs_a_tee_policy() -> None:
    with pytest.raises(MalformedError, match="the tee rung needs a TEE policy"):
        Policy(required=("signature", "tee"))
    Policy(required=("signature", "tee"), tee=sim_policy())


# --- time bounds on per-receipt documents and on document age ---------------------------------


@pytest.mark.parametrize(
    ("delay_ms", "ok"),
    [(0, True), (10 * MINUTE_MS, True), (10 * MINUTE_MS + 1, False), (365 * DAY_MS, False)],
)
def test_a_per_receipt_document_must_follow_its_receipt_closely(
    issued: dict[str, Issued], delay_ms: int, ok: bool
) -> None:
    """A document made long after the receipt (an enclave asked to attest a receipt it did not
    make) does not bind it."""
    bare = issued["bare"]
    item = _nitro_item(user_data=_rid(bare), at=NOW + delay_ms)
    report = _verifier(at=NOW + delay_ms + 1000).check(_with(bare, item))
    step = _step(report, "17 binding")
    assert (step.status is Status.PASSED) is ok
    if not ok:
        assert type(step.error) is AttestationBindingError
        assert "after it was issued" in step.reason


def test_the_document_age_limit_bounds_a_backdated_key_mode_receipt(
    issued: dict[str, Issued],
) -> None:
    """Key mode compares with the receipt's own (provider-signed) issue time; only the
    document's age at verification bounds a key that has left the enclave."""
    data = issued["key"].to_bytes()
    year_later = NOW + 365 * DAY_MS
    assert _verifier(at=year_later).check(data)  # issued_at says "right after the document"
    report = _verifier(at=year_later, max_age_ms=30 * DAY_MS).check(data)
    step = _step(report, "16 attestation")
    assert type(step.error) is AttestationError
    assert step.reason.startswith("document time:")
