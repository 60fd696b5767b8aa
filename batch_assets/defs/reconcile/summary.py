"""Summary stage: the day's reconciliation in numbers, per account and currency, per currency and in total."""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.bucket_steps import BucketedStage, BucketWork, Planned, Planning, by_bucket, day_files, input_key
from batch_assets.defs.reconcile.manual import RESOLVED_ITEMS
from batch_assets.defs.reconcile.match import OPEN_ITEMS, carried_commit
from batch_assets.partitions import DAILY, ONE_RUN
from batch_assets.resources import MatchingResource
from batch_assets.shared_store import BucketResult
from batch_assets.stage import StageRun, markdown_table, money_metadata, table_key
from batch_assets.storage import ACCOUNT_BUCKET_KEY, STANDING_BREAKS, PartitionWrite
from batch_assets.transforms.exceptions import classify
from batch_assets.transforms.matching import OPEN_ITEM_SCHEMA, PASSES
from batch_assets.transforms.summary import ALL, account_figures, roll_up

SUMMARY = "recon.summary"
# What the summary needs of the matches; the rest of their columns would only take memory.
MATCH_COLUMNS = [
    "account_id", "currency", "match_pass", "match_id", "ledger_txn_id", "bank_txn_id", "write_off_amount"
]  # fmt: skip
RESOLVED_COLUMNS = ["source", "account_id", "currency", "action", "amount", "revived"]


KEYS = ["account_id", "currency"]
UPSTREAM = ("recon.matches", "recon.open_items", "recon.exceptions", "recon.resolved_items")


def _plan(p: Planning) -> Planned:
    """Each bucket of accounts gets, for every day of the run, the day's candidates (staged rows and carried
    items), matches, open items and the standing breaks of earlier days: per-account figures add up."""
    per_day: dict = {}
    carried_from: dict = {}
    most = 0
    with p.wh.reading():
        for day in p.days:
            carried_from[day] = carried_commit(p.wh, day) is not None
            staged = [c.row_count for s in ("ledger", "bank") if (c := p.wh.last_commit(f"staging.{s}", day))]
            most = max(most, *staged, 0)
            commits = {t: c for t in UPSTREAM if (c := p.wh.last_commit(t, day))}
            per_day[day] = {
                "inputs": [c.fingerprint for c in commits.values()],
                "exceptions": commits["recon.exceptions"].row_count if "recon.exceptions" in commits else 0,
            }
    buckets = p.wh.buckets(most, ACCOUNT_BUCKET_KEY)
    inputs = {}
    for day in p.days:
        named = {
            name: input_key(name, day)
            for name in ("carried", "ledger", "bank", "matches", "open", "standing", "resolved")
        }
        if carried_from[day]:
            previous = day - timedelta(days=1)
            inputs[named["carried"]] = p.export(
                OPEN_ITEMS, previous, buckets, named["carried"], ["source", "carried", *KEYS]
            )
        for source in ("ledger", "bank"):
            inputs[named[source]] = p.export(f"staging.{source}", day, buckets, named[source], KEYS)
        inputs[named["matches"]] = p.export("recon.matches", day, buckets, named["matches"], MATCH_COLUMNS)
        inputs[named["open"]] = p.export(OPEN_ITEMS, day, buckets, named["open"])
        inputs[named["resolved"]] = p.export(RESOLVED_ITEMS, day, buckets, named["resolved"], RESOLVED_COLUMNS)
        inputs[named["standing"]] = p.export(
            STANDING_BREAKS, day, buckets, named["standing"], ["account_id", "currency", "booking_date"], before=True
        )
    matching: MatchingResource = p.context.resources.matching
    return Planned(per_day, by_bucket(inputs), {"grace_days": matching.parameters().grace_days})


def _compute(work: BucketWork) -> None:
    for day in work.task.days:
        if input_key("carried", day) in work.task.inputs:
            carried = work.read("carried", day).filter("carried")
        else:
            carried = pl.DataFrame(schema={c: OPEN_ITEM_SCHEMA[c] for c in ("source", "carried", *KEYS)})
        candidates = {
            source: pl.concat([work.read(source, day), carried.filter(pl.col("source") == source).select(KEYS)])
            for source in ("ledger", "bank")
        }
        classified = classify(work.read("open", day), work.params["grace_days"])
        figures = account_figures(
            day,
            candidates["ledger"],
            candidates["bank"],
            work.read("matches", day),
            classified,
            work.read("standing", day),
            work.read("resolved", day),
        )
        work.publish(day, "per_account", figures)
        work.count(day, {"accounts": figures.height})


def _commit_day(stage: StageRun, planned: Mapping[str, Any], results: list[BucketResult]):
    day = stage.day
    summary = roll_up(day, pl.concat([pl.read_parquet(path) for path in day_files(stage, results, "per_account")]))
    records = stage.commit(
        [PartitionWrite(SUMMARY, day, summary, allow_empty=True, input_hashes=planned["inputs"], amount_total_sql=None)]
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
            "exceptions": dg.MetadataValue.int(planned["exceptions"]),
            "top_breaks": dg.MetadataValue.md(_top_breaks(stage)),
        },
    )


SUMMARY_STAGE = BucketedStage(
    "summary",
    outs={
        "summary": dg.AssetOut(
            key=table_key(SUMMARY),
            description="Per account and currency, per currency (account *) and in total (*, *): items per side, "
            "matches per pass, match rate, open items, breaks and break value per side, amount mismatches, ageing "
            "buckets.",
            kinds={"duckdb", "polars"},
        )
    },
    plan=_plan,
    compute=_compute,
    commit_day=_commit_day,
    plan_resources=frozenset({"matching"}),
)


@dg.graph_multi_asset(
    name="recon_summary",
    outs=SUMMARY_STAGE.outs,
    ins={t.replace(".", "_"): dg.AssetIn(table_key(t), dagster_type=dg.Nothing) for t in UPSTREAM},
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    group_name="reconcile",
)
def recon_summary(recon_matches, recon_open_items, recon_exceptions, recon_resolved_items):
    return SUMMARY_STAGE.steps([recon_matches, recon_open_items, recon_exceptions, recon_resolved_items])


_BREAKS_OF_THE_DAY = """
SELECT source, txn_id, account_id, currency, amount, category, status, booking_date
FROM recon.exceptions WHERE business_date = $day AND status = 'open'
UNION ALL
SELECT source, txn_id, account_id, currency, amount, category, status, booking_date
FROM recon.standing_breaks WHERE is_break AND business_date < $day AND (revived_on IS NULL OR revived_on > $day)
"""


def _top_breaks(stage: StageRun, n: int = 10) -> str:
    """The day's exceptions (open breaks and amount mismatches) and standing breaks that most need a person: the
    largest, and the oldest."""
    with stage.wh.reading():
        breaks = stage.wh.query(_BREAKS_OF_THE_DAY, {"day": stage.day})
    # Calendar days, as the breaks sheet counts them.
    age = (pl.lit(stage.day) - pl.col("booking_date")).dt.total_days()
    breaks = breaks.with_columns(age_days=age).drop("booking_date")
    by_value = breaks.sort(pl.col("amount").abs(), "txn_id", descending=[True, False]).head(n)
    by_age = breaks.sort("age_days", "txn_id", descending=[True, False]).head(n)
    heading = (
        f"**Largest breaks** ({breaks.height} open exceptions and standing breaks; `batch-assets breaks --day "
        f"{stage.day} --out FILE.xlsx` lists the breaks to decide on)"
    )
    return f"{heading}\n\n{markdown_table(by_value)}\n\n**Oldest breaks**\n\n{markdown_table(by_age)}"
