"""Nitro attestation documents (N1-N6): the real AWS document, then the simulator's, each bad input
refused with its own error class; Hypothesis over single-byte changes and CBOR tags."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.certchain import clear_link_cache
from receipts.cose import MAX_DOCUMENT_BYTES, CoseSign1
from receipts.effects import seeded
from receipts.errors import (
    AttestationBindingError,
    AttestationError,
    AttestationFormatError,
    CertificateError,
    LimitError,
    MeasurementError,
    ReceiptsError,
)
from receipts.nitro import (
    AttestationDocument,
    NitroPolicy,
    SignedDocument,
    check_user_data,
    verify_document,
)
from receipts.nitro_sim import (
    DEFAULT_CHAIN,
    CertSpec,
    derive_key,
    indefinite_map,
    simulated_pcrs,
    with_spec,
)
from receipts.report import Status
from receipts.tee import check_document
from tests.nitrokit import (
    AWS_ROOT,
    DAY_MS,
    HOUR_MS,
    NOW,
    OTHER_ROOT,
    REAL_DOC,
    REAL_PAYLOAD_END,
    REAL_PAYLOAD_START,
    REAL_SIGNATURE_START,
    REAL_TIMESTAMP,
    ROOT,
    SIM,
    cose,
    custom_leaf_document,
    der,
    flip,
    nitro,
    parts,
    signed_fields,
    sim_policy,
)

REAL_POLICY = NitroPolicy(roots=(AWS_ROOT,), allow_debug=True)
USER_DATA = bytes(range(32))
SIM_DOC = SIM.document(user_data=USER_DATA)
PROTECTED, _, SIM_PAYLOAD, SIM_SIGNATURE = parts(SIM_DOC)
REAL_PROTECTED, _, REAL_PAYLOAD, REAL_SIGNATURE = parts(REAL_DOC)
REQUIRED = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
OPTIONAL = ("public_key", "user_data", "nonce")
# cryptography warns (negative serial, odd attribute length) on some changed certificates.
PARSE_WARNINGS = "ignore::UserWarning"
LEAF = DEFAULT_CHAIN[-1]


def _raises(error: type[ReceiptsError], match: str, fn: Callable[[], object]) -> None:
    """``fn`` raises exactly ``error`` (not a subclass, not a parent) with ``match`` in it."""
    with pytest.raises(error, match=match) as caught:
        fn()
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"


def _indefinite_array(*items: object) -> bytes:
    return b"\x9f" + b"".join(cbor2.dumps(item) for item in items) + b"\xff"


def _der_signature(raw: bytes) -> bytes:
    r, s = int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")
    return encode_dss_signature(r, s)


def _real_value_at(field: str) -> int:
    """The offset in the real document of the first byte after ``field``'s key: its value's
    CBOR head."""
    key = cbor2.dumps(field)
    return REAL_PAYLOAD_START + REAL_PAYLOAD.index(key) + len(key)


def _real_cert(which: int | str) -> tuple[int, int]:
    """Where ``cabundle[which]`` (or the leaf) starts in the real document, and its length."""
    fields = cbor2.loads(REAL_PAYLOAD)
    cert = fields["certificate"] if which == "leaf" else fields["cabundle"][which]
    return REAL_PAYLOAD_START + REAL_PAYLOAD.index(cert), len(cert)


def _real_cabundle_end(index: int) -> int:
    """The offset in the real document of the last byte of ``cabundle[index]``."""
    start, length = _real_cert(index)
    return start + length - 1


# Single-byte changes inside the real certificates that ``cryptography`` cannot read: each is
# refused when the certificate loads. Before certchain read names, extensions and key eagerly and
# caught every parse error cryptography raises, four of these escaped verification untyped
# (InvalidVersion, DuplicateExtension, and ValueError raised while naming a certificate).
UNREADABLE_CERTIFICATES = [
    ("leaf", 12, 0x10, "the leaf certificate", "18 is not a valid X509 version", "version"),
    ("leaf", 55, 0x10, "the leaf certificate", "X500_UNIQUE_IDENTIFIER", "issuer_bit_string"),
    ("leaf", 232, 0x80, "the leaf certificate", "error parsing asn1", "subject_tag"),
    ("leaf", 375, 0x01, "the leaf certificate", "Unknown key type", "key_type"),
    (0, 373, 0x01, "cabundle\\[0\\]", "Duplicate 2.5.29.15 extension", "duplicate_extension"),
    (3, 350, 0xFF, "cabundle\\[3\\]", "error parsing asn1", "subject_value"),
]


# --- the real document -----------------------------------------------------------------------


def test_the_real_document_verifies_at_its_own_time_with_the_aws_root() -> None:
    verified = verify_document(REAL_DOC, REAL_POLICY, at_ms=REAL_TIMESTAMP)
    doc = verified.document
    assert doc.timestamp == REAL_TIMESTAMP
    assert doc.module_id.startswith("i-") and doc.digest == "SHA384"
    assert doc.debug and doc.pcr(0) == bytes(48)
    assert doc.user_data == bytes(32) and doc.public_key == b"" and doc.nonce is not None
    assert len(doc.cabundle) == 4 and len(doc.pcrs) == 16
    assert verified.checked_at == REAL_TIMESTAMP
    assert verified.leaf.subject.rfc4514_string().startswith(f"CN={doc.module_id}.us-west-2.aws")
    assert REAL_DOC[REAL_PAYLOAD_START:REAL_PAYLOAD_END] == REAL_PAYLOAD
    assert REAL_DOC[REAL_SIGNATURE_START:] == REAL_SIGNATURE


def test_the_real_document_tagged_verifies_and_binds_its_user_data() -> None:
    verified = verify_document(
        b"\xd2" + REAL_DOC, REAL_POLICY, at_ms=REAL_TIMESTAMP, user_data=bytes(32)
    )
    assert verified.signed.sign1.tagged
    assert not SignedDocument.parse(REAL_DOC).sign1.tagged


def test_the_real_document_verifies_with_the_aws_root_among_others() -> None:
    policy = NitroPolicy(roots=(ROOT.certificate, AWS_ROOT), allow_debug=True)
    assert verify_document(REAL_DOC, policy, at_ms=REAL_TIMESTAMP).document.debug


def _real_reencoded() -> bytes:
    payload = cbor2.dumps(cbor2.loads(REAL_PAYLOAD), canonical=True)
    assert payload != REAL_PAYLOAD  # canonical order differs from AWS's: the bytes change
    return cose(REAL_PROTECTED, {}, payload, REAL_SIGNATURE)


def _at(ms: int) -> dict[str, Any]:
    return {"at": ms}


REAL_BAD = [
    pytest.param(lambda: REAL_DOC, _at(NOW), CertificateError, "expired", id="today"),
    pytest.param(
        lambda: REAL_DOC,
        _at(REAL_TIMESTAMP - DAY_MS),
        CertificateError,
        "not valid until",
        id="a_day_before",
    ),
    pytest.param(
        lambda: REAL_DOC,
        {"roots": (ROOT.certificate,)},
        CertificateError,
        "not a pinned root",
        id="simulator_root",
    ),
    pytest.param(
        lambda: REAL_DOC, {"allow_debug": False}, MeasurementError, "all zero", id="no_debug"
    ),
    pytest.param(
        lambda: cose(REAL_PROTECTED, {}, REAL_PAYLOAD, _der_signature(REAL_SIGNATURE)),
        {},
        AttestationFormatError,
        "a DER signature is not COSE",
        id="signature_as_der",
    ),
    pytest.param(_real_reencoded, {}, AttestationError, "does not verify", id="payload_reencoded"),
    pytest.param(
        lambda: REAL_DOC + b"\x00",
        {},
        AttestationFormatError,
        "1 byte\\(s\\) after the CBOR item",
        id="trailing_byte",
    ),
    pytest.param(
        lambda: b"\xd2" + REAL_DOC + b"\xa0",
        {},
        AttestationFormatError,
        "after the CBOR item",
        id="tagged_trailing_map",
    ),
    *(
        pytest.param(
            lambda prefix=prefix: prefix + REAL_DOC,
            {},
            AttestationFormatError,
            "not a COSE_Sign1 document",
            id=name,
        )
        for name, prefix in (
            ("tagged_twice", b"\xd2\xd2"),
            ("tag_18_long_head", b"\xd8\x12"),
            ("self_describe_tag", b"\xd9\xd9\xf7"),
            ("tag_17_mac0", b"\xd1"),
        )
    ),
    *(
        pytest.param(
            lambda n=n: REAL_DOC[:n], {}, AttestationFormatError, "CBOR", id=f"truncated_to_{n}"
        )
        for n in (1, 9, REAL_PAYLOAD_START + 100, REAL_PAYLOAD_END, len(REAL_DOC) - 1)
    ),
    *(
        pytest.param(
            lambda i=i, m=m: flip(REAL_DOC, REAL_SIGNATURE_START + i, m),
            {},
            AttestationError,
            "does not verify",
            id=f"signature_byte_{i}^{m:#04x}",
        )
        for i, m in ((0, 0x01), (1, 0x80), (47, 0x01), (48, 0xFF), (72, 0x10), (95, 0x01))
    ),
    # Bytes of the payload whose change keeps it well-formed: each names the step that notices.
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("user_data") + 2),
        {},
        AttestationError,
        "does not verify",
        id="payload_user_data",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("nonce") + 5),
        {},
        AttestationError,
        "does not verify",
        id="payload_nonce",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("module_id") + 9),
        {},
        AttestationError,
        "does not verify",
        id="payload_module_id",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("timestamp") + 8),
        {},
        AttestationError,
        "does not verify",
        id="payload_timestamp_1ms",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("pcrs") + 5 * 51 - 2),
        {},
        AttestationError,
        "does not verify",
        id="payload_pcr4",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("pcrs") + 4),
        {},
        AttestationError,
        "does not verify",
        id="payload_pcr0_no_longer_zero",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("digest") + 6),
        {},
        AttestationFormatError,
        "'SHA385' is not SHA384",
        id="payload_digest",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("nonce") - 1),
        {},
        AttestationFormatError,
        "unknown field",
        id="payload_field_name",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_value_at("certificate") + 3 + 637),
        {},
        CertificateError,
        "is not issued by",
        id="payload_leaf_signature",
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_cabundle_end(0)),
        {},
        CertificateError,
        "not a pinned root",
        id="payload_root_certificate",
    ),
    *(
        pytest.param(
            lambda c=c, o=o, m=m: flip(REAL_DOC, _real_cert(c)[0] + o, m),
            {},
            AttestationFormatError,
            f"{what} is not a well-formed DER certificate \\(.*{fragment}",
            id=f"unreadable_{c}_{name}",
        )
        for c, o, m, what, fragment, name in UNREADABLE_CERTIFICATES
    ),
    pytest.param(
        lambda: flip(REAL_DOC, _real_cabundle_end(2)),
        {},
        CertificateError,
        "is not issued by",
        id="payload_intermediate_signature",
    ),
]


@pytest.mark.filterwarnings(PARSE_WARNINGS)
@pytest.mark.parametrize(("build", "changes", "error", "match"), REAL_BAD)
def test_the_real_document_refused(
    build: Callable[[], bytes], changes: dict[str, Any], error: type[ReceiptsError], match: str
) -> None:
    at = changes.pop("at", REAL_TIMESTAMP)
    policy = NitroPolicy(**{"roots": (AWS_ROOT,), "allow_debug": True, **changes})
    _raises(error, match, lambda: verify_document(build(), policy, at_ms=at))


PAYLOAD_SAMPLES = range(REAL_PAYLOAD_START, REAL_PAYLOAD_END, (REAL_PAYLOAD_END - 10) // 40)


@pytest.mark.filterwarnings(PARSE_WARNINGS)
@pytest.mark.parametrize("index", PAYLOAD_SAMPLES)
@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_the_real_document_with_a_payload_byte_changed_is_refused(index: int, mask: int) -> None:
    with pytest.raises((AttestationFormatError, AttestationError)):
        verify_document(flip(REAL_DOC, index, mask), REAL_POLICY, at_ms=REAL_TIMESTAMP)


@pytest.mark.filterwarnings(PARSE_WARNINGS)
@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(REAL_DOC) - 1), mask=st.integers(1, 255))
def test_any_single_byte_change_of_the_real_document_is_refused(index: int, mask: int) -> None:
    changed = flip(REAL_DOC, index, mask)
    with pytest.raises(ReceiptsError):
        verify_document(changed, REAL_POLICY, at_ms=REAL_TIMESTAMP)
    assert check_document(changed, REAL_POLICY, at_ms=REAL_TIMESTAMP).status is Status.FAILED


# --- the simulator: chains ---------------------------------------------------------------------


def test_a_simulated_document_verifies_with_its_root_only() -> None:
    verified = verify_document(SIM_DOC, sim_policy(), at_ms=NOW, user_data=USER_DATA)
    doc = verified.document
    assert doc.timestamp == NOW and doc.user_data == USER_DATA and not doc.debug
    assert doc.public_key is None and doc.nonce is None
    assert [i for i, _ in doc.pcrs] == list(range(16))
    assert verified.leaf.subject == SIM.certificates[-1].subject
    # Within the leaf's life (born a minute before NOW, three hours long).
    for at in (NOW - 60_000, NOW + 3 * HOUR_MS - 61_000):
        verify_document(SIM_DOC, sim_policy(), at_ms=at)


_LEAF_BORN = int(SIM.certificates[-1].not_valid_before_utc.timestamp() * 1000)
_LEAF_DIES = int(SIM.certificates[-1].not_valid_after_utc.timestamp() * 1000)


@settings(max_examples=150, deadline=None)
@given(
    at=st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(_LEAF_BORN - 2000, _LEAF_BORN + 2000),
        st.integers(_LEAF_DIES - 2000, _LEAF_DIES + 2000),
    )
)
def test_the_chain_holds_exactly_inside_the_leaf_validity(at: int) -> None:
    # The leaf's window lies inside every other certificate's, and the document's timestamp is
    # within the skew of all of it: the instant alone decides.
    if _LEAF_BORN <= at <= _LEAF_DIES:
        verify_document(SIM_DOC, sim_policy(), at_ms=at)
    else:
        _raises(
            CertificateError,
            "expired|not valid until|no certificate is valid at",
            lambda: verify_document(SIM_DOC, sim_policy(), at_ms=at),
        )
        result = check_document(SIM_DOC, sim_policy(), at_ms=at)
        assert [s.step for s in result.failures()] == ["N3 chain"]


def _extra_ca_below_instance() -> tuple[CertSpec, ...]:
    extra = CertSpec(
        name="extra.simulated", age_ms=HOUR_MS, lifetime_ms=DAY_MS, ca=True, key_cert_sign=True
    )
    return (*DEFAULT_CHAIN[:3], extra, LEAF)


def _with_fields(**changes: object) -> Callable[[], bytes]:
    return lambda: signed_fields({**SIM.fields(), **changes})


def _cabundle(*order: int) -> list[bytes]:
    certs = [ROOT.certificate, *SIM.certificates[:-1]]
    return [der(certs[i]) for i in order]


def _p256_leaf() -> bytes:
    return custom_leaf_document(LEAF, key=ec.derive_private_key(12345, ec.SECP256R1()))


CHAIN_BAD = [
    pytest.param(
        lambda: SIM_DOC,
        {"roots": (OTHER_ROOT.certificate,)},
        CertificateError,
        "'simulated.nitro-enclaves', which is not a pinned root",
        id="wrong_root_pinned",
    ),
    pytest.param(
        lambda: nitro(root=OTHER_ROOT).document(),
        {},
        CertificateError,
        "not a pinned root",
        id="document_from_another_root",
    ),
    pytest.param(
        lambda: SIM_DOC,
        _at(NOW + 4 * HOUR_MS),
        CertificateError,
        "'enclave.simulated.nitro-enclaves' expired",
        id="leaf_expired_at_check",
    ),
    pytest.param(
        lambda: SIM_DOC,
        _at(NOW - 2 * 60_000),
        CertificateError,
        "'enclave.simulated.nitro-enclaves' is not valid until",
        id="leaf_not_yet_valid_at_check",
    ),
    *(
        pytest.param(
            lambda: SIM_DOC,
            _at(at),
            CertificateError,
            f"no certificate is valid at {at} ms",
            id=f"checked_at_{at}",
        )
        for at in (10**20, 2**63 - 1, -(10**15), -(2**63))
    ),
    pytest.param(
        lambda: SIM_DOC,
        _at(NOW + 30 * DAY_MS),
        CertificateError,
        "'enclave.simulated.nitro-enclaves' expired",
        id="all_expired_leaf_named_first",
    ),
    pytest.param(
        lambda: nitro(
            chain=with_spec(DEFAULT_CHAIN, 1, age_ms=10 * DAY_MS, lifetime_ms=DAY_MS)
        ).document(),
        {},
        CertificateError,
        "'regional.simulated.nitro-enclaves' expired",
        id="middle_expired_at_document_time",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 2, age_ms=-HOUR_MS)).document(),
        {},
        CertificateError,
        "'instance.simulated.nitro-enclaves' is not valid until",
        id="middle_not_yet_valid_at_document_time",
    ),
    pytest.param(
        lambda: nitro(
            chain=with_spec(DEFAULT_CHAIN, 3, age_ms=2 * HOUR_MS, lifetime_ms=HOUR_MS)
        ).document(),
        {},
        CertificateError,
        "'enclave.simulated.nitro-enclaves' expired",
        id="leaf_expired_at_document_time",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 1, key_cert_sign=False)).document(),
        {},
        CertificateError,
        "'regional.simulated.nitro-enclaves' issues certificates without keyCertSign",
        id="ca_without_key_cert_sign",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 2, ca=False, path_length=None)).document(),
        {},
        CertificateError,
        "'instance.simulated.nitro-enclaves' issues certificates but is not a CA",
        id="issuer_not_a_ca",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 0, path_length=0)).document(),
        {},
        CertificateError,
        "'zonal.simulated.nitro-enclaves' allows 0 CA certificate\\(s\\) below it, the chain has 2",
        id="path_length_0_on_first_intermediate",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 1, path_length=0)).document(),
        {},
        CertificateError,
        "'regional.simulated.nitro-enclaves' allows 0 .* the chain has 1",
        id="path_length_0_on_second_intermediate",
    ),
    pytest.param(
        lambda: nitro(chain=_extra_ca_below_instance()).document(),
        {},
        CertificateError,
        "'zonal.simulated.nitro-enclaves' allows 2 .* the chain has 3",
        id="one_ca_too_many",
    ),
    pytest.param(
        lambda: custom_leaf_document(
            CertSpec(
                name="enclave-ca", age_ms=60_000, lifetime_ms=HOUR_MS, ca=True, key_cert_sign=True
            )
        ),
        {},
        CertificateError,
        "the leaf 'enclave-ca' is a CA certificate",
        id="leaf_is_a_ca",
    ),
    pytest.param(
        lambda: nitro(chain=with_spec(DEFAULT_CHAIN, 3, digital_signature=False)).document(),
        {},
        CertificateError,
        "may not sign",
        id="leaf_without_digital_signature",
    ),
    pytest.param(_p256_leaf, {}, CertificateError, "does not hold a P-384 key", id="leaf_key_p256"),
    pytest.param(
        _with_fields(cabundle=_cabundle(0, 2, 1, 3)),
        {},
        CertificateError,
        "'regional.simulated.nitro-enclaves' is not issued by 'simulated.nitro-enclaves'",
        id="cabundle_out_of_order",
    ),
    pytest.param(
        _with_fields(cabundle=_cabundle(1, 2, 3)),
        {},
        CertificateError,
        "'zonal.simulated.nitro-enclaves', which is not a pinned root",
        id="cabundle_without_root",
    ),
    pytest.param(
        _with_fields(cabundle=_cabundle(0, 1, 2)),
        {},
        CertificateError,
        "'enclave.simulated.nitro-enclaves' is not issued by 'regional",
        id="cabundle_missing_the_leaf_issuer",
    ),
    pytest.param(
        _with_fields(certificate=der(nitro(seed=602).certificates[-1])),
        {},
        CertificateError,
        "is not issued by",
        id="leaf_of_another_chain",
    ),
    pytest.param(
        _with_fields(certificate=b"\x30\x03\x02\x01\x01"),
        {},
        AttestationFormatError,
        "the leaf certificate is not a well-formed DER certificate",
        id="leaf_not_a_certificate",
    ),
    pytest.param(
        _with_fields(cabundle=[*_cabundle(0, 1), b"\x30\x00", *_cabundle(3)]),
        {},
        AttestationFormatError,
        "cabundle\\[2\\] is not a well-formed DER certificate",
        id="cabundle_entry_not_a_certificate",
    ),
    pytest.param(
        _with_fields(timestamp=NOW - 10 * 60_000),
        {},
        CertificateError,
        "timestamp .* is outside its leaf",
        id="document_dated_before_its_leaf",
    ),
    pytest.param(
        _with_fields(timestamp=NOW + 10 * 60_000),
        {},
        CertificateError,
        "dated 600000 ms after the time checked",
        id="document_dated_after_the_check",
    ),
    pytest.param(
        lambda: CoseSign1.sign(SIM_PAYLOAD, derive_key(seeded(9))).to_bytes(),
        {},
        AttestationError,
        "does not verify under its leaf",
        id="signed_by_another_key",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, cbor2.dumps([SIM.fields()]), SIM_SIGNATURE),
        {},
        AttestationFormatError,
        "not a map",
        id="payload_not_a_map",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, cbor2.dumps(SIM.fields(nonce=b"n")), SIM_SIGNATURE),
        {},
        AttestationError,
        "does not verify",
        id="signature_of_another_payload",
    ),
    pytest.param(
        lambda: SIM_DOC,
        {"pcrs": {0: bytes(range(48))}},
        MeasurementError,
        "PCR0 is .*, the policy expects 00010203",
        id="pcr_mismatch",
    ),
    pytest.param(
        lambda: SIM_DOC,
        {"pcrs": {4: simulated_pcrs("another image")[4]}},
        MeasurementError,
        "PCR4 is",
        id="pcr_of_another_image",
    ),
    pytest.param(
        lambda: SIM_DOC,
        {"pcrs": {16: bytes(48)}},
        MeasurementError,
        "PCR16 is not in the document",
        id="pcr_absent",
    ),
    pytest.param(
        lambda: nitro(debug=True).document(),
        {},
        MeasurementError,
        "PCR0 is all zero: a debug-mode enclave",
        id="debug_enclave",
    ),
    pytest.param(
        lambda: nitro(pcrs={0: bytes(48), 4: bytes(range(48))}).document(),
        {"pcrs": {4: bytes(range(48))}},
        MeasurementError,
        "all zero",
        id="debug_enclave_with_expected_pcr",
    ),
]


@pytest.mark.parametrize(("build", "changes", "error", "match"), CHAIN_BAD)
def test_simulated_documents_refused(
    build: Callable[[], bytes], changes: dict[str, Any], error: type[ReceiptsError], match: str
) -> None:
    at = changes.pop("at", NOW)
    _raises(error, match, lambda: verify_document(build(), sim_policy(**changes), at_ms=at))


def test_debug_enclaves_pass_only_where_allowed() -> None:
    doc = nitro(debug=True).document()
    verified = verify_document(doc, sim_policy(allow_debug=True), at_ms=NOW)
    assert verified.document.debug
    # allow_debug does not relax a PCR the policy names.
    expected = {4: simulated_pcrs("inference-receipts-provider")[4]}
    verify_document(doc, sim_policy(allow_debug=True, pcrs=expected), at_ms=NOW)
    _raises(
        MeasurementError,
        "PCR4",
        lambda: verify_document(doc, sim_policy(allow_debug=True, pcrs={4: bytes(48)}), at_ms=NOW),
    )


def test_expected_pcrs_pass() -> None:
    pcrs = simulated_pcrs("inference-receipts-provider")
    expected = {i: pcrs[i] for i in (0, 1, 2, 4, 8)}
    verify_document(SIM_DOC, sim_policy(pcrs=expected), at_ms=NOW)


def test_a_chain_with_path_lengths_to_spare_passes() -> None:
    chain = with_spec(DEFAULT_CHAIN, 0, path_length=None)
    verify_document(nitro(chain=chain).document(), sim_policy(), at_ms=NOW)


# --- binding (N6) -----------------------------------------------------------------------------


def test_user_data_bound_to_another_receipt_is_refused() -> None:
    doc = SignedDocument.parse(SIM_DOC).document
    check_user_data(doc, USER_DATA)
    other = bytes(32)
    _raises(AttestationBindingError, "expected 0000", lambda: check_user_data(doc, other))
    _raises(
        AttestationBindingError,
        "user_data is 000102",
        lambda: verify_document(SIM_DOC, sim_policy(), at_ms=NOW, user_data=other),
    )
    absent = SignedDocument.parse(SIM.document()).document
    _raises(AttestationBindingError, "user_data is absent", lambda: check_user_data(absent, other))
    _raises(AttestationBindingError, "user_data is absent", lambda: check_user_data(absent, b""))


# --- fields (N2): signed by the simulator's leaf, so only the format check can refuse ------------


def _without(name: str) -> Callable[[], bytes]:
    return lambda: signed_fields({k: v for k, v in SIM.fields().items() if k != name})


def _raw_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A definite-length map of already-encoded keys and values (duplicates allowed)."""
    assert len(pairs) < 24
    return bytes([0xA0 + len(pairs)]) + b"".join(k + v for k, v in pairs)


def _fields_raw(**raw_values: bytes) -> list[tuple[bytes, bytes]]:
    """The simulator's fields, each encoded, with some values replaced by raw CBOR."""
    return [
        (cbor2.dumps(k), raw_values[k] if k in raw_values else cbor2.dumps(v))
        for k, v in SIM.fields(user_data=USER_DATA).items()
    ]


def _pcr_map_raw(*indexes: int) -> bytes:
    return _raw_map([(cbor2.dumps(i), cbor2.dumps(bytes(range(48)))) for i in indexes])


def _signed_raw(payload: bytes) -> Callable[[], bytes]:
    return lambda: SIM.sign(payload)


_PCRS = simulated_pcrs("inference-receipts-provider")
TOO_MANY_CERTS = [der(ROOT.certificate)] * 9

FIELDS_BAD = [
    *(
        pytest.param(_without(name), f"missing or null field\\(s\\) {name}", id=f"missing_{name}")
        for name in REQUIRED
    ),
    *(
        pytest.param(
            _with_fields(**{name: None}), f"missing or null field\\(s\\) {name}", id=f"null_{name}"
        )
        for name in REQUIRED
    ),
    pytest.param(_with_fields(user_data=bytes(513)), "user_data of 513 bytes", id="user_data_513"),
    pytest.param(_with_fields(nonce=bytes(513)), "nonce of 513 bytes .* 0-512", id="nonce_513"),
    pytest.param(
        _with_fields(public_key=bytes(1025)), "public_key of 1025 .* 0-1024", id="public_key_1025"
    ),
    pytest.param(_with_fields(user_data="text"), "user_data is not a byte", id="user_data_text"),
    pytest.param(_with_fields(nonce=[b"n"]), "nonce is not a byte", id="nonce_array"),
    pytest.param(
        _with_fields(certificate=bytes(1025)), "certificate of 1025 .* 1-1024", id="cert_1025"
    ),
    pytest.param(_with_fields(certificate=b""), "certificate of 0 bytes", id="certificate_empty"),
    pytest.param(_with_fields(module_id="i" * 257), "module_id must be 1-256", id="module_id_257"),
    pytest.param(_with_fields(module_id="é" * 129), "module_id must be 1-256", id="module_id_utf8"),
    pytest.param(_with_fields(module_id=""), "module_id must be 1-256", id="module_id_empty"),
    pytest.param(_with_fields(module_id=b"i-0"), "module_id is not text", id="module_id_bytes"),
    pytest.param(_with_fields(cabundle=TOO_MANY_CERTS), "list 1-8", id="cabundle_9_entries"),
    pytest.param(_with_fields(cabundle=[]), "list 1-8", id="cabundle_empty"),
    pytest.param(_with_fields(cabundle=b"\x30"), "list 1-8", id="cabundle_bytes"),
    pytest.param(
        _with_fields(cabundle=[*_cabundle(0), bytes(1025)]),
        "cabundle\\[1\\] is not 1-1024 bytes",
        id="cabundle_entry_1025",
    ),
    pytest.param(
        _with_fields(cabundle=[*_cabundle(0), b""]), "cabundle\\[1\\] is not", id="cab_entry_empty"
    ),
    pytest.param(
        _with_fields(cabundle=[*_cabundle(0), "cert"]), "cabundle\\[1\\] is not", id="cab_text"
    ),
    pytest.param(
        _with_fields(pcrs={**_PCRS, 0: bytes(32)}), "PCR0 is not 48 bytes", id="pcr_32_bytes"
    ),
    pytest.param(
        _with_fields(pcrs={**_PCRS, 5: bytes(49)}), "PCR5 is not 48 bytes", id="pcr_49_bytes"
    ),
    pytest.param(_with_fields(pcrs={**_PCRS, 3: "00"}), "PCR3 is not 48", id="pcr_text"),
    pytest.param(
        _with_fields(pcrs={**_PCRS, 32: bytes(48)}), "PCR index 32 not 0-31", id="pcr_index_32"
    ),
    pytest.param(
        _with_fields(pcrs={-1: bytes(48)}), "PCR index -1 not 0-31", id="pcr_index_negative"
    ),
    pytest.param(_with_fields(pcrs={"0": bytes(48)}), "PCR index '0'", id="pcr_index_text"),
    pytest.param(_with_fields(pcrs={}), "pcrs must map 1-32", id="pcrs_empty"),
    pytest.param(
        _with_fields(pcrs={i: bytes(48) for i in range(33)}), "pcrs must map 1-32", id="pcrs_33"
    ),
    pytest.param(_with_fields(pcrs=[bytes(48)]), "pcrs must map", id="pcrs_array"),
    pytest.param(_with_fields(digest="SHA256"), "digest 'SHA256' is not SHA384", id="SHA256"),
    pytest.param(_with_fields(digest="sha384"), "digest 'sha384' is not", id="digest_lowercase"),
    pytest.param(_with_fields(digest=b"SHA384"), "digest is not text", id="digest_bytes"),
    pytest.param(_with_fields(timestamp=0), "timestamp is not a positive uint64", id="ts_zero"),
    pytest.param(_with_fields(timestamp=-1), "timestamp is not a positive", id="ts_negative"),
    pytest.param(_with_fields(timestamp=float(NOW)), "timestamp is not", id="timestamp_float"),
    pytest.param(_with_fields(timestamp=str(NOW)), "timestamp is not", id="timestamp_text"),
    pytest.param(_with_fields(timestamp=True), "timestamp is not", id="timestamp_true"),
    pytest.param(_with_fields(extra=1), "unknown field\\(s\\) 'extra'", id="unknown_field"),
    pytest.param(_with_fields(Nonce=b""), "unknown field\\(s\\) 'Nonce'", id="field_name_case"),
    pytest.param(
        lambda: signed_fields({**SIM.fields(), 1: b""}),  # type: ignore[dict-item]
        "unknown field\\(s\\) 1",
        id="integer_key",
    ),
    pytest.param(
        _with_fields(user_data=[[[b"deep"]]]), "not well-formed CBOR", id="nested_too_deep"
    ),
    pytest.param(
        _signed_raw(_raw_map([*_fields_raw(), (cbor2.dumps("nonce"), cbor2.dumps(b"n"))])),
        "not well-formed CBOR .*Duplicate map key: 'nonce'",
        id="duplicate_field",
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(pcrs=_pcr_map_raw(0, 1, 0)))),
        "not well-formed CBOR .*Duplicate map key: 0",
        id="duplicate_pcr_index",
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(timestamp=cbor2.dumps(cbor2.CBORTag(2, b"\x01" * 6))))),
        "tag",
        id="bignum_timestamp",
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(timestamp=b"\xc1" + cbor2.dumps(NOW // 1000)))),
        "tag",
        id="epoch_tag_timestamp",
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(user_data=b"\xd8\x18" + cbor2.dumps(USER_DATA)))),
        "tag",
        id="embedded_cbor_tag_user_data",
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(user_data=b"\xd9\xd9\xf7" + cbor2.dumps(USER_DATA)))),
        "tag",
        id="self_describe_tag_user_data",
    ),
    pytest.param(
        _signed_raw(b"\xd9\xd9\xf7" + cbor2.dumps(SIM.fields())), "tag", id="tagged_payload"
    ),
    pytest.param(
        _signed_raw(_raw_map(_fields_raw(nonce=b"\xf7"))), "nonce is not a byte", id="undefined"
    ),
    pytest.param(
        _signed_raw(cbor2.dumps(SIM.fields()) + b"\x00"), "1 byte\\(s\\) after", id="trailing"
    ),
    pytest.param(
        _signed_raw(cbor2.dumps(SIM.fields())[:-1]), "not well-formed CBOR", id="truncated"
    ),
    pytest.param(_signed_raw(b""), "not well-formed CBOR", id="empty_payload"),
    pytest.param(
        _signed_raw(indefinite_map(SIM.fields())[:-1]), "not well-formed", id="indefinite_unclosed"
    ),
    pytest.param(_signed_raw(b"\xff"), "not well-formed", id="lone_break"),
]


@pytest.mark.parametrize(("build", "match"), FIELDS_BAD)
def test_malformed_fields_are_refused_even_when_signed(
    build: Callable[[], bytes], match: str
) -> None:
    _raises(
        AttestationFormatError, match, lambda: verify_document(build(), sim_policy(), at_ms=NOW)
    )


@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("absent", ["null", "missing"])
def test_optional_fields_may_be_null_or_missing(name: str, absent: str) -> None:
    fields = SIM.fields(user_data=USER_DATA, public_key=b"\x04key", nonce=b"nonce")
    if absent == "null":
        fields[name] = None
    else:
        del fields[name]
    doc = verify_document(signed_fields(fields), sim_policy(), at_ms=NOW).document
    assert getattr(doc, name) is None
    present = [f for f in OPTIONAL if f != name]
    assert all(getattr(doc, f) is not None for f in present)


def test_fields_at_their_limits_pass() -> None:
    fields = SIM.fields(user_data=bytes(512), public_key=bytes(1024), nonce=bytes(512))
    fields["module_id"] = "i" * 256
    fields["pcrs"] = {i: bytes(range(48)) for i in range(32)}
    doc = verify_document(signed_fields(fields), sim_policy(), at_ms=NOW).document
    assert len(doc.pcrs) == 32 and doc.public_key == bytes(1024) and len(doc.module_id) == 256


def test_indefinite_length_items_are_accepted() -> None:
    fields = SIM.fields(user_data=USER_DATA)
    doc = verify_document(SIM.sign(indefinite_map(fields)), sim_policy(), at_ms=NOW).document
    assert doc.user_data == USER_DATA and doc.timestamp == NOW
    # Chunked byte strings, an indefinite pcrs map and an indefinite cabundle array too.
    chunked = b"\x5f" + cbor2.dumps(USER_DATA[:10]) + cbor2.dumps(USER_DATA[10:]) + b"\xff"
    pcrs = b"\xbf" + b"".join(cbor2.dumps(i) + cbor2.dumps(v) for i, v in _PCRS.items()) + b"\xff"
    certs = fields["cabundle"]
    assert isinstance(certs, list)
    cabundle = b"\x9f" + b"".join(cbor2.dumps(c) for c in certs) + b"\xff"
    payload = _raw_map(_fields_raw(user_data=chunked, pcrs=pcrs, cabundle=cabundle))
    doc = verify_document(SIM.sign(payload), sim_policy(), at_ms=NOW).document
    assert doc.user_data == USER_DATA and doc.pcrs == tuple(sorted(_PCRS.items()))


@settings(max_examples=150, deadline=None)
@given(tag=st.integers(0, 2**64 - 1), field=st.sampled_from(["timestamp", "user_data", "pcrs"]))
def test_any_tag_inside_the_payload_is_refused(tag: int, field: str) -> None:
    fields = SIM.fields(user_data=USER_DATA)
    payload = cbor2.dumps({**fields, field: cbor2.CBORTag(tag, fields[field])})
    with pytest.raises(AttestationFormatError, match="not well-formed CBOR"):
        AttestationDocument.decode(payload)


# --- COSE_Sign1 (N1) ---------------------------------------------------------------------------


def test_tag_18_and_untagged_are_both_accepted() -> None:
    payload = cbor2.dumps(SIM.fields())
    untagged, tagged = SIM.sign(payload, tagged=False), SIM.sign(payload, tagged=True)
    assert tagged == b"\xd2" + untagged
    for data in (untagged, tagged, nitro(tagged=True).document()):
        verify_document(data, sim_policy(), at_ms=NOW)
    assert SignedDocument.parse(tagged).sign1.tagged
    assert CoseSign1.parse(tagged).to_bytes() == tagged


COSE_BAD = [
    pytest.param(
        lambda: cose(PROTECTED, {4: b"kid"}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "unprotected header must be an empty map",
        id="unprotected_kid",
    ),
    pytest.param(
        lambda: cose(PROTECTED, [], SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "unprotected header must be an empty map",
        id="unprotected_array",
    ),
    pytest.param(
        lambda: cose(PROTECTED, None, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "unprotected header",
        id="unprotected_null",
    ),
    pytest.param(
        lambda: cose(cbor2.dumps({1: -7}), {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header must be exactly",
        id="protected_es256",
    ),
    pytest.param(
        lambda: cose(cbor2.dumps({1: -35, 4: b"kid"}), {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header must be exactly",
        id="protected_extra_kid",
    ),
    pytest.param(
        lambda: cose(cbor2.dumps({1: "ES384"}), {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header must be exactly",
        id="protected_alg_by_name",
    ),
    pytest.param(
        lambda: cose(b"", {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header: not well-formed CBOR",
        id="protected_empty",
    ),
    pytest.param(
        lambda: cose(b"\xa0", {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header must be exactly",
        id="protected_empty_map",
    ),
    pytest.param(
        lambda: cose(PROTECTED + b"\x00", {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header: 1 byte\\(s\\) after",
        id="protected_trailing_byte",
    ),
    pytest.param(
        lambda: cose(b"\xa2\x01\x38\x22\x01\x38\x22", {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "protected header: not well-formed CBOR",
        id="protected_duplicate_alg",
    ),
    pytest.param(
        lambda: cose({1: -35}, {}, SIM_PAYLOAD, SIM_SIGNATURE),
        AttestationFormatError,
        "must be byte strings",
        id="protected_not_wrapped",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, None, SIM_SIGNATURE),
        AttestationFormatError,
        "must be byte strings",
        id="detached_payload",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, SIM.fields(), SIM_SIGNATURE),
        AttestationFormatError,
        "must be byte strings",
        id="payload_not_wrapped",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, SIM_PAYLOAD, SIM_SIGNATURE[:95]),
        AttestationFormatError,
        "96 bytes r \\|\\| s, got 95",
        id="signature_95",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, SIM_PAYLOAD, SIM_SIGNATURE + b"\x00"),
        AttestationFormatError,
        "got 97",
        id="signature_97",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, SIM_PAYLOAD, _der_signature(SIM_SIGNATURE)),
        AttestationFormatError,
        "a DER signature is not COSE",
        id="signature_der",
    ),
    pytest.param(
        lambda: _indefinite_array(PROTECTED, {}, SIM_PAYLOAD),
        AttestationFormatError,
        "not an array of four items",
        id="three_items_indefinite",
    ),
    pytest.param(
        lambda: _indefinite_array(PROTECTED, {}, SIM_PAYLOAD, SIM_SIGNATURE, b""),
        AttestationFormatError,
        "not an array of four items",
        id="five_items_indefinite",
    ),
    pytest.param(
        lambda: _indefinite_array(PROTECTED, {}, SIM_PAYLOAD, SIM_SIGNATURE)[:-1],
        AttestationFormatError,
        "not well-formed CBOR",
        id="indefinite_unclosed",
    ),
    pytest.param(
        lambda: b"\x9f" * 10 + b"\xff" * 10,
        AttestationFormatError,
        "not well-formed CBOR",
        id="nested_too_deep",
    ),
    *(
        pytest.param(build, AttestationFormatError, "not a COSE_Sign1 document$", id=name)
        for name, build in (
            ("three_items", lambda: cbor2.dumps([PROTECTED, {}, SIM_PAYLOAD])),
            ("five_items", lambda: cbor2.dumps([PROTECTED, {}, SIM_PAYLOAD, SIM_SIGNATURE, b""])),
            ("a_map", lambda: cbor2.dumps({"payload": SIM_PAYLOAD})),
            ("empty", lambda: b""),
            ("only_tag", lambda: b"\xd2"),
            ("one_item", lambda: b"\x81" * 10 + b"\x80"),
        )
    ),
    pytest.param(
        lambda: base64.b64encode(SIM_DOC),
        AttestationFormatError,
        "it is text: decode base64 or PEM first",
        id="base64",
    ),
    pytest.param(
        lambda: SIM_DOC + b"\x00" * (MAX_DOCUMENT_BYTES - len(SIM_DOC)),
        AttestationFormatError,
        "after the CBOR item",
        id="padded_to_32KiB",
    ),
    pytest.param(
        lambda: SIM_DOC + b"\x00" * (MAX_DOCUMENT_BYTES + 1 - len(SIM_DOC)),
        LimitError,
        "over the 32768-byte limit",
        id="padded_over_32KiB",
    ),
    pytest.param(
        lambda: cose(PROTECTED, {}, bytes(MAX_DOCUMENT_BYTES), SIM_SIGNATURE),
        LimitError,
        "over the 32768-byte limit",
        id="payload_over_32KiB",
    ),
]


@pytest.mark.parametrize(("build", "error", "match"), COSE_BAD)
def test_malformed_cose_is_refused(
    build: Callable[[], bytes], error: type[ReceiptsError], match: str
) -> None:
    _raises(error, match, lambda: verify_document(build(), sim_policy(), at_ms=NOW))


@pytest.mark.parametrize(
    "header",
    [b"\xa1\xf5\x38\x22", b"\xa1\xf9\x3c\x00\x38\x22", b"\xa1\x01\xf9\xd0\x60"],
    ids=["label_true", "label_float", "alg_float"],
)
def test_a_protected_header_equal_to_es384_only_in_python_is_refused(header: bytes) -> None:
    # {True: -35}, {1.0: -35}, {1: -35.0} compare equal to {1: -35} in Python but not in CBOR;
    # signed by the leaf over those exact bytes, so only N1 can refuse them.
    unsigned = CoseSign1(protected=header, payload=SIM_PAYLOAD, signature=b"")
    der = SIM.leaf_key.sign(unsigned.sig_structure(), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    _raises(
        AttestationFormatError,
        "protected header must be exactly",
        lambda: verify_document(cose(header, {}, SIM_PAYLOAD, signature), sim_policy(), at_ms=NOW),
    )


def test_es384_needs_a_p384_key() -> None:
    sign1 = CoseSign1.parse(SIM_DOC)
    sign1.verify(SIM.leaf_key.public_key())
    p256 = ec.derive_private_key(7, ec.SECP256R1()).public_key()
    _raises(AttestationError, "ES384 needs a P-384 key", lambda: sign1.verify(p256))


# --- the standalone report names the step that failed ------------------------------------------

REPORT_CASES = [
    pytest.param(SIM_DOC[:-1], {}, None, "N1 cose", AttestationFormatError, id="cose"),
    pytest.param(
        signed_fields({**SIM.fields(), "digest": "SHA256"}),
        {},
        None,
        "N2 fields",
        AttestationFormatError,
        id="fields",
    ),
    pytest.param(
        SIM_DOC,
        {"roots": (OTHER_ROOT.certificate,)},
        None,
        "N3 chain",
        CertificateError,
        id="chain",
    ),
    pytest.param(
        flip(SIM_DOC, len(SIM_DOC) - 1), {}, None, "N4 signature", AttestationError, id="signature"
    ),
    pytest.param(
        SIM_DOC, {"pcrs": {1: bytes(48)}}, None, "N5 measurements", MeasurementError, id="pcrs"
    ),
    pytest.param(SIM_DOC, {}, bytes(32), "N6 binding", AttestationBindingError, id="binding"),
]


@pytest.mark.parametrize(("data", "changes", "user_data", "step", "error"), REPORT_CASES)
def test_check_document_names_the_failed_step(
    data: bytes,
    changes: dict[str, Any],
    user_data: bytes | None,
    step: str,
    error: type[ReceiptsError],
) -> None:
    result = check_document(data, sim_policy(**changes), at_ms=NOW, user_data=user_data)
    assert result.status is Status.FAILED
    [failed] = result.failures()
    assert failed.step == step and type(failed.error) is error
    assert result.steps[-1].step == step  # nothing runs after the failure


def test_check_document_passes_every_step() -> None:
    result = check_document(SIM_DOC, sim_policy(), at_ms=NOW, user_data=USER_DATA)
    assert [(s.step, s.status) for s in result.steps] == [
        (name, Status.PASSED)
        for name in ("N1 cose", "N2 fields", "N3 chain", "N4 signature", "N5 measurements")
    ] + [("N6 binding", Status.PASSED)]
    without = check_document(REAL_DOC, REAL_POLICY, at_ms=REAL_TIMESTAMP)
    assert without.status is Status.PASSED
    assert without.steps[-1].step == "N6 binding" and without.steps[-1].status is Status.NOT_RUN


# --- the link and parse caches never change a verdict ---------------------------------------


def _tamper_link(data: bytes) -> bytes:
    """The simulated document with one byte of an intermediate's signature changed, re-signed
    by the same leaf so only the chain is wrong."""
    fields = SIM.fields(user_data=b"\x01" * 32)
    bundle = list(fields["cabundle"])  # type: ignore[call-overload]
    middle = bytearray(bundle[2])
    middle[-1] ^= 0x01  # the last byte of its signature (DER ends with the signature bits)
    bundle[2] = bytes(middle)
    fields["cabundle"] = bundle
    return SIM.sign(cbor2.dumps(fields))


def test_a_refusal_is_the_same_with_the_caches_empty_or_full() -> None:
    good = SIM.document(user_data=b"\x01" * 32)
    bad = _tamper_link(good)
    policy = NitroPolicy(roots=(ROOT.certificate,))
    outcomes = []
    for warm in (False, True):
        clear_link_cache()
        if warm:
            verify_document(good, policy, at_ms=NOW)  # every good link and certificate cached
        with pytest.raises(ReceiptsError) as refused:
            verify_document(bad, policy, at_ms=NOW)
        outcomes.append((type(refused.value), str(refused.value)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] in (CertificateError, AttestationFormatError)


def test_a_cached_chain_is_still_checked_for_validity_and_root() -> None:
    good = SIM.document(user_data=b"\x01" * 32)
    policy = NitroPolicy(roots=(ROOT.certificate,))
    verify_document(good, policy, at_ms=NOW)  # links cached
    with pytest.raises(CertificateError, match="expired"):
        verify_document(good, policy, at_ms=NOW + 30 * DAY_MS)
    with pytest.raises(CertificateError, match="not a pinned root"):
        verify_document(good, NitroPolicy(roots=(OTHER_ROOT.certificate,)), at_ms=NOW)


@pytest.mark.parametrize(
    ("critical", "ok"), [(True, False), (False, True)], ids=["critical", "not_critical"]
)
def test_an_unknown_extension_is_refused_only_when_critical(critical: bool, ok: bool) -> None:
    """RFC 5280 4.2: a certificate with a critical extension the verifier does not understand
    is refused; a non-critical one is ignored."""
    key = derive_key(seeded(702))
    start = datetime.fromtimestamp((NOW - HOUR_MS) // 1000, tz=UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd leaf")]))
        .issuer_name(ROOT.certificate.subject)
        .public_key(key.public_key())
        .serial_number(9)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(hours=3))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
            critical=critical,
        )
        .sign(ROOT.key, hashes.SHA384())
    )
    fields = SIM.fields()
    fields["certificate"] = leaf.public_bytes(serialization.Encoding.DER)
    fields["cabundle"] = [ROOT.certificate.public_bytes(serialization.Encoding.DER)]
    document = CoseSign1.sign(cbor2.dumps(fields), key).to_bytes()
    policy = NitroPolicy(roots=(ROOT.certificate,))
    if ok:
        verify_document(document, policy, at_ms=NOW)
        return
    with pytest.raises(CertificateError, match=r"critical extension .*1\.3\.6\.1\.4\.1\.55555\.1"):
        verify_document(document, policy, at_ms=NOW)
