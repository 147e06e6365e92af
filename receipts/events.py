"""Ledger events: the entries of the settlement log, and how each one changes the ledger.

Settlement layer. Every state change of the ledger is one event; the ledger validates an
operation, turns it into events, and in one transaction applies each event to the store and
appends its canonical encoding to the log. The log therefore holds everything the state is made
of: ``replay`` applies a log's entries to an empty store and gets the same balances and requests
back. The signed requests, receipts and rulings travel inside their events; decoding an entry
checks their form, and ``check()`` (which replay runs) their signatures.

    entry = Deposit(at=now, account=key.key_id, asset="credit", amount=100).encode()
    event = decode_event(entry)                 # strict: MalformedError and kin

Amounts move only between balances and holds, so for every asset the sum of all balances plus
all holds equals the sum of deposits and bonds (the asset's supply); ``apply`` never creates or
drops a unit. Kinds: ``open`` (the ledger's parameters, entry 0), ``deposit``, ``bond``, ``hold``,
``claim``, ``release``, ``refund``, ``dispute``, ``slash`` and ``batch``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from receipts import codec
from receipts.codec import MapReader
from receipts.digests import Digest
from receipts.envelope import MAX_ENVELOPE_BYTES, Envelope
from receipts.errors import (
    BindingError,
    ExpiredError,
    MalformedError,
    SignatureError,
    StateError,
    UnsupportedVersionError,
)
from receipts.keys import PublicKey
from receipts.notice import read_notice
from receipts.receipt import Receipt, receipt_id
from receipts.referee import read_ruling
from receipts.request import (
    SignedRequest,
    check_binding,
    check_request_open,
    read_stored_request,
)

if TYPE_CHECKING:
    from receipts.store import RequestRow, Store

EVENT_TYPE = "ledger-event"
EVENT_VERSION = 1
# An entry carries at most one signed record (a receipt or a ruling, each up to the envelope
# limit) and a few small fields; ``Ledger`` refuses to record a larger one.
MAX_ENTRY_BYTES = MAX_ENVELOPE_BYTES + (64 << 10)
MAX_AMOUNT = 2**63 - 1  # SQLite integers are signed 64-bit; the ledger refuses larger amounts
KINDS = (
    "open",
    "deposit",
    "bond",
    "hold",
    "claim",
    "release",
    "refund",
    "dispute",
    "slash",
    "batch",
)
BALANCE_KINDS = ("deposit", "earnings", "bond")


class Event(Protocol):
    at: int

    @property
    def kind(self) -> str: ...

    def fields(self) -> dict[str, object]: ...

    def check(self) -> None: ...

    def apply(self, store: Store) -> None: ...

    def encode(self) -> bytes: ...


def _amount(value: int, what: str) -> None:
    if not 0 <= value <= MAX_AMOUNT:
        raise MalformedError(f"{what} must be an integer in [0, 2^63-1], got {value}")


class _Base(ABC):
    """Shared encoding: ``{"type", "version", "kind", "at", ...fields}``."""

    __slots__ = ()
    kind: str
    at: int

    @abstractmethod
    def fields(self) -> dict[str, object]:
        """The entry's own fields, beside the common ones."""

    def check(self) -> None:  # noqa: B027 - most entries carry no signature: nothing to check
        """Re-check the signatures the entry carries (replay and audits call this; the live
        ledger checked them, and more, before it recorded the entry)."""

    def encode(self) -> bytes:
        wire: dict[str, object] = {
            "type": EVENT_TYPE,
            "version": EVENT_VERSION,
            "kind": self.kind,
            "at": self.at,
        }
        wire.update(self.fields())
        return codec.encode(wire)


@dataclass(frozen=True, slots=True, kw_only=True)
class Open(_Base):
    """Entry 0: the ledger's identity and rules, so the log describes itself."""

    at: int
    origin: str
    assets: tuple[str, ...]
    window_ms: int
    slash_amount: int
    rungs: tuple[str, ...]
    referees: tuple[bytes, ...]  # encoded public keys (encode_key)
    kind = "open"

    def __post_init__(self) -> None:
        if not self.assets or len(set(self.assets)) != len(self.assets):
            raise MalformedError("a ledger holds one or more distinct assets")
        _amount(self.window_ms, "challenge window")
        _amount(self.slash_amount, "slash amount")

    def fields(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "assets": list(self.assets),
            "window_ms": self.window_ms,
            "slash_amount": self.slash_amount,
            "rungs": list(self.rungs),
            "referees": list(self.referees),
        }

    def apply(self, store: Store) -> None:
        store.open(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit(_Base):
    """Money entering the ledger: a payer's deposit (or, as ``Bond``, a provider's bond)."""

    at: int
    account: bytes
    asset: str
    amount: int
    reference: bytes | None = None  # the depositor's idempotency key: applied at most once
    kind = "deposit"

    def __post_init__(self) -> None:
        if len(self.account) != 32:
            raise MalformedError("an account is a 32-byte key id")
        _amount(self.amount, "amount")
        if self.amount == 0:
            raise MalformedError("a deposit moves a positive amount")
        if self.reference is not None and not 1 <= len(self.reference) <= 64:
            raise MalformedError("a deposit reference is 1..64 bytes")

    def fields(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "account": self.account,
            "asset": self.asset,
            "amount": self.amount,
        }
        if self.reference is not None:
            wire["reference"] = self.reference
        return wire

    def apply(self, store: Store) -> None:
        if self.reference is not None:
            store.use_reference(self.reference)
        store.add_supply(self.asset, self.amount)
        store.add_balance(self.account, self.asset, self.kind, self.amount)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bond(Deposit):
    kind = "bond"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold(_Base):
    """The payer's request is authorized: its maximum moves from the payer's deposit to escrow."""

    at: int
    request: SignedRequest
    kind = "hold"

    def fields(self) -> dict[str, object]:
        return {"request": self.request.to_bytes()}

    def check(self) -> None:
        self.request.envelope.verify_signature(None)  # the payer named in it (SignedRequest)

    def apply(self, store: Store) -> None:
        r = self.request.request
        if r.ledger != _opening(store).origin or self.at >= r.expires_at:
            raise StateError(f"the hold of {self.request.id} is of a request for another "
                             "ledger, or an expired one")  # fmt: skip
        store.add_balance(r.payer, r.asset, "deposit", -r.max_amount)
        store.insert_request(self.request)


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim(_Base):
    """The provider's receipt for a held request is accepted; the challenge window opens."""

    at: int
    request: Digest
    receipt: bytes  # the receipt envelope, exactly as claimed
    window_ends: int
    # The ledger passes the receipt its verifier already decoded; a decoded entry decodes it.
    parsed: Receipt | None = field(default=None, compare=False, repr=False)
    kind = "claim"

    def __post_init__(self) -> None:
        _amount(self.window_ends, "window end")
        if self.parsed is None:
            object.__setattr__(self, "parsed", Receipt.decode(self._envelope().payload))

    def _envelope(self) -> Envelope:
        return Envelope.from_bytes(self.receipt)

    @property
    def receipt_id(self) -> Digest:
        return receipt_id(self._envelope().payload)

    def fields(self) -> dict[str, object]:
        return {
            "request": self.request.value,
            "receipt": self.receipt,
            "window_ends": self.window_ends,
        }

    def check(self) -> None:
        """What a replay can re-check without the model: the named provider signed it."""
        assert self.parsed is not None
        if self._envelope().verify_signature(None).key_id != self.parsed.provider:
            raise SignatureError("the claimed receipt names a provider other than its signer")

    def apply(self, store: Store) -> None:
        receipt = self.parsed
        assert receipt is not None
        if receipt.request != self.request:
            raise StateError(
                f"the claim entry for {self.request} carries another request's receipt"
            )
        opening = _opening(store)
        signed = read_stored_request(store.signed_request(self.request))
        try:  # the terms the payer signed, as the live claim checked them (c4, c5)
            check_binding(signed, receipt)
            check_request_open(signed.request, self.at)
        except (BindingError, ExpiredError) as e:
            raise StateError(f"the claim entry for {self.request}: {e}") from e
        if self.window_ends != self.at + opening.window_ms:
            raise StateError(f"the claim on {self.request} has a window the rules do not give")
        store.claim_request(
            self.request,
            receipt=self.receipt_id,
            provider=receipt.provider,
            amount=receipt.meter.amount,
            window_ends=self.window_ends,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(_Base):
    """The claim stands: the amount goes to the provider, the rest of the hold to the payer."""

    at: int
    request: Digest
    provider: bytes
    payer: bytes
    asset: str
    amount: int
    remainder: int
    kind = "release"

    def __post_init__(self) -> None:
        _amount(self.amount, "amount")
        _amount(self.remainder, "remainder")

    def fields(self) -> dict[str, object]:
        return {
            "request": self.request.value,
            "provider": self.provider,
            "payer": self.payer,
            "asset": self.asset,
            "amount": self.amount,
            "remainder": self.remainder,
        }

    def apply(self, store: Store) -> None:
        row = _row(store, self.request)
        if (self.provider, self.payer, self.asset) != (row.claimed_by, row.payer, row.asset):
            raise StateError(f"the release of {self.request} names other parties than its claim")
        if self.amount != row.amount:
            raise StateError(f"the release of {self.request} pays {self.amount}, the claim "
                             f"{row.amount}")  # fmt: skip
        # Settle releases a claim once its window (or its dispute's deadline) has passed; only a
        # ruling rejecting the challenge releases one sooner.
        closes = row.window_ends
        if row.verdict != "challenge-rejected" and (closes is None or self.at < closes):
            raise StateError(f"the release of {self.request} at {self.at} comes before its "
                             f"window closed at {row.window_ends}")  # fmt: skip
        store.close_request(self.request, "released", hold=self.amount + self.remainder)
        store.add_balance(self.provider, self.asset, "earnings", self.amount)
        store.add_balance(self.payer, self.asset, "deposit", self.remainder)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund(_Base):
    """The whole hold goes back to the payer (expired unclaimed, or the provider was at fault)."""

    at: int
    request: Digest
    payer: bytes
    asset: str
    amount: int
    reason: str  # "expired" or "provider-fault"
    kind = "refund"

    def __post_init__(self) -> None:
        _amount(self.amount, "amount")
        if self.reason not in ("expired", "provider-fault"):
            raise MalformedError(f"unknown refund reason {self.reason!r}")

    def fields(self) -> dict[str, object]:
        return {
            "request": self.request.value,
            "payer": self.payer,
            "asset": self.asset,
            "amount": self.amount,
            "reason": self.reason,
        }

    def apply(self, store: Store) -> None:
        row = _row(store, self.request)
        if (self.payer, self.asset) != (row.payer, row.asset):
            raise StateError(f"the refund of {self.request} names another payer or asset")
        if (self.reason == "provider-fault") != (row.verdict == "provider-fault"):
            raise StateError(f"the refund of {self.request} does not follow its ruling")
        # An expiry refunds only a request nobody claimed, once it expired: a claim is paid or
        # judged, never handed back to the payer as if it had lapsed.
        if self.reason == "expired" and (row.state != "held" or self.at < row.expires_at):
            raise StateError(f"the refund of {self.request} as expired is of a request that is "
                             f"{row.state}, expiring at {row.expires_at}")  # fmt: skip
        store.close_request(self.request, "refunded", hold=self.amount)
        store.add_balance(self.payer, self.asset, "deposit", self.amount)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispute(_Base):
    """A claim is challenged inside its window. Opened with the payer's evidence (its digest is
    recorded, and a ruling is due by ``deadline``) or resolved by a ruling (its bytes and
    verdict are recorded)."""

    at: int
    request: Digest
    ruling: bytes | None = None
    verdict: str | None = None
    evidence: Digest | None = None
    deadline: int | None = None
    notice: bytes | None = None  # the payer's signed dispute notice (receipts.notice)
    kind = "dispute"

    def __post_init__(self) -> None:
        if (self.ruling is None) != (self.verdict is None):
            raise MalformedError("a dispute entry holds a ruling with its verdict, or neither")
        if not (self.evidence is None) == (self.deadline is None) == (self.notice is None):
            raise MalformedError(
                "a dispute entry holds evidence with its deadline and notice, or none of them"
            )
        if (self.ruling is None) == (self.evidence is None):
            raise MalformedError("a dispute entry either opens (evidence) or rules (ruling)")

    def fields(self) -> dict[str, object]:
        wire: dict[str, object] = {"request": self.request.value}
        if self.ruling is not None:
            wire["ruling"] = self.ruling
            wire["verdict"] = self.verdict
        if self.evidence is not None:
            wire["evidence"] = self.evidence.value
            wire["deadline"] = self.deadline
            wire["notice"] = self.notice
        return wire

    def check(self) -> None:
        if self.notice is not None:
            read_notice(self.notice)  # the payer's signature (apply checks it is the payer)
        if self.ruling is not None:  # the referee's signature, and the verdict it signed
            judged = read_ruling(self.ruling).ruling
            if judged.verdict != self.verdict:
                raise MalformedError(f"the dispute entry says {self.verdict!r}, its ruling "
                                     f"{judged.verdict!r}")  # fmt: skip

    def apply(self, store: Store) -> None:
        row = _row(store, self.request)
        if self.ruling is not None:
            signed = read_ruling(self.ruling)
            if signed.envelope.signature.public_key.raw not in _referee_keys(store):
                raise StateError(f"the ruling on {self.request} is not by one of the referees")
            if row.state != "disputed" or signed.ruling.evidence != row.evidence:
                raise StateError(f"the ruling on {self.request} judged other evidence than "
                                 "the payer's dispute")  # fmt: skip
            if signed.ruling.receipt != row.receipt:
                raise StateError(f"the ruling on {self.request} is about another receipt")
        else:
            self._check_opening(store, row)
        store.dispute_request(
            self.request, self.verdict, deadline=self.deadline, evidence=self.evidence
        )

    def _check_opening(self, store: Store, row: RequestRow) -> None:
        """An opening: by the payer (its notice), on this receipt and evidence, of a claim in
        its window, with the deadline the rules give."""
        assert self.notice is not None and self.deadline is not None
        signed = read_notice(self.notice)
        opening = _opening(store)
        if signed.key.key_id != row.payer:
            raise StateError(f"the dispute on {self.request} was not opened by its payer")
        notice = signed.notice
        if (notice.ledger, notice.receipt, notice.evidence) != (
            opening.origin,
            row.receipt,
            self.evidence,
        ):
            raise StateError(f"the dispute notice on {self.request} names another ledger, "
                             "receipt or evidence")  # fmt: skip
        if row.state != "claimed" or row.window_ends is None or self.at >= row.window_ends:
            raise StateError(f"the dispute on {self.request} opens outside a claim's window")
        if self.deadline != self.at + opening.window_ms:
            raise StateError(f"the dispute on {self.request} has a deadline the rules do not give")


@dataclass(frozen=True, slots=True, kw_only=True)
class Slash(_Base):
    """Part of a faulty provider's bond goes to the payer it wronged."""

    at: int
    request: Digest
    provider: bytes
    payer: bytes
    asset: str
    amount: int
    kind = "slash"

    def __post_init__(self) -> None:
        _amount(self.amount, "amount")

    def fields(self) -> dict[str, object]:
        return {
            "request": self.request.value,
            "provider": self.provider,
            "payer": self.payer,
            "asset": self.asset,
            "amount": self.amount,
        }

    def apply(self, store: Store) -> None:
        row = _row(store, self.request)
        if (self.provider, self.payer, self.asset) != (row.claimed_by, row.payer, row.asset):
            raise StateError(f"the slash for {self.request} names other parties than its claim")
        if self.amount > _rules_slash(store):
            raise StateError(f"the slash for {self.request} exceeds the ledger's slash amount")
        store.record_slash(self.request, self.amount)  # refunded on a fault, and once only
        store.add_balance(self.provider, self.asset, "bond", -self.amount)
        store.add_balance(self.payer, self.asset, "deposit", self.amount)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMade(_Base):
    """A settlement batch over entries [first, end) was made; its digest is what auditors sign."""

    at: int
    first: int
    end: int
    digest: Digest
    kind = "batch"

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.end <= MAX_AMOUNT:
            raise MalformedError("a batch spans entries first < end")

    def fields(self) -> dict[str, object]:
        return {"first": self.first, "end": self.end, "digest": self.digest.value}

    def apply(self, store: Store) -> None:
        made = store.batches()
        if self.first != (made[-1][1] if made else 0) or self.end > store.size():
            raise StateError(f"the batch [{self.first}, {self.end}) does not follow the last "
                             "batch, or reaches past the log")  # fmt: skip
        store.add_batch(self.first, self.end, self.digest.value)


def _row(store: Store, request: Digest) -> RequestRow:
    row = store.request(request)
    if row is None:
        raise StateError(f"the entry names request {request}, which the ledger never held")
    return row


def _opening(store: Store) -> Open:
    data = store.meta("open")
    if data is None:
        raise StateError("the ledger was never opened")
    return _decode_opening(data)


@lru_cache(maxsize=16)
def _decode_opening(data: bytes) -> Open:
    """Entry 0, decoded once per ledger (every claim and dispute applied reads its rules)."""
    event = decode_event(data)
    if not isinstance(event, Open):
        raise StateError("the ledger's entry 0 is not its opening")
    return event


def _rules_slash(store: Store) -> int:
    return _opening(store).slash_amount


def _referee_keys(store: Store) -> set[bytes]:
    return {decode_key(encoded).raw for encoded in _opening(store).referees}


def encode_key(key: PublicKey) -> bytes:
    """A public key as the ``open`` entry records it (a referee's)."""
    return codec.encode({"scheme": key.scheme, "public_key": key.raw})


def decode_key(data: bytes) -> PublicKey:
    r = MapReader(codec.decode(data), "key")
    key = PublicKey.parse(r.text("scheme", 16), r.binary("public_key", max_len=128))
    r.close()
    return key


AnyEvent = Open | Deposit | Bond | Hold | Claim | Release | Refund | Dispute | Slash | BatchMade


def decode_event(data: bytes) -> AnyEvent:
    """One log entry back into its event; strict (unknown kinds, fields and versions raise)."""
    r = MapReader(codec.decode(data, limits=codec.Limits(max_bytes=MAX_ENTRY_BYTES)), "entry")
    kind, version = r.text("type", 64), r.integer("version")
    if kind != EVENT_TYPE or version != EVENT_VERSION:
        raise UnsupportedVersionError(f"not a ledger event v1 (type {kind!r}, version {version})")
    event = _READERS.get(r.text("kind", 16))
    if event is None:
        raise UnsupportedVersionError("unknown ledger event kind")
    result = event(r, r.integer("at", 0, MAX_AMOUNT))
    r.close()
    return result


def _open(r: MapReader, at: int) -> AnyEvent:
    return Open(
        at=at,
        origin=r.text("origin", 256),
        assets=tuple(_texts(r.array("assets", 64), "asset")),
        window_ms=r.integer("window_ms", 0, MAX_AMOUNT),
        slash_amount=r.integer("slash_amount", 0, MAX_AMOUNT),
        rungs=tuple(_texts(r.array("rungs", 16), "rung")),
        referees=tuple(codec.binaries(r.array("referees", 64), "entry.referees")),
    )


def _deposit(r: MapReader, at: int) -> AnyEvent:
    return _money(Deposit, r, at)


def _bond(r: MapReader, at: int) -> AnyEvent:
    return _money(Bond, r, at)


def _money(kind: type[Deposit], r: MapReader, at: int) -> Deposit:
    return kind(
        at=at,
        account=r.binary("account", 32),
        asset=r.text("asset", 64),
        amount=r.integer("amount", 0, MAX_AMOUNT),
        reference=r.binary("reference", max_len=64) if r.has("reference") else None,
    )


def _hold(r: MapReader, at: int) -> AnyEvent:
    return Hold(at=at, request=read_stored_request(r.binary("request")))


def _claim(r: MapReader, at: int) -> AnyEvent:
    return Claim(
        at=at,
        request=Digest(r.binary("request", 32)),
        receipt=r.binary("receipt"),
        window_ends=r.integer("window_ends", 0, MAX_AMOUNT),
    )


def _release(r: MapReader, at: int) -> AnyEvent:
    return Release(
        at=at,
        request=Digest(r.binary("request", 32)),
        provider=r.binary("provider", 32),
        payer=r.binary("payer", 32),
        asset=r.text("asset", 64),
        amount=r.integer("amount", 0, MAX_AMOUNT),
        remainder=r.integer("remainder", 0, MAX_AMOUNT),
    )


def _refund(r: MapReader, at: int) -> AnyEvent:
    return Refund(
        at=at,
        request=Digest(r.binary("request", 32)),
        payer=r.binary("payer", 32),
        asset=r.text("asset", 64),
        amount=r.integer("amount", 0, MAX_AMOUNT),
        reason=r.text("reason", 32),
    )


def _dispute(r: MapReader, at: int) -> AnyEvent:
    request = Digest(r.binary("request", 32))
    if r.has("ruling"):
        return Dispute(
            at=at, request=request, ruling=r.binary("ruling"), verdict=r.text("verdict", 32)
        )
    return Dispute(
        at=at,
        request=request,
        evidence=Digest(r.binary("evidence", 32)),
        deadline=r.integer("deadline", 0, MAX_AMOUNT),
        notice=r.binary("notice"),
    )


def _slash(r: MapReader, at: int) -> AnyEvent:
    return Slash(
        at=at,
        request=Digest(r.binary("request", 32)),
        provider=r.binary("provider", 32),
        payer=r.binary("payer", 32),
        asset=r.text("asset", 64),
        amount=r.integer("amount", 0, MAX_AMOUNT),
    )


def _texts(items: list[object], what: str) -> list[str]:
    if not all(isinstance(i, str) for i in items):
        raise MalformedError(f"entry: every {what} must be text")
    return [str(i) for i in items]


def _batch(r: MapReader, at: int) -> AnyEvent:
    return BatchMade(
        at=at,
        first=r.integer("first", 0, MAX_AMOUNT),
        end=r.integer("end", 0, MAX_AMOUNT),
        digest=Digest(r.binary("digest", 32)),
    )


_READERS = {
    "batch": _batch,
    "open": _open,
    "deposit": _deposit,
    "bond": _bond,
    "hold": _hold,
    "claim": _claim,
    "release": _release,
    "refund": _refund,
    "dispute": _dispute,
    "slash": _slash,
}
