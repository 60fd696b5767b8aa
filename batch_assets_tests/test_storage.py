"""The warehouse: atomic, idempotent partition replace; the stale-writer fence; the empty guard; lock waits;
and a real `kill -9` in the middle of a large write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from batch_assets.faults import CRASH_AT
from batch_assets.storage import (
    TABLES,
    Bucket,
    EmptyOutputError,
    PartitionWrite,
    RunIdentity,
    StaleWriteError,
    Warehouse,
    WarehouseLockTimeout,
    column_definitions,
)

DAY = date(2026, 11, 21)
QUARANTINE_COLUMNS = ["business_date", "source", "file_name", "line_number", "rule", "detail"]


def quarantine_rows(n: int, day: date = DAY, rule: str = "invalid_amount") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "business_date": [day] * n,
            "source": ["ledger"] * n,
            "file_name": ["ledger/f.csv"] * n,
            "line_number": list(range(2, n + 2)),
            "rule": [rule] * n,
            "detail": ["x"] * n,
        }
    )


def write(wh: Warehouse, frame: pl.DataFrame | pl.LazyFrame, run: RunIdentity, day: date = DAY, **kwargs) -> None:
    wh.commit([PartitionWrite("staging.quarantine", day, frame, amount_total_sql=None, **kwargs)], run)


def partition(wh: Warehouse, day: date = DAY) -> pl.DataFrame:
    return wh.read_partition("staging.quarantine", day, QUARANTINE_COLUMNS)


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_seconds=5)


RUN_1 = RunIdentity("run-1", 1000.0)
RUN_2 = RunIdentity("run-2", 2000.0)


@pytest.mark.unit
def test_replace_is_idempotent_and_touches_only_its_day(wh: Warehouse) -> None:
    write(wh, quarantine_rows(3, date(2026, 11, 20)), RUN_1, date(2026, 11, 20))
    write(wh, quarantine_rows(5), RUN_1)
    first = wh.last_commit("staging.quarantine", DAY)
    write(wh, quarantine_rows(5), RUN_2)
    second = wh.last_commit("staging.quarantine", DAY)
    assert partition(wh).height == 5
    assert partition(wh, date(2026, 11, 20)).height == 3
    assert first.fingerprint == second.fingerprint and second.run_id == "run-2"
    write(wh, quarantine_rows(2), RUN_2)
    assert partition(wh).height == 2
    assert wh.last_commit("staging.quarantine", DAY).fingerprint != first.fingerprint


@pytest.mark.unit
def test_lazy_frames_stream_through_a_spill_that_is_removed(wh: Warehouse) -> None:
    write(wh, quarantine_rows(4).lazy(), RUN_1)
    assert partition(wh).height == 4
    assert list(wh.scratch_dir.glob("*.parquet")) == []


@pytest.mark.unit
def test_commit_log_records_rows_amount_and_inputs(wh: Warehouse) -> None:
    frame = pl.DataFrame(
        {
            "business_date": [DAY, DAY],
            "txn_id": ["a", "b"],
            "account_id": ["A", "A"],
            "booking_date": [DAY, DAY],
            "value_date": [DAY, DAY],
            "amount": [Decimal("0.10"), Decimal("0.20")],
            "currency": ["EUR", "EUR"],
            "file_name": ["f", "f"],
            "line_number": [2, 3],
        }
    ).with_columns(pl.col("amount").cast(pl.Decimal(18, 2)))
    (record,) = wh.commit([PartitionWrite("staging.ledger", DAY, frame, input_hashes=["h2", "h1", "h1"])], RUN_1)
    assert (record.row_count, record.amount_total) == (2, Decimal("0.30"))
    logged = wh.query("SELECT asset_key, partition_key, run_id, input_hashes FROM ops.commit_log").row(0)
    assert logged == ("staging.ledger", "2026-11-21", "run-1", ["h1", "h2"])


@pytest.mark.unit
def test_a_stale_writer_is_refused_and_changes_nothing(wh: Warehouse) -> None:
    write(wh, quarantine_rows(5), RUN_2)
    with pytest.raises(StaleWriteError, match="run-1 started .* before run run-2"):
        write(wh, quarantine_rows(1), RUN_1)
    assert partition(wh).height == 5
    assert wh.query("SELECT count(*) AS n FROM ops.commit_log")["n"][0] == 1
    write(wh, quarantine_rows(6), RunIdentity("run-3", 3000.0))
    assert partition(wh).height == 6


@pytest.mark.unit
def test_the_same_run_may_write_again(wh: Warehouse) -> None:
    write(wh, quarantine_rows(5), RUN_2)
    write(wh, quarantine_rows(4), RUN_2)
    assert partition(wh).height == 4


@pytest.mark.unit
def test_an_empty_output_never_wipes_a_partition_by_accident(wh: Warehouse) -> None:
    write(wh, quarantine_rows(5), RUN_1)
    with pytest.raises(EmptyOutputError, match="zero rows"):
        write(wh, quarantine_rows(0), RUN_2)
    assert partition(wh).height == 5
    write(wh, quarantine_rows(0), RUN_2, allow_empty=True)
    assert partition(wh).height == 0


@pytest.mark.unit
def test_a_failed_write_rolls_back_every_table_of_the_transaction(wh: Warehouse) -> None:
    write(wh, quarantine_rows(5), RUN_1)
    bad_second = pl.DataFrame({"business_date": [DAY], "no_such_column": [1]})
    with pytest.raises(duckdb.Error):
        wh.commit(
            [
                PartitionWrite("staging.quarantine", DAY, quarantine_rows(1), amount_total_sql=None),
                PartitionWrite("ops.file_log", DAY, bad_second, amount_total_sql=None),
            ],
            RUN_2,
        )
    assert partition(wh).height == 5


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """An outside process, like an analyst's notebook, holding the warehouse open."""
    code = (
        f"import duckdb, time, sys; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds})"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_short_outside_lock_is_waited_out(wh: Warehouse, caplog: pytest.LogCaptureFixture) -> None:
    write(wh, quarantine_rows(1), RUN_1)
    holder = _hold_lock(wh.path, 1.0)
    try:
        write(wh, quarantine_rows(2), RUN_2)
    finally:
        holder.wait()
    assert partition(wh).height == 2
    assert f"locked by PID {holder.pid}" in caplog.text


def test_a_long_outside_lock_fails_naming_the_holder(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_seconds=1)
    write(wh, quarantine_rows(1), RUN_1)
    holder = _hold_lock(wh.path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(
            WarehouseLockTimeout, match=rf"locked by PID {holder.pid} \(.*python.*\).*Close that DuckDB session"
        ):
            write(wh, quarantine_rows(2), RUN_2)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert partition(wh).height == 1


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import date
    import polars as pl
    from batch_assets.storage import PartitionWrite, RunIdentity, Warehouse
    path, rows, run_id, started, rule = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
    frame = pl.LazyFrame({"n": pl.int_range(rows, eager=True)}).select(
        pl.lit(date(2026, 11, 21)).alias("business_date"), pl.lit("ledger").alias("source"),
        pl.format("ledger/{}.csv", pl.col("n") % 7).alias("file_name"), pl.col("n").alias("line_number"),
        pl.lit(rule).alias("rule"), pl.format("row {}", pl.col("n")).alias("detail"))
    print("writing", flush=True)
    Warehouse(path).commit([PartitionWrite("staging.quarantine", date(2026, 11, 21), frame, amount_total_sql=None)],
                           RunIdentity(run_id, started))
    print("committed", flush=True)
    """
)


def _run_writer(
    path: Path, rows: int, rule: str, run: RunIdentity, env: dict[str, str] | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(rows), run.run_id, str(run.started_at), rule],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.6, 1.0, 1.5])
def test_kill_9_during_a_large_write_leaves_old_or_new_never_a_mix(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "warehouse.duckdb"
    old = _run_writer(path, 200_000, "old", RUN_1)
    assert old.wait() == 0
    wh = Warehouse(path)
    before = wh.last_commit("staging.quarantine", DAY)

    new = _run_writer(path, 3_000_000, "new", RUN_2)
    assert new.stdout.readline().strip() == "writing"
    time.sleep(delay)
    new.send_signal(signal.SIGKILL)
    new.wait()

    rules = wh.query("SELECT rule, count(*) AS n FROM staging.quarantine GROUP BY rule").rows()
    after = wh.last_commit("staging.quarantine", DAY)
    assert rules in ([("old", 200_000)], [("new", 3_000_000)])
    assert (after.run_id, after.row_count) == (("run-1", 200_000) if rules[0][0] == "old" else ("run-2", 3_000_000))
    assert after.commit_seq == before.commit_seq + (0 if rules[0][0] == "old" else 1)


@pytest.mark.slow
def test_kill_9_inside_the_transaction_before_commit_keeps_the_old_partition(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    assert _run_writer(path, 1000, "old", RUN_1).wait() == 0
    crashed = _run_writer(path, 500_000, "new", RUN_2, env={CRASH_AT: "before_commit"})
    assert crashed.wait() == -signal.SIGKILL
    wh = Warehouse(path)
    assert wh.query("SELECT rule, count(*) AS n FROM staging.quarantine GROUP BY rule").rows() == [("old", 1000)]
    assert wh.last_commit("staging.quarantine", DAY).run_id == "run-1"
    assert _run_writer(path, 500_000, "new", RUN_2).wait() == 0
    assert wh.query("SELECT rule, count(*) AS n FROM staging.quarantine GROUP BY rule").rows() == [("new", 500_000)]


@pytest.mark.unit
def test_reads_grouped_in_one_block_open_the_file_once(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    wh.query("SELECT 1")  # the tables exist
    opened = []
    connect = wh._connect_with_retry
    monkeypatch.setattr(wh, "_connect_with_retry", lambda: opened.append(1) or connect())
    with wh.reading():
        assert wh.last_commit("staging.ledger", date(2026, 11, 3)) is None
        assert wh.query("SELECT 2 AS n")["n"].to_list() == [2]
        assert wh.landed_files("raw.ledger", date(2026, 11, 3)) == []
    assert len(opened) == 1
    wh.query("SELECT 3")
    assert len(opened) == 2  # outside a block, each read has a connection of its own again


@pytest.mark.unit
def test_a_warehouse_from_before_the_raw_zone_has_its_raw_rows_moved_into_it_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    rows = [
        (DAY, "ledger/ledger_2026-11-21.csv", 3, "T2", "A", "2026-11-21", None, "2.00", "EUR", None, None, None, None),
        (DAY, "ledger/ledger_2026-11-21.csv", 2, "T1", "A", "2026-11-21", None, "1.00", "EUR", "r", None, None, None),
        (DAY, "ledger/ledger_2026-11-21_b.csv", 2, "T3", "B", "2026-11-21", None, "x", "EUR", None, None, None, None),
    ]
    with duckdb.connect(str(path)) as conn:  # raw.ledger as a table, the way warehouses were written before
        conn.execute("CREATE SCHEMA raw; CREATE SCHEMA ops")
        conn.execute(f"CREATE TABLE raw.ledger ({column_definitions(TABLES['raw.ledger'])})")
        conn.executemany("INSERT INTO raw.ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    wh = Warehouse(path)
    moved = wh.query("SELECT * FROM raw.ledger ORDER BY file_name, line_number").rows()
    assert moved == sorted(rows, key=lambda r: (r[1], r[2]))
    assert [(f.file_name, f.row_count) for f in wh.landed_files("raw.ledger", DAY)] == [
        ("ledger/ledger_2026-11-21.csv", 2),
        ("ledger/ledger_2026-11-21_b.csv", 1),
    ]
    assert all(f.path.is_file() and f.path.is_relative_to(wh.raw_zone) for f in wh.landed_files("raw.ledger", DAY))
    kinds = dict(
        wh.query("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'raw'").rows()
    )
    assert kinds == {"ledger": "VIEW", "bank": "VIEW", "resolutions": "BASE TABLE"}
    # A second open finds nothing left to move, and the data folder can move: the view follows it.
    Warehouse(path).query("SELECT 1")
    (tmp_path / "elsewhere").mkdir()
    for item in (path, wh.raw_zone):
        item.rename(tmp_path / "elsewhere" / item.name)
    moved_again = Warehouse(tmp_path / "elsewhere" / path.name).query("SELECT * FROM raw.ledger ORDER BY ALL").rows()
    assert sorted(moved_again) == sorted(rows)


def test_a_step_skips_the_schema_statements_when_the_stamp_says_nothing_changed(tmp_path: Path) -> None:
    """The stamp spares each step the DDL; a warehouse that lost a table, or whose stamp is of another schema,
    is brought up to date again."""
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(path).connection():
        pass
    with duckdb.connect(str(path)) as conn:
        conn.execute("DROP TABLE recon.summary")
    with Warehouse(path).connection() as conn:
        missing = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'summary'").fetchone()
    assert missing == (0,), "an unchanged stamp skips the statements"
    with duckdb.connect(str(path)) as conn:
        conn.execute("UPDATE ops.schema_stamp SET stamp = 'an older schema'")
    with Warehouse(path).connection() as conn:
        restored = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'summary'").fetchone()
    assert restored == (1,)


@pytest.mark.unit
@pytest.mark.parametrize("count", [1, 7])
def test_an_export_in_buckets_holds_each_row_once_in_its_bucket_and_an_empty_bucket_has_the_columns(
    wh: Warehouse, tmp_path: Path, count: int
) -> None:
    # Three keys in seven buckets: at least four buckets are empty.
    rows = quarantine_rows(90).with_columns(rule=pl.Series([f"rule-{i % 3}" for i in range(90)]))
    write(wh, rows, RUN_1)
    write(wh, quarantine_rows(5, date(2026, 11, 20)), RUN_1, day=date(2026, 11, 20))
    buckets = [Bucket(index, count, "rule") for index in range(count)]
    folder = tmp_path / "export"
    folder.mkdir()

    paths = wh.export("staging.quarantine", DAY, folder, buckets, QUARANTINE_COLUMNS)

    assert len(paths) == count
    exported = [pl.read_parquet(path) for path in paths]
    assert all(frame.columns == QUARANTINE_COLUMNS for frame in exported)
    for bucket, frame in zip(buckets, exported, strict=True):
        expected = wh.read_partition("staging.quarantine", DAY, QUARANTINE_COLUMNS, bucket=bucket)
        assert frame.sort("line_number").equals(expected.sort("line_number"))
    assert sum(frame.height for frame in exported) == 90
    if count > 1:
        assert sum(frame.height == 0 for frame in exported) >= count - 3
