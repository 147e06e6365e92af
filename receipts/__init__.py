"""inference-receipts: signed, checkable receipts for paid ONNX inference.

The library's front door. A provider runs a model under a pinned runtime profile and issues a
signed receipt; a verifier checks it rung by rung (signature, digests, re-execution).

    from receipts import PrivateKey, Provider, Verifier, Policy, load_model
    model = load_model("mlp.onnx")
    issued = Provider(PrivateKey.generate()).session(model).run({"x": x})
    report = Verifier(Policy()).check(issued.to_bytes(), model=model, inputs={"x": x})

Layers, bottom up: codec, digests, tensors, merkle (formats); model, keys, envelope, receipt;
runtime, meter, signature (execution); provider (issuance); verifier, report, tolerance
(verification).
"""

from receipts.digests import Digest, TensorMapDigest, tensor_digest
from receipts.effects import Clock, FixedClock, SystemClock
from receipts.envelope import Envelope, pae
from receipts.errors import (
    DigestMismatchError,
    InputError,
    KeyFileError,
    LimitError,
    MalformedError,
    ModelError,
    NonCanonicalError,
    PolicyError,
    ReceiptsError,
    ReexecutionError,
    RuntimeRefusedError,
    SignatureError,
    TensorError,
    UnsupportedVersionError,
    VerificationError,
)
from receipts.keys import PrivateKey, PublicKey, Signer
from receipts.meter import Meter, MeterPlan, Price
from receipts.model import LoadedModel, load_model, load_model_bytes
from receipts.provider import Issued, ModelSession, Provider
from receipts.receipt import Receipt, receipt_id
from receipts.report import Policy, Report, Status, VerifiedReceipt
from receipts.runtime import OrtRunner, Runner, RuntimeProfile, RuntimeSettings
from receipts.tensorfiles import load_tensors, save_npz
from receipts.tolerance import Tolerance
from receipts.verifier import Verifier

__all__ = [
    "Clock",
    "Digest",
    "DigestMismatchError",
    "Envelope",
    "FixedClock",
    "InputError",
    "Issued",
    "KeyFileError",
    "LimitError",
    "LoadedModel",
    "MalformedError",
    "Meter",
    "MeterPlan",
    "ModelError",
    "ModelSession",
    "NonCanonicalError",
    "OrtRunner",
    "Policy",
    "PolicyError",
    "Price",
    "PrivateKey",
    "Provider",
    "PublicKey",
    "Receipt",
    "ReceiptsError",
    "ReexecutionError",
    "Report",
    "Runner",
    "RuntimeProfile",
    "RuntimeRefusedError",
    "RuntimeSettings",
    "SignatureError",
    "Signer",
    "Status",
    "SystemClock",
    "TensorError",
    "TensorMapDigest",
    "Tolerance",
    "UnsupportedVersionError",
    "VerificationError",
    "VerifiedReceipt",
    "Verifier",
    "load_model",
    "load_model_bytes",
    "load_tensors",
    "pae",
    "receipt_id",
    "save_npz",
    "tensor_digest",
]
