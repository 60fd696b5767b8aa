"""Settings: how a resource field becomes a setting, the data folder, and the shipped Dagster instance config.

Each setting is a field of the resource that uses it, declared with `setting()`: its type, its default, its
check and its description are written there once, and the Dagster UI shows them. When a run or a sensor tick
starts, the setting's environment variable, where set, replaces the value (`Settings.create_resource`).
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Self

import dagster as dg
from pydantic import Field, ValidationError

# The variables' names, for the code that sets them (launchers, tests); each is declared on its field once.
HOME = "BATCH_ASSETS_HOME"
LANDING = "BATCH_ASSETS_LANDING"
WAREHOUSE = "BATCH_ASSETS_WAREHOUSE"
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
EXECUTOR = "BATCH_ASSETS_EXECUTOR"
BROKER_URL = "BATCH_ASSETS_BROKER_URL"
SHARED_STORE = "BATCH_ASSETS_SHARED_STORE"
REDELIVER_AFTER_SECONDS = "BATCH_ASSETS_REDELIVER_AFTER_SECONDS"

# The data folder is the one setting that is no resource's field: every relative path setting lives under it.
HOME_DEFAULT = "data"
HOME_DESCRIPTION = "the data folder; relative path settings are under it (relative to the working directory)"
DAGSTER_HOME_DESCRIPTION = (
    "the Dagster instance: `batch-assets` commands use <data folder>/dagster_home; with none set, plain `dg dev`, "
    "`dagster dev` and `dagster asset materialize` read ./dagster.yaml, which keeps the instance in ./data/dagster_home"
)


def setting(
    default: Any, variable: str, description: str, kind: str | None = None, secret: bool = False, **checks: Any
) -> Any:
    """A resource field that is a setting: its typed default, its description, pydantic's `checks` on any value
    (ge=0, pattern=...), and the variable that overrides it when a run starts. `kind` names what a text
    setting holds (path, decimal, ...) for the documentation; a `secret` one is never echoed in an error."""
    extra = {"env": variable, **({"kind": kind} if kind else {}), **({"secret": True} if secret else {})}
    return Field(default=default, description=description, json_schema_extra=extra, **checks)


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """The data folder: $BATCH_ASSETS_HOME, else ./data, as an absolute path."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(HOME) or HOME_DEFAULT).expanduser().resolve()


def under_home(path: str, environ: Mapping[str, str] | None = None) -> Path:
    """A path setting's value as a path: absolute as given, a relative one under the data folder."""
    given = Path(path).expanduser()
    return given if given.is_absolute() else data_home(environ) / given


def data_environment(home: Path) -> dict[str, str]:
    """The variables that put everything of a data folder in `home`: the data folder and the Dagster instance."""
    home = home.expanduser().resolve()
    return {HOME: str(home), "DAGSTER_HOME": str(home / "dagster_home")}


def apply_launch_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """For a launcher (`batch-assets ...`), never at import: set the data folder and the Dagster instance where
    they are unset, and give the instance the shipped dagster.yaml. Returns the two values."""
    target = os.environ if environ is None else environ
    values = data_environment(data_home(target))
    for name, value in values.items():
        target.setdefault(name, value)
    write_instance_config(Path(target["DAGSTER_HOME"]))
    return {name: target[name] for name in values}


def decimal_text(name: str, value: str) -> str:
    """A setting that holds an exact decimal as text (Dagster's config has no decimal type): checked, unchanged."""
    try:
        Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number such as 0.05") from None
    return value


class SettingError(ValueError):
    """A setting's variable holds a value its field does not accept."""


class Settings(dg.ConfigurableResource):
    """A resource whose fields are settings (declared with `setting()`). When a run or a sensor tick starts, each
    field whose variable is set in the environment takes the variable's value, checked as the field checks it."""

    def create_resource(self, context: dg.InitResourceContext) -> Self:
        return self.with_environment(os.environ)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name to environment variable, for every field that is a setting."""
        return {
            name: field.json_schema_extra["env"]
            for name, field in cls.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and "env" in field.json_schema_extra
        }

    @classmethod
    def _is_secret(cls, name: str) -> bool:
        extra = cls.model_fields[name].json_schema_extra
        return isinstance(extra, dict) and bool(extra.get("secret"))

    def with_environment(self, environ: Mapping[str, str]) -> Self:
        """This resource with the values of the variables that are set in `environ`."""
        variables = self.variables()
        overrides = {name: environ[variable] for name, variable in variables.items() if variable in environ}
        if not overrides:
            return self
        values = {field.alias or name: getattr(self, name) for name, field in type(self).model_fields.items()}
        try:
            return type(self)(**{**values, **overrides})
        except ValidationError as error:
            given = {
                name: f"{variables[name]}=" + ("<hidden>" if self._is_secret(name) else repr(value))
                for name, value in overrides.items()
            }
            # A field's error names its field; a check across fields (loc empty) names every variable given.
            problems = [
                f"{given.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else ', '.join(given.values())}: {e['msg']}"
                for e in error.errors()
            ]
            raise SettingError(
                "invalid setting " + "; ".join(problems) + ". Fix or unset the variable, then start the run again."
            ) from None


@dataclass(frozen=True)
class SettingRow:
    """One setting as the README and `batch-assets env` show it."""

    variable: str
    resource: str
    type: str
    default: str
    description: str


def setting_rows(bound: Mapping[str, Any]) -> Iterator[SettingRow]:
    """Every setting of the resources in `bound` (resource key to resource), the data folder first."""
    yield SettingRow(HOME, "", "path", HOME_DEFAULT, HOME_DESCRIPTION)
    yield SettingRow("DAGSTER_HOME", "", "path", "", DAGSTER_HOME_DESCRIPTION)
    for key, resource in bound.items():
        if not isinstance(resource, Settings):
            continue
        for name, variable in resource.variables().items():
            field = type(resource).model_fields[name]
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            kind = extra.get("kind") or getattr(field.annotation, "__name__", str(field.annotation))
            yield SettingRow(variable, f"{key}.{name}", kind, _text(getattr(resource, name)), field.description or "")


def settings_table(bound: Mapping[str, Any]) -> str:
    """The settings as the README's Markdown table (`batch-assets env --markdown` prints it)."""
    lines = ["| variable | resource field | type | default | meaning |", "|---|---|---|---|---|"]
    for row in setting_rows(bound):
        field = f"`{row.resource}`" if row.resource else ""
        default = f"`{row.default}`" if row.default else "empty"
        lines.append(f"| `{row.variable}` | {field} | {row.type} | {default} | {row.description} |")
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_instance_config(dagster_home: Path) -> Path:
    """Create DAGSTER_HOME with the shipped dagster.yaml, unless the user has put their own there."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if not target.exists():
        target.write_text(resources.files("batch_assets").joinpath("dagster.yaml").read_text())
    return target
