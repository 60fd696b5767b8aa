"""The breaks sheet: a day's open and standing breaks with both sides' fields, suggested counterparts and empty
decision columns, to be filled in and handed back as a resolutions file."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY
from batch_assets.transforms.validate import formula_like

# A suggested counterpart is on the other side, in the same account and currency, and close: an amount within
# this share, a booking date within these days, or the same reference once normalised. The closest few are shown.
SUGGEST_AMOUNT_SHARE = 0.05
SUGGEST_DATE_DAYS = 3
SUGGESTIONS = 3

ITEM_COLUMNS: tuple[str, ...] = (
    "source", "txn_id", "account_id", "currency", "booking_date", "value_date", "amount", "reference",
    "counterparty", "description",
)  # fmt: skip
BREAK_COLUMNS: tuple[str, ...] = ("category", "status", "origin_date", "age_days", "counterpart_txn_id", "suggested")
DECISION_COLUMNS: tuple[str, ...] = (
    "resolution_id", "action", "write_off_amount", "reason_code", "comment", "resolved_by", "resolved_at",
)  # fmt: skip
SHEET_COLUMNS: tuple[str, ...] = (*ITEM_COLUMNS, *BREAK_COLUMNS, *DECISION_COLUMNS)


def break_sheet(breaks: pl.LazyFrame, details: pl.LazyFrame, business_date: date) -> pl.LazyFrame:
    """One row per break: its item's fields, its category, whether it is open or standing, its age on
    `business_date`, up to SUGGESTIONS counterparts, and the empty decision columns, largest breaks first.

    `breaks` are recon.exceptions rows (is_break), `details` the staged rows' `source`, `txn_id`, `value_date`,
    `reference`, `counterparty` and `description`.
    """
    items = (
        breaks.join(details, on=["source", "txn_id"], how="left")
        .with_columns(
            origin_date=pl.col("business_date"),
            age_days=(pl.lit(business_date) - pl.col("booking_date")).dt.total_days().cast(pl.Int32),
            status=pl.when(pl.col("status") == "expired").then(pl.lit("standing")).otherwise(pl.lit("open")),
        )
        .with_row_index("_row")
    )
    sheet = items.join(_suggested(items), on="_row", how="left")
    return (
        sheet.with_columns([pl.lit(None, pl.String).alias(c) for c in DECISION_COLUMNS])
        .sort(pl.col("amount").abs(), "age_days", "source", "txn_id", descending=[True, True, False, False])
        .select(
            *[pl.col(c).cast(MONEY) if c == "amount" else pl.col(c) for c in ITEM_COLUMNS],
            *BREAK_COLUMNS,
            *DECISION_COLUMNS,
        )
    )


def _suggested(items: pl.LazyFrame) -> pl.LazyFrame:
    """Per break, its closest counterparts as text: `bank B2 97.50 on 2026-11-24`, closest first."""
    other = items.select(
        pl.col("_row").alias("_other"),
        pl.col("source").alias("_other_source"),
        "account_id",
        "currency",
        pl.col("txn_id").alias("_other_txn_id"),
        pl.col("amount").alias("_other_amount"),
        pl.col("booking_date").alias("_other_date"),
        pl.col("reference_norm").alias("_other_reference"),
    )
    gap = (pl.col("amount").abs() - pl.col("_other_amount").abs()).abs()
    days = (pl.col("booking_date") - pl.col("_other_date")).dt.total_days().abs()
    close = (
        (gap <= pl.col("amount").abs().cast(pl.Float64) * SUGGEST_AMOUNT_SHARE)
        | (days <= SUGGEST_DATE_DAYS)
        | (pl.col("reference_norm") == pl.col("_other_reference")).fill_null(False)
    )
    return (
        items.select("_row", "source", "account_id", "currency", "amount", "booking_date", "reference_norm")
        .join(other, on=["account_id", "currency"])
        .filter((pl.col("source") != pl.col("_other_source")) & close)
        .with_columns(_gap=gap, _days=days)
        .sort("_row", "_gap", "_days", "_other_txn_id")
        .group_by("_row", maintain_order=True)
        .agg(
            pl.format("{} {} {} on {}", "_other_source", "_other_txn_id", "_other_amount", "_other_date")
            .head(SUGGESTIONS)
            .str.join("; ")
            .alias("suggested")
        )
    )


def spreadsheet_safe(sheet: pl.DataFrame) -> pl.DataFrame:
    """Text a spreadsheet would run as a formula, written with a leading apostrophe, which spreadsheets read as
    "this is text" (for CSV; an Excel file holds text cells as text already)."""
    text = [name for name, dtype in sheet.schema.items() if dtype == pl.String]
    return sheet.with_columns(
        [
            pl.when(formula_like(pl.col(c))).then(pl.concat_str(pl.lit("'"), pl.col(c))).otherwise(pl.col(c)).alias(c)
            for c in text
        ]
    )
