"""CSV deliveries: a header of column names, RFC 4180 quoting, UTF-8; every record's line found."""

from __future__ import annotations

import atexit
import csv
import io
import os
import re
import threading
from pathlib import Path

import duckdb
import polars as pl

from batch_assets.landing.rows import ReadRows
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile, find_non_utf8_line
from batch_assets.transforms.contract import CONTRACT_COLUMNS, REQUIRED_COLUMNS

EXTENSIONS = ("csv",)
_HEADER_LIMIT = 1 << 20


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
    header = csv_header(file)
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
    return ReadRows(frame, [name for name in header if name not in CONTRACT_COLUMNS], record_count)


def csv_header(file: LandingFile) -> list[str]:
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
        located = locate_problem(path)
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
            raise RejectedFile(file.name, find_non_utf8_line(file.path) or "not UTF-8") from None
    return starts, blank


def locate_problem(path: Path) -> str | None:
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
