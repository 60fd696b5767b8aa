"""Rendering one source's day: the rows as written (bad values, duplicate copies, parts) and where each row lands."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from batch_assets.generator import plan as p
from batch_assets.generator import vocabulary as vocab
from batch_assets.generator.strings import (
    Choice,
    Counter,
    Number,
    dates,
    matrix_to_series,
    money,
    pick,
    render,
    render_matrix,
)
from batch_assets.transforms import contract

# Fixed, deliberately different and non-alphabetical: the contract says column order is free.
COLUMN_ORDER: dict[str, tuple[str, ...]] = {
    "ledger": (
        "txn_id",
        "booking_date",
        "value_date",
        "account_id",
        "amount",
        "currency",
        "reference",
        "counterparty",
        "description",
    ),
    "bank": (
        "booking_date",
        "value_date",
        "txn_id",
        "account_id",
        "currency",
        "amount",
        "reference",
        "description",
        "counterparty",
    ),
}
EXTENSIONS = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl", "camt053": "xml", "mt940": "sta", "bai2": "bai2"}

_RULE = {name: i for i, name in enumerate(contract.RULES)}
MISSING = _RULE[contract.RULE_MISSING_FIELD]
BAD_AMOUNT = _RULE[contract.RULE_INVALID_AMOUNT]
BAD_DATE = _RULE[contract.RULE_INVALID_DATE]
BAD_CURRENCY = _RULE[contract.RULE_INVALID_CURRENCY]
WRONG_DAY = _RULE[contract.RULE_BOOKING_DATE_MISMATCH]


def missing_field(variant: np.ndarray) -> np.ndarray:
    """Which required column a missing-field row lacks (an index into contract.REQUIRED_COLUMNS)."""
    return np.asarray(variant, dtype=np.int64) % len(contract.REQUIRED_COLUMNS)


@dataclass(frozen=True)
class DayLayout:
    """Where a day's rows go: written order (copies included), parts and line numbers."""

    order: np.ndarray  # the original row (0-based within the day) behind each written row
    copy: np.ndarray  # True where the written row is a duplicate copy
    bounds: np.ndarray  # written-row boundaries of the parts, len(parts) + 1
    file_names: tuple[str, ...]  # relative to the landing root, e.g. "ledger/ledger_2026-11-21_01.csv"
    first_line: int  # line number of the first row in a file: 2 under a CSV header, else 1

    def locate(self, written: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """File index and line number of written rows."""
        written = np.asarray(written, dtype=np.int64)
        part = np.searchsorted(self.bounds, written, side="right") - 1
        return part, written - self.bounds[part] + self.first_line

    def written_position(self, original: np.ndarray) -> np.ndarray:
        """Where each original row (not its copy) was written."""
        kept = np.flatnonzero(~self.copy)
        # Statements put a day's rows in account order, so the originals are not always in row order.
        position = np.empty(len(kept), dtype=np.int64)
        position[self.order[kept]] = kept
        return position[np.asarray(original, dtype=np.int64)]


def file_names(source: str, business_date, parts: int, fmt: str) -> tuple[str, ...]:
    stem = f"{source}/{source}_{business_date.isoformat()}"
    if parts == 1:
        return (f"{stem}.{EXTENSIONS[fmt]}",)
    width = max(2, len(str(parts)))
    return tuple(f"{stem}_{i + 1:0{width}d}.{EXTENSIONS[fmt]}" for i in range(parts))


def layout(plan: p.Plan, side: p.Side, day: int, parts: int) -> DayLayout:
    rows = side.rows(day)
    n = side.count(day)
    originals = np.flatnonzero(side.duplicate[rows])
    after = side.duplicate_after[rows][originals]
    # Each copy goes right after the row at `after` (never before its original, so the original is
    # the first occurrence in (file name, line) order, also across parts).
    sequence = np.lexsort((originals, after))
    order = np.insert(np.arange(n, dtype=np.int64), after[sequence] + 1, originals[sequence])
    copy = np.insert(np.zeros(n, dtype=bool), after[sequence] + 1, True)
    total = len(order)
    sizes = np.full(parts, total // parts, dtype=np.int64)
    sizes[: total % parts] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return DayLayout(
        order=order,
        copy=copy,
        bounds=bounds,
        file_names=file_names(side.source, plan.date(day), parts, plan.format_of(side.source)),
        first_line=2 if plan.format_of(side.source) == "csv" else 1,
    )


def txn_ids(plan: p.Plan, side: p.Side, rows: np.ndarray, name: str = "txn_id") -> pl.Series:
    """The txn_id of global rows: L or B, the business date, then the line's sequence in the day."""
    rows = np.asarray(rows, dtype=np.int64)
    day = side.day[rows]
    if len(rows) and day[0] == day[-1] and rows[-1] - rows[0] == len(rows) - 1 and bool(np.all(np.diff(rows) == 1)):
        # One day's rows in order: the sequence is a counter, which renders without any division.
        prefix = side.prefix + str(int(plan.compact_date(day[:1])[0])).encode()
        return render([prefix, Counter(int(rows[0] - side.starts[day[0]] + 1), plan.txn_width)], len(rows), name)
    return render(
        [side.prefix, Number(plan.compact_date(day), 8), Number(rows - side.starts[day] + 1, plan.txn_width)],
        len(rows),
        name,
    )


def references(
    template: np.ndarray, year: np.ndarray, number: np.ndarray, variant: np.ndarray, width: int, name: str = "reference"
) -> pl.Series:
    """References as printed, e.g. INV-2026-0001234, or re-cased, re-spaced, prefixed or blanked by the bank."""
    template = np.asarray(template)
    variant = np.asarray(variant)
    n = len(template)
    matrix = render_matrix(
        [Choice(p.REF_PREFIXES, np.maximum(template, 0)), b"-", Number(year, 4), b"-", Number(number, width)], n
    )
    # Same-length variants are edited in place in the byte matrix.
    matrix[variant == p.LOWER, 0:3] += 32
    matrix[variant == p.MIXED, 1:3] += 32
    spaced = variant == p.SPACED
    matrix[spaced, 3] = ord(" ")
    matrix[spaced, 8] = ord(" ")
    series = matrix_to_series(matrix, name)
    compact = np.flatnonzero(variant == p.COMPACT)
    if len(compact):
        keep = [c for c in range(matrix.shape[1]) if c not in (3, 8)]
        series = series.scatter(compact, matrix_to_series(matrix[compact][:, keep]))
    prefixed = np.flatnonzero(variant == p.PREFIXED)
    if len(prefixed):
        head = np.frombuffer(b"REF " * len(prefixed), dtype=np.uint8).reshape(len(prefixed), 4)
        series = series.scatter(prefixed, matrix_to_series(np.hstack([head, matrix[prefixed]])))
    for code, text in ((p.NONREF, "NONREF"), (p.NOTPROVIDED, "NOTPROVIDED"), (p.EMPTY, "")):
        where = np.flatnonzero(variant == code)
        if len(where):
            series = series.scatter(where, pl.Series([text]).gather(np.zeros(len(where), np.int64)))
    absent = np.flatnonzero(template < 0)
    if len(absent):
        series = series.scatter(absent, None)
    return series.alias(name)


def side_references(plan: p.Plan, side: p.Side, rows: np.ndarray | slice, name: str = "reference") -> pl.Series:
    return references(
        side.ref_template[rows],
        side.ref_year[rows],
        side.ref_number[rows],
        side.ref_variant[rows],
        plan.ref_width,
        name,
    )


def _counterparties(source: str) -> tuple[str, ...]:
    return vocab.COUNTERPARTIES if source == "ledger" else vocab.BANK_COUNTERPARTIES + vocab.ACQUIRERS


def _descriptions(source: str) -> tuple[str, ...]:
    return vocab.LEDGER_DESCRIPTIONS if source == "ledger" else vocab.BANK_DESCRIPTIONS


def day_frame(plan: p.Plan, side: p.Side, day: int, lay: DayLayout) -> pl.DataFrame:
    """The day's rows exactly as written, in written order (duplicate copies included).

    CSV and JSONL carry every column as text. Parquet is typed: amount Decimal(18,2), dates Date,
    the rest String; a typed file cannot hold an unparsable amount or date, and the plan never asks it to.
    """
    typed = plan.format_of(side.source) == "parquet"
    # Every column is built straight in written order: gathering integer arrays is much cheaper
    # than gathering a finished frame of strings.
    rows = int(side.starts[day]) + lay.order
    n = len(rows)
    currency = plan.account_currency[side.account[rows]]
    value_day = side.value_day[rows]
    first = int(side.starts[day])
    ids = txn_ids(plan, side, np.arange(first, first + side.count(day)))
    columns: dict[str, pl.Series] = {
        # Copies repeat their original's id: render the day's ids in order (a counter), then gather.
        "txn_id": ids if _in_row_order(lay.order) else ids.gather(lay.order),
        "account_id": pick(plan.account_ids, side.account[rows], "account_id"),
        "currency": pick(vocab.CURRENCIES, currency, "currency"),
        "reference": side_references(plan, side, rows),
        "counterparty": pick(_counterparties(side.source), side.counterparty[rows], "counterparty"),
        "description": pick(_descriptions(side.source), side.description[rows], "description"),
    }
    if typed:
        columns["amount"] = money(side.cents[rows])
        columns["booking_date"] = dates(plan.epoch_day(np.full(n, day)), "booking_date")
        columns["value_date"] = dates(plan.epoch_day(value_day), "value_date", valid=value_day >= 0)
    else:
        date_text = plan.date_text
        columns["amount"] = money(side.cents[rows]).cast(pl.String)
        columns["booking_date"] = pick(date_text, np.full(n, day + 1), "booking_date")
        columns["value_date"] = pick(date_text, np.where(value_day < 0, -1, value_day + 1), "value_date")
    _break(plan, side, day, lay, columns, typed)
    frame = pl.DataFrame([columns[name].alias(name) for name in COLUMN_ORDER[side.source]])
    if typed:
        frame = frame.with_columns(pl.col(pl.Categorical).cast(pl.String))
    return frame


def _in_row_order(order: np.ndarray) -> bool:
    return bool(np.array_equal(order, np.arange(len(order))))


def _set(columns: dict[str, pl.Series], name: str, where: np.ndarray, values: pl.Series | None) -> None:
    if not len(where):
        return
    column = columns[name]
    if values is None:
        values = pl.Series([None], dtype=column.dtype).gather(np.zeros(len(where), dtype=np.int64))
    columns[name] = column.scatter(where, values.cast(column.dtype))


def _break(plan: p.Plan, side: p.Side, day: int, lay: DayLayout, columns: dict[str, pl.Series], typed: bool) -> None:
    """Write the plan's bad values into the bad rows, one broken rule per row (copies are of good rows only)."""
    rows = side.rows(day)
    rule = side.invalid_rule[rows]
    variant = side.invalid_variant[rows].astype(np.int64)
    originals = np.flatnonzero(rule >= 0)
    if not len(originals):
        return
    rule, variant = rule[originals], variant[originals]
    bad = lay.written_position(originals)

    def values(options, index) -> pl.Series:
        return pl.Series(list(options), dtype=pl.String).gather(np.asarray(index, dtype=np.int64))

    missing = rule == MISSING
    field = missing_field(variant)
    for i, name in enumerate(contract.REQUIRED_COLUMNS):
        _set(columns, name, bad[missing & (field == i)], None)
    if not typed:
        amount = rule == BAD_AMOUNT
        _set(columns, "amount", bad[amount], values(vocab.BAD_AMOUNTS, variant[amount] % len(vocab.BAD_AMOUNTS)))
        broken_dates = vocab.bad_dates(plan.date(day))
        for parity, name in ((0, "booking_date"), (1, "value_date")):
            date = (rule == BAD_DATE) & (variant % 2 == parity)
            text = values(broken_dates, (variant[date] // 2) % len(broken_dates))
            _set(columns, name, bad[date], text)
    currency = rule == BAD_CURRENCY
    codes = values(vocab.BAD_CURRENCIES, variant[currency] % len(vocab.BAD_CURRENCIES))
    _set(columns, "currency", bad[currency], codes)
    # The wrong day is the day before or after: a real date that is not the business date.
    wrong = rule == WRONG_DAY
    shifted = day + np.where(variant[wrong] % 2 == 0, -1, 1)
    if typed:
        _set(columns, "booking_date", bad[wrong], pl.Series(plan.epoch_day(shifted).astype(np.int32)).cast(pl.Date))
    else:
        _set(columns, "booking_date", bad[wrong], values(plan.date_text, shifted + 1))
