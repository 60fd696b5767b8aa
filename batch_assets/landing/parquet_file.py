"""Parquet deliveries: the contract's columns by name, as text, decimals, integers or dates, never floats."""

from __future__ import annotations

import polars as pl

from batch_assets.landing.rows import ReadRows
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile, first_line
from batch_assets.transforms.contract import CONTRACT_COLUMNS, REQUIRED_COLUMNS

EXTENSIONS = ("parquet",)


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
    try:
        schema = pl.read_parquet_schema(file.path)
    except Exception as error:  # noqa: BLE001 - any failure to read the footer means unreadable
        raise RejectedFile(file.name, f"unreadable Parquet ({first_line(error)})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in schema]
    if missing:
        raise RejectedFile(file.name, f"missing required column(s) {', '.join(missing)}")
    nested = [name for name in CONTRACT_COLUMNS if name in schema and schema[name].is_nested()]
    if nested:
        raise RejectedFile(file.name, f"column(s) {', '.join(nested)} have nested types, not text, numbers or dates")
    floats = [f"{name} ({schema[name]})" for name in CONTRACT_COLUMNS if name in schema and schema[name].is_float()]
    if floats:
        # 0.1 has no exact float, and a float prints 1234567890123456.78 as 1234567890123456.8: the amount would
        # change on the way in. Money and identifiers come as decimal, integer or text.
        raise RejectedFile(
            file.name, f"column(s) {', '.join(floats)} are floating point; use decimal, integer or text columns"
        )
    frame = pl.scan_parquet(file.path).with_row_index("line_number", offset=1)
    extra = [name for name in schema if name not in CONTRACT_COLUMNS]
    # Text for every contract column: dates as ISO, decimals as written, so validation treats all formats alike.
    frame = frame.with_columns(
        [
            pl.col(name).dt.strftime("%Y-%m-%d")
            if schema[name] in (pl.Date, pl.Datetime)
            else pl.col(name).cast(pl.String)
            for name in CONTRACT_COLUMNS
            if name in schema
        ]
    )
    return ReadRows(frame, extra, None)
