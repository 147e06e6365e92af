"""The payer's signed request: its wire form, its signature, the binding of receipts to it, the
provider's refusals, and the `request` / `run --request` commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from receipts import Envelope, Policy, PrivateKey, Provider, PublicKey, Receipt, Verifier, codec
from receipts.digests import Digest, TensorMapDigest, Value
from receipts.effects import FixedClock, seeded
from receipts.errors import (
    BindingError,
    ExpiredError,
    MalformedError,
    ReceiptsError,
    SignatureError,
    UnsupportedVersionError,
)
from receipts.meter import Meter, Price
from receipts.model import LoadedModel
from receipts.provider import RECEIPT_FILE, Issued
from receipts.request import (
    REQUEST_PAYLOAD_TYPE,
    Request,
    SignedRequest,
    check_binding,
    check_request_open,
    make_request,
    read_request,
    request_id,
)
from receipts.runtime import OrtRunner, RuntimeProfile, RuntimeSettings
from tests.conftest import FIXTURES, fixture_inputs, fixture_key, fixture_model, fixture_public

NOW = 1_790_000_000_000
EXPIRES = NOW + 60_000
PAYER = PrivateKey.generate("ed25519", random_bytes=seeded(11))
SECP_PAYER = PrivateKey.generate("secp256k1", random_bytes=seeded(12))
OTHER_MODEL = Digest(bytes(range(32)))


@pytest.fixture(scope="module")
def mlp() -> LoadedModel:
    return fixture_model("mlp")


def _inputs_digest(model: LoadedModel, inputs: Mapping[str, Any]) -> Digest:
    return TensorMapDigest.of(model.check_inputs(inputs)).digest


def _other_inputs() -> dict[str, Any]:
    return {"x": fixture_inputs("mlp")["x"] + np.float32(1)}


def _request(model: LoadedModel, signer: PrivateKey = PAYER, **terms: Any) -> SignedRequest:
    args: dict[str, Any] = {
        "models": [model.digest],
        "inputs": _inputs_digest(model, fixture_inputs("mlp")),
        "max_amount": 10**12,
        "asset": "credit",
        "provider": None,
        "expires_at": EXPIRES,
        "random_bytes": seeded(3),
    }
    return make_request(signer, **{**args, **terms})


class Spy:
    """Counts what a provider did: model runs and signatures."""

    def __init__(self) -> None:
        self.runs = 0
        self.signs = 0
        self.key = fixture_key()

    @property
    def public_key(self) -> PublicKey:
        return self.key.public_key

    def sign(self, message: bytes) -> bytes:
        self.signs += 1
        return self.key.sign(message)

    def runner(self, model: LoadedModel | bytes, settings: RuntimeSettings) -> Any:
        spy, inner = self, OrtRunner(model, settings)

        class Counting:
            @property
            def profile(self) -> RuntimeProfile:
                return inner.profile

            def run(self, inputs: Mapping[str, Value]) -> dict[str, Value]:
                spy.runs += 1
                return inner.run(inputs)

        return Counting()


def _provider(
    spy: Spy | None = None, *, price: Price | None = None, now: int = NOW, **kwargs: Any
) -> Provider:
    spy = spy or Spy()
    return Provider(
        spy,
        price=price or Price(unit_price=1, asset="credit"),
        clock=FixedClock(now),
        random_bytes=seeded(5),
        runner_factory=spy.runner,
        **kwargs,
    )


def _issue(model: LoadedModel, signed: SignedRequest) -> Issued:
    return _provider().session(model).run(fixture_inputs("mlp"), request=signed)


# --- the record and its wire form -----------------------------------------------------------


@pytest.mark.parametrize("ledger", [None, "example.com/ledger", "é" * 128])
def test_a_signed_request_reads_back_as_the_same_request_and_id(
    mlp: LoadedModel, ledger: str | None
) -> None:
    for provider in (None, fixture_public().key_id):
        signed = _request(mlp, provider=provider, ledger=ledger)
        again = read_request(signed.to_bytes(), trusted=(PAYER.public_key,))
        assert again.request == signed.request
        assert again.request.ledger == ledger
        assert again.id == signed.id == request_id(signed.envelope.payload)
        assert again.key == PAYER.public_key
        assert Request.decode(signed.request.encode()) == signed.request
        assert Request.from_wire(signed.request.to_wire()) == signed.request
        assert ("provider" in signed.request.to_wire()) == (provider is not None)
        assert ("ledger" in signed.request.to_wire()) == (ledger is not None)


def test_the_ledger_a_request_names_is_part_of_what_the_payer_signs(mlp: LoadedModel) -> None:
    here, there = (_request(mlp, ledger=name) for name in ("example.com/a", "example.com/b"))
    assert here.request.nonce == there.request.nonce  # the same terms but for the ledger
    assert here.id != there.id


@pytest.mark.parametrize("ledger", ["", "x" * 257, "é" * 129])
def test_a_request_naming_a_ledger_no_origin_can_be_is_not_made(
    mlp: LoadedModel, ledger: str
) -> None:
    """Origins are 1..256 bytes as the wire reads them: nothing is signed that cannot be read."""
    with pytest.raises(MalformedError, match="ledger"):
        _request(mlp, ledger=ledger)


def test_make_request_sorts_and_deduplicates_the_allowed_models(mlp: LoadedModel) -> None:
    signed = _request(mlp, models=[mlp.digest, OTHER_MODEL, mlp.digest])
    assert signed.request.models == tuple(sorted({mlp.digest, OTHER_MODEL}, key=lambda d: d.value))
    assert signed.request.payer == PAYER.public_key.key_id
    assert signed.request.nonce == seeded(3)(16)


def test_requests_differing_only_in_nonce_have_different_ids(mlp: LoadedModel) -> None:
    first, second = _request(mlp), _request(mlp, random_bytes=seeded(4))
    assert first.request.models == second.request.models
    assert first.id != second.id


def _set(key: str, value: object) -> Callable[[dict[str, object]], None]:
    return lambda wire: wire.__setitem__(key, value)


def _models(fn: Callable[[list[object]], list[object]]) -> Callable[[dict[str, object]], None]:
    def edit(wire: dict[str, object]) -> None:
        models = wire["models"]
        assert isinstance(models, list)
        wire["models"] = fn(models)

    return edit


HOSTILE_WIRE: list[tuple[str, Callable[[dict[str, object]], None], type[ReceiptsError]]] = [
    ("unknown_field", _set("memo", "hi"), MalformedError),
    ("missing_field", lambda w: w.__delitem__("expires_at"), MalformedError),
    ("type_is_receipt", _set("type", "receipt"), UnsupportedVersionError),
    ("version_2", _set("version", 2), UnsupportedVersionError),
    ("models_unsorted", _models(lambda m: [OTHER_MODEL.value, *m][::-1]), MalformedError),
    ("models_duplicate", _models(lambda m: m + m), MalformedError),
    ("models_empty", _models(lambda m: []), MalformedError),
    ("models_over_64", _models(lambda m: [bytes([i]) * 32 for i in range(65)]), MalformedError),
    ("model_not_bytes", _models(lambda m: ["sha256:00"]), MalformedError),
    ("model_31_bytes", _models(lambda m: [b"\x00" * 31]), MalformedError),
    ("nonce_15_bytes", _set("nonce", b"\x00" * 15), MalformedError),
    ("nonce_65_bytes", _set("nonce", b"\x00" * 65), MalformedError),
    ("payer_31_bytes", _set("payer", b"\x00" * 31), MalformedError),
    ("provider_31_bytes", _set("provider", b"\x00" * 31), MalformedError),
    ("inputs_as_text", _set("inputs", "sha256:00"), MalformedError),
    ("max_amount_negative", _set("max_amount", -1), MalformedError),
    ("asset_empty", _set("asset", ""), MalformedError),
    ("asset_control_character", _set("asset", "cr\x1bdit"), MalformedError),
    ("expires_at_negative", _set("expires_at", -1), MalformedError),
    ("ledger_empty", _set("ledger", ""), MalformedError),
    ("ledger_of_257_bytes", _set("ledger", "x" * 257), MalformedError),
    ("ledger_as_bytes", _set("ledger", b"example.com/ledger"), MalformedError),
    ("ledger_null", _set("ledger", None), MalformedError),
]


@pytest.mark.parametrize(
    ("edit", "error"), [c[1:] for c in HOSTILE_WIRE], ids=[c[0] for c in HOSTILE_WIRE]
)
def test_a_payload_outside_the_schema_is_refused(
    mlp: LoadedModel, edit: Callable[[dict[str, object]], None], error: type[ReceiptsError]
) -> None:
    wire = _request(mlp).request.to_wire()
    edit(wire)
    with pytest.raises(error) as raised:
        Request.decode(codec.encode(wire))
    assert raised.type is error


def test_a_request_envelope_is_not_a_receipt_and_a_receipt_is_not_a_request(
    mlp: LoadedModel,
) -> None:
    with pytest.raises(UnsupportedVersionError):
        Envelope.from_bytes(_request(mlp).to_bytes())
    with pytest.raises(UnsupportedVersionError):
        read_request((FIXTURES / "receipts" / "mlp.rcpt").read_bytes())


# --- signatures -----------------------------------------------------------------------------


def test_a_request_signed_by_a_key_other_than_its_payer_is_refused(mlp: LoadedModel) -> None:
    payload = _request(mlp).request.encode()  # names PAYER
    forged = Envelope.sign(REQUEST_PAYLOAD_TYPE, payload, fixture_key("other_ed25519"))
    with pytest.raises(SignatureError, match="names payer"):
        read_request(forged.to_bytes())


def test_a_request_by_an_untrusted_payer_is_refused(mlp: LoadedModel) -> None:
    with pytest.raises(SignatureError, match="not a trusted payer key"):
        read_request(_request(mlp).to_bytes(), trusted=(fixture_public("other_ed25519"),))


def test_any_single_byte_change_of_a_signed_request_is_refused(mlp: LoadedModel) -> None:
    data = _request(mlp).to_bytes()
    for i in range(len(data)):
        changed = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(ReceiptsError):
            read_request(changed)


def test_a_secp256k1_payer_signs_requests_that_bind(mlp: LoadedModel) -> None:
    signed = _request(mlp, signer=SECP_PAYER)
    again = read_request(signed.to_bytes(), trusted=(SECP_PAYER.public_key,))
    assert again.key.scheme == "secp256k1"
    assert again.request.payer == SECP_PAYER.public_key.key_id
    check_binding(again, _issue(mlp, again).receipt)


# --- binding a receipt to the request -------------------------------------------------------


def test_the_honest_receipt_names_the_request_and_binds(mlp: LoadedModel) -> None:
    signed = _request(mlp, provider=fixture_public().key_id)
    issued = _issue(mlp, signed)
    assert issued.receipt.request == signed.id
    check_binding(signed, issued.receipt)
    assert Verifier(Policy()).check(issued.to_bytes(), model=mlp, inputs=fixture_inputs("mlp"))


def _more(receipt: Receipt, *, asset: str = "credit", extra: int = 0) -> Meter:
    price = Price(unit_price=receipt.meter.price.unit_price, base_fee=extra, asset=asset)
    return Meter.of(receipt.meter.units, price)


def _hostile_receipts(signed: SignedRequest, other: SignedRequest) -> dict[str, Any]:
    return {
        "other_request": lambda r: replace(r, request=other.id),
        "no_request": lambda r: replace(r, request=None),
        "other_model": lambda r: replace(r, model=OTHER_MODEL),
        "other_inputs": lambda r: replace(r, inputs=TensorMapDigest.of(_other_inputs())),
        "other_provider": lambda r: replace(r, provider=fixture_public("other_ed25519").key_id),
        "other_asset": lambda r: replace(r, meter=_more(r, asset="usd-cent")),
        "amount_over_max": lambda r: replace(r, meter=_more(r, extra=1)),
        "issued_at_expiry": lambda r: replace(r, issued_at=signed.request.expires_at),
        "issued_after_expiry": lambda r: replace(r, issued_at=signed.request.expires_at + 1),
    }


BINDING_CASES = {
    "other_request": BindingError,
    "no_request": BindingError,
    "other_model": BindingError,
    "other_inputs": BindingError,
    "other_provider": BindingError,
    "other_asset": BindingError,
    "amount_over_max": BindingError,
    "issued_at_expiry": ExpiredError,
    "issued_after_expiry": ExpiredError,
}


@pytest.mark.parametrize(("case", "error"), BINDING_CASES.items(), ids=BINDING_CASES)
def test_a_receipt_outside_the_request_is_refused(
    mlp: LoadedModel, case: str, error: type[ReceiptsError]
) -> None:
    honest = _issue(mlp, _request(mlp)).receipt
    # The request the table binds against names the provider and allows exactly the amount.
    signed = _request(mlp, provider=honest.provider, max_amount=honest.meter.amount)
    receipt = replace(honest, request=signed.id)
    check_binding(signed, receipt)  # the boundary itself binds
    other = _request(mlp, random_bytes=seeded(99))
    with pytest.raises(error) as raised:
        check_binding(signed, _hostile_receipts(signed, other)[case](receipt))
    assert raised.type is error
    assert "\n" not in str(raised.value)


def test_a_request_is_open_until_its_expiry(mlp: LoadedModel) -> None:
    request = _request(mlp).request
    check_request_open(request, EXPIRES - 1)
    with pytest.raises(ExpiredError):
        check_request_open(request, EXPIRES)


# --- the provider refuses what the request does not cover ----------------------------------


PROVIDER_REFUSALS: dict[str, tuple[dict[str, Any], dict[str, Any], type[ReceiptsError]]] = {
    "expired": ({}, {"now": EXPIRES}, ExpiredError),
    "other_model": ({"models": [OTHER_MODEL]}, {}, BindingError),
    "other_inputs": ({"inputs": "OTHER"}, {}, BindingError),
    "other_provider": ({"provider": "OTHER"}, {}, BindingError),
    "other_asset": ({"asset": "usd-cent"}, {}, BindingError),
    "over_max": ({"max_amount": 10}, {}, BindingError),
}


@pytest.mark.parametrize(
    ("terms", "setting", "error"), PROVIDER_REFUSALS.values(), ids=PROVIDER_REFUSALS
)
def test_the_provider_refuses_before_running_or_signing(
    mlp: LoadedModel,
    terms: dict[str, Any],
    setting: dict[str, Any],
    error: type[ReceiptsError],
) -> None:
    if terms.get("inputs") == "OTHER":
        terms = {**terms, "inputs": _inputs_digest(mlp, _other_inputs())}
    if terms.get("provider") == "OTHER":
        terms = {**terms, "provider": fixture_public("other_ed25519").key_id}
    spy = Spy()
    session = _provider(spy, **setting).session(mlp)
    with pytest.raises(error) as raised:
        session.run(fixture_inputs("mlp"), request=_request(mlp, **terms))
    assert raised.type is error
    assert (spy.runs, spy.signs) == (0, 0)


def test_over_max_names_both_amounts(mlp: LoadedModel) -> None:
    session = _provider(price=Price(unit_price=1, asset="credit")).session(mlp)
    units = session.meter_plan.units(TensorMapDigest.of(fixture_inputs("mlp")).tensor_shapes())
    with pytest.raises(BindingError, match=f"amount {units} credit is over .* maximum of 10$"):
        session.run(fixture_inputs("mlp"), request=_request(mlp, max_amount=10))


def test_a_request_that_expires_during_the_run_is_not_signed(mlp: LoadedModel) -> None:
    class Ticking:
        """The time is NOW when the provider admits the request, the expiry when it signs."""

        def __init__(self) -> None:
            self.times = iter([NOW, EXPIRES])

        def now_ms(self) -> int:
            return next(self.times)

    spy = Spy()
    provider = Provider(spy, clock=Ticking(), random_bytes=seeded(5), runner_factory=spy.runner)
    with pytest.raises(ExpiredError):
        provider.session(mlp).run(fixture_inputs("mlp"), request=_request(mlp))
    assert (spy.runs, spy.signs) == (1, 0)


def test_without_a_request_the_receipt_names_none(mlp: LoadedModel) -> None:
    assert _provider().session(mlp).run(fixture_inputs("mlp")).receipt.request is None


# --- the command line -----------------------------------------------------------------------

MODEL = str(FIXTURES / "models" / "mlp.onnx")
OTHER_MODEL_FILE = str(FIXTURES / "models" / "convnet.onnx")
INPUTS = str(FIXTURES / "inputs" / "mlp.npz")
PROVIDER_KEY = str(FIXTURES / "keys" / "provider_ed25519.pem")
PROVIDER_PUB = str(FIXTURES / "keys" / "provider_ed25519.pem.pub")


def invoke(*args: str, now: int = NOW) -> Result:
    effects = {"clock": FixedClock(now), "random_bytes": seeded(21)}
    result = CliRunner().invoke(cli, list(args), obj=effects)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def payer_key(tmp_path: Path) -> Path:
    path = tmp_path / "payer.pem"
    PAYER.save(path)
    return path


def _make(tmp_path: Path, payer_key: Path, *extra: str) -> Path:
    out = tmp_path / "req.rreq"
    args = ["request", MODEL, "--input", INPUTS, "--payer-key", str(payer_key)]
    result = invoke(*args, "--asset", "credit", "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return out


def _run(tmp_path: Path, request: Path, *extra: str, now: int = NOW) -> Result:
    out = str(tmp_path / "out")
    args = ["run", MODEL, "--input", INPUTS, "--key", PROVIDER_KEY, "--out", out]
    return invoke(*args, "--request", str(request), *extra, now=now)


def test_cli_request_then_run_binds_the_receipt(tmp_path: Path, payer_key: Path) -> None:
    extra = [
        "--max-amount",
        "100000",
        "--provider",
        PROVIDER_PUB,
        "--allow-model",
        OTHER_MODEL_FILE,
    ]
    path = _make(tmp_path, payer_key, *extra)
    signed = read_request(path.read_bytes(), trusted=(PAYER.public_key,))
    assert signed.request.expires_at == NOW + 3600 * 1000
    assert signed.request.provider == fixture_public().key_id
    assert len(signed.request.models) == 2
    result = _run(tmp_path, path, "--unit-price", "1")
    assert result.exit_code == 0, result.output
    assert f"request      {signed.id}" in result.stdout
    envelope = Envelope.from_bytes((tmp_path / "out" / RECEIPT_FILE).read_bytes())
    check_binding(signed, Receipt.decode(envelope.payload))


def test_cli_request_is_reproducible_under_pinned_effects(tmp_path: Path, payer_key: Path) -> None:
    first = _make(tmp_path, payer_key, "--max-amount", "5").read_bytes()
    assert _make(tmp_path, payer_key, "--max-amount", "5").read_bytes() == first


def test_cli_run_over_the_maximum_exits_1_and_writes_nothing(
    tmp_path: Path, payer_key: Path
) -> None:
    path = _make(tmp_path, payer_key, "--max-amount", "10")
    result = _run(tmp_path, path, "--unit-price", "1")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1
    assert "over the request's maximum of 10" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_run_after_expiry_exits_1(tmp_path: Path, payer_key: Path) -> None:
    path = _make(tmp_path, payer_key, "--max-amount", "100000", "--expires-in", "60")
    result = _run(tmp_path, path, now=NOW + 60_000)
    assert result.exit_code == 1
    assert "expired" in result.stderr


@pytest.mark.parametrize("content", [b"", b"\x81\xa1a\x01", b"not msgpack at all"])
def test_cli_malformed_request_file_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.rreq"
    bad.write_bytes(content)
    result = _run(tmp_path, bad)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("receipts: error:")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_request_refuses_a_bad_asset_with_exit_2(tmp_path: Path, payer_key: Path) -> None:
    args = ["request", MODEL, "--input", INPUTS, "--payer-key", str(payer_key)]
    out = tmp_path / "r.rreq"
    result = invoke(*args, "--max-amount", "1", "--asset", "", "--out", str(out))
    assert result.exit_code == 2
    assert "asset must be" in result.stderr
    assert not out.exists()


def test_cli_request_names_the_ledger_that_may_hold_it(tmp_path: Path, payer_key: Path) -> None:
    path = _make(tmp_path, payer_key, "--max-amount", "7", "--ledger", "example.com/ledger")
    assert read_request(path.read_bytes()).request.ledger == "example.com/ledger"
    text = invoke("inspect", str(path))
    assert "ledger       example.com/ledger" in text.stdout
    view = json.loads(invoke("inspect", str(path), "--json").stdout)
    assert view["request"]["ledger"] == "example.com/ledger"


def test_cli_inspect_shows_a_request(tmp_path: Path, payer_key: Path) -> None:
    path = _make(tmp_path, payer_key, "--max-amount", "7")
    text = invoke("inspect", str(path))
    assert text.exit_code == 0, text.output
    assert "signature NOT checked" in text.stdout
    assert "provider     any" in text.stdout
    assert "ledger       none" in text.stdout  # no ledger may hold it
    view = invoke("inspect", str(path), "--json")
    assert view.exit_code == 0
    signed = read_request(path.read_bytes())
    parsed = json.loads(view.stdout)
    assert parsed["request_id"] == str(signed.id)
    assert parsed["request"]["max_amount"] == 7
    assert parsed["request"]["provider"] is None
