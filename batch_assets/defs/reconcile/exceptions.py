"""Exceptions stage: categorise the day's unmatched items and report the breaks and amount mismatches."""

import time

import dagster as dg
import polars as pl

from batch_assets.faults import fault_point
from batch_assets.partitions import DAILY, WAREHOUSE_POOL, business_date
from batch_assets.resources import MatchingResource, WarehouseResource, run_identity
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import commit_metadata, money_metadata, table_key
from batch_assets.storage import PartitionWrite
from batch_assets.transforms.exceptions import (
    CATEGORY_AMOUNT_MISMATCH,
    classify,
    exceptions,
)

EXCEPTIONS = "recon.exceptions"


@dg.asset(
    key=table_key(EXCEPTIONS),
    description="Breaks (unmatched items older than grace_days) and amount mismatches, with category, age and "
    "status (open, or expired: a standing break).",
    group_name="reconcile",
    kinds={"duckdb", "polars"},
    deps=[table_key("recon.open_items")],
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def recon_exceptions(context: dg.AssetExecutionContext, warehouse: WarehouseResource, matching: MatchingResource):
    started = time.perf_counter()
    day = business_date(context)
    wh = warehouse.open(context.log)
    left_open = wh.read_partition("recon.open_items", day, ordered=False)
    reported = exceptions(classify(left_open, matching.parameters().grace_days))
    source_commit = wh.last_commit("recon.open_items", day)
    fault_point("after_read", "exceptions")
    (record,) = wh.commit(
        [
            PartitionWrite(
                EXCEPTIONS,
                day,
                reported,
                allow_empty=True,
                input_hashes=[source_commit.fingerprint] if source_commit else [],
            )
        ],
        run_identity(context),
        stage="exceptions",
    )
    fault_point("after_commit", "exceptions")
    breaks = reported.filter("is_break")
    per_currency = dict(breaks.group_by("currency").agg(pl.col("amount").abs().sum()).sort("currency").iter_rows())
    return dg.MaterializeResult(
        metadata={
            **commit_metadata(record, started, rows_processed=left_open.height),
            "breaks_ledger": dg.MetadataValue.int(breaks.filter(pl.col("source") == "ledger").height),
            "breaks_bank": dg.MetadataValue.int(breaks.filter(pl.col("source") == "bank").height),
            "amount_mismatches": dg.MetadataValue.int(
                reported.filter(
                    (pl.col("category") == CATEGORY_AMOUNT_MISMATCH) & (pl.col("source") == "ledger")
                ).height
            ),
            "expired": dg.MetadataValue.int(reported.filter(pl.col("status") == "expired").height),
            **{
                k: v
                for currency, total in per_currency.items()
                for k, v in money_metadata(f"break_value_{currency}", total).items()
            },
        },
        data_version=dg.DataVersion(record.fingerprint),
    )
