"""Match stage: pair the day's ledger and bank candidates, and carry what is left into the next day."""

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
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
from batch_assets.stage import StageRun, table_key
from batch_assets.storage import (
    ACCOUNT_BUCKET_KEY,
    CommitRecord,
    PartitionWrite,
    Warehouse,
)
from batch_assets.transforms.matching import (
    OPEN_ITEM_SCHEMA,
    PASSES,
    STAGED_ITEM_COLUMNS,
    items_from_open,
    items_from_staged,
    match_items,
    open_items,
)

MATCHES = "recon.matches"
OPEN_ITEMS = "recon.open_items"


def _plan(p: Planning) -> Planned:
    """Each bucket of accounts gets its staged rows of every day of the run and the items carried into the
    first day; the bucket steps carry the items of the run's later days themselves."""
    per_day: dict = {}
    most = 0
    with p.wh.reading():
        previous_open = carried_commit(p.wh, p.days[0])
        for day in p.days:
            commits = {source: p.wh.last_commit(f"staging.{source}", day) for source in ("ledger", "bank")}
            for source, commit in commits.items():
                if commit is None:
                    raise dg.Failure(f"staging.{source} has never been materialised for {day}", allow_retries=False)
            per_day[day] = {"inputs": [commits[source].fingerprint for source in ("ledger", "bank")]}
            most = max(most, *(commit.row_count for commit in commits.values()))
    matching: MatchingResource = p.context.resources.matching
    params = matching.parameters()
    # Matching never looks across accounts, so a big day is matched in buckets of accounts, and memory follows
    # the bucket, not the day.
    buckets = p.wh.buckets(most, ACCOUNT_BUCKET_KEY)
    inputs = {}
    if previous_open is not None:
        inputs["carried"] = p.export(OPEN_ITEMS, p.days[0] - timedelta(days=1), buckets, "carried")
    for day in p.days:
        for source in ("ledger", "bank"):
            key = input_key(f"staged/{source}", day)
            inputs[key] = p.export(f"staging.{source}", day, buckets, key, STAGED_ITEM_COLUMNS)
    return Planned(
        per_day,
        by_bucket(inputs),
        {"date_tolerance_days": params.date_tolerance_days, "carry_days": params.carry_days},
    )


def _compute(work: BucketWork) -> None:
    """Match the bucket's candidates of each day in order; what a day leaves open is the next day's carry."""
    carried = work.read("carried") if "carried" in work.task.inputs else pl.DataFrame(schema=OPEN_ITEM_SCHEMA)
    for day in work.task.days:
        candidates = {
            source: pl.concat(
                [items_from_staged(work.read(f"staged/{source}", day).lazy()), items_from_open(carried.lazy(), source)]
            ).collect()
            for source in ("ledger", "bank")
        }
        matches = match_items(candidates["ledger"], candidates["bank"], day, work.params["date_tolerance_days"])
        left_open = open_items(candidates["ledger"], candidates["bank"], matches, day, work.params["carry_days"])
        counts: Counter[str] = Counter()
        _count_bucket(counts, candidates, matches, left_open)
        work.count(day, counts)
        work.publish(day, MATCHES, matches)
        work.publish(day, OPEN_ITEMS, left_open)
        carried = left_open
        del candidates, matches


def _commit_day(stage: StageRun, planned: Mapping[str, Any], results: list[BucketResult]):
    """The day's matches and open items, every bucket's rows, in one transaction."""
    inputs = planned["inputs"]
    counts = day_figures(stage, results)
    records = stage.commit(
        [
            # Empty results are legitimate here: the inputs were committed, and nothing may simply match.
            PartitionWrite(
                MATCHES,
                stage.day,
                day_files(stage, results, MATCHES),
                allow_empty=True,
                input_hashes=inputs,
                amount_total_sql="sum(ledger_amount)",
            ),
            PartitionWrite(
                OPEN_ITEMS, stage.day, day_files(stage, results, OPEN_ITEMS), allow_empty=True, input_hashes=inputs
            ),
        ]
    )
    items = counts["candidates_ledger"] + counts["candidates_bank"]
    matched = counts["matched_ledger"] + counts["matched_bank"]
    # Open items first: they carry the stage's dependency on the previous day.
    yield stage.result(
        records[OPEN_ITEMS],
        rows_processed=items,
        **{
            f"{state}_{source}": dg.MetadataValue.int(counts[f"{state}_{source}"])
            for source in ("ledger", "bank")
            for state in ("open", "expired")
        },
    )
    yield stage.result(
        records[MATCHES],
        rows_processed=items,
        candidates_ledger=counts["candidates_ledger"],
        candidates_bank=counts["candidates_bank"],
        match_rate=dg.MetadataValue.float(round(matched / items, 6) if items else 1.0),
        **{f"matches_{p}": dg.MetadataValue.int(counts[f"matches_{p}"]) for p in PASSES},
        buckets=len(results),
    )


MATCH = BucketedStage(
    "match",
    outs={
        "matches": dg.AssetOut(
            key=table_key(MATCHES),
            description="Every pair or group matched on the day: pass, both sides' ids and amounts; one row per "
            "ledger item.",
            kinds={"duckdb", "polars"},
        ),
        "open_items": dg.AssetOut(
            key=table_key(OPEN_ITEMS),
            description="Every candidate left unmatched on the day, with its age; `carried` ones are candidates "
            "again the next day, the others expired here.",
            kinds={"duckdb", "polars"},
        ),
    },
    plan=_plan,
    compute=_compute,
    commit_day=_commit_day,
    plan_resources=frozenset({"matching"}),
)


@dg.graph_multi_asset(
    name="match",
    outs=MATCH.outs,
    ins={
        "staging_ledger": dg.AssetIn(table_key("staging.ledger"), dagster_type=dg.Nothing),
        "staging_bank": dg.AssetIn(table_key("staging.bank"), dagster_type=dg.Nothing),
    },
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    group_name="reconcile",
)
def match(staging_ledger, staging_bank):
    """Candidates are the day's staged rows plus yesterday's carried open items; the passes run in order."""
    return MATCH.steps([staging_ledger, staging_bank])


def _count_bucket(
    counts: Counter[str], candidates: dict[str, pl.DataFrame], matches: pl.DataFrame, left_open: pl.DataFrame
) -> None:
    """Add one bucket's figures to the day's: buckets hold disjoint accounts, so the figures add up."""
    for source in ("ledger", "bank"):
        counts[f"candidates_{source}"] += candidates[source].height
        counts[f"matched_{source}"] += matches[f"{source}_txn_id"].n_unique()
        mine = left_open.filter(pl.col("source") == source)
        counts[f"open_{source}"] += mine.filter("carried").height
        counts[f"expired_{source}"] += mine.filter(~pl.col("carried")).height
    for match_pass, n in matches.group_by("match_pass").agg(pl.col("match_id").n_unique()).iter_rows():
        counts[f"matches_{match_pass}"] += n


def carried_commit(wh: Warehouse, day) -> CommitRecord | None:
    """The commit of yesterday's open items that day `day` carries; None on the first reconciled day. A gap
    in the chain, or yesterday's staging rewritten after it was reconciled, is an error."""
    previous = day - timedelta(days=1)
    commit = wh.last_commit(OPEN_ITEMS, previous)
    if commit is None:
        if wh.has_commits_before(OPEN_ITEMS, previous):
            raise dg.Failure(
                f"recon/open_items has no partition for {previous}, but earlier days were reconciled: "
                f"reconcile {previous} first (batch-assets run --start {previous} --days N re-runs forward).",
                allow_retries=False,
            )
        return None
    # Runs for D-1 and D can be in flight together (a sensor, a backfill); if D-1's staging was rewritten
    # after its open items, D-1 is being re-run and its open items are about to change: carrying them
    # now would reconcile D against stale items.
    for source in ("ledger", "bank"):
        staged = wh.last_commit(f"staging.{source}", previous)
        if staged is not None and staged.commit_seq > commit.commit_seq:
            raise dg.Failure(
                f"staging.{source} of {previous} changed after {previous} was reconciled, so its open items "
                f"are stale: reconcile {previous} first, then this day "
                f"(batch-assets run --start {previous} --days N re-runs forward).",
                allow_retries=False,
            )
    return commit
