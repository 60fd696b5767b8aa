"""A day whose bank side is a camt.053 statement goes through the whole job, and a statement that does not balance
holds the bank side back with the reason, as a bad CSV file does."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from batch_assets_tests.helpers import write_landing
from batch_assets_tests.test_ingest_and_validate import failure_message, run_day, warehouse

DAY = date(2026, 11, 21)
SAMPLES = Path(__file__).parent / "statements" / "camt"


def deliver_ledger(landing: Path) -> None:
    """The ledger's side of the sample statement's seven booked lines (the file the README's example uses)."""
    write_landing(landing, "ledger", DAY, (SAMPLES / "ledger_for_two_statements.csv").read_bytes())


def reconcile_with_statement(landing: Path, instance: dg.DagsterInstance, sample: str) -> dg.ExecuteInProcessResult:
    """Deliver the ledger file and the sample statement as the day's bank file, then run the day."""
    deliver_ledger(landing)
    write_landing(landing, "bank", DAY, (SAMPLES / sample).read_bytes(), ext="xml")
    return run_day(instance, DAY)


def test_a_camt053_day_lands_reconciles_and_matches_every_line(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    result = reconcile_with_statement(landing, instance, "two_statements.camt053.xml")

    assert result.success, failure_message(result)
    wh = warehouse(home)
    staged = wh.read_partition("staging.bank", DAY, ["txn_id", "amount", "currency"])
    assert sorted(staged["txn_id"]) == [
        "BANKREF-1", "BATCH-9/2", "BATCH-9/3", "D-1", "REV-4", "S2-1", "STMT-EUR-2026-11-21/2",
    ]  # fmt: skip
    pairs = set(wh.read_partition("recon.matches", DAY, ["ledger_txn_id", "bank_txn_id"]).rows())
    assert pairs == {
        ("L1", "BANKREF-1"),
        ("L2", "STMT-EUR-2026-11-21/2"),
        ("L3", "D-1"),
        ("L4", "BATCH-9/2"),
        ("L5", "BATCH-9/3"),
        ("L6", "REV-4"),
        ("L7", "S2-1"),
    }
    log = wh.read_partition("ops.file_log", DAY, ["file_name", "status", "row_count"]).rows()
    assert ("bank/bank_2026-11-21.xml", "ingested", 7) in log


def test_a_statement_that_does_not_balance_holds_the_bank_side_back_until_a_corrected_one_is_delivered(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    result = reconcile_with_statement(landing, instance, "does_not_balance.camt053.xml")

    assert not result.success
    message = failure_message(result)
    assert "bank/bank_2026-11-21.xml" in message and "statement does not balance" in message
    assert "closing balance is 1400.00" in message
    wh = warehouse(home)
    log = wh.read_partition("ops.file_log", DAY, ["file_name", "status"]).rows()
    assert ("bank/bank_2026-11-21.xml", "rejected") in log
    assert wh.read_partition("staging.bank", DAY).height == 0

    # The bank re-delivers a corrected statement under the same name: the re-run of the day reconciles it.
    corrected = reconcile_with_statement(landing, instance, "two_statements.camt053.xml")
    assert corrected.success, failure_message(corrected)
    assert wh.read_partition("staging.bank", DAY).height == 7
    assert wh.read_partition("recon.matches", DAY).height == 7
