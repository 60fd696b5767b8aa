"""Match stage: pair the day's ledger and bank candidates, and carry what is left into the next day."""

import time
from datetime import timedelta

import dagster as dg
import polars as pl

from batch_assets.assets.common import commit_metadata, table_key
from batch_assets.faults import crash_point
from batch_assets.partitions import DAILY, PREVIOUS_DAY, WAREHOUSE_POOL, business_date
from batch_assets.progress import ProgressResource
from batch_assets.resources import MatchingResource, WarehouseResource, run_identity
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.storage import PartitionWrite
from batch_assets.transforms.matching import (
    OPEN_ITEM_SCHEMA,
    PASSES,
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
            deps=[table_key("staging.ledger"), table_key("staging.bank"), dg.AssetDep(table_key(OPEN_ITEMS), partition_mapping=PREVIOUS_DAY)],
        ),
    ],
    partitions_def=DAILY,
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
    started = time.perf_counter()
    day = business_date(context)
    params = matching.parameters()
    wh = warehouse.open(context.log)
    run = run_identity(context)

    carried = load_carried(wh, day)
    candidates = {}
    inputs = []
    for source in ("ledger", "bank"):
        staged_commit = wh.last_commit(f"staging.{source}", day)
        if staged_commit is None:
            raise dg.Failure(f"staging.{source} has never been materialised for {day}", allow_retries=False)
        inputs.append(staged_commit.fingerprint)
        staged = wh.read_partition(f"staging.{source}", day)
        candidates[source] = pl.concat(
            [items_from_staged(staged.lazy()), items_from_open(carried.lazy(), source)]
        ).collect()
    crash_point("after_read")

    # Matching is one vectorised pass over every candidate; progress marks the items it has settled.
    tracker = progress.tracker(context.log, "match", total=candidates["ledger"].height + candidates["bank"].height, unit="items")
    matches = match_items(candidates["ledger"], candidates["bank"], day, params.date_tolerance_days)
    left_open = open_items(candidates["ledger"], candidates["bank"], matches, day, params.carry_days)
    tracker.advance(tracker.total, note=f"{matches.height:,} matched ledger items, {left_open.height:,} left open")
    records = {
        r.table: r
        for r in wh.commit(
            [
                # Empty results are legitimate here: the inputs were committed, and nothing may simply match.
                PartitionWrite(MATCHES, day, matches, allow_empty=True, input_hashes=inputs, amount_total_sql="sum(ledger_amount)"),
                PartitionWrite(OPEN_ITEMS, day, left_open, allow_empty=True, input_hashes=inputs),
            ],
            run,
        )
    }
    crash_point("after_commit")

    items = candidates["ledger"].height + candidates["bank"].height
    matched = matches["ledger_txn_id"].n_unique() + matches["bank_txn_id"].n_unique()
    per_pass = {p: matches.filter(pl.col("match_pass") == p)["match_id"].n_unique() for p in PASSES}
    # Open items first: recon/matches depends on yesterday's open items, and Dagster wants keys in order.
    yield dg.MaterializeResult(
        asset_key=table_key(OPEN_ITEMS),
        metadata={
            **commit_metadata(records[OPEN_ITEMS], started, rows_processed=items),
            **{
                f"{state}_{source}": dg.MetadataValue.int(
                    left_open.filter((pl.col("source") == source) & (pl.col("carried") == (state == "open"))).height
                )
                for source in ("ledger", "bank")
                for state in ("open", "expired")
            },
        },
        data_version=dg.DataVersion(records[OPEN_ITEMS].fingerprint),
    )
    yield dg.MaterializeResult(
        asset_key=table_key(MATCHES),
        metadata={
            **commit_metadata(records[MATCHES], started, rows_processed=items),
            "candidates_ledger": candidates["ledger"].height,
            "candidates_bank": candidates["bank"].height,
            "match_rate": dg.MetadataValue.float(round(matched / items, 6) if items else 1.0),
            **{f"matches_{p}": dg.MetadataValue.int(n) for p, n in per_pass.items()},
        },
        data_version=dg.DataVersion(records[MATCHES].fingerprint),
    )


def load_carried(wh, day) -> pl.DataFrame:
    """Yesterday's open items; none on the first reconciled day. A gap in the chain is an error, because
    skipping a day would silently drop its open items."""
    previous = day - timedelta(days=1)
    carried_commit = wh.last_commit(OPEN_ITEMS, previous)
    if carried_commit is None:
        if wh.has_commits_before(OPEN_ITEMS, previous):
            raise dg.Failure(
                f"recon/open_items has no partition for {previous}, but earlier days were reconciled: "
                f"reconcile {previous} first (batch-assets run --start {previous} --days N re-runs forward).",
                allow_retries=False,
            )
        return pl.DataFrame(schema=OPEN_ITEM_SCHEMA)
    # Runs for D-1 and D can be in flight together (a sensor, a backfill); if D-1's staging was rewritten
    # after its open items, D-1 is being re-run and its open items are about to change: carrying them
    # now would reconcile D against stale items.
    for source in ("ledger", "bank"):
        staged = wh.last_commit(f"staging.{source}", previous)
        if staged is not None and staged.commit_seq > carried_commit.commit_seq:
            raise dg.Failure(
                f"staging.{source} of {previous} changed after {previous} was reconciled, so its open items "
                f"are stale: reconcile {previous} first, then this day "
                f"(batch-assets run --start {previous} --days N re-runs forward).",
                allow_retries=False,
            )
    return wh.read_partition(OPEN_ITEMS, previous)
