"""Validate stage: type, normalise and de-duplicate raw rows into staging; everything else to quarantine."""

import time
from collections import Counter
from pathlib import Path

import dagster as dg

from batch_assets.faults import fault_point
from batch_assets.partitions import DAILY, PREVIOUS_DAY, WAREHOUSE_POOL, business_date
from batch_assets.progress import ProgressResource
from batch_assets.resources import WarehouseResource, run_identity
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import commit_metadata, table_key
from batch_assets.storage import TXN_ID_BUCKET_KEY, PartitionWrite
from batch_assets.transforms.contract import SOURCES
from batch_assets.transforms.validate import (
    PRIOR_TXN_SCHEMA,
    judge_rows,
    quarantined_rows,
    staged_rows,
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
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def validate(context: dg.AssetExecutionContext, warehouse: WarehouseResource, progress: ProgressResource):
    """Judge every raw row of the day; replace both staging partitions and the quarantine in one transaction."""
    started = time.perf_counter()
    day = business_date(context)
    wh = warehouse.open(context.log)
    run = run_identity(context)

    raw_commits = {source: wh.last_commit(f"raw.{source}", day) for source in SOURCES}
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
    tracker = progress.tracker(context.log, "validate", total=sum(c.row_count for c in raw_commits.values()))
    with wh.spill_files(run.run_id) as spill:
        for source in SOURCES:
            # A big day is judged in buckets of txn_ids, so memory follows the bucket, not the day; every copy
            # of a txn_id is in the same bucket, so duplicates are judged exactly as in one pass.
            buckets = wh.buckets(raw_commits[source].row_count, TXN_ID_BUCKET_KEY)
            for bucket in buckets:
                raw = wh.read_partition(f"raw.{source}", day, bucket=bucket, ordered=False)
                prior = wh.earlier_txn_ids(_staging_table(source), day, txn_id_keys(raw.lazy()).collect())
                # Collected once: the judged rows feed both outputs, and Polars would otherwise judge them twice.
                judged = judge_rows(raw.lazy(), day, prior.lazy().cast(PRIOR_TXN_SCHEMA)).collect()
                rejected = quarantined_rows(judged.lazy(), source).collect()
                spills[_staging_table(source)].append(spill(staged_rows(judged.lazy()).collect()))
                spills[QUARANTINE].append(spill(rejected))
                raw_rows[source] += raw.height
                quarantined[source] += rejected.height
                by_rule.update(dict(rejected.group_by("rule").len().iter_rows()))
                tracker.advance(raw.height, note=f"{source}, bucket {bucket.index + 1} of {bucket.count}")
                del raw, judged, rejected

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
        fault_point("after_read", "validate")
        records = {record.table: record for record in wh.commit(writes, run, stage="validate")}
    fault_point("after_commit", "validate")

    for source in SOURCES:
        record = records[_staging_table(source)]
        yield dg.MaterializeResult(
            asset_key=table_key(_staging_table(source)),
            metadata={
                **commit_metadata(record, started, rows_processed=raw_rows[source]),
                "raw_rows": dg.MetadataValue.int(raw_rows[source]),
                "quarantined": dg.MetadataValue.int(quarantined[source]),
            },
            data_version=dg.DataVersion(record.fingerprint),
        )
    record = records[QUARANTINE]
    yield dg.MaterializeResult(
        asset_key=table_key(QUARANTINE),
        metadata={
            **commit_metadata(record, started, rows_processed=sum(raw_rows.values())),
            "quarantined": dg.MetadataValue.int(record.row_count),
            **{f"quarantined_{source}": dg.MetadataValue.int(quarantined[source]) for source in SOURCES},
            "by_rule": dg.MetadataValue.json(dict(sorted(by_rule.items()))),
        },
        data_version=dg.DataVersion(record.fingerprint),
    )
