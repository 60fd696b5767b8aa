"""Writers that overlap: a zombie step whose worker died, an analyst's session holding the warehouse, and two
runs of the same day at once. One result stands, nothing is counted twice, and a stale write is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import alerts, settings
from batch_assets.defs.alerting import sensors as alerting
from batch_assets.faults import HOLD_AT, HOLD_DIR
from batch_assets.operations import daily_job_definition, run_days
from batch_assets.stage import table_key
from batch_assets.storage import TABLES, Warehouse
from batch_assets_tests.faults import (
    D1,
    D2,
    FAST_TRANSIENT_RETRY,
    assert_dagster_agrees_with_the_commit_log,
    cli,
    runs_of,
    tables,
    with_step_retry_policy,
)
from batch_assets_tests.test_alerting import alert_lines, tick

# A run worker as Dagster's default launcher starts one, running the daily job as built by argv[2].
RUN_WORKER = textwrap.dedent(
    """
    import importlib, sys
    import dagster as dg
    module, name = sys.argv[2].rsplit(".", 1)
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(getattr(importlib.import_module(module), name)), instance=instance,
                       tags={"dagster/partition": sys.argv[1]}, raise_on_error=False)
    """
)


def daily_job_in_step_processes() -> dg.JobDefinition:
    """The daily job with each step in a child process of the run worker, as a multiprocess, Celery or
    Kubernetes executor runs it: there, a step outlives its killed worker."""
    return daily_job_definition().with_executor_def(dg.multiprocess_executor)


# An analyst's DuckDB session on the warehouse file: open, say so, keep it open for argv[2] seconds.
ANALYST = textwrap.dedent(
    """
    import sys, time, duckdb
    connection = duckdb.connect(sys.argv[1], read_only=True)
    connection.execute("SELECT count(*) FROM raw.ledger").fetchall()
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def step_failures(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Each failed step's error text, as the failure alert reports it."""
    return {
        entry.dagster_event.step_key: alerts.error_text(entry.dagster_event)
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    }


@pytest.fixture
def analyst(home: Path):
    """Start an outside read-only session on the warehouse for some seconds; yields the starter."""
    started: list[subprocess.Popen] = []

    def start(seconds: float) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", ANALYST, str(home / "warehouse.duckdb"), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline().strip() == "open"
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    "job, worker_dies",
    [
        ("batch_assets_tests.test_concurrency.daily_job_in_step_processes", True),
        ("batch_assets.operations.daily_job_definition", False),
    ],
    ids=["step-outlives-its-killed-worker", "paused-worker-wakes-up"],
)
@pytest.mark.usefixtures("first_day_reconciled")
def test_a_zombie_step_s_late_write_is_refused_and_the_retry_s_result_stands(
    job: str, worker_dies: bool, home: Path, tmp_path: Path, clean_tables: dict[str, list[tuple]]
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-c", RUN_WORKER, D2.isoformat(), job],
        env={**os.environ, HOLD_AT: "match:after_read", HOLD_DIR: str(hold)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: any(hold.glob("held-*")), 240, "the match step to read its inputs")
    (held,) = hold.glob("held-*")
    step_pid = int(held.name.removeprefix("held-"))
    if worker_dies:
        assert step_pid != worker.pid
        worker.send_signal(signal.SIGKILL)  # the run worker dies; its match step lives on
        worker.wait()
    else:
        # The shipped in-process executor runs the step in the worker itself: the zombie is a worker that
        # stopped answering (a long pause, a frozen VM) and was given up for dead while it still lives.
        assert step_pid == worker.pid
    assert alive(step_pid)

    with dg.DagsterInstance.get() as instance:
        (zombie_run,) = runs_of(instance, D2)
        assert cli("cancel", "--force", zombie_run.run_id).returncode == 0
        retry = cli("reexecute", zombie_run.run_id)
        assert retry.returncode == 0 and ": ok" in retry.stdout, retry.stdout + retry.stderr[-3000:]
        retry_run = runs_of(instance, D2)[-1]
        committed_by_retry = {table: Warehouse(home / "warehouse.duckdb").last_commit(table, D2) for table in TABLES}

        (hold / "release").touch()  # the zombie wakes up and tries to commit what it matched
        wait_for(lambda: not alive(step_pid), 120, "the zombie step to end")
        if not worker_dies:
            worker.wait()

        failures = step_failures(instance, zombie_run.run_id)
        assert "refused to write recon.matches" in failures["match.match_commit"], failures
        assert "This run is stale; the newer data stays." in failures["match.match_commit"]
        wh = Warehouse(home / "warehouse.duckdb")
        assert {table: wh.last_commit(table, D2) for table in TABLES} == committed_by_retry
        assert committed_by_retry["recon.matches"].run_id == retry_run.run_id
        zombie_commits = wh.query(
            "SELECT asset_key FROM ops.commit_log WHERE run_id = ? AND asset_key LIKE 'recon.%'", [zombie_run.run_id]
        )
        assert zombie_commits.is_empty()
        assert tables(home) == clean_tables
        assert_dagster_agrees_with_the_commit_log(home, instance, D2)


@pytest.mark.slow
@pytest.mark.usefixtures("first_day_reconciled")
def test_an_outside_session_shorter_than_the_lock_timeout_is_waited_out(
    home: Path, analyst, clean_tables: dict[str, list[tuple]]
) -> None:
    holder = analyst(4)
    with dg.DagsterInstance.get() as instance:
        assert run_days([D2]) is None
        (run,) = runs_of(instance, D2)
        waits = [e.message for e in instance.all_logs(run.run_id) if "is locked by" in (e.message or "")]
    assert waits and f"PID {holder.pid}" in waits[0]
    assert tables(home) == clean_tables


@pytest.mark.slow
@pytest.mark.usefixtures("first_day_reconciled")
def test_an_outside_session_longer_than_the_lock_timeout_fails_the_run_naming_it_and_alerts(
    home: Path, analyst, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tables(home, (D1,))
    monkeypatch.setenv(settings.LOCK_TIMEOUT_SECONDS, "1")
    with dg.DagsterInstance.get() as instance:
        started = tick(alerting.run_failure_alert, instance, None)
        holder = analyst(600)
        # The shipped policy's retries and backoff, with waits short enough for a test.
        job = with_step_retry_policy(daily_job_definition(), FAST_TRANSIENT_RETRY)
        result = job.execute_in_process(partition_key=D2.isoformat(), instance=instance, raise_on_error=False)
        assert not result.success  # each attempt waits out the lock timeout; the last one fails the run
        holder.kill()
        (run,) = runs_of(instance, D2)
        retried = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert [e.step_key for e in retried] == ["ingest"] * FAST_TRANSIENT_RETRY.max_retries
        error = step_failures(instance, run.run_id)["ingest"]
        tick(alerting.run_failure_alert, instance, started.cursor)

    assert f"is locked by PID {holder.pid}" in error
    assert "Close that DuckDB session (or stop that process), then re-execute the run" in error
    (alert,) = [a for a in alert_lines(home / "alerts.jsonl") if a["kind"] == "run_failure"]
    assert (alert["run_id"], alert["business_date"], alert["step"]) == (run.run_id, D2.isoformat(), "ingest")
    assert f"PID {holder.pid}" in alert["error"]
    assert tables(home, (D1,)) == before


@pytest.mark.slow
@pytest.mark.usefixtures("first_day_reconciled")
def test_two_runs_of_the_same_day_at_once_leave_one_result(home: Path, clean_tables: dict[str, list[tuple]]) -> None:
    # A backfill's run and the sensor's run of the same day, in two processes at once.
    both = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("batch-assets")), "run", "--start", D2.isoformat(), "--days", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in both]

    with dg.DagsterInstance.get() as instance:
        runs = runs_of(instance, D2)
        assert len(runs) == 2
        outcomes = {run.run_id: run.status for run in runs}
        # The newer run is never refused; the older one either finished each stage first or was refused.
        assert runs[1].status == dg.DagsterRunStatus.SUCCESS, outputs
        if runs[0].status != dg.DagsterRunStatus.SUCCESS:
            assert any("This run is stale" in text for text in step_failures(instance, runs[0].run_id).values()), (
                outcomes
            )
        wh = Warehouse(home / "warehouse.duckdb")
        for table in TABLES:
            current = wh.last_commit(table, D2)
            recorded = [
                r.asset_materialization.metadata["commit_seq"].value
                for r in instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=table_key(table), asset_partitions=[D2.isoformat()]), limit=10
                ).records
            ]
            assert current.commit_seq in recorded, (table, current, recorded)
            assert current.run_id == runs[1].run_id, table
    assert tables(home) == clean_tables
