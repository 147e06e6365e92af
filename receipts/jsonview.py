"""JSON views of receipts, model digests, reports, rulings and attestations (``--json``, services).

Presentation only: bytes become hex, digests ``sha256:<hex>``; nothing here is signed or parsed
back. The signed form is always the canonical msgpack payload.

    json.dumps(receipt_json(receipt))
    json.dumps(report_json(report))
"""

from __future__ import annotations

from typing import Any

from receipts.digests import (
    Digest,
    Entry,
    SequenceEntry,
    TensorEntry,
    TensorMapDigest,
    digest_of,
)
from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope
from receipts.events import AnyEvent, decode_key
from receipts.model import LoadedModel
from receipts.nitro import SignedDocument, pcr_hex
from receipts.receipt import Receipt
from receipts.referee import RULING_PAYLOAD_TYPE, Ruling
from receipts.report import Report
from receipts.request import REQUEST_PAYLOAD_TYPE

_PAYLOAD_TYPES = {
    "receipt": RECEIPT_PAYLOAD_TYPE,
    "request": REQUEST_PAYLOAD_TYPE,
    "ruling": RULING_PAYLOAD_TYPE,
}


def tensors_json(tensors: TensorMapDigest) -> dict[str, Any]:
    return {"digest": str(tensors.digest), "tensors": [entry_json(e) for e in tensors.entries]}


def entry_json(entry: Entry) -> dict[str, Any]:
    if isinstance(entry, TensorEntry):
        spec = entry.spec
        return {
            "name": spec.name,
            "elem_type": spec.elem_type,
            "shape": list(spec.shape),
            "digest": str(entry.digest),
        }
    if isinstance(entry, SequenceEntry):
        return {
            "name": entry.name,
            "kind": "sequence",
            "digest": str(entry.digest),
            "items": [entry_json(item) for item in entry.items],
        }
    return {"name": entry.name, "kind": "none", "digest": str(entry.digest)}


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "receipt",
        "version": 1,
        "provider": receipt.provider.hex(),
        "nonce": receipt.nonce.hex(),
        "issued_at": receipt.issued_at,
        "model": {"digest": str(receipt.model)},
        "inputs": tensors_json(receipt.inputs),
        "outputs": tensors_json(receipt.outputs),
        "runtime": {**receipt.runtime.to_wire(), "identity": str(receipt.runtime.identity)},
        "meter": receipt.meter.to_wire(),
    }
    if receipt.request is not None:
        view["request"] = {"digest": str(receipt.request)}
    if receipt.trace is not None:
        view["trace"] = {"root": str(receipt.trace.root), "nodes": receipt.trace.nodes}
    return view


def ruling_json(ruling: Ruling) -> dict[str, Any]:
    return {
        "type": "ruling",
        "version": 1,
        "verdict": ruling.verdict,
        "reason": ruling.reason,
        "receipt": str(ruling.receipt),
        "evidence": str(ruling.evidence),
        "node": {"index": ruling.node, "name": ruling.node_name, "op": ruling.op},
        "comparison": ruling.comparison,
        "receipt_runtime": str(ruling.receipt_runtime),
        "referee_runtime": str(ruling.referee_runtime),
        "provider_outputs": [entry_json(e) for e in ruling.provider_outputs],
        "recomputed_outputs": [entry_json(e) for e in ruling.recomputed_outputs],
        "challenger_outputs": [entry_json(e) for e in ruling.challenger_outputs],
        "provider_messages": ruling.provider_messages,
        "issued_at": ruling.issued_at,
    }


def model_json(model: LoadedModel) -> dict[str, Any]:
    return {
        "model_digest": str(model.digest),
        "file_sha256": str(model.file_sha256),
        "structure_digest": str(model.model_digest.structure),
        "weights": [
            {
                "path": w.path,
                "name": w.name,
                "elem_type": w.elem_type,
                "shape": list(w.shape),
                "digest": str(w.digest),
            }
            for w in model.weights
        ],
    }


def report_json(report: Report) -> dict[str, Any]:
    return {
        "ok": bool(report),
        "receipt_id": str(report.receipt_id) if report.receipt_id else None,
        "provider_key": report.key.key_id.hex() if report.key else None,
        "key_pinned": report.key_pinned,
        "required": list(report.required),
        "rungs": [
            {
                "rung": rung.rung,
                "status": rung.status.value,
                "steps": [
                    {
                        "step": step.step,
                        "status": step.status.value,
                        "reason": step.reason,
                        "error": type(step.error).__name__ if step.error else None,
                        "details": plain(step.details),
                    }
                    for step in rung.steps
                ],
            }
            for rung in report.rungs
        ],
        "receipt": receipt_json(report.receipt) if report.receipt else None,
    }


def plain(value: object) -> Any:
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def event_json(index: int, event: AnyEvent) -> dict[str, Any]:
    """One log entry for people and scripts: signed bytes shown as their digests."""
    fields: dict[str, Any] = {"index": index, "kind": event.kind, "at": event.at}
    for name, value in event.fields().items():
        if name == "referees" and isinstance(value, list):
            fields[name] = [decode_key(v).key_id.hex() for v in value if isinstance(v, bytes)]
        elif name in _PAYLOAD_TYPES and isinstance(value, bytes) and len(value) > 32:
            fields[name] = str(signed_digest(name, value))
        elif name in ("request", "evidence", "digest") and isinstance(value, bytes):
            fields[name] = str(Digest(value))
        else:
            fields[name] = plain(value)
    return fields


def signed_digest(kind: str, envelope: bytes) -> Digest:
    """The id of a signed record from its envelope bytes (the digest of the exact payload)."""
    return digest_of(kind, Envelope.from_bytes(envelope, payload_type=_PAYLOAD_TYPES[kind]).payload)


def attestation_json(signed: SignedDocument) -> dict[str, Any]:
    """A Nitro document's fields as received (``verified`` is false: nothing is checked)."""
    doc = signed.document
    certificates = [
        {
            "subject": cert.subject.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
        for cert in signed.certificates()
    ]
    return {
        "verified": False,
        "tagged": signed.sign1.tagged,
        "module_id": doc.module_id,
        "digest": doc.digest,
        "timestamp": doc.timestamp,
        "debug": doc.debug,
        "pcrs": pcr_hex(doc.pcrs),
        "certificates": certificates,  # the cabundle (root first), then the leaf
        "public_key": None if doc.public_key is None else doc.public_key.hex(),
        "user_data": None if doc.user_data is None else doc.user_data.hex(),
        "nonce": None if doc.nonce is None else doc.nonce.hex(),
    }
