"""Test-only fault injection: kill or hold a writing stage at a named point, to prove crashes lose nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

# Both are set only in a test's subprocess, never in production, and read when a point is reached.
# A value is "<stage>:<point>", e.g. "match:before_commit", or a bare "<point>" for every stage.
CRASH_AT = "BATCH_ASSETS_CRASH_AT"
HOLD_AT = "BATCH_ASSETS_HOLD_AT"
# A held process writes `held-<pid>` into this folder, then waits until a file `release` appears there.
HOLD_DIR = "BATCH_ASSETS_HOLD_DIR"

STAGES = ("ingest", "validate", "match", "exceptions", "summary")
# after_read: the stage has read its inputs and computed its result, nothing is written yet;
# before_commit: inside the warehouse transaction, every table replaced, not committed;
# after_commit: committed, but Dagster has not yet recorded the materialisation.
POINTS = ("after_read", "before_commit", "after_commit")
# in_bucket: a bucket step of a stage, on whichever worker runs it, before it reads its inputs.
BUCKET_POINT = "in_bucket"


def _named(variable: str, stage: str, point: str) -> bool:
    return os.environ.get(variable) in (point, f"{stage}:{point}")


def crash_point(point: str, stage: str) -> None:
    """Die at once, as `kill -9` would, if the environment names this point."""
    if _named(CRASH_AT, stage, point):
        os.kill(os.getpid(), signal.SIGKILL)


def hold_point(point: str, stage: str, poll_seconds: float = 0.05) -> None:
    """Stop here until the test releases this process, if the environment names this point: a step that
    keeps running after its run worker died (a zombie writer) is made this way."""
    if not _named(HOLD_AT, stage, point):
        return
    folder = Path(os.environ[HOLD_DIR])
    (folder / f"held-{os.getpid()}").touch()
    while not (folder / "release").exists():
        time.sleep(poll_seconds)


def fault_point(point: str, stage: str) -> None:
    """Where a test may crash or hold a stage."""
    hold_point(point, stage)
    crash_point(point, stage)
