"""The landing zone: finding delivered files safely, fingerprinting them, and reading them strictly as text rows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from batch_assets.transforms.contract import (
    CONTRACT_COLUMNS,
    RAW_SCHEMA,
    REQUIRED_COLUMNS,
    SOURCES,
    parse_landing_name,
)

# A `.done` marker says its file is complete; dot-files are writers' temporary names. Neither is a delivery.
DONE_SUFFIX = ".done"
_HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class LandingFile:
    """A delivered file whose name fits the contract."""

    path: Path
    name: str  # relative to the landing root, e.g. "ledger/ledger_2026-11-21.csv"
    source: str
    business_date: date
    format: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class IgnoredFile:
    """Something in the landing zone that is not a delivery, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class FileDigest:
    """What one streaming pass over a file's bytes tells: its identity and its line structure."""

    sha256: str
    size_bytes: int
    newlines: int
    ends_with_newline: bool


class RejectedFile(Exception):
    """A file that cannot be read as a whole. The message names the file, the line when known, and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def scan_landing(
    root: Path, business_date: date | None = None, sources: Iterable[str] = SOURCES
) -> tuple[list[LandingFile], list[IgnoredFile]]:
    """Deliveries under `root/<source>/`, sorted by name, and the entries that were ignored with a reason.

    Symlinks are never followed and nothing outside `root` is read, so the landing zone cannot be used to
    pull in other files.
    """
    files: list[LandingFile] = []
    ignored: list[IgnoredFile] = []
    real_root = root.resolve()
    for source in sources:
        folder = root / source
        if folder.is_symlink():
            ignored.append(IgnoredFile(source, "the source folder is a symlink; it is not followed"))
            continue
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                name = f"{source}/{entry.name}"
                if entry.name.startswith(".") or entry.name.endswith(DONE_SUFFIX):
                    continue
                if entry.is_symlink():
                    ignored.append(IgnoredFile(name, "a symlink; symlinks are not followed"))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    ignored.append(IgnoredFile(name, "not a regular file"))
                    continue
                if Path(entry.path).resolve().parent != real_root / source:
                    ignored.append(IgnoredFile(name, "resolves outside the landing zone"))
                    continue
                try:
                    parsed = parse_landing_name(source, entry.name)
                except ValueError as error:
                    ignored.append(IgnoredFile(name, str(error)))
                    continue
                if business_date is not None and parsed.business_date != business_date:
                    continue
                stat = entry.stat(follow_symlinks=False)
                files.append(
                    LandingFile(
                        path=Path(entry.path),
                        name=name,
                        source=parsed.source,
                        business_date=parsed.business_date,
                        format=parsed.format,
                        size_bytes=stat.st_size,
                        mtime_ns=stat.st_mtime_ns,
                    )
                )
    files.sort(key=lambda f: f.name)
    ignored.sort(key=lambda f: f.name)
    return files, ignored


def digest_file(path: Path, chunk_size: int = 8 << 20) -> FileDigest:
    """sha256, size and newline count in one streaming pass."""
    sha = hashlib.sha256()
    size = newlines = 0
    last = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            sha.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return FileDigest(sha.hexdigest(), size, newlines, last == b"\n")


def land_file(file: LandingFile, digest: FileDigest, spill: Path) -> int:
    """Stream the file's rows (RAW_SCHEMA) into the Parquet file `spill` and return how many there were.

    Raises RejectedFile, naming the line where it can, for anything that keeps the file from being read whole.
    """
    frame = read_landing_file(file, digest)
    try:
        frame.sink_parquet(spill, compression="lz4", engine="streaming")
    except pl.exceptions.ComputeError as error:
        if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
            raise RejectedFile(file.name, _find_non_utf8_line(file.path) or "not UTF-8") from None
        raise RejectedFile(file.name, f"unreadable {file.format} file ({_first_line(error)})") from None
    except (pl.exceptions.PolarsError, OSError) as error:
        raise RejectedFile(file.name, f"unreadable {file.format} file ({_first_line(error)})") from None
    return int(pl.scan_parquet(spill).select(pl.len()).collect().item())


def read_landing_file(file: LandingFile, digest: FileDigest) -> pl.LazyFrame:
    """The file's rows as text in RAW_SCHEMA, with file name and line number. Raises RejectedFile."""
    if digest.size_bytes == 0:
        raise RejectedFile(file.name, "zero-byte file (a day with no transactions is a header-only file)")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[file.format]
    frame, extra_columns = reader(file, digest)
    return _to_raw_schema(frame, file, extra_columns)


def _to_raw_schema(frame: pl.LazyFrame, file: LandingFile, extra_columns: list[str]) -> pl.LazyFrame:
    present = set(frame.collect_schema().names())
    columns = [
        pl.lit(file.business_date, pl.Date).alias("business_date"),
        pl.lit(file.name, pl.String).alias("file_name"),
        pl.col("line_number").cast(pl.Int64),
        *[
            (pl.col(c) if c in present else pl.lit(None, pl.String)).cast(pl.String).alias(c)
            for c in CONTRACT_COLUMNS
        ],
    ]
    if "extra" in present:
        columns.append(pl.col("extra"))
    elif extra_columns:
        columns.append(pl.struct(extra_columns).struct.json_encode().alias("extra"))
    else:
        columns.append(pl.lit(None, pl.String).alias("extra"))
    return frame.select(columns).cast(RAW_SCHEMA)  # type: ignore[arg-type]


# -- CSV -------------------------------------------------------------------------------------------------


def _read_csv(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str]]:
    header = _csv_header(file)
    record_count = _check_csv_structure(file, header)
    frame = pl.scan_csv(
        file.path,
        has_header=True,
        schema={name: pl.String for name in header},
        infer_schema=False,
        encoding="utf8",
        quote_char='"',
    )
    lines = digest.newlines + (0 if digest.ends_with_newline else 1)
    if lines == record_count + 1:
        # One record per line: the header is line 1, record i is line i + 2.
        frame = frame.with_row_index("line_number", offset=2)
    else:
        # Quoted newlines or blank lines: find where each record starts (rare, so plain Python is fine).
        starts = _csv_record_start_lines(file.path)
        if len(starts) != record_count:
            raise RejectedFile(file.name, f"{len(starts)} records by line count but {record_count} parsed")
        frame = frame.with_columns(pl.Series("line_number", starts, pl.Int64))
    return frame, [name for name in header if name not in CONTRACT_COLUMNS]


def _csv_header(file: LandingFile) -> list[str]:
    with open(file.path, "rb") as handle:
        first = handle.readline(_HEADER_LIMIT)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RejectedFile(file.name, f"line 1: not UTF-8 (byte 0x{first[error.start]:02x} at column {error.start + 1})") from None
    if not text.endswith("\n") and len(first) >= _HEADER_LIMIT:
        raise RejectedFile(file.name, f"line 1: the header is longer than {_HEADER_LIMIT} bytes")
    header = next(csv.reader(io.StringIO(text)), [])
    if not header or header == [""]:
        raise RejectedFile(file.name, "line 1: empty header")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise RejectedFile(file.name, f"line 1: duplicate column(s) {', '.join(duplicates)}")
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise RejectedFile(file.name, f"line 1: missing required column(s) {', '.join(missing)}")
    return header


_DUCKDB_LINE = re.compile(r"Line:\s*(\d+)")
_DUCKDB_COLUMNS = re.compile(r"Expected Number of Columns:\s*(\d+)\s*Found:\s*(\d+)")


def _check_csv_structure(file: LandingFile, header: list[str]) -> int:
    """DuckDB's strict CSV parser finds ragged rows, broken quoting and bad UTF-8, with the line. Returns
    the number of records."""
    try:
        with duckdb.connect() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM read_csv(?, columns = ?, header = true, auto_detect = false, "
                "strict_mode = true, delim = ',', quote = '\"', escape = '\"', encoding = 'utf-8')",
                [str(file.path), {name: "VARCHAR" for name in header}],
            ).fetchone()
    except duckdb.Error as error:
        raise RejectedFile(file.name, _describe_csv_error(str(error))) from None
    return int(count)


def _describe_csv_error(message: str) -> str:
    line = _DUCKDB_LINE.search(message)
    where = f"line {line.group(1)}: " if line else ""
    columns = _DUCKDB_COLUMNS.search(message)
    if columns:
        return f"{where}expected {columns.group(1)} fields, found {columns.group(2)} (ragged row)"
    lowered = message.lower()
    if "unterminated quote" in lowered:
        return f"{where}unterminated quoted value (truncated file?)"
    if "unicode" in lowered or "utf-8" in lowered or "utf8" in lowered:
        return f"{where}not UTF-8"
    first = next((part.strip() for part in message.splitlines() if part.strip()), message)
    return f"{where}{first[:300]}"


def _csv_record_start_lines(path: Path) -> list[int]:
    starts: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        previous_end = reader.line_num
        for row in reader:
            if row:  # blank lines come through as empty rows and hold no record
                starts.append(previous_end + 1)
            previous_end = reader.line_num
    return starts


# -- Parquet ---------------------------------------------------------------------------------------------


def _read_parquet(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str]]:
    try:
        schema = pl.read_parquet_schema(file.path)
    except Exception as error:  # noqa: BLE001 - any failure to read the footer means unreadable
        raise RejectedFile(file.name, f"unreadable Parquet ({_first_line(error)})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in schema]
    if missing:
        raise RejectedFile(file.name, f"missing required column(s) {', '.join(missing)}")
    nested = [name for name in CONTRACT_COLUMNS if name in schema and schema[name].is_nested()]
    if nested:
        raise RejectedFile(file.name, f"column(s) {', '.join(nested)} have nested types, not text, numbers or dates")
    frame = pl.scan_parquet(file.path).with_row_index("line_number", offset=1)
    extra = [name for name in schema if name not in CONTRACT_COLUMNS]
    # Text for every contract column: dates as ISO, decimals as written, so validation treats all formats alike.
    frame = frame.with_columns(
        [
            pl.col(name).dt.strftime("%Y-%m-%d") if schema[name] in (pl.Date, pl.Datetime) else pl.col(name).cast(pl.String)
            for name in CONTRACT_COLUMNS
            if name in schema
        ]
    )
    return frame, extra


# -- JSONL -----------------------------------------------------------------------------------------------

_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')


def _read_jsonl(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str]]:
    try:
        # NUL never occurs in valid UTF-8 JSON text, so it splits the file into whole physical lines.
        lines = (
            pl.read_csv(
                file.path,
                has_header=False,
                separator="\x00",
                quote_char=None,
                schema={"line": pl.String},
                encoding="utf8",
            )
            .with_row_index("line_number", offset=1)
            .with_columns(pl.col("line").str.strip_chars())
            .filter(pl.col("line").is_not_null() & (pl.col("line") != ""))
        )
    except pl.exceptions.ComputeError as error:
        raise RejectedFile(file.name, _find_non_utf8_line(file.path) or f"unreadable JSONL ({_first_line(error)})") from None
    except pl.exceptions.NoDataError:
        return pl.LazyFrame(schema={"line_number": pl.Int64, **{c: pl.String for c in CONTRACT_COLUMNS}}), []
    struct = pl.Struct({name: pl.String for name in CONTRACT_COLUMNS})
    try:
        decoded = lines.with_columns(pl.col("line").str.json_decode(struct).alias("record"))
    except pl.exceptions.PolarsError:
        problem = _jsonl_line_problem(lines)
        raise RejectedFile(file.name, problem) from None
    keys = set(CONTRACT_COLUMNS)
    has_extra = (
        pl.col("line").str.extract_all(_JSON_KEY.pattern).list.eval(
            pl.element().str.extract(_JSON_KEY.pattern, 1).is_in(list(keys)).not_()
        ).list.any()
    )
    frame = (
        decoded.lazy()
        .with_columns(pl.when(has_extra).then(pl.col("line")).otherwise(None).alias("extra"))
        .drop("line")
        .unnest("record")
    )
    return frame, []


def _jsonl_line_problem(lines: pl.DataFrame) -> str:
    """Find the first line that is not a JSON object; only runs when a file has already failed to decode."""
    for number, text in lines.select("line_number", "line").iter_rows():
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {number}: invalid JSON ({error.msg} at column {error.colno})"
        if not isinstance(value, dict):
            return f"line {number}: a JSON {type(value).__name__}, not an object"
        nested = [k for k in CONTRACT_COLUMNS if isinstance(value.get(k), (dict, list))]
        if nested:
            return f"line {number}: field(s) {', '.join(nested)} hold objects or arrays, not values"
    return "unreadable JSONL"


def _find_non_utf8_line(path: Path) -> str | None:
    """The first line that is not UTF-8; only runs once a file has already failed to decode."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return f"line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
