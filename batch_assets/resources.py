"""Dagster resources: the warehouse, the landing zone, thresholds, matching and the calendar, each field a setting."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import ValidationInfo, field_validator, model_validator

from batch_assets import settings
from batch_assets.settings import Settings, decimal_text, setting, under_home
from batch_assets.shared_store import SharedStore
from batch_assets.storage import RunIdentity, Warehouse
from batch_assets.transforms.matching import MatchParameters

# What DuckDB's memory_limit accepts: a number and a unit (2GB, 1.5GiB, 500MB), or empty for DuckDB's default.
MEMORY_SIZE = r"(?i)^$|^\s*[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)\s*$"


class WarehouseResource(Settings, DuckDBResource):
    """The DuckDB warehouse file. dagster-duckdb holds the configuration; storage.py owns the
    transactions and the lock retries (the stock retry waits ~100 s in silence, ours logs the holder)."""

    database: str = setting("warehouse.duckdb", settings.WAREHOUSE, "the DuckDB file", kind="path")
    lock_timeout_seconds: float = setting(
        60.0, settings.LOCK_TIMEOUT_SECONDS, "how long a run waits for another process's lock on the warehouse", ge=0
    )
    threads: int = setting(0, settings.DUCKDB_THREADS, "DuckDB threads; 0 means one per core", ge=0)
    memory_limit: str = setting(
        "",
        settings.DUCKDB_MEMORY_LIMIT,
        "DuckDB memory limit such as 2GB; empty derives it from the bucket size (1 KiB a bucket row, at least "
        "512 MiB), or leaves DuckDB's default (80% of RAM) when days are taken in one pass",
        kind="size",
        pattern=MEMORY_SIZE,
    )
    bucket_rows: int = setting(
        1_000_000,
        settings.BUCKET_ROWS,
        "rows per bucket: validate, match and summary take a bigger day in slices of about this many rows a side; "
        "0 takes every day in one pass",
        ge=0,
    )

    @property
    def path(self) -> Path:
        return under_home(self.database)

    def open(self, log: Any = None) -> Warehouse:
        config: dict[str, Any] = dict(self.connection_config)
        if self.threads > 0:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        elif self.bucket_rows > 0:
            # A stage holds about one bucket at a time, so DuckDB needs no more than a bucket's worth either.
            config["memory_limit"] = f"{max(512, self.bucket_rows // 1024)}MiB"
        return Warehouse(
            self.path,
            lock_timeout_seconds=self.lock_timeout_seconds,
            config=config,
            bucket_rows=self.bucket_rows,
            log=log,
        )


class LandingZoneResource(Settings):
    """The folder where ledger/ and bank/ files land."""

    root: str = setting("landing", settings.LANDING, "where ledger/ and bank/ files land", kind="path")

    @property
    def path(self) -> Path:
        return under_home(self.root)


class ThresholdsResource(Settings):
    """Check thresholds, as decimal strings (money and rates are never floats here). Past WARN a check warns;
    past ERROR it fails."""

    quarantine_rate_warn: str = setting(
        "0.01",
        settings.QUARANTINE_RATE_WARN,
        "quarantined/raw rows above which the quarantine check warns",
        kind="decimal",
    )
    quarantine_rate_error: str = setting(
        "0.05",
        settings.QUARANTINE_RATE_ERROR,
        "quarantined/raw rows above which the quarantine check fails and blocks",
        kind="decimal",
    )
    match_rate_warn: str = setting(
        "0.85",
        settings.MATCH_RATE_WARN,
        "match rate (matched / candidate items) below which the match-rate check warns",
        kind="decimal",
    )
    match_rate_error: str = setting(
        "0.60", settings.MATCH_RATE_ERROR, "match rate below which the match-rate check fails", kind="decimal"
    )
    break_value_warn: str = setting(
        "1000000.00",
        settings.BREAK_VALUE_WARN,
        "break value (sum of absolute amounts, per currency) above which the check warns",
        kind="decimal",
    )
    break_value_error: str = setting(
        "10000000.00",
        settings.BREAK_VALUE_ERROR,
        "break value per currency above which the check fails",
        kind="decimal",
    )
    amount_mismatch_warn: str = setting(
        "1000", settings.AMOUNT_MISMATCH_WARN, "count of amount mismatches above which the check warns", kind="decimal"
    )
    amount_mismatch_error: str = setting(
        "10000",
        settings.AMOUNT_MISMATCH_ERROR,
        "count of amount mismatches above which the check fails",
        kind="decimal",
    )

    @field_validator("*")
    @classmethod
    def _is_decimal(cls, value: str, info: ValidationInfo) -> str:
        return decimal_text(info.field_name or "threshold", value)

    @model_validator(mode="after")
    def _warn_before_error(self) -> Self:
        for name, lower_is_worse in (
            ("quarantine_rate", False),
            ("match_rate", True),
            ("break_value", False),
            ("amount_mismatch", False),
        ):
            warn, error = self.value(f"{name}_warn"), self.value(f"{name}_error")
            if (warn < error) if lower_is_worse else (warn > error):
                raise ValueError(f"{name}_warn {warn} is past {name}_error {error}: WARN must come before ERROR")
        return self

    def value(self, name: str) -> Decimal:
        """A threshold as an exact decimal."""
        return Decimal(getattr(self, name))


class MatchingResource(Settings):
    """The matching contract's day counts."""

    carry_days: int = setting(
        5,
        settings.CARRY_DAYS,
        "days an unmatched item stays a matching candidate before it expires as a standing break",
        ge=0,
    )
    date_tolerance_days: int = setting(
        2, settings.DATE_TOLERANCE_DAYS, "how far apart booking dates may be in the amount_date pass", ge=0
    )
    grace_days: int = setting(
        2, settings.GRACE_DAYS, "age up to which an open item is a timing difference rather than a break", ge=0
    )

    def parameters(self) -> MatchParameters:
        return MatchParameters(self.carry_days, self.date_tolerance_days, self.grace_days)


class CalendarResource(Settings):
    """When the business day is reconciled: the time zone, the schedule's local time and the SLA deadline."""

    timezone: str = setting(
        "UTC",
        settings.TIMEZONE,
        "IANA time zone of the business day, the schedule and the SLA deadline, such as Europe/Oslo",
        kind="time zone",
    )
    schedule_time: str = setting(
        "06:00",
        settings.SCHEDULE_TIME,
        "local time (HH:MM) at which the schedule reconciles the previous business day",
        kind="HH:MM",
    )
    sla_deadline: str = setting(
        "09:00",
        settings.SLA_DEADLINE,
        "local time (HH:MM) by which the previous business day must be reconciled, or an SLA alert",
        kind="HH:MM",
    )

    @field_validator("timezone")
    @classmethod
    def _is_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Oslo") from None
        return value

    @field_validator("schedule_time", "sla_deadline")
    @classmethod
    def _is_time(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a local time such as 06:00") from None
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_time(self, name: str) -> time:
        """`schedule_time` or `sla_deadline` as a time of day."""
        return time.fromisoformat(getattr(self, name))

    def now(self, at: datetime | None = None) -> datetime:
        """The current (or the given) instant in the business time zone."""
        return (at or datetime.now(UTC)).astimezone(self.zone())

    def previous_business_day(self, at: datetime | None = None) -> date:
        """The day before today in the business time zone: the latest complete daily partition."""
        return self.now(at).date() - timedelta(days=1)

    def passed(self, name: str, at: datetime | None = None) -> bool:
        """Whether today's `schedule_time` or `sla_deadline` has passed in the business time zone."""
        return self.now(at).time() >= self.local_time(name)


class ScaleOutResource(Settings):
    """Where a run's steps run, and where bucket steps on other hosts meet: the executor, Celery's broker, and
    the shared store."""

    executor: str = setting(
        "in_process",
        settings.EXECUTOR,
        "where a run's steps run: `in_process` (one process) or `celery` (bucket steps on Celery workers, the "
        "steps that open the warehouse on its queue; docs/scaling.md)",
        pattern="^(in_process|celery)$",
    )
    broker_url: str = setting(
        "redis://localhost:6379/0", settings.BROKER_URL, "Celery's broker (Redis), with `executor` celery", kind="URL"
    )
    redeliver_after_seconds: int = setting(
        600,
        settings.REDELIVER_AFTER_SECONDS,
        "with Celery: a step whose worker died is handed to another worker this long after it was sent; a step "
        "that runs longer than this is sent twice, so keep it above the longest step",
        ge=1,
    )
    shared_store: str = setting(
        "shared",
        settings.SHARED_STORE,
        "the folder where bucket steps find their inputs and leave their outputs; with Celery, a file system "
        "every worker mounts at the same path",
        kind="path",
    )

    def store(self) -> SharedStore:
        return SharedStore(under_home(self.shared_store))

    def celery_settings(self) -> dict[str, Any]:
        """What the run's Celery client and every worker agree on: a task is acknowledged only when it has
        ended, so one whose worker died is sent again, after `redeliver_after_seconds`, to another worker."""
        return {
            "broker_url": self.broker_url,
            # Results come back through the same Redis: Celery's default (rpc://) needs an AMQP broker.
            "result_backend": self.broker_url,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {"visibility_timeout": self.redeliver_after_seconds},
            "result_backend_transport_options": {"visibility_timeout": self.redeliver_after_seconds},
        }


class StepOutputs(dg.ConfigurableIOManager):
    """The small values steps hand each other (a bucket's task, a bucket's result), pickled into the shared
    store, where a step on any worker finds them; re-execution reads those of the run it re-executes. The
    assets themselves are the warehouse's tables, never stored here."""

    @staticmethod
    def _store() -> SharedStore:
        # The store the scale-out settings name when the step runs (no nested resource: sensors built with the
        # code location's resources would then have to open them as a context manager).
        return ScaleOutResource().with_environment(os.environ).store()

    def _path(self, context: dg.OutputContext) -> Path:
        run_id, *rest = context.get_identifier()
        return self._store().root / run_id / "steps" / "/".join(rest)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        self._store().publish_object(obj, self._path(context))

    def load_input(self, context: dg.InputContext) -> Any:
        return self._store().read_object(self._path(context.upstream_output))


def run_identity(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> RunIdentity:
    """The run id and its start time, which orders writers for the warehouse's stale-writer fence."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.start_time if record and record.start_time else None
    if started is None and record is not None:
        started = record.create_timestamp.timestamp()
    if started is None:
        raise dg.Failure(f"run {context.run.run_id} has no record in the instance; cannot fence its writes")
    return RunIdentity(run_id=context.run.run_id, started_at=started)
