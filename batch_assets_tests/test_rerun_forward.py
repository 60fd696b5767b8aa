"""Re-running from an earlier day forward recovers: a corrected earlier day keeps what a later day had taken
first (a txn_id, a match), the later day gives it up when it is re-run, and the end state equals a clean run of
the final files, whether the re-run is started in process, by `batch-assets run` or by the landing sensor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.storage import Warehouse
from batch_assets_tests.faults import tables
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_automation import age
from batch_assets_tests.test_automation import tick as sensor_tick
from batch_assets_tests.test_ingest_and_validate import check_results, failure_message, run_day

DM1, D0, D1, D2 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
HEADER = csv_text([])
REPO_ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def deliver(landing: Path, day: date, ledger: list[dict] | str, bank: list[dict] | str) -> None:
    for source, rows in (("ledger", ledger), ("bank", bank)):
        age(write_landing(landing, source, day, rows if isinstance(rows, str) else csv_text(rows)))


# -- a txn_id that a later day staged first ---------------------------------------------------------------


def first_round(landing: Path) -> None:
    """D0's ledger file is unreadable; D1 and D2 reconcile, and D2 stages SHARED."""
    deliver(landing, D0, "txn_id,account_id\nL0,ACC1\n", [txn("B0", "5.00", D0, reference="R0")])
    deliver(landing, D1, [txn("L1", "7.00", D1, reference="R1")], [txn("B1", "7.00", D1, reference="R1")])
    deliver(
        landing,
        D2,
        # Enough rows that one duplicate keeps the quarantine rate under its ERROR limit (5%).
        [txn("SHARED", "9.00", D2, reference="R2"), *[txn(f"L2-{n}", "3.00", D2) for n in range(40)]],
        [txn("B2", "9.00", D2, reference="R2")],
    )


def correct_d0(landing: Path) -> None:
    """D0's corrected ledger arrives after D2 was reconciled, and holds SHARED too."""
    rows = [txn("L0", "5.00", D0, reference="R0"), txn("SHARED", "9.00", D0, reference="R2")]
    age(write_landing(landing, "ledger", D0, csv_text(rows)))


def run_requests(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> list[dg.ExecuteInProcessResult]:
    """Execute the sensor's requests in order, as the serialised queue starts them."""
    job = defs.resolve_job_def("daily_reconciliation")
    return [
        job.execute_in_process(partition_key=r.partition_key, instance=instance, tags=r.tags, raise_on_error=False)
        for r in requests
    ]


def in_process(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[bool], str | None]:
    return [run_day(instance, day).success for day in (D0, D1, D2)], cursor


def from_the_command_line(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[bool], str | None]:
    command = [str(Path(sys.executable).with_name("batch-assets")), "run", "--start", str(D0), "--days", "3"]
    done = subprocess.run(command, cwd=REPO_ROOT, env=os.environ, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return [f"{day}  run" in done.stdout for day in (D0, D1, D2)], cursor


def from_the_sensor(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[bool], str | None]:
    requests, cursor, skip = sensor_tick(instance, cursor)
    # The changed day, then the reconciled days after it, in order.
    assert [r.partition_key for r in requests] == [str(D0), str(D1), str(D2)], skip
    return [result.success for result in run_requests(instance, requests)], cursor


@pytest.mark.parametrize("rerun", [in_process, from_the_command_line, from_the_sensor], ids=["job", "cli", "sensor"])
def test_a_corrected_earlier_day_keeps_a_txn_id_a_later_day_staged_first_and_the_re_run_forward_succeeds(
    landing: Path, home: Path, instance: dg.DagsterInstance, rerun: Callable, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first_round(landing)
    cursor = None
    if rerun is from_the_sensor:
        requests, cursor, _ = sensor_tick(instance)
        outcomes = run_requests(instance, requests)
    else:
        outcomes = [run_day(instance, day) for day in (D0, D1, D2)]
    assert [o.success for o in outcomes] == [False, True, True], failure_message(outcomes[0])
    assert staged_days(home, "SHARED") == [D2]

    correct_d0(landing)
    succeeded, _ = rerun(instance, cursor)
    assert succeeded == [True, True, True]

    assert staged_days(home, "SHARED") == [D0]  # the first occurrence in business-date order wins
    assert every_txn_id_is_staged_once(home)
    quarantined = Warehouse(home / "warehouse.duckdb").read_partition("staging.quarantine", D2)
    assert quarantined.select("txn_id", "rule").rows() == [("SHARED", "duplicate_txn_id")]
    assert f"already staged on {D0}" in quarantined["detail"][0]
    assert recovered_equals_clean(
        home, tmp_path_factory, final_files=lambda clean: (first_round(clean), correct_d0(clean))
    )


def test_re_running_the_corrected_day_alone_passes_its_checks_while_the_later_day_still_holds_the_copy(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    first_round(landing)
    for day in (D0, D1, D2):
        run_day(instance, day)
    correct_d0(landing)
    result = run_day(instance, D0)
    assert result.success, failure_message(result)
    check = check_results(result)["staging/ledger:txn_id_unique"]
    assert check.passed and check.metadata["also_staged_on_earlier_days"].value == 0
    assert staged_days(home, "SHARED") == [D0, D2]  # until D2 is re-run: D1 and D2 are stale, not broken


# -- an open item that a later day matched first ----------------------------------------------------------


def carried_item(landing: Path) -> None:
    """X is booked on D-1 and carried; its bank line B-X lands on D1 and matches it there."""
    deliver(landing, DM1, [txn("X", "20.00", DM1, reference="RX")], HEADER)
    deliver(landing, D0, HEADER, HEADER)
    # D1's other lines match among themselves; there are enough that one duplicate stays under the quarantine
    # rate's ERROR limit (5%) once D1 is re-run.
    ledger = [txn(f"L1-{n}", "1.00", D1, reference=f"R1-{n}") for n in range(40)]
    bank = [txn(f"B1-{n}", "1.00", D1, reference=f"R1-{n}") for n in range(40)]
    deliver(landing, D1, ledger, [txn("B-X", "20.00", D1, reference="RX"), *bank])


def correct_d0_bank(landing: Path) -> None:
    """The bank re-sends D0's statement: B-X was in fact posted on D0 (D1's file still repeats it)."""
    age(write_landing(landing, "bank", D0, csv_text([txn("B-X", "20.00", D0, reference="RX")])))


def test_an_open_item_a_later_day_matched_is_matched_on_the_corrected_earlier_day_and_the_re_run_forward_succeeds(
    landing: Path, home: Path, instance: dg.DagsterInstance, tmp_path_factory: pytest.TempPathFactory
) -> None:
    carried_item(landing)
    assert all(run_day(instance, day).success for day in (DM1, D0, D1))
    assert matched_on(home, "X") == [D1]

    correct_d0_bank(landing)
    results = [run_day(instance, day) for day in (D0, D1)]
    assert [r.success for r in results] == [True, True], [failure_message(r) for r in results]
    assert check_results(results[0])["recon/matches:matched_once"].passed

    assert matched_on(home, "X") == [D0]
    assert every_txn_id_is_staged_once(home)
    assert recovered_equals_clean(
        home,
        tmp_path_factory,
        final_files=lambda clean: (carried_item(clean), correct_d0_bank(clean)),
        days=(DM1, D0, D1),
    )


# -- what the tests compare -----------------------------------------------------------------------------------


def staged_days(home: Path, txn_id: str) -> list[date]:
    frame = Warehouse(home / "warehouse.duckdb").query(
        "SELECT business_date FROM staging.ledger WHERE txn_id = ? ORDER BY business_date", [txn_id]
    )
    return [row[0] for row in frame.rows()]


def matched_on(home: Path, ledger_txn_id: str) -> list[date]:
    frame = Warehouse(home / "warehouse.duckdb").query(
        "SELECT DISTINCT business_date FROM recon.matches WHERE ledger_txn_id = ? ORDER BY 1", [ledger_txn_id]
    )
    return [row[0] for row in frame.rows()]


def every_txn_id_is_staged_once(home: Path) -> bool:
    wh = Warehouse(home / "warehouse.duckdb")
    return all(
        wh.query(f"SELECT count(*) = count(DISTINCT txn_id) FROM staging.{source}").item()  # noqa: S608 (fixed names)
        for source in ("ledger", "bank")
    )


def recovered_equals_clean(
    home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    final_files: Callable[[Path], object],
    days: tuple[date, ...] = (D0, D1, D2),
) -> bool:
    """Every table but the file log (which keeps the history of deliveries) equals a clean run of the final files."""
    clean = tmp_path_factory.mktemp("clean") / "data"
    final_files(clean / "landing")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.data_environment(clean).items():
            patch.setenv(name, value)
        (clean / "dagster_home").mkdir(parents=True)
        with dg.instance_for_test(temp_dir=str(clean / "dagster_home")) as instance:
            assert all(run_day(instance, day).success for day in days)
    recovered, expected = tables(home, days), tables(clean, days)
    recovered.pop("ops.file_log"), expected.pop("ops.file_log")
    return recovered == expected
