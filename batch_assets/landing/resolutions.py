"""Resolution files (CSV or Excel): the decided rows, typed, each with what is wrong with it; a file that cannot be
read as a table of resolutions is rejected whole."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from batch_assets.landing.zone import RejectedFile
from batch_assets.transforms.resolutions import RESOLUTION_ROW_SCHEMA
from batch_assets.transforms.validate import AMOUNT_PATTERN, formula_like

# Not a reader of the ledger and bank sources (no EXTENSIONS): resolutions have their own columns, and the
# extensions they come in are the contract's RESOLUTION_FORMATS.
DECISION_COLUMNS: tuple[str, ...] = (
    "resolution_id", "action", "source", "txn_id", "write_off_amount", "reason_code", "comment", "resolved_by",
    "resolved_at",
)  # fmt: skip
OPTIONAL_COLUMNS: tuple[str, ...] = ("reverses",)
TEXT_COLUMNS: tuple[str, ...] = ("resolution_id", "action", "source", "txn_id", "reason_code", "comment",
                                 "resolved_by", "reverses")  # fmt: skip
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?$"


def read_resolutions(path: Path, name: str) -> pl.DataFrame:
    """The file's decided rows (RESOLUTION_ROW_SCHEMA), in line order.

    A row with neither a resolution_id nor an action is a break nobody decided (an exported spreadsheet lists
    them all) and is left out. Other columns (the export's fields, age, suggestions) are ignored. A value that
    does not fit its column is not an error of the file: its row's `problem` says what is wrong, and the
    resolution it belongs to is rejected with it.
    """
    text = _as_text(path, name)
    missing = [column for column in DECISION_COLUMNS if column not in text.columns]
    if missing:
        raise RejectedFile(
            name,
            f"line 1: no {', '.join(missing)} column; a resolutions file has the columns "
            f"{', '.join(DECISION_COLUMNS)} (and optionally reverses): start from `batch-assets breaks --out FILE`",
        )
    cleaned = {c: _clean(c) for c in (*DECISION_COLUMNS, *OPTIONAL_COLUMNS) if c in text.columns}
    frame = (
        text.with_columns(line_number=pl.int_range(2, text.height + 2, dtype=pl.Int64))
        .with_columns(**cleaned)
        .with_columns([pl.lit(None, pl.String).alias(c) for c in OPTIONAL_COLUMNS if c not in text.columns])
        .filter(pl.col("resolution_id").is_not_null() | pl.col("action").is_not_null())
        .with_columns(pl.col("action").str.to_lowercase(), pl.col("source").str.to_lowercase())
    )
    amount_ok = pl.col("write_off_amount").is_null() | pl.col("write_off_amount").str.contains(AMOUNT_PATTERN)
    at = pl.col("resolved_at").str.replace("Z$", "+00:00").str.replace(" ", "T")
    at_ok = pl.col("resolved_at").is_null() | pl.col("resolved_at").str.contains(_TIMESTAMP)
    formula = [pl.when(formula_like(pl.col(c))).then(pl.lit(c)) for c in TEXT_COLUMNS]
    problem = (
        pl.when(~amount_ok)
        .then(
            pl.format(
                "line {}: write_off_amount {} is not an amount", pl.col("line_number"), pl.col("write_off_amount")
            )
        )
        .when(~at_ok)
        .then(
            pl.format(
                "line {}: resolved_at {} is not a date and time (YYYY-MM-DDTHH:MM[:SS][+HH:MM])",
                pl.col("line_number"),
                pl.col("resolved_at"),
            )
        )  # fmt: skip
        .when(pl.coalesce(formula).is_not_null())
        .then(
            pl.format(
                "line {}: {} holds text a spreadsheet would run as a formula",
                pl.col("line_number"),
                pl.coalesce(formula),
            )
        )  # fmt: skip
    )
    typed = frame.with_columns(
        problem=problem,
        file_name=pl.lit(name),
        write_off_amount=pl.when(amount_ok).then(pl.col("write_off_amount")).str.strip_prefix("+"),
        resolved_at=pl.when(at_ok).then(at),
    )
    return typed.select(
        [pl.col(c).cast(t) if c != "resolved_at" else _timestamp(pl.col(c)) for c, t in RESOLUTION_ROW_SCHEMA.items()]
    )


def _timestamp(text: pl.Expr) -> pl.Expr:
    """A date and time in UTC; one without an offset is taken as UTC."""
    with_offset = text.str.contains(r"[+-][0-9]{2}:[0-9]{2}$")
    seconds = (
        pl.when(text.str.contains(r"T[0-9]{2}:[0-9]{2}([+-]|$)"))
        .then(text.str.replace(r"(T[0-9]{2}:[0-9]{2})", "$1:00"))
        .otherwise(text)
    )
    return (
        pl.when(with_offset)
        .then(seconds.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", strict=False))
        .otherwise(seconds.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False).dt.replace_time_zone("UTC"))
        .dt.cast_time_unit("us")
        .alias("resolved_at")
    )


def _clean(column: str) -> pl.Expr:
    trimmed = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def _as_text(path: Path, name: str) -> pl.DataFrame:
    """Every cell as text, as the file holds it. The name says the format: the path may be a held-open
    /proc/self/fd/N."""
    suffix = Path(name).suffix
    try:
        if suffix == ".xlsx":
            return pl.read_excel(path, infer_schema_length=0)
        return pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=True)
    except Exception as error:  # noqa: BLE001 - whatever the parser says, the operator gets it with the file name
        raise RejectedFile(name, f"not a readable {suffix[1:]} table of resolutions: {error}") from None
