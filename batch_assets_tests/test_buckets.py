"""A day taken in buckets (validate by txn_id, match by account) gives exactly what one pass over it gives."""

from __future__ import annotations

import csv
import itertools
import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.generator import generate
from batch_assets.storage import TABLES, Warehouse, bucket_count
from batch_assets_tests.helpers import csv_text, write_landing
from batch_assets_tests.test_ingest_and_validate import failure_message

START = date(2026, 11, 2)
DAYS = [START + timedelta(days=i) for i in range(3)]
# Every table a stage writes; the file log is left out only because it records when each file was first seen.
COMPARED = sorted(set(TABLES) - {"ops.file_log"})
# Whitespace that Polars strips from a txn_id (Unicode White_Space) and that DuckDB's own trim() keeps.
HOSTILE_PADDING = ["\u00a0", "\u3000", "\t", "\u2007", "\u0085"]


def test_bucket_count_keeps_buckets_near_the_size_asked_for() -> None:
    assert [bucket_count(rows, 1000) for rows in (0, 1, 1000, 1001, 5000)] == [1, 1, 1, 2, 5]
    assert bucket_count(10**9, 0) == 1  # 0 turns bucketing off


def hostile_copies(landing: Path) -> None:
    """An extra ledger file on day 2 holding padded copies of txn_ids staged on day 1 and on day 2, so that
    cross-day and same-day duplicates are only found if every copy lands in the same bucket as the original."""
    copies = []
    for day, count in ((DAYS[0], 5), (DAYS[1], 5)):
        with (landing / "ledger" / f"ledger_{day.isoformat()}.csv").open(newline="") as handle:
            rows = list(itertools.islice(csv.DictReader(handle), count))
        for row, pad in zip(rows, HOSTILE_PADDING, strict=True):
            copies.append({**row, "txn_id": f"{pad}{row['txn_id']} {pad}", "booking_date": DAYS[1].isoformat()})
    write_landing(landing, "ledger", DAYS[1], csv_text(copies, list(copies[0])), part="late")


def reconcile(landing: Path, home: Path, bucket_rows: int) -> tuple[dict[str, pl.DataFrame], list[dict]]:
    """The days through the daily job in a fresh data folder; every table, and the last day's match metadata."""
    shutil.copytree(landing, home / "landing")
    overrides = {**settings.data_environment(home), settings.BUCKET_ROWS: str(bucket_rows)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in overrides.items():
            patch.setenv(name, value)
        (home / "dagster_home").mkdir(parents=True)
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
            job = defs.resolve_job_def("daily_reconciliation")
            metadata = []
            for day in DAYS:
                result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)
                assert result.success, (day, failure_message(result))
                metadata.append(
                    {
                        event.asset_key.to_user_string(): {
                            k: v.value for k, v in event.materialization.metadata.items()
                        }
                        for event in result.get_asset_materialization_events()
                    }
                )
    wh = Warehouse(home / "warehouse.duckdb")
    return {table: wh.query(f"SELECT * FROM {table} ORDER BY ALL") for table in COMPARED}, metadata  # noqa: S608 (a table name)


# Figures that depend on the run, not on the data.
RUN_FIGURES = {"duration_s", "rows_per_s", "commit_seq", "buckets"}


@pytest.mark.slow
def test_bucketed_validate_and_match_equal_a_single_pass(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(start=START, days=len(DAYS), rows=1500, fmt="csv", seed=5, landing=landing)
    hostile_copies(landing)

    single, single_meta = reconcile(landing, tmp_path / "single", bucket_rows=0)
    bucketed, bucketed_meta = reconcile(landing, tmp_path / "bucketed", bucket_rows=100)

    assert bucketed_meta[-1]["recon/matches"]["buckets"] == bucket_count(1500, 100) > 10
    assert single_meta[-1]["recon/matches"]["buckets"] == 1
    # The padded copies were found as duplicates (same day and across days), not staged a second time.
    duplicates = single["staging.quarantine"].filter(
        (pl.col("rule") == "duplicate_txn_id") & (pl.col("file_name").str.contains("_late"))
    )
    assert duplicates.height == 10
    for table in COMPARED:
        # A day without resolutions has none to land, judge or move; every other table has rows.
        no_rows_expected = {"recon.exceptions", "raw.resolutions", "recon.resolved_items", "ops.resolution_log"}
        assert single[table].height > 0 or table in no_rows_expected, table
        assert bucketed[table].equals(single[table]), table
    for day_single, day_bucketed in zip(single_meta, bucketed_meta, strict=True):
        for key, figures in day_single.items():
            assert {k: v for k, v in day_bucketed[key].items() if k not in RUN_FIGURES} == {
                k: v for k, v in figures.items() if k not in RUN_FIGURES
            }, key
