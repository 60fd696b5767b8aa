"""Resolution files as a person hands them back, CSV or Excel: decided rows typed, undecided rows left out, and a
bad value rejecting its own resolution, not the file."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from batch_assets.landing import RejectedFile
from batch_assets.landing.resolutions import read_resolutions
from batch_assets.transforms.resolutions import (
    RESOLUTION_ROW_SCHEMA,
    STATUS_APPLIED,
    STATUS_REJECTED,
    judge_resolutions,
)
from batch_assets_tests.test_resolutions import APPLIED, ITEMS

pytestmark = pytest.mark.unit

NAME = "resolutions/resolutions_2026-11-24.csv"
# As an export of the day's breaks looks once filled in: the item's fields, then the decision columns; the
# second break was not decided.
SHEET = pl.DataFrame(
    {
        "source": ["ledger", "bank", "bank", "ledger"],
        "txn_id": ["L3", "B2", "B9", "L1"],
        "amount": ["100.00", "97.50", "12.00", "60.00"],
        "category": ["amount_mismatch", "amount_mismatch", "missing_in_ledger", "missing_in_bank"],
        "resolution_id": ["R1", "R1", "", "R2"],
        "action": ["Match", "match", "", "write_off"],
        "write_off_amount": ["2.50", "", "", "60.00"],
        "reason_code": ["BANK_FEE", "", "", '=HYPERLINK("http://x")'],
        "comment": ["fee deducted by the bank", "", "", ""],
        "resolved_by": ["ana", "ana", "", "ana"],
        "resolved_at": ["2026-11-24T09:30:00Z", "2026-11-24 09:30", "", "2026-11-24T10:00:00+01:00"],
    }
)


def written(tmp_path: Path, frame: pl.DataFrame, suffix: str) -> Path:
    path = tmp_path / f"resolutions_2026-11-24.{suffix}"
    if suffix == "xlsx":
        frame.write_excel(path)
    else:
        frame.write_csv(path)
    return path


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_decided_rows_are_read_typed_and_undecided_ones_left_out(tmp_path: Path, suffix: str) -> None:
    path = written(tmp_path, SHEET, suffix)
    rows = read_resolutions(path, f"resolutions/{path.name}")
    assert rows.schema == pl.Schema(RESOLUTION_ROW_SCHEMA)
    assert rows["line_number"].to_list() == [2, 3, 5]
    assert rows["action"].to_list() == ["match", "match", "write_off"]
    assert rows["write_off_amount"].to_list() == [Decimal("2.50"), None, Decimal("60.00")]
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert rows["resolved_at"].to_list() == [at, at, datetime(2026, 11, 24, 9, 0, tzinfo=UTC)]
    # Formula-like text stays text through the spreadsheet, and its resolution is refused for it.
    assert rows["reason_code"][2] == '=HYPERLINK("http://x")'
    assert rows["problem"].to_list() == [
        None,
        None,
        "line 5: reason_code holds text a spreadsheet would run as a formula",
    ]


def test_a_bad_value_rejects_its_resolution_and_the_rest_of_the_file_applies(tmp_path: Path) -> None:
    sheet = SHEET.with_columns(
        write_off_amount=pl.Series(["2.50", "", "", "sixty"]), reason_code=pl.Series(["BANK_FEE", "", "", "X"])
    )
    rows = read_resolutions(written(tmp_path, sheet, "csv"), NAME)
    verdicts = judge_resolutions(rows.lazy(), ITEMS.lazy(), APPLIED.lazy(), date(2026, 11, 24)).collect()
    by_id = {r["resolution_id"]: (r["status"], r["reason"]) for r in verdicts.iter_rows(named=True)}
    assert by_id["R1"] == (STATUS_APPLIED, None)
    assert by_id["R2"] == (STATUS_REJECTED, "line 5: write_off_amount sixty is not an amount")


def test_a_file_without_the_decision_columns_is_rejected_saying_where_to_start(tmp_path: Path) -> None:
    with pytest.raises(RejectedFile) as caught:
        read_resolutions(written(tmp_path, SHEET.drop("resolved_by", "action"), "csv"), NAME)
    assert caught.value.name == NAME
    assert caught.value.reason.startswith("line 1: no action, resolved_by column")
    assert "batch-assets breaks" in caught.value.reason


def test_a_file_that_is_no_spreadsheet_is_rejected_with_the_parsers_reason(tmp_path: Path) -> None:
    path = tmp_path / "resolutions_2026-11-24.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(RejectedFile, match="not a readable xlsx table of resolutions"):
        read_resolutions(path, f"resolutions/{path.name}")


def resolve(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BATCH_ASSETS_HOME": str(tmp_path / "data")}
    command = [str(Path(sys.executable).with_name("batch-assets")), "resolve", "--day", "2026-11-24", "--by", "ana"]
    return subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_resolution_written_at_the_terminal_is_a_resolutions_file_that_applies(tmp_path: Path) -> None:
    done = resolve(
        tmp_path, "--match", "ledger:L3", "bank:B2", "--amount", "2.50", "--reason", "BANK_FEE", "--id", "R-7"
    )
    assert done.returncode == 0, done.stderr
    path = tmp_path / "data" / "landing" / "resolutions" / "resolutions_2026-11-24_R7.csv"
    assert str(path) in done.stdout
    reverse = resolve(tmp_path, "--reverse", "R-OLD", "--id", "R-8")
    assert reverse.returncode == 0, reverse.stderr
    rows = pl.concat(
        read_resolutions(file, f"resolutions/{file.name}") for file in sorted(path.parent.glob("resolutions_*.csv"))
    )
    assert rows.select("resolution_id", "action", "source", "txn_id").rows() == [
        ("R-7", "match", "ledger", "L3"),
        ("R-7", "match", "bank", "B2"),
        ("R-8", "reverse", None, None),
    ]
    verdicts = judge_resolutions(rows.lazy(), ITEMS.lazy(), APPLIED.lazy(), date(2026, 11, 24)).collect()
    assert verdicts["status"].to_list() == [STATUS_APPLIED, STATUS_APPLIED], verdicts["reason"].to_list()


def test_the_terminal_refuses_what_is_not_an_item_and_an_id_used_twice(tmp_path: Path) -> None:
    done = resolve(tmp_path, "--write-off", "L3", "--reason", "X")
    assert done.returncode == 2 and "'L3' is not an item: write ledger:<txn_id> or bank:<txn_id>" in done.stderr
    assert resolve(tmp_path, "--write-off", "bank:B9", "--reason", "X", "--id", "R-9").returncode == 0
    again = resolve(tmp_path, "--write-off", "bank:B9", "--reason", "X", "--id", "R-9")
    assert again.returncode == 2 and "a resolution id is used once" in again.stderr
