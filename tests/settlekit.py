"""Shared helpers of the settlement tests (not a test module).

Everything is real: a SQLite ledger file under the test's tmp_path, onnxruntime runs of the mlp
fixture, Ed25519 signatures by seeded keys (payer: seeded(6), log: seeded(7)) and the committed
provider and referee fixture keys, a clock the test moves by hand. Traced runs keep their trace
files in folders beside the ledger file, so the payer can package evidence to open a dispute.

    world = World(tmp_path / "ledger.db")
    signed = world.held(max_amount=50); receipt = world.issue(signed, fee=7)
    world.ledger.claim(receipt, model=mlp()); refused(world.store, StateError, lambda: ...)
    signed, receipt = world.claimed(traced=True); world.open_dispute(receipt)
    world.rule(receipt, PROVIDER_FAULT)      # a ruling on the payer's evidence settles it
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from receipts import codec
from receipts.digests import Digest, TensorMapDigest
from receipts.dispute import dispute_locally
from receipts.effects import RandomBytes, seeded
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.errors import ReceiptsError
from receipts.evidence import Evidence
from receipts.keys import PrivateKey
from receipts.ledger import Claimed, Disputed, Ledger, LedgerRules
from receipts.meter import Price
from receipts.model import LoadedModel
from receipts.notice import sign_notice
from receipts.provider import TRACE_FILE, Issued, ModelSession, Provider
from receipts.receipt import Receipt, receipt_id
from receipts.reconcile import state_of
from receipts.referee import PROVIDER_SIGNED, RULING_PAYLOAD_TYPE, Ruling
from receipts.request import SignedRequest, make_request
from receipts.store import Store
from receipts.trace import TraceReader
from tests.conftest import fixture_inputs, fixture_key, fixture_model

NOW = 1_790_000_000_000
ORIGIN = "example.com/ledger"
WINDOW_MS = 60_000
TTL_MS = 600_000
SLASH = 40
FEE = 7
PAYER = PrivateKey.generate("ed25519", random_bytes=seeded(6))
OTHER_PAYER = PrivateKey.generate("ed25519", random_bytes=seeded(8))
LOG_KEY = PrivateKey.generate("ed25519", random_bytes=seeded(7))
# The challenger's own recomputation lies at this node, so even an honest provider's trace
# diverges: the ledger checks only that the evidence is the payer's well-formed bisection.
LIE_AT = "#1"


class HandClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


@functools.cache
def mlp() -> LoadedModel:
    return fixture_model("mlp")


@functools.cache
def mlp_inputs() -> dict[str, Any]:
    return fixture_inputs("mlp")


@functools.cache
def inputs_digest() -> Digest:
    return TensorMapDigest.of(mlp().check_inputs(mlp_inputs())).digest


def provider_key() -> PrivateKey:
    return fixture_key()


def referee_key() -> PrivateKey:
    return fixture_key("referee_ed25519")


def rules(**overrides: Any) -> LedgerRules:
    """The test ledger's rules: a 60 s window, 40 slashed on a fault, the fixture referee."""
    base: dict[str, Any] = {
        "origin": ORIGIN,
        "window_ms": WINDOW_MS,
        "slash_amount": SLASH,
        "referees": (referee_key().public_key,),
    }
    return LedgerRules(**{**base, **overrides})


class World:
    """One ledger file, its hand-moved clock, a payer and a provider serving the mlp fixture."""

    def __init__(self, path: Path, *, clock: HandClock | None = None, **overrides: Any) -> None:
        self.clock = clock or HandClock()
        self.ledger = Ledger.create(path, rules(**overrides), clock=self.clock)
        self._nonces = seeded(b"settlement-requests")
        self._sessions: dict[tuple[int, bytes], ModelSession] = {}
        self._runs = path.parent / f"{path.stem}-runs"
        self._traces: dict[bytes, Path] = {}  # receipt bytes -> its trace file
        self._payers: dict[Digest, PrivateKey] = {}  # request id -> the payer who signed it
        self._evidence: dict[tuple[bytes, bytes], Evidence] = {}

    @property
    def store(self) -> Store:
        return self.ledger.store

    def fund(self, deposit: int = 1000, bond: int = 100) -> None:
        self.ledger.deposit(PAYER.public_key.key_id, "credit", deposit)
        if bond:
            self.ledger.bond(provider_key().public_key.key_id, "credit", bond)

    def request(
        self,
        *,
        max_amount: int = 100,
        ttl: int = TTL_MS,
        payer: PrivateKey = PAYER,
        random_bytes: RandomBytes | None = None,
        **terms: Any,
    ) -> SignedRequest:
        args: dict[str, Any] = {
            "models": [mlp().digest],
            "inputs": inputs_digest(),
            "asset": "credit",
            "provider": None,
            "ledger": self.ledger.rules.origin,  # the ledger that may hold it: this one
            **terms,
        }
        signed = make_request(
            payer,
            max_amount=max_amount,
            expires_at=self.clock.ms + ttl,
            random_bytes=random_bytes or self._nonces,
            **args,
        )
        self._payers[signed.id] = payer
        return signed

    def held(self, **kwargs: Any) -> SignedRequest:
        return self.ledger.hold(self.request(**kwargs).to_bytes())

    def session(self, fee: int, key: PrivateKey | None = None) -> ModelSession:
        """The provider (default: the fixture provider key) priced at a flat ``fee``; one nonce
        stream per provider and price, so no two receipts of a world are equal."""
        signer = key or provider_key()
        slot = (fee, signer.public_key.key_id)
        if slot not in self._sessions:
            provider = Provider(
                signer,
                price=Price(base_fee=fee, asset="credit"),
                clock=self.clock,
                random_bytes=seeded(signer.public_key.key_id + fee.to_bytes(8, "big")),
            )
            self._sessions[slot] = provider.session(mlp())
        return self._sessions[slot]

    def issue(
        self,
        signed: SignedRequest | None,
        fee: int = FEE,
        key: PrivateKey | None = None,
        *,
        traced: bool = False,
    ) -> bytes:
        """The provider's honest receipt for ``signed`` (the provider checks the request);
        ``traced``: it commits to a trace, whose file is kept for the payer's evidence."""
        issued = self.session(fee, key).run(mlp_inputs(), request=signed, trace=traced)
        return self._kept(issued, issued.to_bytes())

    def forge(
        self, signed: SignedRequest | None, fee: int = FEE, *, traced: bool = False, **changes: Any
    ) -> bytes:
        """A receipt the provider signs without checking the request: run unbound, then rebind
        to ``signed`` (and apply ``changes``) and sign again with the provider key."""
        issued = self.session(fee).run(mlp_inputs(), trace=traced)
        bound = replace(issued.receipt, request=None if signed is None else signed.id, **changes)
        return self._kept(issued, sign_receipt(bound))

    def _kept(self, issued: Issued, data: bytes) -> bytes:
        """``data``, with the trace of a traced run written to a folder of its own."""
        if issued.trace is not None:
            folder = self._runs / str(len(self._traces))
            issued.write(folder)
            self._traces[data] = folder / TRACE_FILE
        return data

    def evidence(self, receipt: bytes, challenger: PrivateKey | None = None) -> Evidence:
        """The evidence bundle disputing a traced ``receipt``, made by ``challenger`` (default:
        the payer of the receipt's request) lying at node ``LIE_AT``; made once per pair."""
        if challenger is None:
            bound = Receipt.decode(Envelope.from_bytes(receipt).payload).request
            challenger = self._payers[bound] if bound is not None else PAYER
        slot = (receipt, challenger.public_key.key_id)
        if slot not in self._evidence:
            with TraceReader.open(self._traces[receipt]) as trace:
                found = dispute_locally(
                    receipt, mlp(), mlp_inputs(), trace, challenger, inject_fault=LIE_AT
                )
            self._evidence[slot] = found.evidence
        return self._evidence[slot]

    def open_dispute(self, receipt: bytes) -> Disputed:
        """The payer opens a dispute on a claimed traced ``receipt`` with its evidence."""
        evidence = self.evidence(receipt)
        return self.ledger.dispute(receipt, evidence=evidence, notice=self.notice(receipt))

    def notice(self, receipt: bytes, signer: PrivateKey | None = None) -> bytes:
        """The payer's signed notice opening a dispute on ``receipt`` with its evidence."""
        if signer is None:
            bound = Receipt.decode(Envelope.from_bytes(receipt).payload).request
            signer = self._payers[bound] if bound is not None else PAYER
        return sign_notice(
            signer,
            ledger=self.ledger.rules.origin,
            receipt=rid(receipt),
            evidence=self.evidence(receipt).digest,
        )

    def rule(self, receipt: bytes, verdict: str) -> Disputed:
        """The referee's ruling on the payer's evidence against ``receipt`` (a dispute the payer
        opened with ``open_dispute``) settles it."""
        return self.ledger.dispute(receipt, self.ruling(receipt, verdict))

    def ruling(self, receipt: bytes, verdict: str, signer: PrivateKey | None = None) -> bytes:
        """A ruling on the payer's evidence against a traced ``receipt``."""
        return ruling(receipt, verdict, signer, evidence=self.evidence(receipt).digest)

    def claim(self, receipt: bytes) -> Claimed:
        return self.ledger.claim(receipt, model=mlp())

    def claimed(
        self, fee: int = FEE, key: PrivateKey | None = None, *, traced: bool = False, **kwargs: Any
    ) -> tuple[SignedRequest, bytes]:
        """A held request and the receipt claimed for it (``traced``: disputable with
        ``evidence``/``open_dispute``)."""
        signed = self.held(**kwargs)
        receipt = self.issue(signed, fee, key, traced=traced)
        self.claim(receipt)
        return signed, receipt

    def disputed(
        self, fee: int = FEE, key: PrivateKey | None = None, **kwargs: Any
    ) -> tuple[SignedRequest, bytes]:
        """A traced claim its payer disputed with evidence: ready for ``rule``."""
        signed, receipt = self.claimed(fee, key, traced=True, **kwargs)
        self.open_dispute(receipt)
        return signed, receipt


def sign_receipt(receipt: Receipt, signer: PrivateKey | None = None) -> bytes:
    envelope = Envelope.sign(RECEIPT_PAYLOAD_TYPE, receipt.encode(), signer or provider_key())
    return envelope.to_bytes()


def rid(receipt: bytes) -> Digest:
    return receipt_id(Envelope.from_bytes(receipt).payload)


def ruling(
    receipt: bytes, verdict: str, signer: PrivateKey | None = None, *, evidence: Digest
) -> bytes:
    """A ruling on ``receipt`` and the ``evidence`` bundle (its digest) signed by the referee key
    (or ``signer``): the record a referee's ``judge`` signs, with placeholder details (the
    ledger reads the receipt, the evidence and the verdict)."""
    zero = Digest(bytes(32))
    record = Ruling(
        receipt=rid(receipt),
        evidence=evidence,
        node=1,
        node_name="relu1",
        op="Relu",
        verdict=verdict,
        reason="settlement test ruling",
        comparison="bit-exact",
        receipt_runtime=zero,
        referee_runtime=zero,
        provider_outputs=(),
        recomputed_outputs=(),
        challenger_outputs=(),
        provider_messages=PROVIDER_SIGNED,
        issued_at=NOW,
    )
    payload = codec.encode(record.to_wire())
    return Envelope.sign(RULING_PAYLOAD_TYPE, payload, signer or referee_key()).to_bytes()


def refused(
    store: Store, error: type[ReceiptsError], call: Callable[[], object], match: str | None = None
) -> ReceiptsError:
    """``call`` raises exactly ``error`` with a one-line message, and the ledger is unchanged."""
    before = state_of(store)
    with pytest.raises(error, match=match) as raised:
        call()
    assert raised.type is error, f"{raised.type.__name__}: {raised.value}"
    message = str(raised.value)
    assert message, "an error message says what went wrong"
    assert "\n" not in message
    assert state_of(store) == before
    return raised.value


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def flip_signature(data: bytes, payload_type: str = RECEIPT_PAYLOAD_TYPE) -> bytes:
    """``data`` (an envelope) with one bit of its signature flipped: still well-formed."""
    sig = Envelope.from_bytes(data, payload_type=payload_type).signature.sig
    return flip(data, data.rindex(sig) + 5)
