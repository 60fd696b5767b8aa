"""Hostile file names and hostile values, through the landing sensor and the whole daily job: names outside the
contract are reported once and never read, and values travel as data, byte for byte, with every table intact."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from batch_assets import settings
from batch_assets.defs.automation.sensors import Cursor
from batch_assets.landing import printable_name
from batch_assets.storage import (
    COMMIT_LOG_TABLE,
    RAW_FILES_TABLE,
    SCHEMA_STAMP_TABLE,
    TABLES,
    Warehouse,
    quote_ident,
)
from batch_assets.transforms.validate import formula_like
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_automation import tick
from batch_assets_tests.test_bad_inputs import run_requested_day, settle
from batch_assets_tests.test_ingest_and_validate import failure_message

DAY = date(2026, 11, 10)
D = DAY.isoformat()
# 255 bytes, the longest name most file systems allow, and within the contract: a delivery like any other.
LONG_VALID_NAME = f"ledger_{D}_" + "A" * (255 - len(f"ledger_{D}_.csv")) + ".csv"

# Names a sender (or an attacker with write access to the landing zone) might use. None fits the contract.
HOSTILE_NAMES: list[tuple[str, bytes]] = [
    ("ledger", f"ledger_{D}_a'b.csv".encode()),
    ("ledger", f'ledger_{D}_a"b.csv'.encode()),
    ("bank", f"bank_{D}_x;DROP TABLE raw.bank;--.csv".encode()),
    ("bank", f"bank_{D}'); DROP TABLE recon.matches; --.csv".encode()),
    ("ledger", f"ledger_{D}.csv\n".encode()),  # a trailing newline: `$` in a pattern lets this through
    ("ledger", f"ledger_{D}\n_01.csv".encode()),
    ("bank", f"bank_{D}\r\nX-Injected: 1.csv".encode()),
    ("ledger", f"ledger_{D}..csv".encode()),
    ("ledger", f"ledger_{D}_...csv".encode()),
    ("bank", f"bank_{D}_..%2F..%2Fetc%2Fpasswd.csv".encode()),
    ("ledger", f"ledger_{D}_".encode() + b"'" * (255 - len(f"ledger_{D}_.csv")) + b".csv"),  # 255 bytes
    ("ledger", f"ledger_{D}_café.csv".encode()),
    ("ledger", "ledger_２０２６-11-10.csv".encode()),  # full-width digits
    ("bank", "bank_٢٠٢٦-١١-١٠.csv".encode()),  # Arabic-Indic digits
    ("bank", f"bank_{D}_\u202egnp.csv".encode()),  # a right-to-left override
    ("ledger", f"ledger_{D}_\x1b[31mred.csv".encode()),  # a terminal escape
    ("ledger", f"ledger_{D}_\t.csv".encode()),
    ("bank", f"bank_{D}_".encode() + b"\xff\xfe.csv"),  # bytes that are not UTF-8
    ("ledger", f"ledger_{D}.CSV".encode()),
    ("ledger", f"ledger_{D}.csv.bak".encode()),
    ("ledger", f" ledger_{D}.csv".encode()),
]
# Dot-files are a writer's temporary names: never read and, by design, not reported.
SILENT_NAMES: list[tuple[str, bytes]] = [("ledger", f"..ledger_{D}.csv".encode()), ("bank", f".bank_{D}.csv".encode())]


def reported_as(source: str, raw: bytes) -> str:
    return f"{source}/{printable_name(os.fsdecode(raw))}"


def test_hostile_names_are_reported_once_never_requested_nor_read(
    home: Path, landing: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.QUARANTINE_RATE_ERROR, "1")  # one row of three is quarantined on purpose
    monkeypatch.setenv(settings.QUARANTINE_RATE_WARN, "1")
    write_landing(landing, "ledger", DAY, csv_text([txn("GOOD-L1", "10.00", DAY, reference="R1")]))
    write_landing(landing, "bank", DAY, csv_text([txn("GOOD-B1", "10.00", DAY, reference="R1")]))
    long_valid = landing / "ledger" / LONG_VALID_NAME
    long_valid.write_text(csv_text([txn("LONG-1", "5.00", DAY), txn("LONG-2", "1e3", DAY)]))
    for number, (source, raw) in enumerate(HOSTILE_NAMES + SILENT_NAMES):
        # Content that would be ingested if the name were taken: a row that must never appear anywhere.
        with open(os.fsencode(landing / source) + b"/" + raw, "w") as handle:
            handle.write(csv_text([txn(f"HOSTILE-{number}", "666.00", DAY)]))
    settle(landing)

    result = run_requested_day(instance, DAY)
    assert result.success, failure_message(result)

    # The sensor reported each hostile name once, escaped so that it cannot split or forge a log line.
    requests, cursor, skip = tick(instance)
    reported = Cursor.parse(cursor).reported
    assert sorted(reported) == sorted(reported_as(source, raw) for source, raw in HOSTILE_NAMES)
    assert all(name.isprintable() for name in reported)
    assert f"ledger/ledger_{D}.csv\\n" in reported and f"bank/bank_{D}_\\udcff\\udcfe.csv" in reported
    _, cursor_again, skip_again = tick(instance, cursor)
    assert Cursor.parse(cursor_again).reported == reported and "ignored" not in (skip_again or "")

    # Only contract names were read: the good files and the 255-byte one, whose name is data like any other.
    wh = Warehouse(home / "warehouse.duckdb")
    log = wh.read_partition("ops.file_log", DAY, ["file_name", "status", "row_count"]).rows()
    assert log == sorted(
        [
            (f"bank/bank_{D}.csv", "ingested", 1),
            (f"ledger/ledger_{D}.csv", "ingested", 1),
            (f"ledger/{LONG_VALID_NAME}", "ingested", 2),
        ]
    )
    assert sorted(wh.read_partition("staging.ledger", DAY)["txn_id"]) == ["GOOD-L1", "LONG-1"]
    assert wh.read_partition("staging.quarantine", DAY, ["file_name", "line_number", "rule"]).rows() == [
        (f"ledger/{LONG_VALID_NAME}", 3, "invalid_amount")
    ]
    for table in TABLES:
        frame = wh.read_partition(table, DAY)
        if "txn_id" in frame.columns:
            assert not frame["txn_id"].str.starts_with("HOSTILE").any(), table
    assert_every_table_survives(home)


# Values a sender might put in a text field: SQL, quoting, control characters, length, scripts, backslashes and
# placeholders. None starts like a spreadsheet formula or with white space, so each must pass validation
# unchanged.
HOSTILE_VALUES = [
    "'); DROP TABLE recon.matches; --",
    '" OR 1=1 --',
    "' OR ''='",
    "ACC'; COPY (SELECT 1) TO '/tmp/pwned.csv'; --",
    'recon"."matches',
    "x\x01\x02\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\x7f\x9b\x1c\x1fz",
    "line1\nline2\r\nline3\rend",
    "a\u2028b\u2029c\u0085d",
    "Z" * 10_000 + "ü",
    "Zürich–東京 🚀 \u202eمرحبا\u202c ﷽ ß",
    "C:\\new\\table\\'x\\\"y\\\\",
    "\\x00\\0\\n\\'",
    "? $1 $day :name %s %(x)s {0} {day}",
]


def test_hostile_values_travel_as_data_byte_for_byte_and_every_table_survives(
    home: Path, landing: Path, instance: dg.DagsterInstance
) -> None:
    ledger, bank = [], []
    for i, value in enumerate(HOSTILE_VALUES):
        # A pair that matches, and a pair with equal references and different amounts (an amount mismatch).
        ledger.append(
            txn(
                f"L{i}:{value}",
                f"{10 + i}.00",
                DAY,
                account=value,
                reference=value,
                counterparty=value,
                description=value,
            )
        )
        bank.append(
            txn(
                f"B{i}:{value}",
                f"{10 + i}.00",
                DAY,
                account=value,
                reference=value,
                counterparty=value,
                description=value,
            )
        )
        ledger.append(txn(f"L{i}m", "1.00", DAY, account=value, reference=f"MM{i}"))
        bank.append(txn(f"B{i}m", "2.00", DAY, account=value, reference=f"mm {i}"))
    write_landing(landing, "ledger", DAY, csv_text(ledger))
    # The bank side comes as JSONL, so that both text readers carry the values (escaped and raw UTF-8).
    lines = [json.dumps(row, ensure_ascii=i % 2 == 0) for i, row in enumerate(bank)]
    write_landing(landing, "bank", DAY, "\n".join(lines) + "\n", ext="jsonl")
    settle(landing)

    result = run_requested_day(instance, DAY)
    assert result.success, failure_message(result)

    wh = Warehouse(home / "warehouse.duckdb")
    assert wh.read_partition("staging.quarantine", DAY).is_empty()
    for source, rows in (("ledger", ledger), ("bank", bank)):
        columns = ["txn_id", "account_id", "reference", "counterparty", "description"]
        expected = sorted(tuple(row[c] or None for c in columns) for row in rows)
        for table in (f"raw.{source}", f"staging.{source}"):
            # Empty text is "missing" under the contract: CSV reads it as null, JSON keeps "".
            landed = [tuple(v or None for v in row) for row in wh.read_partition(table, DAY, columns).rows()]
            assert sorted(landed) == expected, table

    matches = wh.read_partition("recon.matches", DAY, ["account_id", "ledger_txn_id", "bank_txn_id"]).rows()
    assert sorted(matches) == sorted((v, f"L{i}:{v}", f"B{i}:{v}") for i, v in enumerate(HOSTILE_VALUES))
    mismatches = wh.read_partition(
        "recon.exceptions", DAY, ["category", "source", "account_id", "txn_id", "counterpart_txn_id"]
    )
    assert sorted(mismatches.rows()) == sorted(
        [("amount_mismatch", "ledger", v, f"L{i}m", f"B{i}m") for i, v in enumerate(HOSTILE_VALUES)]
        + [("amount_mismatch", "bank", v, f"B{i}m", f"L{i}m") for i, v in enumerate(HOSTILE_VALUES)]
    )
    assert_every_table_survives(home)


def assert_every_table_survives(home: Path) -> None:
    """Every table and view of the warehouse is still there, and each is readable."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        tables = {
            f"{s}.{t}"
            for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        }
        assert tables == {*TABLES, COMMIT_LOG_TABLE, RAW_FILES_TABLE, SCHEMA_STAMP_TABLE, "recon.standing_breaks"}
        for schema, name in (table.split(".") for table in tables):
            conn.execute(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}").fetchone()  # noqa: S608 (a table name)


@pytest.mark.parametrize("value", ["=1+1", "@cmd", "+cmd", "-cmd", "\t=1"])
@pytest.mark.unit
def test_formula_like_values_are_what_the_hostile_values_are_not(value: str) -> None:
    """The hostile values above are data because none looks like a formula; these do, and are quarantined."""
    flags = pl.DataFrame({"v": [value, *HOSTILE_VALUES]}).select(formula_like(pl.col("v")))["v"].to_list()
    assert flags == [True] + [False] * len(HOSTILE_VALUES)
