"""Reading landing files: each file-level rejection, each format, line numbers, and what scanning ignores."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from batch_assets.landing import (
    RejectedFile,
    digest_file,
    land_file,
    printable_name,
    scan_landing,
)
from batch_assets_tests.helpers import csv_text, txn, write_landing

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)
HEADER = "txn_id,account_id,booking_date,value_date,amount,currency,reference,counterparty,description\n"


def read(landing: Path, path: Path) -> pl.DataFrame:
    files, _ = scan_landing(landing, DAY)
    (file,) = [f for f in files if f.path == path]
    spill = landing.parent / "spill.parquet"
    rows = land_file(file, digest_file(file.path), spill)
    frame = pl.read_parquet(spill)
    assert frame.height == rows
    return frame


def rejection(landing: Path, path: Path) -> str:
    with pytest.raises(RejectedFile) as caught:
        read(landing, path)
    assert caught.value.name == f"{path.parent.name}/{path.name}"
    return caught.value.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "zero-byte file"),
        (HEADER.encode() + "L1,A,2026-11-21,,1.00,EUR,caf\xe9,,\n".encode("latin-1"), "line 2: not UTF-8"),
        ("caf\xe9,x\n".encode("latin-1"), "line 1: not UTF-8"),
        (b"txn_id,account_id,booking_date,currency\nL1,A,2026-11-21,EUR\n", "missing required column(s) amount"),
        (
            b"txn_id,account_id,booking_date,value,currency\nL1,A,2026-11-21,1.00,EUR\n",
            "missing required column(s) amount",
        ),
        (
            (HEADER + "L1,A,2026-11-21,,1.00,EUR,,,\nL2,A,2026-11-21,,1.00\n").encode(),
            "line 3: expected 9 fields, found 5",
        ),
        ((HEADER + "L1,A,2026-11-21,,1.00,EUR,,,,extra\n").encode(), "line 2: expected 9 fields, found 10"),
        ((HEADER + 'L1,A,2026-11-21,,1.00,EUR,"unterminated,,\n').encode(), "unterminated quoted value"),
        (b"txn_id,txn_id,account_id,booking_date,amount,currency\n", "duplicate column(s) txn_id"),
    ],
    ids=[
        "zero-byte",
        "latin1-row",
        "latin1-header",
        "missing-column",
        "renamed-column",
        "short-row",
        "long-row",
        "truncated",
        "duplicate-column",
    ],
)
def test_unreadable_csv_is_rejected_with_file_line_and_reason(landing: Path, content: bytes, reason: str) -> None:
    path = write_landing(landing, "ledger", DAY, content)
    assert reason in rejection(landing, path)


def test_header_only_csv_means_zero_rows(landing: Path) -> None:
    path = write_landing(landing, "ledger", DAY, HEADER)
    assert read(landing, path).height == 0


def test_bom_column_order_and_extra_columns(landing: Path) -> None:
    text = "\ufeffamount,currency,txn_id,booking_date,account_id,branch\n1.00,EUR,L1,2026-11-21,A,north\n"
    frame = read(landing, write_landing(landing, "ledger", DAY, text))
    row = frame.row(0, named=True)
    assert (row["txn_id"], row["amount"], row["reference"], row["line_number"]) == ("L1", "1.00", None, 2)
    assert json.loads(row["extra"]) == {"branch": "north"}


def test_line_numbers_follow_quoted_newlines_and_blank_lines(landing: Path) -> None:
    text = HEADER + 'L1,A,2026-11-21,,1.00,EUR,,,"two\nlines"\n' + "L2,A,2026-11-21,,2.00,EUR,,,\n"
    frame = read(landing, write_landing(landing, "ledger", DAY, text))
    assert frame.select("txn_id", "line_number").rows() == [("L1", 2), ("L2", 4)]
    assert frame["description"][0] == "two\nlines"


def test_blank_lines_between_records_hold_no_record_and_keep_line_numbers(landing: Path) -> None:
    text = HEADER + "L1,A,2026-11-21,,1.00,EUR,,,\n\n\nL2,A,2026-11-21,,2.00,EUR,,,\n\n"
    frame = read(landing, write_landing(landing, "ledger", DAY, text))
    assert frame.select("txn_id", "line_number").rows() == [("L1", 2), ("L2", 5)]


def test_values_stay_text_as_delivered(landing: Path) -> None:
    text = csv_text([txn("L1", "0012.50", DAY, reference='=HYPERLINK("http://x")')])
    row = read(landing, write_landing(landing, "ledger", DAY, text)).row(0, named=True)
    assert row["amount"] == "0012.50"
    assert row["reference"] == '=HYPERLINK("http://x")'


def test_parquet_with_typed_columns_reads_as_text(landing: Path) -> None:
    path = landing / "bank" / "bank_2026-11-21_01.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame(
        {
            "txn_id": ["B1", "B2"],
            "account_id": ["A", "A"],
            "booking_date": [DAY, DAY],
            "amount": ["1.10", "-2.00"],
            "currency": ["EUR", "EUR"],
            "note": ["x", "y"],
        }
    ).with_columns(pl.col("amount").cast(pl.Decimal(18, 2))).write_parquet(path)
    frame = read(landing, path)
    assert frame.select("txn_id", "booking_date", "amount", "line_number").rows() == [
        ("B1", "2026-11-21", "1.10", 1),
        ("B2", "2026-11-21", "-2.00", 2),
    ]
    assert json.loads(frame["extra"][0]) == {"note": "x"}


def test_corrupt_parquet_is_rejected(landing: Path) -> None:
    path = landing / "bank" / "bank_2026-11-21.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame({"txn_id": ["B1"]}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-20] + b"garbage garbage garb")
    assert "unreadable Parquet" in rejection(landing, path)


def test_parquet_missing_a_required_column_is_rejected(landing: Path) -> None:
    path = landing / "bank" / "bank_2026-11-21.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame({"txn_id": ["B1"], "account_id": ["A"], "booking_date": [DAY], "currency": ["EUR"]}).write_parquet(
        path
    )
    assert "missing required column(s) amount" in rejection(landing, path)


def test_jsonl_reads_with_physical_line_numbers(landing: Path) -> None:
    lines = [
        json.dumps(
            {"txn_id": "J1", "account_id": "A", "booking_date": "2026-11-21", "amount": "1.00", "currency": "EUR"}
        ),
        "",
        json.dumps(
            {
                "txn_id": "J2",
                "account_id": "A",
                "booking_date": "2026-11-21",
                "amount": 2.5,
                "currency": "EUR",
                "tag": 1,
            }
        ),
    ]
    frame = read(landing, write_landing(landing, "bank", DAY, "\n".join(lines) + "\n", ext="jsonl"))
    assert frame.select("txn_id", "amount", "line_number").rows() == [("J1", "1.00", 1), ("J2", "2.5", 3)]
    assert frame["extra"][0] is None
    assert json.loads(frame["extra"][1])["tag"] == 1


def test_jsonl_numbers_are_kept_as_written_never_through_a_float(landing: Path) -> None:
    lines = [
        '{"txn_id": "J1", "account_id": "A", "booking_date": "2026-11-21", '
        '"amount": 1234567890123456.78, "currency": "EUR"}',
        '{"txn_id": "J2", "account_id": "A", "booking_date": "2026-11-21", "amount": 1e3, "currency": "EUR"}',
        '{"txn_id": "J3", "account_id": "A", "booking_date": "2026-11-21", '
        '"amount": -0.10, "currency": "EUR", "ok": true}',
    ]
    frame = read(landing, write_landing(landing, "bank", DAY, "\n".join(lines) + "\n", ext="jsonl"))
    assert frame["amount"].to_list() == ["1234567890123456.78", "1e3", "-0.10"]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"txn_id": "J2", "amount": ', "line 2: invalid JSON"),
        ("[1, 2]", "line 2: a JSON list, not an object"),
        ("null", "line 2: a JSON null, not an object"),
        ('{"txn_id": "J2", "txn_id": "J3"}', "line 2: key 'txn_id' appears more than once"),
        ('{"txn_id": "J2", "amount": NaN}', "line 2: invalid JSON (NaN is not a JSON value)"),
        ('{"txn_id": "\\ud800"}', "line 2: field txn_id holds an unpaired surrogate escape"),
        ("[" * 100_000, "line 2: JSON nested too deeply"),
    ],
    ids=["truncated", "list", "null", "repeated-key", "nan", "lone-surrogate", "deep"],
)
def test_jsonl_with_a_bad_line_is_rejected_naming_the_line(landing: Path, bad_line: str, reason: str) -> None:
    good = json.dumps(
        {"txn_id": "J1", "account_id": "A", "booking_date": "2026-11-21", "amount": "1.00", "currency": "EUR"}
    )
    path = write_landing(landing, "bank", DAY, f"{good}\n{bad_line}\n{good}\n", ext="jsonl")
    assert reason in rejection(landing, path)


def test_scan_ignores_bad_names_symlinks_and_temporary_files(landing: Path, tmp_path: Path) -> None:
    good = write_landing(landing, "ledger", DAY, HEADER)
    (landing / "ledger" / "ledger_2026-11-21.csv.done").write_text("")
    (landing / "ledger" / ".ledger_2026-11-21_02.csv.tmp").write_text(HEADER)
    (landing / "ledger" / "notes.txt").write_text("hello")
    outside = tmp_path / "secret.csv"
    outside.write_text(HEADER)
    os.symlink(outside, landing / "ledger" / "ledger_2026-11-21_03.csv")
    (landing / "ledger" / "ledger_2026-11-21_04.csv").mkdir()
    files, ignored = scan_landing(landing)
    assert [f.path for f in files] == [good]
    reasons = {i.name: i.reason for i in ignored}
    assert "does not match" in reasons["ledger/notes.txt"]
    assert "symlink" in reasons["ledger/ledger_2026-11-21_03.csv"]
    assert "not a regular file" in reasons["ledger/ledger_2026-11-21_04.csv"]


def test_reported_names_cannot_split_or_forge_a_log_line() -> None:
    assert printable_name("ledger_2026-11-21.csv") == "ledger_2026-11-21.csv"
    assert printable_name("caf\u00e9 \u6771\u4eac.csv") == "caf\u00e9 \u6771\u4eac.csv"
    assert printable_name("a\nb\r\x1b[31m\u202e\udcff.csv") == "a\\nb\\r\\x1b[31m\\u202e\\udcff.csv"


def test_digest_is_of_the_bytes(landing: Path) -> None:
    a = write_landing(landing, "ledger", DAY, HEADER)
    b = write_landing(landing, "ledger", DAY, HEADER, part="02")
    c = write_landing(landing, "ledger", DAY, HEADER + "\n", part="03")
    assert digest_file(a).sha256 == digest_file(b).sha256 != digest_file(c).sha256
    assert digest_file(a).size_bytes == len(HEADER)


def test_a_file_removed_after_the_listing_is_rejected_so_the_other_files_are_still_judged(landing: Path) -> None:
    gone = write_landing(landing, "ledger", DAY, csv_text([txn("L1", "1.00", DAY)]))
    kept = write_landing(landing, "ledger", DAY, csv_text([txn("L2", "2.00", DAY)]), part="02")
    listed, _ = scan_landing(landing, DAY)
    gone.unlink()
    with pytest.raises(RejectedFile) as rejected:
        digest_file(listed[0])
    assert (rejected.value.name, rejected.value.reason) == (
        f"ledger/{gone.name}",
        "removed after it was listed (deliver it again, or leave it out)",
    )
    assert digest_file(listed[1]).size_bytes == kept.stat().st_size
