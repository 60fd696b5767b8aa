"""What a finished measurement left behind: per-stage wall times from the run's step events, and accuracy."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from batch_assets.storage import Warehouse
from batch_assets.transforms.scoring import read_truth, score

# The node of each step of the daily job's assets (the part of its key before the first dot: a stage of bucket
# steps is a graph, whose plan, bucket and commit steps are `<node>.<op>`), and the stage it is reported as;
# every other step is a check.
ASSET_STAGES = {
    "ingest": "ingest",
    "validate": "validate",
    "match": "match",
    "recon_exceptions": "exceptions",
    "recon_summary": "summary",
}
STAGES = (*ASSET_STAGES.values(), "checks")
_STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
_RUN_EVENTS = {dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE}


def run_stages(dagster_home: Path, *, latest: bool = False) -> dict:
    """The one run in `dagster_home` (with `latest`, the newest of several): its status, its wall time from
    RUN_START to its end, the seconds of each stage (STEP_START to STEP_SUCCESS or STEP_FAILURE; checks
    summed), and the time between steps."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1) if latest else instance.get_runs()
        if len(runs) != 1:
            raise RuntimeError(f"expected one run in {dagster_home}, found {len(runs)}")
        run = runs[0]
        events = instance.all_logs(run.run_id, of_type=_STEP_EVENTS | _RUN_EVENTS)
    stages = dict.fromkeys(STAGES, 0.0)
    started: dict[str, float] = {}
    run_start = run_end = None
    for entry in events:
        kind = entry.dagster_event.event_type
        if kind == dg.DagsterEventType.RUN_START:
            run_start = entry.timestamp
        elif kind in _RUN_EVENTS:
            run_end = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif entry.step_key in started:
            stage = ASSET_STAGES.get(entry.step_key.split(".", 1)[0], "checks")
            stages[stage] += entry.timestamp - started.pop(entry.step_key)
    run_seconds = (run_end - run_start) if run_start is not None and run_end is not None else None
    return {
        "run_id": run.run_id,
        "run_status": run.status.value,
        "run_seconds": run_seconds,
        "stages": stages,
        # Dagster's own work between the steps: event writes to the instance, step set-up and tear-down.
        "between_steps_seconds": None if run_seconds is None else run_seconds - sum(stages.values()),
    }


def accuracy(warehouse: Path, truth: Path, day: date) -> dict:
    """Precision and recall of the day's recon.matches against the generator's true pairs of the day."""
    matches = Warehouse(warehouse).read_partition("recon.matches", day, ["match_id", "ledger_txn_id", "bank_txn_id"])
    return _scored(matches, truth, day)


def reference_accuracy(database: Path, truth: Path, day: date) -> dict:
    """The same for the matches that benchmarks/reference_sql.py wrote into `database`."""
    with duckdb.connect(str(database), read_only=True) as conn:
        matches = conn.sql("SELECT match_id, ledger_txn_id, bank_txn_id FROM recon.matches").pl()
    return _scored(matches, truth, day)


def _scored(matches: pl.DataFrame, truth: Path, day: date) -> dict:
    result = score(matches, read_truth(truth, [day]))
    return {
        "precision": result.precision,
        "recall": result.recall,
        "matches": result.engine_matches,
        "correct": result.correct,
        "findable": result.findable,
        "found_findable": result.found_findable,
    }
