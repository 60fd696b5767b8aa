"""A run killed (SIGKILL) at each named point of every writing stage, then re-executed from failure, ends with
exactly the tables of a clean run, and Dagster's materialisations name the commits the warehouse holds."""

from __future__ import annotations

import signal
from pathlib import Path

import dagster as dg
import pytest

from batch_assets.faults import CRASH_AT, POINTS, STAGES
from batch_assets_tests.faults import (
    D1,
    D2,
    assert_dagster_agrees_with_the_commit_log,
    cli,
    runs_of,
    tables,
)


@pytest.mark.slow
@pytest.mark.usefixtures("first_day_reconciled")
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("stage", STAGES)
def test_a_run_killed_at_a_crash_point_and_re_executed_from_failure_equals_a_clean_run(
    stage: str, point: str, home: Path, clean_tables: dict[str, list[tuple]]
) -> None:
    crashed = cli("run", "--start", D2.isoformat(), "--days", "1", env={CRASH_AT: f"{stage}:{point}"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

    with dg.DagsterInstance.get() as instance:
        (killed,) = runs_of(instance, D2)
        # The worker died without a word, so Dagster still believes the run is going: the operator marks it
        # canceled (the UI's force termination) before re-executing it.
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED
        canceled = cli("cancel", "--force", killed.run_id)
        assert canceled.stdout.strip() == f"run {killed.run_id}: CANCELED", canceled.stdout + canceled.stderr

        reexecuted = cli("reexecute", killed.run_id)
        assert reexecuted.returncode == 0, reexecuted.stdout + reexecuted.stderr[-3000:]
        assert "re-executed" in reexecuted.stdout and ": ok" in reexecuted.stdout

        assert tables(home) == clean_tables
        assert_dagster_agrees_with_the_commit_log(home, instance, D1)
        assert_dagster_agrees_with_the_commit_log(home, instance, D2)
