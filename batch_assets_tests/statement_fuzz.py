"""Mutations of a good statement (cut short, a slice removed, a byte replaced, two records swapped), and the one
thing every mutation must give: the file landed whole, or rejected with a reason and nothing spilled."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st

from batch_assets.landing import RejectedFile
from batch_assets_tests.statement_corpus import land_statement

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None)


def mutations(good: bytes, records: re.Pattern[bytes]) -> st.SearchStrategy[bytes]:
    """`good` cut short, with up to 200 bytes removed, with a byte replaced, or with two of its `records` swapped."""
    spans = [match.span() for match in records.finditer(good)]
    assert len(spans) >= 2, "the good statement needs two records to swap"

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        kind = draw(st.sampled_from(["truncate", "delete", "corrupt", "swap"]))
        if kind == "truncate":
            return good[: draw(st.integers(0, len(good) - 1))]
        start = draw(st.integers(0, len(good) - 1))
        if kind == "delete":
            return good[:start] + good[start + draw(st.integers(1, 200)) :]
        if kind == "corrupt":
            return good[:start] + bytes([draw(st.integers(0, 255))]) + good[start + 1 :]
        first, second = sorted(draw(st.lists(st.integers(0, len(spans) - 1), min_size=2, max_size=2, unique=True)))
        (a0, a1), (b0, b1) = spans[first], spans[second]
        return good[:a0] + good[b0:b1] + good[a1:b0] + good[a0:a1] + good[b1:]

    return mutated()


def assert_landed_whole_or_rejected(content: bytes, good: bytes, extension: str) -> None:
    """The mutation is rejected with a reason and leaves no spill, or lands as a whole statement: the good one's
    amounts, or fewer rows where the file lost lines in a way its balances and totals could not tell."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            rows = land_statement(Path(folder), content, extension)
        except RejectedFile as rejected:
            assert rejected.reason
            assert not (Path(folder) / "spill.parquet").exists()
            return
    with tempfile.TemporaryDirectory() as folder:
        expected = sorted(land_statement(Path(folder), good, extension)["amount"])
    assert sorted(rows["amount"]) == expected or rows.height < len(expected)
