"""Reconciling several days through Dagster: lagging bank postings matched the next day, the open-item chain,
and re-running a changed middle day forward gives what a clean run over the corrected files gives."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import DATA_VERSION_TAG, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from batch_assets.definitions import defs
from batch_assets.storage import Warehouse
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_ingest_and_validate import (
    check_results,
    failure_message,
    run_day,
)

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
RECON = ["recon.matches", "recon.open_items", "recon.exceptions", "recon.summary"]


def deliver(landing: Path, day: date, ledger: list[dict], bank: list[dict]) -> None:
    write_landing(landing, "ledger", day, csv_text(ledger))
    write_landing(landing, "bank", day, csv_text(bank))


def week(landing: Path) -> None:
    """Three days; a bank posting lags a day, one never comes, one arrives with another amount."""
    deliver(
        landing,
        D1,
        [txn("L1", "100.00", D1, reference="INV-1"), txn("L2", "20.00", D1), txn("L3", "7.00", D1, reference="INV-3")],
        [txn("B1", "100.00", D1, reference="inv 1")],
    )
    deliver(
        landing,
        D2,
        [txn("L4", "5.00", D2, reference="INV-4")],
        [
            txn("B2", "20.00", D2, reference="NONREF"),
            txn("B4", "5.00", D2, reference="INV-4"),
            txn("B3", "7.50", D2, reference="INV-3"),
        ],
    )
    deliver(landing, D3, [txn("L5", "1.00", D3)], [txn("B5", "1.00", D3)])


def table(wh: Warehouse, name: str, day: date, columns: list[str]) -> list[tuple]:
    return wh.read_partition(name, day, columns).rows()


def test_a_lagging_bank_posting_is_matched_the_next_day(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    week(landing)
    for day in (D1, D2, D3):
        result = run_day(instance, day)
        assert result.success, failure_message(result)
        checks = check_results(result)
        assert all(
            checks[f"{a}:{c}"].passed
            for a, c in [
                ("recon/open_items", "items_conserved"),
                ("recon/matches", "matched_once"),
                ("recon/matches", "matches_balance"),
            ]
        )
    wh = Warehouse(home / "warehouse.duckdb")
    assert table(wh, "recon.matches", D1, ["match_pass", "ledger_txn_id", "bank_txn_id"]) == [("exact", "L1", "B1")]
    assert table(wh, "recon.open_items", D1, ["source", "txn_id", "age_days", "carried"]) == [
        ("ledger", "L2", 0, True),
        ("ledger", "L3", 0, True),
    ]
    assert sorted(table(wh, "recon.matches", D2, ["match_pass", "ledger_txn_id", "bank_txn_id"])) == [
        ("amount_date", "L2", "B2"),
        ("exact", "L4", "B4"),
    ]
    assert table(wh, "recon.exceptions", D2, ["txn_id", "category", "difference", "counterpart_txn_id"]) == [
        ("B3", "amount_mismatch", pytest.approx(0.5), "L3"),
        ("L3", "amount_mismatch", pytest.approx(0.5), "B3"),
    ]
    summary = wh.query(
        "SELECT * FROM recon.summary WHERE business_date = ? AND account_id = '*' AND currency = '*'", [D2]
    ).row(0, named=True)
    assert (
        summary["ledger_items"],
        summary["bank_items"],
        summary["matched_ledger"],
        summary["amount_mismatches"],
    ) == (3, 3, 2, 1)
    assert summary["match_rate"] == pytest.approx(4 / 6)


def test_a_gap_in_the_chain_fails_with_what_to_run(landing: Path, instance: dg.DagsterInstance) -> None:
    week(landing)
    assert run_day(instance, D1).success
    result = run_day(instance, D3)
    assert not result.success
    assert f"reconcile {D2} first" in failure_message(result)


def test_rerunning_a_changed_middle_day_forward_equals_a_clean_run(
    landing: Path, home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    week(landing)
    for day in (D1, D2, D3):
        assert run_day(instance, day).success
    # The bank re-delivers day 2: the lagging 20.00 is gone and the mismatch is corrected.
    deliver(
        landing,
        D2,
        [txn("L4", "5.00", D2, reference="INV-4")],
        [txn("B4", "5.00", D2, reference="INV-4"), txn("B3", "7.00", D2, reference="INV-3")],
    )
    for day in (D2, D3):
        assert run_day(instance, day).success
    wh = Warehouse(home / "warehouse.duckdb")
    rerun = {(t, d): wh.read_partition(t, d).rows() for t in RECON for d in (D1, D2, D3)}
    assert table(wh, "recon.open_items", D3, ["source", "txn_id", "age_days", "carried"]) == [("ledger", "L2", 2, True)]

    clean_home = tmp_path / "clean"
    shutil.copytree(landing, clean_home / "landing")
    clean = Warehouse(clean_home / "warehouse.duckdb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCH_ASSETS_WAREHOUSE", str(clean.path))
        patch.setenv("BATCH_ASSETS_LANDING", str(clean_home / "landing"))
        for day in (D1, D2, D3):
            assert run_day(instance, day).success
    assert {(t, d): clean.read_partition(t, d).rows() for t in RECON for d in (D1, D2, D3)} == rerun
    assert table(wh, "recon.matches", D2, ["ledger_txn_id", "bank_txn_id"]) == [("L3", "B3"), ("L4", "B4")]


def test_a_rerun_changes_data_versions_only_when_the_data_changes(landing: Path, instance: dg.DagsterInstance) -> None:
    week(landing)
    for day in (D1, D2):
        assert run_day(instance, day).success

    def version(key: str, day: date) -> str:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key.split("/")), asset_partitions=[day.isoformat()]), limit=1
        ).records
        return records[0].asset_materialization.tags[DATA_VERSION_TAG]

    def status(key: str, day: date) -> StaleStatus:
        # The resolver the Dagster UI uses for its "stale" badges.
        return get_stale_status_resolver(instance, list(defs.assets)).get_status(
            dg.AssetKey(key.split("/")), day.isoformat()
        )

    before = version("recon/open_items", D1)
    assert run_day(instance, D1).success  # same files: same data versions, nothing downstream goes stale
    assert version("recon/open_items", D1) == before
    assert status("recon/summary", D1) == StaleStatus.FRESH
    deliver(landing, D1, [txn("L1", "100.00", D1, reference="INV-1")], [txn("B1", "100.00", D1, reference="inv 1")])
    assert run_day(instance, D1).success
    # Day 2 read day 1's old open items. Dagster leaves dependencies on the previous partition of the same
    # asset out of its stale badges, so the changed data version is what says day 2 must be re-run.
    assert version("recon/open_items", D1) != before
