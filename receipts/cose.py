"""COSE_Sign1 with ES384, as AWS Nitro Enclaves sign attestation documents (formats, TEE rung).

Sits under ``receipts.nitro``: it turns the received bytes into the four parts of a COSE_Sign1
(RFC 9052 section 4.2) and checks the ES384 signature over the Sig_structure built from the
*received* protected-header and payload bytes, never from a re-encoding of what they decode to.

    sign1 = CoseSign1.parse(data)          # AttestationFormatError (or LimitError) if malformed
    sign1.verify(leaf.public_key())        # AttestationError unless the signature holds

CBOR is read by ``decode_cbor``: cbor2 with duplicate map keys refused, a nesting limit, every
tag refused (tag 18 is accepted only as the document's first byte, where COSE puts it), and no
byte allowed after the item. Indefinite-length strings, arrays and maps are accepted: real
documents use them, and the signature covers the bytes as sent.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import NoReturn

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from receipts.errors import AttestationError, AttestationFormatError, LimitError

MAX_DOCUMENT_BYTES = 32 * 1024  # a real document is about 4.5 KiB; AWS caps its parts below this
ES384 = -35  # COSE algorithm identifier: ECDSA with SHA-384 on P-384
TAG_SIGN1 = 18
_TAG_SIGN1_BYTE = b"\xd2"  # tag 18 in its one-byte head (major type 6, value 18)
_P384_SIZE = 48
_PROTECTED = {1: ES384}  # the only protected header Nitro documents carry: alg = ES384
# Tags cbor2 would otherwise turn into Python values (dates, bignums, sets, shared refs...). A
# document carries none: each is refused, like every tag it does not know (``tag_hook``).
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261)
_BUILTIN_TAGS_HIGH = (1004, 43000, 55799)


def _refuse_tag(*_: object) -> NoReturn:
    raise ValueError("a CBOR tag where the format has none")


_REFUSE_TAGS = dict.fromkeys(_BUILTIN_TAGS + _BUILTIN_TAGS_HIGH, _refuse_tag)


def decode_cbor(data: bytes, what: str, *, max_depth: int = 4) -> object:
    """The one CBOR item ``data`` holds, read strictly (see the module docstring)."""
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        stream,
        tag_hook=_refuse_tag,
        semantic_decoders=_REFUSE_TAGS,
        max_depth=max_depth,
        allow_duplicate_keys=False,
    )
    try:
        value = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError) as e:
        raise AttestationFormatError(f"{what}: not well-formed CBOR ({_reason(e)})") from e
    extra = len(data) - stream.tell()
    if extra:
        raise AttestationFormatError(f"{what}: {extra} byte(s) after the CBOR item")
    return value


def _is_es384_header(value: object) -> bool:
    """Exactly ``{1: -35}`` with integers: Python finds ``{True: -35}``, ``{1.0: -35}`` and
    ``{1: -35.0}`` equal to it, CBOR does not (a bool or float label is another header)."""
    if not isinstance(value, dict) or value != _PROTECTED:
        return False
    return all(type(k) is int and type(v) is int for k, v in value.items())


def _reason(e: BaseException) -> str:
    """The innermost message: cbor2 wraps a refused tag in 'error decoding semantic tag N'."""
    text = str(e)
    if e.__cause__ is not None and str(e.__cause__):
        text = f"{text}: {e.__cause__}"
    return text[:200]


@dataclass(frozen=True, slots=True, kw_only=True)
class CoseSign1:
    """The four parts of a COSE_Sign1, as received: what the signature covers is these bytes."""

    protected: bytes
    payload: bytes
    signature: bytes  # raw r || s, 48 bytes each (RFC 9053 section 2.1), not DER
    tagged: bool = False

    @classmethod
    def parse(cls, data: bytes) -> CoseSign1:
        """Split ``data`` (tag 18 or untagged) into its parts; the header must be ES384 alone."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise LimitError(
                f"attestation document of {len(data)} bytes is over the {MAX_DOCUMENT_BYTES}-byte"
                " limit"
            )
        tagged = data[:1] == _TAG_SIGN1_BYTE
        body = data[1:] if tagged else data
        if body[:1] not in (b"\x84", b"\x9f"):  # an array of four, definite or indefinite
            text = body and all(32 <= b < 127 for b in body[:16])
            hint = " (it is text: decode base64 or PEM first)" if text else ""
            raise AttestationFormatError(f"not a COSE_Sign1 document{hint}")
        value = decode_cbor(body, "COSE_Sign1", max_depth=3)
        if not isinstance(value, list) or len(value) != 4:
            raise AttestationFormatError("COSE_Sign1: not an array of four items")
        protected, unprotected, payload, signature = value
        if not all(isinstance(part, bytes) for part in (protected, payload, signature)):
            raise AttestationFormatError(
                "COSE_Sign1: protected header, payload and signature must be byte strings"
            )
        if not _is_es384_header(decode_cbor(protected, "COSE_Sign1 protected header", max_depth=2)):
            raise AttestationFormatError(
                "COSE_Sign1: protected header must be exactly {1: -35} (alg ES384)"
            )
        if unprotected != {}:
            raise AttestationFormatError("COSE_Sign1: unprotected header must be an empty map")
        if len(signature) != 2 * _P384_SIZE:
            raise AttestationFormatError(
                f"COSE_Sign1: an ES384 signature is 96 bytes r || s, got {len(signature)} "
                "(a DER signature is not COSE)"
            )
        return cls(protected=protected, payload=payload, signature=signature, tagged=tagged)

    def sig_structure(self) -> bytes:
        """``["Signature1", protected, external_aad = b"", payload]`` over the received bytes."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])

    def verify(self, key: ec.EllipticCurvePublicKey) -> None:
        """Raise ``AttestationError`` unless ``signature`` is ``key``'s ES384 signature."""
        if not isinstance(key.curve, ec.SECP384R1):
            raise AttestationError(f"ES384 needs a P-384 key, the signer's is {key.curve.name}")
        r = int.from_bytes(self.signature[:_P384_SIZE], "big")
        s = int.from_bytes(self.signature[_P384_SIZE:], "big")
        try:
            key.verify(encode_dss_signature(r, s), self.sig_structure(), ec.ECDSA(hashes.SHA384()))
        except InvalidSignature as e:
            raise AttestationError(
                "the document's ES384 signature does not verify under its leaf certificate"
            ) from e

    @classmethod
    def sign(
        cls, payload: bytes, key: ec.EllipticCurvePrivateKey, *, tagged: bool = False
    ) -> CoseSign1:
        """Sign ``payload`` (deterministic ECDSA, RFC 6979): for the simulated attester."""
        protected = cbor2.dumps(_PROTECTED)
        unsigned = cls(protected=protected, payload=payload, signature=b"", tagged=tagged)
        der = key.sign(
            unsigned.sig_structure(), ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
        )
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_P384_SIZE, "big") + s.to_bytes(_P384_SIZE, "big")
        return cls(protected=protected, payload=payload, signature=raw, tagged=tagged)

    def to_bytes(self) -> bytes:
        body = cbor2.dumps([self.protected, {}, self.payload, self.signature])
        return _TAG_SIGN1_BYTE + body if self.tagged else body
