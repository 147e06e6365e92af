"""``make demo``, TEE part: an attested receipt accepted, forged ones refused, a real document.

Called from ``cli.demo`` after settlement. The enclave is the SIMULATOR (a drill CA stands in for
AWS's root; nothing here ran in an enclave); the last steps verify a real AWS Nitro document at
its own timestamp and show it refused today, when its certificates have expired.

    tee(work, key, step)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from receipts.envelope import Envelope
from receipts.nitro_sim import simulated_pcrs

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "models" / "mlp.onnx"
INPUTS = ROOT / "fixtures" / "inputs" / "mlp.npz"
REAL = ROOT / "fixtures" / "nitro" / "real-attestation-2022-07-26.cbor"
AWS_ROOT = ROOT / "fixtures" / "nitro" / "aws-nitro-enclaves-root-g1.pem"
Step = Callable[..., str]


def tee(work: Path, key: Path, step: Step) -> None:
    t = work / "tee"
    t.mkdir()
    sim, attacker = t / "sim-root", t / "attacker-root"
    step(
        "42. TEE: a drill CA stands in for the AWS Nitro root", "attestation", "sim-init", str(sim)
    )
    good = t / "attested"
    step(
        "43. the provider runs in the (simulated) enclave; the document's user_data is the "
        "receipt id",
        "run", str(MODEL), "--input", str(INPUTS), "--key", str(key), "--out", str(good),
        "--attest-sim", str(sim),
    )  # fmt: skip
    # The expected measurement comes from building the enclave image (nitro-cli prints PCR0).
    pcr0 = simulated_pcrs("inference-receipts-provider")[0].hex()
    receipt = str(good / "receipt.rcpt")
    pinned = ["--provider", f"{key}.pub", "--tee-root", str(sim / "root.pem"), "--pcr", f"0={pcr0}"]
    step("44. verifier pins the root and PCR0: release", "verify", receipt, *pinned)
    forged = t / "forged"
    step(
        "45. FORGERY: the same key signs another run outside the enclave",
        "run", str(MODEL), "--input", str(INPUTS), "--key", str(key), "--out", str(forged),
        "--unit-price", "1",
    )  # fmt: skip
    # The forger copies the genuine receipt's attestation onto its own receipt file.
    document = Envelope.from_bytes((good / "receipt.rcpt").read_bytes()).attachments[0]
    copied = Envelope.from_bytes((forged / "receipt.rcpt").read_bytes()).attach(document)
    (forged / "receipt.rcpt").write_bytes(copied.to_bytes())
    step(
        "46. ... and attaches the genuine attestation: refused (it binds another receipt)",
        "verify", str(forged / "receipt.rcpt"), *pinned, expect=1,
    )  # fmt: skip
    step("47. FORGERY: an attacker makes its own CA", "attestation", "sim-init", str(attacker))
    fake = t / "fake"
    step(
        "48. ... and attests a receipt with it",
        "run", str(MODEL), "--input", str(INPUTS), "--key", str(key), "--out", str(fake),
        "--attest-sim", str(attacker),
    )  # fmt: skip
    step(
        "49. refused: the chain does not reach the pinned root",
        "verify", str(fake / "receipt.rcpt"), *pinned, expect=1,
    )  # fmt: skip
    real = ["attestation", "verify", str(REAL), "--root", str(AWS_ROOT), "--allow-debug"]
    step(
        "50. a REAL AWS Nitro document (a debug enclave, 2022-07-26) at its own timestamp",
        *real, "--at", "1658860752566",
    )  # fmt: skip
    step("51. the same document today: refused (its certificates expired)", *real, expect=1)
