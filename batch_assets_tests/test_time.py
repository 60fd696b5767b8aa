"""DST changes in the business time zone: one schedule request per day, and a run that touches only its own day."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.schedules import schedule_execution_time_iterator

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.partitions import DAILY
from batch_assets.storage import COMMIT_LOG_TABLE, Warehouse
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_ingest_and_validate import TABLES, run_day


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class DstCase:
    """A window of the schedule's real ticks around one change, and for each business day the UTC instant of
    the first tick that must request it (worked out by hand from the zone's offsets)."""

    zone: str
    schedule_time: str
    first_tick: str
    last_tick: str
    first_request: dict[str, str]


# 2026: Europe/London moves to BST on 29 March and back to GMT on 25 October, both at 01:00 UTC;
# America/New_York moves to EDT on 8 March at 07:00 UTC and back to EST on 1 November at 06:00 UTC.
CASES = {
    "london-spring-forward": DstCase(
        "Europe/London",
        "06:00",
        "2026-03-28 00:00",
        "2026-03-30 23:45",
        {"2026-03-27": "2026-03-28 06:00", "2026-03-28": "2026-03-29 05:00", "2026-03-29": "2026-03-30 05:00"},
    ),
    "london-fall-back": DstCase(
        "Europe/London",
        "06:00",
        "2026-10-24 00:00",
        "2026-10-26 23:45",
        {"2026-10-23": "2026-10-24 05:00", "2026-10-24": "2026-10-25 06:00", "2026-10-25": "2026-10-26 06:00"},
    ),
    # 01:30 does not exist in London on 29 March: the first tick after the gap (02:00 BST) is due.
    "london-time-in-the-gap": DstCase(
        "Europe/London",
        "01:30",
        "2026-03-28 00:00",
        "2026-03-29 23:45",
        {"2026-03-27": "2026-03-28 01:30", "2026-03-28": "2026-03-29 01:00"},
    ),
    # 01:30 happens twice in London on 25 October (BST, then GMT): the day is still asked for under one key.
    "london-time-repeated": DstCase(
        "Europe/London",
        "01:30",
        "2026-10-24 00:00",
        "2026-10-25 23:45",
        {"2026-10-23": "2026-10-24 00:30", "2026-10-24": "2026-10-25 00:30"},
    ),
    "new-york-spring-forward": DstCase(
        "America/New_York",
        "06:00",
        "2026-03-07 05:00",
        "2026-03-10 03:45",
        {"2026-03-06": "2026-03-07 11:00", "2026-03-07": "2026-03-08 10:00", "2026-03-08": "2026-03-09 10:00"},
    ),
    "new-york-fall-back": DstCase(
        "America/New_York",
        "06:00",
        "2026-10-31 04:00",
        "2026-11-03 04:45",
        {"2026-10-30": "2026-10-31 10:00", "2026-10-31": "2026-11-01 11:00", "2026-11-01": "2026-11-02 11:00"},
    ),
    "new-york-time-in-the-gap": DstCase(
        "America/New_York",
        "02:30",
        "2026-03-07 05:00",
        "2026-03-09 03:45",
        {"2026-03-06": "2026-03-07 07:30", "2026-03-07": "2026-03-08 07:00"},
    ),
    "new-york-time-repeated": DstCase(
        "America/New_York",
        "01:30",
        "2026-10-31 04:00",
        "2026-11-02 04:45",
        {"2026-10-30": "2026-10-31 05:30", "2026-10-31": "2026-11-01 05:30"},
    ),
}


def schedule_ticks(first: datetime, last: datetime) -> Iterator[datetime]:
    """The instants the daemon evaluates the schedule at, from the schedule's own cron string and time zone."""
    schedule = defs.get_repository_def().get_schedule_def("reconcile_previous_day")
    for tick in schedule_execution_time_iterator(
        first.timestamp(), schedule.cron_schedule, schedule.execution_timezone
    ):
        if tick > last:
            return
        yield tick


def evaluate(instance: dg.DagsterInstance, tick: datetime) -> list[dg.RunRequest]:
    """The schedule's real evaluation at `tick`, with the code location's calendar resource bound to the environment."""
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("reconcile_previous_day")
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=tick,
        repository_def=repository,
        resources={"calendar": repository.get_top_level_resources()["calendar"]},
    )
    # A fresh context re-opens the SQLite instance from its ref to build resources, about 0.25 s here; the
    # open instance does the same job and makes a sweep of every tick over days affordable.
    context._instance = instance
    return list(schedule.evaluate_tick(context).run_requests or [])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_schedule_requests_each_previous_business_day_once_across_a_dst_change(
    case: DstCase, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.TIMEZONE, case.zone)
    monkeypatch.setenv(settings.SCHEDULE_TIME, case.schedule_time)
    first_request: dict[str, datetime] = {}
    partitions_of_key: dict[str, set[str]] = {}
    ticks = 0
    for tick in schedule_ticks(utc(case.first_tick), utc(case.last_tick)):
        ticks += 1
        for request in evaluate(instance, tick):
            partitions_of_key.setdefault(request.run_key, set()).add(request.partition_key)
            if request.run_key not in first_request:
                first_request[request.run_key] = tick
                # The partition must exist when the daemon resolves the request at this tick.
                assert request.partition_key in DAILY.get_partition_keys(current_time=tick)[-3:], (tick, request)

    assert ticks >= 4 * 24 * 2 - 8  # every 15-minute tick of two days or more, around the change
    # The daemon launches a run key once: one key per day means one run per day, none skipped, none twice.
    assert partitions_of_key == {f"schedule:{day}": {day} for day in case.first_request}
    assert {key.removeprefix("schedule:"): at for key, at in first_request.items()} == {
        day: utc(at) for day, at in case.first_request.items()
    }


# -- a real run of the change day ------------------------------------------------------------------------


@pytest.fixture
def process_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restores the process's local time zone after a test changed TZ."""
    yield
    monkeypatch.undo()
    time.tzset()


def deliver_days_that_carry_items_across(landing: Path, before: date, change: date, after: date) -> None:
    """Each day matches something, leaves something open for the next day, and matches what the day before left."""
    write_landing(
        landing, "ledger", before, csv_text([txn("L1", "10.00", before, reference="R1"), txn("L2", "5.00", before)])
    )
    write_landing(landing, "bank", before, csv_text([txn("B1", "10.00", before, reference="R1")]))
    write_landing(
        landing, "ledger", change, csv_text([txn("L3", "7.25", change, reference="R3"), txn("L4", "1.10", change)])
    )
    write_landing(
        landing, "bank", change, csv_text([txn("B2", "5.00", change), txn("B3", "7.25", change, reference="r 3")])
    )
    write_landing(
        landing, "ledger", after, csv_text([txn("L5", "2.00", after, reference="R5"), txn("L6", "3.33", after)])
    )
    write_landing(
        landing, "bank", after, csv_text([txn("B4", "1.10", after), txn("B5", "2.00", after, reference="R5")])
    )


def table_rows(home: Path) -> dict[str, list[tuple]]:
    warehouse = Warehouse(home / "warehouse.duckdb")
    return {table: warehouse.query(f"SELECT * FROM {table} ORDER BY ALL").rows() for table in TABLES}  # noqa: S608 (a table name)


def commit_log(home: Path) -> list[dict]:
    return (
        Warehouse(home / "warehouse.duckdb").query(f"SELECT * FROM {COMMIT_LOG_TABLE} ORDER BY commit_seq").to_dicts()  # noqa: S608 (a table name)
    )


@pytest.mark.slow
def test_running_the_dst_change_day_touches_only_its_own_business_date(
    landing: Path,
    home: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    process_time_zone: None,
) -> None:
    # New York's 25-hour 1 November 2026. Both the business time zone and the process's own local time are
    # New York, so code that used local time (date.today(), naive datetimes) instead of business dates, or
    # a time window of the partition instead of its business_date, would show here.
    zone, change = "America/New_York", date(2026, 11, 1)
    monkeypatch.setenv(settings.TIMEZONE, zone)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    before, after = change - timedelta(days=1), change + timedelta(days=1)
    deliver_days_that_carry_items_across(landing, before, change, after)
    for day in (before, change, after):
        assert run_day(instance, day).success, day
    tables, commits = table_rows(home), commit_log(home)
    for table in ("raw.ledger", "staging.bank", "recon.matches", "recon.open_items", "recon.summary"):
        assert {row[0] for row in tables[table]} == {before, change, after}, table  # every day has rows to lose

    assert run_day(instance, change).success
    assert table_rows(home) == tables  # every row of every day, the change day's included, is as it was
    again = commit_log(home)
    assert again[: len(commits)] == commits
    rerun = again[len(commits) :]
    assert {c["partition_key"] for c in rerun} == {change.isoformat()}
    assert sorted(c["asset_key"] for c in rerun) == sorted(TABLES)  # one commit per table, of that day only
    first_run = {
        c["asset_key"]: (c["row_count"], c["fingerprint"]) for c in commits if c["partition_key"] == change.isoformat()
    }
    assert {c["asset_key"]: (c["row_count"], c["fingerprint"]) for c in rerun} == first_run
