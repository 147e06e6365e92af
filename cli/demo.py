"""``make demo``: the main job end to end through the real command line, narrated.

A provider makes a key, digests a model, runs it and issues a receipt; a verifier checks the
receipt on every rung and releases; then a flipped output bit and an unexpected provider key are
refused. Last, a fault drill: a provider that corrupts one node of a traced run is caught by the
spot check, disputed down to that node by bisection, and ruled ``provider-fault`` by a referee.
Then settlement (``cli.demo_settle``): requests held in escrow, claims, a refund with a slashed
bond after a ruling, releases, a signed checkpoint with proofs, and a co-signed batch.
Then the tee rung (``cli.demo_tee``): a receipt attested by the Nitro simulator accepted with its
root and PCR0 pinned, two forgeries refused, and a real AWS Nitro document verified at its time.
Then the zk rung (``cli.demo_zk``): an integer model compiled to a circuit, Groth16 keys set up
from a development powers-of-tau file under a signed manifest, a receipt proven, accepted on its
proof alone (no model, pure Python) and refused with a tampered output file.
Last of all, an audit (``cli.demo_audit``): two providers' receipts filed in a content-addressed
store, one faulted by the drill, re-executed and found; the HTML report is kept in
``demo-audit.html``.
Each step is the ``receipts`` command a user would type, run as a separate process.

    python -m cli.demo [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cli.demo_audit import audit_part
from cli.demo_settle import settlement
from cli.demo_tee import tee
from cli.demo_zk import zero_knowledge

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "models" / "convnet.onnx"
INPUTS = ROOT / "fixtures" / "inputs" / "convnet.npz"


def step(title: str, *args: str, expect: int = 0) -> str:
    """Run ``receipts ARGS``, echo it and its output, and check the exit code."""
    print(f"\n== {title}\n$ receipts {' '.join(shlex.quote(a) for a in args)}")
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, check=False
    )
    print((done.stdout + done.stderr).rstrip())
    print(f"[exit {done.returncode}]")
    if done.returncode != expect:
        sys.exit(f"demo: expected exit {expect}, got {done.returncode}")
    return done.stdout


def demo(work: Path) -> Path:
    """Every step in ``work``; returns the audit's HTML report."""
    key, out = work / "provider.pem", work / "out"
    step("1. provider makes an Ed25519 key", "keygen", str(key))
    step(
        "2. anyone digests the model (Merkle root over structure and weights)", "digest", str(MODEL)
    )
    step(
        "3. provider runs the model and issues a signed receipt",
        "run",
        str(MODEL),
        "--input",
        str(INPUTS),
        "--key",
        str(key),
        "--out",
        str(out),
        "--unit-price",
        "3",
        "--base-fee",
        "1000",
        "--asset",
        "credit",
    )
    receipt, outputs = str(out / "receipt.rcpt"), str(out / "outputs.npz")
    step(
        "4. verifier checks signature, digests, meter and re-execution: release",
        "verify",
        receipt,
        "--model",
        str(MODEL),
        "--input",
        str(INPUTS),
        "--output",
        outputs,
        "--provider",
        f"{key}.pub",
    )
    tampered = dict(np.load(outputs))
    first = next(iter(tampered))
    tampered[first].view(np.uint8).reshape(-1)[0] ^= 1
    np.savez(work / "tampered.npz", **tampered)
    step(
        "5. one flipped output bit: refused",
        "verify",
        receipt,
        "--output",
        str(work / "tampered.npz"),
        "--provider",
        f"{key}.pub",
        expect=1,
    )
    step("6. another key appears", "keygen", str(work / "other.pem"))
    step(
        "7. a verifier that trusts only that key: refused",
        "verify",
        receipt,
        "--provider",
        str(work / "other.pem.pub"),
        expect=1,
    )
    step("8. the receipt, decoded", "inspect", receipt)
    drill(work, key)
    settlement(work, key, work / "referee.pem", step)
    tee(work, key, step)
    zero_knowledge(work, key, step)
    html = audit_part(work, key, step, MODEL, INPUTS)
    print(
        "\ndemo: every step behaved as expected (release once, refuse twice; the faulted "
        "provider caught by the spot check, disputed, and ruled provider-fault; four requests "
        "settled: three released, the drill refunded with its bond slashed; the log proved and "
        "the batch co-signed; an attested receipt accepted, two forged attestations refused, "
        "and a real AWS Nitro document verified at its own time and refused today; a receipt "
        "accepted on its zero-knowledge proof alone and refused with a tampered output; an "
        "audit of two providers' receipts found the drill's faulted one)."
    )
    return html


def drill(work: Path, key: Path) -> None:
    """The fault drill: a provider corrupts one node, and the audit pipeline catches it."""
    bad = work / "drill"
    model, inputs = str(MODEL), str(INPUTS)
    step(
        "9. DRILL: a traced run whose provider corrupts node 'relu2' (honest model digest)",
        "run", model, "--input", inputs, "--key", str(key), "--out", str(bad),
        "--trace", "--inject-fault", "relu2",
    )  # fmt: skip
    receipt, trace = str(bad / "receipt.rcpt"), str(bad / "trace.rtrc")
    step(
        "10. verifier spot-checks 10 sampled nodes of the committed trace: refused",
        "spot-check", receipt, "--model", model, "--input", inputs, "--trace", trace,
        "--samples", "10", "--seed", "demo", "--provider", f"{key}.pub",
        expect=1,
    )  # fmt: skip
    challenger, referee = work / "challenger.pem", work / "referee.pem"
    step("11. a challenger makes a key", "keygen", str(challenger))
    step("12. so does a referee", "keygen", str(referee))
    evidence, ruling = work / "evidence.revd", work / "ruling.rrul"
    step(
        "13. the challenger recomputes the trace and bisects against the provider's",
        "dispute", receipt, "--model", model, "--input", inputs, "--trace", trace,
        "--key", str(challenger), "--out", str(evidence),
    )  # fmt: skip
    step(
        "14. the referee re-runs the one disputed operator and rules",
        "judge", str(evidence), "--model", model, "--key", str(referee), "--out", str(ruling),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp folder)")
    parser.add_argument(
        "--report", type=Path, default=Path("demo-audit.html"),
        help="where to keep the audit's HTML report (replaced on each run)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        html = demo(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="receipts-demo-") as tmp:
            html = demo(Path(tmp))
            shutil.copyfile(html, args.report)
            html = args.report
    print(f"The audit report, one self-contained file to open in a browser: {html.resolve()}")


if __name__ == "__main__":
    main()
