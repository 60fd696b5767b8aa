"""The breaks sheet: a reconciled day's breaks exported for a person to decide on, and handed back as resolutions."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.generator import generate
from batch_assets.landing.resolutions import read_resolutions
from batch_assets.storage import Warehouse
from batch_assets.transforms.breaks import SHEET_COLUMNS, break_sheet, spreadsheet_safe
from batch_assets.transforms.resolutions import STATE_OPEN, STATUS_APPLIED, judge_resolutions
from batch_assets_tests.test_ingest_and_validate import failure_message, run_day

START = date(2026, 11, 2)
DAYS = [START + timedelta(days=n) for n in range(7)]


@pytest.fixture
def reconciled_week(home: Path, landing: Path, instance: dg.DagsterInstance) -> Path:
    """A week of 2,000 ledger rows a day, reconciled: open breaks on the last day and standing ones from earlier."""
    generate(start=START, days=len(DAYS), rows=2_000, fmt="csv", seed=5, landing=landing)
    for day in DAYS:
        result = run_day(instance, day)
        assert result.success, failure_message(result)
    return home


def export(home: Path, out: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "BATCH_ASSETS_HOME": str(home)}
    command = [str(Path(sys.executable).with_name("batch-assets")), "breaks", "--day", DAYS[-1].isoformat()]
    return subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)


def test_the_days_breaks_export_filled_in_landed_and_applied(
    reconciled_week: Path, tmp_path: Path, landing: Path, instance: dg.DagsterInstance
) -> None:
    out = tmp_path / "breaks.xlsx"
    done = export(reconciled_week, out)
    assert done.returncode == 0, done.stderr
    sheet = pl.read_excel(out, infer_schema_length=0)
    assert tuple(sheet.columns) == SHEET_COLUMNS
    assert set(sheet["status"]) == {"open", "standing"}
    assert f"wrote {sheet.height} break(s)" in done.stdout
    # Amounts are text that reads back exactly; the largest break comes first.
    amounts = [Decimal(a) for a in sheet["amount"]]
    assert abs(amounts[0]) == max(abs(a) for a in amounts)
    # An amount mismatch suggests its counterpart among the other side's breaks.
    mismatch = sheet.filter(pl.col("category") == "amount_mismatch").row(0, named=True)
    assert mismatch["counterpart_txn_id"] in mismatch["suggested"]

    # A person matches the mismatch pair, writing off the difference, and writes off one standing break.
    ledger = sheet.filter((pl.col("category") == "amount_mismatch") & (pl.col("source") == "ledger")).row(0, named=True)
    bank_txn = ledger["counterpart_txn_id"]
    bank = sheet.filter((pl.col("source") == "bank") & (pl.col("txn_id") == bank_txn)).row(0, named=True)
    difference = Decimal(ledger["amount"]) - Decimal(bank["amount"])
    standing = sheet.filter(pl.col("status") == "standing").row(0, named=True)
    decisions = {
        ledger["txn_id"]: ("R-1", "match", str(difference), "BANK_FEE"),
        bank_txn: ("R-1", "match", "", ""),
        standing["txn_id"]: ("R-2", "write_off", "", "UNRECOVERABLE"),
    }

    def decided(column: int) -> pl.Expr:
        values = {txn: decision[column] for txn, decision in decisions.items()}
        return pl.col("txn_id").replace_strict(values, default=None, return_dtype=pl.String)

    filled = sheet.with_columns(
        resolution_id=decided(0),
        action=decided(1),
        write_off_amount=decided(2),
        reason_code=decided(3),
        resolved_by=pl.when(decided(0).is_not_null()).then(pl.lit("ana")),
        resolved_at=pl.when(decided(0).is_not_null()).then(pl.lit("2026-11-08T17:00:00Z")),
    )
    handed_back = tmp_path / f"resolutions_{DAYS[-1].isoformat()}.xlsx"
    filled.write_excel(handed_back)
    rows = read_resolutions(handed_back, f"resolutions/{handed_back.name}")
    assert rows.height == 3 and rows["problem"].null_count() == 3
    states = sheet.select(
        "source",
        "txn_id",
        pl.lit(STATE_OPEN).alias("state"),
        pl.lit(None, pl.String).alias("resolved_by_id"),
        "account_id",
        "currency",
        pl.col("amount").cast(pl.Decimal(18, 2)),
    )
    verdicts = judge_resolutions(
        rows.lazy(), states.lazy(), pl.LazyFrame({"resolution_id": []}, schema={"resolution_id": pl.String}), DAYS[-1]
    ).collect()
    assert verdicts["status"].to_list() == [STATUS_APPLIED, STATUS_APPLIED], verdicts["reason"].to_list()

    # Dropped into the landing zone, the workbook is the day's resolutions: the day runs again and applies both.
    (landing / "resolutions").mkdir()
    handed_back.replace(landing / "resolutions" / handed_back.name)
    result = run_day(instance, DAYS[-1])
    assert result.success, failure_message(result)
    log = Warehouse(reconciled_week / "warehouse.duckdb").read_partition("ops.resolution_log", DAYS[-1])
    assert sorted(log.select("resolution_id", "status").rows()) == [("R-1", STATUS_APPLIED), ("R-2", STATUS_APPLIED)]
    assert export(reconciled_week, tmp_path / "after.xlsx").returncode == 0
    left = set(pl.read_excel(tmp_path / "after.xlsx", infer_schema_length=0)["txn_id"])
    assert left == set(sheet["txn_id"]) - set(decisions)


def test_the_csv_export_holds_the_same_breaks(reconciled_week: Path, tmp_path: Path) -> None:
    export(reconciled_week, tmp_path / "breaks.xlsx")
    done = export(reconciled_week, tmp_path / "breaks.csv")
    assert done.returncode == 0, done.stderr
    # A spreadsheet has no empty text apart from an empty cell: both read empty text as missing.
    empty_as_missing = pl.all().replace("", None)
    as_csv = pl.read_csv(tmp_path / "breaks.csv", infer_schema=False).select(empty_as_missing)
    assert as_csv.equals(pl.read_excel(tmp_path / "breaks.xlsx", infer_schema_length=0).select(empty_as_missing))


@pytest.mark.unit
def test_formula_like_text_is_written_as_text_and_numbers_stay_numbers() -> None:
    sheet = pl.DataFrame({"description": ['=HYPERLINK("http://x")', "@SUM(A1)", "-12.50", "+44 20 7946 0958", "plain"]})
    assert spreadsheet_safe(sheet)["description"].to_list() == [
        '\'=HYPERLINK("http://x")',
        "'@SUM(A1)",
        "-12.50",
        "+44 20 7946 0958",
        "plain",
    ]


@pytest.mark.unit
def test_a_break_without_a_close_counterpart_suggests_nothing() -> None:
    breaks = pl.LazyFrame(
        {
            "business_date": [date(2026, 11, 8)] * 2,
            "source": ["ledger", "bank"],
            "txn_id": ["L1", "B1"],
            "account_id": ["A", "A"],
            "currency": ["EUR", "EUR"],
            "booking_date": [date(2026, 11, 8), date(2026, 10, 1)],
            "amount": [Decimal("100.00"), Decimal("250.00")],
            "reference_norm": ["INV1", "INV2"],
            "category": ["missing_in_bank", "missing_in_ledger"],
            "status": ["open", "expired"],
            "counterpart_txn_id": [None, None],
        }
    )
    text = ("source", "txn_id", "reference", "counterparty", "description")
    details = pl.LazyFrame(schema={**dict.fromkeys(text, pl.String), "value_date": pl.Date})
    sheet = break_sheet(breaks, details, date(2026, 11, 8)).collect()
    assert sheet["suggested"].to_list() == [None, None]
    assert sheet["txn_id"].to_list() == ["B1", "L1"] and sheet["age_days"].to_list() == [38, 0]
