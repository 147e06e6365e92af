"""What an audit accepts: provider keys, sample rungs, tolerance, evidence rungs (audit layer).

Read by ``receipts.audit`` (``AuditPolicy`` travels to every worker, so it holds plain values
only: keys as (scheme, raw) pairs, roots and circuit files as bytes) and made from a TOML file by
``load_policy``, which refuses unknown keys and names the key at fault::

    trusted_keys = ["keys/provider-a.pub"]      # relative to the file; absent: each receipt's key
    sample_rungs = ["reexec"]                   # or ["spot-check"]: where a trace file is found
    spot_samples = 8
    exact = false
    rtol = 1e-5
    atol = 1e-6
    max_age_s = 2592000
    min_per_provider = 5
    confidence = 0.95

    [tee]                                       # the tee rung, on receipts carrying a document
    roots = ["aws-nitro-root.pem"]
    pcrs = { 0 = "<96 hex digits>" }
    allow_debug = false

    [zk]                                        # the zk rung, on receipts carrying a proof
    circuit = "tiny.circuit"                    # its verification_key.json and circuit.manifest
    publishers = ["publisher.pem.pub"]
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from receipts.attachments import GROTH16_PROOF, NITRO_ATTESTATION
from receipts.errors import AuditConfigError, ReceiptsError
from receipts.files import read_limited
from receipts.keys import PublicKey
from receipts.nitro import NitroPolicy
from receipts.report import Policy, ZkPolicy
from receipts.tolerance import Tolerance

# What the sample may add to signature and digests: re-execution, or a spot check of the
# receipt's committed trace (where the trace file is found; re-execution where it is not).
SAMPLE_RUNGS = ("reexec", "spot-check")
MAX_RECEIPTS = 10_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPolicy:
    """What the audit accepts. Plain values only, so it travels to worker processes and Dask
    workers: trusted provider keys as (scheme, raw public key) pairs (none: the key in each
    receipt, reported as unpinned), the rungs the sample adds, tolerance, and the sampling
    minimum and confidence the scorecards use."""

    trusted_keys: tuple[tuple[str, bytes], ...] | None = None
    sample_rungs: tuple[str, ...] = ("reexec",)
    exact: bool = False
    rtol: float = 1e-5
    atol: float = 1e-6
    max_age_ms: int | None = None
    min_per_provider: int = 5
    confidence: float = 0.95
    spot_samples: int = 8
    # Evidence rungs, run on the receipts that carry such evidence: TEE roots (PEM) and PCRs;
    # one circuit's verification key and signed manifest (exact bytes) and their publishers.
    tee_roots: tuple[bytes, ...] = ()
    tee_pcrs: tuple[tuple[int, bytes], ...] = ()
    tee_allow_debug: bool = False
    zk_verification_key: bytes | None = None
    zk_manifest: bytes | None = None
    zk_publishers: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if (self.zk_manifest is None) != (self.zk_verification_key is None) or (
            self.zk_manifest is not None and not self.zk_publishers
        ):
            raise AuditConfigError("the zk rung needs a circuit and at least one publisher key")
        if (self.tee_pcrs or self.tee_allow_debug) and not self.tee_roots:
            raise AuditConfigError("TEE PCRs or allow_debug need at least one TEE root")
        if len(self.sample_rungs) != 1 or self.sample_rungs[0] not in SAMPLE_RUNGS:
            raise AuditConfigError(
                f"sample_rungs must be one of {' or '.join(repr([r]) for r in SAMPLE_RUNGS)}"
            )
        if not 1 <= self.spot_samples <= 1 << 20:
            raise AuditConfigError("spot_samples must be 1..1048576")
        if not 0 <= self.min_per_provider <= MAX_RECEIPTS:
            raise AuditConfigError("min_per_provider must be a count")
        if not 0.5 <= self.confidence < 1:
            raise AuditConfigError("confidence must be in [0.5, 1)")
        if not all(math.isfinite(t) and t >= 0 for t in (self.rtol, self.atol)):
            raise AuditConfigError("rtol and atol must be finite and not negative")
        if self.max_age_ms is not None and self.max_age_ms < 0:
            raise AuditConfigError("max_age_ms must not be negative")

    @property
    def evidence(self) -> frozenset[str]:
        """The attachment types this policy can check (their rungs run where present)."""
        return frozenset(
            ({NITRO_ATTESTATION} if self.tee_roots else set())
            | ({GROTH16_PROOF} if self.zk_manifest is not None else set())
        )

    def verifier_policy(
        self, *, sampled: bool, evidence: frozenset[str] = frozenset(), traced: bool = False
    ) -> Policy:
        """The verifier's policy for a receipt: sampled or not, carrying ``evidence`` (the
        attachment types present that this policy checks), with its trace file at hand or not
        (a spot check needs it; without it the sample re-executes)."""
        keys = None
        if self.trusted_keys is not None:
            keys = tuple(PublicKey.parse(scheme, raw) for scheme, raw in self.trusted_keys)
        tee = zk = None
        if NITRO_ATTESTATION in evidence:
            tee = NitroPolicy(
                roots=tuple(NitroPolicy.load_root(pem) for pem in self.tee_roots),
                pcrs=dict(self.tee_pcrs),
                allow_debug=self.tee_allow_debug,
            )
        if GROTH16_PROOF in evidence:
            assert self.zk_verification_key is not None and self.zk_manifest is not None
            zk = ZkPolicy(
                verification_key=self.zk_verification_key,
                manifest=self.zk_manifest,
                trusted_keys=tuple(PublicKey.parse(s, raw) for s, raw in self.zk_publishers),
            )
        required = (
            "signature", "digests", *((self.sample_rung(traced=traced),) if sampled else ()),
            *(("tee",) if tee else ()), *(("zk",) if zk else ()),
        )  # fmt: skip
        return Policy(
            trusted_keys=keys,
            required=required,
            tolerance=Tolerance(rtol=self.rtol, atol=self.atol),
            exact=self.exact,
            max_age_ms=self.max_age_ms,
            spot_samples=self.spot_samples,
            tee=tee,
            zk=zk,
        )

    def sample_rung(self, *, traced: bool) -> str:
        """The rung a sampled receipt gets: a spot check if asked for and its trace is at hand,
        else re-execution."""
        return "spot-check" if self.sample_rungs == ("spot-check",) and traced else "reexec"

    def describe(self) -> dict[str, object]:
        return {
            "trusted_keys": None
            if self.trusted_keys is None
            else [PublicKey.parse(s, r).key_id.hex() for s, r in self.trusted_keys],
            "every_receipt": ["signature", "digests"],
            "sample": ["signature", "digests", *self.sample_rungs]
            + (["reexec where no trace is found"] if self.sample_rungs == ("spot-check",) else []),
            "spot_samples": self.spot_samples,
            "exact": self.exact,
            "rtol": self.rtol,
            "atol": self.atol,
            "max_age_ms": self.max_age_ms,
            "min_per_provider": self.min_per_provider,
            "confidence": self.confidence,
            "evidence": {
                "tee": None
                if not self.tee_roots
                else {
                    "root_file_sha256": [hashlib.sha256(pem).hexdigest() for pem in self.tee_roots],
                    "pcrs": {str(i): v.hex() for i, v in self.tee_pcrs},
                    "allow_debug": self.tee_allow_debug,
                },
                "zk": None
                if self.zk_manifest is None
                else {
                    "manifest_file_sha256": hashlib.sha256(self.zk_manifest).hexdigest(),
                    "publishers": [
                        PublicKey.parse(s, r).key_id.hex() for s, r in self.zk_publishers
                    ],
                },
            },
        }


_POLICY_KEYS = {
    "trusted_keys", "sample_rungs", "exact", "rtol", "atol", "max_age_s", "min_per_provider",
    "confidence", "spot_samples", "tee", "zk",
}  # fmt: skip
_TEE_KEYS = {"roots", "pcrs", "allow_debug"}
_ZK_KEYS = {"circuit", "publishers"}
ZK_FILES = ("verification_key.json", "circuit.manifest")  # in a circuit folder (circuits/)


def load_policy(path: Path) -> AuditPolicy:
    """An ``AuditPolicy`` from a TOML file (the keys: this module's docstring); unknown keys,
    wrong types and key files that do not load are ``AuditConfigError``/``InputError`` naming
    the key. Paths in it are relative to the file."""
    try:
        table = tomllib.loads(read_limited(path, 1 << 20, "audit policy").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AuditConfigError(f"{path}: not a TOML policy ({e})") from e
    except RecursionError as e:  # tomllib recurses once per nested array
        raise AuditConfigError(f"{path}: not a TOML policy (nested too deeply)") from e
    unknown = sorted(set(table) - _POLICY_KEYS)
    if unknown:
        raise AuditConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, kind in (
        ("exact", bool), ("rtol", float), ("atol", float), ("min_per_provider", int),
        ("confidence", float), ("spot_samples", int),
    ):  # fmt: skip
        if name in table:
            kwargs[name] = _typed(path, name, table[name], kind)
    if "max_age_s" in table:
        kwargs["max_age_ms"] = _typed(path, "max_age_s", table["max_age_s"], int) * 1000
    if "sample_rungs" in table:
        kwargs["sample_rungs"] = tuple(
            _typed(path, "sample_rungs", r, str) for r in _list(path, table, "sample_rungs")
        )
    if "trusted_keys" in table:
        keys = []
        for entry in _list(path, table, "trusted_keys"):
            key = PublicKey.load(path.parent / _typed(path, "trusted_keys", entry, str))
            keys.append((key.scheme, key.raw))
        kwargs["trusted_keys"] = tuple(keys)
    if "tee" in table:
        kwargs.update(_tee_table(path, _table(path, table, "tee", _TEE_KEYS)))
    if "zk" in table:
        kwargs.update(_zk_table(path, _table(path, table, "zk", _ZK_KEYS)))
    try:
        return AuditPolicy(**kwargs)
    except AuditConfigError as e:
        raise AuditConfigError(f"{path}: {e}") from e


def _table(path: Path, table: Mapping[str, Any], name: str, keys: set[str]) -> dict[str, Any]:
    value = table[name]
    if not isinstance(value, dict):
        raise AuditConfigError(f"{path}: [{name}] must be a table")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise AuditConfigError(f"{path}: unknown key(s) in [{name}]: {', '.join(unknown)}")
    return value


def _tee_table(path: Path, tee: Mapping[str, Any]) -> dict[str, Any]:
    """``[tee]``: ``roots`` (PEM files, relative to the policy file), ``pcrs`` (index = hex),
    ``allow_debug``."""
    roots = []
    for entry in _list(path, tee, "roots") if "roots" in tee else []:
        pem = read_limited(path.parent / _typed(path, "tee.roots", entry, str), 1 << 16, "root")
        try:
            NitroPolicy.load_root(pem)
        except ReceiptsError as e:
            raise AuditConfigError(f"{path}: tee root {entry}: {e}") from e
        roots.append(pem)
    pcrs = []
    table = tee.get("pcrs", {})
    if not isinstance(table, dict):
        raise AuditConfigError(f"{path}: [tee.pcrs] must be a table of index = hex value")
    for index, value in table.items():
        try:
            pcrs.append((int(index), bytes.fromhex(_typed(path, "tee.pcrs", value, str))))
        except ValueError as e:
            raise AuditConfigError(f"{path}: tee.pcrs {index}: an index and a hex value") from e
    result: dict[str, Any] = {"tee_roots": tuple(roots), "tee_pcrs": tuple(sorted(pcrs))}
    if "allow_debug" in tee:
        result["tee_allow_debug"] = _typed(path, "tee.allow_debug", tee["allow_debug"], bool)
    return result


def _zk_table(path: Path, zk: Mapping[str, Any]) -> dict[str, Any]:
    """``[zk]``: ``circuit`` (a circuit folder: its verification key and signed manifest) and
    ``publishers`` (the manifest signers' public key files)."""
    if "circuit" not in zk:
        raise AuditConfigError(f"{path}: [zk] needs a circuit folder")
    folder = path.parent / _typed(path, "zk.circuit", zk["circuit"], str)
    vkey, manifest = (read_limited(folder / name, 8 << 20, name) for name in ZK_FILES)
    publishers = []
    for entry in _list(path, zk, "publishers") if "publishers" in zk else []:
        key = PublicKey.load(path.parent / _typed(path, "zk.publishers", entry, str))
        publishers.append((key.scheme, key.raw))
    return {
        "zk_verification_key": vkey, "zk_manifest": manifest, "zk_publishers": tuple(publishers),
    }  # fmt: skip


def _list(path: Path, table: Mapping[str, Any], name: str) -> list[Any]:
    value = table[name]
    if not isinstance(value, list):
        raise AuditConfigError(f"{path}: {name} must be a list")
    return value


def _typed(path: Path, name: str, value: object, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise AuditConfigError(f"{path}: {name} must be a {kind.__name__}")
    return value
