"""C2SP signed notes: the spec's Ed25519 vector, co-signing, strict parsing, and tamper evidence."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.effects import seeded
from receipts.errors import (
    LimitError,
    MalformedError,
    NoteError,
    ReceiptsError,
    SignatureError,
)
from receipts.keys import PrivateKey, PublicKey
from receipts.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    NoteSignature,
    UnverifiedNote,
    VerifierKey,
    add_signature,
    decode_base64,
    note_key_id,
    open_note,
    parse_note,
    sign_note,
)

# FACTS.md, "Test vectors": the signed-note example key, text and signature line.
FACTS_KEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FACTS_TEXT = "This is an example message.\n"
FACTS_LINE = (
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
FACTS_NOTE = (FACTS_TEXT + "\n" + FACTS_LINE).encode()

LOG = PrivateKey.generate("ed25519", random_bytes=seeded(41))
WITNESS = PrivateKey.generate("ed25519", random_bytes=seeded(42))
OTHER = PrivateKey.generate("ed25519", random_bytes=seeded(43))
LOG_NAME = "log.example/settlement"
WITNESS_NAME = "witness.example/w1"
LOG_KEY = VerifierKey.of(LOG_NAME, LOG.public_key)
WITNESS_KEY = VerifierKey.of(WITNESS_NAME, WITNESS.public_key)
TEXT = "log.example/settlement\n3\nAAAA\n"
NOTE = sign_note(TEXT, LOG_NAME, LOG)


def line(name: str, key_id: bytes, signature: bytes) -> bytes:
    return NoteSignature(name=name, key_id=key_id, signature=signature).line().encode()


# --- the spec's vector -------------------------------------------------------------------


def test_the_facts_verifier_key_parses_and_formats_back() -> None:
    key = VerifierKey.parse(FACTS_KEY)
    assert key.name == "example.com/foo"
    assert key.key_id == bytes.fromhex("530d903a")
    assert key.public_key.scheme == "ed25519"
    assert str(key) == key.format() == FACTS_KEY
    assert VerifierKey.of(key.name, key.public_key) == key


def test_the_facts_key_id_is_the_truncated_sha256_of_name_newline_type_and_key() -> None:
    key = VerifierKey.parse(FACTS_KEY)
    expected = hashlib.sha256(b"example.com/foo\n\x01" + key.public_key.raw).digest()[:4]
    assert note_key_id("example.com/foo", key.public_key) == expected == key.key_id


def test_the_facts_note_verifies_under_the_facts_key() -> None:
    opened = open_note(FACTS_NOTE, [VerifierKey.parse(FACTS_KEY)])
    assert opened.text == FACTS_TEXT
    assert opened.names == ("example.com/foo",)
    assert opened.keys == (VerifierKey.parse(FACTS_KEY),)


def test_the_facts_note_with_one_changed_character_is_refused() -> None:
    tampered = FACTS_NOTE.replace(b"example message", b"example messagE")
    with pytest.raises(SignatureError):
        open_note(tampered, [VerifierKey.parse(FACTS_KEY)])


def test_the_facts_note_parses_back_to_its_exact_bytes() -> None:
    assert parse_note(FACTS_NOTE).to_bytes() == FACTS_NOTE


# --- signing, co-signing, round trips ------------------------------------------------------


def test_sign_then_open_returns_the_text_and_the_signer() -> None:
    opened = open_note(NOTE, [LOG_KEY])
    assert opened.text == TEXT
    assert opened.names == (LOG_NAME,)
    assert NOTE.startswith(TEXT.encode() + b"\n\xe2\x80\x94 " + LOG_NAME.encode() + b" ")


def test_the_signature_is_ed25519_over_the_exact_text_bytes() -> None:
    (sig,) = parse_note(NOTE).signatures
    assert sig.key_id == LOG_KEY.key_id
    LOG.public_key.verify(sig.signature, TEXT.encode())


def test_a_cosigned_note_opens_under_either_key_and_under_both() -> None:
    cosigned = add_signature(NOTE, WITNESS_NAME, WITNESS)
    assert cosigned.startswith(NOTE)
    assert open_note(cosigned, [LOG_KEY]).names == (LOG_NAME,)
    assert open_note(cosigned, [WITNESS_KEY]).names == (WITNESS_NAME,)
    both = open_note(cosigned, [WITNESS_KEY, LOG_KEY])
    assert both.keys == (LOG_KEY, WITNESS_KEY)


def test_cosigning_twice_with_one_key_is_refused() -> None:
    with pytest.raises(NoteError):
        add_signature(NOTE, LOG_NAME, LOG)


def test_a_rotated_key_under_one_name_counts_once_by_name() -> None:
    rotated = VerifierKey.of(LOG_NAME, OTHER.public_key)
    note = add_signature(NOTE, LOG_NAME, OTHER)
    opened = open_note(note, [LOG_KEY, rotated])
    assert opened.keys == (LOG_KEY, rotated)
    assert opened.names == (LOG_NAME,)


def test_text_may_hold_blank_lines_and_unicode() -> None:
    text = "Ognuno sta solo\n\ned \u00e8 subito sera.\n\n"
    opened = open_note(sign_note(text, LOG_NAME, LOG), [LOG_KEY])
    assert opened.text == text


def test_unknown_keys_are_ignored_even_sharing_a_name_or_an_id() -> None:
    stranger = line("stranger.example", b"\x00\x01\x02\x03", b"\x00" * 64)
    same_name = line(LOG_NAME, bytes(4), b"\x00" * 64)
    same_id = line("log.example/other", LOG_KEY.key_id, b"\x00" * 64)
    note = NOTE + stranger + same_name + same_id
    assert open_note(note, [LOG_KEY]).names == (LOG_NAME,)


def test_a_note_signed_only_by_unknown_keys_is_refused() -> None:
    with pytest.raises(SignatureError):
        open_note(NOTE, [WITNESS_KEY])
    with pytest.raises(SignatureError):
        open_note(NOTE, [])


def test_an_invalid_signature_by_a_known_key_rejects_the_note_even_beside_a_valid_one() -> None:
    forged = line(WITNESS_NAME, WITNESS_KEY.key_id, OTHER.sign(TEXT.encode()))
    with pytest.raises(SignatureError):
        open_note(NOTE + forged, [LOG_KEY, WITNESS_KEY])
    assert open_note(NOTE + forged, [LOG_KEY]).names == (LOG_NAME,)


def test_two_signature_lines_by_one_known_key_are_refused() -> None:
    (sig,) = parse_note(NOTE).signatures
    with pytest.raises(NoteError):
        open_note(NOTE + sig.line().encode(), [LOG_KEY])


def test_colliding_verifier_keys_are_refused_as_ambiguous() -> None:
    forged = VerifierKey.of(LOG_NAME, OTHER.public_key)
    object.__setattr__(forged, "key_id", LOG_KEY.key_id)  # as if name and id collided
    with pytest.raises(MalformedError) as info:
        open_note(NOTE, [LOG_KEY, forged])
    assert type(info.value) is MalformedError
    assert open_note(NOTE, [LOG_KEY, LOG_KEY]).names == (LOG_NAME,)


# --- hostile notes -----------------------------------------------------------------------

SIG = parse_note(NOTE).signatures[0]
SIG_B64 = base64.b64encode(SIG.key_id + SIG.signature).decode()
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# 68 bytes end in "X=": X carries four data bits and two padding bits, which must be zero.
NON_CANONICAL = SIG_B64[:-2] + ALPHABET[ALPHABET.index(SIG_B64[-2]) ^ 1] + "="
BY_OTHER = TEXT.encode() + b"\n" + line(LOG_NAME, LOG_KEY.key_id, OTHER.sign(TEXT.encode()))


HOSTILE_NOTES = [
    pytest.param(b"", NoteError, id="empty"),
    pytest.param(NOTE[:-1], NoteError, id="truncated_last_newline"),
    pytest.param(NOTE[:-10], NoteError, id="truncated_in_signature"),
    pytest.param(TEXT.encode(), NoteError, id="missing_signature_no_blank_line"),
    pytest.param(TEXT.encode() + b"\n", NoteError, id="missing_signature_blank_line"),
    pytest.param(NOTE + b"\n", NoteError, id="extra_blank_line_at_end"),
    pytest.param(NOTE.replace(b"\n", b"\r\n"), NoteError, id="crlf"),
    pytest.param(NOTE.replace(b"3\n", b"3\t\n"), NoteError, id="tab_in_text"),
    pytest.param(NOTE.replace(b"3\n", b"3\x00\n"), NoteError, id="nul_in_text"),
    pytest.param(NOTE.replace(b"3\n", b"3\xff\n"), NoteError, id="invalid_utf8"),
    pytest.param(NOTE.replace(b"3\n", b"3\xed\xa0\x80\n"), NoteError, id="utf8_surrogate"),
    pytest.param(NOTE.replace("\u2014".encode(), b"-"), NoteError, id="hyphen_not_em_dash"),
    pytest.param(
        NOTE.replace("\u2014 ".encode(), "\u2014".encode()), NoteError, id="no_dash_space"
    ),
    pytest.param(NOTE.replace(b"settlement ", b"settlement"), NoteError, id="no_name_space"),
    pytest.param(NOTE.replace(b"settlement ", b"settlement  "), NoteError, id="two_spaces"),
    pytest.param(NOTE.replace(b"/settlement ", b"+settlement "), NoteError, id="plus_in_name"),
    pytest.param(NOTE.replace(SIG_B64.encode(), SIG_B64[:-1].encode()), NoteError, id="no_pad"),
    pytest.param(
        NOTE.replace(SIG_B64.encode(), NON_CANONICAL.encode()), NoteError, id="noncanonical_b64"
    ),
    pytest.param(
        NOTE.replace(SIG_B64.encode(), b"AAAAAA=="), NoteError, id="signature_of_four_bytes"
    ),
    pytest.param(NOTE + b"\xe2\x80\x94 x \n", NoteError, id="empty_signature"),
    pytest.param(NOTE.replace(b"3\n", b"4\n", 1), SignatureError, id="tampered_text"),
    pytest.param(BY_OTHER, SignatureError, id="signature_by_other_key"),
    pytest.param(
        NOTE.replace(SIG_B64.encode(), base64.b64encode(SIG.key_id + SIG.signature[:-1])),
        SignatureError,
        id="short_signature",
    ),
    pytest.param(
        TEXT.encode() + b"\n" + line(WITNESS_NAME, bytes(4), b"x") + b"\n" + NOTE[len(TEXT) + 1 :],
        SignatureError,
        id="blank_line_between_signatures",
    ),
    pytest.param(
        ("x" * MAX_NOTE_BYTES + "\n").encode() + NOTE[len(TEXT) :], LimitError, id="over_1_MiB"
    ),
    pytest.param(
        TEXT.encode() + b"\n" + line(WITNESS_NAME, bytes(4), b"x") * (MAX_SIGNATURES + 1),
        LimitError,
        id="101_signatures",
    ),
]


@pytest.mark.parametrize(("note", "error"), HOSTILE_NOTES)
def test_hostile_notes_raise_their_specific_error(note: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        open_note(note, [LOG_KEY, WITNESS_KEY])
    assert type(info.value) is error


def test_the_non_canonical_case_decodes_to_the_same_bytes_under_a_lax_decoder() -> None:
    assert NON_CANONICAL != SIG_B64
    assert base64.b64decode(NON_CANONICAL) == base64.b64decode(SIG_B64)


def test_one_hundred_signatures_are_accepted() -> None:
    note = NOTE + line(WITNESS_NAME, bytes(4), b"x") * (MAX_SIGNATURES - 1)
    assert open_note(note, [LOG_KEY]).names == (LOG_NAME,)
    with pytest.raises(LimitError):
        add_signature(note, WITNESS_NAME, WITNESS)


# --- what cannot be signed, and keys that cannot be verifier keys ----------------------------

BAD_NAMES = ["", "with space", "with+plus", "nbsp\u00a0name", "em\u2003space", "tab\tname", "nl\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_key_names_are_refused_everywhere(name: str) -> None:
    with pytest.raises(NoteError):
        sign_note(TEXT, name, LOG)
    with pytest.raises(NoteError):
        VerifierKey.of(name, LOG.public_key)
    with pytest.raises(NoteError):
        add_signature(NOTE, name, WITNESS)


@pytest.mark.parametrize(
    "text",
    ["", "no final newline", "tab\there\n", "cr\r\n", "nul\x00\n", "surrogate\ud800\n"],
)
def test_texts_that_cannot_be_note_texts_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, LOG_NAME, LOG)


def test_a_secp256k1_signer_is_refused() -> None:
    k1 = PrivateKey.generate("secp256k1", random_bytes=seeded(44))
    with pytest.raises(NoteError):
        sign_note(TEXT, LOG_NAME, k1)
    with pytest.raises(NoteError):
        VerifierKey.of(LOG_NAME, k1.public_key)


def test_a_verifier_key_with_an_id_not_derived_from_it_is_refused() -> None:
    with pytest.raises(NoteError):
        VerifierKey(name=LOG_NAME, key_id=bytes(4), public_key=LOG.public_key)
    with pytest.raises(NoteError):
        VerifierKey(name=LOG_NAME, key_id=WITNESS_KEY.key_id, public_key=WITNESS.public_key)


FACTS_B64 = FACTS_KEY.rsplit("+", 1)[1]
SMALL_ORDER = base64.b64encode(b"\x01" + bytes(32)).decode()

HOSTILE_VERIFIER_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("example.com/foo+530d903a", id="two_parts"),
    pytest.param(FACTS_KEY + "+x", id="four_parts"),
    pytest.param(FACTS_KEY.replace("530d903a", "530D903A"), id="uppercase_hex"),
    pytest.param(FACTS_KEY.replace("530d903a", "530d903"), id="short_hex"),
    pytest.param(FACTS_KEY.replace("530d903a", "530d903b"), id="wrong_key_id"),
    pytest.param(FACTS_KEY.replace("foo", "bar"), id="other_name"),
    pytest.param(FACTS_KEY.replace("example.com", "example com"), id="space_in_name"),
    pytest.param(FACTS_KEY.replace("+Aek", "+Aik"), id="signature_type_2"),
    pytest.param(FACTS_KEY[:-4], id="key_too_short"),
    pytest.param(FACTS_KEY[:-1], id="truncated_b64"),
    pytest.param(FACTS_KEY + "=", id="stray_padding"),
    pytest.param(FACTS_KEY + "+", id="plus_after_key"),
    pytest.param(f"example.com/foo+00000000+{SMALL_ORDER}", id="small_order_key"),
]


@pytest.mark.parametrize("text", HOSTILE_VERIFIER_KEYS)
def test_hostile_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(NoteError) as info:
        VerifierKey.parse(text)
    assert type(info.value) is NoteError


@pytest.mark.parametrize(
    ("text", "ok"),
    [("AAAA", True), ("", True), ("AA==", True), ("AB==", False), ("AA=", False), ("A A=", False)],
)
def test_decode_base64_takes_only_canonical_standard_base64(text: str, ok: bool) -> None:
    if ok:
        assert base64.b64encode(decode_base64(text, "x")).decode() == text
    else:
        with pytest.raises(NoteError):
            decode_base64(text, "x")


def test_an_unverified_note_needs_a_signature() -> None:
    with pytest.raises(NoteError):
        UnverifiedNote(text=TEXT, signatures=())


# --- properties --------------------------------------------------------------------------

note_texts = st.lists(
    st.text(st.characters(min_codepoint=0x20, codec="utf-8"), max_size=40),
    min_size=1,
    max_size=5,
).map(lambda lines: "".join(f"{x}\n" for x in lines))


@settings(max_examples=100, deadline=None)
@given(note_texts)
def test_any_valid_text_round_trips_through_sign_and_open(text: str) -> None:
    note = sign_note(text, LOG_NAME, LOG)
    assert parse_note(note).to_bytes() == note
    assert open_note(note, [LOG_KEY]).text == text


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_of_a_signed_note_is_rejected(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(NOTE) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != NOTE[position]), label="byte")
    tampered = NOTE[:position] + bytes([new]) + NOTE[position + 1 :]
    with pytest.raises(ReceiptsError):
        open_note(tampered, [LOG_KEY])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_truncation_of_a_signed_note_is_rejected(data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(NOTE) - 1), label="cut")
    with pytest.raises(ReceiptsError):
        open_note(NOTE[:cut], [LOG_KEY])


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from([LOG_NAME, "a", "\u00e9t\u00e9/log"]))
def test_verifier_keys_round_trip_through_their_string(seed: bytes, name: str) -> None:
    # Many keys, so that some base64 encodings hold '+' and '/'.
    public = PrivateKey.generate("ed25519", random_bytes=seeded(seed)).public_key
    verifier = VerifierKey.of(name, public)
    assert VerifierKey.parse(str(verifier)) == verifier
    assert isinstance(verifier.public_key, PublicKey)
