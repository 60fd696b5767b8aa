"""Scoring against ground truth: the scoring function itself, and the engine scored on generated days at volume."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.generator import generate
from batch_assets.generator import truth as truth_module
from batch_assets.storage import Warehouse
from batch_assets.transforms.scoring import read_truth, score
from batch_assets_tests.test_ingest_and_validate import failure_message, run_day

README = Path(__file__).resolve().parents[1] / "README.md"


def truth_rows(*rows: tuple[str, str, str, bool]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["group_id", "ledger_txn_id", "bank_txn_id", "findable"], orient="row")


def match_rows(*rows: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["match_id", "ledger_txn_id", "bank_txn_id"], orient="row")


TRUTH = truth_rows(
    ("P-L1", "L1", "B1", True),
    ("P-L2", "L2", "B2", True),
    ("G-B3", "L3", "B3", True),
    ("G-B3", "L4", "B3", True),
    ("P-L5", "L5", "B5", False),  # e.g. the amounts differ: not findable, so not counted against recall
)


@pytest.mark.unit
def test_a_perfect_engine_scores_one_and_unfindable_truth_does_not_count() -> None:
    result = score(match_rows(("m1", "L1", "B1"), ("m2", "L2", "B2"), ("m3", "L4", "B3"), ("m3", "L3", "B3")), TRUTH)
    assert (result.precision, result.recall) == (1.0, 1.0)
    assert (result.engine_matches, result.correct, result.findable, result.found_findable) == (3, 3, 3, 3)
    assert result.wrong.is_empty() and result.missed.is_empty()


@pytest.mark.unit
def test_a_wrong_pair_costs_precision_and_the_pairs_it_broke_cost_recall() -> None:
    result = score(match_rows(("m1", "L1", "B2"), ("m3", "L3", "B3"), ("m3", "L4", "B3")), TRUTH)
    assert result.precision == pytest.approx(1 / 2)
    assert result.recall == pytest.approx(1 / 3)
    assert result.wrong.select("bank_txn_id", "ledger_txn_ids").rows() == [("B2", ["L1"])]
    assert sorted(result.missed["group_id"]) == ["P-L1", "P-L2"]


@pytest.mark.unit
def test_a_group_counts_only_with_exactly_its_members() -> None:
    partial = score(match_rows(("m3", "L3", "B3")), TRUTH)
    assert partial.correct == 0 and partial.precision == 0.0
    assert "G-B3" in partial.missed["group_id"].to_list()
    extra = score(match_rows(("m3", "L3", "B3"), ("m3", "L4", "B3"), ("m3", "L1", "B3")), TRUTH)
    assert extra.correct == 0


@pytest.mark.unit
def test_matching_an_unfindable_true_pair_is_still_correct() -> None:
    result = score(match_rows(("m5", "L5", "B5")), TRUTH)
    assert result.precision == 1.0 and result.correct == 1
    assert result.recall == 0.0  # the three findable ones were not made


@pytest.mark.unit
def test_no_matches_and_no_truth_score_as_perfect_not_as_division_by_zero() -> None:
    empty = score(match_rows(), truth_rows())
    assert (empty.precision, empty.recall) == (1.0, 1.0)


@pytest.mark.unit
def test_the_readme_names_every_reason_a_true_pair_is_not_findable() -> None:
    reasons = {value for name, value in vars(truth_module).items() if name.startswith("REASON_")}
    assert len(reasons) >= 8
    text = README.read_text()
    section = text[text.index("### What the engine cannot find") :]
    missing = sorted(reason for reason in reasons if reason not in section)
    assert not missing, f"README does not explain: {missing}"


ROWS_PER_DAY = 100_000
START = date(2026, 11, 2)
DAYS = [START + timedelta(days=n) for n in range(4)]


@pytest.mark.slow
def test_engine_on_generated_days_at_volume_is_precise_and_finds_what_the_contract_makes_findable(
    home: Path, landing: Path, instance: dg.DagsterInstance
) -> None:
    truth = home / "truth"
    generate(start=START, days=len(DAYS), rows=ROWS_PER_DAY, fmt="csv", seed=11, landing=landing, truth=truth)
    true_pairs = read_truth(truth, DAYS)
    # The volume is real: hundreds of thousands of true pairs, every pass and several reasons to miss.
    assert true_pairs.filter("findable").height > 0.7 * ROWS_PER_DAY * len(DAYS)
    assert set(true_pairs.filter("findable")["expected_pass"].unique()) == {"exact", "amount_date", "aggregate"}
    assert true_pairs.filter(~pl.col("findable"))["reason"].n_unique() >= 5
    _assert_days_score_perfect_precision_and_full_recall(home, instance, DAYS)


STATEMENT_DAYS = DAYS[:3]


@pytest.mark.slow
@pytest.mark.parametrize("bank_format", ["camt053", "mt940", "bai2"])
def test_engine_on_generated_bank_statements_scores_as_on_csv(
    home: Path, landing: Path, instance: dg.DagsterInstance, bank_format: str
) -> None:
    truth = home / "truth"
    generate(
        start=START,
        days=len(STATEMENT_DAYS),
        rows=30_000,
        fmt="csv",
        seed=17,
        landing=landing,
        truth=truth,
        parts=2,
        bank_format=bank_format,
    )
    assert sorted(path.suffix for path in (landing / "bank").iterdir()) == [
        {"camt053": ".xml", "mt940": ".sta", "bai2": ".bai2"}[bank_format]
    ] * (2 * len(STATEMENT_DAYS))
    _assert_days_score_perfect_precision_and_full_recall(home, instance, STATEMENT_DAYS)


def _assert_days_score_perfect_precision_and_full_recall(
    home: Path, instance: dg.DagsterInstance, days: list[date]
) -> None:
    for day in days:
        result = run_day(instance, day)
        assert result.success, failure_message(result)
    warehouse = Warehouse(home / "warehouse.duckdb")
    matches = warehouse.query(
        "SELECT match_id, ledger_txn_id, bank_txn_id FROM recon.matches WHERE business_date BETWEEN ? AND ?",
        [days[0], days[-1]],
    )
    true_pairs = read_truth(home / "truth", days)
    result = score(matches, true_pairs)
    print(
        f"\nscore: {result.engine_matches} matches, {result.findable} findable, "
        f"precision {result.precision:.4%}, recall {result.recall:.4%}"
    )
    assert result.findable > 0
    assert result.wrong.is_empty(), f"false matches: {result.wrong.head(5)}"
    assert result.precision == 1.0
    assert result.recall >= 0.995, f"recall {result.recall:.4%}; missed: {result.missed.head(5)}"

    # The per-day view the demo prints agrees: each day's matches scored against that day's truth.
    for day in days:
        per_day = score(warehouse.read_partition("recon.matches", day), read_truth(home / "truth", [day]))
        assert per_day.precision == 1.0 and per_day.recall >= 0.995, day


def test_the_demo_prints_reconciliation_and_accuracy_per_day(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BATCH_ASSETS_HOME": str(tmp_path / "data")}
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("batch-assets")), "demo", "--days", "3", "--rows", "2000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "Reconciliation (precision and recall against the ground truth)" in out
    section = out[out.index("Reconciliation (precision") : out.index("Break value per currency")]
    reconciliation = [line for line in section.splitlines() if re.match(r"^│ 2026-11-0[234] ", line)]
    assert len(reconciliation) == 3
    for line in reconciliation:
        cells = [cell.strip() for cell in line.strip("│ ").split("┆")]
        precision, recall = float(cells[-2]), float(cells[-1])
        assert precision == 100.0 and recall >= 99.5, line
    assert (tmp_path / "data" / "dagster_home" / "dagster.yaml").exists()
