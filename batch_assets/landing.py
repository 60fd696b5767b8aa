"""The landing zone: finding delivered files safely, fingerprinting them, and reading them strictly as text rows."""

from __future__ import annotations

import atexit
import csv
import errno
import hashlib
import io
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from batch_assets.storage import disk_full_error, is_out_of_space
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
    device: int  # st_dev and st_ino as listed: reading checks that the name still holds this very file
    inode: int


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
                name = f"{source}/{printable_name(entry.name)}"
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
                try:
                    listed = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we listed: it is not part of this listing
                files.append(
                    LandingFile(
                        path=Path(entry.path),
                        name=name,
                        source=parsed.source,
                        business_date=parsed.business_date,
                        format=parsed.format,
                        size_bytes=listed.st_size,
                        mtime_ns=listed.st_mtime_ns,
                        device=listed.st_dev,
                        inode=listed.st_ino,
                    )
                )
    files.sort(key=lambda f: f.name)
    ignored.sort(key=lambda f: f.name)
    return files, ignored


def printable_name(name: str) -> str:
    """A file name as it may be reported: control characters, line and paragraph separators, format
    characters and bytes that are not UTF-8 (surrogate escapes) written as escapes, so that a hostile name
    can neither split nor forge a log line. Names that fit the contract are ASCII and come out unchanged."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in name)


def digest_file(file: LandingFile | Path, chunk_size: int = 8 << 20) -> FileDigest:
    """sha256, size and newline count in one streaming pass. A listed file is read only if its name still
    holds the file that was listed (RejectedFile otherwise); a bare path is read as it is."""
    if isinstance(file, LandingFile):
        with _held_open(file) as held:
            return _digest(held.path, chunk_size)
    return _digest(file, chunk_size)


@contextmanager
def _held_open(file: LandingFile) -> Iterator[LandingFile]:
    """The listed file opened once and held open while it is read: `path` becomes /proc/self/fd/N, so every
    reader (Python, DuckDB, Polars) reads the bytes of this open file, whatever the name points at by then."""
    # The scan's checks hold only for what it listed: a name swapped for a symlink or another file is not read.
    try:
        fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO swapped in cannot block
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RejectedFile(file.name, "replaced after it was listed (it is now a symlink)") from None
        # Faults of this one file, which waiting will not cure: they reject it, so the other files are still
        # judged. Anything else (out of file handles, I/O errors) is the machine's and stays an error.
        if error.errno == errno.ENOENT:
            raise RejectedFile(file.name, "removed after it was listed (deliver it again, or leave it out)") from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise RejectedFile(
                file.name, "cannot be opened: permission denied (let the user that runs Dagster read it)"
            ) from None
        raise
    try:
        problem = _not_as_listed(file, os.fstat(fd))
        if problem:
            raise RejectedFile(file.name, f"replaced after it was listed ({problem})")
        yield replace(file, path=Path(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)


def _not_as_listed(file: LandingFile, opened: os.stat_result) -> str | None:
    """Why the opened file is not the one the scan listed, or None when it is."""
    if not stat.S_ISREG(opened.st_mode):
        return "it is no longer a regular file"
    if (opened.st_dev, opened.st_ino) != (file.device, file.inode):
        return "it is now a different file"
    return None


def _digest(path: Path, chunk_size: int) -> FileDigest:
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
    A file is landed whole or not at all: when the rows read differ in number from the records its structure
    holds, the file is rejected rather than landed in part. The file is held open until the rows are written.
    """
    with _held_open(file) as held:
        frame, expected_rows = _read(held, digest)
        _sink_rows(frame, held, spill)
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
            raise RejectedFile(file.name, _find_non_utf8_line(file.path) or "not UTF-8") from None
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
    with _held_open(file) as held:
        return _read(held, digest)[0].collect().lazy()


def _read(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, int | None]:
    """The file's rows, and how many records its structure says it holds when a reader counted them."""
    if digest.size_bytes == 0:
        raise RejectedFile(file.name, "zero-byte file (a day with no transactions is a header-only file)")
    reader = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[file.format]
    frame, extra_columns, expected_rows = reader(file, digest)
    return _to_raw_schema(frame, file, extra_columns), expected_rows


def _unreadable(file: LandingFile, error: BaseException) -> str:
    if file.format == "csv":
        located = _csv_quote_problem(file.path)
        if located:
            return located
    return f"unreadable {file.format} file ({_first_line(error)})"


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


# -- CSV -------------------------------------------------------------------------------------------------


def _read_csv(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str], int]:
    header = _csv_header(file)
    record_count = _check_csv_structure(file, header)
    frame = pl.scan_csv(
        file.path,
        has_header=True,
        schema=dict.fromkeys(header, pl.String),
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
        # Polars reads a blank line as a row of nulls, which is no record, so those rows are dropped by
        # position; a record whose fields are all empty is still a record and stays.
        starts, blank = _csv_record_start_lines(file)
        if len(starts) - sum(blank) != record_count:
            raise RejectedFile(
                file.name, f"{len(starts) - sum(blank)} records by line structure but {record_count} parsed"
            )
        frame = (
            frame.with_columns(pl.Series("line_number", starts, pl.Int64), pl.Series("_blank", blank, pl.Boolean))
            .filter(~pl.col("_blank"))
            .drop("_blank")
        )
    return frame, [name for name in header if name not in CONTRACT_COLUMNS], record_count


def _csv_header(file: LandingFile) -> list[str]:
    with open(file.path, "rb") as handle:
        first = handle.readline(_HEADER_LIMIT)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RejectedFile(
            file.name, f"line 1: not UTF-8 (byte 0x{first[error.start]:02x} at column {error.start + 1})"
        ) from None
    if not text.endswith("\n") and len(first) >= _HEADER_LIMIT:
        raise RejectedFile(file.name, f"line 1: the header is longer than {_HEADER_LIMIT} bytes")
    if "\r" in text.removesuffix("\n").removesuffix("\r"):
        # Lines that end in a bare CR are one line to Polars and many to DuckDB: the readers would disagree.
        raise RejectedFile(file.name, "line 1: a carriage return (CR) inside the line; lines must end in LF or CRLF")
    try:
        header = next(csv.reader(io.StringIO(text, newline="\n")), [])
    except csv.Error as error:
        raise RejectedFile(file.name, f"line 1: unreadable header ({error})") from None
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


_csv_checker: duckdb.DuckDBPyConnection | None = None
_csv_checker_pid = 0
_csv_checker_lock = threading.Lock()


def _csv_checker_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory DuckDB kept for the process: opening a database costs 20 to 60 ms, which a
    day of many small files would pay per file. It holds no tables; each check is one query. A forked child
    opens its own, since a DuckDB instance does not survive a fork."""
    global _csv_checker, _csv_checker_pid
    with _csv_checker_lock:
        if _csv_checker is None or _csv_checker_pid != os.getpid():
            if _csv_checker is None:
                atexit.register(_close_csv_checker)
            _csv_checker, _csv_checker_pid = duckdb.connect(), os.getpid()
        return _csv_checker.cursor()


def _close_csv_checker() -> None:
    """Close and drop the checker before the interpreter tears DuckDB's bindings down, which would otherwise
    report the still-referenced connection as leaked."""
    global _csv_checker
    with _csv_checker_lock:
        if _csv_checker is not None:
            _csv_checker.close()
            _csv_checker = None


def _check_csv_structure(file: LandingFile, header: list[str]) -> int:
    """DuckDB's strict CSV parser finds ragged rows, broken quoting and bad UTF-8, with the line. Returns
    the number of records."""
    try:
        with _csv_checker_cursor() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM read_csv(?, columns = ?, header = true, auto_detect = false, "
                "strict_mode = true, delim = ',', quote = '\"', escape = '\"', encoding = 'utf-8')",
                [str(file.path), dict.fromkeys(header, "VARCHAR")],
            ).fetchone()
    except duckdb.Error as error:
        raise RejectedFile(file.name, _describe_csv_error(str(error), file.path)) from None
    return int(count)


def _describe_csv_error(message: str, path: Path) -> str:
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
    if not line:
        # DuckDB names no line for some broken structures (a bare CR, a stray quote): find it ourselves.
        located = _csv_quote_problem(path)
        if located:
            return located
    first = next((part.strip() for part in message.splitlines() if part.strip()), message)
    return f"{where}{first[:300]}"


def _csv_record_start_lines(file: LandingFile) -> tuple[list[int], list[bool]]:
    """For each row Polars reads after the header: the line it starts on, and whether it is a blank line.
    Lines are counted at LF only, as the file's digest counts them."""
    starts: list[int] = []
    blank: list[bool] = []
    with open(file.path, newline="\n", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            next(reader, None)
            previous_end = reader.line_num
            for row in reader:
                starts.append(previous_end + 1)
                blank.append(not row)
                previous_end = reader.line_num
        except csv.Error as error:
            raise RejectedFile(file.name, f"line {reader.line_num}: {error}") from None
        except UnicodeDecodeError:
            # DuckDB's check lets some bytes that are not UTF-8 through (a lone 0x80, for one).
            raise RejectedFile(file.name, _find_non_utf8_line(file.path) or "not UTF-8") from None
    return starts, blank


def _csv_quote_problem(path: Path) -> str | None:
    """The first line that breaks RFC 4180 in a way the readers name no line for: a quote inside an unquoted
    value, text after a closing quote, a bare CR outside quotes, or a line ending (LF or CRLF) other than the
    first line's, which DuckDB's strict parser refuses. Only runs once a file has already failed to read."""
    in_quotes = False
    line_ending: str | None = None
    with open(path, encoding="utf-8-sig", errors="replace", newline="\n") as handle:
        for number, text in enumerate(handle, start=1):
            if not in_quotes and '"' not in text and "\r" not in text[:-2]:
                pass  # nothing but plain values: only the line ending can be wrong
            else:
                problem, in_quotes = _quoting_problem(text, in_quotes)
                if problem:
                    return f"line {number}: {problem}"
            if text.endswith("\n") and not in_quotes:
                ending = "CRLF" if text.endswith("\r\n") else "LF"
                line_ending = line_ending or ending
                if ending != line_ending:
                    return f"line {number}: ends in {ending} but line 1 ends in {line_ending}; lines must all end alike"
    return None


def _quoting_problem(text: str, in_quotes: bool) -> tuple[str | None, bool]:
    """What breaks the quoting rules on one physical line, and whether a quoted value runs on past it."""
    at_field_start, after_closing_quote, index = not in_quotes, False, 0
    while index < len(text):
        char = text[index]
        if in_quotes:
            if char == '"' and text[index + 1 : index + 2] == '"':
                index += 1
            elif char == '"':
                in_quotes, after_closing_quote = False, True
        elif char == "\r" and text[index + 1 : index + 2] not in ("\n", ""):
            return "a carriage return (CR) outside quotes that does not end the line", in_quotes
        elif char in ",\r\n":
            at_field_start, after_closing_quote = True, False
        elif after_closing_quote:
            return "text after the closing quote of a quoted value", in_quotes
        elif char == '"' and at_field_start:
            in_quotes, at_field_start = True, False
        elif char == '"':
            return "a quote inside an unquoted value (quote the whole value and double the quote)", in_quotes
        else:
            at_field_start = False
        index += 1
    return None, in_quotes


# -- Parquet ---------------------------------------------------------------------------------------------


def _read_parquet(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str], None]:
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
    return frame, extra, None


# -- JSONL -----------------------------------------------------------------------------------------------

_JSON_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')
# A flat object of plain strings, booleans and nulls, without a backslash anywhere: the one shape that
# Polars' JSON decoder reads exactly as written. It reads numbers through a float (1234567890123456.78
# becomes "1234567890123456.8", 1e3 becomes "1000"), takes the first of repeated keys and turns an unpaired
# \ud800 escape into NUL, so every other line is decoded by Python's json, which keeps the number as written.
_FLAT_STRING = r'"[^"\\\x00-\x1f]*"'
_FLAT_MEMBER = rf"\s*{_FLAT_STRING}\s*:\s*(?:{_FLAT_STRING}|true|false|null)\s*"
_FLAT_OBJECT = rf"^\{{(?:{_FLAT_MEMBER}(?:,{_FLAT_MEMBER})*)?\}}$"
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_KINDS = {list: "list", bool: "boolean", type(None): "null"}


def _read_jsonl(file: LandingFile, digest: FileDigest) -> tuple[pl.LazyFrame, list[str], None]:
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
            # Polars drops one UTF-8 byte-order mark at the start, so a BOM is accepted as it is for CSV.
            .with_columns(pl.col("line").str.strip_chars())
            .filter(pl.col("line").is_not_null() & (pl.col("line") != ""))
        )
    except pl.exceptions.NoDataError:
        return pl.LazyFrame(schema={"line_number": pl.Int64, **dict.fromkeys(CONTRACT_COLUMNS, pl.String)}), [], None
    except pl.exceptions.PolarsError as error:
        problem = _find_non_utf8_line(file.path) or _find_nul_line(file.path)
        raise RejectedFile(file.name, problem or f"unreadable JSONL ({_first_line(error)})") from None
    keys = pl.col("line").str.extract_all(_JSON_KEY.pattern).list.eval(pl.element().str.extract(_JSON_KEY.pattern, 1))
    lines = lines.with_columns(
        pl.when(keys.list.eval(pl.element().is_in(list(CONTRACT_COLUMNS)).not_()).list.any())
        .then(pl.col("line"))
        .alias("extra"),
        (pl.col("line").str.contains(_FLAT_OBJECT) & (keys.list.len() == keys.list.n_unique())).alias("_flat"),
    )
    flat = lines.filter("_flat")
    struct = pl.Struct(dict.fromkeys(CONTRACT_COLUMNS, pl.String))
    try:
        decoded = flat.select("line_number", pl.col("line").str.json_decode(struct).alias("record"), "extra").unnest(
            "record"
        )
    except pl.exceptions.PolarsError:
        raise RejectedFile(file.name, _jsonl_line_problem(lines) or "unreadable JSONL") from None
    exact = _decode_exactly(file, lines.filter(~pl.col("_flat")))
    frame = pl.concat([decoded, exact], how="vertical_relaxed").sort("line_number")
    return frame.lazy(), [], None


def _decode_exactly(file: LandingFile, lines: pl.DataFrame) -> pl.DataFrame:
    """Lines that are not plain flat objects, decoded by Python's json with every number kept as written."""
    columns: dict[str, list[str | None]] = {name: [] for name in CONTRACT_COLUMNS}
    for number, text in lines.select("line_number", "line").iter_rows():
        record = _exact_record(number, text)
        if isinstance(record, str):
            raise RejectedFile(file.name, record)
        for name in CONTRACT_COLUMNS:
            columns[name].append(record.get(name))
    return pl.DataFrame(
        {"line_number": lines["line_number"], **columns, "extra": lines["extra"]},
        schema={"line_number": pl.Int64, **dict.fromkeys(CONTRACT_COLUMNS, pl.String), "extra": pl.String},
    )


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))  # type: ignore[func-returns-value]
    return record


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _exact_record(number: int, text: str) -> dict[str, str | None] | str:
    """One line's contract values as text, numbers exactly as written; or why the line is not a record."""
    try:
        value = json.loads(
            text, parse_float=str, parse_int=str, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except _RepeatedKey as error:
        return f"line {number}: key {str(error)!r} appears more than once in an object"
    except json.JSONDecodeError as error:
        return f"line {number}: invalid JSON ({error.msg} at column {error.colno})"
    except ValueError as error:
        return f"line {number}: invalid JSON ({error})"
    except RecursionError:
        return f"line {number}: JSON nested too deeply"
    if not isinstance(value, dict):
        kind = (
            "number" if isinstance(value, str) and not text.startswith('"') else _JSON_KINDS.get(type(value), "string")
        )
        return f"line {number}: a JSON {kind}, not an object"
    nested = [name for name in CONTRACT_COLUMNS if isinstance(value.get(name), (dict, list))]
    if nested:
        return f"line {number}: field(s) {', '.join(nested)} hold objects or arrays, not values"
    record: dict[str, str | None] = {}
    for name in CONTRACT_COLUMNS:
        field = value.get(name)
        if isinstance(field, bool):
            field = "true" if field else "false"
        if isinstance(field, str) and _SURROGATE.search(field):
            return f"line {number}: field {name} holds an unpaired surrogate escape, which is not text"
        record[name] = field  # type: ignore[assignment]
    return record


def _jsonl_line_problem(lines: pl.DataFrame) -> str | None:
    """The first line that is not a JSON object of values; only runs when a file has already failed to decode."""
    for number, text in lines.select("line_number", "line").iter_rows():
        problem = _exact_record(number, text)
        if isinstance(problem, str):
            return problem
    return None


def _find_non_utf8_line(path: Path) -> str | None:
    """The first line that is not UTF-8; only runs once a file has already failed to decode."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return f"line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
    return None


def _find_nul_line(path: Path) -> str | None:
    """The first line with a NUL byte, which no JSON text holds; only runs once a file has failed to read."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:
                column = raw.index(b"\x00") + 1
                return f"line {number}: a NUL byte at column {column}, which JSON text cannot hold"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
