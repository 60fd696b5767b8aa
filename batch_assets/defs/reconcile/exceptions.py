"""Exceptions stage: categorise the day's unmatched items and report the breaks and amount mismatches."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.bucket_steps import (
    BucketedStage,
    BucketWork,
    Planned,
    Planning,
    by_bucket,
    day_figures,
    day_files,
    input_key,
)
from batch_assets.partitions import DAILY, ONE_RUN
from batch_assets.resources import MatchingResource
from batch_assets.shared_store import BucketResult
from batch_assets.stage import StageRun, money_metadata, table_key
from batch_assets.storage import ACCOUNT_BUCKET_KEY, PartitionWrite
from batch_assets.transforms.exceptions import (
    CATEGORY_AMOUNT_MISMATCH,
    classify,
    exceptions,
)

EXCEPTIONS = "recon.exceptions"
OPEN_ITEMS = "recon.open_items"


def _plan(p: Planning) -> Planned:
    """Each bucket of accounts gets its open items of every day of the run: an amount mismatch pairs items of
    one account, so memory follows the bucket, not the day."""
    with p.wh.reading():
        commits = {day: p.wh.last_commit(OPEN_ITEMS, day) for day in p.days}
    per_day = {
        day: {"inputs": [commit.fingerprint] if commit else [], "items": commit.row_count if commit else 0}
        for day, commit in commits.items()
    }
    most = max((commit.row_count for commit in commits.values() if commit), default=0)
    buckets = p.wh.buckets(most, ACCOUNT_BUCKET_KEY)
    inputs = {
        input_key("open_items", day): p.export(OPEN_ITEMS, day, buckets, input_key("open_items", day)) for day in p.days
    }
    matching: MatchingResource = p.context.resources.matching
    return Planned(per_day, by_bucket(inputs), {"grace_days": matching.parameters().grace_days})


def _compute(work: BucketWork) -> None:
    for day in work.task.days:
        reported = exceptions(classify(work.read("open_items", day), work.params["grace_days"]))
        work.publish(day, EXCEPTIONS, reported)
        breaks = reported.filter("is_break")
        break_values = breaks.group_by("currency").agg(pl.col("amount").abs().sum()).iter_rows()
        work.count(
            day,
            {
                "breaks_ledger": breaks.filter(pl.col("source") == "ledger").height,
                "breaks_bank": breaks.filter(pl.col("source") == "bank").height,
                "amount_mismatches": reported.filter(
                    (pl.col("category") == CATEGORY_AMOUNT_MISMATCH) & (pl.col("source") == "ledger")
                ).height,
                "expired": reported.filter(pl.col("status") == "expired").height,
                **{f"break_value:{currency}": total for currency, total in break_values},
            },
        )


def _commit_day(stage: StageRun, planned: Mapping[str, Any], results: list[BucketResult]):
    figures = day_figures(stage, results)
    write = PartitionWrite(
        EXCEPTIONS, stage.day, day_files(stage, results, EXCEPTIONS), allow_empty=True, input_hashes=planned["inputs"]
    )
    records = stage.commit([write])
    break_values = {
        name.removeprefix("break_value:"): Decimal(total)
        for name, total in figures.items()
        if name.startswith("break_value:")
    }
    yield stage.result(
        records[EXCEPTIONS],
        rows_processed=planned["items"],
        **{name: dg.MetadataValue.int(figures[name]) for name in ("breaks_ledger", "breaks_bank")},
        **{name: dg.MetadataValue.int(figures[name]) for name in ("amount_mismatches", "expired")},
        **{
            k: v
            for currency, total in sorted(break_values.items())
            for k, v in money_metadata(f"break_value_{currency}", total).items()
        },
    )


EXCEPTIONS_STAGE = BucketedStage(
    "exceptions",
    outs={
        "exceptions": dg.AssetOut(
            key=table_key(EXCEPTIONS),
            description="Breaks (unmatched items older than grace_days) and amount mismatches, with category, age "
            "and status (open, or expired: a standing break).",
            kinds={"duckdb", "polars"},
        )
    },
    plan=_plan,
    compute=_compute,
    commit_day=_commit_day,
    plan_resources=frozenset({"matching"}),
)


@dg.graph_multi_asset(
    name="recon_exceptions",
    outs=EXCEPTIONS_STAGE.outs,
    ins={"open_items": dg.AssetIn(table_key(OPEN_ITEMS), dagster_type=dg.Nothing)},
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    group_name="reconcile",
)
def recon_exceptions(open_items):
    return EXCEPTIONS_STAGE.steps([open_items])
