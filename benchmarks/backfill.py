"""`make bench`, second part: a backfill of N generated days through the real daemon with the shipped dagster.yaml.

It generates the days, starts `dg dev` (webserver, daemon, code server) on a free loopback port in a fresh
data folder, launches the backfill of the job `daily_reconciliation` over the range the way the UI does, and
times it from the launch until the last run has finished. It reports the wall time, the runs, how many were
in flight and started at once, each run's own duration, where the time outside the runs went (the daemon's
ticks, the run worker's start), and writes backfill.json and backfill.md to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES
from dagster._core.storage.tags import BACKFILL_ID_TAG

from batch_assets.generator import generate
from batch_assets_tests.dagster_dev import (
    LAUNCH_BACKFILL,
    graphql,
    job_backfill_params,
    running_dagster_dev,
)
from benchmarks import report
from benchmarks.run import REPO

SUMMARY_KEY = dg.AssetKey(["recon", "summary"])
IN_FLIGHT = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}


def measure(days: list[date], home: Path, timeout: float) -> dict:
    partitions = [day.isoformat() for day in days]
    params = job_backfill_params(partitions)
    with running_dagster_dev(home) as base_url, dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        launched_at, launched_epoch = time.monotonic(), time.time()
        launched = graphql(base_url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise SystemExit(f"the webserver refused the backfill: {launched}")
        backfill_id = launched["backfillId"]
        max_in_flight = max_started = 0
        while True:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
            max_in_flight = max(max_in_flight, sum(r.status in IN_FLIGHT for r in runs))
            max_started = max(max_started, sum(r.status == dg.DagsterRunStatus.STARTED for r in runs))
            backfill = instance.get_backfill(backfill_id)
            # A job backfill turns terminal once it has submitted its run (one for the whole range).
            if backfill.status in BULK_ACTION_TERMINAL_STATUSES and runs and all(r.is_finished for r in runs):
                break
            if time.monotonic() - launched_at > timeout:
                raise SystemExit(f"backfill {backfill_id} did not finish within {timeout:.0f} s")
            time.sleep(0.5)
        seen = time.monotonic() - launched_at
        stats = [instance.get_run_stats(run.run_id) for run in runs]
        records = instance.get_run_records(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        # Every day of the range must have its summary, the last stage, materialised.
        missing = len(set(partitions) - instance.get_materialized_partitions(SUMMARY_KEY))
    run_seconds = [s.end_time - s.start_time for s in stats if s.start_time and s.end_time]
    first_created = min(r.create_timestamp.timestamp() for r in records)
    first_started = min(s.start_time for s in stats if s.start_time)
    last_ended = max(s.end_time for s in stats if s.end_time)
    return {
        "days": len(days),
        # From the launch until the last run finished; the backfill itself is marked complete by the daemon's
        # next tick, up to 30 s later (Dagster's fixed interval), which `backfill_complete_seconds` includes.
        "wall_seconds": last_ended - launched_epoch,
        "backfill_complete_seconds": seen,
        "runs": len(runs),
        "succeeded": sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs),
        "days_missing": missing,
        "max_in_flight": max_in_flight,
        "max_started": max_started,
        "run_seconds_median": statistics.median(run_seconds),
        "run_seconds_sum": sum(run_seconds),
        # Where the time outside the runs goes: the daemon's tick that submits the backfill's run, the run
        # worker's start (a new process that loads the code), and the run's end until this loop saw it.
        "launch_to_run_created_seconds": first_created - launched_epoch,
        "run_created_to_started_seconds": first_started - first_created,
        "run_ended_to_backfill_complete_seconds": launched_epoch + seen - last_ended,
    }


def markdown(result: dict) -> str:
    return "\n".join(
        [
            f"**Backfill of {result['days']} days of {result['rows']:,} ledger rows** through `dg dev` and the shipped "
            "`dagster.yaml`, launched like the UI's job backfill, from launch until the last run finished:",
            "",
            "| wall s | runs | succeeded | most in flight | most started | median run s | sum of runs s "
            "| launch to run created s | run created to started s | backfill marked complete s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {result['wall_seconds']:.1f} | {result['runs']} | {result['succeeded']} | {result['max_in_flight']} | "
            f"{result['max_started']} | {result['run_seconds_median']:.2f} | {result['run_seconds_sum']:.1f} "
            f"| {result['launch_to_run_created_seconds']:.1f} | {result['run_created_to_started_seconds']:.1f} "
            f"| {result['backfill_complete_seconds']:.1f} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=10_000, help="ledger rows per day")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 2, 3))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(prefix="batch-assets-backfill-"))
    try:
        home = work / "data"
        generate(start=args.start, days=args.days, rows=args.rows, fmt="csv", seed=args.seed, landing=home / "landing")
        days = [args.start + timedelta(days=i) for i in range(args.days)]
        result = {
            **measure(days, home, args.timeout),
            "rows": args.rows,
            "machine": report.machine_info(REPO),
            # benchmarks/targets.py puts this beside results.json only if it was measured in the same round.
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backfill.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / "backfill.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0 if result["succeeded"] == result["runs"] and result["days_missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
