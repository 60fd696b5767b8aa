"""Load: 1,000 files landing at once lose nothing, and three triggers of one day count nothing twice."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.defs.automation.jobs import SERIAL_TAG, TRIGGER_TAG
from batch_assets.generator import generate
from batch_assets.storage import COMMIT_LOG_TABLE, TABLES, Warehouse
from batch_assets_tests.dagster_dev import REPOSITORY, graphql, running_dagster_dev
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_automation import tick
from batch_assets_tests.test_ingest_and_validate import run_day

# -- a storm of files --------------------------------------------------------------------------------------

STORM_DAYS = [date(2026, 11, 2) + timedelta(days=n) for n in range(5)]
PARTS = 100  # 5 days x 2 sources x 100 parts = 1,000 files
PAGE_SIZE = 500
# The sensor stops starting days once it has examined a page of files: 200 files a day, so 3 days a tick.
MAX_DAYS_PER_TICK = PAGE_SIZE // (2 * PARTS) + 1


def rows_of_part(source: str, day: date, part: int) -> list[dict[str, str]]:
    """1 to 4 rows; the same amounts and references on both sides, so every item matches."""
    return [
        txn(
            f"{source[0].upper()}-{day:%m%d}-{part:03d}-{n}",
            f"{part}.{n:02d}",
            day,
            account=f"ACC{part % 7}",
            reference=f"P{part}N{n}",
        )
        for n in range(1 + part % 4)
    ]


def land_storm(landing: Path, *, fresh_day: date) -> dict[str, int]:
    """Write every file at once, JSONL for one part in ten and CSV otherwise, each settled except `fresh_day`'s,
    which are still being written. Returns rows written per file name."""
    written: dict[str, int] = {}
    settled = time.time() - 3600
    for day in STORM_DAYS:
        for source in ("ledger", "bank"):
            for part in range(PARTS):
                rows = rows_of_part(source, day, part)
                if part % 10 == 9:
                    lines = [json.dumps({k: v for k, v in row.items() if v}) for row in rows]  # absent, not ""
                    content, ext = "".join(line + "\n" for line in lines), "jsonl"
                else:
                    content, ext = csv_text(rows), "csv"
                path = write_landing(landing, source, day, content, part=f"{part:04d}", ext=ext)
                if day != fresh_day:
                    os.utime(path, (settled, settled))
                written[f"{source}/{path.name}"] = len(rows)
    return written


@pytest.mark.slow
def test_a_storm_of_a_thousand_files_becomes_one_run_per_day_and_loses_no_file_or_row(
    landing: Path, home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.SENSOR_PAGE_SIZE, str(PAGE_SIZE))
    fresh_day = STORM_DAYS[2]
    written = land_storm(landing, fresh_day=fresh_day)
    assert len(written) == 1000

    requested: list[str] = []
    cursor, ticks = None, 0
    while ticks < 6:
        requests, cursor, skip = tick(instance, cursor)
        ticks += 1
        assert len(requests) <= MAX_DAYS_PER_TICK
        requested += [r.partition_key for r in requests]
        if not requests:
            break
    assert sorted(requested) == sorted(d.isoformat() for d in STORM_DAYS if d != fresh_day)
    assert fresh_day.isoformat() in skip and "still being written" in skip

    # The writer finishes; the next tick takes the day it was writing, and only that day.
    settled = time.time() - 3600
    for path in landing.glob(f"*/*_{fresh_day}_*"):
        os.utime(path, (settled, settled))
    requests, cursor, _ = tick(instance, cursor)
    assert [r.partition_key for r in requests] == [fresh_day.isoformat()]
    assert ticks + 1 <= 5  # a handful of ticks for 1,000 files
    assert len(cursor) < 64_000

    for day in STORM_DAYS:  # one run per day, in order, as the queue would start them
        assert run_day(instance, day).success, day

    warehouse = Warehouse(home / "warehouse.duckdb")
    log = warehouse.query("SELECT file_name, status, row_count FROM ops.file_log").rows()
    assert len(log) == len(written)  # every file logged once
    assert {name: (status, count) for name, status, count in log} == {
        name: ("ingested", n) for name, n in written.items()
    }
    raw = warehouse.query(
        "SELECT file_name, count(*) FROM (SELECT file_name FROM raw.ledger UNION ALL SELECT file_name FROM raw.bank) "
        "GROUP BY file_name"
    ).rows()
    assert dict(raw) == written  # every line of every file is a row, once
    staged = warehouse.query(
        "SELECT (SELECT count(*) FROM staging.ledger) + (SELECT count(*) FROM staging.bank)"
    ).item()
    assert staged == sum(written.values())
    unmatched = warehouse.query("SELECT count(*) FROM recon.open_items").rows()
    assert unmatched == [(0,)]


# -- three triggers, one day ---------------------------------------------------------------------------------

DAY = date(2026, 11, 2)
LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_WAIT_SECONDS = 300


def next_day_at(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(DAY + timedelta(days=1), dt_time(hour, minute), UTC)


def schedule_request(instance: dg.DagsterInstance, at: datetime) -> dg.RunRequest:
    repository = defs.get_repository_def()
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        repository_def=repository,
        resources={"calendar": repository.get_top_level_resources()["calendar"]},
    )
    (request,) = repository.get_schedule_def("reconcile_previous_day").evaluate_tick(context).run_requests
    return request


def daemon_tags(request: dg.RunRequest, origin_tag: str, origin: str) -> dict[str, str]:
    """The tags the daemon gives the run it makes of `request`."""
    return {
        **request.tags,
        "dagster/partition": request.partition_key,
        "dagster/run_key": request.run_key,
        origin_tag: origin,
    }


def launch(base_url: str, tags: dict[str, str]) -> str:
    """Submit a run of the daily job to the webserver, as the UI and the daemon do: it goes to the run queue."""
    params = {
        "selector": {**REPOSITORY, "jobName": "daily_reconciliation"},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = graphql(base_url, LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_until_finished(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.RunRecord]:
    deadline = time.monotonic() + RUN_WAIT_SECONDS
    while time.monotonic() < deadline:
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records):
            return sorted(records, key=lambda r: r.start_time)
        time.sleep(1)
    raise AssertionError(f"runs {run_ids} did not finish within {RUN_WAIT_SECONDS} s")


@pytest.mark.slow
def test_the_sensor_the_schedule_and_a_manual_launch_of_one_day_run_one_at_a_time_and_count_nothing_twice(
    home: Path, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.FILE_QUIET_SECONDS, "0")
    generate(start=DAY, days=1, rows=300, fmt="csv", seed=5, landing=landing)
    ledger_lines = sum(1 for _ in (landing / "ledger" / f"ledger_{DAY}.csv").open()) - 1
    with running_dagster_dev(home, overrides={settings.FILE_QUIET_SECONDS: "0"}) as base_url:
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            (from_sensor,), cursor, _ = tick(instance)
            from_schedule = schedule_request(instance, next_day_at(6))
            assert from_sensor.partition_key == from_schedule.partition_key == DAY.isoformat()
            run_ids = [
                launch(base_url, daemon_tags(from_sensor, "dagster/sensor_name", "landing_files")),
                launch(base_url, daemon_tags(from_schedule, "dagster/schedule_name", "reconcile_previous_day")),
                launch(base_url, {"dagster/partition": DAY.isoformat()}),  # Jobs → daily_reconciliation → Materialize
            ]
            # Asking again gives nothing new: the sensor has seen the files, the schedule repeats its run key.
            again, _, _ = tick(instance, cursor)
            later = schedule_request(instance, next_day_at(18, 45))
            assert again == [] and later.run_key == from_schedule.run_key

            records = wait_until_finished(instance, run_ids)
            assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 3
            assert all(r.dagster_run.tags[SERIAL_TAG] == "reconcile" for r in records)  # the manual one too: a job tag
            assert {r.dagster_run.tags.get(TRIGGER_TAG) for r in records} == {"landing_files", "schedule", None}
            # One at a time: each run started after the one before it ended (the queue's serial tag limit).
            for earlier, later_run in itertools.pairwise(records):
                assert later_run.start_time >= earlier.end_time

    warehouse = Warehouse(home / "warehouse.duckdb")
    commits = warehouse.query(
        f"SELECT asset_key, run_id, row_count, fingerprint FROM {COMMIT_LOG_TABLE} WHERE partition_key = ?",  # noqa: S608 (a table name)
        [DAY.isoformat()],
    ).rows()
    assert Counter(table for table, *_ in commits) == dict.fromkeys(TABLES, 3)  # each run wrote each table once
    assert {run_id for _, run_id, *_ in commits} == set(run_ids)
    for table in TABLES:  # three runs, one result: what a single clean run gives
        assert len({(count, fingerprint) for name, _, count, fingerprint in commits if name == table}) == 1, table
    assert warehouse.query("SELECT count(*) FROM raw.ledger").rows() == [(ledger_lines,)]
    assert warehouse.query("SELECT file_name, status FROM ops.file_log ORDER BY ALL").rows() == [
        (f"bank/bank_{DAY}.csv", "ingested"),
        (f"ledger/ledger_{DAY}.csv", "ingested"),
    ]
