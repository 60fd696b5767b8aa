"""The landing-file contract: sources, file names, columns, quarantine rules and output schemas."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

import polars as pl

SOURCES: tuple[str, ...] = ("ledger", "bank")
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl")
# The third source: people's decisions on breaks, in files of their own columns (CSV, or the Excel the breaks
# sheet is exported as). It never holds a day back: a day reconciles without any.
RESOLUTIONS = "resolutions"
RESOLUTION_FORMATS: tuple[str, ...] = ("csv", "xlsx")
LANDING_SOURCES: tuple[str, ...] = (*SOURCES, RESOLUTIONS)

# <source>/<source>_<YYYY-MM-DD>[_<part>].<extension>, relative to the landing root, the extension one that a
# reader of the landing zone reads (csv, parquet and jsonl for both sources). ASCII only
# and anchored with \Z: `$` would let a trailing newline through, and `\d` would take other scripts' digits,
# so a name that passes holds nothing that needs quoting anywhere.
FILE_NAME_PATTERN = re.compile(
    r"^(?P<source>ledger|bank|resolutions)_(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:_(?P<part>[A-Za-z0-9]+))?"
    r"\.(?P<format>[a-z0-9]+)\Z",
    re.ASCII,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("txn_id", "account_id", "booking_date", "amount", "currency")
OPTIONAL_COLUMNS: tuple[str, ...] = ("value_date", "reference", "counterparty", "description")
CONTRACT_COLUMNS: tuple[str, ...] = (
    "txn_id",
    "account_id",
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "reference",
    "counterparty",
    "description",
)

# Money is Decimal(18,2) everywhere: never a float.
MONEY = pl.Decimal(18, 2)
MAX_INTEGER_DIGITS = 16

# Quarantine rules, in the order a row is judged: the first rule a row breaks is the one recorded.
RULE_MISSING_FIELD = "missing_required_field"
RULE_INVALID_AMOUNT = "invalid_amount"
RULE_INVALID_DATE = "invalid_date"
RULE_INVALID_CURRENCY = "invalid_currency"
RULE_BOOKING_DATE_MISMATCH = "booking_date_mismatch"
RULE_FORMULA_LIKE_TEXT = "formula_like_text"
RULE_DUPLICATE_TXN_ID = "duplicate_txn_id"
RULES: tuple[str, ...] = (
    RULE_MISSING_FIELD,
    RULE_INVALID_AMOUNT,
    RULE_INVALID_DATE,
    RULE_INVALID_CURRENCY,
    RULE_BOOKING_DATE_MISMATCH,
    RULE_FORMULA_LIKE_TEXT,
    RULE_DUPLICATE_TXN_ID,
)
# The text fields that reach staging, the matches and the exceptions as written, so the ones a spreadsheet
# opening an export would read: none may start like a formula (see RULE_FORMULA_LIKE_TEXT).
TEXT_COLUMNS: tuple[str, ...] = ("txn_id", "account_id", "reference", "counterparty", "description")

# File-log statuses.
STATUS_INGESTED = "ingested"
STATUS_REJECTED = "rejected"
STATUS_DUPLICATE = "duplicate"
STATUS_SUPERSEDED = "superseded"
FILE_STATUSES: tuple[str, ...] = (STATUS_INGESTED, STATUS_REJECTED, STATUS_DUPLICATE, STATUS_SUPERSEDED)

# Rows as delivered: every contract column as text, plus where the row came from.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "file_name": pl.String(),
    "line_number": pl.Int64(),
    **{column: pl.String() for column in CONTRACT_COLUMNS},
    "extra": pl.String(),
}

STAGED_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "txn_id": pl.String(),
    "account_id": pl.String(),
    "booking_date": pl.Date(),
    "value_date": pl.Date(),
    "amount": MONEY,
    "currency": pl.String(),
    "reference": pl.String(),
    "reference_norm": pl.String(),
    "counterparty": pl.String(),
    "description": pl.String(),
    "file_name": pl.String(),
    "line_number": pl.Int64(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "source": pl.String(),
    "file_name": pl.String(),
    "line_number": pl.Int64(),
    "rule": pl.String(),
    "detail": pl.String(),
    **{column: pl.String() for column in CONTRACT_COLUMNS},
}


@dataclass(frozen=True)
class LandingName:
    """What a landing file's name says about it."""

    source: str
    business_date: date
    part: str | None
    format: str


def parse_landing_name(source_dir: str, file_name: str, formats: Collection[str] = FORMATS) -> LandingName:
    """Parse `<source>_<YYYY-MM-DD>[_<part>].<ext>` found in the folder `source_dir`, `ext` one of `formats`.

    Raises ValueError with the reason when the name does not fit the contract.
    """
    match = FILE_NAME_PATTERN.match(file_name)
    if match is None or match["format"] not in formats:
        raise ValueError(f"name does not match <source>_<YYYY-MM-DD>[_<part>].<{'|'.join(formats)}>")
    if match["source"] != source_dir:
        raise ValueError(f"a {match['source']} file in the {source_dir}/ folder")
    try:
        business_date = date.fromisoformat(match["date"])
    except ValueError:
        raise ValueError(f"{match['date']} is not a calendar date") from None
    return LandingName(match["source"], business_date, match["part"], match["format"])
