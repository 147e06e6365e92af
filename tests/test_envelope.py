"""The signed envelope: DSSE PAE against an external vector, strict parsing, and tamper evidence."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts import codec
from receipts.effects import seeded
from receipts.envelope import (
    ENVELOPE_TYPE,
    ENVELOPE_VERSION,
    MAX_ENVELOPE_BYTES,
    RECEIPT_PAYLOAD_TYPE,
    Envelope,
    Signature,
    pae,
)
from receipts.errors import (
    LimitError,
    MalformedError,
    NonCanonicalError,
    ReceiptsError,
    SignatureError,
    UnsupportedVersionError,
)
from receipts.keys import SCHEMES, PrivateKey

PAYLOAD = codec.encode({"model": b"\x01" * 32, "outputs": [1, 2, 3], "version": 1})
KEYS = {scheme: PrivateKey.generate(scheme, random_bytes=seeded(11)) for scheme in SCHEMES}
OTHER = PrivateKey.generate("ed25519", random_bytes=seeded(12))

# FACTS.md, "Test vectors": the DSSE example and its ECDSA P-256 signature.
DSSE_TYPE = "http://example.com/HelloWorld"
DSSE_BODY = b"hello world"
DSSE_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
DSSE_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
DSSE_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
DSSE_SIG = (
    "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="
)


@pytest.fixture(params=SCHEMES)
def signer(request: pytest.FixtureRequest) -> PrivateKey:
    return KEYS[request.param]


def signed(signer: PrivateKey, payload: bytes = PAYLOAD) -> Envelope:
    return Envelope.sign(RECEIPT_PAYLOAD_TYPE, payload, signer)


def wire(envelope: Envelope) -> dict[str, Any]:
    value = codec.decode(envelope.to_bytes())
    assert isinstance(value, dict)
    return value


# --- PAE ---------------------------------------------------------------------------------


def test_pae_equals_the_dsse_example_byte_for_byte() -> None:
    assert pae(DSSE_TYPE, DSSE_BODY) == DSSE_PAE


def test_the_dsse_p256_vector_verifies_over_our_pae() -> None:
    public = ec.EllipticCurvePublicNumbers(DSSE_X, DSSE_Y, ec.SECP256R1()).public_key()
    raw = base64.b64decode(DSSE_SIG)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, pae(DSSE_TYPE, DSSE_BODY), ec.ECDSA(hashes.SHA256()))


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("é", b"\x00 ") == b"DSSEv1 2 \xc3\xa9 2 \x00 "
    assert pae("", b"") == b"DSSEv1 0  0 "


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=12), st.binary(max_size=12), st.text(max_size=12), st.binary(max_size=12))
def test_pae_is_injective(t1: str, b1: bytes, t2: str, b2: bytes) -> None:
    if (t1, b1) != (t2, b2):
        assert pae(t1, b1) != pae(t2, b2)


# --- round trip --------------------------------------------------------------------------


def test_sign_to_bytes_from_bytes_round_trips(signer: PrivateKey) -> None:
    env = signed(signer)
    data = env.to_bytes()
    back = Envelope.from_bytes(data)
    assert back == env
    assert back.to_bytes() == data
    assert back.payload == PAYLOAD
    assert back.verify_signature(None) == signer.public_key
    assert back.verify_signature([OTHER.public_key, signer.public_key]) == signer.public_key


def test_the_wire_form_is_the_documented_map(signer: PrivateKey) -> None:
    env = signed(signer)
    value = wire(env)
    assert value == {
        "payload": PAYLOAD,
        "payload_type": RECEIPT_PAYLOAD_TYPE,
        "signatures": [
            {
                "key_id": signer.public_key.key_id,
                "public_key": signer.public_key.raw,
                "scheme": signer.public_key.scheme,
                "sig": env.signature.sig,
            }
        ],
        "type": ENVELOPE_TYPE,
        "version": ENVELOPE_VERSION,
    }
    signer.public_key.verify(env.signature.sig, pae(RECEIPT_PAYLOAD_TYPE, PAYLOAD))


# --- hostile envelopes -------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(key: str, value: object) -> Edit:
    return lambda w: w.__setitem__(key, value)


def _set_sig(key: str, value: object) -> Edit:
    return lambda w: w["signatures"][0].__setitem__(key, value)


def _drop(key: str) -> Edit:
    return lambda w: w.pop(key)


def _drop_sig(key: str) -> Edit:
    return lambda w: w["signatures"][0].pop(key)


HOSTILE_EDITS: list[Any] = [
    pytest.param(_set("type", "receipt"), UnsupportedVersionError, id="other_type"),
    pytest.param(_set("version", 2), UnsupportedVersionError, id="version_2"),
    pytest.param(_set("version", 0), UnsupportedVersionError, id="version_0"),
    pytest.param(
        _set("payload_type", "application/json"), UnsupportedVersionError, id="payload_type"
    ),
    pytest.param(_set("signatures", []), MalformedError, id="zero_signatures"),
    pytest.param(
        lambda w: w["signatures"].append(w["signatures"][0]), MalformedError, id="two_sigs"
    ),
    pytest.param(_set_sig("key_id", b"\x00" * 32), MalformedError, id="key_id_not_derived"),
    pytest.param(_set_sig("key_id", b"\x00" * 31), MalformedError, id="key_id_short"),
    pytest.param(_set_sig("key_id", OTHER.public_key.key_id), MalformedError, id="key_id_of_other"),
    pytest.param(_set_sig("scheme", "rsa"), MalformedError, id="unknown_scheme"),
    pytest.param(_set_sig("public_key", b"\x02" + bytes(32)), MalformedError, id="bad_public_key"),
    pytest.param(_set_sig("sig", "text"), MalformedError, id="sig_as_text"),
    pytest.param(_set_sig("sig", b"s" * 129), MalformedError, id="sig_too_long"),
    pytest.param(_set_sig("extra", 1), MalformedError, id="unknown_signature_field"),
    pytest.param(_drop_sig("sig"), MalformedError, id="missing_sig"),
    pytest.param(_set("extra", 1), MalformedError, id="unknown_envelope_field"),
    pytest.param(_drop("payload"), MalformedError, id="missing_payload"),
    pytest.param(_drop("version"), MalformedError, id="missing_version"),
    pytest.param(_set("payload", "text"), MalformedError, id="payload_as_text"),
    pytest.param(_set("version", True), MalformedError, id="version_as_bool"),
    pytest.param(_set("version", -1), MalformedError, id="negative_version"),
    pytest.param(_set("type", b"envelope"), MalformedError, id="type_as_bytes"),
    pytest.param(_set("signatures", {"0": 1}), MalformedError, id="signatures_as_map"),
    pytest.param(_set("signatures", [1]), MalformedError, id="signature_not_a_map"),
    pytest.param(_set("signatures", [{}] * 17), MalformedError, id="seventeen_signatures"),
]


@pytest.mark.parametrize(("edit", "error"), HOSTILE_EDITS)
def test_hostile_envelopes_raise_their_specific_error(
    signer: PrivateKey, edit: Edit, error: type[Exception]
) -> None:
    value = wire(signed(signer))
    edit(value)
    with pytest.raises(error) as info:
        Envelope.from_bytes(codec.encode(value))
    assert type(info.value) is error


def test_envelope_bytes_that_are_not_canonical_are_refused(signer: PrivateKey) -> None:
    value = wire(signed(signer))
    reordered = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
    assert reordered != codec.encode(value)
    assert msgpack.unpackb(reordered) == value
    with pytest.raises(NonCanonicalError):
        Envelope.from_bytes(reordered)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", MalformedError, id="empty"),
        pytest.param(codec.encode([1]), MalformedError, id="array"),
        pytest.param(codec.encode({}), MalformedError, id="empty_map"),
        pytest.param(codec.encode(b"x" * MAX_ENVELOPE_BYTES), LimitError, id="over_1_MiB"),
    ],
)
def test_bytes_that_are_no_envelope_are_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        Envelope.from_bytes(data)
    assert type(info.value) is error


def test_signature_entries_check_key_id_at_construction(signer: PrivateKey) -> None:
    env = signed(signer)
    with pytest.raises(MalformedError):
        Signature(key_id=bytes(32), public_key=signer.public_key, sig=env.signature.sig)


# --- verify_signature --------------------------------------------------------------------


def test_a_trusted_list_without_the_signing_key_is_refused(signer: PrivateKey) -> None:
    env = signed(signer)
    for trusted in ([OTHER.public_key], []):
        with pytest.raises(SignatureError):
            env.verify_signature(trusted)


def test_a_signature_over_another_payload_is_refused(signer: PrivateKey) -> None:
    env = signed(signer)
    forged = Envelope(
        payload_type=env.payload_type, payload=PAYLOAD + b"\x00", signature=env.signature
    )
    reparsed = Envelope.from_bytes(forged.to_bytes())
    for candidate in (forged, reparsed):
        with pytest.raises(SignatureError):
            candidate.verify_signature(None)
        with pytest.raises(SignatureError):
            candidate.verify_signature([signer.public_key])


def test_a_signature_under_another_payload_type_is_refused(signer: PrivateKey) -> None:
    other_type = Envelope.sign("application/other", PAYLOAD, signer)
    moved = Envelope(
        payload_type=RECEIPT_PAYLOAD_TYPE, payload=PAYLOAD, signature=other_type.signature
    )
    with pytest.raises(SignatureError):
        Envelope.from_bytes(moved.to_bytes()).verify_signature(None)


def test_a_signature_swapped_in_from_another_key_is_refused(signer: PrivateKey) -> None:
    env = signed(signer)
    value = wire(env)
    value["signatures"][0]["sig"] = OTHER.sign(pae(RECEIPT_PAYLOAD_TYPE, PAYLOAD))
    with pytest.raises(SignatureError):
        Envelope.from_bytes(codec.encode(value)).verify_signature(None)


# --- tamper evidence ---------------------------------------------------------------------

SIGNED_BYTES = {scheme: signed(key).to_bytes() for scheme, key in KEYS.items()}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SCHEMES), st.data())
def test_any_single_byte_change_is_rejected(scheme: str, data: st.DataObject) -> None:
    original = SIGNED_BYTES[scheme]
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]), label="byte")
    tampered = original[:position] + bytes([new]) + original[position + 1 :]
    with pytest.raises(ReceiptsError):
        Envelope.from_bytes(tampered).verify_signature(None)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SCHEMES), st.data())
def test_any_truncation_or_extension_is_rejected(scheme: str, data: st.DataObject) -> None:
    original = SIGNED_BYTES[scheme]
    cut = data.draw(st.integers(0, len(original) - 1), label="cut")
    extra = data.draw(st.binary(min_size=1, max_size=8), label="extra")
    for tampered in (original[:cut], original + extra):
        with pytest.raises(ReceiptsError):
            Envelope.from_bytes(tampered).verify_signature(None)
