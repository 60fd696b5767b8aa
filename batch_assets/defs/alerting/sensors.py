"""Alerting sensors: they notice failed runs and checks, SLA breaches and bad days, and raise each alert once."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import dagster as dg

from batch_assets import dagster_internals, settings
from batch_assets.alerts import Alert, AlertResource, error_text
from batch_assets.partitions import days_label
from batch_assets.resources import CalendarResource, ThresholdsResource

SUMMARY_KEY = dg.AssetKey(["recon", "summary"])
WILL_RETRY_TAG = "dagster/will_retry"  # set on a failed run when run_retries will start another attempt
# Events read per tick; the cursor pages through a longer backlog over the following ticks.
EVENTS_PER_TICK = 200
RUN_ENDS = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
_BREAK_VALUE = re.compile(r"break_value_([A-Z]{3})$")


def _scalars(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, Any]:
    return {k: v.value for k, v in metadata.items() if isinstance(v.value, (int, float, str, bool))}


def _finish_page(
    context: dg.SensorEvaluationContext, storage_ids: Iterable[int], raised: int, what: str
) -> dg.SkipReason | None:
    """Move the cursor past the page; say why nothing was raised."""
    ids = list(storage_ids)
    reason = dg.SkipReason(f"nothing to alert: {len(ids)} new {what} after storage id {context.cursor or 'none'}")
    if ids:
        context.update_cursor(str(max(ids)))
    return None if raised else reason


def _alert_sensor(name: str, every_seconds: int, description: str) -> Any:
    """A sensor that raises alerts: running by default, since nobody should have to switch alerting on."""
    return dg.sensor(
        name=name,
        description=description,
        minimum_interval_seconds=every_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


@dg.run_failure_sensor(
    name="run_failure_alert",
    description="Alerts on every failed run of this code location, with the failed steps and their errors.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertResource) -> dg.SkipReason | None:
    run = context.dagster_run
    if run.tags.get(WILL_RETRY_TAG) == "true":
        return dg.SkipReason(f"run {run.run_id} failed and is retried; the retry alerts if it fails too")
    failures = context.get_step_failure_events()
    error = "\n".join(f"{event.step_key}: {error_text(event)}" for event in failures) or context.failure_event.message
    partition = days_label(run.tags)
    raised = alerts.send(
        Alert(
            key=f"run_failure:{run.run_id}",
            kind="run_failure",
            severity="ERROR",
            title=f"Run of {run.job_name} failed" + (f" for {partition}" if partition else ""),
            text=error or "the run failed before any step ran",
            business_date=partition,
            run_id=run.run_id,
            step=", ".join(event.step_key or "" for event in failures) or None,
            error=error,
            url=alerts.run_url(run.run_id),
        ),
        context.log,
    )
    return None if raised else dg.SkipReason(f"run {run.run_id} was alerted before")


@_alert_sensor(
    "check_failure_alert",
    30,
    f"Alerts, once a run has ended, on its failed asset checks of ERROR severity, and of WARN severity when "
    f"{settings.ALERT_ON_WARN} is true.",
)
def check_failure_alert(context: dg.SensorEvaluationContext, alerts: AlertResource) -> dg.SkipReason | None:
    # Dagster has no public read of check evaluations across runs, but it has one of run ends: the sensor
    # pages through those and reads each ended run's evaluations. Both kinds of event share one sequence of
    # storage ids, so a cursor saved when the sensor paged through the evaluations themselves still holds.
    ended = _ended_runs(context.instance, int(context.cursor) if context.cursor else None, EVENTS_PER_TICK)
    warn = alerts.warn_alerts()
    raised = 0
    for run_id in dict.fromkeys(record.run_id for record in ended):
        for entry in dagster_internals.check_evaluations(context.instance, run_id):
            evaluation = entry.dagster_event.event_specific_data
            if evaluation.passed or (evaluation.severity != dg.AssetCheckSeverity.ERROR and not warn):
                continue
            raised += alerts.send(_check_alert(alerts, entry, evaluation), context.log)
    return _finish_page(context, (record.storage_id for record in ended), raised, "ended runs")


def _ended_runs(instance: dg.DagsterInstance, after: int | None, limit: int) -> list[dg.EventLogRecord]:
    """The first `limit` run-end events (success, failure or cancel) after storage id `after`, oldest first."""
    records = [
        record
        for event_type in RUN_ENDS
        for record in instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=after), limit=limit, ascending=True
        ).records
    ]
    # All three kinds share the event log's storage ids, and each list is complete up to its own last id:
    # the lowest `limit` ids of the three leave no gap for the next tick to skip.
    return sorted(records, key=lambda record: record.storage_id)[:limit]


def _check_alert(alerts: AlertResource, entry: dg.EventLogEntry, evaluation: dg.AssetCheckEvaluation) -> Alert:
    asset = evaluation.asset_key.to_user_string()
    partition = evaluation.partition or ""
    numbers = _scalars(evaluation.metadata)
    severity = evaluation.severity.value
    return Alert(
        key=f"check:{asset}:{evaluation.check_name}:{partition}:{entry.run_id}",
        kind="check_failure",
        severity=severity,
        title=f"Check {asset}:{evaluation.check_name} failed ({severity})" + (f" for {partition}" if partition else ""),
        text=evaluation.description or ", ".join(f"{k}={v}" for k, v in numbers.items()),
        business_date=partition or None,
        run_id=entry.run_id,
        step=entry.step_key,
        url=alerts.run_url(entry.run_id),
        details={"asset": asset, "check": evaluation.check_name, "metadata": numbers},
    )


@_alert_sensor(
    "sla_breach_alert",
    60,
    "Alerts once per business day when the previous business day has no recon/summary by "
    f"{settings.SLA_DEADLINE} in {settings.TIMEZONE}.",
)
def sla_breach_alert(
    context: dg.SensorEvaluationContext, alerts: AlertResource, calendar: CalendarResource
) -> dg.SkipReason | None:
    now = calendar.now()
    day = calendar.previous_business_day(now).isoformat()
    if not calendar.passed("sla_deadline", now):
        return dg.SkipReason(f"{now:%H:%M} {calendar.timezone}: {day} is due by {calendar.sla_deadline}")
    if context.cursor == day:
        return dg.SkipReason(f"the SLA breach of {day} was alerted")
    reconciled = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUMMARY_KEY, asset_partitions=[day]), limit=1
    ).records
    if reconciled:
        return dg.SkipReason(f"{day} was reconciled: recon/summary materialized in run {reconciled[0].run_id}")
    alerts.send(
        Alert(
            key=f"sla:{day}",
            kind="sla_breach",
            severity="ERROR",
            title=f"{day} is not reconciled: SLA {calendar.sla_deadline} {calendar.timezone} missed",
            text=f"recon/summary has no materialization for {day} at {now:%Y-%m-%d %H:%M} {calendar.timezone}.",
            business_date=day,
            url=f"{alerts.ui_url.rstrip('/')}/assets/recon/summary",
        ),
        context.log,
    )
    context.update_cursor(day)
    return None


@_alert_sensor(
    "reconciliation_alert",
    60,
    f"Alerts on a reconciled day whose exceptions / candidate items exceed {settings.EXCEPTION_RATE_ALERT}, "
    f"or whose break value in a currency exceeds {settings.BREAK_VALUE_ERROR}.",
)
def reconciliation_alert(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    thresholds: ThresholdsResource,
) -> dg.SkipReason | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SUMMARY_KEY, after_storage_id=int(context.cursor) if context.cursor else None),
        limit=EVENTS_PER_TICK,
        ascending=True,
    ).records
    rate_limit, value_limit = alerts.exception_rate_limit(), thresholds.value("break_value_error")
    raised = 0
    for record in records:
        # The numbers come from the materialization's metadata, written in the same step as the commit:
        # a sensor that opened the warehouse would contend for its file lock with the writing runs.
        metadata = record.asset_materialization.metadata
        counts = (
            [
                {
                    "candidates": int(metadata["ledger_items"].value) + int(metadata["bank_items"].value),
                    "exceptions": int(metadata["exceptions"].value),
                }
            ]
            if {"ledger_items", "bank_items", "exceptions"} <= set(metadata)
            else []
        )
        for alert in _day_alerts(record, counts, rate_limit, value_limit, alerts.run_url(record.run_id)):
            raised += alerts.send(alert, context.log)
    return _finish_page(context, (r.storage_id for r in records), raised, "recon/summary materializations")


def _day_alerts(
    record: dg.EventLogRecord, counts: list[dict], rate_limit: Decimal, value_limit: Decimal, url: str
) -> Iterator[Alert]:
    """The exception-rate and break-value alerts of one recon/summary materialization."""
    day, run_id = record.partition_key, record.run_id
    where = {"business_date": day, "run_id": run_id, "url": url}
    for row in counts:
        rate = Decimal(row["exceptions"]) / Decimal(row["candidates"]) if row["candidates"] else Decimal(0)
        if rate > rate_limit:
            yield Alert(
                f"exception_rate:{day}:{run_id}",
                "exception_rate",
                "WARN",
                f"{day}: exception rate {rate:.2%} is above {rate_limit:.2%}",
                f"{row['exceptions']} exceptions among {row['candidates']} candidate items.",
                details={"exceptions": row["exceptions"], "candidates": row["candidates"], "rate": str(round(rate, 6))},
                **where,
            )
    for name, value in record.asset_materialization.metadata.items():
        found = _BREAK_VALUE.match(name)
        if found and Decimal(str(value.value)) > value_limit:
            currency = found[1]
            yield Alert(
                f"break_value:{day}:{currency}:{run_id}",
                "break_value",
                "ERROR",
                f"{day}: break value {value.value} {currency} is above {value_limit}",
                f"Breaks in {currency} on {day} add up to {value.value}; the ERROR limit is {value_limit}.",
                details={"currency": currency, "break_value": str(value.value), "limit": str(value_limit)},
                **where,
            )
