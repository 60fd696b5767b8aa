"""Shared by the fault-injection tests: a reconciled reference, run workers in subprocesses, and the checks
that nothing was lost, nothing counted twice, and the warehouse and Dagster agree."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.generator import generate
from batch_assets.operations import run_days
from batch_assets.stage import table_key
from batch_assets.storage import TABLES, Warehouse, qualified

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)
DAYS = (D1, D2)
SEED = 17
ROWS = 400
CLI = str(Path(sys.executable).with_name("batch-assets"))
# The file log also records when each file was first seen, which differs from one data folder to another.
UNSTABLE_COLUMNS = {"ops.file_log": ["first_seen_at"]}


def deliver(landing: Path) -> None:
    """Two generated business days, so that the second one carries open items from the first."""
    generate(start=D1, days=len(DAYS), rows=ROWS, fmt="csv", seed=SEED, landing=landing)


def tables(home: Path, days: tuple[date, ...] = DAYS) -> dict[str, list[tuple]]:
    """Every warehouse table's rows for `days`, in a stable order."""
    wh = Warehouse(home / "warehouse.duckdb")
    out = {}
    for table in sorted(TABLES):
        frame = wh.query(f"SELECT * FROM {qualified(table)} WHERE business_date IN ?", [list(days)])
        frame = frame.drop(UNSTABLE_COLUMNS.get(table, []))
        out[table] = sorted(frame.rows(), key=repr)
    return out


@pytest.fixture(scope="session")
def clean_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The tables of an undisturbed run of both days, in a data folder of their own."""
    home = tmp_path_factory.mktemp("clean") / "data"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.data_environment(home).items():
            patch.setenv(name, value)
        deliver(home / "landing")
        assert run_days(list(DAYS)) is None
        return tables(home)


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

