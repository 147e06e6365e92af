"""A dispute between two processes: the provider answers each message with `receipts
dispute-answer`, a separate process that sees only the message file, its receipt, model, inputs,
trace and key; the challenger drives the bisection from this process and packages the evidence."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fixtures.models import sample_inputs
from receipts.digests import TensorMapDigest
from receipts.dispute import (
    Challenger,
    Reply,
    Responder,
    dispute_locally,
    read_message,
    run_local,
)
from receipts.envelope import Envelope
from receipts.errors import DigestMismatchError, DisputeError, EvidenceError
from receipts.evidence import Evidence, read_opening
from receipts.graph import GraphView
from receipts.opening import open_node
from receipts.referee import PROVIDER_FAULT, Referee
from receipts.tensorfiles import save_npz
from receipts.tracing import Tracer
from tests.conftest import FIXTURES, fixture_key
from tests.tracekit import challenger_key, fixture_loaded, issue, model_path, referee_key

MODEL = "convnet"


def _answer_in_a_process(
    tmp_path: Path, receipt: Path, trace: Path, inputs: Path
) -> Callable[[bytes], Reply | None]:
    """A function the challenger calls per message; each call is one provider process."""
    calls = iter(range(1, 1000))

    def answer(data: bytes) -> Reply | None:
        n = next(calls)
        message, reply = tmp_path / f"m{n}.msg", tmp_path / f"r{n}.msg"
        message.write_bytes(data)
        done = subprocess.run(
            [
                sys.executable, "-m", "cli", "dispute-answer", str(message),
                "--receipt", str(receipt), "--model", str(model_path(MODEL)),
                "--input", str(inputs), "--trace", str(trace),
                "--key", str(FIXTURES / "keys" / "provider_ed25519.pem"), "--out", str(reply),
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        if not reply.exists():
            return None
        opening = reply.with_name(reply.name + ".opening")
        found = read_opening(opening)[1] if opening.exists() else None
        return Reply(signed=read_message(reply.read_bytes()), opening=found)

    return answer


@pytest.mark.slow
def test_a_provider_answering_from_its_own_process_is_found_at_fault(tmp_path: Path) -> None:
    model, inputs = fixture_loaded(MODEL), sample_inputs(MODEL)
    traced = issue(model, inputs, tmp_path / "run", fault="relu2")
    save_npz(tmp_path / "inputs.npz", inputs)
    mine = Tracer(model, traced.receipt.runtime.settings).run(model.check_inputs(inputs)).leaves()
    challenger = Challenger(traced.receipt, traced.rid, mine, challenger_key())
    answer = _answer_in_a_process(tmp_path, tmp_path / "run" / "receipt.rcpt", traced.path,
                                  tmp_path / "inputs.npz")  # fmt: skip
    result = run_local(challenger, answer)
    node = model.proto.graph.node[result.index]
    assert node.name == "relu2"
    provider_key = fixture_key().public_key
    signers = [read_message(m).envelope.signature.public_key for m in result.transcript]
    roles = [read_message(m).message.role for m in result.transcript]
    assert {s for s, r in zip(signers, roles, strict=True) if r == "provider"} == {provider_key}
    evidence = Evidence(
        receipt=traced.data,
        challenger=challenger_key().public_key,
        index=result.index,
        claim=result.claim,
        opening=result.opening,
        transcript=result.transcript,
    )
    evidence.write(tmp_path / "e.revd")
    strict = Referee(
        referee_key(), trusted_providers=(provider_key,), require_provider_signatures=True
    )
    ruling = strict.judge(Evidence.read(tmp_path / "e.revd"), model)
    assert ruling.ruling.verdict == PROVIDER_FAULT
    assert ruling.ruling.provider_messages == "provider-signed"


def test_an_opening_that_is_not_the_one_named_is_refused(tmp_path: Path) -> None:
    """The challenger checks the opening it is handed against the digest the provider signed:
    the same node opened from another (honest) trace is refused."""
    model, inputs = fixture_loaded(MODEL), sample_inputs(MODEL)
    traced = issue(model, inputs, tmp_path / "run", fault="relu2")
    honest = issue(model, inputs, tmp_path / "honest")
    checked = model.check_inputs(inputs)
    mine = Tracer(model, traced.receipt.runtime.settings).run(checked).leaves()
    challenger = Challenger(traced.receipt, traced.rid, mine, challenger_key())
    view = GraphView(model)
    with traced.reader() as reader, honest.reader() as other:
        responder = Responder(
            traced.receipt, traced.rid, reader, fixture_key(), view=view, inputs=checked
        )

        def answer(data: bytes) -> Reply | None:
            reply = responder.answer(data)
            if reply is None or reply.opening is None:
                return reply
            swapped = open_node(other, view, reply.opening.index, checked)
            return Reply(signed=reply.signed, opening=swapped)

        with pytest.raises(DisputeError, match="not the one its message names"):
            run_local(challenger, answer)


def test_a_strict_referee_refuses_relayed_transcripts_and_strangers(tmp_path: Path) -> None:
    """The local driver relays the provider's answers under the challenger's key: the ruling
    says so, and a referee that requires the provider's signatures, or trusts only other
    providers, rules nothing."""
    model, inputs = fixture_loaded(MODEL), sample_inputs(MODEL)
    traced = issue(model, inputs, tmp_path / "run", fault="relu2")
    with traced.reader() as reader:
        local = dispute_locally(traced.data, model, inputs, reader, challenger_key())
    assert Referee(referee_key()).judge(local.evidence, model).ruling.provider_messages == (
        "relayed"
    )
    with pytest.raises(EvidenceError, match=r"\(j3\) the provider's messages were relayed"):
        Referee(referee_key(), require_provider_signatures=True).judge(local.evidence, model)
    stranger = fixture_key("other_ed25519").public_key
    with pytest.raises(EvidenceError, match="not a trusted provider key"):
        Referee(referee_key(), trusted_providers=(stranger,)).judge(local.evidence, model)


def test_a_receipt_contradicting_its_own_trace_is_refused_before_bisecting(
    tmp_path: Path,
) -> None:
    """Outputs re-signed to differ from what the trace commits to: no dispute is needed."""
    model, inputs = fixture_loaded(MODEL), sample_inputs(MODEL)
    traced = issue(model, inputs, tmp_path / "run")
    envelope = Envelope.from_bytes(traced.data)
    wrong = {name: np.asarray(v) + 1 for name, v in traced.outputs.items()}
    receipt = replace(traced.receipt, outputs=TensorMapDigest.of(wrong))
    data = Envelope.sign(envelope.payload_type, receipt.encode(), fixture_key()).to_bytes()
    with (
        traced.reader() as reader,
        pytest.raises(DigestMismatchError, match="the receipt contradicts its own trace"),
    ):
        dispute_locally(data, model, inputs, reader, challenger_key())
