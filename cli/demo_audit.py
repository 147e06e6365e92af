"""``make demo``, audit part: receipts from two providers filed in a content-addressed store,
one of them faulted by the drill, audited; the HTML report written.

Called from ``cli.demo`` last. Provider A is the demo's provider; provider B makes a key of its
own and, on one of its runs, corrupts node 'relu2' (the fault drill: the honest model digest is
still signed). Every run files its model, inputs and outputs with ``run --store``. The audit
re-executes every receipt (``--sample 1``), so the faulted one is certainly found: exit 1, the
failed receipt listed with the command to dispute it, and ``audit.html`` written; the auditor
then runs that very command (the provider's trace sits beside its receipt).

    audit_part(work, key, step, model, inputs)
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

Step = Callable[..., str]
RUNS = 4  # per provider


def audit_part(work: Path, key: Path, step: Step, model: Path, inputs: Path) -> Path:
    """Steps 60-65; returns the HTML report's path."""
    a = work / "audit"
    a.mkdir()
    receipts, store, other = a / "receipts", a / "store", a / "provider-b.pem"
    step("60. AUDIT: provider B makes a key", "keygen", str(other))
    for n in range(RUNS):
        for name, signer in (("a", key), ("b", other)):
            faulted = name == "b" and n == RUNS - 1
            extra = ["--trace", "--inject-fault", "relu2"] if faulted else []
            title = (
                f"61. provider B's run {n + 1}, DRILL: node 'relu2' corrupted (filed in the store)"
                if faulted
                else f"61. provider {name.upper()}'s run {n + 1}, filed in the store"
            )
            step(
                title,
                "run", str(model), "--input", str(inputs), "--key", str(signer),
                "--out", str(receipts / name / f"run{n + 1}"), "--store", str(store),
                "--unit-price", "3", "--base-fee", "1000", *extra,
            )  # fmt: skip
    step("62. the store is sound: every object re-hashes to its name", "store", "check", str(store))
    html, report = a / "audit.html", a / "audit.json"
    printed = step(
        "63. the auditor re-executes every receipt (seeded, per provider): provider B fails one",
        "audit", str(receipts), "--store", str(store), "--sample", "1", "--seed", "demo",
        "--json", str(report), "--html", str(html),
        expect=1,
    )  # fmt: skip
    [command] = [
        line.split("dispute: ", 1)[1] for line in printed.splitlines() if "dispute: " in line
    ]
    words = shlex.split(command)[1:]  # without the program name
    auditor = a / "auditor.pem"
    step("64. the auditor makes a key", "keygen", str(auditor))
    words[words.index("YOUR_KEY")] = str(auditor)
    words[words.index("--out") + 1] = str(a / "evidence.revd")
    step(
        "65. and runs the dispute command the audit printed: bisection to the faulted node", *words
    )
    return html
