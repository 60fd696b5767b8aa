"""BAI2 balance reports, read by the bank source: our own samples, one per rule and edge."""

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
SAMPLES = Path(__file__).parent / "statements" / "bai2"
WIRE_TEXT = "Incoming wire from Acme GmbH, ref E2E-INV-9"


def land(tmp_path: Path, name: str) -> pl.DataFrame:
    return land_statement(tmp_path, (SAMPLES / name).read_bytes(), "bai2", DAY)


def test_each_detail_is_a_row_signed_by_its_type_code_and_information_only_details_are_not(tmp_path: Path) -> None:
    rows = land(tmp_path, "report.bai2")
    assert rows.select("txn_id", "account_id", "amount", "currency", "reference").rows() == [
        ("BANKREF-1", "4455667788", "500.00", "USD", "INV1001"),
        # no bank reference: the sender and file id, the as-of date and the detail's position in the file
        ("BANKUS33:FILE7/2026-11-21/2", "4455667788", "-250.00", "USD", "CHK-7"),
        # the text runs on in its 88 continuation
        ("BANKUS33:FILE7/2026-11-21/3", "4455667788", "100.00", "USD", WIRE_TEXT),
        # funds type S brings three availability amounts before the references
        ("BANKREF-4", "4455667788", "-150.00", "USD", "Outgoing wire"),
        ("BANKREF-E1", "9988", "-12.34", "EUR", "Fee"),
    ]  # fmt: skip
    assert set(rows["booking_date"]) == {"2026-11-21"}
    assert rows["value_date"].to_list() == [None, "2026-11-22", None, None, None]
    assert json.loads(rows["extra"][0])["type_code"] == "175"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "does_not_balance.bai2",
            "line 10: record 49: account 4455667788: statement does not balance: opening ledger 1000.00 USD + details "
            "200.00 = 1200.00, but the closing ledger is 1300.00",
        ),
        (
            "wrong_control_total.bai2",
            "line 10: record 49: the account's control total (the sum of its 03 and 16 amounts) is 320001, but the "
            "records add up to 320000",
        ),
        (
            "wrong_record_count.bai2",
            "line 15: record 99: the file's number of records is 16, but the records add up to 15",
        ),
        ("cut_short.bai2", "no 99 file trailer: the file is cut short"),
    ],
)
def test_a_report_whose_totals_counts_or_balances_do_not_add_up_is_rejected_with_the_record(
    tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(RejectedFile) as caught:
        land(tmp_path, name)
    assert caught.value.reason == reason
    assert not (tmp_path / "spill.parquet").exists()


# -- fuzzing: mutations of a statement are landed whole or rejected with a reason, never a crash or part of a file --

GOOD = (SAMPLES / "report.bai2").read_bytes()


@FUZZ
@given(mutations(GOOD, re.compile(rb"(?m)^16,[^\n]*\n(?:88,[^\n]*\n)*")))
def test_a_mutated_statement_lands_whole_or_is_rejected_with_a_reason(content: bytes) -> None:
    # Every account has its control total and record count, so a lost or altered amount is caught.
    assert_landed_whole_or_rejected(content, GOOD, "bai2")
