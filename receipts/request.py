"""The payer's signed request (voucher): what a payer authorizes before a provider runs (formats).

First in the flow: the payer signs a request naming the models it accepts, the digest of its
inputs, the most it will pay in one asset, the provider (or any), a nonce and an expiry. The
provider checks a request before running and refuses a run the request does not cover; the
receipt then carries the request's id, and settlement pays only a receipt ``check_binding``
accepts. Wire form (docs/receipt-v1.md, section 13): a canonical map ``{"type": "request",
"version": 1, ...}`` signed in an envelope of type ``REQUEST_PAYLOAD_TYPE``.

    signed = make_request(payer, models=[m], inputs=d, max_amount=500, asset="credit",
                          provider=None, expires_at=now + 60_000, random_bytes=system_random)
    check_binding(read_request(signed.to_bytes()), receipt)    # BindingError, ExpiredError

The request id is the digest of the exact signed payload bytes (``request_id``), so two requests
with the same terms and different nonces are different requests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from receipts import codec
from receipts.codec import INT_MAX, MapReader
from receipts.digests import Digest, digest_of
from receipts.effects import RandomBytes
from receipts.envelope import Envelope
from receipts.errors import (
    BindingError,
    ExpiredError,
    MalformedError,
    SignatureError,
    UnsupportedVersionError,
)
from receipts.keys import PublicKey, Signer
from receipts.meter import Price
from receipts.receipt import Receipt

REQUEST_PAYLOAD_TYPE = "application/vnd.inference-receipts.request.v1+msgpack"
REQUEST_TYPE = "request"
REQUEST_VERSION = 1
MAX_MODELS = 64
NONCE_BYTES = 16
_MAX_MS = 2**63 - 1


def request_id(payload: bytes) -> Digest:
    """The request's identifier: the digest of its exact signed payload bytes."""
    return digest_of("request", payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What a payer authorizes: one run of an allowed model on these inputs, up to an amount."""

    payer: bytes
    models: tuple[Digest, ...]
    inputs: Digest
    max_amount: int
    asset: str
    provider: bytes | None
    nonce: bytes
    expires_at: int
    ledger: str | None = None  # the settlement ledger (its log origin) that may hold it

    def __post_init__(self) -> None:
        if self.ledger is not None and not 1 <= len(self.ledger.encode()) <= 256:
            # Bytes, as ``decode`` reads it: a longer name would sign a request nobody can read.
            raise MalformedError("a request's ledger is a log origin of 1..256 UTF-8 bytes")
        if len(self.payer) != 32:
            raise MalformedError("payer key id must be 32 bytes")
        if not isinstance(self.models, tuple) or not 1 <= len(self.models) <= MAX_MODELS:
            raise MalformedError(f"a request allows a tuple of 1..{MAX_MODELS} model digests")
        if not all(isinstance(m, Digest) for m in self.models):
            raise MalformedError("allowed models must be digests")
        if any(a.value >= b.value for a, b in itertools.pairwise(self.models)):
            raise MalformedError("allowed models must be unique and sorted by their bytes")
        if not isinstance(self.inputs, Digest):
            raise MalformedError("inputs must be a tensor-map digest")
        if not 0 <= self.max_amount <= INT_MAX:
            raise MalformedError("max_amount must be an integer in [0, 2^64-1]")
        Price(asset=self.asset)  # the asset follows the price's rule exactly
        if self.provider is not None and len(self.provider) != 32:
            raise MalformedError("provider key id must be 32 bytes")
        if not 16 <= len(self.nonce) <= 64:
            raise MalformedError("nonce must be 16..64 bytes")
        if not 0 <= self.expires_at <= _MAX_MS:
            raise MalformedError("expires_at must be milliseconds since the epoch")

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "type": REQUEST_TYPE,
            "version": REQUEST_VERSION,
            "payer": self.payer,
            "models": [m.value for m in self.models],
            "inputs": self.inputs.value,
            "max_amount": self.max_amount,
            "asset": self.asset,
            "nonce": self.nonce,
            "expires_at": self.expires_at,
        }
        if self.provider is not None:  # absent means any provider
            wire["provider"] = self.provider
        if self.ledger is not None:  # absent: no ledger may hold it
            wire["ledger"] = self.ledger
        return wire

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, payload: bytes) -> Request:
        """The signed payload as a canonical request v1; raises ``MalformedError`` and kin."""
        return cls.from_wire(codec.decode(payload))

    @classmethod
    def from_wire(cls, value: object) -> Request:
        r = MapReader(value, "request")
        kind, version = r.text("type", 64), r.integer("version", 0, INT_MAX)
        if kind != REQUEST_TYPE:
            raise UnsupportedVersionError(f"payload is not a request (type {kind!r})")
        if version != REQUEST_VERSION:
            raise UnsupportedVersionError(f"request version {version} is not supported (only 1)")
        models = []
        for item in r.array("models", MAX_MODELS):
            if not isinstance(item, bytes):
                raise MalformedError("request.models: expected an array of 32-byte digests")
            models.append(Digest(item))
        request = cls(
            payer=r.binary("payer", 32),
            models=tuple(models),
            inputs=Digest(r.binary("inputs", 32)),
            max_amount=r.integer("max_amount"),
            asset=r.text("asset", 64),
            provider=r.binary("provider", 32) if r.has("provider") else None,
            nonce=r.binary("nonce", max_len=64),
            expires_at=r.integer("expires_at", 0, _MAX_MS),
            ledger=r.text("ledger", 256) if r.has("ledger") else None,
        )
        r.close()
        return request


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """A request with the envelope that carries its exact signed bytes and the payer's key."""

    envelope: Envelope
    request: Request
    key: PublicKey

    def __post_init__(self) -> None:
        if self.envelope.payload_type != REQUEST_PAYLOAD_TYPE:
            raise MalformedError(f"not a request envelope ({self.envelope.payload_type!r})")
        if self.key != self.envelope.signature.public_key:
            raise SignatureError("the request's key is not the envelope's signing key")
        if self.request.payer != self.key.key_id:
            raise SignatureError(
                f"the request names payer {self.request.payer.hex()[:16]}… but is signed by "
                f"key {self.key.key_id.hex()[:16]}…"
            )

    @property
    def id(self) -> Digest:
        return request_id(self.envelope.payload)

    def to_bytes(self) -> bytes:
        return self.envelope.to_bytes()


def make_request(
    signer: Signer,
    *,
    models: Iterable[Digest],
    inputs: Digest,
    max_amount: int,
    asset: str,
    provider: bytes | None,
    expires_at: int,
    random_bytes: RandomBytes,
    ledger: str | None = None,
) -> SignedRequest:
    """Sign a request as ``signer`` (the payer) with a fresh nonce; ``models`` in any order."""
    request = Request(
        payer=signer.public_key.key_id,
        models=tuple(sorted(set(models), key=lambda d: d.value)),
        inputs=inputs,
        max_amount=max_amount,
        asset=asset,
        provider=provider,
        nonce=random_bytes(NONCE_BYTES),
        expires_at=expires_at,
        ledger=ledger,
    )
    envelope = Envelope.sign(REQUEST_PAYLOAD_TYPE, request.encode(), signer)
    return SignedRequest(envelope=envelope, request=request, key=signer.public_key)


def read_request(data: bytes, trusted: tuple[PublicKey, ...] | None = None) -> SignedRequest:
    """A signed request: canonical envelope of the request type, signature valid (by one of
    ``trusted`` when given) over the received bytes, payload a request v1 whose payer is the
    signing key. Raises ``MalformedError`` kin or ``SignatureError``; the expiry is not checked
    here (``check_request_open``)."""
    envelope = Envelope.from_bytes(data, payload_type=REQUEST_PAYLOAD_TYPE)
    key = envelope.signature.public_key
    if trusted is not None and key not in trusted:
        raise SignatureError(
            f"request signed by key {key.key_id.hex()[:16]}…, which is not a trusted payer key"
        )
    envelope.verify_signature(None)
    return SignedRequest(envelope=envelope, request=Request.decode(envelope.payload), key=key)


def read_stored_request(data: bytes) -> SignedRequest:
    """A request read back from storage that holds only requests ``read_request`` verified
    (the ledger's rows and log entries): decoded and checked for form as ``read_request`` does,
    its signature not verified again (``SignedRequest.envelope.verify_signature`` does that).
    Never for bytes from outside."""
    envelope = Envelope.from_bytes(data, payload_type=REQUEST_PAYLOAD_TYPE)
    key = envelope.signature.public_key
    return SignedRequest(envelope=envelope, request=Request.decode(envelope.payload), key=key)


def check_request_open(request: Request, now_ms: int) -> None:
    """Raise ``ExpiredError`` unless ``now_ms`` is before the request's expiry."""
    if now_ms >= request.expires_at:
        raise ExpiredError(f"the request expired at {request.expires_at} ms (time now {now_ms} ms)")


def check_terms(
    request: Request, *, model: Digest, inputs: Digest, provider: bytes, asset: str
) -> None:
    """Raise ``BindingError`` unless ``provider`` running ``model`` on ``inputs``, priced in
    ``asset``, is a run the request allows (what a provider checks before running)."""
    if model not in request.models:
        raise BindingError(f"model {model} is not one the request allows")
    if inputs != request.inputs:
        raise BindingError(f"inputs {inputs} are not the request's ({request.inputs})")
    if request.provider is not None and provider != request.provider:
        raise BindingError(
            f"provider {provider.hex()[:16]}… is not the one the request names "
            f"({request.provider.hex()[:16]}…)"
        )
    if asset != request.asset:
        raise BindingError(f"priced in {asset!r}, the request pays in {request.asset!r}")


def check_amount(request: Request, amount: int) -> None:
    """Raise ``BindingError`` if ``amount`` is over the request's maximum."""
    if amount > request.max_amount:
        raise BindingError(
            f"amount {amount} {request.asset} is over the request's maximum of {request.max_amount}"
        )


def check_binding(signed: SignedRequest, receipt: Receipt) -> None:
    """Raise ``BindingError`` (or ``ExpiredError``) unless ``receipt`` answers ``signed``: it
    names this request, and its model, inputs, provider, asset, amount and issue time are
    within the request's terms. The receipt's own signature is the caller's to check."""
    if receipt.request != signed.id:
        named = "no request" if receipt.request is None else f"request {receipt.request}"
        raise BindingError(f"the receipt answers {named}, not {signed.id}")
    terms = signed.request
    check_terms(
        terms,
        model=receipt.model,
        inputs=receipt.inputs.digest,
        provider=receipt.provider,
        asset=receipt.meter.price.asset,
    )
    check_amount(terms, receipt.meter.amount)
    if receipt.issued_at >= terms.expires_at:
        raise ExpiredError(
            f"the receipt was issued at {receipt.issued_at} ms, not before the request's "
            f"expiry at {terms.expires_at} ms"
        )
