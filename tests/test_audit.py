"""Audits at scale: a generated population (four providers, one cheating on 4% of its receipts
through the fault drill, one store object corrupted) audited in this process, by a local pool
and by a real Dask cluster, with workers killed mid-audit; sampling rules as properties; bad
sources and policies."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.population import CLOCK_MS, Population, make_population
from receipts.audit import (
    AuditPolicy,
    AuditRun,
    Executor,
    SamplingRule,
    Submitted,
    choose_sample,
    folder_source,
    load_policy,
    run_audit,
)
from receipts.errors import AuditConfigError, InputError, KeyFileError, SchedulerError
from receipts.executors import DaskExecutor, InlineExecutor, LocalExecutor
from receipts.scorecard import ItemResult, Outcome
from tests.clusterkit import dask_cluster, spawned_workers

PER_PROVIDER = 500
RULE = SamplingRule(fraction=0.1, min_per_provider=5)
SEED = b"audit-test"
AT_MS = CLOCK_MS + 60_000


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    return make_population(tmp_path_factory.mktemp("population"), per_provider=PER_PROVIDER)


def _audit(
    population: Population,
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
    **changes: Any,
) -> AuditRun:
    kwargs: dict[str, Any] = {
        "store": population.store, "rule": RULE, "seed": SEED, "policy": AuditPolicy(),
        "at_ms": AT_MS, **changes,
    }  # fmt: skip
    return run_audit(folder_source(population.folder), executor=executor, progress=progress,
                     **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def inline(population: Population) -> AuditRun:
    return _audit(population, InlineExecutor())


# --- what the audit finds ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_cheater_is_caught_on_its_sample_and_nothing_is_said_against_honest_providers(
    population: Population, inline: AuditRun
) -> None:
    by_name = {key: name for name, key in population.keys.items()}
    failed = [i for i in inline.items if i.outcome is Outcome.FAILED]
    sampled = {i.receipt_id for i in inline.items if i.sampled}
    # Exactly the cheated receipts the sample reached fail, all at re-execution.
    assert {i.receipt_id for i in failed} == population.cheated & sampled
    assert failed, "this seed's sample must reach some cheated receipts"
    assert {by_name[i.provider or ""] for i in failed} == {population.cheater}
    assert all(f.rung == "reexec" and f.step == "11 outputs" for i in failed for f in i.findings)
    # Unsampled cheated receipts pass the cheap rungs: only re-execution can see them.
    missed = [i for i in inline.items if i.receipt_id in population.cheated - sampled]
    assert missed and all(i.outcome is Outcome.PASSED for i in missed)


@pytest.mark.slow
def test_each_provider_gets_the_expected_sample(inline: AuditRun) -> None:
    per = Counter(i.provider for i in inline.items if i.sampled)
    expected = max(RULE.min_per_provider, math.ceil(0.1 * PER_PROVIDER))
    assert sorted(per.values()) == [expected] * 4
    assert all(set(i.rungs) == {"signature", "digests", "reexec"} for i in inline.items
               if i.sampled and i.outcome is not Outcome.UNCHECKED)  # fmt: skip
    assert all(set(i.rungs) == {"signature", "digests"} for i in inline.items
               if not i.sampled and i.outcome is not Outcome.UNCHECKED)  # fmt: skip


@pytest.mark.slow
def test_the_corrupted_object_is_reported_for_its_receipt_and_the_rest_is_audited(
    population: Population, inline: AuditRun
) -> None:
    [unchecked] = [i for i in inline.items if i.outcome is Outcome.UNCHECKED]
    assert unchecked.receipt_id == population.corrupted
    [finding] = unchecked.findings
    assert finding.step == "a5 objects"
    assert unchecked.inputs is not None and unchecked.inputs in finding.reason
    assert len(inline.items) == population.receipts


# --- the same report whatever runs it ----------------------------------------------------------


@pytest.mark.slow
def test_two_local_workers_give_the_same_result(population: Population, inline: AuditRun) -> None:
    assert _audit(population, LocalExecutor(2)).items == inline.items


@pytest.mark.slow
def test_a_local_worker_killed_mid_audit_loses_and_double_counts_nothing(
    population: Population, inline: AuditRun
) -> None:
    killed = threading.Event()

    def kill_one_worker(done: int, total: int) -> None:
        if done >= total // 4 and not killed.is_set():
            workers = spawned_workers(psutil.Process())
            if workers:
                workers[0].kill()
                killed.set()

    run = _audit(population, LocalExecutor(2, batch=8), progress=kill_one_worker)
    assert killed.is_set()
    assert run.items == inline.items


NO_START = """
import sys
if __name__ == "__mp_main__":  # how spawn imports this script in a worker: it cannot start
    raise SystemExit("this worker cannot start")
from receipts.audit import AuditPolicy, Task, WorkerConfig
from receipts.errors import SchedulerError
from receipts.executors import LocalExecutor
if __name__ == "__main__":
    config = WorkerConfig(sys.argv[1], AuditPolicy(), 0)
    try:
        LocalExecutor(2).run(config, [Task(0, "a.rcpt", b"", False)], lambda n: None)
    except SchedulerError as e:
        print(f"refused: {e}")
"""


@pytest.mark.slow
def test_a_pool_whose_workers_cannot_start_is_an_error_not_a_quiet_unchecked(
    tmp_path: Path,
) -> None:
    """Not every receipt "unchecked" and exit 0 (the cheater unseen): the audit stops."""
    script = tmp_path / "no_start.py"
    script.write_text(NO_START)
    done = subprocess.run(
        [sys.executable, script, tmp_path], capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    assert done.stdout == (
        "refused: the 2 local worker processes could not start (the workers' own error is above)\n"
    ), done.stderr


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_result_even_when_a_worker_dies(
    population: Population, inline: AuditRun, tmp_path: Path
) -> None:
    with dask_cluster(tmp_path, workers=2) as cluster:
        assert _audit(population, DaskExecutor(cluster.address)).items == inline.items
        killed = threading.Event()

        def kill_one_worker(done: int, total: int) -> None:
            if done >= total // 4 and not killed.is_set():
                killed.set()
                cluster.kill_worker(0)

        run = _audit(population, DaskExecutor(cluster.address, batch=8), progress=kill_one_worker)
        assert killed.is_set()
        assert run.items == inline.items


def test_an_unreachable_scheduler_is_a_typed_error(tmp_path: Path) -> None:
    population_free = tmp_path / "empty"
    population_free.mkdir()
    store = tmp_path / "store"
    from receipts.objects import ObjectStore  # noqa: PLC0415

    ObjectStore.create(store)
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler"):
        run_audit(
            [Submitted("x.rcpt", b"junk")], store=store, rule=RULE, seed=SEED,
            policy=AuditPolicy(), at_ms=AT_MS,
            executor=DaskExecutor("tcp://127.0.0.1:9", timeout_s=1.0),
        )  # fmt: skip


# --- sources: duplicates, unreadable and undecodable files -------------------------------------


@pytest.mark.slow
def test_duplicates_and_undecodable_files_are_reported_and_the_rest_audited(
    population: Population, inline: AuditRun, tmp_path: Path
) -> None:
    folder = tmp_path / "receipts"
    shutil.copytree(population.folder, folder)
    original = next((folder / "alpha").glob("*.rcpt"))
    shutil.copy(original, folder / "alpha" / "copy.rcpt")
    (folder / "garbage.rcpt").write_bytes(b"\x00not a receipt")
    run = run_audit(
        folder_source(folder), store=population.store, rule=RULE, seed=SEED,
        policy=AuditPolicy(), at_ms=AT_MS, executor=InlineExecutor(),
    )  # fmt: skip
    [duplicate] = run.duplicates
    assert (duplicate.source, duplicate.first_source) == (
        "alpha/copy.rcpt",
        original.relative_to(folder).as_posix(),
    )
    [garbage] = [i for i in run.items if i.provider is None]
    assert garbage.outcome is Outcome.UNCHECKED and garbage.findings[0].step == "a2 decode"
    assert [i for i in run.items if i.provider is not None] == list(inline.items)


def test_a_folder_that_is_not_there_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder of receipts"):
        list(folder_source(tmp_path / "missing"))


# --- sampling ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 400), max_size=6),
    st.floats(0, 1),
    st.integers(0, 20),
)
def test_a_fraction_takes_its_share_of_each_provider_and_the_minimum(
    strata: dict[str, int], fraction: float, minimum: int
) -> None:
    sizes = SamplingRule(fraction=fraction, min_per_provider=minimum).sizes(strata)
    for provider, n in strata.items():
        share = Fraction(repr(fraction))  # the decimal as written, not its float
        assert sizes[provider] == min(n, max(math.ceil(share * n), minimum))


@pytest.mark.parametrize(("fraction", "n", "expected"), [(0.07, 100, 7), (0.1, 500, 50),
                                                         (0.3, 10, 3), (0.001, 1, 1)])  # fmt: skip
def test_a_fraction_is_the_decimal_written_not_its_float(
    fraction: float, n: int, expected: int
) -> None:
    """0.07 * 100 is 7.000000000000001 in floats: ceil would sample 8."""
    assert SamplingRule(fraction=fraction, min_per_provider=0).sizes({"p": n}) == {"p": expected}


def test_a_count_over_the_population_samples_everything() -> None:
    rule = SamplingRule(count=50, min_per_provider=0)
    assert rule.sizes({"a": 3, "b": 7}) == {"a": 3, "b": 7}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(0, 400), max_size=6),
    st.integers(0, 3000),
)
def test_a_count_is_split_in_proportion(strata: dict[str, int], count: int) -> None:
    sizes = SamplingRule(count=count, min_per_provider=0).sizes(strata)
    assert sum(sizes.values()) == min(count, sum(strata.values()))
    total = sum(strata.values())
    for provider, n in strata.items():
        assert sizes[provider] <= n
        if total:
            assert abs(sizes[provider] - count * n / total) < 1 + 1e-9 or sizes[provider] == n


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), unique=True, max_size=60), st.randoms())
def test_the_sample_depends_on_the_set_and_the_seed_not_the_order(
    ids: list[bytes], rnd: Any
) -> None:
    rule = SamplingRule(fraction=0.3, min_per_provider=2)
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert choose_sample({"p": ids}, rule, b"s") == choose_sample({"p": shuffled}, rule, b"s")


def test_another_seed_draws_another_sample() -> None:
    ids = [bytes([i]) * 32 for i in range(200)]
    rule = SamplingRule(fraction=0.1, min_per_provider=0)
    assert choose_sample({"p": ids}, rule, b"one") != choose_sample({"p": ids}, rule, b"two")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"fraction": 0.1, "count": 3}, {"fraction": 1.5}, {"fraction": -0.1}, {"count": -1},
     {"fraction": 0.1, "min_per_provider": -1}],
    ids=["neither", "both", "fraction_above_1", "negative_fraction", "negative_count",
         "negative_minimum"],
)  # fmt: skip
def test_impossible_sampling_rules_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(AuditConfigError):
        SamplingRule(**kwargs)


# --- policy files ------------------------------------------------------------------------------


def test_a_policy_file_reads_keys_relative_to_itself(population: Population) -> None:
    policy_file = population.key_files["alpha"].parent / "policy.toml"
    policy_file.write_text(
        'trusted_keys = ["alpha.pem.pub", "beta.pem.pub"]\nmin_per_provider = 7\n'
        "exact = true\nmax_age_s = 60\nconfidence = 0.99\n"
    )
    policy = load_policy(policy_file)
    assert policy.describe()["trusted_keys"] == [population.keys["alpha"], population.keys["beta"]]
    assert (policy.min_per_provider, policy.exact, policy.max_age_ms, policy.confidence) == (
        7, True, 60_000, 0.99,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("sample = 0.1\n", AuditConfigError, "unknown key(s) sample"),
        ("exact = 1\n", AuditConfigError, "exact must be a bool"),
        ("rtol = -1.0\n", AuditConfigError, "must be finite and not negative"),
        ('sample_rungs = ["judge"]\n', AuditConfigError, "sample_rungs must be one of"),
        ("trusted_keys = 'a.pub'\n", AuditConfigError, "must be a list"),
        ('trusted_keys = ["missing.pub"]\n', KeyFileError, "missing.pub"),
        ("confidence = 1.0\n", AuditConfigError, "confidence"),
        ("exact = \n", AuditConfigError, "not a TOML policy"),
        # found by a hostile-input sweep; deep enough to pass py_ecc's recursion limit of
        # 100,000 (its import raises Python's to that, in any process that verifies a proof)
        ("rtol = " + "[" * 300_000 + "]" * 300_000, AuditConfigError, "nested too deeply"),
        ("rtol = inf\n", AuditConfigError, "must be finite"),
        ("atol = 1e400\n", AuditConfigError, "must be finite"),
        ('trusted_keys = ["a\\u0000b"]\n', KeyFileError, "a path with a NUL byte"),
        ('[tee]\nroots = ["a\\u0000b"]\n', InputError, "a path with a NUL byte"),
        ("[tee]\npcrs = 3\n", AuditConfigError, "[tee.pcrs] must be a table"),
    ],
    ids=["unknown_key", "wrong_type", "negative_tolerance", "unknown_rung", "keys_not_a_list",
         "missing_key_file", "confidence_of_one", "not_toml", "nested_deep", "infinite_rtol",
         "atol_past_double", "nul_in_a_key_path", "nul_in_a_root_path", "pcrs_not_a_table"],
)  # fmt: skip
def test_bad_policy_files_are_refused_naming_the_key(
    tmp_path: Path, text: str, error: type[Exception], fragment: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(error, match=re.escape(fragment)):
        load_policy(path)


@pytest.mark.slow
def test_a_pinned_policy_fails_receipts_of_other_keys(population: Population) -> None:
    policy_file = population.key_files["alpha"].parent / "pinned.toml"
    policy_file.write_text('trusted_keys = ["alpha.pem.pub"]\n')
    run = _audit(population, InlineExecutor(), policy=load_policy(policy_file))
    others = [i for i in run.items if i.provider != population.keys["alpha"]]
    assert others and all(i.outcome is Outcome.FAILED for i in others)
    assert all(i.findings[0].step == "3 signature" for i in others)


# --- evidence rungs, where present -------------------------------------------------------------


def test_evidence_rungs_run_on_the_receipts_that_carry_evidence(tmp_path: Path) -> None:
    """The TEE fixtures audited with the simulator root pinned: attested receipts pass with the
    tee rung, forged attestations fail it, receipts without one are not asked for one. The
    fixtures are copies of one receipt with other attachments (one receipt id), so each is
    audited on its own; together they are duplicates of the first."""
    from fixtures.models import sample_inputs  # noqa: PLC0415
    from receipts.model import load_model  # noqa: PLC0415
    from receipts.objects import ObjectStore  # noqa: PLC0415
    from receipts.runtime import OrtRunner, RuntimeSettings  # noqa: PLC0415
    from tests.conftest import FIXTURES  # noqa: PLC0415

    tee = FIXTURES / "tee"
    store = ObjectStore.create(tmp_path / "store")
    model = load_model(FIXTURES / "models" / "mlp.onnx")
    inputs = sample_inputs("mlp")
    store.add_model(model)
    store.add_tensors(inputs)
    store.add_tensors(OrtRunner(model, RuntimeSettings()).run(inputs))
    shutil.copy(tee / "sim-root" / "root.pem", tmp_path / "root.pem")
    (tmp_path / "policy.toml").write_text('[tee]\nroots = ["root.pem"]\n')
    policy = load_policy(tmp_path / "policy.toml")

    def audit_one(path: Path) -> ItemResult:
        receipt = Submitted(path.name, path.read_bytes())
        run = run_audit(
            [receipt], store=tmp_path / "store", rule=RULE, seed=SEED, policy=policy,
            at_ms=CLOCK_MS + 60_000, executor=InlineExecutor(),
        )  # fmt: skip
        [item] = run.items
        return item

    for name in ("attested_receipt.rcpt", "attested_key.rcpt"):
        item = audit_one(tee / name)
        assert item.outcome is Outcome.PASSED, item.findings
        assert "tee" in item.rungs
    for name in ("no_attestation.rcpt", "unknown_type_only.rcpt"):
        item = audit_one(tee / "refused" / name)
        assert item.outcome is Outcome.PASSED and "tee" not in item.rungs
    absent = ("no_attestation.rcpt", "unknown_type_only.rcpt")
    cases = [c for c in json.loads((tee / "cases.json").read_text()) if c["name"] not in absent]
    assert len(cases) >= 5
    for case in cases:
        item = audit_one(tee / "refused" / case["name"])
        assert item.outcome is Outcome.FAILED, case
        assert [f.step for f in item.findings if f.rung == "tee"] == [case["step"]], case
    together = run_audit(
        folder_source(tee / "refused"), store=tmp_path / "store", rule=RULE, seed=SEED,
        policy=policy, at_ms=CLOCK_MS + 60_000, executor=InlineExecutor(),
    )  # fmt: skip
    assert len(together.items) + len(together.duplicates) == len(list((tee / "refused").glob("*")))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tee]\nroot = []\n", "unknown key(s) in [tee]: root"),
        ('[tee]\nroots = []\npcrs = { 0 = "' + "00" * 48 + '" }\n', "TEE PCRs or allow_debug need"),
        ("[zk]\npublishers = []\n", "[zk] needs a circuit folder"),
        ("tee = 3\n", "[tee] must be a table"),
    ],
    ids=["unknown_tee_key", "pcrs_without_roots", "zk_without_circuit", "tee_not_a_table"],
)
def test_bad_evidence_tables_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(AuditConfigError, match=re.escape(fragment)):
        load_policy(path)


# --- spot checks on the sample, where traces are found -----------------------------------------


def test_the_sample_is_spot_checked_where_a_trace_is_found(tmp_path: Path) -> None:
    population = make_population(tmp_path, per_provider=40, cheat_every=4, traced=True)
    (tmp_path / "policy.toml").write_text('sample_rungs = ["spot-check"]\n')
    policy = load_policy(tmp_path / "policy.toml")
    untraced = next((population.folder / "alpha").glob("*.rtrc"))
    untraced.unlink()  # this receipt's sample falls back to re-execution
    run = _audit(population, InlineExecutor(), policy=policy,
                 rule=SamplingRule(fraction=1.0, min_per_provider=0))  # fmt: skip
    by_source = {i.source: i for i in run.items}
    fallback = by_source[untraced.relative_to(population.folder).with_suffix(".rcpt").as_posix()]
    assert "reexec" in fallback.rungs and "spot-check" not in fallback.rungs
    checked = [i for i in run.items if "spot-check" in i.rungs]
    assert len(checked) == population.receipts - 2  # the fallback and the corrupted object's
    failed = {i.receipt_id for i in run.items if i.outcome is Outcome.FAILED}
    assert failed == set(population.cheated)
    assert all(
        f.rung == "spot-check" for i in run.items if i.outcome is Outcome.FAILED for f in i.findings
    )
    # The same seed draws the same nodes: a second audit gives the same items.
    again = _audit(population, InlineExecutor(), policy=policy,
                   rule=SamplingRule(fraction=1.0, min_per_provider=0))  # fmt: skip
    assert again.items == run.items


@pytest.mark.slow
def test_the_scorecards_name_the_cheater_with_its_bound(
    population: Population, inline: AuditRun
) -> None:
    from receipts.audit import report_of  # noqa: PLC0415
    from receipts.scorecard import clopper_pearson_upper  # noqa: PLC0415

    report = report_of(inline, "population")
    scores = {s.provider: s for s in report.scores}
    cheater = scores[population.keys[population.cheater]]
    sampled_cheats = len(population.cheated & {i.receipt_id for i in inline.items if i.sampled})
    assert (cheater.audited, cheater.sample_failed) == (50, sampled_cheats)
    assert cheater.failure_rate_upper == clopper_pearson_upper(n=50, k=sampled_cheats)
    assert report.failing_providers == (cheater.provider,)
    for name, key in population.keys.items():
        if name != population.cheater:
            assert scores[key].failed == 0
            assert scores[key].failure_rate_upper == clopper_pearson_upper(
                n=scores[key].audited, k=0
            )


def test_a_receipt_whose_id_reads_but_whose_body_does_not_is_unattributed(
    population: Population, tmp_path: Path
) -> None:
    """Step a2 reads only the envelope, the id and the provider field; a worker that cannot
    decode the rest reports the receipt unchecked and attributed to no provider."""
    from receipts import codec  # noqa: PLC0415
    from receipts.envelope import RECEIPT_PAYLOAD_TYPE, Envelope  # noqa: PLC0415
    from receipts.keys import PrivateKey  # noqa: PLC0415

    original = Envelope.from_bytes(next((population.folder / "alpha").glob("*.rcpt")).read_bytes())
    fields = codec.decode(original.payload)
    fields["version"] = 2
    forged = Envelope.sign(RECEIPT_PAYLOAD_TYPE, codec.encode(fields), PrivateKey.generate())
    run = run_audit(
        [Submitted("v2.rcpt", forged.to_bytes())], store=population.store, rule=RULE,
        seed=SEED, policy=AuditPolicy(), at_ms=AT_MS, executor=InlineExecutor(),
    )  # fmt: skip
    [item] = run.items
    assert (item.provider, item.outcome) == (None, Outcome.UNCHECKED)
    assert item.findings[0].step == "a2 decode" and "version 2" in item.findings[0].reason
