"""The daily summary: per account and currency, per currency, and in total — counts, match rate, breaks, ageing."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY
from batch_assets.transforms.exceptions import (
    CATEGORY_AMOUNT_MISMATCH,
    STATUS_OPEN,
    business_day_age,
)
from batch_assets.transforms.matching import PASS_MANUAL, PASSES
from batch_assets.transforms.resolutions import ACTION_REVERSE, ACTION_WRITE_OFF

ALL = "*"  # the account_id (and currency) of total rows
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("age_0_2", 0, 2),
    ("age_3_5", 3, 5),
    ("age_6_10", 6, 10),
    ("age_over_10", 11, None),
)
COUNT_COLUMNS: tuple[str, ...] = (
    "ledger_items",
    "bank_items",
    *[f"matches_{p}" for p in PASSES],
    "matched_ledger",
    "matched_bank",
    "open_ledger",
    "open_bank",
    "expired_ledger",
    "expired_bank",
    "timing_differences",
    "breaks_ledger",
    "breaks_bank",
    "amount_mismatches",
    "standing_breaks",
    *[name for name, _, _ in AGE_BUCKETS],
    f"matches_{PASS_MANUAL}",
    "resolved_items",
    "written_off_items",
)
MONEY_COLUMNS: tuple[str, ...] = (
    "break_value_ledger",
    "break_value_bank",
    "amount_mismatch_value",
    "resolved_value",
    "written_off_value",
)
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "account_id": pl.String(),
    "currency": pl.String(),
    **{name: pl.Int64() for name in COUNT_COLUMNS},
    "match_rate": pl.Float64(),
    **dict.fromkeys(MONEY_COLUMNS, MONEY),
}
_KEYS = ["account_id", "currency"]


def _count(frame: pl.DataFrame, name: str, condition: pl.Expr | None = None) -> pl.DataFrame:
    selected = frame if condition is None else frame.filter(condition)
    return selected.group_by(_KEYS).agg(pl.len().alias(name))


def account_figures(
    business_date: date,
    ledger: pl.DataFrame,
    bank: pl.DataFrame,
    matches: pl.DataFrame,
    classified: pl.DataFrame,
    standing: pl.DataFrame,
    resolved: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row of counts and money per (account, currency), without match rate or totals.

    `ledger`/`bank` are the day's staged and carried items, `classified` the unmatched items with categories,
    `standing` the breaks that expired on earlier days and are not resolved (account_id, currency,
    booking_date), `resolved` the items the day's resolutions moved (source, account_id, currency, action,
    amount, revived): a revived one is a candidate too. Match rate is matched items / candidate items. Break
    values are sums of absolute amounts; resolved and written-off values too, a match's written-off difference
    included; the grand total, which mixes currencies, has no money values.
    """
    if resolved is None:
        resolved = pl.DataFrame(
            schema={"source": pl.String, "account_id": pl.String, "currency": pl.String, "action": pl.String,
                    "amount": MONEY, "revived": pl.Boolean}
        )  # fmt: skip
    revived = resolved.filter("revived")
    ledger = pl.concat([ledger.select(_KEYS), revived.filter(pl.col("source") == "ledger").select(_KEYS)])
    bank = pl.concat([bank.select(_KEYS), revived.filter(pl.col("source") == "bank").select(_KEYS)])
    decided = resolved.filter(pl.col("action") != ACTION_REVERSE)
    manual = matches.filter(pl.col("match_pass") == PASS_MANUAL).unique("match_id")
    written_off = pl.concat(
        [
            decided.filter(pl.col("action") == ACTION_WRITE_OFF).select(*_KEYS, pl.col("amount").abs().alias("_v")),
            manual.select(*_KEYS, pl.col("write_off_amount").abs().alias("_v")),
        ]
    )
    unmatched = classified.with_columns(
        pl.col("age_days").alias("_age"), (pl.col("status") == STATUS_OPEN).alias("carried")
    )
    standing_aged = standing.select(*_KEYS, business_day_age(business_date, pl.col("booking_date")).alias("_age"))
    aged = pl.concat([unmatched.select(*_KEYS, "_age"), standing_aged])
    breaks = pl.col("is_break")
    parts = [
        _count(ledger, "ledger_items"),
        _count(bank, "bank_items"),
        *[
            matches.filter(pl.col("match_pass") == p)
            .group_by(_KEYS)
            .agg(pl.col("match_id").n_unique().alias(f"matches_{p}"))
            for p in (PASS_MANUAL, *PASSES)
        ],
        matches.group_by(_KEYS).agg(
            pl.col("ledger_txn_id").drop_nulls().n_unique().alias("matched_ledger"),
            pl.col("bank_txn_id").drop_nulls().n_unique().alias("matched_bank"),
        ),
        decided.group_by(_KEYS).agg(
            pl.len().alias("resolved_items"), pl.col("amount").abs().sum().alias("resolved_value")
        ),
        _count(decided, "written_off_items", pl.col("action") == ACTION_WRITE_OFF),
        written_off.filter(pl.col("_v") != 0).group_by(_KEYS).agg(pl.col("_v").sum().alias("written_off_value")),
        _count(unmatched, "open_ledger", (pl.col("source") == "ledger") & pl.col("carried")),
        _count(unmatched, "open_bank", (pl.col("source") == "bank") & pl.col("carried")),
        _count(unmatched, "expired_ledger", (pl.col("source") == "ledger") & ~pl.col("carried")),
        _count(unmatched, "expired_bank", (pl.col("source") == "bank") & ~pl.col("carried")),
        _count(unmatched, "timing_differences", ~breaks),
        _count(unmatched, "breaks_ledger", breaks & (pl.col("source") == "ledger")),
        _count(unmatched, "breaks_bank", breaks & (pl.col("source") == "bank")),
        _count(
            unmatched,
            "amount_mismatches",
            (pl.col("category") == CATEGORY_AMOUNT_MISMATCH) & (pl.col("source") == "ledger"),
        ),
        _count(standing_aged, "standing_breaks"),
        *[
            _count(aged, name, pl.col("_age").is_between(low, high if high is not None else 1 << 30))
            for name, low, high in AGE_BUCKETS
        ],
        unmatched.filter(breaks)
        .group_by(_KEYS)
        .agg(
            pl.col("amount").filter(pl.col("source") == "ledger").abs().sum().alias("break_value_ledger"),
            pl.col("amount").filter(pl.col("source") == "bank").abs().sum().alias("break_value_bank"),
        ),
        unmatched.filter((pl.col("category") == CATEGORY_AMOUNT_MISMATCH) & (pl.col("source") == "ledger"))
        .group_by(_KEYS)
        .agg(pl.col("difference").abs().sum().alias("amount_mismatch_value")),
    ]
    keys = pl.concat([part.select(_KEYS) for part in parts]).unique()
    per_account = keys
    for part in parts:
        per_account = per_account.join(part, on=_KEYS, how="left")
    return per_account.with_columns(
        [pl.col(c).fill_null(0).cast(pl.Int64) for c in COUNT_COLUMNS]
        + [pl.col(c).fill_null(0).cast(MONEY) for c in MONEY_COLUMNS]
    )


def roll_up(business_date: date, per_account: pl.DataFrame) -> pl.DataFrame:
    """The summary table from per-account rows (of one pass, or of every bucket of accounts together): those
    rows, one per currency and the grand total, with match rates."""
    per_currency = (
        per_account.group_by("currency")
        .agg([pl.col(c).sum() for c in (*COUNT_COLUMNS, *MONEY_COLUMNS)])
        .with_columns(pl.lit(ALL).alias("account_id"))
    )
    grand = per_account.select([pl.col(c).sum() for c in COUNT_COLUMNS]).with_columns(
        pl.lit(ALL).alias("account_id"),
        pl.lit(ALL).alias("currency"),
        *[pl.lit(None, MONEY).alias(c) for c in MONEY_COLUMNS],
    )
    rate = (pl.col("matched_ledger") + pl.col("matched_bank")) / (pl.col("ledger_items") + pl.col("bank_items"))
    return (
        pl.concat([per_account, per_currency, grand], how="diagonal_relaxed")
        .with_columns(
            pl.lit(business_date).alias("business_date"),
            pl.when(pl.col("ledger_items") + pl.col("bank_items") > 0).then(rate).otherwise(1.0).alias("match_rate"),
        )
        .select(list(SUMMARY_SCHEMA))
        .cast(SUMMARY_SCHEMA)  # type: ignore[arg-type]
        .sort(pl.col("account_id") == ALL, "account_id", pl.col("currency") == ALL, "currency")
    )
