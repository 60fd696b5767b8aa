"""Validate stage: type, normalise and de-duplicate raw rows into staging; everything else to quarantine."""

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.bucket_steps import (
    BucketedStage,
    BucketWork,
    Planned,
    Planning,
    day_figures,
    day_files,
    input_key,
)
from batch_assets.partitions import DAILY, ONE_RUN
from batch_assets.shared_store import BucketResult
from batch_assets.stage import StageRun, table_key
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


def _plan(p: Planning) -> Planned:
    """What each raw partition of the run's days holds, and which of their txn_ids days before the run staged;
    each bucket of txn_ids gets its raw rows, in (file, line) order, and its share of those earlier txn_ids."""
    per_day: dict = {}
    landed: dict = {}
    most = 0
    with p.wh.reading():
        for day in p.days:
            commits = {source: p.wh.last_commit(f"raw.{source}", day) for source in SOURCES}
            for source, commit in commits.items():
                if commit is None:
                    raise dg.Failure(
                        f"raw.{source} has never been ingested for {day}: materialise raw/{source} first",
                        allow_retries=False,
                    )
            per_day[day] = {"raw_hashes": [commits[source].fingerprint for source in SOURCES]}
            most = max(most, *(commit.row_count for commit in commits.values()))
            landed[day] = {source: [f.path for f in p.wh.landed_files(f"raw.{source}", day)] for source in SOURCES}
    raws = {
        (day, source): pl.scan_parquet(paths, schema=RAW_SCHEMA) if paths else pl.LazyFrame(schema=RAW_SCHEMA)
        for day, by_source in landed.items()
        for source, paths in by_source.items()
    }
    # Days of the run are judged in order by the bucket steps, each against the days before it; the warehouse
    # answers only for the days before the run.
    keys = {
        source: pl.concat([txn_id_keys(raws[day, source]) for day in p.days]).unique().collect() for source in SOURCES
    }
    with p.wh.reading():
        priors = {source: p.wh.earlier_txn_ids(_staging_table(source), p.days[0], keys[source]) for source in SOURCES}
    del keys
    count = bucket_count(most, p.wh.bucket_rows)
    buckets = []
    for index in range(count):
        inputs = {
            f"prior/{s}": p.publish(_bucket(priors[s].lazy(), count, index).collect(), f"prior/{s}", None, index)
            for s in SOURCES
        }
        for (day, source), raw in raws.items():
            inputs[input_key(f"raw/{source}", day)] = p.publish(_bucket(raw, count, index), f"raw/{source}", day, index)
        buckets.append(inputs)
    return Planned(per_day, buckets, {})


def _bucket(frame: pl.LazyFrame, count: int, index: int) -> pl.LazyFrame:
    """The rows of bucket `index` of `count`: every copy of a txn_id, as duplicates are judged, falls in one."""
    return frame.filter(txn_id_bucket(count) == index) if count > 1 else frame


def _compute(work: BucketWork) -> None:
    """Judge the bucket's raw rows of each day in order: a txn_id staged on an earlier day of the run is that
    later day's duplicate, as it would be had the days run one by one."""
    for source in SOURCES:
        prior = work.read(f"prior/{source}").lazy().cast(PRIOR_TXN_SCHEMA)
        for day in work.task.days:
            raw = work.read(f"raw/{source}", day).lazy()
            # Collected once: the judged rows feed both outputs, and Polars would otherwise judge them twice.
            # In one chunk: Polars 2.1 panicked ("i < self.len()") building reasons over a judged frame in
            # several chunks (a bucket with padded txn_id copies, test_buckets.py).
            judged = judge_rows(raw, day, prior).collect().rechunk()
            rejected = quarantined_rows(judged.lazy(), source).collect()
            staged = staged_rows(judged.lazy()).collect()
            work.publish(day, _staging_table(source), staged)
            work.publish(day, f"{QUARANTINE}/{source}", rejected)
            by_rule = {f"rule:{rule}": n for rule, n in rejected.group_by("rule").len().iter_rows()}
            work.count(day, {f"raw_{source}": judged.height, f"quarantined_{source}": rejected.height, **by_rule})
            prior = pl.concat([prior, staged.lazy().select(list(PRIOR_TXN_SCHEMA)).cast(PRIOR_TXN_SCHEMA)])
            del judged, rejected, staged


def _commit_day(stage: StageRun, planned: Mapping[str, Any], results: list[BucketResult]):
    """Both staging partitions and the quarantine of one day, every bucket's rows, in one transaction."""
    day = stage.day
    figures = day_figures(stage, results)
    raw_rows = {source: figures[f"raw_{source}"] for source in SOURCES}
    quarantined = {source: figures[f"quarantined_{source}"] for source in SOURCES}
    by_rule: Counter[str] = Counter(
        {name.removeprefix("rule:"): n for name, n in figures.items() if name.startswith("rule:")}
    )
    writes = [
        PartitionWrite(
            table=_staging_table(source),
            business_date=day,
            data=day_files(stage, results, _staging_table(source)),
            # Empty is legitimate only when every raw row is accounted for by the quarantine.
            allow_empty=raw_rows[source] == quarantined[source],
            input_hashes=planned["raw_hashes"],
        )
        for source in SOURCES
    ]
    writes.append(
        PartitionWrite(
            table=QUARANTINE,
            business_date=day,
            data=[path for source in SOURCES for path in day_files(stage, results, f"{QUARANTINE}/{source}")],
            allow_empty=True,
            input_hashes=planned["raw_hashes"],
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


VALIDATE = BucketedStage(
    "validate",
    outs={
        **{
            source: dg.AssetOut(
                key=table_key(_staging_table(source)),
                description=f"The {source} rows that follow the contract: typed, amounts as Decimal(18,2), "
                "references normalised, each txn_id once across all days.",
                kinds={"duckdb", "polars"},
            )
            for source in SOURCES
        },
        "quarantine": dg.AssetOut(
            key=table_key(QUARANTINE),
            description="Rows that broke a rule: source, file, line, the rule, why, and the raw values.",
            kinds={"duckdb", "polars"},
        ),
    },
    plan=_plan,
    compute=_compute,
    commit_day=_commit_day,
)


@dg.graph_multi_asset(
    name="validate",
    outs=VALIDATE.outs,
    ins={
        **{f"raw_{s}": dg.AssetIn(table_key(f"raw.{s}"), dagster_type=dg.Nothing) for s in SOURCES},
    },
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    group_name="validate",
)
def validate(raw_ledger, raw_bank):
    """Judge every raw row of the day; replace both staging partitions and the quarantine in one transaction."""
    return VALIDATE.steps([raw_ledger, raw_bank])
