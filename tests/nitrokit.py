"""Shared pieces for the TEE rung's tests: a fixed clock, simulated roots and attesters, the real
AWS document and its root, and small builders for documents the simulator would never sign.

    doc = nitro(chain=with_spec(DEFAULT_CHAIN, 1, key_cert_sign=False)).document()
    verify_document(doc, sim_policy(), at_ms=NOW)      # CertificateError
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from receipts.cose import CoseSign1
from receipts.effects import FixedClock, seeded
from receipts.nitro import NitroPolicy
from receipts.nitro_sim import (
    DEFAULT_CHAIN,
    CertSpec,
    SimulatedNitro,
    SimulatedRoot,
    _certificate,
    derive_key,
)
from tests.conftest import FIXTURES

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
NOW = 1_790_000_000_000
CLOCK = FixedClock(NOW)

# The real document (AWS Nitro Enclaves, 2022-07-26) and the AWS root it chains to.
REAL_DOC = (FIXTURES / "nitro" / "real-attestation-2022-07-26.cbor").read_bytes()
AWS_ROOT = NitroPolicy.load_root(
    (FIXTURES / "nitro" / "aws-nitro-enclaves-root-g1.pem").read_bytes()
)
REAL_TIMESTAMP = 1_658_860_752_566
# Where the COSE_Sign1 array puts the payload and the signature in the real document: the array
# head, the 4-byte protected header, the empty map, the 3-byte head of a 4339-byte payload.
REAL_PAYLOAD_START = 10
REAL_PAYLOAD_END = REAL_PAYLOAD_START + 4339
REAL_SIGNATURE_START = len(REAL_DOC) - 96


def sim_root(seed: int) -> SimulatedRoot:
    """A simulator root made a year before ``NOW`` from seeded randomness."""
    return SimulatedRoot.generate(clock=FixedClock(NOW - 365 * DAY_MS), random_bytes=seeded(seed))


ROOT = sim_root(501)
OTHER_ROOT = sim_root(502)


def nitro(
    *,
    root: SimulatedRoot = ROOT,
    at: int = NOW,
    seed: int = 601,
    chain: Sequence[CertSpec] = DEFAULT_CHAIN,
    pcrs: Mapping[int, bytes] | None = None,
    debug: bool = False,
    tagged: bool = False,
) -> SimulatedNitro:
    """A simulated attester whose clock stands at ``at``."""
    return SimulatedNitro(
        root,
        clock=FixedClock(at),
        random_bytes=seeded(seed),
        pcrs=pcrs,
        debug=debug,
        chain=chain,
        tagged=tagged,
    )


SIM = nitro()


def sim_policy(**changes: Any) -> NitroPolicy:
    """The policy that pins ``ROOT`` (and, with ``roots=``, any other)."""
    return NitroPolicy(**{"roots": (ROOT.certificate,), **changes})


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def signed_fields(fields: Mapping[str, object], *, attester: SimulatedNitro = SIM) -> bytes:
    """``fields`` as a payload map, signed by ``attester``'s leaf: only N2 can refuse it."""
    return attester.sign(cbor2.dumps(dict(fields)))


def cose(protected: object, unprotected: object, payload: object, signature: object) -> bytes:
    """A COSE_Sign1 array of whatever parts a test gives."""
    return cbor2.dumps([protected, unprotected, payload, signature])


def parts(data: bytes) -> list[Any]:
    """The four items of an untagged COSE_Sign1 (protected, unprotected, payload, signature)."""
    value = cbor2.loads(data)
    assert isinstance(value, list)
    return value


def custom_leaf_document(
    spec: CertSpec, *, key: ec.EllipticCurvePrivateKey | None = None, root: SimulatedRoot = ROOT
) -> bytes:
    """A document whose leaf (as ``spec`` says, even a CA) is issued directly by ``root`` and
    signs it: the chain is root -> leaf, everything else as the simulator lays it out."""
    key = key or derive_key(seeded(701))
    leaf = _certificate(
        spec=spec,
        key=key,
        issuer=root.certificate.subject,
        issuer_key=root.key,
        now_ms=NOW,
        serial=7,
    )
    fields = SIM.fields()
    fields["certificate"] = der(leaf)
    fields["cabundle"] = [der(root.certificate)]
    return CoseSign1.sign(cbor2.dumps(fields), key).to_bytes()


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``index`` XORed with ``mask``."""
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)
