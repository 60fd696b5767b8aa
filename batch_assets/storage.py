"""The warehouse: the one module that opens DuckDB, replaces partitions atomically and keeps the commit log."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from batch_assets.faults import fault_point
from batch_assets.transforms.contract import QUARANTINE_SCHEMA, RAW_SCHEMA, SOURCES, STAGED_SCHEMA
from batch_assets.transforms.deliveries import FILE_LOG_SCHEMA
from batch_assets.transforms.exceptions import EXCEPTION_SCHEMA
from batch_assets.transforms.matching import MATCH_SCHEMA, OPEN_ITEM_SCHEMA
from batch_assets.transforms.resolutions import RAW_RESOLUTION_SCHEMA, RESOLUTION_LOG_SCHEMA, RESOLVED_ITEM_SCHEMA
from batch_assets.transforms.summary import SUMMARY_SCHEMA


@dataclass(frozen=True)
class Table:
    """A warehouse table, declared once: the Polars schema its transform casts to, and which columns may be
    null. The DuckDB columns are derived from it. A `landed` table is a view over Parquet files in the raw
    zone, one per delivered file, listed in ops.raw_files."""

    schema: Mapping[str, pl.DataType]
    nullable: frozenset[str] = frozenset()
    landed: bool = False
    # Figures the commit measures in the same pass as the fingerprint, for the checks to read instead of
    # scanning the day again: name -> one SQL aggregate over the partition's rows.
    measures: Mapping[str, str] | None = None


def column_definitions(table: Table) -> str:
    """The table's columns as DuckDB DDL: name, type, and NOT NULL unless nullable."""
    return ", ".join(
        f"{quote_ident(name)} {duckdb_type(dtype)}{'' if name in table.nullable else ' NOT NULL'}"
        for name, dtype in table.schema.items()
    )


def duckdb_type(dtype: pl.DataType) -> str:
    """The DuckDB type that holds a Polars type exactly (money stays a decimal)."""
    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    names = {pl.String: "VARCHAR", pl.Date: "DATE", pl.Int64: "BIGINT", pl.Int32: "INTEGER"}
    names |= {pl.Boolean: "BOOLEAN", pl.Float64: "DOUBLE"}
    return names[dtype.base_type()]


def _nullable_except(schema: Mapping[str, pl.DataType], *required: str) -> frozenset[str]:
    return frozenset(schema) - set(required)


def _sides_of_a_match() -> set[str]:
    return {f"{side}_{field}" for side in ("ledger", "bank") for field in ("txn_id", "amount", "booking_date")}


# Every table the platform writes. A table's name is its asset key: schema.table. Each is partitioned by
# business_date; a partition is replaced as a whole, in one transaction.
TABLES: dict[str, Table] = {
    **{
        f"raw.{source}": Table(
            RAW_SCHEMA, _nullable_except(RAW_SCHEMA, "business_date", "file_name", "line_number"), landed=True
        )
        for source in SOURCES
    },
    **{
        f"staging.{source}": Table(
            STAGED_SCHEMA,
            frozenset({"reference", "reference_norm", "counterparty", "description"}),
            measures={"rows_by_file": "histogram(file_name)", "distinct_txn_ids": "count(DISTINCT txn_id)"},
        )
        for source in SOURCES
    },
    "staging.quarantine": Table(
        QUARANTINE_SCHEMA,
        _nullable_except(QUARANTINE_SCHEMA, "business_date", "source", "file_name", "line_number", "rule"),
        measures={"rows_by_file": "histogram(file_name)", "rows_by_source": "histogram(source)"},
    ),
    "raw.resolutions": Table(
        RAW_RESOLUTION_SCHEMA, _nullable_except(RAW_RESOLUTION_SCHEMA, "business_date", "file_name", "line_number")
    ),
    "ops.file_log": Table(FILE_LOG_SCHEMA, frozenset({"reason", "row_count"})),
    "ops.resolution_log": Table(
        RESOLUTION_LOG_SCHEMA,
        _nullable_except(RESOLUTION_LOG_SCHEMA, "business_date", "resolution_id", "status", "file_name", "run_id"),
        measures={"by_status": "histogram(status)"},
    ),
    "recon.resolved_items": Table(
        RESOLVED_ITEM_SCHEMA,
        frozenset({"reference_norm"}),
        measures={
            "revived_by_source": "histogram(source) FILTER (revived)",
            "written_off_by_source": "histogram(source) FILTER (action = 'write_off')",
        },
    ),
    "recon.matches": Table(
        MATCH_SCHEMA,
        # A manual match zips its sides, so a row may lack one; only manual matches carry a resolution.
        frozenset({"reference_norm", "resolution_id", "write_off_amount", *_sides_of_a_match()}),
        measures={
            "ledger_rows": "count(ledger_txn_id)",
            "distinct_ledger_txn_ids": "count(DISTINCT ledger_txn_id)",
            "distinct_bank_txn_ids": "count(DISTINCT bank_txn_id)",
            # More (bank item, match) pairs than bank items means a bank item is in several matches.
            "bank_match_pairs": "count(DISTINCT (bank_txn_id, match_id)) FILTER (bank_txn_id IS NOT NULL)",
        },
    ),
    "recon.open_items": Table(
        OPEN_ITEM_SCHEMA,
        frozenset({"reference_norm"}),
        measures={
            "carried_by_source": "histogram(source) FILTER (carried)",
            "expired_by_source": "histogram(source) FILTER (NOT carried)",
        },
    ),
    "recon.exceptions": Table(EXCEPTION_SCHEMA, frozenset({"reference_norm", "difference", "counterpart_txn_id"})),
    "recon.summary": Table(SUMMARY_SCHEMA, _nullable_except(SUMMARY_SCHEMA, "business_date", "account_id", "currency")),
}

# What each landed raw partition holds: one Parquet file per delivered file, named by its content.
RAW_FILES_TABLE = "ops.raw_files"
RAW_FILES_COLUMNS = """
    business_date DATE NOT NULL, source VARCHAR NOT NULL, file_name VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
    path VARCHAR NOT NULL, row_count BIGINT NOT NULL, amount_total DECIMAL(38,2)"""

# Breaks that left the candidates stay breaks until someone resolves them: the standing list, a view.
STANDING_BREAKS = "recon.standing_breaks"

# The schema this warehouse was last brought up to, so that a step skips the DDL when nothing changed.
SCHEMA_STAMP_TABLE = "ops.schema_stamp"

COMMIT_LOG_TABLE = "ops.commit_log"
COMMIT_LOG_COLUMNS = """
    commit_seq BIGINT NOT NULL, asset_key VARCHAR NOT NULL, partition_key VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL, run_started_at DOUBLE NOT NULL, committed_at TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL, amount_total DECIMAL(38,2), fingerprint VARCHAR NOT NULL,
    input_hashes VARCHAR[] NOT NULL, figures VARCHAR"""

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


def disk_full_error(path: Path, doing: str, settings: str = "BATCH_ASSETS_WAREHOUSE") -> DiskFullError:
    """The error for running out of space while writing under `path`: which disk, and what to do (`settings`
    name what moves that path to a bigger disk)."""
    return DiskFullError(
        f"No space left on device: the disk holding {path} ran out of space, so {doing} failed and nothing was "
        f"committed; every day keeps its previous data. Free space on that disk, or point {settings} at a bigger "
        "one, then re-execute the run."
    )


class EmptyOutputError(WarehouseError):
    """An empty output would have wiped a partition without the input saying 'zero rows'."""


@dataclass(frozen=True)
class RunIdentity:
    """The run a write belongs to; its start time orders writers for the stale-writer fence."""

    run_id: str
    started_at: float


@dataclass(frozen=True)
class LandedFile:
    """One delivered file's rows (RAW_SCHEMA) as a Parquet file in the raw zone, and what landing counted."""

    file_name: str
    sha256: str
    path: Path
    row_count: int
    amount_total: Decimal | None


@dataclass
class PartitionWrite:
    """One partition of one table to replace. `data` is a collected frame, a lazy frame (streamed through a
    Parquet spill file) or Parquet files already written; for a landed table, the landed files."""

    table: str
    business_date: date
    data: pl.DataFrame | pl.LazyFrame | list[Path] | list[LandedFile]
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
    # What the commit measured of the rows it wrote (Table.measures), None for commits from before figures.
    figures: Mapping[str, Any] | None = field(default=None, compare=False)


def quote_ident(name: str) -> str:
    """Quote one SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Quote one SQL string literal, for the statements that take no bound values (view bodies)."""
    return "'" + text.replace("'", "''") + "'"


def qualified(table: str) -> str:
    """Quote a schema.table name taken from TABLES."""
    if table not in TABLES and table not in (COMMIT_LOG_TABLE, RAW_FILES_TABLE, SCHEMA_STAMP_TABLE, STANDING_BREAKS):
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
        self._held: duckdb.DuckDBPyConnection | None = None

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
    def reading(self) -> Iterator[None]:
        """Hold one connection for a group of reads, which then pay for one open of the file (20 to 60 ms)
        instead of one each. Only reads belong inside: other processes wait for the file for the whole block."""
        if self._held is not None:
            yield
            return
        with self.connection() as conn:
            self._held = conn
            try:
                yield
            finally:
                self._held = None

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held only for the `with` block, so the file lock is short (a cursor of the connection
        `reading` holds, inside one)."""
        if self._held is not None:
            with self._held.cursor() as cursor:
                yield cursor
            return
        conn = self._connect_with_retry()
        try:
            if not self._bootstrapped:
                self._bootstrap(conn)
                self._bootstrapped = True
            yield conn
        finally:
            conn.close()

    def _schema_statements(self) -> list[str]:
        statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(s)}" for s in ("raw", "staging", "recon", "ops")]
        statements += [
            f"CREATE TABLE IF NOT EXISTS {qualified(name)} ({column_definitions(table)})"
            for name, table in TABLES.items()
            if not table.landed
        ]
        statements.append(f"CREATE TABLE IF NOT EXISTS {qualified(COMMIT_LOG_TABLE)} ({COMMIT_LOG_COLUMNS})")
        # Warehouses from before the commit's figures gain the column; their older commits have none.
        statements.append(f"ALTER TABLE {qualified(COMMIT_LOG_TABLE)} ADD COLUMN IF NOT EXISTS figures VARCHAR")
        statements.append(f"CREATE TABLE IF NOT EXISTS {qualified(RAW_FILES_TABLE)} ({RAW_FILES_COLUMNS})")
        # Warehouses from before a column was declared gain it (every added column is nullable).
        statements += [
            f"ALTER TABLE {qualified(name)} ADD COLUMN IF NOT EXISTS {quote_ident(column)} {duckdb_type(dtype)}"
            for name, table in TABLES.items()
            if not table.landed
            for column, dtype in table.schema.items()
            if column in table.nullable
        ]
        statements += [
            f"ALTER TABLE {qualified('recon.matches')} ALTER COLUMN {quote_ident(column)} DROP NOT NULL"
            for column in sorted(_sides_of_a_match())
        ]
        # An expired item stands until a resolution revives it (names it, or reverses one that held it): the
        # day it was revived, for a reader to keep the breaks that still stood on a given day.
        statements.append(
            f"CREATE OR REPLACE VIEW {qualified(STANDING_BREAKS)} AS "  # noqa: S608 (a name of this module)
            "SELECT e.*, (SELECT min(r.business_date) FROM recon.resolved_items r WHERE r.source = e.source "
            "AND r.txn_id = e.txn_id AND r.business_date > e.business_date) AS revived_on "
            "FROM recon.exceptions e WHERE e.status = 'expired'"
        )
        statements.append(f"CREATE TABLE IF NOT EXISTS {qualified(SCHEMA_STAMP_TABLE)} (stamp VARCHAR NOT NULL)")
        return statements

    def _bootstrap(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Bring the file's tables, views and migrations up to this code's schema. That costs 30 ms or more on
        every step, so a stamp of the schema (and of where the raw zone is) says when there is nothing to do."""
        statements = self._schema_statements()
        stamp = hashlib.sha256("\0".join([*statements, str(self.raw_zone.resolve())]).encode()).hexdigest()
        try:
            found = conn.execute(f"SELECT stamp FROM {qualified(SCHEMA_STAMP_TABLE)}").fetchall()  # noqa: S608 (a table name)
        except duckdb.CatalogException:
            found = []
        if found == [(stamp,)]:
            return
        conn.execute(";\n".join(statements))
        for name, table in TABLES.items():
            if table.landed:
                self._migrate_raw_table(conn, name)
                self._refresh_landed_view(conn, name, only_if_moved=True)
        conn.execute(
            f"BEGIN TRANSACTION; DELETE FROM {qualified(SCHEMA_STAMP_TABLE)}; "  # noqa: S608 (a table name)
            f"INSERT INTO {qualified(SCHEMA_STAMP_TABLE)} VALUES ({quote_literal(stamp)}); COMMIT"
        )

    # -- the raw zone ----------------------------------------------------------------------------------

    @property
    def raw_zone(self) -> Path:
        """Where landed files live, beside the warehouse file: <source>/<business date>/<name>.<sha>.parquet."""
        return self.path.parent / f"{self.path.stem}.raw"

    def landed_path(self, table: str, business_date: date, file_name: str, sha256: str) -> Path:
        """Where a delivered file's rows land: named by the file's name and content, so a re-run of the same
        bytes writes the same file again. The readable part of the name is cut short: names may be long."""
        identity = hashlib.sha256(f"{file_name}\0{sha256}".encode()).hexdigest()[:16]
        stem = Path(file_name).name.rsplit(".", 1)[0][:64]
        return self.raw_zone / table.split(".", 1)[1] / business_date.isoformat() / f"{stem}.{identity}.parquet"

    def landed_files(self, table: str, business_date: date) -> list[LandedFile]:
        """The files the current raw partition holds, in file-name order (so rows come in (file, line) order)."""
        rows = self.query(
            f"SELECT file_name, sha256, path, row_count, amount_total FROM {qualified(RAW_FILES_TABLE)} "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            "WHERE business_date = ? AND source = ? ORDER BY file_name",
            [business_date, table.split(".", 1)[1]],
        )
        return [
            LandedFile(name, sha, self.raw_zone / path, count, total)
            for name, sha, path, count, total in rows.iter_rows()
        ]

    def _refresh_landed_view(self, conn: duckdb.DuckDBPyConnection, table: str, *, only_if_moved: bool) -> None:
        """Point the view `table` at every landed file of its source. Paths are absolute (any DuckDB session can
        read the view) and rebuilt when the data folder has moved."""
        source = table.split(".", 1)[1]
        paths = [
            str(self.raw_zone / path)
            for (path,) in conn.execute(
                f"SELECT path FROM {qualified(RAW_FILES_TABLE)} WHERE source = ? ORDER BY business_date, file_name",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                [source],
            ).fetchall()
        ]
        schema, name = table.split(".", 1)
        if only_if_moved:
            current = conn.execute(
                "SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?", [schema, name]
            ).fetchall()
            if current and (not paths or quote_literal(paths[0]) in current[0][0]):
                return
        columns = TABLES[table].schema
        if paths:
            listed = ", ".join(quote_literal(path) for path in paths)
            body = f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM read_parquet([{listed}])"  # noqa: S608 (a view takes no bound values: paths quoted as literals)
        else:
            typed_nulls = ", ".join(f"CAST(NULL AS {duckdb_type(t)}) AS {quote_ident(c)}" for c, t in columns.items())
            body = f"SELECT {typed_nulls} WHERE false"
        conn.execute(f"CREATE OR REPLACE VIEW {qualified(table)} AS {body}")

    def _migrate_raw_table(self, conn: duckdb.DuckDBPyConnection, table: str) -> None:
        """A warehouse written before the raw zone keeps raw rows in a table: land each file of it as Parquet."""
        schema, name = table.split(".", 1)
        found = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [schema, name]
        ).fetchall()
        if not found[0][0]:
            return
        groups = conn.execute(
            f"SELECT business_date, file_name, count(*) FROM {qualified(table)} GROUP BY ALL ORDER BY ALL"  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        ).fetchall()
        conn.execute("BEGIN TRANSACTION")
        for business_date, file_name, rows in groups:
            found = conn.execute(
                f"SELECT max(sha256) FROM {qualified('ops.file_log')} WHERE business_date = ? AND file_name = ? "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                "AND status = 'ingested'",
                [business_date, file_name],
            ).fetchall()
            sha256 = found[0][0] or hashlib.sha256(f"{business_date}/{file_name}".encode()).hexdigest()
            path = self.landed_path(table, business_date, file_name, sha256)
            path.parent.mkdir(parents=True, exist_ok=True)
            selected = f"SELECT * FROM {qualified(table)} WHERE business_date = {quote_literal(str(business_date))} "  # noqa: S608 (a date and a file name that fits the contract, quoted)
            selected += f"AND file_name = {quote_literal(file_name)} ORDER BY line_number"
            conn.execute(f"COPY ({selected}) TO {quote_literal(str(path))} (FORMAT parquet)")
            conn.execute(
                f"INSERT INTO {qualified(RAW_FILES_TABLE)} VALUES (?, ?, ?, ?, ?, ?, NULL)",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                [business_date, name, file_name, sha256, str(path.relative_to(self.raw_zone)), rows],
            )
        conn.execute(f"DROP TABLE {qualified(table)}")
        self._refresh_landed_view(conn, table, only_if_moved=False)
        conn.execute("COMMIT")
        self.log.info(f"moved {len(groups)} files of the table {table} into the raw zone {self.raw_zone}")

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

    def export(
        self,
        table: str,
        business_date: date,
        folder: Path,
        buckets: Sequence[Bucket],
        columns: Sequence[str] | None = None,
        *,
        before: bool = False,
    ) -> list[Path]:
        """Copy one business day of a table (with `before`, every earlier day) to one Parquet file per bucket
        under `folder`, for steps that never open the warehouse: one pass over the day, whatever the buckets."""
        select = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        day = f"business_date {'<' if before else '='} {quote_literal(business_date.isoformat())}"
        if table == STANDING_BREAKS:  # the breaks that still stood on the day
            day += f" AND (revived_on IS NULL OR revived_on > {quote_literal(business_date.isoformat())})"
        source = f"FROM {qualified(table)} WHERE {day}"
        parquet = "FORMAT parquet, COMPRESSION lz4"
        with self.connection() as conn:
            if len(buckets) == 1 and buckets[0].count <= 1:
                path = folder / "bucket-0000.parquet"
                conn.execute(f"COPY (SELECT {select} {source}) TO {quote_literal(str(path))} ({parquet})")  # noqa: S608 (a date, a path and names, quoted; test_sql_binding.py checks what is spliced)
                return [path]
            count, key = int(buckets[0].count), buckets[0].key_sql
            parts = folder / "parts"
            conn.execute(
                f"COPY (SELECT {select}, hash({key}) % {count} AS __bucket {source}) "  # noqa: S608 (as above)
                f"TO {quote_literal(str(parts))} ({parquet}, PARTITION_BY (__bucket))"
            )
            paths = []
            for bucket in buckets:
                written = sorted((parts / f"__bucket={bucket.index}").glob("*.parquet"))
                path = folder / f"bucket-{bucket.index:04d}.parquet"
                if len(written) == 1:
                    written[0].rename(path)
                else:  # an empty bucket gets an empty file of the same columns; several parts become one file
                    query = (
                        f"SELECT {select} FROM read_parquet([{', '.join(quote_literal(str(p)) for p in written)}])"  # noqa: S608 (paths DuckDB wrote, quoted)
                        if written
                        else f"SELECT {select} {source} AND FALSE"
                    )
                    conn.execute(f"COPY ({query}) TO {quote_literal(str(path))} ({parquet})")
                paths.append(path)
            return paths

    def partition_figures(self, tables: Sequence[str], business_date: date) -> dict[str, dict[str, Any]]:
        """For each table, what its current partition holds: `rows` and the Table.measures its last commit
        measured (a commit from before figures has them measured now); {} for a partition never written. A
        landed partition's rows per file come from its landed files."""
        found: dict[str, dict[str, Any]] = {}
        with self.connection() as conn:
            for table in tables:
                last = conn.execute(
                    f"SELECT row_count, figures FROM {qualified(COMMIT_LOG_TABLE)} WHERE asset_key = ? "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                    "AND partition_key = ? ORDER BY commit_seq DESC LIMIT 1",
                    [table, business_date.isoformat()],
                ).fetchall()
                if not last:
                    found[table] = {}
                elif TABLES[table].landed:
                    rows = conn.execute(
                        f"SELECT file_name, row_count FROM {qualified(RAW_FILES_TABLE)} "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                        "WHERE business_date = ? AND source = ?",
                        [business_date, table.split(".", 1)[1]],
                    ).fetchall()
                    found[table] = {"rows": last[0][0], "rows_by_file": dict(rows)}
                elif last[0][1] is not None:
                    found[table] = {"rows": last[0][0], **json.loads(last[0][1])}
                else:
                    found[table] = {"rows": last[0][0], **self._measure(conn, table, business_date)}
        return found

    @staticmethod
    def _measure(conn: duckdb.DuckDBPyConnection, table: str, business_date: date) -> dict[str, Any]:
        declared = TABLES[table].measures or {}
        if not declared:
            return {}
        values = conn.execute(
            f"SELECT {', '.join(declared.values())} FROM {qualified(table)} WHERE business_date = ?",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            [business_date],
        ).fetchone()
        return _figures(declared, values)

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
                elif TABLES[write.table].landed:
                    sources.append(("", [], None))
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
        if TABLES[write.table].landed:
            row_count, amount_total, fingerprint, figures = self._replace_landed(conn, write)
        else:
            row_count, amount_total, fingerprint, figures = self._replace_rows(conn, write, source)
        if row_count == 0 and not write.allow_empty:
            raise EmptyOutputError(
                f"refused to replace {write.table} for {partition_key} with zero rows: the input did not say "
                "'zero rows' (a header-only file), so an empty result means something went wrong upstream."
            )
        committed_at = datetime.now(UTC)
        (commit_seq,) = conn.execute(
            f"SELECT coalesce(max(commit_seq), 0) + 1 FROM {qualified(COMMIT_LOG_TABLE)}"  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        ).fetchone()
        conn.execute(
            f"INSERT INTO {qualified(COMMIT_LOG_TABLE)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
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
                json.dumps(figures, sort_keys=True),
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
            figures=figures,
        )

    def _replace_rows(
        self,
        conn: duckdb.DuckDBPyConnection,
        write: PartitionWrite,
        source: tuple[str, list[Any], pl.DataFrame | None],
    ) -> tuple[int, Decimal | None, str, dict[str, Any]]:
        """Delete the partition and insert the new rows; (rows, amount total, fingerprint, figures) of what is
        now there, measured in one pass."""
        table = qualified(write.table)
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
        declared = TABLES[write.table].measures or {}
        measured = "".join(f", {aggregate}" for aggregate in declared.values())
        row_count, amount_total, fingerprint, *values = conn.execute(
            f"SELECT count(*), CAST({amount_sql} AS DECIMAL(38,2)), CAST(coalesce(sum(hash(t)), 0) AS VARCHAR)"  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            f"{measured} FROM {table} t WHERE business_date = ?",
            [write.business_date],
        ).fetchone()
        figures = _figures(declared, values)
        # Order-independent content hash: equal fingerprints mean a re-run produced identical rows.
        return row_count, amount_total, f"{row_count}:{int(fingerprint):x}", figures

    def _replace_landed(
        self, conn: duckdb.DuckDBPyConnection, write: PartitionWrite
    ) -> tuple[int, Decimal | None, str]:
        """List the landed files as the partition and point the view at them; nothing is copied. The files are
        named by their content, so the fingerprint comes from the names and the delivered bytes' hashes."""
        files: list[LandedFile] = list(write.data)  # type: ignore[arg-type]
        missing = [f.file_name for f in files if not f.path.is_file()]
        if missing:
            raise WarehouseError(
                f"the landed rows of {', '.join(missing)} are gone from {self.raw_zone} before the commit "
                "(deleted by hand?); nothing was committed: re-execute the run to land them again"
            )
        source = write.table.split(".", 1)[1]
        conn.execute(
            f"DELETE FROM {qualified(RAW_FILES_TABLE)} WHERE business_date = ? AND source = ?",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            [write.business_date, source],
        )
        if files:
            conn.executemany(
                f"INSERT INTO {qualified(RAW_FILES_TABLE)} VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                [
                    [
                        write.business_date,
                        source,
                        f.file_name,
                        f.sha256,
                        str(f.path.relative_to(self.raw_zone)),
                        f.row_count,
                        f.amount_total,
                    ]
                    for f in files
                ],
            )
        self._refresh_landed_view(conn, write.table, only_if_moved=False)
        row_count = sum(f.row_count for f in files)
        totals = [f.amount_total for f in files if f.amount_total is not None]
        content = hashlib.sha256()
        for f in sorted(files, key=lambda f: f.file_name):
            content.update(f"{f.file_name}\0{f.sha256}\n".encode())
        figures = {"rows_by_file": {f.file_name: f.row_count for f in files}}
        total = sum(totals, Decimal(0)) if totals else None
        return row_count, total, f"{row_count}:{content.hexdigest()[:16]}", figures


def _figures(declared: Mapping[str, str], values: Sequence[Any]) -> dict[str, Any]:
    # A histogram of no rows is NULL; an empty map says the same without a special case in every reader.
    return {
        name: {} if value is None and aggregate.startswith("histogram") else value
        for (name, aggregate), value in zip(declared.items(), values, strict=True)
    }


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
        figures=json.loads(row["figures"]) if row.get("figures") else None,
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
