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

    leaf = verify_chain(leaf_der, cabundle, roots=(aws_root,), at_ms=doc.timestamp)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
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


def load_certificate(der: bytes, what: str) -> x509.Certificate:
    """A DER certificate whose extensions parse; ``AttestationFormatError`` otherwise."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = cert.extensions  # parsed lazily: a malformed extension must fail here, typed
    except ValueError as e:
        raise AttestationFormatError(f"{what} is not a well-formed DER certificate ({e})") from e
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
    chain = [load_certificate(der, f"cabundle[{i}]") for i, der in enumerate(cabundle)]
    chain.append(load_certificate(leaf_der, "the leaf certificate"))
    if not any(chain[0] == root for root in roots):
        raise CertificateError(
            f"the chain starts at {name_of(chain[0])}, which is not a pinned root"
        )
    at = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    last = len(chain) - 1
    for depth, cert in enumerate(chain):
        if depth:
            _check_link(cert, chain[depth - 1])
        _check_validity(cert, at)
        _check_critical(cert)
        if depth < last:
            # CA certificates strictly between this one and the leaf.
            _check_issuer(cert, below=last - depth - 1)
        else:
            _check_leaf(cert)
    return chain[-1]


def _check_link(cert: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        cert.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature) as e:
        reason = "bad signature" if isinstance(e, InvalidSignature) else str(e)
        raise CertificateError(
            f"{name_of(cert)} is not issued by {name_of(parent)} ({reason})"
        ) from e


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
