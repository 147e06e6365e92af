"""``make demo``, zk part: a receipt accepted on its zero-knowledge proof alone, a tampered output
refused.

Called from ``cli.demo`` after the TEE part. The integer model is ``tiny_int`` (uint8 [1, 4] ->
int32 [1, 2], 68 constraints), written into the work folder from ``fixtures.int_models``; the
powers-of-tau file is a 2^7 development file made on the spot (one contributor: never for
production). snarkjs proves; the verifier is pure Python and is given no model.

    zero_knowledge(work, key, step)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from fixtures.int_models import sample_input, tiny_int

Step = Callable[..., str]


def zero_knowledge(work: Path, key: Path, step: Step) -> None:
    z = work / "zk"
    z.mkdir()
    model, inputs = z / "tiny_int.onnx", z / "x.npz"
    onnx.save(tiny_int(), model)
    np.savez(inputs, x=sample_input("tiny_int", 1))
    ptau, circuit, publisher = z / "pot7.ptau", z / "tiny.circuit", z / "publisher.pem"
    made = step(
        "52. ZK: a DEVELOPMENT powers-of-tau file, 2^7 (one contributor; real keys take a "
        "public ceremony's file)",
        "zk", "ptau", "--power", "7", "--out", str(ptau),
    )  # fmt: skip
    digest = made.split()[1]  # the first line: "ptau  sha256:..."
    step(
        "53. the provider compiles its integer model into a circuit (weights are constants)",
        "zk", "compile", str(model), "--out", str(circuit),
    )  # fmt: skip
    step("54. a circuit publisher makes a key", "keygen", str(publisher))
    step(
        "55. the publisher recompiles the model, sets up the Groth16 keys (ptau checked by "
        "digest) and signs the circuit manifest",
        "zk", "setup", str(circuit), "--ptau", str(ptau), "--key", str(publisher),
        "--ptau-digest", digest, "--model", str(model),
    )  # fmt: skip
    out = z / "out"
    step(
        "56. the provider runs the model and issues a receipt",
        "run", str(model), "--input", str(inputs), "--key", str(key), "--out", str(out),
    )  # fmt: skip
    receipt, proven = out / "receipt.rcpt", out / "receipt.zk.rcpt"
    step(
        "57. the provider proves the receipt's outputs and attaches the proof (a new file)",
        "zk", "prove", str(circuit), str(receipt), "--model", str(model), "--input", str(inputs),
        "--out", str(proven),
    )  # fmt: skip
    pinned = ["--publisher", f"{publisher}.pub", "--provider", f"{key}.pub"]
    step(
        "58. verifier checks the receipt on its proof alone (no model, no re-run): release",
        "zk", "verify", str(proven), "--circuit", str(circuit), "--input", str(inputs),
        "--output", str(out / "outputs.npz"), *pinned,
    )  # fmt: skip
    tampered = dict(np.load(out / "outputs.npz"))
    tampered["y"] = tampered["y"] + np.int32(1)
    np.savez(z / "tampered.npz", **tampered)
    step(
        "59. the same receipt with a tampered output file: refused",
        "zk", "verify", str(proven), "--circuit", str(circuit), "--input", str(inputs),
        "--output", str(z / "tampered.npz"), *pinned, expect=1,
    )  # fmt: skip
