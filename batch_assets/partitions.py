"""Business-day partitions, and the pool and queue that keep warehouse steps one at a time where the file is."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import date

import dagster as dg

# Partitioned checks are how each day's check result lands on that day's partition in the UI; the
# feature is marked preview in dagster 1.13 and warns once per check at import, which says nothing
# a user can act on.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)

# Partition keys are business dates (YYYY-MM-DD); tables are partitioned on a business_date DATE column,
# never on a time-zoned timestamp, so a re-run touches exactly its own day.
# end_offset=1 includes today (UTC), so that the previous business day of any time zone east of UTC
# has a partition when the schedule asks for it.
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)

# Day D depends on day D-1 of the same asset (cross-day duplicates, open items carried forward).
PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)

# DuckDB allows one writing process per file: every asset or check that opens the warehouse is in this pool,
# and the shipped dagster.yaml limits it to one at a time.
WAREHOUSE_POOL = "warehouse"

# On Celery (docs/scaling.md) the pool does not hold: dagster-celery sends a step to the queue this tag names, and
# one worker with concurrency 1 on the warehouse's host serves it. The in-process executor ignores the tag.
WAREHOUSE_QUEUE = "warehouse"
ON_WAREHOUSE_HOST = {"dagster-celery/queue": WAREHOUSE_QUEUE}


def business_date(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    """The business date of a run of one partition."""
    return date.fromisoformat(context.partition_key)


def business_dates(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The business dates a run covers, in order: its one day, or every day of a backfilled range, which a
    single-run backfill hands to each step at once."""
    return sorted(date.fromisoformat(key) for key in context.partition_keys)


# Every asset takes a backfilled range of days in one run, day by day in order (each day still commits alone).
ONE_RUN = dg.BackfillPolicy.single_run()


# The tags Dagster puts on a run of one partition, and on a run of a range (a single-run backfill).
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def tagged_days(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The first and last business day a run's tags say it covers; None for a run of no partition."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG], tags[PARTITION_TAG]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    return None


def days_label(tags: Mapping[str, str]) -> str | None:
    """How an alert names a run's days: `2026-11-03`, or `2026-11-02...2026-11-04` for a range."""
    days = tagged_days(tags)
    if days is None:
        return None
    return days[0] if days[0] == days[1] else f"{days[0]}...{days[1]}"
