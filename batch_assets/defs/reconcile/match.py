"""Match stage: pair the day's ledger and bank candidates, and carry what is left into the next day."""

from collections import Counter
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from batch_assets.partitions import DAILY, ONE_RUN, PREVIOUS_DAY, WAREHOUSE_POOL
from batch_assets.progress import ProgressResource
from batch_assets.resources import MatchingResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import StageRun, run_stage, table_key
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


@dg.multi_asset(
    name="match",
    specs=[
        dg.AssetSpec(
            table_key(MATCHES),
            description="Every pair or group matched on the day: pass, both sides' ids and amounts; one row per "
            "ledger item.",
            group_name="reconcile",
            kinds={"duckdb", "polars"},
            # Not on yesterday's open items, although the matching reads them: open_items carries that
            # dependency for the whole stage. Declared here too, it would make the UI's asset backfill target
            # one more day of matches than of open items, which Dagster refuses for a multi-asset.
            deps=[table_key("staging.ledger"), table_key("staging.bank")],
        ),
        dg.AssetSpec(
            table_key(OPEN_ITEMS),
            description="Every candidate left unmatched on the day, with its age; `carried` ones are candidates "
            "again the next day, the others expired here.",
            group_name="reconcile",
            kinds={"duckdb", "polars"},
            deps=[
                table_key("staging.ledger"),
                table_key("staging.bank"),
                dg.AssetDep(table_key(OPEN_ITEMS), partition_mapping=PREVIOUS_DAY),
            ],
        ),
    ],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def match(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    matching: MatchingResource,
    progress: ProgressResource,
):
    """Candidates are the day's staged rows plus yesterday's carried open items; the passes run in order."""
    yield from run_stage("match", context, warehouse, lambda stage: _match_day(stage, matching, progress))


def _match_day(stage: StageRun, matching: MatchingResource, progress: ProgressResource):
    """One day of the stage."""
    day, wh, run = stage.day, stage.wh, stage.run
    params = matching.parameters()

    with wh.reading():
        previous_open = carried_commit(wh, day)
        staged_commits = {source: wh.last_commit(f"staging.{source}", day) for source in ("ledger", "bank")}
    for source in ("ledger", "bank"):
        if staged_commits[source] is None:
            raise dg.Failure(f"staging.{source} has never been materialised for {day}", allow_retries=False)
    inputs = [staged_commits[source].fingerprint for source in ("ledger", "bank")]
    # Matching never looks across accounts, so a big day is matched in buckets of accounts, one at a time,
    # and memory follows the bucket, not the day.
    buckets = wh.buckets(max(c.row_count for c in staged_commits.values()), ACCOUNT_BUCKET_KEY)
    tracker = progress.tracker(
        stage.context.log, "match", total=sum(c.row_count for c in staged_commits.values()), unit="rows"
    )
    counts: Counter[str] = Counter()
    spills: dict[str, list[Path]] = {MATCHES: [], OPEN_ITEMS: []}
    with wh.spill_files(run.run_id) as spill:
        for bucket in buckets:
            with wh.reading():
                carried = (
                    wh.read_partition(OPEN_ITEMS, day - timedelta(days=1), bucket=bucket, ordered=False)
                    if previous_open is not None
                    else pl.DataFrame(schema=OPEN_ITEM_SCHEMA)
                )
                staged_rows = {
                    source: wh.read_partition(
                        f"staging.{source}", day, STAGED_ITEM_COLUMNS, bucket=bucket, ordered=False
                    )
                    for source in ("ledger", "bank")
                }
            candidates = {}
            bucket_rows = 0
            for source in ("ledger", "bank"):
                staged = staged_rows.pop(source)
                bucket_rows += staged.height
                candidates[source] = pl.concat(
                    [items_from_staged(staged.lazy()), items_from_open(carried.lazy(), source)]
                ).collect()
                del staged
            matches = match_items(candidates["ledger"], candidates["bank"], day, params.date_tolerance_days)
            left_open = open_items(candidates["ledger"], candidates["bank"], matches, day, params.carry_days)
            _count_bucket(counts, candidates, matches, left_open)
            spills[MATCHES].append(spill(matches))
            spills[OPEN_ITEMS].append(spill(left_open))
            tracker.advance(
                bucket_rows,
                note=f"bucket {bucket.index + 1} of {bucket.count}: {matches.height:,} matched ledger items",
            )
            del carried, candidates, matches, left_open
        records = stage.commit(
            [
                # Empty results are legitimate here: the inputs were committed, and nothing may simply match.
                PartitionWrite(
                    MATCHES,
                    day,
                    spills[MATCHES],
                    allow_empty=True,
                    input_hashes=inputs,
                    amount_total_sql="sum(ledger_amount)",
                ),
                PartitionWrite(OPEN_ITEMS, day, spills[OPEN_ITEMS], allow_empty=True, input_hashes=inputs),
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
        buckets=len(buckets),
    )


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
