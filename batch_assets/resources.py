"""Dagster resources: the warehouse, the landing zone, thresholds, matching and the calendar, each configured from EnvVars."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from batch_assets import settings
from batch_assets.progress import ProgressResource
from batch_assets.storage import RunIdentity, Warehouse
from batch_assets.transforms.matching import MatchParameters


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse file. dagster-duckdb holds the configuration; storage.py owns the
    transactions and the lock retries (the stock retry waits ~100 s in silence, ours logs the holder)."""

    lock_timeout_seconds: str = Field(default="60", description="seconds to wait for another process's lock")
    threads: str = Field(default="0", description="DuckDB threads; 0 means DuckDB's default")
    memory_limit: str = Field(default="", description="DuckDB memory_limit such as '2GB'; empty for default")
    scratch_dir: str = Field(default="", description="spill folder; empty means <warehouse folder>/scratch")
    bucket_rows: str = Field(default="1000000", description="rows a side per bucket of validate and match")

    def open(self, log: Any = None) -> Warehouse:
        config: dict[str, Any] = dict(self.connection_config)
        if int(self.threads) > 0:
            config["threads"] = int(self.threads)
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        return Warehouse(
            self.database,
            lock_timeout_seconds=float(self.lock_timeout_seconds),
            config=config,
            scratch_dir=self.scratch_dir or None,
            bucket_rows=int(self.bucket_rows),
            log=log,
        )


class LandingZoneResource(dg.ConfigurableResource):
    """The folder where ledger/ and bank/ files land."""

    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)


class ThresholdsResource(dg.ConfigurableResource):
    """Check thresholds, as decimal strings (money and rates are never floats here). Past WARN a check warns;
    past ERROR it fails."""

    quarantine_rate_warn: str = "0.01"
    quarantine_rate_error: str = "0.05"
    match_rate_warn: str = "0.85"
    match_rate_error: str = "0.60"
    break_value_warn: str = "1000000.00"
    break_value_error: str = "10000000.00"
    amount_mismatch_warn: str = "1000"
    amount_mismatch_error: str = "10000"

    def value(self, name: str) -> Decimal:
        """A threshold as an exact decimal."""
        raw = getattr(self, name)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise dg.Failure(f"threshold {name}={raw!r} is not a decimal number") from None
        return value


class MatchingResource(dg.ConfigurableResource):
    """The matching contract's day counts."""

    carry_days: int = 5
    date_tolerance_days: int = 2
    grace_days: int = 2

    def parameters(self) -> MatchParameters:
        if min(self.carry_days, self.date_tolerance_days, self.grace_days) < 0:
            raise dg.Failure("carry_days, date_tolerance_days and grace_days must not be negative")
        return MatchParameters(self.carry_days, self.date_tolerance_days, self.grace_days)


class CalendarResource(dg.ConfigurableResource):
    """When the business day is reconciled: the time zone, the schedule's local time and the SLA deadline."""

    timezone: str = "UTC"
    schedule_time: str = "06:00"
    sla_deadline: str = "09:00"

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise dg.Failure(f"{settings.TIMEZONE}={self.timezone!r} is not an IANA time zone") from None

    def local_time(self, name: str) -> time:
        """`schedule_time` or `sla_deadline` as a time of day."""
        raw = getattr(self, name)
        try:
            return time.fromisoformat(raw)
        except ValueError:
            raise dg.Failure(f"{name}={raw!r} is not a local time such as 06:00") from None

    def now(self, at: datetime | None = None) -> datetime:
        """The current (or the given) instant in the business time zone."""
        return (at or datetime.now(UTC)).astimezone(self.zone())

    def previous_business_day(self, at: datetime | None = None) -> date:
        """The day before today in the business time zone: the latest complete daily partition."""
        return self.now(at).date() - timedelta(days=1)

    def passed(self, name: str, at: datetime | None = None) -> bool:
        """Whether today's `schedule_time` or `sla_deadline` has passed in the business time zone."""
        return self.now(at).time() >= self.local_time(name)


def run_identity(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> RunIdentity:
    """The run id and its start time, which orders writers for the warehouse's stale-writer fence."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.start_time if record and record.start_time else None
    if started is None and record is not None:
        started = record.create_timestamp.timestamp()
    if started is None:
        raise dg.Failure(f"run {context.run.run_id} has no record in the instance; cannot fence its writes")
    return RunIdentity(run_id=context.run.run_id, started_at=started)


def env_resources() -> dict[str, Any]:
    """The resources of the code location, every value bound to an environment variable."""
    return {
        "warehouse": WarehouseResource(
            database=dg.EnvVar(settings.WAREHOUSE),
            lock_timeout_seconds=dg.EnvVar(settings.LOCK_TIMEOUT_SECONDS),
            threads=dg.EnvVar(settings.DUCKDB_THREADS),
            memory_limit=dg.EnvVar(settings.DUCKDB_MEMORY_LIMIT),
            scratch_dir=dg.EnvVar(settings.SCRATCH),
            bucket_rows=dg.EnvVar(settings.BUCKET_ROWS),
        ),
        "landing": LandingZoneResource(root=dg.EnvVar(settings.LANDING)),
        "thresholds": ThresholdsResource(
            quarantine_rate_warn=dg.EnvVar(settings.QUARANTINE_RATE_WARN),
            quarantine_rate_error=dg.EnvVar(settings.QUARANTINE_RATE_ERROR),
            match_rate_warn=dg.EnvVar(settings.MATCH_RATE_WARN),
            match_rate_error=dg.EnvVar(settings.MATCH_RATE_ERROR),
            break_value_warn=dg.EnvVar(settings.BREAK_VALUE_WARN),
            break_value_error=dg.EnvVar(settings.BREAK_VALUE_ERROR),
            amount_mismatch_warn=dg.EnvVar(settings.AMOUNT_MISMATCH_WARN),
            amount_mismatch_error=dg.EnvVar(settings.AMOUNT_MISMATCH_ERROR),
        ),
        "matching": MatchingResource(
            carry_days=dg.EnvVar.int(settings.CARRY_DAYS),
            date_tolerance_days=dg.EnvVar.int(settings.DATE_TOLERANCE_DAYS),
            grace_days=dg.EnvVar.int(settings.GRACE_DAYS),
        ),
        "progress": ProgressResource(interval_seconds=dg.EnvVar(settings.PROGRESS_SECONDS)),
        "calendar": CalendarResource(
            timezone=dg.EnvVar(settings.TIMEZONE),
            schedule_time=dg.EnvVar(settings.SCHEDULE_TIME),
            sla_deadline=dg.EnvVar(settings.SLA_DEADLINE),
        ),
    }
