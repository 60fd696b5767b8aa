"""Scoring matches against the generator's ground truth: precision, recall, and what was missed or wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl


@dataclass(frozen=True)
class Score:
    """How the engine's matches compare with the true pairs and groups."""

    engine_matches: int
    correct: int
    findable: int
    found_findable: int
    wrong: pl.DataFrame  # engine matches that are not a true pair or group
    missed: pl.DataFrame  # findable true pairs or groups the engine did not make

    @property
    def precision(self) -> float:
        return self.correct / self.engine_matches if self.engine_matches else 1.0

    @property
    def recall(self) -> float:
        return self.found_findable / self.findable if self.findable else 1.0


def _groups(frame: pl.DataFrame, group: str) -> pl.DataFrame:
    return frame.group_by(group).agg(
        pl.col("bank_txn_id").first(), pl.col("ledger_txn_id").sort().alias("ledger_txn_ids")
    )


def score(matches: pl.DataFrame, truth_pairs: pl.DataFrame) -> Score:
    """`matches`: recon.matches rows (match_id, ledger_txn_id, bank_txn_id). `truth_pairs`: the generator's
    pairs.parquet rows (group_id, ledger_txn_id, bank_txn_id, findable) for the same business days.

    A match is correct when its bank item and its exact set of ledger items form one true pair or group.
    """
    engine = _groups(matches, "match_id")
    truth = _groups(truth_pairs, "group_id").join(
        truth_pairs.group_by("group_id").agg(pl.col("findable").all()), on="group_id"
    )
    joined = engine.join(truth, on=["bank_txn_id", "ledger_txn_ids"], how="left")
    correct = joined.filter(pl.col("group_id").is_not_null())
    findable = truth.filter("findable")
    missed = findable.join(correct.select("group_id"), on="group_id", how="anti")
    return Score(
        engine_matches=engine.height,
        correct=correct.height,
        findable=findable.height,
        found_findable=findable.height - missed.height,
        wrong=joined.filter(pl.col("group_id").is_null()).drop("group_id", "findable"),
        missed=missed,
    )


def read_truth(truth_dir: Path, days: list) -> pl.DataFrame:
    """The true pairs of the given business days, from `<truth>/<YYYY-MM-DD>/pairs.parquet`."""
    paths = [truth_dir / day.isoformat() / "pairs.parquet" for day in days]
    return pl.concat([pl.read_parquet(p) for p in paths if p.exists()], how="vertical_relaxed")
