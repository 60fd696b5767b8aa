"""A generated week worked to the end: the ground truth's decisions on the breaks no pass can find (fee deductions,
late items, groups), applied as a resolutions file, leave unexplained exactly what nobody could explain."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from batch_assets.generator import generate
from batch_assets.landing.resolutions import DECISION_COLUMNS, OPTIONAL_COLUMNS
from batch_assets.storage import Warehouse
from batch_assets_tests.helpers import csv_text, write_landing
from batch_assets_tests.test_ingest_and_validate import failure_message, run_day

START = date(2026, 11, 2)
DAYS = [START + timedelta(days=n) for n in range(7)]
LAST = DAYS[-1]


def unexplained(wh: Warehouse) -> pl.DataFrame:
    """Every item neither matched nor resolved by the last day: its open items (a young one is no break yet),
    and the standing breaks of earlier days that no resolution revived by then; with its category."""
    return wh.query(
        "SELECT o.source, o.txn_id, e.category, coalesce(e.is_break, false) AS is_break FROM recon.open_items o "
        "LEFT JOIN recon.exceptions e USING (business_date, source, txn_id) WHERE o.business_date = $day "
        "UNION ALL SELECT source, txn_id, category, is_break FROM recon.standing_breaks "
        "WHERE business_date < $day AND (revived_on IS NULL OR revived_on > $day)",
        {"day": LAST},
    )


def decisions(pairs: pl.DataFrame, staged: set[tuple[str, str]]) -> tuple[list[dict[str, str]], set]:
    """A match for every true group that no pass can find and whose items were all staged in the week, the
    difference written off; and the items of every group the week holds whole."""
    rows: list[dict[str, str]] = []
    explainable: set[tuple[str, str]] = set()
    for (group_id,), group in pairs.group_by("group_id", maintain_order=True):
        items = {("ledger", t) for t in group["ledger_txn_id"]} | {("bank", t) for t in group["bank_txn_id"]}
        if not items <= staged:
            continue
        explainable |= items
        if group["findable"].any():
            continue
        ledger = group.unique("ledger_txn_id")["ledger_amount"].sum()
        bank = group.unique("bank_txn_id")["bank_amount"].sum()
        difference = Decimal(ledger) - Decimal(bank)
        for n, (source, txn_id) in enumerate(sorted(items)):
            first = n == 0 and difference != 0
            rows.append(
                {"resolution_id": f"T-{group_id}", "action": "match", "source": source, "txn_id": txn_id,
                 "write_off_amount": str(difference) if first else "", "reason_code": "FEE" if first else "",
                 "comment": group["reason"][0], "resolved_by": "truth", "resolved_at": "2026-11-09T08:00:00Z"}
            )  # fmt: skip
    return rows, explainable


def test_the_truths_decisions_leave_unexplained_exactly_what_nobody_could_explain(
    home: Path, landing: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    truth = tmp_path / "truth"
    generate(start=START, days=len(DAYS), rows=2_000, fmt="csv", seed=5, landing=landing, truth=truth)
    for day in DAYS:
        result = run_day(instance, day)
        assert result.success, failure_message(result)
    wh = Warehouse(home / "warehouse.duckdb")
    staged = {
        (source, txn_id)
        for source in ("ledger", "bank")
        for txn_id in wh.query(f"SELECT txn_id FROM staging.{source}")["txn_id"]  # noqa: S608 (a fixed name)
    }
    pairs = pl.concat([pl.read_parquet(truth / day.isoformat() / "pairs.parquet") for day in DAYS]).unique(
        ["group_id", "ledger_txn_id", "bank_txn_id"], maintain_order=True
    )
    rows, explainable = decisions(pairs, staged)
    before = unexplained(wh)
    assert rows, "the week has breaks that only a person can explain"

    write_landing(landing, "resolutions", LAST, csv_text(rows, (*DECISION_COLUMNS, *OPTIONAL_COLUMNS)))
    result = run_day(instance, LAST)
    assert result.success, failure_message(result)

    log = wh.read_partition("ops.resolution_log", LAST)
    assert log.filter(pl.col("status") != "applied").is_empty(), log.filter(pl.col("status") != "applied").rows()
    assert log.height == len({row["resolution_id"] for row in rows})
    after = unexplained(wh)
    assert set(after.select("source", "txn_id").iter_rows()) == staged - explainable
    # Figures for the note: breaks per category before and after (pytest -s shows them).
    count = lambda frame: dict(sorted(Counter(frame.filter("is_break")["category"]).items()))  # noqa: E731
    print(f"\nresolutions applied: {log.height}; breaks before: {count(before)}; after: {count(after)}")
