"""Command-line operations: run business days through Dagster in order, and report what each day holds."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl

from batch_assets import dagster_internals, settings
from batch_assets.alerts import error_text
from batch_assets.resources import WarehouseResource
from batch_assets.storage import Warehouse

if TYPE_CHECKING:
    # Scoring against the generator's ground truth is report code: imported where a report asks for it.
    from batch_assets.transforms.scoring import Score

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def warehouse() -> Warehouse:
    """The warehouse the runs write, as the settings in this process's environment name it."""
    return WarehouseResource().with_environment(os.environ).open()


def run_days(days: Sequence[date]) -> date | None:
    """Run the daily job for each day, in order, in this process against $DAGSTER_HOME, so that every run
    shows in the UI. Returns the first day that failed (later days are not run), or None."""
    from batch_assets.definitions import defs

    settings.apply_launch_environment()
    job = defs.resolve_job_def("daily_reconciliation")
    with dg.DagsterInstance.get() as instance:
        for day in days:
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET
            )
            status = "ok" if result.success else "FAILED"
            print(f"{day}  run {result.run_id[:8]}  {status}  {time.perf_counter() - started:.1f}s", flush=True)
            if not result.success:
                for event in result.all_events:
                    if event.event_type_value == "STEP_FAILURE":
                        print(f"    {event.step_key}: {error_text(event)}", flush=True)
                return day
    return None


def day_report(days: Sequence[date] | None = None) -> pl.DataFrame:
    """One row per business day: files, rows per stage and side, quarantine and amount totals."""
    wh = warehouse()
    report = wh.query(
        """
        WITH files AS (
            SELECT business_date,
                   count(*) FILTER (status = 'ingested') AS files_in,
                   count(*) FILTER (status = 'rejected') AS rejected,
                   count(*) FILTER (status = 'duplicate') AS duplicates
            FROM ops.file_log GROUP BY ALL),
        ledger AS (SELECT business_date, count(*) AS ledger, sum(amount) AS ledger_total
                   FROM staging.ledger GROUP BY ALL),
        bank AS (SELECT business_date, count(*) AS bank, sum(amount) AS bank_total FROM staging.bank GROUP BY ALL),
        quarantine AS (SELECT business_date, count(*) AS quarantined FROM staging.quarantine GROUP BY ALL)
        SELECT business_date, files_in, rejected, duplicates,
               coalesce(ledger, 0) AS ledger, coalesce(bank, 0) AS bank, coalesce(quarantined, 0) AS quarantined,
               coalesce(ledger_total, 0) AS ledger_total, coalesce(bank_total, 0) AS bank_total
        FROM files LEFT JOIN ledger USING (business_date) LEFT JOIN bank USING (business_date)
             LEFT JOIN quarantine USING (business_date)
        ORDER BY business_date
        """
    )
    if days is not None:
        report = report.filter(pl.col("business_date").is_in(list(days)))
    return report


def reconciliation_report(days: Sequence[date] | None = None, truth: Path | None = None) -> pl.DataFrame:
    """One row per reconciled business day: match rate, matches, breaks and their value, open items; with
    `truth` (the generator's ground-truth folder) also the precision and recall of that day's matches."""
    wh = warehouse()
    report = wh.query(
        """
        SELECT business_date, ledger_items AS ledger, bank_items AS bank,
               matches_exact + matches_amount_date + matches_aggregate AS matches,
               round(100 * match_rate, 2) AS "match %",
               breaks_ledger + breaks_bank AS breaks,
               amount_mismatches AS mismatches, open_ledger + open_bank AS open_items
        FROM recon.summary WHERE account_id = '*' AND currency = '*'
        ORDER BY business_date
        """
    )
    if days is not None:
        report = report.filter(pl.col("business_date").is_in(list(days)))
    if truth is None or report.is_empty():
        return report
    scores = [day_score(day, truth) for day in report["business_date"]]
    return report.with_columns(
        pl.Series("precision %", [None if s is None else round(100 * s.precision, 2) for s in scores]),
        pl.Series("recall %", [None if s is None else round(100 * s.recall, 2) for s in scores]),
    )


def break_value_report(days: Sequence[date] | None = None) -> pl.DataFrame:
    """Break value (ledger plus bank side, absolute) per business day and currency, one column per currency:
    money in different currencies is never added up."""
    wh = warehouse()
    values = wh.query(
        """
        SELECT business_date, currency, break_value_ledger + break_value_bank AS break_value
        FROM recon.summary WHERE account_id = '*' AND currency <> '*'
        ORDER BY business_date, currency
        """
    )
    if days is not None:
        values = values.filter(pl.col("business_date").is_in(list(days)))
    if values.is_empty():
        return values
    return values.pivot("currency", index="business_date", values="break_value", sort_columns=True).fill_null(0)


def day_score(day: date, truth: Path) -> Score | None:
    """Score one business day's recon.matches against the ground truth of the same day (pairs whose later
    side is booked that day), or None when the truth folder has nothing for the day."""
    from batch_assets.transforms.scoring import read_truth, score

    if not (truth / day.isoformat() / "pairs.parquet").exists():
        return None
    matches = warehouse().read_partition("recon.matches", day)
    return score(matches, read_truth(truth, [day]))


def print_report(report: pl.DataFrame) -> None:
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_width_chars=200,
        thousands_separator=True,
    ):
        print(report)


def file_report(day: date) -> pl.DataFrame:
    """Every file delivered for a business day: status (ingested, rejected, duplicate, superseded), why, rows."""
    return warehouse().query(
        "SELECT file_name, status, reason, row_count, size_bytes, sha256 FROM ops.file_log "
        "WHERE business_date = ? ORDER BY file_name",
        [day],
    )


def quarantine_report(day: date, limit: int = 20) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A business day's quarantined rows: the count per source and rule, and the first rows with file and line."""
    wh = warehouse()
    counts = wh.query(
        "SELECT source, rule, count(*) AS rows FROM staging.quarantine WHERE business_date = ? "
        "GROUP BY ALL ORDER BY source, rule",
        [day],
    )
    rows = wh.query(
        "SELECT file_name, CAST(line_number AS VARCHAR) AS line, rule, detail, txn_id, amount FROM staging.quarantine "
        "WHERE business_date = ? ORDER BY file_name, line_number LIMIT ?",
        [day, limit],
    )
    return counts, rows


def cancel_run(run_id: str, force: bool = False) -> str:
    """Cancel a queued or running run through the instance's run coordinator; returns its status after.

    `force` also marks the run canceled when nothing answers: its worker was killed (OOM, kill -9) and the
    instance would otherwise show it running until run monitoring's timeout. Its writes stay safe either way:
    every step commits in one transaction, and a late write from a worker that is in fact alive is refused.
    """
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise SystemExit(f"no run {run_id} in {os.environ['DAGSTER_HOME']}")
        if run.is_finished:
            return f"run {run_id} already ended: {run.status.value}"
        dagster_internals.cancel_run(instance, run_id)
        run = instance.get_run_by_id(run_id)
        if force and not run.is_finished:
            message = "Marked canceled by `batch-assets cancel --force`: its worker did not answer."
            dagster_internals.mark_canceled(instance, run, message)
        return f"run {run_id}: {instance.get_run_by_id(run_id).status.value}"


def daily_job_definition() -> dg.JobDefinition:
    """The daily job, resolved; a module-level function so that Dagster can reconstruct it in a new process."""
    from batch_assets.definitions import defs

    return defs.resolve_job_def("daily_reconciliation")


def reexecute_from_failure(run_id: str) -> bool:
    """Re-execute a failed run of the daily job from its failed steps, in this process; True on success."""
    with dg.DagsterInstance.get() as instance:
        parent = instance.get_run_by_id(run_id)
        if parent is None:
            raise SystemExit(f"no run {run_id} in {os.environ['DAGSTER_HOME']}")
        options = dg.ReexecutionOptions.from_failure(run_id, instance)
        if parent.is_finished:
            # A step killed with its worker never gave back its pool slot, and the warehouse pool has one:
            # the re-execution would wait for it forever, or, with a daemon running, until it frees the slots
            # of runs ended free_slots_after_run_end_seconds ago. The parent has ended: its slots are stale.
            dagster_internals.free_pool_slots(instance, run_id)
        # The partition (or a backfill's range) lives in the parent's tags; execute_job does not carry them over.
        kept = ("dagster/partition", "dagster/asset_partition_range", "batch_assets/")
        tags = {k: v for k, v in parent.tags.items() if k.startswith(kept)}
        with dg.execute_job(
            dg.reconstructable(daily_job_definition),
            instance=instance,
            reexecution_options=options,
            tags=tags,
            raise_on_error=False,
        ) as result:
            print(f"re-executed {run_id} from failure as run {result.run_id}: {'ok' if result.success else 'FAILED'}")
            return result.success


def export_breaks(day: date, out: Path) -> int:
    """Write the day's open and standing breaks to `out` (.xlsx or .csv) as a sheet to decide on; the filled-in
    sheet, renamed resolutions_<date>.<ext>, is a resolutions file. Returns the number of breaks written."""
    from batch_assets.generator.files import write_atomic
    from batch_assets.transforms.breaks import break_sheet, spreadsheet_safe

    if out.suffix not in (".xlsx", ".csv"):
        raise ValueError(f"{out}: the breaks sheet is written as .xlsx or .csv")
    wh = warehouse()
    with wh.reading():
        # The day's open breaks, and the standing ones no resolution has revived by the day.
        breaks = wh.query(
            "SELECT * FROM recon.exceptions WHERE is_break AND business_date = $day AND status = 'open' "
            "UNION ALL BY NAME SELECT * EXCLUDE (revived_on) FROM recon.standing_breaks WHERE is_break "
            "AND business_date <= $day AND (revived_on IS NULL OR revived_on > $day)",
            {"day": day},
        )
        details = wh.query(
            " UNION ALL ".join(
                f"SELECT '{source}' AS source, txn_id, value_date, reference, counterparty, description "  # noqa: S608 (a fixed name)
                f"FROM staging.{source} WHERE txn_id IN (SELECT txn_id FROM breaks WHERE source = '{source}')"
                for source in ("ledger", "bank")
            ),
            frames={"breaks": breaks},
        )
    # Amounts and dates as text: a spreadsheet would hold money as a float, and the text reads back exactly.
    sheet = break_sheet(breaks.lazy(), details.lazy(), day).collect()
    sheet = sheet.with_columns(pl.col(pl.Decimal, pl.Date).cast(pl.String))
    if out.suffix == ".xlsx":
        write_atomic(out, lambda target: sheet.write_excel(target, worksheet="breaks", autofit=True))
    else:
        write_atomic(out, lambda target: spreadsheet_safe(sheet).write_csv(target))
    return sheet.height


def write_resolution(
    landing: Path,
    day: date,
    action: str,
    items: Sequence[str],
    resolved_by: str,
    *,
    resolution_id: str | None = None,
    write_off_amount: str | None = None,
    reason_code: str | None = None,
    comment: str | None = None,
    reverses: str | None = None,
) -> Path:
    """Write one resolution as its own file, `resolutions/resolutions_<day>_<id>.csv` under `landing`, one row per
    item (`ledger:L1`, `bank:B9`); a reverse has one row naming the resolution it undoes. Returns the file.

    Nothing is judged here: the file is judged with the day's others, as any resolutions file is.
    """
    import re
    import uuid
    from datetime import UTC, datetime

    from batch_assets.generator.files import write_atomic
    from batch_assets.landing.resolutions import DECISION_COLUMNS, OPTIONAL_COLUMNS

    resolution_id = resolution_id or f"R-{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    part = re.sub(r"[^A-Za-z0-9]", "", resolution_id)
    if not part:
        raise ValueError(f"resolution id {resolution_id!r} needs a letter or a digit")
    pairs = []
    for item in items:
        source, _, txn_id = item.partition(":")
        if source not in ("ledger", "bank") or not txn_id:
            raise ValueError(f"{item!r} is not an item: write ledger:<txn_id> or bank:<txn_id>")
        pairs.append((source, txn_id))
    if (action == "reverse") != (not pairs):
        raise ValueError("a reverse names a resolution (--reverse R) and no items; a match or write-off names items")
    shared = {
        "resolution_id": resolution_id,
        "action": action,
        "write_off_amount": write_off_amount,
        "reason_code": reason_code,
        "comment": comment,
        "resolved_by": resolved_by,
        "resolved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reverses": reverses,
    }
    rows = [{**shared, "source": source, "txn_id": txn_id} for source, txn_id in pairs or [(None, None)]]
    frame = pl.DataFrame(rows, schema=dict.fromkeys((*DECISION_COLUMNS, *OPTIONAL_COLUMNS), pl.String))
    path = landing / "resolutions" / f"resolutions_{day.isoformat()}_{part}.csv"
    if path.exists():
        raise FileExistsError(f"{path} exists: a resolution id is used once; give another --id")
    write_atomic(path, lambda target: frame.write_csv(target))
    return path


def resolve_largest_mismatch(landing: Path, day: date, resolved_by: str) -> dict[str, Any] | None:
    """What `make demo` ends with: the day's largest amount mismatch matched by a person, its difference written
    off as a bank fee, and the day run again so the resolution is applied. Returns its log row, or None when
    the day has no amount mismatch."""
    wh = warehouse()
    with wh.reading():
        found = wh.query(
            "SELECT txn_id, counterpart_txn_id, difference FROM recon.exceptions WHERE business_date = ? "
            "AND category = 'amount_mismatch' AND source = 'ledger' AND status = 'open' "
            "ORDER BY abs(difference) DESC, txn_id LIMIT 1",
            [day],
        )
    if found.is_empty():
        return None
    ledger, bank, difference = found.row(0)
    resolution_id = f"DEMO-{day:%Y%m%d}"
    write_resolution(
        landing,
        day,
        "match",
        [f"ledger:{ledger}", f"bank:{bank}"],
        resolved_by,
        resolution_id=resolution_id,
        write_off_amount=str(-difference),  # the ledger's amount less the bank's
        reason_code="BANK_FEE",
        comment="the bank deducted a fee",
    )
    if run_days([day]) is not None:
        return None
    with wh.reading():
        logged = wh.query(
            "SELECT * FROM ops.resolution_log WHERE business_date = ? AND resolution_id = ?", [day, resolution_id]
        )
    return logged.row(0, named=True) if logged.height else None
