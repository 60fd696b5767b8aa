"""The real daemon: with `dg dev` running, switching the new-file sensor on makes landed files become a run."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.defs.automation.jobs import SERIAL_TAG, TRIGGER_TAG
from batch_assets.generator import generate
from batch_assets_tests.dagster_dev import graphql, running_dagster_dev

DAY = date(2026, 11, 2)
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 10) { status timestamp } } }
  }
}
"""
RUN_WAIT_SECONDS = 300
# The sensor ticks every 15 s; generous, as the daemon shares a small machine with other tests.
TICK_WAIT_SECONDS = 180


def wait_for_finished_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_WAIT_SECONDS
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "landing_files"}))
        finished = [r for r in runs if r.is_finished]
        if finished:
            return finished[0]
        time.sleep(2)
    raise AssertionError(f"no landing_files run finished within {RUN_WAIT_SECONDS} s")


def wait_for_a_tick_after(base_url: str, selector: dict[str, str], moment: float) -> str:
    """Wait until the daemon has finished a tick of the sensor that started after `moment`; that tick's status."""
    deadline = time.monotonic() + TICK_WAIT_SECONDS
    while time.monotonic() < deadline:
        sensor = graphql(base_url, SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        ended = [t for t in sensor["sensorState"]["ticks"] if t["timestamp"] > moment and t["status"] != "STARTED"]
        if ended:
            return ended[-1]["status"]  # newest first: the earliest such tick
        time.sleep(1)
    raise AssertionError(f"the sensor finished no tick within {TICK_WAIT_SECONDS} s after the run")


@pytest.mark.slow
def test_the_daemon_runs_the_sensor_and_the_files_become_a_reconciled_day(tmp_path: Path) -> None:
    home = tmp_path / "data"
    with running_dagster_dev(home, overrides={settings.FILE_QUIET_SECONDS: "0"}) as base_url:
        landing = home / "landing"
        generate(start=DAY, days=1, rows=300, fmt="csv", seed=5, landing=landing)
        selector = {
            "repositoryLocationName": "batch_assets",
            "repositoryName": "__repository__",
            "sensorName": "landing_files",
        }
        started = graphql(base_url, START_SENSOR, {"selector": selector})["startSensor"]
        assert started["__typename"] == "Sensor", started
        assert started["sensorState"]["status"] == "RUNNING"

        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            run = wait_for_finished_run(instance)
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
            assert run.tags["dagster/partition"] == DAY.isoformat()
            assert run.tags[SERIAL_TAG] == "reconcile"
            assert run.tags["dagster/sensor_name"] == "landing_files"
            summary = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(["recon", "summary"]), asset_partitions=[DAY.isoformat()]),
                limit=1,
            )
            assert summary.records and summary.records[0].run_id == run.run_id
            # The sensor recorded the day in its cursor, so the next tick requests nothing more.
            ended_at = instance.get_run_record_by_id(run.run_id).end_time
            assert wait_for_a_tick_after(base_url, selector, ended_at) == "SKIPPED"
            runs = instance.get_runs(filters=dg.RunsFilter(tags={TRIGGER_TAG: "landing_files"}))
            assert [r.run_id for r in runs] == [run.run_id]
