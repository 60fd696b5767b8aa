"""Exceptions: what the day's unmatched items are (amount mismatch, missing on a side) and which are breaks."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY

CATEGORY_AMOUNT_MISMATCH = "amount_mismatch"
CATEGORY_MISSING_IN_BANK = "missing_in_bank"
CATEGORY_MISSING_IN_LEDGER = "missing_in_ledger"
CATEGORIES = (CATEGORY_AMOUNT_MISMATCH, CATEGORY_MISSING_IN_BANK, CATEGORY_MISSING_IN_LEDGER)

STATUS_OPEN = "open"  # still a candidate tomorrow
STATUS_EXPIRED = "expired"  # older than carry_days: a standing break until someone resolves it

EXCEPTION_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "source": pl.String(),
    "txn_id": pl.String(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "booking_date": pl.Date(),
    "amount": MONEY,
    "reference_norm": pl.String(),
    "category": pl.String(),
    "age_days": pl.Int32(),
    "is_break": pl.Boolean(),
    "status": pl.String(),
    "difference": MONEY,  # bank amount minus ledger amount, for amount mismatches
    "counterpart_txn_id": pl.String(),
}


def classify(open_items: pl.DataFrame, grace_days: int) -> pl.DataFrame:
    """Every unmatched item of the day with its category, whether it is a break, and its status.

    An amount mismatch is a ledger and a bank item with equal account, currency and non-null reference but
    different amounts; several on a reference are paired in (booking_date, txn_id) order. An item no older
    than `grace_days` is a timing difference, not yet a break.
    """
    keys = ["account_id", "currency", "reference_norm"]
    ranked = (
        open_items.filter(pl.col("reference_norm").is_not_null())
        .sort("booking_date", "txn_id")
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over([*keys, "source"]).alias("_rank"))
    )
    pairs = ranked.filter(pl.col("source") == "ledger").join(
        ranked.filter(pl.col("source") == "bank"), on=[*keys, "_rank"], suffix="_bank"
    )
    difference = (pl.col("amount_bank") - pl.col("amount")).cast(MONEY)
    counterparts = pl.concat(
        [
            pairs.select(
                "txn_id",
                pl.lit("ledger").alias("source"),
                pl.col("txn_id_bank").alias("counterpart_txn_id"),
                difference.alias("difference"),
            ),
            pairs.select(
                pl.col("txn_id_bank").alias("txn_id"),
                pl.lit("bank").alias("source"),
                pl.col("txn_id").alias("counterpart_txn_id"),
                difference.alias("difference"),
            ),
        ]
    )
    return (
        open_items.join(counterparts, on=["source", "txn_id"], how="left")
        .with_columns(
            pl.when(pl.col("counterpart_txn_id").is_not_null())
            .then(pl.lit(CATEGORY_AMOUNT_MISMATCH))
            .when(pl.col("source") == "ledger")
            .then(pl.lit(CATEGORY_MISSING_IN_BANK))
            .otherwise(pl.lit(CATEGORY_MISSING_IN_LEDGER))
            .alias("category"),
            (pl.col("age_days") > grace_days).alias("is_break"),
            pl.when(pl.col("carried")).then(pl.lit(STATUS_OPEN)).otherwise(pl.lit(STATUS_EXPIRED)).alias("status"),
        )
        .select(list(EXCEPTION_SCHEMA))
        .cast(EXCEPTION_SCHEMA)  # type: ignore[arg-type]
        .sort("source", "booking_date", "txn_id")
    )


def exceptions(classified: pl.DataFrame) -> pl.DataFrame:
    """What the exceptions report lists: every break, and every amount mismatch however young."""
    return classified.filter(pl.col("is_break") | (pl.col("category") == CATEGORY_AMOUNT_MISMATCH))


def business_day_age(business_date: date, booking_date: pl.Expr) -> pl.Expr:
    """Calendar days from booking to the business date."""
    return (pl.lit(business_date) - booking_date).dt.total_days().cast(pl.Int32)
