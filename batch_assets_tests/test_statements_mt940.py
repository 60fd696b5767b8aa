"""MT940 statements and MT942 interim reports, read by the bank source: our own samples, one per rule and edge."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given

from batch_assets.landing import RejectedFile
from batch_assets_tests.statement_corpus import land_statement
from batch_assets_tests.statement_fuzz import FUZZ, assert_landed_whole_or_rejected, mutations

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)
SAMPLES = Path(__file__).parent / "statements" / "mt940"


def land(tmp_path: Path, name: str, ext: str = "sta") -> pl.DataFrame:
    return land_statement(tmp_path, (SAMPLES / name).read_bytes(), ext, DAY)


def rejection(tmp_path: Path, name: str) -> str:
    with pytest.raises(RejectedFile) as caught:
        land(tmp_path, name)
    assert not (tmp_path / "spill.parquet").exists()
    return caught.value.reason


def test_each_statement_line_is_a_row_signed_by_its_mark_reversals_included(tmp_path: Path) -> None:
    rows = land(tmp_path, "two_statements.sta")
    got = {r["txn_id"]: (r["account_id"], r["amount"], r["currency"]) for r in rows.iter_rows(named=True)}
    assert got == {
        "BANKREF-1": ("DE89370400440532013000", "250.00", "EUR"),
        # no bank reference: the statement's :20: and :28C: and the line's position
        "STMT-2026-11-21/00321/001/2": ("DE89370400440532013000", "-100.00", "EUR"),
        # RC reverses a credit: money out; RD reverses a debit: money back in
        "REV-3": ("DE89370400440532013000", "-40.00", "EUR"),
        "REV-4": ("DE89370400440532013000", "10.00", "EUR"),
        "S2-1": ("0123456789", "-12.34", "USD"),
    }
    assert rows["line_number"].to_list() == [1, 2, 3, 4, 5]
    assert set(rows["booking_date"]) == {"2026-11-21"}


def test_the_reference_is_the_end_to_end_id_then_the_customer_reference_then_the_information(tmp_path: Path) -> None:
    rows = {r["txn_id"]: r for r in land(tmp_path, "two_statements.sta").iter_rows(named=True)}
    assert rows["BANKREF-1"]["reference"] == "E2E-INV-1001"
    assert rows["BANKREF-1"]["counterparty"] == "Acme GmbH"
    assert rows["STMT-2026-11-21/00321/001/2"]["reference"] == "Card payment Paper Supplies Ltd"
    assert rows["REV-4"]["reference"] == "REFUND-7"
    assert rows["S2-1"]["reference"] is None
    extra = json.loads(rows["REV-3"]["extra"])
    assert extra["mark"] == "RC" and extra["format"] == "MT940" and extra["source_line"] == 9


def test_an_interim_report_lands_its_lines_in_its_floor_limit_s_currency(tmp_path: Path) -> None:
    rows = land(tmp_path, "interim.mt942", ext="mt942")
    assert rows.select("txn_id", "amount", "currency").rows() == [("I-1", "5.00", "EUR")]
    assert json.loads(rows["extra"][0])["format"] == "MT942"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "does_not_balance.sta",
            "statement 1 (line 1) (STMT-2026-11-21): statement does not balance: opening 1000.00 EUR + lines 120.00 "
            "= 1120.00, but the closing balance is 1100.00",
        ),
        ("bad_statement_line.sta", "line 7: :61: '261121X100,00NDDTNONREF' is not value date"),
        ("no_account.sta", "statement 1 (line 1): no :25: field"),
    ],
)
def test_a_statement_that_breaks_the_structure_or_does_not_balance_is_rejected_with_where(
    tmp_path: Path, name: str, reason: str
) -> None:
    assert reason in rejection(tmp_path, name)


# -- fuzzing: mutations of a statement are landed whole or rejected with a reason, never a crash or part of a file --

GOOD = (SAMPLES / "two_statements.sta").read_bytes()


@FUZZ
@given(mutations(GOOD, re.compile(rb":61:[^\n]*\n(?::86:[^\n]*\n)?")))
def test_a_mutated_statement_lands_whole_or_is_rejected_with_a_reason(content: bytes) -> None:
    # Both statements have balances, so a lost or altered line is caught; a date or a text may change and land.
    assert_landed_whole_or_rejected(content, GOOD, "sta")
