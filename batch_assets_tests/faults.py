"""Shared by the fault-injection tests: a reconciled reference, run workers in subprocesses, and the checks
that nothing was lost, nothing counted twice, and the warehouse and Dagster agree."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets import settings
from batch_assets.generator import generate
from batch_assets.landing.resolutions import DECISION_COLUMNS, OPTIONAL_COLUMNS
from batch_assets.operations import run_days
from batch_assets.retries import TRANSIENT_RETRY
from batch_assets.stage import table_key
from batch_assets.storage import TABLES, Warehouse, qualified
from batch_assets_tests.helpers import csv_text, write_landing

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)
DAYS = (D1, D2)
SEED = 17
ROWS = 400
CLI = str(Path(sys.executable).with_name("batch-assets"))
# The file log also records when each file was first seen, and the resolution log the run that applied each
# resolution, which differ from one data folder to another.
UNSTABLE_COLUMNS = {"ops.file_log": ["first_seen_at"], "ops.resolution_log": ["run_id"]}


# The shipped policy (same retries, backoff and jitter) with waits of tens of milliseconds instead of
# seconds, for the tests that exhaust a step's retries.
FAST_TRANSIENT_RETRY = TRANSIENT_RETRY._replace(delay=0.05)


def with_step_retry_policy(job: dg.JobDefinition, policy: dg.RetryPolicy) -> dg.JobDefinition:
    """The same job, every step retried by `policy` instead of its own: a retry policy on a node of the
    graph takes precedence over the one on the op it runs, and the steps, assets and resources stay."""
    graph = job.graph
    retried = {node._replace(retry_policy=policy): deps for node, deps in graph.dependencies.items()}
    assert len(retried) == len(graph.nodes), "every node must be a key of the dependencies to be overridden"
    return dg.GraphDefinition(name=graph.name, node_defs=graph.node_defs, dependencies=retried).to_job(
        name=job.name,
        resource_defs=job.resource_defs,
        tags=job.tags,
        partitions_def=job.partitions_def,
        executor_def=job.executor_def,
        asset_layer=job.asset_layer,
    )


def deliver(landing: Path) -> None:
    """Two generated business days, so that the second one carries open items from the first, and the second
    day's resolutions: items written off, so that its match stage applies resolutions too."""
    generate(start=D1, days=len(DAYS), rows=ROWS, fmt="csv", seed=SEED, landing=landing)
    ledger = pl.read_csv(landing / "ledger" / f"ledger_{D2.isoformat()}.csv", infer_schema=False)
    decided = [
        {"resolution_id": f"C-{n}", "action": "write_off", "source": "ledger", "txn_id": txn_id, "reason_code": "TEST",
         "resolved_by": "faults", "resolved_at": "2026-11-03T08:00:00Z"}
        for n, txn_id in enumerate(ledger["txn_id"].head(3))
    ]  # fmt: skip
    write_landing(landing, "resolutions", D2, csv_text(decided, (*DECISION_COLUMNS, *OPTIONAL_COLUMNS)))


def tables(home: Path, days: tuple[date, ...] = DAYS) -> dict[str, list[tuple]]:
    """Every warehouse table's rows for `days`, in a stable order."""
    wh = Warehouse(home / "warehouse.duckdb")
    out = {}
    for table in sorted(TABLES):
        sql = f"SELECT * FROM {qualified(table)} WHERE business_date IN ?"  # noqa: S608 (a quoted name, no value)
        frame = wh.query(sql, [list(days)])
        frame = frame.drop(UNSTABLE_COLUMNS.get(table, []))
        out[table] = sorted(frame.rows(), key=repr)
    return out


@pytest.fixture(scope="session")
def shared_by_workers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that every pytest-xdist worker of this test run sees: the parent of the workers' own base
    folders, which is this run's; without workers, the session's base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def one_worker_at_a_time(lock: Path) -> Iterator[None]:
    """An exclusive lock on the file `lock`: the first worker in builds what the others then only read."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def clean_tables(tmp_path_factory: pytest.TempPathFactory, shared_by_workers: Path) -> dict[str, list[tuple]]:
    """The tables of an undisturbed run of both days, in a data folder of their own; one worker runs them."""
    saved = shared_by_workers / "clean-tables.pickle"
    with one_worker_at_a_time(shared_by_workers / "clean-tables.lock"):
        if not saved.exists():
            home = tmp_path_factory.mktemp("clean") / "data"
            with pytest.MonkeyPatch.context() as patch:
                for name, value in settings.data_environment(home).items():
                    patch.setenv(name, value)
                deliver(home / "landing")
                assert run_days(list(DAYS)) is None
                saved.write_bytes(pickle.dumps(tables(home)))
    return pickle.loads(saved.read_bytes())


@pytest.fixture
def first_day_reconciled(home: Path, landing: Path, shared_by_workers: Path) -> Path:
    """This test's data folder with both days delivered and the first one reconciled: its warehouse and its
    Dagster instance. The first test of the run to ask runs the day; the others get a copy of the data folder
    that run left (the same tables and materialisations, under that run's id)."""
    snapshot = shared_by_workers / "first-day" / "data"
    with one_worker_at_a_time(shared_by_workers / "first-day.lock"):
        if not snapshot.exists():
            deliver(landing)
            assert run_days([D1]) is None
            shutil.copytree(home, snapshot)
            return home
    shutil.copytree(snapshot, home, dirs_exist_ok=True)
    return home


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The project's command line in a process of its own, as an operator runs it."""
    return subprocess.run(
        [CLI, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def runs_of(instance: dg.DagsterInstance, day: date) -> list[dg.DagsterRun]:
    """The day's runs in the order they started, which is the order the stale-writer fence goes by."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": day.isoformat()}))
    return [r.dagster_run for r in sorted(records, key=lambda r: r.start_time or r.create_timestamp.timestamp())]


def assert_dagster_agrees_with_the_commit_log(home: Path, instance: dg.DagsterInstance, day: date) -> None:
    """For every table, the latest materialisation Dagster recorded for the day names the commit that the
    warehouse holds as current: same commit, same run, same content fingerprint."""
    wh = Warehouse(home / "warehouse.duckdb")
    for table in sorted(TABLES):
        current = wh.last_commit(table, day)
        assert current is not None, f"{table} {day} was never committed"
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=table_key(table), asset_partitions=[day.isoformat()]), limit=1
        ).records
        metadata = record.asset_materialization.metadata
        assert metadata["commit_seq"].value == current.commit_seq, (table, metadata["commit_seq"].value, current)
        assert record.run_id == current.run_id, (table, record.run_id, current.run_id)
        if "fingerprint" in metadata:
            assert metadata["fingerprint"].value == current.fingerprint, table
