"""The warehouse: the one module that opens DuckDB, replaces partitions atomically and keeps the commit log."""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from batch_assets.faults import fault_point

# Every table the platform writes, as DuckDB column definitions. A table's name is its asset key: schema.table.
# Each is partitioned by business_date; a partition is replaced as a whole, in one transaction.
TABLES: dict[str, str] = {
    "raw.ledger": """
        business_date DATE NOT NULL, file_name VARCHAR NOT NULL, line_number BIGINT NOT NULL,
        txn_id VARCHAR, account_id VARCHAR, booking_date VARCHAR, value_date VARCHAR, amount VARCHAR,
        currency VARCHAR, reference VARCHAR, counterparty VARCHAR, description VARCHAR, extra VARCHAR""",
    "staging.ledger": """
        business_date DATE NOT NULL, txn_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
        booking_date DATE NOT NULL, value_date DATE NOT NULL, amount DECIMAL(18,2) NOT NULL,
        currency VARCHAR NOT NULL, reference VARCHAR, reference_norm VARCHAR, counterparty VARCHAR,
        description VARCHAR, file_name VARCHAR NOT NULL, line_number BIGINT NOT NULL""",
    "staging.quarantine": """
        business_date DATE NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL,
        line_number BIGINT NOT NULL, rule VARCHAR NOT NULL, detail VARCHAR,
        txn_id VARCHAR, account_id VARCHAR, booking_date VARCHAR, value_date VARCHAR, amount VARCHAR,
        currency VARCHAR, reference VARCHAR, counterparty VARCHAR, description VARCHAR""",
    "ops.file_log": """
        business_date DATE NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL, size_bytes BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR,
        row_count BIGINT, first_seen_at TIMESTAMPTZ NOT NULL""",
    "recon.matches": """
        business_date DATE NOT NULL, match_id VARCHAR NOT NULL, match_pass VARCHAR NOT NULL,
        account_id VARCHAR NOT NULL, currency VARCHAR NOT NULL, ledger_txn_id VARCHAR NOT NULL,
        bank_txn_id VARCHAR NOT NULL, ledger_amount DECIMAL(18,2) NOT NULL, bank_amount DECIMAL(18,2) NOT NULL,
        ledger_booking_date DATE NOT NULL, bank_booking_date DATE NOT NULL, reference_norm VARCHAR""",
    "recon.open_items": """
        business_date DATE NOT NULL, source VARCHAR NOT NULL, txn_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL, booking_date DATE NOT NULL, amount DECIMAL(18,2) NOT NULL,
        reference_norm VARCHAR, origin_date DATE NOT NULL, age_days INTEGER NOT NULL, carried BOOLEAN NOT NULL""",
    "recon.exceptions": """
        business_date DATE NOT NULL, source VARCHAR NOT NULL, txn_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
        currency VARCHAR NOT NULL, booking_date DATE NOT NULL, amount DECIMAL(18,2) NOT NULL,
        reference_norm VARCHAR, category VARCHAR NOT NULL, age_days INTEGER NOT NULL, is_break BOOLEAN NOT NULL,
        status VARCHAR NOT NULL, difference DECIMAL(18,2), counterpart_txn_id VARCHAR""",
    "recon.summary": """
        business_date DATE NOT NULL, account_id VARCHAR NOT NULL, currency VARCHAR NOT NULL,
        ledger_items BIGINT, bank_items BIGINT, matches_exact BIGINT, matches_amount_date BIGINT,
        matches_aggregate BIGINT, matched_ledger BIGINT, matched_bank BIGINT, open_ledger BIGINT, open_bank BIGINT,
        expired_ledger BIGINT, expired_bank BIGINT, timing_differences BIGINT, breaks_ledger BIGINT,
        breaks_bank BIGINT, amount_mismatches BIGINT, standing_breaks BIGINT, age_0_2 BIGINT, age_3_5 BIGINT,
        age_6_10 BIGINT, age_over_10 BIGINT, match_rate DOUBLE, break_value_ledger DECIMAL(18,2),
        break_value_bank DECIMAL(18,2), amount_mismatch_value DECIMAL(18,2)""",
}
TABLES["raw.bank"] = TABLES["raw.ledger"]
TABLES["staging.bank"] = TABLES["staging.ledger"]

COMMIT_LOG_TABLE = "ops.commit_log"
COMMIT_LOG_COLUMNS = """
    commit_seq BIGINT NOT NULL, asset_key VARCHAR NOT NULL, partition_key VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL, run_started_at DOUBLE NOT NULL, committed_at TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL, amount_total DECIMAL(38,2), fingerprint VARCHAR NOT NULL,
    input_hashes VARCHAR[] NOT NULL"""

# A raw amount counts towards a raw table's total only when it is a valid contract decimal.
RAW_AMOUNT_TOTAL_SQL = (
    r"sum(CASE WHEN regexp_full_match(trim(amount), '[+-]?[0-9]{1,16}(\.[0-9]{1,2})?') "
    r"THEN CAST(trim(amount) AS DECIMAL(18,2)) END)"
)

_LOCK_ERROR = re.compile(r"Could not set lock on file|Conflicting lock is held", re.IGNORECASE)
_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")


class WarehouseError(Exception):
    """A write or read of the warehouse that must not go ahead."""


class WarehouseLockTimeout(WarehouseError):
    """Another process held the warehouse for longer than the lock timeout. Transient: a retry may succeed."""


class StaleWriteError(WarehouseError):
    """A run that started before the partition's last committed writer tried to overwrite it."""


class DiskFullError(WarehouseError):
    """The disk under the warehouse or its scratch folder is full and nothing was committed. Not transient:
    waiting does not free space, so the step fails at once and says what to do."""


# ENOSPC and EDQUOT as DuckDB ("No space left on device") and Polars ("os error 28") word them.
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded|os error (28|122)\b", re.IGNORECASE)


def is_out_of_space(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says the disk is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _NO_SPACE.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(path: Path, doing: str) -> DiskFullError:
    """The error for running out of space while writing under `path`: which disk, and what to do."""
    return DiskFullError(
        f"No space left on device: the disk holding {path} ran out of space, so {doing} failed and nothing was "
        "committed; every day keeps its previous data. Free space on that disk, or point BATCH_ASSETS_WAREHOUSE "
        "and BATCH_ASSETS_SCRATCH at a bigger one, then re-execute the run."
    )


class EmptyOutputError(WarehouseError):
    """An empty output would have wiped a partition without the input saying 'zero rows'."""


@dataclass(frozen=True)
class RunIdentity:
    """The run a write belongs to; its start time orders writers for the stale-writer fence."""

    run_id: str
    started_at: float


@dataclass
class PartitionWrite:
    """One partition of one table to replace. `data` is a collected frame, a lazy frame (streamed through a
    Parquet spill file) or Parquet files already written."""

    table: str
    business_date: date
    data: pl.DataFrame | pl.LazyFrame | list[Path]
    allow_empty: bool = False
    input_hashes: Sequence[str] = ()
    amount_total_sql: str | None = "sum(amount)"


# The key a bucket of rows is chosen by, as SQL over the table's own columns. Matching never looks across
# accounts, so an account's items are always in one bucket. Duplicates are judged on txn_id with
# surrounding whitespace stripped (Polars' strip_chars: Unicode White_Space); removing every such character,
# inside too, can only put more values together, so two copies of one txn_id always share a bucket.
ACCOUNT_BUCKET_KEY = "account_id"
TXN_ID_BUCKET_KEY = r"regexp_replace(coalesce(txn_id, ''), '[\s\v\x{85}\p{Z}]', '', 'g')"


@dataclass(frozen=True)
class Bucket:
    """One of `count` slices of a partition: the rows whose hash of `key_sql` modulo `count` is `index`."""

    index: int
    count: int
    key_sql: str


def bucket_predicate(bucket: Bucket | None) -> str:
    """SQL that holds for the rows of `bucket` (always, without one); the key is a constant of this module."""
    if bucket is None or bucket.count <= 1:
        return "TRUE"
    return f"hash({bucket.key_sql}) % {int(bucket.count)} = {int(bucket.index)}"


def bucket_count(rows: int, bucket_rows: int) -> int:
    """How many buckets keep each near `bucket_rows` rows; 1 (a single pass) when the day is that small."""
    if bucket_rows <= 0:
        return 1
    return max(1, -(-rows // bucket_rows))


@dataclass(frozen=True)
class CommitRecord:
    """What one committed partition write contains, as recorded in ops.commit_log."""

    table: str
    business_date: date
    run_id: str
    row_count: int
    amount_total: Decimal | None
    fingerprint: str
    commit_seq: int
    committed_at: datetime = field(compare=False)


def quote_ident(name: str) -> str:
    """Quote one SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    """Quote a schema.table name taken from TABLES."""
    if table not in TABLES and table != COMMIT_LOG_TABLE:
        raise WarehouseError(f"unknown table {table!r}")
    schema, name = table.split(".", 1)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def describe_lock_holder(message: str) -> str:
    """Name the process that holds the lock, from DuckDB's error and /proc when we can read it."""
    found = _LOCK_HOLDER.search(message)
    if not found:
        return "another process"
    pid = found.group(1)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"PID {pid} ({command[:160]})" if command else f"PID {pid}"


class Warehouse:
    """A DuckDB file used in short sessions: connect with lock retries, do one thing, close."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout_seconds: float = 60.0,
        config: Mapping[str, Any] | None = None,
        scratch_dir: str | os.PathLike[str] | None = None,
        bucket_rows: int = 1_000_000,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.path = Path(path)
        self.bucket_rows = bucket_rows
        self.lock_timeout_seconds = lock_timeout_seconds
        # Nothing reads a table in the order its rows were inserted (reads that need an order ask for it),
        # and without that promise DuckDB inserts in parallel and holds less in memory while it does.
        self.config = {"preserve_insertion_order": False, **(config or {})}
        self.scratch_dir = Path(scratch_dir) if scratch_dir else self.path.parent / "scratch"
        self.log = log or logging.getLogger(__name__)
        self._bootstrapped = False

    # -- connections -----------------------------------------------------------------------------------

    def _connect_with_retry(self) -> duckdb.DuckDBPyConnection:
        """Open the file; while another process holds its lock, back off exponentially with jitter."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        attempt = 0
        while True:
            try:
                return duckdb.connect(str(self.path), config=self.config)
            except duckdb.IOException as error:
                if not _LOCK_ERROR.search(str(error)):
                    raise
                holder = describe_lock_holder(str(error))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockTimeout(
                        f"the warehouse {self.path} is locked by {holder} and stayed locked for "
                        f"{self.lock_timeout_seconds:g}s. Close that DuckDB session (or stop that process), "
                        f"then re-execute the run; BATCH_ASSETS_LOCK_TIMEOUT_SECONDS sets how long runs wait."
                    ) from error
                # Equal jitter: half the backoff fixed, half random, so waiting writers spread out.
                backoff = min(2.0, 0.05 * 2**attempt)
                delay = min(remaining, backoff / 2 + random.uniform(0, backoff / 2))
                self.log.warning(
                    f"warehouse {self.path.name} is locked by {holder}; retry {attempt + 1} in {delay:.2f}s "
                    f"({remaining:.0f}s left before giving up)"
                )
                time.sleep(delay)
                attempt += 1

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held only for the `with` block, so the file lock is short."""
        conn = self._connect_with_retry()
        try:
            if not self._bootstrapped:
                self._create_tables(conn)
                self._bootstrapped = True
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _create_tables(conn: duckdb.DuckDBPyConnection) -> None:
        statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(s)}" for s in ("raw", "staging", "recon", "ops")]
        statements += [f"CREATE TABLE IF NOT EXISTS {qualified(t)} ({cols})" for t, cols in TABLES.items()]
        statements.append(f"CREATE TABLE IF NOT EXISTS {qualified(COMMIT_LOG_TABLE)} ({COMMIT_LOG_COLUMNS})")
        # Breaks that left the candidates stay breaks until someone resolves them: the standing list.
        statements.append(
            "CREATE OR REPLACE VIEW recon.standing_breaks AS SELECT * FROM recon.exceptions WHERE status = 'expired'"
        )
        conn.execute(";\n".join(statements))

    # -- reads -----------------------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        frames: Mapping[str, pl.DataFrame] | None = None,
    ) -> pl.DataFrame:
        """Run one read-only statement and return its result as a Polars frame. `frames` are visible to the
        statement as tables under their names (for semi-joins against this run's rows)."""
        with self.connection() as conn:
            for name, frame in (frames or {}).items():
                conn.register(name, frame)
            return conn.sql(sql, params=params).pl()

    def buckets(self, rows: int, key_sql: str) -> list[Bucket]:
        """The buckets a stage takes `rows` rows a side in, so that no slice is much above `bucket_rows`."""
        count = bucket_count(rows, self.bucket_rows)
        return [Bucket(index, count, key_sql) for index in range(count)]

    def read_partition(
        self,
        table: str,
        business_date: date,
        columns: Sequence[str] | None = None,
        *,
        bucket: Bucket | None = None,
        ordered: bool = True,
    ) -> pl.DataFrame:
        """One business day of a table, or one bucket of it. `ordered=False` skips sorting every row on every
        column, for callers whose transforms put rows in their own order."""
        select = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        where = f"business_date = ? AND {bucket_predicate(bucket)}"
        order = " ORDER BY ALL" if ordered else ""
        return self.query(f"SELECT {select} FROM {qualified(table)} WHERE {where}{order}", [business_date])  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)

    def earlier_txn_ids(self, table: str, business_date: date, candidates: pl.DataFrame) -> pl.DataFrame:
        """Which of `candidates` (column txn_id, compared as given) were staged in `table` before `business_date`,
        and first when."""
        return self.query(
            f"SELECT txn_id, min(business_date) AS business_date FROM {qualified(table)} "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            "WHERE business_date < ? AND txn_id IN (SELECT txn_id FROM candidates) GROUP BY txn_id",
            [business_date],
            frames={"candidates": candidates.select("txn_id")},
        )

    def has_commits_before(self, table: str, business_date: date) -> bool:
        """Whether any partition of `table` before `business_date` was ever committed."""
        rows = self.query(
            f"SELECT count(*) AS n FROM {qualified(COMMIT_LOG_TABLE)} WHERE asset_key = ? AND partition_key < ?",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            [table, business_date.isoformat()],
        )
        return bool(rows["n"][0])

    def last_commit(self, table: str, business_date: date) -> CommitRecord | None:
        """The commit that made the partition what it is now, or None if it was never written."""
        rows = self.query(
            f"SELECT * FROM {qualified(COMMIT_LOG_TABLE)} WHERE asset_key = ? AND partition_key = ? "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            "ORDER BY commit_seq DESC LIMIT 1",
            [table, business_date.isoformat()],
        )
        if rows.is_empty():
            return None
        return _commit_record(rows.row(0, named=True))

    # -- writes ----------------------------------------------------------------------------------------

    def commit(self, writes: Sequence[PartitionWrite], run: RunIdentity, *, stage: str = "write") -> list[CommitRecord]:
        """Replace every partition in `writes` and log each in ops.commit_log, all in one transaction.

        Lazy inputs are first streamed to Parquet spill files, so the lock is held only for the copy and the
        commit. A stale run, or an empty output that was not declared legitimate, rolls everything back.
        """
        spills: list[Path] = []
        doing = "writing " + ", ".join(sorted({f"{w.table} for {w.business_date}" for w in writes}))
        try:
            sources = []
            for write in writes:
                if isinstance(write.data, pl.LazyFrame):
                    spill = self.spill_path(run.run_id)
                    spills.append(spill)
                    try:
                        write.data.sink_parquet(spill, compression="lz4", engine="streaming")
                    except Exception as error:
                        if is_out_of_space(error):
                            raise disk_full_error(self.scratch_dir, doing) from error
                        raise
                    sources.append(("read_parquet(?)", [str(spill)], None))
                elif isinstance(write.data, list):
                    sources.append(("read_parquet(?)", [[str(p) for p in write.data]], None))
                else:
                    sources.append(("incoming", [], write.data))
            with self.connection() as conn:
                conn.execute("BEGIN TRANSACTION")
                try:
                    records = [
                        self._replace_partition(conn, write, source, run)
                        for write, source in zip(writes, sources, strict=True)
                    ]
                    fault_point("before_commit", stage)
                    conn.execute("COMMIT")
                except BaseException as error:
                    try:
                        conn.execute("ROLLBACK")
                    except duckdb.Error:
                        pass  # a COMMIT that failed has ended the transaction; its error is the one to report
                    if is_out_of_space(error):
                        raise disk_full_error(self.path, doing) from error
                    raise
            return records
        finally:
            for spill in spills:
                spill.unlink(missing_ok=True)

    @contextmanager
    def spill_files(self, run_id: str) -> Iterator[Callable[[pl.DataFrame], Path]]:
        """A writer of Parquet spill files for a commit to copy in: `spill(frame)` returns the new file's path.
        Every file it wrote is deleted when the `with` block ends, committed or not."""
        written: list[Path] = []

        def spill(frame: pl.DataFrame) -> Path:
            path = self.spill_path(run_id)
            written.append(path)
            frame.write_parquet(path, compression="lz4")
            return path

        try:
            yield spill
        finally:
            for path in written:
                path.unlink(missing_ok=True)

    def spill_path(self, run_id: str) -> Path:
        """A fresh Parquet file name in the scratch folder, for streaming a result before it is committed."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        return self.scratch_dir / f"{run_id}-{uuid.uuid4().hex}.parquet"

    def _replace_partition(
        self,
        conn: duckdb.DuckDBPyConnection,
        write: PartitionWrite,
        source: tuple[str, list[Any], pl.DataFrame | None],
        run: RunIdentity,
    ) -> CommitRecord:
        table = qualified(write.table)
        partition_key = write.business_date.isoformat()
        last = conn.execute(
            f"SELECT run_id, run_started_at FROM {qualified(COMMIT_LOG_TABLE)} "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            "WHERE asset_key = ? AND partition_key = ? ORDER BY commit_seq DESC LIMIT 1",
            [write.table, partition_key],
        ).fetchone()
        if last is not None and last[0] != run.run_id and last[1] > run.started_at:
            raise StaleWriteError(
                f"refused to write {write.table} for {partition_key}: run {run.run_id} started at "
                f"{_iso(run.started_at)}, before run {last[0]} (started {_iso(last[1])}) committed this "
                "partition. This run is stale; the newer data stays."
            )

        conn.execute(f"DELETE FROM {table} WHERE business_date = ?", [write.business_date])  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        relation, params, frame = source
        if frame is not None:
            conn.register("incoming", frame)
        try:
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {relation}", params)  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        finally:
            if frame is not None:
                conn.unregister("incoming")

        amount_sql = write.amount_total_sql or "NULL"
        row_count, amount_total, fingerprint = conn.execute(
            f"SELECT count(*), CAST({amount_sql} AS DECIMAL(38,2)), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            f"FROM {table} t WHERE business_date = ?",
            [write.business_date],
        ).fetchone()
        if row_count == 0 and not write.allow_empty:
            raise EmptyOutputError(
                f"refused to replace {write.table} for {partition_key} with zero rows: the input did not say "
                "'zero rows' (a header-only file), so an empty result means something went wrong upstream."
            )
        # Order-independent content hash: equal fingerprints mean a re-run produced identical rows.
        fingerprint = f"{row_count}:{int(fingerprint):x}"
        committed_at = datetime.now(UTC)
        (commit_seq,) = conn.execute(
            f"SELECT coalesce(max(commit_seq), 0) + 1 FROM {qualified(COMMIT_LOG_TABLE)}"  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        ).fetchone()
        conn.execute(
            f"INSERT INTO {qualified(COMMIT_LOG_TABLE)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            [
                commit_seq,
                write.table,
                partition_key,
                run.run_id,
                run.started_at,
                committed_at,
                row_count,
                amount_total,
                fingerprint,
                sorted(set(write.input_hashes)),
            ],
        )
        return CommitRecord(
            table=write.table,
            business_date=write.business_date,
            run_id=run.run_id,
            row_count=row_count,
            amount_total=amount_total,
            fingerprint=fingerprint,
            commit_seq=commit_seq,
            committed_at=committed_at,
        )


def _commit_record(row: Mapping[str, Any]) -> CommitRecord:
    return CommitRecord(
        table=row["asset_key"],
        business_date=date.fromisoformat(row["partition_key"]),
        run_id=row["run_id"],
        row_count=row["row_count"],
        amount_total=row["amount_total"],
        fingerprint=row["fingerprint"],
        commit_seq=row["commit_seq"],
        committed_at=row["committed_at"],
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
