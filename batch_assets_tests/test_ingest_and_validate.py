"""Ingest and validate through Dagster, against a real DuckDB file and a real instance: deliveries, rejections,
re-runs, duplicates, superseding files, zero-row days and the checks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.storage import Warehouse
from batch_assets_tests.helpers import csv_text, txn, write_landing

DAY = date(2026, 11, 10)
NEXT = date(2026, 11, 11)
HEADER = csv_text([])
TABLES = [
    "raw.ledger",
    "raw.bank",
    "raw.resolutions",
    "staging.ledger",
    "staging.bank",
    "staging.quarantine",
    "ops.file_log",
    "recon.matches",
    "recon.open_items",
    "recon.exceptions",
    "recon.summary",
    "recon.resolved_items",
    "ops.resolution_log",
]
ALL_ASSETS = {t.replace(".", "/") for t in TABLES}
INVARIANT_CHECKS = {
    "staging/ledger:rows_conserved",
    "staging/bank:rows_conserved",
    "staging/ledger:txn_id_unique",
    "staging/bank:txn_id_unique",
    "recon/open_items:items_conserved",
    "recon/matches:matched_once",
    "recon/matches:matches_balance",
}


def run_day(instance: dg.DagsterInstance, day: date = DAY) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("daily_reconciliation")
    return job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False)


def warehouse(home: Path) -> Warehouse:
    return Warehouse(home / "warehouse.duckdb")


def snapshot(home: Path, day: date = DAY) -> dict[str, list[tuple]]:
    wh = warehouse(home)
    return {table: wh.read_partition(table, day).rows() for table in TABLES}


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        f"{e.event_specific_data.asset_key.to_user_string()}:{e.event_specific_data.check_name}": e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        e.event_specific_data.error.message
        + (e.event_specific_data.user_failure_data.description or "" if e.event_specific_data.user_failure_data else "")
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    )


def deliver_good_day(landing: Path, day: date = DAY) -> None:
    """Two ledger rows and one bank row; txn ids are unique per day (L1, L2, B1 on DAY)."""
    tag = "" if day == DAY else f"-{day.day}"
    write_landing(
        landing,
        "ledger",
        day,
        csv_text([txn(f"L1{tag}", "10.00", day, reference="INV-1"), txn(f"L2{tag}", "-2.50", day)]),
    )
    write_landing(landing, "bank", day, csv_text([txn(f"B1{tag}", "10.00", day, reference="inv 1")]))


def test_a_good_day_lands_stages_and_passes_every_check(
    landing: Path, home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.QUARANTINE_RATE_WARN, "0.5")
    monkeypatch.setenv(settings.QUARANTINE_RATE_ERROR, "0.5")
    deliver_good_day(landing)
    write_landing(landing, "ledger", DAY, csv_text([txn("L3", "1.234", DAY)]), part="02")
    result = run_day(instance)
    assert result.success
    assert materialized(result) == ALL_ASSETS
    checks = check_results(result)
    assert len(checks) == 12
    assert all(checks[name].passed for name in INVARIANT_CHECKS | {"staging/quarantine:quarantine_rate"})
    assert checks["staging/ledger:rows_conserved"].metadata["raw_rows"].value == 3

    wh = warehouse(home)
    assert [str(a) for a in wh.read_partition("staging.ledger", DAY)["amount"]] == ["10.00", "-2.50"]
    assert wh.read_partition("staging.quarantine", DAY, ["file_name", "line_number", "rule"]).rows() == [
        ("ledger/ledger_2026-11-10_02.csv", 2, "invalid_amount")
    ]
    log = wh.read_partition("ops.file_log", DAY, ["file_name", "status", "row_count"]).rows()
    assert log == [
        ("bank/bank_2026-11-10.csv", "ingested", 1),
        ("ledger/ledger_2026-11-10.csv", "ingested", 2),
        ("ledger/ledger_2026-11-10_02.csv", "ingested", 1),
    ]
    raw_ledger = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "raw/ledger"
    )
    metadata = raw_ledger.materialization.metadata
    assert metadata["rows"].value == 3 and metadata["files"].value == 2
    assert metadata["amount_total"].value == "7.50" and metadata["amount_total_cents"].value == 750
    assert {"duration_s", "rows_per_s", "input_files", "fingerprint"} <= metadata.keys()
    staged = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "staging/ledger"
    )
    assert staged.materialization.metadata["quarantined"].value == 1


def test_rerunning_a_day_gives_identical_tables(landing: Path, home: Path, instance: dg.DagsterInstance) -> None:
    deliver_good_day(landing)
    assert run_day(instance).success
    first = snapshot(home)
    fingerprints = {t: warehouse(home).last_commit(t, DAY).fingerprint for t in TABLES}
    assert run_day(instance).success
    assert snapshot(home) == first
    assert {t: warehouse(home).last_commit(t, DAY).fingerprint for t in TABLES} == fingerprints


def test_the_same_bytes_under_another_name_are_ingested_once(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing)
    copy = (landing / "ledger" / "ledger_2026-11-10.csv").read_bytes()
    write_landing(landing, "ledger", DAY, copy, part="resent")
    assert run_day(instance).success
    wh = warehouse(home)
    assert wh.read_partition("raw.ledger", DAY).height == 2
    log = dict(wh.read_partition("ops.file_log", DAY, ["file_name", "status"]).rows())
    assert log["ledger/ledger_2026-11-10_resent.csv"] == "duplicate"
    assert (
        "same bytes as ledger/ledger_2026-11-10.csv"
        in wh.read_partition("ops.file_log", DAY).filter(file_name="ledger/ledger_2026-11-10_resent.csv")["reason"][0]
    )


def test_the_same_bytes_on_another_day_are_ingested_once(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing)
    assert run_day(instance).success
    deliver_good_day(landing, NEXT)
    write_landing(landing, "bank", NEXT, (landing / "bank" / "bank_2026-11-10.csv").read_bytes(), part="02")
    assert run_day(instance, NEXT).success
    log = warehouse(home).read_partition("ops.file_log", NEXT)
    assert log.filter(file_name="bank/bank_2026-11-11_02.csv")["status"][0] == "duplicate"
    assert "already ingested" in log.filter(file_name="bank/bank_2026-11-11_02.csv")["reason"][0]


def test_new_bytes_under_the_same_name_replace_the_file(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing)
    assert run_day(instance).success
    write_landing(landing, "ledger", DAY, csv_text([txn("L9", "99.00", DAY)]))
    assert run_day(instance).success
    wh = warehouse(home)
    assert wh.read_partition("staging.ledger", DAY)["txn_id"].to_list() == ["L9"]
    log = wh.read_partition("ops.file_log", DAY).filter(file_name="ledger/ledger_2026-11-10.csv")
    assert sorted(log["status"]) == ["ingested", "superseded"]
    assert "replaced by new bytes (was ingested)" in log.filter(status="superseded")["reason"][0]


def test_a_rejected_file_fails_its_source_and_keeps_the_old_data(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing)
    assert run_day(instance).success
    before = snapshot(home)
    write_landing(landing, "ledger", DAY, HEADER + "L7,ACC1,2026-11-10,,1.00\n")
    write_landing(landing, "bank", DAY, csv_text([txn("B1", "10.00", DAY), txn("B2", "5.00", DAY)]))

    result = run_day(instance)
    assert not result.success
    message = failure_message(result)
    assert "ledger/ledger_2026-11-10.csv rejected: line 2: expected 9 fields, found 5" in message
    assert materialized(result) == {"raw/bank", "raw/resolutions", "ops/file_log"}
    after = snapshot(home)
    assert after["raw.ledger"] == before["raw.ledger"]
    assert after["staging.ledger"] == before["staging.ledger"]
    assert len(after["raw.bank"]) == 2
    log = warehouse(home).read_partition("ops.file_log", DAY).filter(file_name="ledger/ledger_2026-11-10.csv")
    assert sorted(log["status"]) == ["ingested", "rejected"]

    write_landing(landing, "ledger", DAY, csv_text([txn("L7", "1.00", DAY)]))
    assert run_day(instance).success
    log = warehouse(home).read_partition("ops.file_log", DAY).filter(file_name="ledger/ledger_2026-11-10.csv")
    assert sorted(log["status"]) == ["ingested", "superseded", "superseded"]
    assert warehouse(home).read_partition("staging.ledger", DAY)["txn_id"].to_list() == ["L7"]


def test_a_source_with_no_file_fails_with_a_clear_reason(landing: Path, instance: dg.DagsterInstance) -> None:
    write_landing(landing, "ledger", DAY, HEADER)
    result = run_day(instance)
    assert not result.success
    assert "bank: no bank file for 2026-11-10 has landed in" in failure_message(result)
    assert materialized(result) == {"raw/ledger", "raw/resolutions", "ops/file_log"}


def test_header_only_files_mean_a_day_with_zero_transactions(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing)
    assert run_day(instance).success
    write_landing(landing, "ledger", DAY, HEADER)
    write_landing(landing, "bank", DAY, HEADER)
    result = run_day(instance)
    assert result.success
    checks = check_results(result)
    assert all(checks[name].passed for name in INVARIANT_CHECKS)
    assert checks["recon/summary:match_rate"].passed
    assert snapshot(home)["staging.ledger"] == [] and snapshot(home)["raw.bank"] == []


def test_a_txn_id_staged_on_an_earlier_day_is_quarantined(
    landing: Path, home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.QUARANTINE_RATE_WARN, "0.5")
    monkeypatch.setenv(settings.QUARANTINE_RATE_ERROR, "0.5")
    deliver_good_day(landing)
    assert run_day(instance).success
    write_landing(landing, "ledger", NEXT, csv_text([txn("L1", "10.00", NEXT), txn("L5", "1.00", NEXT)]))
    write_landing(landing, "bank", NEXT, HEADER)
    result = run_day(instance, NEXT)
    assert result.success
    quarantine = warehouse(home).read_partition("staging.quarantine", NEXT)
    assert quarantine.select("txn_id", "rule").rows() == [("L1", "duplicate_txn_id")]
    assert "already staged on 2026-11-10" in quarantine["detail"][0]
    assert check_results(result)["staging/ledger:txn_id_unique"].passed


@pytest.mark.parametrize(
    ("warn", "error", "passed", "severity"),
    [
        ("0.6", "0.9", True, None),
        ("0.2", "0.9", False, dg.AssetCheckSeverity.WARN),
        ("0.1", "0.2", False, dg.AssetCheckSeverity.ERROR),
    ],
)
def test_quarantine_rate_thresholds_come_from_the_environment(
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    warn: str,
    error: str,
    passed: bool,
    severity,
) -> None:
    monkeypatch.setenv(settings.QUARANTINE_RATE_WARN, warn)
    monkeypatch.setenv(settings.QUARANTINE_RATE_ERROR, error)
    write_landing(landing, "ledger", DAY, csv_text([txn("L1", "1.00", DAY), txn("L2", "x", DAY)]))
    write_landing(landing, "bank", DAY, csv_text([txn("B1", "1.00", DAY)]))
    result = run_day(instance)
    check = check_results(result)["staging/quarantine:quarantine_rate"]
    assert check.passed is passed
    assert check.metadata["rate_ledger"].value == 0.5
    if not passed:
        assert check.severity == severity
    assert result.success is (severity != dg.AssetCheckSeverity.ERROR)
