"""Environment variables: their names, their laptop defaults, and the shipped Dagster instance config."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

# Each setting is an environment variable, bound with dagster.EnvVar in definitions.py and resolved at run
# time. The launchers (`batch-assets dev|demo|env`, `make dev|demo`) fill in the defaults below for any
# variable that is not already set, so a fresh clone works on one laptop with nothing exported.
HOME = "BATCH_ASSETS_HOME"
LANDING = "BATCH_ASSETS_LANDING"
WAREHOUSE = "BATCH_ASSETS_WAREHOUSE"
SCRATCH = "BATCH_ASSETS_SCRATCH"
LOCK_TIMEOUT_SECONDS = "BATCH_ASSETS_LOCK_TIMEOUT_SECONDS"
DUCKDB_THREADS = "BATCH_ASSETS_DUCKDB_THREADS"
DUCKDB_MEMORY_LIMIT = "BATCH_ASSETS_DUCKDB_MEMORY_LIMIT"
BUCKET_ROWS = "BATCH_ASSETS_BUCKET_ROWS"
QUARANTINE_RATE_WARN = "BATCH_ASSETS_QUARANTINE_RATE_WARN"
QUARANTINE_RATE_ERROR = "BATCH_ASSETS_QUARANTINE_RATE_ERROR"
CARRY_DAYS = "BATCH_ASSETS_CARRY_DAYS"
DATE_TOLERANCE_DAYS = "BATCH_ASSETS_DATE_TOLERANCE_DAYS"
GRACE_DAYS = "BATCH_ASSETS_GRACE_DAYS"
MATCH_RATE_WARN = "BATCH_ASSETS_MATCH_RATE_WARN"
MATCH_RATE_ERROR = "BATCH_ASSETS_MATCH_RATE_ERROR"
BREAK_VALUE_WARN = "BATCH_ASSETS_BREAK_VALUE_WARN"
BREAK_VALUE_ERROR = "BATCH_ASSETS_BREAK_VALUE_ERROR"
AMOUNT_MISMATCH_WARN = "BATCH_ASSETS_AMOUNT_MISMATCH_WARN"
AMOUNT_MISMATCH_ERROR = "BATCH_ASSETS_AMOUNT_MISMATCH_ERROR"
TIMEZONE = "BATCH_ASSETS_TIMEZONE"
SCHEDULE_TIME = "BATCH_ASSETS_SCHEDULE_TIME"
SLA_DEADLINE = "BATCH_ASSETS_SLA_DEADLINE"
FILE_QUIET_SECONDS = "BATCH_ASSETS_FILE_QUIET_SECONDS"
SENSOR_PAGE_SIZE = "BATCH_ASSETS_SENSOR_PAGE_SIZE"
ALERT_FILE = "BATCH_ASSETS_ALERT_FILE"
ALERT_WEBHOOK_URL = "BATCH_ASSETS_ALERT_WEBHOOK_URL"
ALERT_ON_WARN = "BATCH_ASSETS_ALERT_ON_WARN"
EXCEPTION_RATE_ALERT = "BATCH_ASSETS_EXCEPTION_RATE_ALERT"
UI_URL = "BATCH_ASSETS_UI_URL"
PROGRESS_SECONDS = "BATCH_ASSETS_PROGRESS_SECONDS"

# Defaults that do not depend on the data folder. Rates are fractions, written as decimal strings.
FIXED_DEFAULTS: dict[str, str] = {
    LOCK_TIMEOUT_SECONDS: "60",
    DUCKDB_THREADS: "0",
    DUCKDB_MEMORY_LIMIT: "",
    BUCKET_ROWS: "1000000",
    QUARANTINE_RATE_WARN: "0.01",
    QUARANTINE_RATE_ERROR: "0.05",
    CARRY_DAYS: "5",
    DATE_TOLERANCE_DAYS: "2",
    GRACE_DAYS: "2",
    MATCH_RATE_WARN: "0.85",
    MATCH_RATE_ERROR: "0.60",
    BREAK_VALUE_WARN: "1000000.00",
    BREAK_VALUE_ERROR: "10000000.00",
    AMOUNT_MISMATCH_WARN: "1000",
    AMOUNT_MISMATCH_ERROR: "10000",
    TIMEZONE: "UTC",
    SCHEDULE_TIME: "06:00",
    SLA_DEADLINE: "09:00",
    FILE_QUIET_SECONDS: "60",
    SENSOR_PAGE_SIZE: "500",
    ALERT_WEBHOOK_URL: "",
    ALERT_ON_WARN: "false",
    EXCEPTION_RATE_ALERT: "0.10",
    UI_URL: "http://127.0.0.1:3000",
    PROGRESS_SECONDS: "10",
}

# What each variable means, for `batch-assets env` and the README.
DESCRIPTIONS: dict[str, str] = {
    HOME: "the data folder (default ./data)",
    LANDING: "where ledger/ and bank/ files land (default $BATCH_ASSETS_HOME/landing)",
    WAREHOUSE: "the DuckDB file (default $BATCH_ASSETS_HOME/warehouse.duckdb)",
    SCRATCH: "spill files for streaming writes (default $BATCH_ASSETS_HOME/scratch)",
    "DAGSTER_HOME": "the Dagster instance (default $BATCH_ASSETS_HOME/dagster_home)",
    LOCK_TIMEOUT_SECONDS: "how long a run waits for another process's lock on the warehouse",
    DUCKDB_THREADS: "DuckDB threads; 0 means one per core",
    DUCKDB_MEMORY_LIMIT: "DuckDB memory limit such as 2GB; empty means DuckDB's default (80% of RAM)",
    BUCKET_ROWS: "rows per bucket: validate, match and summary take a bigger day in slices of about this many rows a side",
    QUARANTINE_RATE_WARN: "quarantined/raw rows above which the quarantine check warns",
    QUARANTINE_RATE_ERROR: "quarantined/raw rows above which the quarantine check fails and blocks",
    CARRY_DAYS: "days an unmatched item stays a matching candidate before it expires as a standing break",
    DATE_TOLERANCE_DAYS: "how far apart booking dates may be in the amount_date pass",
    GRACE_DAYS: "age up to which an open item is a timing difference rather than a break",
    MATCH_RATE_WARN: "match rate (matched / candidate items) below which the match-rate check warns",
    MATCH_RATE_ERROR: "match rate below which the match-rate check fails",
    BREAK_VALUE_WARN: "break value (sum of absolute amounts, per currency) above which the check warns",
    BREAK_VALUE_ERROR: "break value per currency above which the check fails",
    AMOUNT_MISMATCH_WARN: "count of amount mismatches above which the check warns",
    AMOUNT_MISMATCH_ERROR: "count of amount mismatches above which the check fails",
    TIMEZONE: "IANA time zone of the business day, the schedule and the SLA deadline, such as Europe/Oslo",
    SCHEDULE_TIME: "local time (HH:MM) at which the schedule reconciles the previous business day",
    SLA_DEADLINE: "local time (HH:MM) by which the previous business day must be reconciled, or an SLA alert",
    FILE_QUIET_SECONDS: "seconds a landing file's size and mtime must stay unchanged before the sensor takes it",
    SENSOR_PAGE_SIZE: "landing files the new-file sensor looks at per tick (the cursor pages through the rest)",
    ALERT_FILE: "JSONL file every alert is appended to (default $BATCH_ASSETS_HOME/alerts.jsonl)",
    ALERT_WEBHOOK_URL: "Slack-compatible incoming-webhook URL alerts are POSTed to; empty for none",
    ALERT_ON_WARN: "true to alert on failed WARN-severity checks too, not only ERROR ones",
    EXCEPTION_RATE_ALERT: "exceptions / candidate items of a day above which an alert is raised",
    UI_URL: "the Dagster UI's address, for links in alerts",
    PROGRESS_SECONDS: "how often long steps log rows done, rate and ETA",
}


def environment_with_defaults(environ: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """Every setting: the value in `environ` where set, else its default (derived from the data folder)."""
    home = Path(environ.get(HOME) or cwd / "data").resolve()
    defaults = {
        HOME: str(home),
        LANDING: str(home / "landing"),
        WAREHOUSE: str(home / "warehouse.duckdb"),
        SCRATCH: str(home / "scratch"),
        ALERT_FILE: str(home / "alerts.jsonl"),
        "DAGSTER_HOME": str(home / "dagster_home"),
        **FIXED_DEFAULTS,
    }
    return {name: environ.get(name, default) for name, default in defaults.items()}


def apply_defaults(environ: os._Environ[str] | dict[str, str] | None = None) -> dict[str, str]:
    """Set every unset variable to its default (called by launchers, never at import time)."""
    target = os.environ if environ is None else environ
    values = environment_with_defaults(target, Path.cwd())
    target.update(values)
    return values


def write_instance_config(dagster_home: Path) -> Path:
    """Create DAGSTER_HOME with the shipped dagster.yaml, unless the user has put their own there."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if not target.exists():
        target.write_text(resources.files("batch_assets").joinpath("dagster.yaml").read_text())
    return target
