"""Summary stage: the day's reconciliation in numbers, per account and currency, per currency and in total."""

from datetime import timedelta

import dagster as dg
import polars as pl

from batch_assets.defs.reconcile.match import OPEN_ITEMS, carried_commit
from batch_assets.partitions import DAILY, ONE_RUN, WAREHOUSE_POOL
from batch_assets.resources import MatchingResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import StageRun, money_metadata, run_stage, table_key
from batch_assets.storage import ACCOUNT_BUCKET_KEY, PartitionWrite, bucket_predicate
from batch_assets.transforms.exceptions import classify
from batch_assets.transforms.matching import OPEN_ITEM_SCHEMA, PASSES
from batch_assets.transforms.summary import ALL, account_figures, roll_up

SUMMARY = "recon.summary"
# What the summary needs of the matches; the rest of their columns would only take memory.
MATCH_COLUMNS = ["account_id", "currency", "match_pass", "match_id", "ledger_txn_id", "bank_txn_id"]


@dg.asset(
    key=table_key(SUMMARY),
    description="Per account and currency, per currency (account *) and in total (*, *): items per side, matches "
    "per pass, match rate, open items, breaks and break value per side, amount mismatches, ageing buckets.",
    group_name="reconcile",
    kinds={"duckdb", "polars"},
    deps=[table_key("recon.matches"), table_key("recon.open_items"), table_key("recon.exceptions")],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def recon_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource, matching: MatchingResource):
    yield from run_stage("summary", context, warehouse, lambda stage: _summary_day(stage, matching))


def _summary_day(stage: StageRun, matching: MatchingResource):
    """One day of the stage."""
    day, wh = stage.day, stage.wh
    keys = ["account_id", "currency"]
    with wh.reading():
        previous_open = carried_commit(wh, day)
        staged_rows = max(
            (c.row_count for s in ("ledger", "bank") if (c := wh.last_commit(f"staging.{s}", day))), default=0
        )
    grace_days = matching.parameters().grace_days
    # Per-account figures add up across buckets of accounts, so a big day is summarised one bucket at a time.
    per_account = []
    for bucket in wh.buckets(staged_rows, ACCOUNT_BUCKET_KEY):
        with wh.reading():
            carried = (
                wh.read_partition(
                    OPEN_ITEMS, day - timedelta(days=1), ["source", "carried", *keys], bucket=bucket, ordered=False
                ).filter("carried")
                if previous_open is not None
                else pl.DataFrame(schema={c: OPEN_ITEM_SCHEMA[c] for c in ("source", "carried", *keys)})
            )
            staged = {
                source: wh.read_partition(f"staging.{source}", day, keys, bucket=bucket, ordered=False)
                for source in ("ledger", "bank")
            }
            matches = wh.read_partition("recon.matches", day, MATCH_COLUMNS, bucket=bucket, ordered=False)
            left_open = wh.read_partition(OPEN_ITEMS, day, bucket=bucket, ordered=False)
            standing = wh.query(
                "SELECT account_id, currency, booking_date FROM recon.standing_breaks "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                f"WHERE business_date < ? AND {bucket_predicate(bucket)}",
                [day],
            )
        candidates = {
            source: pl.concat([staged[source], carried.filter(pl.col("source") == source).select(keys)])
            for source in ("ledger", "bank")
        }
        classified = classify(left_open, grace_days)
        per_account.append(
            account_figures(day, candidates["ledger"], candidates["bank"], matches, classified, standing)
        )
        del carried, staged, candidates, matches, left_open, classified, standing
    summary = roll_up(day, pl.concat(per_account))
    with wh.reading():
        commits = {
            t: c for t in ("recon.matches", "recon.open_items", "recon.exceptions") if (c := wh.last_commit(t, day))
        }
    inputs = [c.fingerprint for c in commits.values()]
    records = stage.commit(
        [PartitionWrite(SUMMARY, day, summary, allow_empty=True, input_hashes=inputs, amount_total_sql=None)]
    )
    total = summary.filter((pl.col("account_id") == ALL) & (pl.col("currency") == ALL)).row(0, named=True)
    per_currency = summary.filter((pl.col("account_id") == ALL) & (pl.col("currency") != ALL))
    break_values = {
        k: v
        for row in per_currency.iter_rows(named=True)
        for k, v in money_metadata(
            f"break_value_{row['currency']}", row["break_value_ledger"] + row["break_value_bank"]
        ).items()
    }
    yield stage.result(
        records[SUMMARY],
        rows_processed=total["ledger_items"] + total["bank_items"],
        **{
            "match_rate": dg.MetadataValue.float(round(total["match_rate"], 6)),
            **{f"matches_{p}": dg.MetadataValue.int(total[f"matches_{p}"]) for p in PASSES},
            **{
                name: dg.MetadataValue.int(total[name])
                for name in (
                    "ledger_items",
                    "bank_items",
                    "open_ledger",
                    "open_bank",
                    "breaks_ledger",
                    "breaks_bank",
                    "amount_mismatches",
                    "timing_differences",
                    "standing_breaks",
                )
            },
            **break_values,
            # So that alerting reads the day's numbers from the event log, never from the warehouse, whose
            # file lock a reader would contend for with the writing runs.
            "exceptions": dg.MetadataValue.int(
                commits["recon.exceptions"].row_count if "recon.exceptions" in commits else 0
            ),
        },
    )
