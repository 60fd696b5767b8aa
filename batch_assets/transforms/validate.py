"""Validation: judge each raw row against the contract's rules, then split it into staged and quarantined rows."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import (
    CONTRACT_COLUMNS,
    MAX_INTEGER_DIGITS,
    MONEY,
    QUARANTINE_SCHEMA,
    REQUIRED_COLUMNS,
    RULE_BOOKING_DATE_MISMATCH,
    RULE_DUPLICATE_TXN_ID,
    RULE_FORMULA_LIKE_TEXT,
    RULE_INVALID_AMOUNT,
    RULE_INVALID_CURRENCY,
    RULE_INVALID_DATE,
    RULE_MISSING_FIELD,
    STAGED_SCHEMA,
    TEXT_COLUMNS,
)
from batch_assets.transforms.references import normalise_reference

AMOUNT_PATTERN = rf"^[+-]?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,2}})?$"
_TOO_MANY_DECIMALS = r"^[+-]?[0-9]+\.[0-9]{3,}$"
_TOO_MANY_DIGITS = rf"^[+-]?[0-9]{{{MAX_INTEGER_DIGITS + 1},}}(\.[0-9]*)?$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# What a spreadsheet opening an export would run as a formula or DDE command: a cell starting with `=` or
# `@`, or with a `+` or `-` sign that does not start a plain number. Signs alone ("-", "--") are placeholders
# and a signed number or phone number ("-12.50", "+44 20 7946 0958", "+1 (555) 010-9999") is data, so those
# stay; "-2+3+cmd|' /C calc'!A0" does not. Leading whitespace is skipped because some importers trim it.
_FORMULA_START = r"^\s*[=@]"
_SIGN_START = r"^\s*[+\-]"
_SIGNED_NUMBER = r"^\s*[+\-][\s+\-]*(?:[0-9.][0-9\s()./\-]*)?$"
PRIOR_TXN_SCHEMA = {"txn_id": pl.String, "business_date": pl.Date}
# The trimmed working column that each required field is judged by.
_CLEANED = {
    "txn_id": "_txn_id",
    "account_id": "_account_id",
    "booking_date": "_booking_text",
    "amount": "_amount_text",
    "currency": "_currency",
}


def _clean(column: str) -> pl.Expr:
    """Trimmed text, with an empty value read as missing."""
    trimmed = pl.col(column).str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def formula_like(text: pl.Expr) -> pl.Expr:
    """Whether a text value would run as a formula if a spreadsheet opened it; false for null."""
    starts_with_sign = text.str.contains(_SIGN_START) & ~text.str.contains(_SIGNED_NUMBER)
    return (text.str.contains(_FORMULA_START) | starts_with_sign).fill_null(False)


def txn_id_keys(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The txn_ids of raw rows as duplicates are judged: stripped of surrounding Unicode whitespace."""
    return raw.select(_clean("txn_id").alias("txn_id")).drop_nulls().unique()


def txn_id_bucket(count: int) -> pl.Expr:
    """Which of `count` buckets a raw row belongs to: every copy of a txn_id, as duplicates are judged, falls in
    the same one."""
    return _clean("txn_id").hash(seed=0) % count


def valid_amount_total() -> pl.Expr:
    """The sum of the raw amounts that are valid contract decimals: what a raw partition's total means."""
    amount = _clean("amount")
    return pl.when(amount.str.contains(AMOUNT_PATTERN)).then(amount.cast(MONEY)).sum().alias("amount_total")


def _parse_date(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(_ISO_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))


def _checks(business_date: pl.Expr) -> list[tuple[pl.Expr, str, pl.Expr]]:
    """(broken, rule, why) for every rule but duplicates, in the contract's order, over the cleaned columns."""
    missing = [(pl.col(_CLEANED[name]).is_null(), name) for name in REQUIRED_COLUMNS]
    amount = pl.col("_amount_text")
    return [
        *[(is_missing, RULE_MISSING_FIELD, pl.lit(f"{name} is missing")) for is_missing, name in missing],
        (
            ~amount.str.contains(AMOUNT_PATTERN),
            RULE_INVALID_AMOUNT,
            pl.when(amount.str.contains(_TOO_MANY_DECIMALS))
            .then(pl.format("amount {} has more than 2 fractional digits", amount))
            .when(amount.str.contains(_TOO_MANY_DIGITS))
            .then(pl.format("amount {} has more than {} integer digits", amount, pl.lit(MAX_INTEGER_DIGITS)))
            .otherwise(pl.format("amount {} is not a decimal", amount)),
        ),
        (
            pl.col("_booking_date").is_null(),
            RULE_INVALID_DATE,
            pl.format("booking_date {} is not a date (YYYY-MM-DD)", pl.col("_booking_text")),
        ),
        (
            pl.col("_value_text").is_not_null() & pl.col("_value_date").is_null(),
            RULE_INVALID_DATE,
            pl.format("value_date {} is not a date (YYYY-MM-DD)", pl.col("_value_text")),
        ),
        (
            ~pl.col("_currency").str.contains(r"^[A-Z]{3}$"),
            RULE_INVALID_CURRENCY,
            pl.format("currency {} is not 3 letters", pl.col("currency")),
        ),
        (
            pl.col("_booking_date") != business_date,
            RULE_BOOKING_DATE_MISMATCH,
            pl.format(
                "booking_date {} is not the file's business date {}",
                pl.col("_booking_text"),
                business_date.dt.to_string("%Y-%m-%d"),
            ),
        ),
        # The detail names the field but does not repeat the value: the quarantine export must not carry
        # the formula in a column of its own making (the raw value stays in its own column, as delivered).
        *[
            (
                formula_like(pl.col(column)),
                RULE_FORMULA_LIKE_TEXT,
                pl.lit(f"{column} starts like a spreadsheet formula (=, @, or a + or - that does not start a number)"),
            )
            for column in TEXT_COLUMNS
        ],
    ]


def _first_holding(cases: list[tuple[pl.Expr, pl.Expr]]) -> pl.Expr:
    """The value of the first (condition, value) whose condition holds; null when none does."""
    result = pl.lit(None, pl.String)
    for holds, value in reversed(cases):
        result = pl.when(holds).then(value).otherwise(result)
    return result


def judge_rows(raw: pl.LazyFrame, business_date: date, prior_txn_ids: pl.LazyFrame) -> pl.LazyFrame:
    """Each raw row with its typed values and the first rule it breaks (`rule`, null when none), in the
    rows' own order. `quarantined_rows` says why.

    Rules are judged in the contract's order. Among rows that break no other rule, the first occurrence of a
    txn_id by (file name, line) wins and later ones are duplicates, as is a txn_id already staged on an
    earlier business day (`prior_txn_ids`: txn_id, business_date). Only the reasons of quarantined rows are
    ever written out, so none is built here: formatting one for every row cost more than all the rules.
    """
    typed = raw.with_columns(
        _clean("txn_id").alias("_txn_id"),
        _clean("account_id").alias("_account_id"),
        _clean("booking_date").alias("_booking_text"),
        _clean("value_date").alias("_value_text"),
        _clean("amount").alias("_amount_text"),
        _clean("currency").str.to_uppercase().alias("_currency"),
    ).with_columns(
        _parse_date(pl.col("_booking_text")).alias("_booking_date"),
        _parse_date(pl.col("_value_text")).alias("_value_date"),
    )
    rule = _first_holding([(broken, pl.lit(name)) for broken, name, _ in _checks(pl.lit(business_date))])
    # Cached: the rows feed both the result and the search for repeated txn_ids, and Polars would judge them
    # twice otherwise.
    judged = typed.with_columns(rule.alias("rule")).cache()

    # Duplicates are judged among rows that are otherwise good, so a broken copy never hides a good one. A
    # repeat is rare, so only repeated txn_ids are put in (file, line) order to find where each was first seen.
    good = judged.filter(pl.col("rule").is_null())
    first_seen = (
        good.filter(pl.col("_txn_id").is_duplicated())
        .sort("file_name", "line_number")
        .unique("_txn_id", keep="first")
        .select("_txn_id", pl.col("file_name").alias("_first_file"), pl.col("line_number").alias("_first_line"))
    )
    prior = prior_txn_ids.select(
        pl.col("txn_id").alias("_txn_id"), pl.col("business_date").alias("_prior_date")
    ).unique("_txn_id")
    is_good = pl.col("rule").is_null()
    repeat = pl.col("_first_file").is_not_null() & (
        (pl.col("file_name") != pl.col("_first_file")) | (pl.col("line_number") != pl.col("_first_line"))
    )
    return (
        judged.join(prior, on="_txn_id", how="left", maintain_order="left")
        .join(first_seen, on="_txn_id", how="left", maintain_order="left")
        .with_columns(
            pl.when(is_good & (pl.col("_prior_date").is_not_null() | repeat))
            .then(pl.lit(RULE_DUPLICATE_TXN_ID))
            .otherwise(pl.col("rule"))
            .alias("rule")
        )
    )


def _detail() -> pl.Expr:
    """Why a judged row broke its rule, built from the same checks that chose the rule."""
    duplicate = pl.col("rule") == RULE_DUPLICATE_TXN_ID
    return _first_holding(
        [
            (
                duplicate & pl.col("_prior_date").is_not_null(),
                pl.format("txn_id {} was already staged on {}", pl.col("_txn_id"), pl.col("_prior_date")),
            ),
            (
                duplicate,
                pl.format(
                    "txn_id {} first seen in {} line {}",
                    pl.col("_txn_id"),
                    pl.col("_first_file"),
                    pl.col("_first_line"),
                ),
            ),
            *[(broken, why) for broken, _, why in _checks(pl.col("business_date"))],
        ]
    )


def staged_rows(judged: pl.LazyFrame) -> pl.LazyFrame:
    """Rows that broke no rule, typed and normalised, in STAGED_SCHEMA."""
    return (
        judged.filter(pl.col("rule").is_null())
        .select(
            "business_date",
            pl.col("_txn_id").alias("txn_id"),
            pl.col("_account_id").alias("account_id"),
            pl.col("_booking_date").alias("booking_date"),
            pl.coalesce("_value_date", "_booking_date").alias("value_date"),
            pl.col("_amount_text").cast(MONEY).alias("amount"),
            pl.col("_currency").alias("currency"),
            "reference",
            normalise_reference(pl.col("reference")).alias("reference_norm"),
            "counterparty",
            "description",
            "file_name",
            "line_number",
        )
        .cast(STAGED_SCHEMA)
    )  # type: ignore[arg-type]


def quarantined_rows(judged: pl.LazyFrame, source: str) -> pl.LazyFrame:
    """Rows that broke a rule, with the rule, why, and the raw values as delivered, in QUARANTINE_SCHEMA."""
    return (
        judged.filter(pl.col("rule").is_not_null())
        .select(
            "business_date",
            pl.lit(source).alias("source"),
            "file_name",
            "line_number",
            "rule",
            _detail().alias("detail"),
            *CONTRACT_COLUMNS,
        )
        .cast(QUARANTINE_SCHEMA)
    )  # type: ignore[arg-type]
