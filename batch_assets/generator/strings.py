"""Vectorised column builders: fixed-width text, money and dates made from numpy arrays without per-row Python."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

_ZERO = 48  # ord("0")


@dataclass(frozen=True)
class Counter:
    """The numbers start, start+1, ... written with a fixed number of digits."""

    start: int
    width: int


@dataclass(frozen=True)
class Number:
    """One non-negative number per row, zero-padded to a fixed number of digits."""

    values: np.ndarray
    width: int


@dataclass(frozen=True)
class Choice:
    """One of several equally long byte strings per row, picked by index."""

    options: Sequence[bytes]
    index: np.ndarray


Piece = bytes | Counter | Number | Choice


def digits_needed(largest: int, minimum: int = 1) -> int:
    """How many digits `largest` needs, but at least `minimum`."""
    return max(minimum, len(str(max(int(largest), 0))))


def _counter_digits(start: int, n: int, width: int) -> list[np.ndarray]:
    # Digit k of a run of consecutive numbers changes every 10**k rows, so each digit column is a
    # np.repeat of short runs: pure memory traffic instead of one integer division per row and digit.
    if start + n > 10**width:
        raise ValueError(f"counter {start + n - 1} does not fit in {width} digits")
    columns = []
    for k in range(width - 1, -1, -1):
        step = 10**k
        period = 10 * step
        if period <= n:
            # Short runs: tile one period of the digit pattern, rotated to where `start` begins.
            pattern = np.roll(np.repeat(np.arange(10, dtype=np.uint8) + _ZERO, step), -(start % period))
            columns.append(np.resize(pattern, n))
            continue
        first = start // step
        last = (start + n - 1) // step if n else first
        runs = np.full(last - first + 1, step, dtype=np.int64)
        runs[0] = min(step - start % step, n)
        if len(runs) > 1:
            runs[-1] = (start + n) - last * step
        values = (np.arange(first, last + 1) % 10).astype(np.uint8) + _ZERO
        columns.append(np.repeat(values, runs)[:n])
    return columns


_PAIRS = np.frombuffer(b"".join(f"{i:02d}".encode() for i in range(100)), dtype=np.uint16)


def _gather_rows(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    # Gathering whole rows as one opaque item each is several times faster than a 2-D fancy index.
    width = table.shape[1]
    rows = np.ascontiguousarray(table).view(f"V{width}").ravel()
    return rows[index].view(np.uint8).reshape(len(index), width)


def _number_digits(values: np.ndarray, width: int) -> np.ndarray:
    """The zero-padded decimal digits of each value as an (n, width) ASCII block."""
    values = np.asarray(values, dtype=np.int64)
    n = len(values)
    if n and (values.min() < 0 or values.max() >= 10**width):
        raise ValueError(f"numbers must lie in [0, 10**{width})")
    low = int(values.min()) if n else 0
    span = int(values.max()) - low + 1 if n else 1
    if span <= 4096 and span * 8 <= max(n, 1):
        # Few distinct values (years, dates): format each once, then gather.
        table = np.frombuffer(
            b"".join(f"{v:0{width}d}".encode() for v in range(low, low + span)), dtype=np.uint8
        ).reshape(span, width)
        return _gather_rows(table, values - low)
    # Two digits per division from a 100-entry table of ASCII pairs (as uint16), written row-wise and
    # transposed once: integer division is the slow part, and strided writes are the next slowest.
    even = width + width % 2
    x = values.astype(np.uint32 if even <= 9 else np.uint64)
    hundred = x.dtype.type(100)
    rows = np.empty((even // 2, n), dtype=np.uint16)
    for k in range(even // 2 - 1, -1, -1):
        quotient = x // hundred
        rows[k] = _PAIRS[x - quotient * hundred]
        x = quotient
    block = rows.T.copy().view(np.uint8)
    return block[:, even - width :]


def render_matrix(pieces: Sequence[Piece], n: int) -> np.ndarray:
    """Lay the pieces side by side as an (n, width) uint8 matrix of ASCII bytes."""
    # The literal bytes are broadcast from one template row; the variable pieces are then written
    # as whole (n, k) blocks. Writing column by column into the row-major matrix was 5x slower.
    template = bytearray()
    blocks: list[tuple[int, np.ndarray]] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            template += piece
            continue
        if isinstance(piece, Counter):
            block = np.stack(_counter_digits(piece.start, n, piece.width), axis=1) if piece.width else None
        elif isinstance(piece, Number):
            block = _number_digits(piece.values, piece.width) if piece.width else None
        elif isinstance(piece, Choice):
            widths = {len(option) for option in piece.options}
            if len(widths) != 1:
                raise ValueError("Choice options must all have the same length")
            table = np.frombuffer(b"".join(piece.options), dtype=np.uint8).reshape(len(piece.options), -1)
            block = _gather_rows(table, np.asarray(piece.index))
        else:
            raise TypeError(f"unknown piece {piece!r}")
        if block is not None:
            blocks.append((len(template), block))
            template += b" " * block.shape[1]
    matrix = np.empty((n, len(template)), dtype=np.uint8)
    matrix[:] = np.frombuffer(bytes(template), dtype=np.uint8)
    for column, block in blocks:
        matrix[:, column : column + block.shape[1]] = block
    return matrix


def matrix_to_series(matrix: np.ndarray, name: str = "", lengths: np.ndarray | None = None) -> pl.Series:
    """Turn an ASCII byte matrix into a String Series; `lengths` keeps only a prefix of each row."""
    n, width = matrix.shape
    if lengths is None:
        data = np.ascontiguousarray(matrix).reshape(-1)
        offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64) if n else np.zeros(1, np.int64)
    else:
        lengths = np.asarray(lengths, dtype=np.int64)
        data = matrix[np.arange(width)[None, :] < lengths[:, None]]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pl.Series(name, pl.from_arrow(array), dtype=pl.String)


def render(pieces: Sequence[Piece], n: int, name: str = "") -> pl.Series:
    """Fixed-width strings, one per row, built from literal bytes and zero-padded numbers."""
    return matrix_to_series(render_matrix(pieces, n), name)


def _validity_buffer(valid: np.ndarray | None) -> pa.Buffer | None:
    if valid is None or bool(np.all(valid)):
        return None
    return pa.py_buffer(np.packbits(np.asarray(valid, dtype=bool), bitorder="little"))


def money(cents: np.ndarray, name: str = "amount", valid: np.ndarray | None = None) -> pl.Series:
    """A Decimal(18,2) Series whose unscaled values are the given integer cents: exact, never a float."""
    cents = np.asarray(cents, dtype=np.int64)
    n = len(cents)
    # Arrow's decimal128 is a little-endian 128-bit integer: the cents, then their sign extension.
    words = np.empty(2 * n, dtype=np.int64)
    words[0::2] = cents
    words[1::2] = cents >> 63
    array = pa.Array.from_buffers(pa.decimal128(18, 2), n, [_validity_buffer(valid), pa.py_buffer(words)])
    return pl.Series(name, pl.from_arrow(array), dtype=pl.Decimal(18, 2))


def dates(epoch_days: np.ndarray, name: str, valid: np.ndarray | None = None) -> pl.Series:
    """A Date Series from days since 1970-01-01."""
    series = pl.Series(name, np.asarray(epoch_days, dtype=np.int32)).cast(pl.Date)
    if valid is not None and not bool(np.all(valid)):
        series = series.scatter(np.flatnonzero(~np.asarray(valid, dtype=bool)), None)
    return series


def pick(categories: Sequence[str], index: np.ndarray, name: str) -> pl.Series:
    """Categorical Series of categories[index]; a negative index gives null.

    Categorical keeps repeated values (dates, currencies, account ids, names) as integers until the
    writer prints them, which is far cheaper than materialising millions of equal strings.
    """
    index = np.asarray(index)
    lookup = pl.Series(name, list(categories), dtype=pl.String).cast(pl.Categorical)
    missing = np.flatnonzero(index < 0)
    positions = pl.Series(name, np.maximum(index, 0).astype(np.uint32))
    if len(missing):
        positions = positions.scatter(missing, None)
    return lookup.gather(positions).alias(name)
