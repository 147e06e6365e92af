"""The one exception tree of the library; every failure the library reports is one of these.

Sits under everything: codec, digests, runtime, provider and verifier raise these, and the CLI maps
them to exit codes in one place (``InputError`` -> 2, ``VerificationError`` -> 1).

    try: verify_receipt(data, policy=policy)
    except VerificationError as e: print(e)      # the receipt is well-formed but does not hold

Two branches, by whose fault it is:

* ``InputError``: the bytes or files handed to us are unreadable, malformed, over a limit or
  unsupported. Nothing was verified; nothing can be concluded about the provider.
* ``VerificationError``: the input is well-formed and the evidence is against it (bad signature,
  digest mismatch, outputs that do not reproduce, a policy that is not met).
"""

from __future__ import annotations


class ReceiptsError(Exception):
    """Root of every error this library raises on purpose.

    ``details`` carries machine-readable specifics (observed errors, per-output rows) for
    reports; the message is the one-line reason a person reads.
    """

    def __init__(self, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.details = details


# --- input errors: exit code 2 -------------------------------------------------------------


class InputError(ReceiptsError):
    """The input cannot be read as what it claims to be."""


class MalformedError(InputError):
    """Bytes that do not follow the format (codec profile, schema, invariants)."""


class NonCanonicalError(MalformedError):
    """Bytes that decode but are not the one canonical encoding of their value."""


class UnsupportedVersionError(MalformedError):
    """A record type, format version or payload type this library does not implement."""


class LimitError(InputError):
    """Input over one of the explicit size, count or nesting limits."""


class ModelError(InputError):
    """An ONNX model that cannot be parsed, or whose external data is missing or escapes."""


class TensorError(InputError):
    """A tensor file that cannot be read, or tensors that do not fit the model's signature."""


class KeyFileError(InputError):
    """A key file that is missing, malformed, of an unknown scheme, or would be overwritten."""


class RuntimeRefusedError(InputError):
    """onnxruntime refuses the model or the runtime profile (or the environment overrides it)."""


class ObjectStoreError(InputError):
    """A content-addressed store that cannot be opened or written, or an object it lacks."""


class ObjectMissingError(ObjectStoreError):
    """The store holds no object under the digest asked for."""


class ObjectCorruptError(ObjectStoreError):
    """An object whose bytes no longer give the digest it is filed under."""


class AuditConfigError(MalformedError):
    """An audit policy file with unknown keys or values, or an impossible sampling rule."""


class SchedulerError(InputError):
    """A cluster scheduler that cannot be reached, or that lost the audit's work; local
    worker processes that could not start."""


class TraceError(MalformedError):
    """A trace file or leaf that is malformed, inconsistent, or not the receipt's."""


class EvidenceError(MalformedError):
    """An evidence bundle that is truncated, malformed or inconsistent: no ruling is made."""


class DisputeError(MalformedError):
    """A dispute message or transcript that does not follow the protocol (whoever sent it, the
    dispute cannot go on from it)."""


class NoteError(MalformedError):
    """A signed note, checkpoint or proof text that does not follow its C2SP format."""


class CircuitFormatError(MalformedError):
    """A circuit file (``.r1cs``, ``.wtns``, keys, proofs) that does not follow its format."""


class ProverError(InputError):
    """The external prover (snarkjs, or Node under it) is missing, timed out, or refused a
    command (powers of tau, setup, contribution, proving); nothing was verified."""


class AttestationFormatError(MalformedError):
    """An attestation document that is not a well-formed COSE_Sign1 Nitro document (CBOR,
    header, field types, sizes); nothing about the enclave was checked."""


# --- verification failures: exit code 1 ----------------------------------------------------


class VerificationError(ReceiptsError):
    """Well-formed evidence that does not hold."""


class SignatureError(VerificationError):
    """The envelope's signature is invalid, or made by a key the policy does not allow."""


class DigestMismatchError(VerificationError):
    """A supplied model, input or output, or the meter, does not match the receipt."""


class ReexecutionError(VerificationError):
    """Re-running the model did not reproduce the receipt's outputs (bit-exact or in tolerance)."""


class PolicyError(VerificationError):
    """A rung the policy requires did not run, or a policy bound (time window) is not met."""


class OpeningError(VerificationError):
    """An opening of a trace node that does not verify against the receipt's commitments."""


class SpotCheckError(VerificationError):
    """A sampled node whose committed outputs are not what its operator computes."""


class ProofError(VerificationError):
    """A log inclusion or consistency proof, or a tree head, that does not verify."""


class ForkError(ProofError):
    """Two signed tree heads of one log with different roots for one size: the log forked."""


class AttestationError(VerificationError):
    """A well-formed attestation document that does not hold: its COSE signature, or (by the
    subclass) its certificates, its measurements or its binding to the receipt."""


class CertificateError(AttestationError):
    """The document's certificate chain does not lead from its leaf to a pinned root, valid at
    the time checked and with the CA constraints every link must meet."""


class MeasurementError(AttestationError):
    """The enclave's PCRs are not the ones the policy expects (or it is a debug enclave)."""


class AttestationBindingError(AttestationError):
    """The document does not bind this receipt: neither its user_data (the receipt id) nor its
    public_key (the receipt's signing key, within the policy's age limit)."""


class WitnessError(VerificationError):
    """A witness that does not satisfy its constraint system (or does not fit it)."""


class ZkProofError(VerificationError):
    """A well-formed zero-knowledge proof that does not hold against its verification key: a
    value outside its field, a point off the curve or outside its subgroup, or a failed pairing
    check (the message names the step, ``details`` carries it as ``{"step": ...}``)."""


class CircuitBindingError(VerificationError):
    """Zero-knowledge evidence that is well-formed but not about this receipt: a circuit manifest
    for another model or naming another verification key, a proof made under another manifest,
    or public signals that are not the packing of the receipt's outputs and inputs."""


class ThresholdError(VerificationError):
    """Fewer valid committee co-signatures than the threshold asks for."""


class SettlementError(VerificationError):
    """The ledger's rules refuse this state change; nothing was changed."""


class ReplayError(SettlementError):
    """A request nonce, request or receipt the ledger has already seen."""


class ExpiredError(SettlementError):
    """A request past its expiry (or a claim or dispute outside its window)."""


class OverdraftError(SettlementError):
    """An account without the funds the change would take from it."""


class BindingError(SettlementError):
    """A receipt that is not bound to the request it claims (another request, model, inputs,
    provider or asset, or an amount over the request's maximum)."""


class StateError(SettlementError):
    """A request that is unknown or not in the state this change starts from."""


class UnknownAssetError(SettlementError):
    """An asset the ledger does not hold."""


# --- outcomes that are not failures ---------------------------------------------------------


class NothingToDispute(ReceiptsError):  # noqa: N818 - an outcome, not a failure
    """A recomputed trace has the receipt's trace root: the traces agree."""
