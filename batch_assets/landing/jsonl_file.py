"""JSONL deliveries: one flat JSON object per line, numbers kept exactly as written."""

from __future__ import annotations

import json
import re

import polars as pl

from batch_assets.landing.rows import ReadRows
from batch_assets.landing.zone import (
    FileDigest,
    LandingFile,
    RejectedFile,
    find_non_utf8_line,
    find_nul_line,
    first_line,
)
from batch_assets.transforms.contract import CONTRACT_COLUMNS

EXTENSIONS = ("jsonl",)

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


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
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
        return ReadRows(
            pl.LazyFrame(schema={"line_number": pl.Int64, **dict.fromkeys(CONTRACT_COLUMNS, pl.String)}), [], None
        )
    except pl.exceptions.PolarsError as error:
        problem = find_non_utf8_line(file.path) or find_nul_line(file.path)
        raise RejectedFile(file.name, problem or f"unreadable JSONL ({first_line(error)})") from None
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
    return ReadRows(frame.lazy(), [], None)


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
