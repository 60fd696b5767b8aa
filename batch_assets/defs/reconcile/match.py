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
from batch_assets.defs.reconcile.manual import (
    RAW_RESOLUTIONS,
    RESOLUTION_LOG,
    RESOLVED_ITEMS,
    Book,
    plan_resolutions,
)
from batch_assets.partitions import DAILY, ONE_RUN
from batch_assets.resources import MatchingResource
from batch_assets.shared_store import BucketResult
from batch_assets.stage import StageRun, markdown_table, table_key
from batch_assets.storage import (
    ACCOUNT_BUCKET_KEY,
    CommitRecord,
    PartitionWrite,
    Warehouse,
)
from batch_assets.transforms.matching import (
    MATCH_SCHEMA,
    OPEN_ITEM_SCHEMA,
    PASS_MANUAL,
    PASSES,
    STAGED_ITEM_COLUMNS,
    items_from_open,
    items_from_staged,
    match_items,
    open_items,
)
from batch_assets.transforms.resolutions import (
    ACTION_REVERSE,
    ACTION_WRITE_OFF,
    RESOLUTION_LOG_SCHEMA,
    RESOLVED_ITEM_SCHEMA,
    STATUS_APPLIED,
    STATUS_REJECTED,
    VERDICT_SCHEMA,
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
            resolutions = p.wh.last_commit(RAW_RESOLUTIONS, day)
            per_day[day] = {
                "inputs": [commits[source].fingerprint for source in ("ledger", "bank")]
                + ([resolutions.fingerprint] if resolutions else [])
            }
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
    inputs.update(plan_resolutions(p, buckets))
    return Planned(
        per_day,
        by_bucket(inputs),
        {"date_tolerance_days": params.date_tolerance_days, "carry_days": params.carry_days},
    )


def _compute(work: BucketWork) -> None:
    """Match the bucket's candidates of each day in order, the day's resolutions first (pass `manual`); what a
    day leaves open is the next day's carry."""
    carried = work.read("carried") if "carried" in work.task.inputs else pl.DataFrame(schema=OPEN_ITEM_SCHEMA)
    book = Book.read(work)
    for day in work.task.days:
        candidates = {
            source: pl.concat(
                [items_from_staged(work.read(f"staged/{source}", day).lazy()), items_from_open(carried.lazy(), source)]
            ).collect()
            for source in ("ledger", "bank")
        }
        manual = pl.DataFrame(schema=MATCH_SCHEMA)
        moved = pl.DataFrame(schema=RESOLVED_ITEM_SCHEMA)
        log = pl.DataFrame(schema=RESOLUTION_LOG_SCHEMA)
        if book is not None:
            candidates, manual, moved, log = book.decide(day, candidates)
        matches = match_items(candidates["ledger"], candidates["bank"], day, work.params["date_tolerance_days"])
        left_open = open_items(candidates["ledger"], candidates["bank"], matches, day, work.params["carry_days"])
        if book is not None:
            book.after_passes(matches, left_open)
        matches = pl.concat([manual, matches])
        counts: Counter[str] = Counter()
        _count_bucket(counts, candidates, matches, left_open, moved, log)
        work.count(day, counts)
        work.publish(day, MATCHES, matches)
        work.publish(day, OPEN_ITEMS, left_open)
        work.publish(day, RESOLVED_ITEMS, moved)
        work.publish(day, RESOLUTION_LOG, log)
        carried = left_open
        del candidates, matches


def _commit_day(stage: StageRun, planned: Mapping[str, Any], results: list[BucketResult]):
    """The day's matches, open items, moved items and resolution log, every bucket's rows, in one transaction."""
    inputs = planned["inputs"]
    counts = day_figures(stage, results)
    log = _resolution_log(stage, results)
    for row in log.iter_rows(named=True):
        say = stage.context.log.warning if row["status"] == STATUS_REJECTED else stage.context.log.info
        say(
            f"resolution {row['resolution_id']} ({row['action']}, {row['file_name']} line {row['line_number']}): "
            f"{row['status']}" + (f": {row['reason']}" if row["reason"] else "")
        )
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
            PartitionWrite(
                RESOLVED_ITEMS,
                stage.day,
                day_files(stage, results, RESOLVED_ITEMS),
                allow_empty=True,
                input_hashes=inputs,
            ),
            PartitionWrite(
                RESOLUTION_LOG,
                stage.day,
                log,
                allow_empty=True,
                input_hashes=inputs,
                amount_total_sql="sum(write_off_amount)",
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
        **{f"matches_{p}": dg.MetadataValue.int(counts[f"matches_{p}"]) for p in (PASS_MANUAL, *PASSES)},
        buckets=len(results),
    )
    yield stage.result(
        records[RESOLVED_ITEMS],
        **{
            f"{what}_{source}": dg.MetadataValue.int(counts[f"{what}_{source}"])
            for what in ("revived", "written_off")
            for source in ("ledger", "bank")
        },
    )
    rejected = log.filter(pl.col("status") == STATUS_REJECTED)
    yield stage.result(
        records[RESOLUTION_LOG],
        **{f"resolutions_{status}": dg.MetadataValue.int(n) for status, n in _by_status(log).items()},
        rejected=dg.MetadataValue.md(
            markdown_table(rejected.select("resolution_id", "file_name", "line_number", "reason"))
        ),
    )


def _resolution_log(stage: StageRun, results: list[BucketResult]) -> pl.DataFrame:
    """The day's log rows from every bucket; a row the day's log already holds, unchanged, keeps the run that
    first wrote it, so a re-run leaves the log identical."""
    files = day_files(stage, results, RESOLUTION_LOG)
    fresh = pl.concat([pl.DataFrame(schema=RESOLUTION_LOG_SCHEMA), *(pl.read_parquet(f) for f in files)])
    with stage.wh.reading():
        before = stage.wh.read_partition(RESOLUTION_LOG, stage.day).cast(RESOLUTION_LOG_SCHEMA)  # type: ignore[arg-type]
    kept = before.select(*VERDICT_SCHEMA, pl.col("run_id").alias("_was")).unique(list(VERDICT_SCHEMA), keep="first")
    return (
        fresh.drop("run_id")
        .join(kept, on=list(VERDICT_SCHEMA), how="left", nulls_equal=True)
        .with_columns(run_id=pl.coalesce("_was", pl.lit(stage.run.run_id)))
        .select(list(RESOLUTION_LOG_SCHEMA))
        .sort("file_name", "line_number", "status")
    )


def _by_status(log: pl.DataFrame) -> dict[str, int]:
    found = dict(log.group_by("status").len().iter_rows())
    return {status: found.get(status, 0) for status in (STATUS_APPLIED, STATUS_REJECTED, "reversed")}


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
        "resolved_items": dg.AssetOut(
            key=table_key(RESOLVED_ITEMS),
            description="Every item the day's applied resolutions moved: matched or written off (pass `manual`), "
            "or given back to the candidates by a reverse.",
            kinds={"duckdb", "polars"},
        ),
        "resolution_log": dg.AssetOut(
            key=table_key(RESOLUTION_LOG),
            description="The audit trail: every resolution of the day with its file and line, status (applied, "
            "rejected, reversed) and reason, figures, and the run that applied it. Nothing is deleted: a reversal "
            "is a new row.",
            kinds={"duckdb"},
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
        "raw_resolutions": dg.AssetIn(table_key(RAW_RESOLUTIONS), dagster_type=dg.Nothing),
    },
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    group_name="reconcile",
)
def match(staging_ledger, staging_bank, raw_resolutions):
    """Candidates are the day's staged rows plus yesterday's carried open items; the day's resolutions apply
    first (pass `manual`), then the passes run in order."""
    return MATCH.steps([staging_ledger, staging_bank, raw_resolutions])


def _count_bucket(
    counts: Counter[str],
    candidates: dict[str, pl.DataFrame],
    matches: pl.DataFrame,
    left_open: pl.DataFrame,
    moved: pl.DataFrame,
    log: pl.DataFrame,
) -> None:
    """Add one bucket's figures to the day's: buckets hold disjoint accounts, so the figures add up. The
    candidates are those the passes saw plus the items resolutions took out before them."""
    for source in ("ledger", "bank"):
        mine = moved.filter(pl.col("source") == source)
        counts[f"candidates_{source}"] += (
            candidates[source].height + mine.filter(pl.col("action") != ACTION_REVERSE).height
        )
        counts[f"matched_{source}"] += matches[f"{source}_txn_id"].drop_nulls().n_unique()
        counts[f"revived_{source}"] += mine.filter("revived").height
        counts[f"written_off_{source}"] += mine.filter(pl.col("action") == ACTION_WRITE_OFF).height
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
