"""``make demo``, part two: settlement end to end through the real command line, narrated.

A payer deposits and signs four requests; the ledger holds them; the provider runs each bound to
its request and claims payment; a replayed claim is refused; one run was the fault drill, so the
payer disputes it with a referee's ruling and gets a refund plus part of the provider's bond;
the other three are released when their window closes. Then the log signs a checkpoint, proves
an entry and its growth, and three auditors co-sign the settlement batch (two of three suffice).

    from cli.demo_settle import settlement; settlement(work, provider_key, step)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "demo.example/ledger"
MODEL = str(ROOT / "fixtures" / "models" / "convnet.onnx")
INPUTS = str(ROOT / "fixtures" / "inputs" / "convnet.npz")
Step = Callable[..., str]
WINDOW_S = 30  # long enough to dispute run 4 in the demo, short enough to wait for


def settlement(work: Path, key: Path, referee: Path, step: Step) -> None:
    s = work / "settle"
    s.mkdir()
    payer, log_key, db = s / "payer.pem", s / "log.pem", str(s / "ledger.db")
    step("15. SETTLEMENT: a payer and the ledger's log make keys", "keygen", str(payer))
    step("16. (the log key signs checkpoints)", "keygen", str(log_key))
    step(
        f"17. the ledger opens: {WINDOW_S} s challenge window, 250000 slashed on a proven fault",
        "ledger", "init", db, "--origin", ORIGIN, "--window", str(WINDOW_S),
        "--slash", "250000", "--referee", f"{referee}.pub",
    )  # fmt: skip
    step("18. the payer deposits", "ledger", "deposit", db, "--account", f"{payer}.pub",
         "--amount", "10000000", "--asset", "credit")  # fmt: skip
    step("19. the provider posts a bond", "ledger", "bond", db, "--account", f"{key}.pub",
         "--amount", "1000000", "--asset", "credit")  # fmt: skip
    receipts, windows_close = [], 0.0
    for n in range(1, 5):
        req, out = str(s / f"r{n}.rreq"), s / f"run{n}"
        step(f"20.{n} the payer signs request {n} (at most 2000000 credit)", "request", MODEL,
             "--input", INPUTS, "--payer-key", str(payer), "--max-amount", "2000000",
             "--asset", "credit", "--provider", f"{key}.pub", "--ledger", ORIGIN,
             "--out", req)  # fmt: skip
        step(f"21.{n} the ledger holds it in escrow", "ledger", "hold", db, req)
        drill = ["--trace", "--inject-fault", "relu2"] if n == 4 else []
        what = "runs the FAULT DRILL" if n == 4 else "runs it"
        step(f"22.{n} the provider {what}, bound to the request", "run", MODEL, "--input",
             INPUTS, "--key", str(key), "--out", str(out), "--unit-price", "3", "--base-fee",
             "1000", "--asset", "credit", "--request", req, *drill)  # fmt: skip
        receipts.append(out / "receipt.rcpt")
        step(f"23.{n} the provider claims; the ledger checks signature, digests and meter",
             "ledger", "claim", db, str(out / "receipt.rcpt"), "--model", MODEL)  # fmt: skip
        if n == 3:
            windows_close = time.monotonic() + WINDOW_S + 1
    step("24. the same receipt claimed again: refused", "ledger", "claim", db, str(receipts[0]),
         "--model", MODEL, expect=1)  # fmt: skip
    faulty, evidence, ruling = s / "run4", s / "evidence4.revd", s / "ruling4.rrul"
    step("25. the payer disputes run 4 by bisection", "dispute", str(faulty / "receipt.rcpt"),
         "--model", MODEL, "--input", INPUTS, "--trace", str(faulty / "trace.rtrc"),
         "--key", str(payer), "--out", str(evidence))  # fmt: skip
    step("26. the payer opens the dispute with its evidence (a ruling is now due)", "ledger",
         "dispute", db, str(faulty / "receipt.rcpt"), "--evidence", str(evidence),
         "--payer-key", str(payer))  # fmt: skip
    step("27. the referee rules", "judge", str(evidence), "--model", MODEL, "--key",
         str(referee), "--out", str(ruling))  # fmt: skip
    step("28. the ruling settles it: refund, bond slashed", "ledger", "dispute", db,
         str(faulty / "receipt.rcpt"), "--ruling", str(ruling))  # fmt: skip
    wait = max(0.0, windows_close - time.monotonic())
    print(f"\n(waiting {wait:.0f} s for the other three challenge windows to close)")
    time.sleep(wait)
    step("29. the windows closed; the other three are released", "ledger", "settle", db)
    step("30. balances (conservation checked)", "ledger", "balances", db)
    step("31. the ledger rebuilt from its log alone", "ledger", "audit", db)
    log_proofs(s, db, log_key, step)


def log_proofs(s: Path, db: str, log_key: Path, step: Step) -> None:
    cp, proof = s / "checkpoint.txt", s / "entry3.tlog-proof"
    step("32. the log signs a checkpoint (C2SP)", "log", "checkpoint", db, "--key",
         str(log_key), "--out", str(cp))  # fmt: skip
    step("33. an inclusion proof of entry 3 (the first hold)", "log", "prove", db,
         "--entry", "3", "--out", str(proof))  # fmt: skip
    step("34. anyone verifies it with the log's public key", "log", "verify", str(proof),
         "--log-key", f"{log_key}.pub")  # fmt: skip
    auditors = [s / f"auditor{n}.pem" for n in (1, 2, 3)]
    for n, auditor in enumerate(auditors, 1):
        step(f"35.{n} auditor {n} makes a BLS12-381 key", "keygen", "--scheme", "bls12-381",
             str(auditor))  # fmt: skip
    committee, batch = s / "committee.json", s / "batch.rbat"
    step("36. the committee file (proofs of possession checked)", "batch", "committee",
         *[f"{a}.pub" for a in auditors], "--out", str(committee))  # fmt: skip
    step("37. the settlement batch up to the checkpoint", "batch", "make", db, "--out",
         str(batch))  # fmt: skip
    sigs = []
    for n, auditor in enumerate(auditors[:2], 1):
        sig = s / f"batch.auditor{n}.sig"
        step(f"38.{n} auditor {n} re-checks the batch and co-signs", "batch", "cosign",
             str(batch), "--bls-key", str(auditor), "--log-key", f"{log_key}.pub",
             "--out", str(sig))  # fmt: skip
        sigs.append(str(sig))
    cosigned = s / "batch.cosigned"
    step("39. the co-signatures aggregate into one", "batch", "aggregate", str(batch), *sigs,
         "--out", str(cosigned))  # fmt: skip
    step("40. verified against the committee, 2 of 3, reconciled with the ledger", "batch",
         "verify", str(cosigned), "--committee", str(committee), "--threshold", "2",
         "--log-key", f"{log_key}.pub", "--db", db)  # fmt: skip
    step("41. three of three required: refused", "batch", "verify", str(cosigned),
         "--committee", str(committee), "--threshold", "3", "--log-key", f"{log_key}.pub",
         expect=1)  # fmt: skip
