"""What every stage shares: its run of one day and one commit, asset keys, metadata and threshold results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import dagster as dg
import polars as pl

from batch_assets import dagster_internals
from batch_assets.faults import fault_point
from batch_assets.partitions import business_dates
from batch_assets.resources import WarehouseResource, run_identity
from batch_assets.storage import CommitRecord, PartitionWrite, RunIdentity, Warehouse


def table_key(table: str) -> dg.AssetKey:
    """The asset key of a warehouse table: its schema is the key's prefix (raw.ledger -> raw/ledger)."""
    return dg.AssetKey(table.split("."))


def money_metadata(name: str, amount: Decimal | None) -> dict[str, dg.MetadataValue]:
    """A money total as exact text, plus integer cents so that Dagster can plot it without a float."""
    total = amount if amount is not None else Decimal("0.00")
    return {
        name: dg.MetadataValue.text(f"{total:.2f}"),
        f"{name}_cents": dg.MetadataValue.int(int(total * 100)),
    }


def commit_metadata(record: CommitRecord, started: float, rows_processed: int | None = None) -> dict[str, Any]:
    """Rows, amount total, duration and rate of one committed partition, and the commit that holds it."""
    duration = max(time.perf_counter() - started, 1e-9)
    rows = record.row_count if rows_processed is None else rows_processed
    return {
        "rows": dg.MetadataValue.int(record.row_count),
        **money_metadata("amount_total", record.amount_total),
        "duration_s": dg.MetadataValue.float(round(duration, 3)),
        "rows_per_s": dg.MetadataValue.float(round(rows / duration, 1)),
        "fingerprint": dg.MetadataValue.text(record.fingerprint),
        "commit_seq": dg.MetadataValue.int(record.commit_seq),
    }


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a markdown table for the UI's metadata, pipes in values escaped; `none` when empty."""
    if frame.is_empty():
        return "none"
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * frame.width]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(str(v if v is not None else "").replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def threshold_result(
    value: Decimal, warn: Decimal, error: Decimal, *, higher_is_worse: bool, metadata: dict
) -> dg.AssetCheckResult:
    """Pass within WARN; past WARN fail as a warning; past ERROR fail as an error. The numbers judged, and
    the limits, go into the metadata."""
    past = (lambda limit: value > limit) if higher_is_worse else (lambda limit: value < limit)
    return dg.AssetCheckResult(
        passed=not past(warn),
        severity=dg.AssetCheckSeverity.ERROR if past(error) else dg.AssetCheckSeverity.WARN,
        metadata={
            **metadata,
            "value": str(value),
            "warn_limit": str(warn),
            "error_limit": str(error),
            "direction": "above is worse" if higher_is_worse else "below is worse",
        },
    )


class StageRun:
    """One stage of one day: its warehouse, the run that fences its writes, the fault points around its one
    commit, and its results. A stage is its transform, its writes and the metadata it adds."""

    def __init__(self, name: str, context: dg.AssetExecutionContext, wh: Warehouse, run: RunIdentity, day: date):
        self.name, self.context, self.wh, self.run, self.day = name, context, wh, run, day
        self.started = time.perf_counter()

    def commit(self, writes: list[PartitionWrite]) -> dict[str, CommitRecord]:
        """Commit every write in one transaction, between the stage's fault points; the records by table."""
        fault_point("after_read", self.name)
        records = {record.table: record for record in self.wh.commit(writes, self.run, stage=self.name)}
        fault_point("after_commit", self.name)
        return records

    def result(self, record: CommitRecord, rows_processed: int | None = None, **metadata: Any) -> dg.MaterializeResult:
        """The materialisation of one committed partition: the commit's figures, the stage's own metadata, and
        the fingerprint as its data version."""
        return dg.MaterializeResult(
            asset_key=table_key(record.table),
            metadata={**commit_metadata(record, self.started, rows_processed), **metadata},
            data_version=dg.DataVersion(record.fingerprint),
        )


def run_stage(
    name: str,
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    warehouse: WarehouseResource,
    one_day: Callable[[StageRun], Iterable[dg.MaterializeResult]],
) -> Iterator[dg.MaterializeResult]:
    """Run a stage over the run's days in order, each day its own commit.

    A run of one day yields that day's results as they are. A backfilled range runs in one step: each day's
    metadata goes onto its own partition, and one result per table closes the step. When a day fails, the days
    before it are recorded as materialised (and no later one), then the failure is raised."""
    days = business_dates(context)
    wh, run = warehouse.open(context.log), run_identity(context)
    if len(days) == 1:
        yield from one_day(StageRun(name, context, wh, run, days[0]))
        return
    done: list[tuple[date, dg.MaterializeResult]] = []
    try:
        for day in days:
            for result in one_day(StageRun(name, context, wh, run, day)):
                done.append((day, result))
    except Exception:
        for day, result in done:
            context.log_event(
                dg.AssetMaterialization(result.asset_key, partition=day.isoformat(), metadata=result.metadata)
            )
        raise
    for day, result in done:
        dagster_internals.add_asset_metadata(
            context, dict(result.metadata or {}), asset_key=result.asset_key, partition_key=day.isoformat()
        )
    for key in dict.fromkeys(result.asset_key for _, result in done):
        yield dg.MaterializeResult(asset_key=key, metadata={"days_in_run": dg.MetadataValue.int(len(days))})
