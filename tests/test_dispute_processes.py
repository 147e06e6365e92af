"""A dispute between two processes: the provider answers each message with `receipts
dispute-answer`, a separate process that sees only the message file, its receipt, model, inputs,
trace and key; the challenger drives the bisection from this process and packages the evidence."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.models import sample_inputs
from receipts.dispute import Challenger, Reply, Responder, read_message, run_local
from receipts.errors import DisputeError
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
    ruling = Referee(referee_key()).judge(Evidence.read(tmp_path / "e.revd"), model)
    assert ruling.ruling.verdict == PROVIDER_FAULT


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
