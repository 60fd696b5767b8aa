"""The Dagster calls we need that dagster 1.13 has no public API for; test_dagster_internals.py pins each one."""

from __future__ import annotations

from typing import Any

import dagster as dg


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    """The asset check evaluations logged by one run, oldest first."""
    # Not marked @public, but the public RunFailureSensorContext.get_step_failure_events reads a run's
    # events through this same instance method, so it is the least likely to move.
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [record.event_log_entry for record in records]


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Give back the pool slots that the steps of an ended run still hold; nothing where pools are unsupported.

    The daemon does the same for runs ended `run_monitoring.free_slots_after_run_end_seconds` ago, and the
    UI's "free concurrency slots" button likewise calls the event log storage: there is no public call."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def cancel_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Ask the instance's run coordinator to cancel a run, as the UI's Terminate button does."""
    instance.run_coordinator.cancel_run(run_id)


def mark_canceled(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Record a run as canceled when nothing answered the cancel request (its worker is dead)."""
    instance.report_run_canceled(run, message=message)


def latest_materialization(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str) -> Any:
    """What a check evaluation of one partition points at, so that the UI shows it on that partition: the
    partition's latest materialisation. Dagster records it itself for a check of a one-partition run; over a
    range only an evaluation built by hand is per partition, and its target class is not exported."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    latest = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
    )


def add_asset_metadata(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    metadata: dict[str, Any],
    *,
    asset_key: dg.AssetKey,
    partition_key: str,
) -> None:
    """Metadata for one partition of an asset the step materialises over a range. An op of a graph-backed asset
    has no public call for it; its step context has the one the asset context calls."""
    if isinstance(context, dg.AssetExecutionContext):
        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=partition_key)
        return
    context.get_step_execution_context().add_asset_metadata(metadata, asset_key=asset_key, partition_key=partition_key)


def is_persistent(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's storage outlives the process (what a Celery worker in another process needs)."""
    return instance.is_persistent


def partition_runs(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    """The runs of one partition, newest first, as the UI's partition view lists them."""
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition})))


def poll_celery_tasks_every(seconds: float) -> None:
    """How often dagster-celery's run loop asks whether its tasks have ended and submits the steps they unblock.

    Its loop sleeps a fixed second between rounds, so every step of a chain of serial steps (a day has some
    twenty-five) waited half a second on average for its predecessor's end to be noticed; the module constant is
    the only knob it has."""
    from dagster_celery import core_execution_loop

    core_execution_loop.TICK_SECONDS = seconds
