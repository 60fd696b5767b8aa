"""A full warehouse disk: the failing day changes nothing, says why, and succeeds once the disk grows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.generator import generate
from batch_assets.storage import COMMIT_LOG_TABLE, Warehouse
from batch_assets_tests.test_ingest_and_validate import TABLES, run_day

FIRST, SECOND = date(2026, 11, 2), date(2026, 11, 3)
MIB = 1 << 20
# 30,000 ledger rows (about 6 MB of CSV a day) need several MiB in DuckDB and its raw zone, more than HEADROOM.
BIG_DAY_ROWS = 30_000
HEADROOM = 3 * MIB // 2
NO_SPACE = "No space left on device"
# The writing stages in the order a day runs them (the node of their steps: a stage of bucket steps is a graph
# whose steps are `<node>.<op>`), and the tables each commits.
STAGE_TABLES = {
    "ingest": {"raw.ledger", "raw.bank", "raw.resolutions", "ops.file_log"},
    "validate": {"staging.ledger", "staging.bank", "staging.quarantine"},
    "match": {"recon.matches", "recon.open_items", "recon.resolved_items", "ops.resolution_log"},
    "recon_exceptions": {"recon.exceptions"},
    "recon_summary": {"recon.summary"},
}


def mount_tmpfs(mount_point: Path, size: int) -> None:
    mount_point.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no `mount` command: cannot make a small disk to fill")
    if mounted.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): "
            f"{mounted.stderr.strip() or mounted.returncode}"
        )


def resize(mount_point: Path, size: int) -> None:
    """Grow or shrink the tmpfs in place; its files stay."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True, capture_output=True)


def used_bytes(mount_point: Path) -> int:
    stats = os.statvfs(mount_point)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def leave_free(mount_point: Path, free: int) -> None:
    resize(mount_point, used_bytes(mount_point) + free)


@contextmanager
def tmpfs(mount_point: Path, size: int) -> Iterator[Path]:
    mount_tmpfs(mount_point, size)
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)  # still busy: detach it


@pytest.fixture
def small_disk(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 16 MiB tmpfs holding the warehouse and the shared store of bucket steps; the Dagster instance and the
    landing zone stay on the big disk, as they would on a server whose data volume fills up."""
    with tmpfs(tmp_path / "disk", 16 * MIB) as disk:
        monkeypatch.setenv(settings.WAREHOUSE, str(disk / "warehouse.duckdb"))
        monkeypatch.setenv(settings.SHARED_STORE, str(disk / "shared"))
        yield disk


def warehouse_contents(database: Path) -> dict[str, list[tuple]]:
    """Every row of every table and of the commit log; the file log without first_seen_at, which is a wall clock."""
    warehouse = Warehouse(database)
    contents = {}
    for table in TABLES:
        columns = "* EXCLUDE (first_seen_at)" if table == "ops.file_log" else "*"
        contents[table] = warehouse.query(f"SELECT {columns} FROM {table} ORDER BY ALL").rows()  # noqa: S608 (a table name)
    contents[COMMIT_LOG_TABLE] = warehouse.query(f"SELECT * FROM {COMMIT_LOG_TABLE} ORDER BY commit_seq").rows()  # noqa: S608 (a table name)
    return contents


def latest_commits(database: Path) -> dict[tuple[str, str], tuple[int, str]]:
    """(table, day) to the row count and fingerprint of its latest commit; the file log's fingerprint hashes
    first_seen_at, a wall clock, so only its row count is compared."""
    rows = (
        Warehouse(database)
        .query(
            f"SELECT asset_key, partition_key, row_count, fingerprint FROM {COMMIT_LOG_TABLE} "  # noqa: S608 (a table name)
            "QUALIFY row_number() OVER (PARTITION BY asset_key, partition_key ORDER BY commit_seq DESC) = 1"
        )
        .rows()
    )
    return {
        (table, day): (count, "" if table == "ops.file_log" else fingerprint) for table, day, count, fingerprint in rows
    }


def error_texts(result: dg.ExecuteInProcessResult) -> str:
    """Everything the failed steps said: the failure's description and each error of its cause chain."""
    texts = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            texts.append(data.user_failure_data.description)
        pending = [data.error]
        while pending:
            error = pending.pop()
            if error is not None:
                texts.append(error.message)
                pending += [error.cause, error.context]
    return "\n".join(texts)


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    """What the run-failure alert and the UI's headline show: the failed step's own description."""
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


@pytest.mark.slow
def test_a_day_that_fills_the_disk_changes_nothing_and_succeeds_once_the_disk_grows(
    landing: Path, home: Path, instance: dg.DagsterInstance, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(start=FIRST, days=1, rows=200, fmt="csv", seed=21, landing=landing)
    assert run_day(instance, FIRST).success
    database = small_disk / "warehouse.duckdb"
    before = warehouse_contents(database)
    assert before["raw.ledger"] and before["recon.summary"]

    leave_free(small_disk, HEADROOM)
    generate(start=SECOND, days=1, rows=BIG_DAY_ROWS, fmt="csv", seed=21, landing=landing)
    failed = run_day(instance, SECOND)
    assert not failed.success
    assert NO_SPACE in error_texts(failed)
    (failed_step,) = [e.step_key.split(".")[0] for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    # Which stage fills the disk depends on how big each one's files are; whichever it is, the old day is
    # intact, and the stage that failed, like every stage after it, left nothing of the new day anywhere.
    during = warehouse_contents(database)
    committed = {table for table, day in latest_commits(database) if day == SECOND.isoformat()}
    earlier_stages = list(STAGE_TABLES)[: list(STAGE_TABLES).index(failed_step)]
    assert committed == {table for stage in earlier_stages for table in STAGE_TABLES[stage]}
    for table in TABLES:
        assert [r for r in during[table] if r[0] == FIRST] == [r for r in before[table] if r[0] == FIRST], table
        if table not in committed:
            assert [r for r in during[table] if r[0] == SECOND] == [], table
    # The failed run's files stay for its re-execution from failure; none is a partial write that a step could read.
    assert list((small_disk / "shared").rglob("*.partial")) == []
    scratch = small_disk / "scratch"  # spill files of the commit's own streaming writes
    assert not scratch.exists() or list(scratch.iterdir()) == []

    resize(small_disk, 128 * MIB)
    retried = run_day(instance, SECOND)
    assert retried.success, error_texts(retried)

    # The same two days on the big disk, in one clean pass, give the same tables.
    reference = home / "reference.duckdb"
    monkeypatch.setenv(settings.WAREHOUSE, str(reference))
    monkeypatch.setenv(settings.SHARED_STORE, str(home / "reference-shared"))
    assert run_day(instance, FIRST).success and run_day(instance, SECOND).success
    after, clean = warehouse_contents(database), warehouse_contents(reference)
    assert {t: after[t] for t in TABLES} == {t: clean[t] for t in TABLES}
    assert latest_commits(database) == latest_commits(reference)
    assert len(after["raw.ledger"]) > BIG_DAY_ROWS


def test_a_full_warehouse_disk_fails_with_a_message_that_says_so_and_what_to_do(
    landing: Path, home: Path, instance: dg.DagsterInstance, small_disk: Path
) -> None:
    database = small_disk / "warehouse.duckdb"
    Warehouse(database).query("SELECT 1")  # the empty tables
    leave_free(small_disk, HEADROOM)
    generate(start=FIRST, days=1, rows=BIG_DAY_ROWS, fmt="csv", seed=21, landing=landing)
    result = run_day(instance, FIRST)
    assert not result.success
    description = failure_description(result)
    # The message names the full disk by a path on it: the warehouse, its raw zone or the shared store.
    assert NO_SPACE in description and str(small_disk) in description and "re-execute" in description, description


def test_a_full_shared_store_is_not_mistaken_for_a_bad_file_and_names_its_setting(
    landing: Path, home: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "store-disk", 256 * 1024) as store:
        monkeypatch.setenv(settings.SHARED_STORE, str(store))
        generate(start=FIRST, days=1, rows=BIG_DAY_ROWS, fmt="csv", seed=21, landing=landing)
        result = run_day(instance, FIRST)
    assert not result.success and NO_SPACE in error_texts(result)
    description = failure_description(result)
    assert str(store) in description and settings.SHARED_STORE in description, description
    statuses = Warehouse(home / "warehouse.duckdb").query("SELECT DISTINCT status FROM ops.file_log").rows()
    assert ("rejected",) not in statuses, "good files were logged as rejected because the shared store's disk was full"
