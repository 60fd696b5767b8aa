"""Resolutions through the daily job: applied in the manual pass before the automatic ones, rejected whole with
their reason file by file, audited, reversed, and identical on every re-run."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.definitions import defs
from batch_assets.landing.resolutions import DECISION_COLUMNS, OPTIONAL_COLUMNS
from batch_assets.partitions import RANGE_END_TAG, RANGE_START_TAG
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_ingest_and_validate import check_results, failure_message, run_day, warehouse

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
RECON = ("recon.matches", "recon.open_items", "recon.resolved_items", "recon.summary", "ops.resolution_log")


def resolution(rid: str, action: str, item: str = "", **values: str) -> dict[str, str]:
    source, _, txn_id = item.partition(" ")
    return {"resolution_id": rid, "action": action, "source": source, "txn_id": txn_id, "resolved_by": "ana",
            "resolved_at": "2026-11-03T09:00:00Z", **values}  # fmt: skip


def deliver_resolutions(landing: Path, day: date, rows: list[dict[str, str]], part: str | None = None) -> None:
    write_landing(landing, "resolutions", day, csv_text(rows, (*DECISION_COLUMNS, *OPTIONAL_COLUMNS)), part)


def deliver_day(landing: Path, day: date, ledger: list[dict], bank: list[dict]) -> None:
    write_landing(landing, "ledger", day, csv_text(ledger))
    write_landing(landing, "bank", day, csv_text(bank))


def table(home: Path, name: str, day: date) -> pl.DataFrame:
    return warehouse(home).read_partition(name, day)


def log_of(home: Path, day: date) -> dict[str, tuple[str, str | None]]:
    log = table(home, "ops.resolution_log", day)
    return {f"{r['resolution_id']}:{r['status']}": r["reason"] for r in log.iter_rows(named=True)}


def assert_ran(result: dg.ExecuteInProcessResult) -> None:
    assert result.success, failure_message(result)
    # The invariants hold; a few hand-made rows miss the match-rate thresholds, which is beside the point.
    checks = check_results(result)
    invariants = ("recon/open_items:items_conserved", "recon/matches:matched_once", "recon/matches:matches_balance")
    assert all(checks[name].passed for name in invariants), {name: checks[name].metadata for name in invariants}


@pytest.fixture
def decided_days(home: Path, landing: Path, instance: dg.DagsterInstance) -> Path:
    """D1 leaves breaks a person can explain; D2 brings their decisions, one good file and one file per
    rejection reason."""
    deliver_day(
        landing,
        D1,
        ledger=[
            txn("L1", "100.00", D1, reference="INV-1"),
            txn("L2", "50.00", D1),  # the bank took a 0.50 fee: B2
            txn("L3", "20.00", D1),  # L3 + L4 are B3 + B4: an N:M group no pass finds
            txn("L4", "30.00", D1),
            txn("L5", "70.00", D1, account="ACC2"),
            txn("L6", "10.00", D1, currency="USD"),
        ],
        bank=[
            txn("B1", "100.00", D1, reference="INV-1"),
            txn("B2", "49.50", D1),
            txn("B3", "25.00", D1),
            txn("B4", "25.00", D1),
            txn("B5", "71.00", D1, account="ACC2"),
            txn("B6", "9.00", D1, currency="USD"),
        ],
    )
    assert_ran(run_day(instance, D1))
    deliver_day(landing, D2, ledger=[txn("L7", "5.00", D2)], bank=[txn("B7", "5.00", D2)])
    deliver_resolutions(
        landing,
        D2,
        [
            resolution("R1", "match", "ledger L2", write_off_amount="0.50", reason_code="BANK_FEE"),
            resolution("R1", "match", "bank B2"),
            *(resolution("R2", "match", item) for item in ("ledger L3", "ledger L4", "bank B3", "bank B4")),
            resolution("R3", "write_off", "bank B5", reason_code="UNRECOVERABLE", comment="bank error"),
        ],
    )
    rejected = {
        "unknown": [resolution("R4", "write_off", "ledger NOPE", reason_code="X")],
        "matched": [resolution("R5", "write_off", "ledger L1", reason_code="X")],
        "mixed": [resolution("R6", "write_off", item, reason_code="X") for item in ("ledger L5", "ledger L6")],
        "unbalanced": [resolution("R7", "match", "ledger L6"), resolution("R7", "match", "bank B6")],
        "nothing": [resolution("R8", "reverse", reverses="R-NONE")],
        "resolved": [resolution("R9", "write_off", "bank B2", reason_code="X")],
    }
    for part, rows in rejected.items():
        deliver_resolutions(landing, D2, rows, part)
    return home


def test_decisions_apply_before_the_passes_and_each_bad_one_is_rejected_with_its_reason(
    decided_days: Path, instance: dg.DagsterInstance
) -> None:
    result = run_day(instance, D2)
    assert_ran(result)
    log = log_of(decided_days, D2)
    assert {k: v for k, v in log.items() if k.endswith(":applied")} == {
        "R1:applied": None, "R2:applied": None, "R3:applied": None
    }  # fmt: skip
    assert "unknown item: ledger NOPE" in log["R4:rejected"]
    assert "ledger L1 is already matched" in log["R5:rejected"]
    assert "mixed accounts or currencies" in log["R6:rejected"]
    assert "amounts do not balance" in log["R7:rejected"]
    assert "reversal of nothing" in log["R8:rejected"]
    assert "bank B2 is already resolved by R1" in log["R9:rejected"]

    matches = table(decided_days, "recon.matches", D2).filter(pl.col("match_pass") == "manual")
    by_resolution = {rid: group for (rid,), group in matches.group_by("resolution_id")}
    assert by_resolution["R1"]["write_off_amount"].to_list() == [Decimal("0.50")]
    assert sorted(by_resolution["R2"]["ledger_txn_id"].to_list()) == ["L3", "L4"]
    assert sorted(by_resolution["R2"]["bank_txn_id"].to_list()) == ["B3", "B4"]
    written_off = table(decided_days, "recon.resolved_items", D2).filter(pl.col("action") == "write_off")
    assert written_off.select("source", "txn_id").rows() == [("bank", "B5")]
    # Resolved items leave the open items; the rejected ones' items stay candidates.
    still_open = set(table(decided_days, "recon.open_items", D2)["txn_id"])
    assert {"L2", "B2", "L3", "L4", "B3", "B4", "B5"}.isdisjoint(still_open)
    assert {"L5", "L6", "B6"} <= still_open
    total = table(decided_days, "recon.summary", D2).filter(pl.col("account_id") == "*").row(0, named=True)
    assert (total["matches_manual"], total["resolved_items"], total["written_off_items"]) == (2, 7, 1)
    eur = table(decided_days, "recon.summary", D2).filter((pl.col("account_id") == "*") & (pl.col("currency") == "EUR"))
    assert eur["written_off_value"].item() == Decimal("71.50")
    # Every resolutions file is in the file log; the run's metadata counts the verdicts.
    files = table(decided_days, "ops.file_log", D2).filter(pl.col("source") == "resolutions")
    assert files.height == 7 and set(files["status"]) == {"ingested"}
    metadata = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert metadata["ops/resolution_log"]["resolutions_rejected"].value == 6
    assert "R4" in metadata["ops/resolution_log"]["rejected"].value
    # The rejections fail the resolution log's check, which raises an alert like a rejected file.
    check = check_results(result)["ops/resolution_log:resolutions_applied"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR


def test_a_reversal_gives_the_items_back_and_re_runs_leave_every_table_identical(
    decided_days: Path, landing: Path, instance: dg.DagsterInstance
) -> None:
    assert_ran(run_day(instance, D2))
    deliver_day(landing, D3, ledger=[txn("L8", "1.00", D3)], bank=[txn("B8", "1.00", D3)])
    deliver_resolutions(landing, D3, [resolution("R10", "reverse", reverses="R2", reason_code="WRONG_GROUP")])
    deliver_resolutions(landing, D3, [resolution("R1", "write_off", "ledger L6", reason_code="X")], "again")
    assert_ran(run_day(instance, D3))

    log = log_of(decided_days, D3)
    assert log["R10:applied"] is None and log["R2:reversed"] == "reversed by R10"
    assert "R1 was applied before" in log["R1:rejected"]
    # Nothing is deleted: D2's log still says R2 was applied.
    assert "R2:applied" in log_of(decided_days, D2)
    open_d3 = table(decided_days, "recon.open_items", D3)
    assert {"L3", "L4", "B3", "B4"} <= set(open_d3.filter("carried")["txn_id"])
    given_back = table(decided_days, "recon.resolved_items", D3)
    assert set(given_back["txn_id"]) == {"L3", "L4", "B3", "B4"} and given_back["revived"].all()

    before = {(name, day): table(decided_days, name, day).sort(pl.all()).rows() for name in RECON for day in (D2, D3)}
    assert_ran(run_day(instance, D3))
    assert_ran(run_day(instance, D2))  # and forward from D2, day by day
    assert_ran(run_day(instance, D3))
    # and as one backfilled run of both days, whose buckets carry the resolutions in force from day to day
    job = defs.resolve_job_def("daily_reconciliation")
    ranged = {RANGE_START_TAG: D2.isoformat(), RANGE_END_TAG: D3.isoformat()}
    assert_ran(job.execute_in_process(instance=instance, tags=ranged, raise_on_error=False))
    for name in RECON:
        for day in (D2, D3):
            assert table(decided_days, name, day).sort(pl.all()).rows() == before[(name, day)], (name, day)
