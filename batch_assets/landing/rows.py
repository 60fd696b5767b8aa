"""A delivery's rows: read by the reader of its format, shaped to RAW_SCHEMA, streamed to Parquet whole or not
at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from batch_assets.landing import formats
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile, find_non_utf8_line, first_line, held_open
from batch_assets.storage import disk_full_error, is_out_of_space
from batch_assets.transforms.contract import CONTRACT_COLUMNS, RAW_SCHEMA
from batch_assets.transforms.references import normalise_reference


@dataclass(frozen=True)
class ReadRows:
    """What a reader gives: `line_number` and the contract columns as text (any missing is null), and either an
    `extra` column of JSON text or the names of the columns to fold into it; and how many records the file's
    own structure says it holds, when the reader counted them, so that a file is never landed in part."""

    frame: pl.LazyFrame
    extra_columns: list[str]
    expected_rows: int | None
    # For a reader that streams its rows into Polars (a Python source): the error that ended its rows early, if
    # one did. Raised inside Polars' streaming sink, an error would come back while the sink still writes.
    problem: Callable[[], RejectedFile | None] = lambda: None


def land_file(file: LandingFile, digest: FileDigest, spill: Path) -> int:
    """Stream the file's rows (RAW_SCHEMA) into the Parquet file `spill` and return how many there were.

    Raises RejectedFile, naming the line where it can, for anything that keeps the file from being read whole.
    A file is landed whole or not at all: when the rows read differ in number from the records its structure
    holds, the file is rejected rather than landed in part. The file is held open until the rows are written.
    """
    with held_open(file) as held:
        frame, expected_rows, problem = _read(held, digest)
        _sink_rows(frame, held, spill)
    if (error := problem()) is not None:
        spill.unlink(missing_ok=True)
        raise error
    rows = int(pl.scan_parquet(spill).select(pl.len()).collect().item())
    if expected_rows is not None and rows != expected_rows:
        raise RejectedFile(
            file.name,
            f"{rows} rows read but the file holds {expected_rows} records; its quoting or line structure is "
            "ambiguous, so none of it is landed",
        )
    return rows


def _sink_rows(frame: pl.LazyFrame, file: LandingFile, spill: Path) -> None:
    """Write the file's rows to `spill`; a failure to read them rejects the file, a full disk does not."""
    try:
        _sink(frame, spill)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        if is_out_of_space(error):
            # Writing the spill failed, not reading the file: the disk's fault, never a reason to reject the file.
            raise disk_full_error(spill.parent, f"landing {file.name}") from error
        message = str(error).lower()
        if isinstance(error, pl.exceptions.ComputeError) and ("utf-8" in message or "utf8" in message):
            raise RejectedFile(file.name, find_non_utf8_line(file.path) or "not UTF-8") from None
        # A panic is how Polars reports some corrupt inputs; it is the file's fault, not the process's.
        raise RejectedFile(file.name, _unreadable(file, error)) from None


def _sink(frame: pl.LazyFrame, spill: Path) -> None:
    """Write the rows to `spill`; on failure, remove what was written, so a rejected file leaves nothing."""
    try:
        frame.sink_parquet(spill, compression="lz4", engine="streaming")
    except BaseException:
        spill.unlink(missing_ok=True)
        raise


def read_landing_file(file: LandingFile, digest: FileDigest) -> pl.LazyFrame:
    """The file's rows as text in RAW_SCHEMA, with file name and line number. Raises RejectedFile.

    The rows are read in full while the file is held open, so the frame never reopens the file by name."""
    with held_open(file) as held:
        frame, _, problem = _read(held, digest)
        rows = frame.collect()
    if (error := problem()) is not None:
        raise error
    return rows.lazy()


def _read(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, int | None, Callable[[], RejectedFile | None]]:
    """The file's rows, and how many records its structure says it holds when a reader counted them."""
    if digest.size_bytes == 0:
        raise RejectedFile(file.name, "zero-byte file (a day with no transactions is a header-only file)")
    read = formats.reader(file.format).read(file, digest)
    return _to_raw_schema(read.frame, file, read.extra_columns), read.expected_rows, read.problem


def _unreadable(file: LandingFile, error: BaseException) -> str:
    """Why a reader failed: the reader's own account, with the line, where it can give one."""
    locate = getattr(formats.reader(file.format), "locate_problem", None)
    located = locate(file.path) if locate else None
    return located or f"unreadable {file.format} file ({first_line(error)})"


def _to_raw_schema(frame: pl.LazyFrame, file: LandingFile, extra_columns: list[str]) -> pl.LazyFrame:
    present = set(frame.collect_schema().names())
    columns = [
        pl.lit(file.business_date, pl.Date).alias("business_date"),
        pl.lit(file.name, pl.String).alias("file_name"),
        pl.col("line_number").cast(pl.Int64),
        *[(pl.col(c) if c in present else pl.lit(None, pl.String)).cast(pl.String).alias(c) for c in CONTRACT_COLUMNS],
    ]
    if "extra" in present:
        columns.append(pl.col("extra"))
    elif extra_columns:
        columns.append(pl.struct(extra_columns).struct.json_encode().alias("extra"))
    else:
        columns.append(pl.lit(None, pl.String).alias("extra"))
    return frame.select(columns).cast(RAW_SCHEMA)  # type: ignore[arg-type]


def amount_text(amount: Decimal) -> str:
    """A statement's signed amount as the contract's text: two decimals when that is exact (8.850 is 8.85), else
    as it is (8.855 stays, for validation to quarantine)."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents:f}" if cents == amount else f"{amount:f}"


def statement_schema() -> dict[str, pl.DataType]:
    """The columns a bank statement reader gives Polars: the line, the contract's columns as text, `extra`."""
    return {"line_number": pl.Int64(), **{name: pl.String() for name in CONTRACT_COLUMNS}, "extra": pl.String()}


def statement_frame(
    rows: list, reference_sources: tuple[str, ...], with_columns: list[str] | None, columns: tuple[str, ...] = ()
) -> pl.DataFrame:
    """Statement rows as a frame. Each row gives its reference candidates under `reference_sources`, in order of
    preference; the reference is the first that the contract's normalisation does not make null. A row is a dict,
    or, where `columns` names them, a tuple of those columns' values (the others are null)."""
    schema = statement_schema()
    names = [*schema, *reference_sources]
    types = {name: schema.get(name, pl.String()) for name in names}
    if columns:
        # Column by column: Polars takes a list per column far faster than a row at a time.
        given = dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)) if rows else {}
        frame = pl.DataFrame({name: given.get(name, [None] * len(rows)) for name in names}, schema=types)
    else:
        frame = pl.DataFrame([[row.get(name) for name in names] for row in rows], schema=types, orient="row")
    chosen = [pl.when(normalise_reference(pl.col(c)).is_not_null()).then(pl.col(c)) for c in reference_sources]
    frame = frame.with_columns(reference=pl.coalesce(chosen)).select(list(schema))
    return frame.select(with_columns) if with_columns else frame


def streamed_statement(
    rows: Callable[[], Iterator], reference_sources: tuple[str, ...], batch_rows: int = 20_000,
    columns: tuple[str, ...] = (),
) -> ReadRows:  # fmt: skip
    """A bank statement reader's rows (dicts, or tuples of `columns`), handed to Polars in batches as it pulls
    them, so memory holds one batch. An error that rejects the file ends the rows and is handed back once Polars
    is done with them (`problem`)."""
    failed: list[RejectedFile] = []

    def batches(with_columns: list[str] | None, predicate, n_rows: int | None, batch_size: int | None):
        try:
            batch: list = []
            for row in rows():
                batch.append(row)
                if len(batch) >= batch_rows:
                    yield statement_frame(batch, reference_sources, with_columns, columns)
                    batch = []
            yield statement_frame(batch, reference_sources, with_columns, columns)
        except RejectedFile as error:
            failed.append(error)

    return ReadRows(
        register_io_source(batches, schema=statement_schema()), [], None, lambda: failed[0] if failed else None
    )
