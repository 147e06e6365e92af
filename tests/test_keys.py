"""Keys: signatures that hold only for their key and message, one encoding each, safe files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from receipts.digests import record_digest
from receipts.effects import seeded
from receipts.errors import KeyFileError, MalformedError, SignatureError
from receipts.keys import SCHEMES, PrivateKey, PublicKey

SETTINGS = settings(max_examples=40, deadline=None)
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order


@pytest.fixture(scope="module", params=SCHEMES)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param, random_bytes=seeded(1))


@pytest.fixture(scope="module", params=SCHEMES)
def other(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param, random_bytes=seeded(2))


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def split(sig: bytes) -> tuple[int, int]:
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def join(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# --- sign and verify ---------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=200))
def test_a_signature_verifies_under_its_own_key(message: bytes) -> None:
    for scheme in SCHEMES:
        k = PrivateKey.generate(scheme, random_bytes=seeded(scheme.encode()))
        sig = k.sign(message)
        assert len(sig) == 64
        k.public_key.verify(sig, message)


def test_a_signature_by_another_key_is_rejected(key: PrivateKey, other: PrivateKey) -> None:
    sig = other.sign(b"message")
    with pytest.raises(SignatureError):
        key.public_key.verify(sig, b"message")


@SETTINGS
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_a_signature_over_other_bytes_is_rejected(message: bytes, forged: bytes) -> None:
    if message == forged:
        return
    for scheme in SCHEMES:
        k = PrivateKey.generate(scheme, random_bytes=seeded(7))
        with pytest.raises(SignatureError):
            k.public_key.verify(k.sign(message), forged)


@pytest.mark.parametrize("position", [0, 31, 32, 63])
def test_a_signature_with_a_flipped_bit_is_rejected(key: PrivateKey, position: int) -> None:
    sig = bytearray(key.sign(b"message"))
    sig[position] ^= 0x01
    with pytest.raises(SignatureError):
        key.public_key.verify(bytes(sig), b"message")


@pytest.mark.parametrize("length", [0, 63, 65, 72])
def test_a_signature_of_the_wrong_length_is_rejected(key: PrivateKey, length: int) -> None:
    sig = (key.sign(b"message") * 2)[:length]
    with pytest.raises(SignatureError):
        key.public_key.verify(sig, b"message")


@SETTINGS
@given(st.binary(max_size=100))
def test_secp256k1_signatures_are_deterministic_and_low_s(message: bytes) -> None:
    k = PrivateKey.generate("secp256k1", random_bytes=seeded(3))
    sig = k.sign(message)
    assert k.sign(message) == sig
    r, s = split(sig)
    assert 0 < r < N
    assert 0 < s <= N // 2


@SETTINGS
@given(st.binary(max_size=100))
def test_the_high_s_twin_of_a_secp256k1_signature_is_rejected(message: bytes) -> None:
    k = PrivateKey.generate("secp256k1", random_bytes=seeded(4))
    r, s = split(k.sign(message))
    twin = join(r, N - s)
    # The twin is a mathematically valid ECDSA signature: only the low-s rule refuses it.
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), k.public_key.raw)
    pub.verify(encode_dss_signature(r, N - s), message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(SignatureError):
        k.public_key.verify(twin, message)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (N, 1), (1, N), (2**256 - 1, 1)],
    ids=["r_zero", "s_zero", "r_n", "s_n", "r_max"],
)
def test_secp256k1_scalars_out_of_range_are_rejected(r: int, s: int) -> None:
    k = PrivateKey.generate("secp256k1", random_bytes=seeded(5))
    with pytest.raises(SignatureError):
        k.public_key.verify(join(r, s), b"message")


def test_ed25519_signatures_match_the_rfc8032_test_vector() -> None:
    # RFC 8032 section 7.1, TEST 1 (empty message).
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    k = PrivateKey.generate("ed25519", random_bytes=lambda n: secret[:n])
    assert k.public_key.raw.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert k.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_small_order_ed25519_keys_cannot_vouch_for_everything() -> None:
    identity = b"\x01" + bytes(31)
    try:
        key = PublicKey(scheme="ed25519", raw=identity)
    except MalformedError:
        return
    universal = identity + bytes(32)
    verified = []
    for message in (b"a", b"b"):
        try:
            key.verify(universal, message)
            verified.append(message)
        except SignatureError:
            pass
    assert verified == []


# --- public keys -------------------------------------------------------------------------


def test_key_id_is_the_domain_separated_digest_of_scheme_and_raw_key(key: PrivateKey) -> None:
    pub = key.public_key
    canonical = (
        b"\x82\xaapublic_key\xc4"
        + bytes([len(pub.raw)])
        + pub.raw
        + b"\xa6scheme"
        + bytes([0xA0 | len(pub.scheme)])
        + pub.scheme.encode()
    )
    expected = hashlib.sha256(b"inference-receipts/v1/key-id\x00" + canonical).digest()
    assert pub.key_id == expected
    assert PublicKey(scheme=pub.scheme, raw=pub.raw).key_id == expected


def test_key_ids_differ_between_keys_and_schemes() -> None:
    ids = {
        PrivateKey.generate(scheme, random_bytes=seeded(seed)).public_key.key_id
        for scheme in SCHEMES
        for seed in range(3)
    }
    assert len(ids) == 6
    ed = PrivateKey.generate("ed25519", random_bytes=seeded(0)).public_key
    # The scheme is hashed in: the same digest input with another scheme name is another id.
    swapped = record_digest("key-id", {"scheme": "secp256k1", "public_key": ed.raw}).value
    assert swapped != ed.key_id


@pytest.mark.parametrize(
    ("scheme", "raw"),
    [
        pytest.param("rsa", bytes(32), id="unknown_scheme"),
        pytest.param("ed25519", bytes(31), id="ed25519_short"),
        pytest.param("ed25519", bytes(33), id="ed25519_long"),
        pytest.param("secp256k1", bytes(32), id="secp256k1_short"),
        pytest.param("secp256k1", b"\x04" + bytes(64), id="secp256k1_uncompressed"),
        pytest.param("secp256k1", b"\x02" + bytes(32), id="secp256k1_not_on_curve"),
        pytest.param("secp256k1", b"\x05" + bytes(32), id="secp256k1_bad_prefix"),
    ],
)
def test_invalid_public_keys_cannot_be_constructed(scheme: str, raw: bytes) -> None:
    with pytest.raises(MalformedError):
        PublicKey(scheme=scheme, raw=raw)


def test_public_keys_round_trip_through_pem(key: PrivateKey) -> None:
    pub = key.public_key
    assert PublicKey.from_pem(pub.to_pem()) == pub
    assert PrivateKey.from_pem(key.to_pem()).public_key == pub


# --- generation --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generation_from_a_seeded_source_is_reproducible(scheme: str) -> None:
    a = PrivateKey.generate(scheme, random_bytes=seeded(42))
    b = PrivateKey.generate(scheme, random_bytes=seeded(42))
    c = PrivateKey.generate(scheme, random_bytes=seeded(43))
    assert a.public_key == b.public_key
    assert a.to_pem() == b.to_pem()
    assert c.public_key != a.public_key
    assert a.sign(b"m") == b.sign(b"m")


def test_generation_by_default_uses_fresh_randomness() -> None:
    assert PrivateKey.generate().public_key != PrivateKey.generate().public_key


def test_generation_refuses_an_unknown_scheme() -> None:
    with pytest.raises(MalformedError):
        PrivateKey.generate("p256", random_bytes=seeded(1))


# --- key files ---------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_022")
def test_save_writes_an_owner_only_key_and_a_public_file(tmp_path: Path, key: PrivateKey) -> None:
    target = tmp_path / "provider.pem"
    public = key.save(target)
    assert public == tmp_path / "provider.pem.pub"
    assert target.stat().st_mode & 0o777 == 0o600
    assert public.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["provider.pem", "provider.pem.pub"]
    assert PrivateKey.load(target).public_key == key.public_key
    assert PublicKey.load(public) == key.public_key


def test_save_mode_does_not_depend_on_the_umask(tmp_path: Path, key: PrivateKey) -> None:
    old = os.umask(0)
    try:
        key.save(tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("existing", ["k.pem", "k.pem.pub"])
def test_save_refuses_to_overwrite_and_leaves_no_temp_files(
    tmp_path: Path, key: PrivateKey, existing: str
) -> None:
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(KeyFileError):
        key.save(tmp_path / "k.pem")
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_bytes() == b"precious"


def test_save_into_a_missing_folder_is_a_key_file_error(tmp_path: Path, key: PrivateKey) -> None:
    with pytest.raises(KeyFileError):
        key.save(tmp_path / "missing" / "k.pem")
    assert list(tmp_path.iterdir()) == []


def _pem_private(private: Any) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _hostile_private_files() -> list[object]:
    p256 = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ed = ed25519.Ed25519PrivateKey.generate()
    encrypted = ed.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    public_pem = ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="garbage"),
        pytest.param(os.urandom(64), id="random_bytes"),
        pytest.param(public_pem, id="public_key_as_private"),
        pytest.param(_pem_private(p256), id="p256"),
        pytest.param(_pem_private(rsa_key), id="rsa"),
        pytest.param(encrypted, id="encrypted"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="bad_der"
        ),
        # A valid key that cryptography would load, padded past the 64 KiB key-file limit.
        pytest.param(_pem_private(ed) + b"\n" * (64 * 1024), id="valid_key_over_size_limit"),
    ]


@pytest.mark.parametrize("content", _hostile_private_files())
def test_loading_anything_but_a_supported_private_key_is_a_key_file_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        PrivateKey.load(path)


def test_loading_a_p256_public_key_is_a_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "k.pem.pub"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError):
        PublicKey.load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(KeyFileError):
        PublicKey.load(path)


@pytest.mark.parametrize("target", ["missing.pem", "."])
def test_loading_a_missing_file_or_a_folder_is_a_key_file_error(
    tmp_path: Path, target: str
) -> None:
    with pytest.raises(KeyFileError):
        PrivateKey.load(tmp_path / target)
    with pytest.raises(KeyFileError):
        PublicKey.load(tmp_path / target)
