"""Exceptions stage: categorise the day's unmatched items and report the breaks and amount mismatches."""

from collections import Counter
from decimal import Decimal

import dagster as dg
import polars as pl

from batch_assets.partitions import DAILY, ONE_RUN, WAREHOUSE_POOL
from batch_assets.resources import MatchingResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import StageRun, money_metadata, run_stage, table_key
from batch_assets.storage import ACCOUNT_BUCKET_KEY, PartitionWrite
from batch_assets.transforms.exceptions import (
    CATEGORY_AMOUNT_MISMATCH,
    classify,
    exceptions,
)

EXCEPTIONS = "recon.exceptions"
OPEN_ITEMS = "recon.open_items"


@dg.asset(
    key=table_key(EXCEPTIONS),
    description="Breaks (unmatched items older than grace_days) and amount mismatches, with category, age and "
    "status (open, or expired: a standing break).",
    group_name="reconcile",
    kinds={"duckdb", "polars"},
    deps=[table_key("recon.open_items")],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def recon_exceptions(context: dg.AssetExecutionContext, warehouse: WarehouseResource, matching: MatchingResource):
    yield from run_stage("exceptions", context, warehouse, lambda stage: _exceptions_day(stage, matching))


def _exceptions_day(stage: StageRun, matching: MatchingResource):
    """One day of the stage."""
    wh, day = stage.wh, stage.day
    grace_days = matching.parameters().grace_days
    source_commit = wh.last_commit(OPEN_ITEMS, day)
    items = source_commit.row_count if source_commit else 0
    figures: Counter[str] = Counter()
    break_values: dict[str, Decimal] = {}
    with wh.spill_files(stage.run.run_id) as spill:
        spills = []
        # An amount mismatch pairs items of one account, so a big day is classified one bucket of accounts at
        # a time, and memory follows the bucket, not the day.
        for bucket in wh.buckets(items, ACCOUNT_BUCKET_KEY):
            reported = exceptions(
                classify(wh.read_partition(OPEN_ITEMS, day, bucket=bucket, ordered=False), grace_days)
            )
            spills.append(spill(reported))
            breaks = reported.filter("is_break")
            figures["breaks_ledger"] += breaks.filter(pl.col("source") == "ledger").height
            figures["breaks_bank"] += breaks.filter(pl.col("source") == "bank").height
            figures["amount_mismatches"] += reported.filter(
                (pl.col("category") == CATEGORY_AMOUNT_MISMATCH) & (pl.col("source") == "ledger")
            ).height
            figures["expired"] += reported.filter(pl.col("status") == "expired").height
            for currency, total in breaks.group_by("currency").agg(pl.col("amount").abs().sum()).iter_rows():
                break_values[currency] = break_values.get(currency, Decimal(0)) + total
        records = stage.commit(
            [
                PartitionWrite(
                    EXCEPTIONS,
                    day,
                    spills,
                    allow_empty=True,
                    input_hashes=[source_commit.fingerprint] if source_commit else [],
                )
            ]
        )
    yield stage.result(
        records[EXCEPTIONS],
        rows_processed=items,
        **{name: dg.MetadataValue.int(figures[name]) for name in ("breaks_ledger", "breaks_bank")},
        **{name: dg.MetadataValue.int(figures[name]) for name in ("amount_mismatches", "expired")},
        **{
            k: v
            for currency, total in sorted(break_values.items())
            for k, v in money_metadata(f"break_value_{currency}", total).items()
        },
    )
