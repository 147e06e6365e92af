"""The certificate chain of an attestation document, checked link by link (crypto, TEE rung).

Sits under ``receipts.nitro`` (step N3). A Nitro document carries its leaf certificate and a
``cabundle`` that starts with the root and ends with the leaf's issuer. ``cryptography``'s X.509
path validator refuses real Nitro chains (the leaf has no Authority Key Identifier), so the chain
is walked here from the pinned root down, each certificate checked for:

* its link: ``verify_directly_issued_by`` its parent (issuer name and signature);
* its validity period, at the instant checked;
* for issuers: basicConstraints CA with any path length respected, keyUsage keyCertSign;
* for the leaf: not a CA, keyUsage (if present) with digitalSignature, a P-384 key;
* no critical extension this check does not understand (RFC 5280 section 4.2).

Links that verified are remembered (a bounded cache keyed by the exact DER bytes of both
certificates; see ``_LINKS``): documents from one enclave share their cabundle, so a verifier
checking many of them pays the four link signatures once. Everything else is checked every call.

    leaf = verify_chain(leaf_der, cabundle, roots=(aws_root,), at_ms=doc.timestamp)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from receipts.errors import AttestationFormatError, CertificateError

_UNDERSTOOD = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)


# What ``cryptography`` raises for a certificate it cannot read: not only ValueError.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
)

# Links already verified: (issuer DER, subject DER) -> None, least recently used first.
#
# Why this is sound: what ``_check_link`` establishes (the subject names the issuer as its issuer,
# and the issuer's key signed the subject's to-be-signed bytes) is a function of the two
# certificates' DER bytes alone. No clock, policy, pinned root or position in the chain enters it,
# and cryptography parses exactly those bytes. So a pair that verified once verifies again, and
# skipping the signature for that exact pair cannot accept anything the full check would refuse.
# What does depend on the call is never cached: the pinned root, every certificate's validity at
# the instant asked, critical extensions, CA constraints and path lengths at each position, and
# the leaf's rules all run on every call. The instant is deliberately not part of the key: it does
# not enter the link, and verifiers check at "now", so a key with it would never hit. Only
# successes are stored, so a refusal is recomputed every time and raises the same error. Keys are
# the full bytes, not digests (no collision assumption) and not parsed objects (no reliance on
# ``Certificate.__eq__``). The cache is bounded in entries and in the size of what it keeps.
_LINKS: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
_LINKS_LOCK = threading.Lock()
_MAX_LINKS = 64
_MAX_CACHED_DER = 4096  # a Nitro certificate is at most 1 KiB; larger ones are not remembered


def clear_link_cache() -> None:
    """Forget every verified link and parsed certificate (the next chains are checked as if for
    the first time)."""
    with _LINKS_LOCK:
        _LINKS.clear()
    _parse.cache_clear()


def load_certificate(der: bytes, what: str) -> x509.Certificate:
    """A DER certificate whose names, extensions and key parse; ``AttestationFormatError``
    otherwise."""
    try:
        return _parse(bytes(der))
    except _PARSE_ERRORS as e:
        raise AttestationFormatError(f"{what} is not a well-formed DER certificate ({e})") from e


@lru_cache(maxsize=64)
def _parse(der: bytes) -> x509.Certificate:
    """Parse once per exact DER bytes (a certificate is immutable; documents from one enclave
    share their cabundle); failures are not cached and raise again."""
    cert = x509.load_der_x509_certificate(der)
    # Parsed lazily by cryptography: a malformed name, extension or key must fail here, typed,
    # not later inside a check (or while naming the certificate in another error's message).
    _ = (cert.subject, cert.issuer, cert.extensions, cert.public_key())
    return cert


def name_of(cert: x509.Certificate) -> str:
    """The subject's common name (or the whole subject), for one-line messages."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    text = str(names[0].value) if names else cert.subject.rfc4514_string()
    return repr(text[:80])


def verify_chain(
    leaf_der: bytes, cabundle: Sequence[bytes], *, roots: Sequence[x509.Certificate], at_ms: int
) -> x509.Certificate:
    """The leaf certificate, once its chain leads to one of ``roots`` and holds at ``at_ms``.

    ``cabundle[0]`` must be byte-equal to a pinned root; ``cabundle[-1]`` issues the leaf.
    """
    if not cabundle:
        raise AttestationFormatError("the document's cabundle is empty")
    ders = [bytes(der) for der in (*cabundle, leaf_der)]  # immutable, hashable cache keys
    chain = [load_certificate(der, f"cabundle[{i}]") for i, der in enumerate(cabundle)]
    chain.append(load_certificate(leaf_der, "the leaf certificate"))
    if not any(chain[0] == root for root in roots):
        raise CertificateError(
            f"the chain starts at {name_of(chain[0])}, which is not a pinned root"
        )
    try:
        at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError) as e:
        # Past what a datetime holds (years 1-9999): no certificate is valid then.
        raise CertificateError(f"no certificate is valid at {at_ms} ms ({e})") from e
    last = len(chain) - 1
    for depth, cert in enumerate(chain):
        if depth:
            _check_link(cert, chain[depth - 1], (ders[depth - 1], ders[depth]))
        _check_critical(cert)
        if depth < last:
            # CA certificates strictly between this one and the leaf.
            _check_issuer(cert, below=last - depth - 1)
        else:
            _check_leaf(cert)
    # Validity from the leaf up: a stale document names its own (shortest-lived) leaf first.
    for cert in reversed(chain):
        _check_validity(cert, at)
    return chain[-1]


def _check_link(cert: x509.Certificate, parent: x509.Certificate, key: tuple[bytes, bytes]) -> None:
    """``cert`` is issued by ``parent``; ``key`` is (parent DER, cert DER), the bytes both were
    parsed from (see ``_LINKS`` for why a pair that verified once need not be verified again)."""
    with _LINKS_LOCK:
        if key in _LINKS:
            _LINKS.move_to_end(key)
            return
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as e:
        reason = "bad signature" if isinstance(e, InvalidSignature) else str(e)
        raise CertificateError(
            f"{name_of(cert)} is not issued by {name_of(parent)} ({reason})"
        ) from e
    if max(map(len, key)) <= _MAX_CACHED_DER:
        with _LINKS_LOCK:
            _LINKS[key] = None
            while len(_LINKS) > _MAX_LINKS:
                _LINKS.popitem(last=False)


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if at < cert.not_valid_before_utc:
        raise CertificateError(
            f"{name_of(cert)} is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} "
            f"UTC (checked at {when})"
        )
    if at > cert.not_valid_after_utc:
        raise CertificateError(
            f"{name_of(cert)} expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC "
            f"(checked at {when})"
        )


def _check_critical(cert: x509.Certificate) -> None:
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD:
            raise CertificateError(
                f"{name_of(cert)} carries a critical extension this verifier does not "
                f"understand ({ext.oid.dotted_string})"
            )


def _extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _check_issuer(cert: x509.Certificate, *, below: int) -> None:
    constraints = _extension(cert, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise CertificateError(f"{name_of(cert)} issues certificates but is not a CA")
    if constraints.path_length is not None and below > constraints.path_length:
        raise CertificateError(
            f"{name_of(cert)} allows {constraints.path_length} CA certificate(s) below it, "
            f"the chain has {below}"
        )
    usage = _extension(cert, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage) or not usage.key_cert_sign:
        raise CertificateError(f"{name_of(cert)} issues certificates without keyCertSign")


def _check_leaf(cert: x509.Certificate) -> None:
    constraints = _extension(cert, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise CertificateError(f"the leaf {name_of(cert)} is a CA certificate")
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.digital_signature:
        raise CertificateError(f"the leaf {name_of(cert)} may not sign (no digitalSignature)")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise CertificateError(f"the leaf {name_of(cert)} does not hold a P-384 key")
