"""Ingest stage: land a business day's files into raw.ledger, raw.bank, raw.resolutions and the file log, in one
transaction."""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from batch_assets.landing import (
    FileDigest,
    LandingFile,
    RejectedFile,
    digest_file,
    land_file,
    scan_landing,
)
from batch_assets.landing.resolutions import read_resolutions
from batch_assets.landing.zone import held_open
from batch_assets.partitions import DAILY, ON_WAREHOUSE_HOST, ONE_RUN, WAREHOUSE_POOL
from batch_assets.progress import ProgressResource
from batch_assets.resources import LandingZoneResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import StageRun, run_stage, table_key
from batch_assets.storage import LandedFile, PartitionWrite, Warehouse
from batch_assets.transforms.contract import (
    RESOLUTIONS,
    SOURCES,
    STATUS_DUPLICATE,
    STATUS_INGESTED,
    STATUS_REJECTED,
)
from batch_assets.transforms.deliveries import (
    DELIVERY_SCHEMA,
    NOT_READ,
    mark_duplicates,
    next_file_log,
)
from batch_assets.transforms.resolutions import RAW_RESOLUTION_SCHEMA
from batch_assets.transforms.validate import valid_amount_total

FILE_LOG = "ops.file_log"
RAW_RESOLUTIONS = f"raw.{RESOLUTIONS}"


def _raw_table(source: str) -> str:
    return f"raw.{source}"


@dg.multi_asset(
    name="ingest",
    specs=[
        *[
            dg.AssetSpec(
                table_key(_raw_table(source)),
                description=f"The {source} rows of the business day as delivered: every column as text, with "
                "file name and line number.",
                group_name="ingest",
                kinds={"duckdb", "polars"},
            )
            for source in SOURCES
        ],
        dg.AssetSpec(
            table_key(RAW_RESOLUTIONS),
            description="The day's resolutions as decided in its resolutions files: one row per item, typed, with "
            "file name and line number; the match stage judges and applies them.",
            group_name="ingest",
            kinds={"duckdb", "polars"},
        ),
        dg.AssetSpec(
            table_key(FILE_LOG),
            description="Every delivered file of the day: sha256, size, status (ingested, rejected, duplicate, "
            "superseded), reason and row count.",
            group_name="ingest",
            kinds={"duckdb"},
        ),
    ],
    partitions_def=DAILY,
    backfill_policy=ONE_RUN,
    pool=WAREHOUSE_POOL,
    op_tags=ON_WAREHOUSE_HOST,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def ingest(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
    progress: ProgressResource,
):
    """Read the day's landing files strictly and replace the raw partitions and the file log atomically.

    Every file of the day is judged, and every rejected file is recorded in the file log with its reason. A
    source with a rejected file (or with no file at all) fails and keeps its previous raw data; the other
    source still lands. Resolutions hold no day back: a rejected resolutions file is logged (and alerted on by
    the resolution log's check), and the day's other resolutions files still land.
    """
    yield from run_stage("ingest", context, warehouse, lambda stage: _ingest_day(stage, landing, progress))


def _ingest_day(stage: StageRun, landing: LandingZoneResource, progress: ProgressResource):
    """One day of the stage."""
    day, wh, run = stage.day, stage.wh, stage.run

    files, ignored = scan_landing(landing.path, day)
    for item in ignored:
        if day.isoformat() in item.name:
            stage.context.log.warning(f"ignored {item.name}: {item.reason}")
    # Every listed file is judged in this run, whatever happens to the others: a file that cannot even be
    # hashed is rejected here and recorded with the rest, instead of ending the run before any is recorded.
    digests: dict[str, FileDigest] = {}
    outcomes: dict[str, tuple[str, str | None, int | None]] = {}
    for file in files:
        try:
            digests[file.name] = digest_file(file)
        except RejectedFile as error:
            outcomes[file.name] = (STATUS_REJECTED, error.reason, None)
    deliveries = pl.DataFrame(
        [
            {
                "business_date": day,
                "source": file.source,
                "file_name": file.name,
                "sha256": digests[file.name].sha256 if file.name in digests else NOT_READ,
                "size_bytes": digests[file.name].size_bytes if file.name in digests else file.size_bytes,
                "status": None,
                "reason": None,
                "row_count": None,
            }
            for file in files
        ],
        schema=DELIVERY_SCHEMA,
    )
    # Lines, counted while hashing, are the rows to read give or take a header line per file.
    tracker = progress.tracker(
        stage.context.log, "ingest", total=sum(d.newlines for d in digests.values()), unit="lines"
    )
    landed: dict[str, LandedFile] = {}
    decided: dict[str, pl.DataFrame] = {}
    try:
        for file in files:
            if file.name in digests and file.source == RESOLUTIONS:
                outcomes[file.name] = _read_decisions(file, decided)
            elif file.name in digests:
                outcomes[file.name] = _land(file, digests[file.name], wh, run.run_id, landed)
                tracker.advance(digests[file.name].newlines, note=file.name)
            status, reason, _ = outcomes[file.name]
            if status == STATUS_REJECTED:
                stage.context.log.error(f"rejected {file.name}: {reason}")
        with wh.reading():
            ingested_elsewhere = wh.query(
                "SELECT source, sha256, file_name FROM ops.file_log WHERE status = ? AND business_date < ? "
                "AND sha256 IN (SELECT sha256 FROM deliveries)",
                [STATUS_INGESTED, day],
                frames={"deliveries": deliveries.select("sha256")},
            )
            previous_log = wh.read_partition(FILE_LOG, day)
        deliveries = mark_duplicates(_apply_outcomes(deliveries, outcomes), ingested_elsewhere)

        failures = _source_failures(deliveries, day, landing.path)
        writes = []
        for source in SOURCES:
            if source in failures:
                continue
            ingested = deliveries.filter((pl.col("source") == source) & (pl.col("status") == STATUS_INGESTED))
            writes.append(
                PartitionWrite(
                    table=_raw_table(source),
                    business_date=day,
                    data=[landed[name] for name in ingested["file_name"]],
                    # Zero rows replace the day only when the files themselves say so (header-only files).
                    allow_empty=int(ingested["row_count"].sum() or 0) == 0,
                    input_hashes=ingested["sha256"].to_list(),
                )
            )
        resolutions = deliveries.filter((pl.col("source") == RESOLUTIONS) & (pl.col("status") == STATUS_INGESTED))
        writes.append(
            PartitionWrite(
                table=RAW_RESOLUTIONS,
                business_date=day,
                data=pl.concat(
                    [
                        pl.DataFrame(schema=RAW_RESOLUTION_SCHEMA),
                        *(decided[n].with_columns(business_date=pl.lit(day)) for n in resolutions["file_name"]),
                    ],
                    how="diagonal",
                ).select(list(RAW_RESOLUTION_SCHEMA)),
                allow_empty=True,
                input_hashes=resolutions["sha256"].to_list(),
                amount_total_sql="sum(write_off_amount)",
            )
        )
        file_log = next_file_log(deliveries, previous_log, failures.keys(), datetime.now(UTC))
        writes.append(
            PartitionWrite(
                table=FILE_LOG,
                business_date=day,
                data=file_log,
                allow_empty=True,
                input_hashes=deliveries["sha256"].to_list(),
                amount_total_sql=None,
            )
        )
        records = stage.commit(writes)
    finally:
        # A duplicate's rows were landed under its own name, which nothing lists. Other landed files stay even
        # when the commit failed: named by content, one may be what the day's current partition lists.
        for name in deliveries.filter(pl.col("status") == STATUS_DUPLICATE)["file_name"]:
            if name in landed:
                landed[name].path.unlink(missing_ok=True)

    for source in (*SOURCES, RESOLUTIONS):
        if source in failures:
            continue
        source_files = deliveries.filter(pl.col("source") == source)
        yield stage.result(
            records[_raw_table(source)],
            input_files=dg.MetadataValue.json(
                source_files.select("file_name", "status", "row_count", "sha256").to_dicts()
            ),
            files=dg.MetadataValue.int(source_files.height),
        )
    log_record = records[FILE_LOG]
    status_counts = dict(file_log.group_by("status").len().iter_rows())
    yield dg.MaterializeResult(
        asset_key=table_key(FILE_LOG),
        metadata={
            "files": dg.MetadataValue.int(file_log.height),
            **{f"files_{status}": dg.MetadataValue.int(count) for status, count in sorted(status_counts.items())},
            "ignored_names": dg.MetadataValue.json([f"{i.name}: {i.reason}" for i in ignored][:50]),
            "commit_seq": dg.MetadataValue.int(log_record.commit_seq),
        },
        data_version=dg.DataVersion(log_record.fingerprint),
    )
    if failures:
        raise dg.Failure(
            description="; ".join(f"{source}: {reason}" for source, reason in failures.items())
            + f". {_next_step(day)}",
            metadata={"failed_sources": dg.MetadataValue.json(failures)},
            allow_retries=False,
        )


def _land(
    file: LandingFile, digest: FileDigest, wh: Warehouse, run_id: str, landed: dict[str, LandedFile]
) -> tuple[str, str | None, int | None]:
    """Read one file strictly into the raw zone as Parquet; (status, reason, rows). A file that cannot be read
    whole is rejected and leaves nothing; a full disk or another fault of the machine is raised."""
    target = wh.landed_path(_raw_table(file.source), file.business_date, file.name, digest.sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a name of this run, then renamed: a landed file is always whole, and named by its content,
    # so a re-run of the same bytes writes the very same file.
    partial = target.with_name(f".{target.name}.{run_id}.partial")
    try:
        rows = land_file(file, digest, partial)
        total = pl.scan_parquet(partial).select(valid_amount_total()).collect().item()
        partial.replace(target)
    except RejectedFile as error:
        return STATUS_REJECTED, error.reason, None
    finally:
        partial.unlink(missing_ok=True)
    landed[file.name] = LandedFile(file.name, digest.sha256, target, rows, total)
    return STATUS_INGESTED, None, rows


def _read_decisions(file: LandingFile, decided: dict[str, pl.DataFrame]) -> tuple[str, str | None, int | None]:
    """Read one resolutions file strictly; (status, reason, decided rows). Its rows are judged in matching."""
    try:
        with held_open(file) as held:
            rows = read_resolutions(held.path, file.name)
    except RejectedFile as error:
        return STATUS_REJECTED, error.reason, None
    decided[file.name] = rows
    return STATUS_INGESTED, None, rows.height


def _apply_outcomes(deliveries: pl.DataFrame, outcomes: dict[str, tuple[str, str | None, int | None]]) -> pl.DataFrame:
    if not outcomes:
        return deliveries
    results = pl.DataFrame(
        [{"file_name": name, "_status": s, "_reason": r, "_rows": n} for name, (s, r, n) in outcomes.items()],
        schema={"file_name": pl.String, "_status": pl.String, "_reason": pl.String, "_rows": pl.Int64},
    )
    return (
        deliveries.join(results, on="file_name", how="left", maintain_order="left")
        .with_columns(
            pl.coalesce("status", "_status").alias("status"),
            pl.coalesce("reason", "_reason").alias("reason"),
            pl.coalesce("row_count", "_rows").alias("row_count"),
        )
        .drop("_status", "_reason", "_rows")
    )


def _next_step(day: date) -> str:
    return (
        "The failed sources keep the day's previous data. Replace each rejected file with a corrected one or "
        "remove it, and deliver any missing file: the landing sensor then runs the day again (or run it by hand). "
        f"`batch-assets files {day}` lists every file of the day with its status and reason."
    )


def _source_failures(deliveries: pl.DataFrame, day: date, root: Path) -> dict[str, str]:
    """Why each failing source fails: a rejected file (named, with the reason), or nothing delivered."""
    failures: dict[str, str] = {}
    for source in SOURCES:
        mine = deliveries.filter(pl.col("source") == source)
        rejected = mine.filter(pl.col("status") == STATUS_REJECTED)
        if rejected.height:
            failures[source] = "; ".join(
                f"{n} rejected: {r}" for n, r in rejected.select("file_name", "reason").iter_rows()
            )
        elif mine.height == 0:
            failures[source] = f"no {source} file for {day} has landed in {root / source}"
    return failures
