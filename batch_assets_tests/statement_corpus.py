"""The public statement samples beside the project (../shared/statements): where they are, and what landing one
as a day's bank file gives, in figures a test can state."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from batch_assets.landing import RejectedFile, digest_file, land_file, scan_landing
from batch_assets.transforms.validate import PRIOR_TXN_SCHEMA, judge_rows

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "statements"
DAY = date(2026, 11, 21)


def corpus_files(folder: str, *patterns: str) -> list[Path]:
    """The samples of one format under the corpus, or a skip with the reason where the corpus is absent."""
    root = CORPUS / folder
    if not root.is_dir():
        pytest.skip(f"the public statement samples are not beside the project ({root} is missing)")
    return sorted(path for pattern in patterns for path in root.rglob(pattern) if path.is_file())


@dataclass(frozen=True)
class Landed:
    """A sample landed as the day's bank file: its rows, or the reason it was rejected."""

    rows: pl.DataFrame | None
    rejected: str | None

    def judged(self, day: date) -> tuple[int, dict[str, int]]:
        """Validate's verdict with the rows delivered on `day`, as the first day: rows staged, and rows
        quarantined per rule."""
        rows = self.rows.with_columns(business_date=pl.lit(day))
        judged = judge_rows(rows.lazy(), day, pl.LazyFrame(schema=PRIOR_TXN_SCHEMA)).collect()
        rules = judged.filter(pl.col("rule").is_not_null())["rule"].value_counts()
        return judged.filter(pl.col("rule").is_null()).height, dict(rules.iter_rows())

    def sums(self) -> dict[tuple[str, str], Decimal]:
        """Per currency and sign (`+` credits, `-` debits), the sum of the amounts as delivered."""
        totals: dict[tuple[str, str], Decimal] = {}
        for currency, amount in self.rows.select("currency", "amount").iter_rows():
            value = Decimal(amount)
            key = (currency, "-" if value < 0 else "+")
            totals[key] = totals.get(key, Decimal(0)) + value
        return totals


def land_sample(path: Path, tmp_path: Path, extension: str) -> Landed:
    """Deliver the sample as `bank/bank_<DAY>.<extension>` and land it."""
    landing = tmp_path / "landing"
    target = landing / "bank" / f"bank_{DAY.isoformat()}.{extension}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    (file,), _ = scan_landing(landing, DAY)
    spill = tmp_path / "spill.parquet"
    try:
        land_file(file, digest_file(file.path), spill)
    except RejectedFile as error:
        assert not spill.exists(), "a rejected file left rows behind"
        return Landed(None, error.reason)
    return Landed(pl.read_parquet(spill), None)


def land_statement(tmp_path: Path, content: bytes, extension: str, day: date = DAY) -> pl.DataFrame:
    """Deliver `content` as the day's bank file `bank/bank_<day>.<extension>` and land it: its raw rows, as text.
    Raises RejectedFile as ingest would."""
    landing = tmp_path / "landing"
    target = landing / "bank" / f"bank_{day.isoformat()}.{extension}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    (file,), ignored = scan_landing(landing, day)
    assert not ignored
    spill = tmp_path / "spill.parquet"
    rows = land_file(file, digest_file(file.path), spill)
    frame = pl.read_parquet(spill)
    assert frame.height == rows
    return frame
