"""Test-only fault injection: SIGKILL the process at a named point of a write, to prove crashes lose nothing."""

from __future__ import annotations

import os
import signal

# Set to one of POINTS in a test's subprocess; never set in production. Read when the point is reached.
CRASH_AT = "BATCH_ASSETS_CRASH_AT"
POINTS = ("after_read", "before_commit", "after_commit")


def crash_point(name: str) -> None:
    """Die at once, as `kill -9` would, if the environment names this point."""
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
