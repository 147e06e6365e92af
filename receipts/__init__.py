"""inference-receipts: signed, checkable receipts for paid ONNX inference.

The library's front door. A provider runs a model under a pinned runtime profile and issues a
signed receipt; a verifier checks it rung by rung (signature, digests, re-execution).

    from receipts import PrivateKey, Provider, Verifier, Policy, load_model
    model = load_model("mlp.onnx")
    issued = Provider(PrivateKey.generate()).session(model).run({"x": x})
    report = Verifier(Policy()).check(issued.to_bytes(), model=model, inputs={"x": x})

Layers, bottom up: codec, digests, tensors, merkle, frames (formats); model, keys, envelope,
receipt, trace, evidence; runtime, meter, signature, graph, tracing (execution); provider
(issuance); verifier, report, tolerance, opening, operator, freivalds, spotcheck (verification);
dispute, referee (disputes).
"""

from receipts.digests import Digest, TensorMapDigest, tensor_digest
from receipts.dispute import dispute_locally
from receipts.effects import Clock, FixedClock, SystemClock
from receipts.envelope import Envelope, pae
from receipts.errors import (
    DigestMismatchError,
    DisputeError,
    EvidenceError,
    InputError,
    KeyFileError,
    LimitError,
    MalformedError,
    ModelError,
    NonCanonicalError,
    NothingToDispute,
    OpeningError,
    PolicyError,
    ReceiptsError,
    ReexecutionError,
    RuntimeRefusedError,
    SignatureError,
    SpotCheckError,
    TensorError,
    TraceError,
    UnsupportedVersionError,
    VerificationError,
)
from receipts.evidence import Evidence
from receipts.keys import PrivateKey, PublicKey, Signer
from receipts.meter import Meter, MeterPlan, Price
from receipts.model import LoadedModel, load_model, load_model_bytes
from receipts.provider import Issued, ModelSession, Provider
from receipts.receipt import Receipt, receipt_id
from receipts.referee import Referee, Ruling, read_ruling
from receipts.report import Policy, Report, Status, VerifiedReceipt
from receipts.runtime import OrtRunner, Runner, RuntimeProfile, RuntimeSettings
from receipts.tensorfiles import load_tensors, save_npz
from receipts.tolerance import Tolerance
from receipts.trace import TraceReader
from receipts.verifier import Verifier

__all__ = [
    "Clock",
    "Digest",
    "DigestMismatchError",
    "DisputeError",
    "Envelope",
    "Evidence",
    "EvidenceError",
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
    "NothingToDispute",
    "OpeningError",
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
    "Referee",
    "Report",
    "Ruling",
    "Runner",
    "RuntimeProfile",
    "RuntimeRefusedError",
    "RuntimeSettings",
    "SignatureError",
    "Signer",
    "SpotCheckError",
    "Status",
    "SystemClock",
    "TensorError",
    "TensorMapDigest",
    "Tolerance",
    "TraceError",
    "TraceReader",
    "UnsupportedVersionError",
    "VerificationError",
    "VerifiedReceipt",
    "Verifier",
    "dispute_locally",
    "load_model",
    "load_model_bytes",
    "load_tensors",
    "pae",
    "read_ruling",
    "receipt_id",
    "save_npz",
    "tensor_digest",
]
