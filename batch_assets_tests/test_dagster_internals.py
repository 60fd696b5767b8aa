"""The Dagster calls without a public API, each run against a real instance so that an upgrade that changes one
fails here; and no module but batch_assets/dagster_internals.py makes such a call."""

from __future__ import annotations

import ast
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import dagster as dg
import pytest
from dagster._annotations import is_public  # the only way to ask Dagster what it calls public

from batch_assets import dagster_internals
from batch_assets.partitions import WAREHOUSE_POOL

PACKAGE = Path(__file__).parents[1] / "batch_assets"
# Calls that still reach past the public API outside the adapter, each with the reason it is left.
NOT_MOVED_YET: set[tuple[str, str]] = set()


@dg.asset
def ledger_total() -> int:
    return 1


@dg.asset_check(asset=ledger_total)
def ledger_total_is_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=ledger_total)
def ledger_total_balances() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description="off by one")


def test_a_run_s_check_evaluations_come_back_in_the_order_logged_and_only_that_run_s(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        checked = [ledger_total, ledger_total_is_positive, ledger_total_balances]
        first = dg.materialize(checked, instance=instance)
        second = dg.materialize(checked, instance=instance)

        entries = dagster_internals.check_evaluations(instance, second.run_id)
        assert dagster_internals.check_evaluations(instance, "no-such-run") == []

    logged = [
        event.event_specific_data.check_name
        for event in second.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert [entry.dagster_event.event_specific_data.check_name for entry in entries] == logged
    assert sorted(logged) == ["ledger_total_balances", "ledger_total_is_positive"]
    assert {entry.run_id for entry in entries} == {second.run_id} != {first.run_id}
    (failed,) = [entry for entry in entries if not entry.dagster_event.event_specific_data.passed]
    evaluation = failed.dagster_event.event_specific_data
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    assert (evaluation.asset_key, evaluation.severity, evaluation.description) == (
        dg.AssetKey("ledger_total"),
        dg.AssetCheckSeverity.WARN,
        "off by one",
    )
    assert failed.step_key == "ledger_total_ledger_total_balances"


# A run worker that dies (kill -9) while its step holds a slot of the pool, as the shipped instance limits it.
KILLED_IN_POOL = textwrap.dedent(
    """
    import os, signal, sys
    import dagster as dg

    @dg.asset(pool=sys.argv[1])
    def killed_with_its_worker() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with dg.DagsterInstance.get() as instance:
        dg.materialize([killed_with_its_worker], instance=instance)
    """
)


@dg.asset(pool=WAREHOUSE_POOL)
def next_in_the_pool() -> None:
    pass


DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(partitions_def=DAYS)
def daily_total() -> None:
    return None


def test_a_check_of_one_day_points_at_that_day_s_latest_materialisation(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize([daily_total], instance=instance, partition_key="2026-11-01")
        dg.materialize([daily_total], instance=instance, partition_key="2026-11-02")
        latest = dg.materialize([daily_total], instance=instance, partition_key="2026-11-01")

        target = dagster_internals.latest_materialization(instance, daily_total.key, "2026-11-01")
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=daily_total.key, asset_partitions=["2026-11-01"]), limit=1
        ).records
        assert dagster_internals.latest_materialization(instance, daily_total.key, "2026-11-03") is None

        # An evaluation built with that target is what the UI counts as the day's check result.
        evaluation = dg.AssetCheckEvaluation(
            asset_key=daily_total.key,
            check_name="by_hand",
            passed=True,
            partition="2026-11-01",
            target_materialization_data=target,
        )
    assert (target.run_id, target.storage_id) == (latest.run_id, record.storage_id)
    assert evaluation.target_materialization_data == target


def test_a_run_whose_worker_died_in_a_pool_step_is_canceled_and_its_slot_given_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(resources.files("batch_assets").joinpath("dagster.yaml"), dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    worker = subprocess.run([sys.executable, "-c", KILLED_IN_POOL, WAREHOUSE_POOL], capture_output=True, timeout=120)
    assert worker.returncode == -signal.SIGKILL, worker.stderr[-2000:]

    with dg.DagsterInstance.get() as instance:

        def holders() -> list[str]:
            # Read where the adapter writes: this test pins the storage's behaviour as well as its signature.
            info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
            return [slot.run_id for slot in info.claimed_slots]

        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED and holders() == [run.run_id]

        dagster_internals.cancel_run(instance, run.run_id)  # nothing answers: the worker is dead
        assert not instance.get_run_by_id(run.run_id).is_finished
        dagster_internals.mark_canceled(instance, instance.get_run_by_id(run.run_id), "its worker was killed")
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
        assert holders() == [run.run_id]  # an ended run keeps its slot until someone gives it back

        dagster_internals.free_pool_slots(instance, run.run_id)
        assert holders() == []
        assert dg.materialize([next_in_the_pool], instance=instance).success


def instance_calls(path: Path) -> set[str]:
    """The DagsterInstance attributes a module uses, through a name `instance` or a `.instance` attribute."""
    calls = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "instance") or (
                isinstance(owner, ast.Attribute) and owner.attr == "instance"
            ):
                calls.add(node.attr)
    return calls


def test_no_module_but_the_adapter_reaches_past_dagster_s_public_api() -> None:
    private = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "dagster_internals.py":
            continue
        if "dagster._" in path.read_text():
            private.add((name, "dagster._"))
        for call in instance_calls(path):
            if not is_public(getattr(dg.DagsterInstance, call, None)):
                private.add((name, call))
    assert private <= NOT_MOVED_YET


def test_the_runs_of_a_partition_are_listed_and_an_ephemeral_instance_is_not_persistent(tmp_path: Path) -> None:
    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"))
    def daily_count() -> int:
        return 1

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dagster_internals.is_persistent(instance)
        assert dg.materialize([daily_count], instance=instance, partition_key="2026-11-02").success
        assert dg.materialize([daily_count], instance=instance, partition_key="2026-11-03").success
        (run,) = dagster_internals.partition_runs(instance, "2026-11-02")
        assert run.tags["dagster/partition"] == "2026-11-02"
    assert not dagster_internals.is_persistent(dg.DagsterInstance.ephemeral())


def test_the_celery_run_loop_polls_at_the_interval_set_and_sleeps_between_rounds() -> None:
    import inspect

    from dagster_celery import core_execution_loop

    before = core_execution_loop.TICK_SECONDS
    try:
        dagster_internals.poll_celery_tasks_every(0.1)
        assert core_execution_loop.TICK_SECONDS == 0.1
        # The loop must still read the module constant when it sleeps, or the knob does nothing.
        assert "time.sleep(TICK_SECONDS)" in inspect.getsource(core_execution_loop.core_celery_execution_loop)
    finally:
        core_execution_loop.TICK_SECONDS = before
