"""A thin driver over the pinned snarkjs CLI: powers of tau, Groth16 keys, proving (prover side).

Sits between the compiler (``circuits.r1cs`` writes the ``.r1cs`` and ``.wtns`` files) and the
pure-Python verifier (``circuits.groth16`` reads the JSON written here). snarkjs 0.7.6 is pinned in
``package.json``/``package-lock.json`` and installed by ``make setup`` (``npm ci``); this module
finds it relative to the repository root, never through ``PATH`` or the working directory. The
flow, one method per snarkjs command:

  (1) ptau      ``powersoftau new`` (bn128, power N), an optional secret contribution, a beacon
                (fixed hash and iterations), ``prepare phase2``; made once and cached
  (2) setup     ``groth16 setup`` (r1cs + ptau -> zkey with no contribution)
  (3) beacon    ``zkey beacon`` (deterministic) or ``zkey contribute`` (secret, random)
  (4) export    ``zkey export verificationkey`` -> verification_key.json
  (5) prove     ``groth16 prove`` (zkey + wtns -> proof.json, public.json); proofs are randomized
  (6) verify    ``groth16 verify``: a bool, for differential tests only; the verifier of record
                is ``circuits.groth16``

Every command runs as ``node <snarkjs cli> <args>`` with an explicit argument list, absolute
paths, stdin closed (snarkjs asks for entropy on the terminal otherwise) and a timeout; its output
is captured. A missing Node or snarkjs, a timeout, a failed command or an ``[ERROR]`` logged by a
command that still exits 0 raises ``ProverError`` with snarkjs's own one-line reason, and the
command's output files are removed.

A beacon-only powers-of-tau file or zkey is deterministic and therefore **not secret**: anyone can
recompute tau and forge proofs. Such files are for fixtures and development; a real deployment
takes a ceremony file (checked by digest) and a contribution of real entropy.

    snarkjs = Snarkjs.locate()
    snarkjs.new_ptau(4, Path("pot4.ptau")); snarkjs.setup(r1cs, ptau, zkey)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from receipts.errors import ProverError

ROOT = Path(__file__).resolve().parent.parent
SNARKJS = ROOT / "node_modules" / ".bin" / "snarkjs"
# A public, fixed beacon: the hash of a fixed phrase, 2^10 SHA-256 iterations (snarkjs's minimum).
BEACON_HASH = hashlib.sha256(b"inference-receipts development beacon v1").hexdigest()
BEACON_ITERATIONS_EXP = 10
BEACON_NAME = "inference-receipts development beacon v1"
MAX_POWER = 28  # the largest bn128 powers of tau snarkjs makes
DEFAULT_TIMEOUT_S = 3600.0  # prepare phase2 at 2^16 and above takes many minutes
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snarkjs:
    """The snarkjs CLI at ``cli`` run by the Node interpreter at ``node``."""

    node: Path
    cli: Path
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def locate(cls, *, timeout_s: float = DEFAULT_TIMEOUT_S, link: Path = SNARKJS) -> Snarkjs:
        """The pinned snarkjs under ``node_modules`` and the ``node`` on ``PATH``."""
        node = shutil.which("node")
        if node is None:
            raise ProverError("node is not installed (snarkjs needs Node.js 18 or later)")
        if not link.exists():
            raise ProverError(f"snarkjs is not installed at {link} (run `make setup`)")
        return cls(node=Path(node), cli=link.resolve(), timeout_s=timeout_s)

    def run(self, *args: str | Path, outputs: tuple[Path, ...] = ()) -> str:
        """Run one snarkjs command; its captured output, or ``ProverError`` with its reason.

        snarkjs exits 0 after some errors (``groth16 setup`` with too small a ptau logs
        ``[ERROR]`` and leaves an empty zkey), so a logged error fails the command too, and the
        command's ``outputs`` are removed so no half-written file passes for a good one."""
        code, output = self._execute(args)
        if code != 0 or "[ERROR]" in output:
            for path in outputs:
                path.unlink(missing_ok=True)
            raise ProverError(f"snarkjs {' '.join(map(str, args[:2]))} failed: {_reason(output)}")
        return output

    def _execute(self, args: tuple[str | Path, ...]) -> tuple[int, str]:
        command = [str(self.node), str(self.cli), *(_arg(a) for a in args)]
        try:
            done = subprocess.run(  # noqa: S603 - fixed executable, explicit argument list
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout_s,
                check=False,
                env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
            )
        except subprocess.TimeoutExpired as e:
            raise ProverError(f"snarkjs {args[0]} timed out after {self.timeout_s:g} s") from e
        except OSError as e:
            raise ProverError(f"cannot run snarkjs: {e.strerror or e}") from e
        return done.returncode, _ANSI.sub("", done.stdout + done.stderr)

    # (1) ptau -----------------------------------------------------------------------------------

    def new_ptau(self, power: int, out: Path, *, entropy: bytes | None = None) -> Path:
        """A bn128 powers-of-tau file of 2^``power`` prepared for phase 2, written to ``out``.

        Deterministic (beacon only, tau public) unless ``entropy`` is given: then a secret
        contribution comes first (snarkjs hashes ``entropy`` with its own random bytes, so the
        file is not reproducible; its tau is as secret as that machine's memory was)."""
        if not 1 <= power <= MAX_POWER:
            raise ProverError(f"powers of tau power {power} is outside 1..{MAX_POWER}")
        out = out.resolve()
        with tempfile.TemporaryDirectory(prefix="ptau-", dir=out.parent) as tmp:
            work = Path(tmp)
            current = work / "0000.ptau"
            self.run("powersoftau", "new", "bn128", str(power), current)
            if entropy is not None:
                self.run(
                    "powersoftau", "contribute", current, work / "0001.ptau",
                    f"-name={BEACON_NAME} contribution", f"-entropy={entropy.hex()}",
                )  # fmt: skip
                current = work / "0001.ptau"
            beacon = work / "beacon.ptau"
            self.run(
                "powersoftau", "beacon", current, beacon, BEACON_HASH,
                str(BEACON_ITERATIONS_EXP), f"-name={BEACON_NAME}",
            )  # fmt: skip
            self.run("powersoftau", "prepare", "phase2", beacon, work / "final.ptau")
            (work / "final.ptau").replace(out)
        return out

    def cached_ptau(self, power: int, folder: Path) -> Path:
        """The deterministic 2^``power`` file in ``folder``, made once (slow at 2^12 and up)."""
        path = folder.resolve() / f"pot{power}_beacon.ptau"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            self.new_ptau(power, path)
        return path

    # (2) setup and (3) beacon -------------------------------------------------------------------

    def setup(self, r1cs: Path, ptau: Path, zkey: Path) -> Path:
        """A Groth16 proving key with no phase-2 contribution yet (deterministic)."""
        self.run("groth16", "setup", r1cs, ptau, zkey, outputs=(zkey,))
        return zkey

    def zkey_beacon(self, old: Path, new: Path) -> Path:
        """``old`` with the fixed beacon applied (deterministic; the key's toxic waste public)."""
        self.run(
            "zkey", "beacon", old, new, BEACON_HASH, str(BEACON_ITERATIONS_EXP),
            f"-name={BEACON_NAME}", outputs=(new,),
        )  # fmt: skip
        return new

    def zkey_contribute(self, old: Path, new: Path, *, entropy: bytes) -> Path:
        """``old`` with a secret contribution: snarkjs hashes ``entropy`` with its own random
        bytes, so no two contributions are alike."""
        self.run(
            "zkey", "contribute", old, new, "-name=contribution", f"-entropy={entropy.hex()}",
            outputs=(new,),
        )  # fmt: skip
        return new

    # (4) export, (5) prove, (6) verify ----------------------------------------------------------

    def export_verification_key(self, zkey: Path, out: Path) -> Path:
        self.run("zkey", "export", "verificationkey", zkey, out, outputs=(out,))
        return out

    def prove(self, zkey: Path, wtns: Path, proof: Path, public: Path) -> tuple[Path, Path]:
        """A Groth16 proof of the witness in ``wtns`` (randomized: each run differs)."""
        self.run("groth16", "prove", zkey, wtns, proof, public, outputs=(proof, public))
        return proof, public

    def verify(self, vkey: Path, public: Path, proof: Path) -> bool:
        """snarkjs's verdict: true only on exit 0 with its ``OK!``. For differential tests; a
        malformed file makes snarkjs fail, which counts as a refusal here."""
        code, output = self._execute(("groth16", "verify", vkey, public, proof))
        return code == 0 and "OK!" in output


def _arg(value: str | Path) -> str:
    if isinstance(value, Path):
        # snarkjs reads any argument starting with "-" as an option: paths go absolute.
        return str(value.resolve())
    return value


def _reason(output: str) -> str:
    """snarkjs's last error line (it logs ``[ERROR] snarkJS: ...``), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    picked = (errors or lines or ["no output"])[-1]
    return picked.replace("[ERROR] snarkJS: ", "")[:300]


def ptau_power(head: bytes) -> int | None:
    """The power a snarkjs ptau file's header states (magic ``ptau``, version, section count,
    then section 1: n8, the n8-byte prime q, power), or None for any other layout: snarkjs then
    says what is wrong with the file."""
    if len(head) < 28 or head[:4] != b"ptau":
        return None
    section, _, n8 = struct.unpack_from("<IQI", head, 12)
    if section != 1 or not 0 < n8 <= 64 or len(head) < 28 + n8 + 4:
        return None
    power: int = struct.unpack_from("<I", head, 28 + n8)[0]
    return power
