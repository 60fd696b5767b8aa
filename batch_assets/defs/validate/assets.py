"""Validate stage: type, normalise and de-duplicate raw rows into staging; everything else to quarantine."""

from collections import Counter
from pathlib import Path

import dagster as dg
import polars as pl

from batch_assets.partitions import DAILY, ONE_RUN, PREVIOUS_DAY, WAREHOUSE_POOL
from batch_assets.progress import ProgressResource
from batch_assets.resources import WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import StageRun, run_stage, table_key
from batch_assets.storage import PartitionWrite, bucket_count
from batch_assets.transforms.contract import RAW_SCHEMA, SOURCES
from batch_assets.transforms.validate import (
    PRIOR_TXN_SCHEMA,
    judge_rows,
    quarantined_rows,
    staged_rows,
    txn_id_bucket,
    txn_id_keys,
)

QUARANTINE = "staging.quarantine"


def _staging_table(source: str) -> str:
    return f"staging.{source}"


@dg.multi_asset(
    name="validate",
    specs=[
        *[
            dg.AssetSpec(
                table_key(_staging_table(source)),
                description=f"The {source} rows that follow the contract: typed, amounts as Decimal(18,2), "
                "references normalised, each txn_id once across all days.",
                group_name="validate",
                kinds={"duckdb", "polars"},
                deps=[
                    # Both raw tables, like the quarantine: the stage reads and commits them together, and
                    # Dagster's asset backfill refuses a multi-asset whose keys have differently shaped
                    # dependencies (it compares subsets that are equal but built differently).
                    *[table_key(f"raw.{s}") for s in SOURCES],
                    # Cross-day duplicates: day D is judged against what earlier days staged.
                    dg.AssetDep(table_key(_staging_table(source)), partition_mapping=PREVIOUS_DAY),
                ],
            )
            for source in SOURCES
        ],
        dg.AssetSpec(
            table_key(QUARANTINE),
            description="Rows that broke a rule: source, file, line, the rule, why, and the raw values.",
            group_name="validate",
            kinds={"duckdb", "polars"},
            deps=[table_key(f"raw.{source}") for source in SOURCES],
        ),
    ],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def validate(context: dg.AssetExecutionContext, warehouse: WarehouseResource, progress: ProgressResource):
    """Judge every raw row of the day; replace both staging partitions and the quarantine in one transaction."""
    yield from run_stage("validate", context, warehouse, lambda stage: _validate_day(stage, progress))


def _validate_day(stage: StageRun, progress: ProgressResource):
    """One day of the stage."""
    day, wh, run = stage.day, stage.wh, stage.run

    # Read once, up front, on one connection: what each raw partition holds, and which of the day's txn_ids
    # earlier days staged. The rows themselves come straight from the landed Parquet files, in (file, line) order.
    with wh.reading():
        raw_commits = {source: wh.last_commit(f"raw.{source}", day) for source in SOURCES}
        landed = {source: [f.path for f in wh.landed_files(f"raw.{source}", day)] for source in SOURCES}
    raws = {
        source: pl.scan_parquet(paths, schema=RAW_SCHEMA) if paths else pl.LazyFrame(schema=RAW_SCHEMA)
        for source, paths in landed.items()
    }
    keys = {source: txn_id_keys(raw).collect() for source, raw in raws.items()}
    with wh.reading():
        priors = {source: wh.earlier_txn_ids(_staging_table(source), day, keys[source]) for source in SOURCES}
    del keys
    for source, raw_commit in raw_commits.items():
        if raw_commit is None:
            raise dg.Failure(
                f"raw.{source} has never been ingested for {day}: materialise raw/{source} first",
                allow_retries=False,
            )
    raw_hashes = [raw_commits[source].fingerprint for source in SOURCES]
    raw_rows = dict.fromkeys(SOURCES, 0)
    quarantined = dict.fromkeys(SOURCES, 0)
    by_rule: Counter[str] = Counter()
    spills: dict[str, list[Path]] = {table: [] for table in (*map(_staging_table, SOURCES), QUARANTINE)}
    tracker = progress.tracker(stage.context.log, "validate", total=sum(c.row_count for c in raw_commits.values()))
    with wh.spill_files(run.run_id) as spill:
        for source in SOURCES:
            raw, prior = raws[source], priors[source].lazy().cast(PRIOR_TXN_SCHEMA)
            # A big day is judged in buckets of txn_ids, so memory follows the bucket, not the day; every copy
            # of a txn_id is in the same bucket, so duplicates are judged exactly as in one pass.
            count = bucket_count(raw_commits[source].row_count, wh.bucket_rows)
            for index in range(count):
                bucket = raw.filter(txn_id_bucket(count) == index) if count > 1 else raw
                # Collected once: the judged rows feed both outputs, and Polars would otherwise judge them twice.
                # In one chunk: Polars 2.1 panicked ("i < self.len()") building reasons over a judged frame in
                # several chunks (a bucket with padded txn_id copies, test_buckets.py).
                judged = judge_rows(bucket, day, prior).collect().rechunk()
                rejected = quarantined_rows(judged.lazy(), source).collect()
                spills[_staging_table(source)].append(spill(staged_rows(judged.lazy()).collect()))
                spills[QUARANTINE].append(spill(rejected))
                raw_rows[source] += judged.height
                quarantined[source] += rejected.height
                by_rule.update(dict(rejected.group_by("rule").len().iter_rows()))
                tracker.advance(judged.height, note=f"{source}, bucket {index + 1} of {count}")
                del judged, rejected

        writes = [
            PartitionWrite(
                table=_staging_table(source),
                business_date=day,
                data=spills[_staging_table(source)],
                # Empty is legitimate only when every raw row is accounted for by the quarantine.
                allow_empty=raw_rows[source] == quarantined[source],
                input_hashes=raw_hashes,
            )
            for source in SOURCES
        ]
        writes.append(
            PartitionWrite(
                table=QUARANTINE,
                business_date=day,
                data=spills[QUARANTINE],
                allow_empty=True,
                input_hashes=raw_hashes,
                amount_total_sql=None,
            )
        )
        records = stage.commit(writes)

    for source in SOURCES:
        yield stage.result(
            records[_staging_table(source)],
            rows_processed=raw_rows[source],
            raw_rows=dg.MetadataValue.int(raw_rows[source]),
            quarantined=dg.MetadataValue.int(quarantined[source]),
        )
    yield stage.result(
        records[QUARANTINE],
        rows_processed=sum(raw_rows.values()),
        quarantined=dg.MetadataValue.int(records[QUARANTINE].row_count),
        **{f"quarantined_{source}": dg.MetadataValue.int(quarantined[source]) for source in SOURCES},
        by_rule=dg.MetadataValue.json(dict(sorted(by_rule.items()))),
    )
