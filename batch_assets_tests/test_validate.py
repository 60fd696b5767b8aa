"""Row validation: every quarantine rule, duplicate ordering, typing and reference normalisation."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from batch_assets.transforms.contract import (
    RAW_SCHEMA,
    RULE_BOOKING_DATE_MISMATCH,
    RULE_DUPLICATE_TXN_ID,
    RULE_FORMULA_LIKE_TEXT,
    RULE_INVALID_AMOUNT,
    RULE_INVALID_CURRENCY,
    RULE_INVALID_DATE,
    RULE_MISSING_FIELD,
    parse_landing_name,
)
from batch_assets.transforms.references import normalise_reference
from batch_assets.transforms.validate import (
    PRIOR_TXN_SCHEMA,
    judge_rows,
    quarantined_rows,
    staged_rows,
)

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)
FILE = "ledger/ledger_2026-11-21.csv"


def raw_frame(*rows: dict, file_name: str = FILE) -> pl.LazyFrame:
    base = {"txn_id": "T", "account_id": "ACC", "booking_date": DAY.isoformat(), "amount": "1.00", "currency": "EUR"}
    records = [
        {
            **dict.fromkeys(RAW_SCHEMA),
            **base,
            **row,
            "business_date": DAY,
            "file_name": row.get("file_name", file_name),
            "line_number": row.get("line_number", i + 2),
        }
        for i, row in enumerate(rows)
    ]
    return pl.DataFrame(records, schema=RAW_SCHEMA).lazy()


def judge(*rows: dict, prior: dict[str, date] | None = None) -> pl.DataFrame:
    prior_frame = pl.LazyFrame(
        {"txn_id": list((prior or {}).keys()), "business_date": list((prior or {}).values())}, schema=PRIOR_TXN_SCHEMA
    )
    return judge_rows(raw_frame(*rows), DAY, prior_frame).collect()


@pytest.mark.parametrize(
    ("row", "rule", "detail_part"),
    [
        ({"txn_id": ""}, RULE_MISSING_FIELD, "txn_id is missing"),
        ({"account_id": "   "}, RULE_MISSING_FIELD, "account_id is missing"),
        ({"amount": None}, RULE_MISSING_FIELD, "amount is missing"),
        ({"currency": None}, RULE_MISSING_FIELD, "currency is missing"),
        ({"booking_date": None}, RULE_MISSING_FIELD, "booking_date is missing"),
        ({"amount": "12.345"}, RULE_INVALID_AMOUNT, "more than 2 fractional digits"),
        ({"amount": "1,000.00"}, RULE_INVALID_AMOUNT, "not a decimal"),
        ({"amount": "1e3"}, RULE_INVALID_AMOUNT, "not a decimal"),
        ({"amount": "NaN"}, RULE_INVALID_AMOUNT, "not a decimal"),
        ({"amount": "12345678901234567.00"}, RULE_INVALID_AMOUNT, "integer digits"),
        ({"booking_date": "2026-02-30"}, RULE_INVALID_DATE, "booking_date 2026-02-30"),
        ({"booking_date": "21/11/2026"}, RULE_INVALID_DATE, "booking_date 21/11/2026"),
        ({"value_date": "2026-13-01"}, RULE_INVALID_DATE, "value_date 2026-13-01"),
        ({"currency": "EURO"}, RULE_INVALID_CURRENCY, "EURO"),
        ({"currency": "E1R"}, RULE_INVALID_CURRENCY, "E1R"),
        ({"booking_date": "2026-11-20"}, RULE_BOOKING_DATE_MISMATCH, "not the file's business date 2026-11-21"),
        (
            {"reference": '=HYPERLINK("http://x","y")'},
            RULE_FORMULA_LIKE_TEXT,
            "reference starts like a spreadsheet formula",
        ),
        ({"counterparty": "@SUM(A1)"}, RULE_FORMULA_LIKE_TEXT, "counterparty starts like a spreadsheet formula"),
        ({"description": "+cmd|' /C calc'!A0"}, RULE_FORMULA_LIKE_TEXT, "description starts like"),
        ({"description": "-2+3+cmd|' /C calc'!A0"}, RULE_FORMULA_LIKE_TEXT, "description starts like"),
        ({"account_id": " \t=1+1"}, RULE_FORMULA_LIKE_TEXT, "account_id starts like"),
        ({"txn_id": "@T"}, RULE_FORMULA_LIKE_TEXT, "txn_id starts like"),
    ],
)
def test_each_rule_quarantines_with_a_reason(row: dict, rule: str, detail_part: str) -> None:
    judged = judge(row)
    assert judged["rule"].to_list() == [rule]
    quarantine = quarantined_rows(judged.lazy(), "ledger").collect()
    assert detail_part in quarantine["detail"][0]
    assert quarantine.select("file_name", "line_number", "rule").row(0) == (FILE, 2, rule)
    assert staged_rows(judged.lazy()).collect().is_empty()


@pytest.mark.parametrize(
    "value",
    ["-", "--", "+", "+44 20 7946 0958", "+1 (555) 010-9999", "-12.50", "-.5", "x=1", "a@b.example", "'=quoted'"],
)
def test_signs_that_start_numbers_and_inner_formula_characters_are_data(value: str) -> None:
    judged = judge({"amount": "-7.25", "reference": value, "counterparty": value, "description": value})
    assert judged["rule"].to_list() == [None]
    staged = staged_rows(judged.lazy()).collect()
    assert staged.select("reference", "counterparty", "description").row(0) == (value, value, value)
    assert staged["amount"].to_list() == [Decimal("-7.25")]


def test_a_formula_copy_does_not_hide_a_good_copy_of_the_txn_id() -> None:
    judged = judge({"txn_id": "D", "description": "=1+1"}, {"txn_id": "D", "amount": "5.00"})
    assert judged["rule"].to_list() == [RULE_FORMULA_LIKE_TEXT, None]


def test_first_broken_rule_is_recorded() -> None:
    judged = judge({"amount": "abc", "currency": "EURO", "booking_date": "2026-11-20"})
    assert judged["rule"].to_list() == [RULE_INVALID_AMOUNT]


def test_duplicate_txn_id_first_occurrence_by_file_then_line_wins() -> None:
    judged = judge(
        {"txn_id": "D", "line_number": 9, "file_name": "ledger/ledger_2026-11-21_02.csv", "amount": "3.00"},
        {"txn_id": "D", "line_number": 7, "amount": "2.00"},
        {"txn_id": "D", "line_number": 3, "amount": "1.00"},
    )
    staged = staged_rows(judged.lazy()).collect()
    assert staged["amount"].to_list() == [Decimal("1.00")]
    dupes = quarantined_rows(judged.lazy(), "ledger").collect().sort("file_name", "line_number")
    assert dupes["rule"].to_list() == [RULE_DUPLICATE_TXN_ID] * 2
    assert dupes["line_number"].to_list() == [7, 9]
    assert all(f"first seen in {FILE} line 3" in d for d in dupes["detail"])


def test_a_broken_first_copy_does_not_hide_a_good_later_copy() -> None:
    judged = judge({"txn_id": "D", "amount": "bad"}, {"txn_id": "D", "amount": "5.00"})
    assert judged["rule"].to_list() == [RULE_INVALID_AMOUNT, None]
    assert staged_rows(judged.lazy()).collect()["amount"].to_list() == [Decimal("5.00")]


def test_txn_id_staged_on_an_earlier_day_is_a_duplicate() -> None:
    judged = judge({"txn_id": "OLD"}, {"txn_id": "NEW"}, prior={"OLD": date(2026, 11, 19)})
    assert judged["rule"].to_list() == [RULE_DUPLICATE_TXN_ID, None]
    assert "already staged on 2026-11-19" in quarantined_rows(judged.lazy(), "ledger").collect()["detail"][0]


def test_staged_rows_are_typed_and_normalised() -> None:
    judged = judge(
        {"txn_id": " T1 ", "amount": "-12.5", "currency": " usd ", "reference": "inv-00 7", "value_date": None},
        {"txn_id": "T2", "amount": "+3", "value_date": "2026-11-23", "reference": "NONREF"},
    )
    staged = staged_rows(judged.lazy()).collect().sort("txn_id")
    assert staged.schema["amount"] == pl.Decimal(18, 2)
    assert staged["txn_id"].to_list() == ["T1", "T2"]
    assert staged["amount"].to_list() == [Decimal("-12.50"), Decimal("3.00")]
    assert staged["currency"].to_list() == ["USD", "EUR"]
    assert staged["value_date"].to_list() == [DAY, date(2026, 11, 23)]
    assert staged["reference_norm"].to_list() == ["INV007", None]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("INV-2026-01", "INV202601"),
        (" inv 2026 01 ", "INV202601"),
        ("ref: a/b_c", "REFABC"),
        ("NONREF", None),
        ("nonref", None),
        ("Not-Provided", None),
        ("--", None),
        (None, None),
    ],
)
def test_reference_normalisation(reference: str | None, expected: str | None) -> None:
    frame = pl.DataFrame({"r": [reference]}, schema={"r": pl.String})
    assert frame.select(normalise_reference(pl.col("r")))["r"].to_list() == [expected]


@pytest.mark.parametrize(
    ("folder", "name", "problem"),
    [
        ("ledger", "ledger_2026-11-21.txt", "does not match"),
        ("ledger", "ledger-2026-11-21.csv", "does not match"),
        ("ledger", "bank_2026-11-21.csv", "a bank file in the ledger/ folder"),
        ("bank", "bank_2026-02-30.csv", "not a calendar date"),
        ("ledger", "ledger_2026-11-21.csv\n", "does not match"),
        ("ledger", "ledger_2026-11-21\n_01.csv", "does not match"),
        ("ledger", "ledger_\uff12\uff10\uff12\uff16-11-21.csv", "does not match"),  # full-width digits
        ("ledger", "ledger_2026-11-21_caf\u00e9.csv", "does not match"),
        ("ledger", "ledger_2026-11-21_a'b.csv", "does not match"),
        ("ledger", "ledger_2026-11-21..csv", "does not match"),
    ],
)
def test_bad_names_are_explained(folder: str, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_landing_name(folder, name)


def test_good_names_parse() -> None:
    parsed = parse_landing_name("bank", "bank_2026-11-21_02.parquet")
    assert (parsed.source, parsed.business_date, parsed.part, parsed.format) == ("bank", DAY, "02", "parquet")
