"""Step retries apply to transient errors only, and progress lines carry rows done, rate and ETA."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from batch_assets.progress import Progress
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.storage import WarehouseLockTimeout

FAST_RETRY = dg.RetryPolicy(max_retries=TRANSIENT_RETRY.max_retries, delay=0.01, backoff=TRANSIENT_RETRY.backoff)


def attempts_until(error: BaseException | None, failures: int, instance: dg.DagsterInstance) -> tuple[bool, int]:
    """Materialise an asset that raises `error` on its first `failures` attempts; (success, attempts made)."""
    calls = {"n": 0}

    @dg.asset(retry_policy=FAST_RETRY)
    @fail_fast_unless_transient
    def flaky() -> None:
        calls["n"] += 1
        if error is not None and calls["n"] <= failures:
            raise error

    result = dg.materialize([flaky], instance=instance, raise_on_error=False)
    return result.success, calls["n"]


@pytest.mark.parametrize(
    "error",
    [WarehouseLockTimeout("held by PID 42"), duckdb.IOException("Could not set lock on file"), OSError("disk hiccup")],
    ids=["lock-timeout", "duckdb-io", "os-error"],
)
def test_transient_errors_are_retried_until_they_clear(error: BaseException, instance: dg.DagsterInstance) -> None:
    assert attempts_until(error, failures=2, instance=instance) == (True, 3)


def test_transient_errors_give_up_after_the_policy_s_retries(instance: dg.DagsterInstance) -> None:
    assert attempts_until(OSError("still down"), failures=99, instance=instance) == (
        False,
        1 + TRANSIENT_RETRY.max_retries,
    )


@pytest.mark.parametrize(
    "error",
    [
        ValueError("amount 1e3 is not a decimal"),
        duckdb.ConstraintException("duplicate key"),
        dg.Failure("bad file", allow_retries=False),
    ],
    ids=["value-error", "constraint", "failure"],
)
def test_data_errors_fail_fast_without_a_retry(error: BaseException, instance: dg.DagsterInstance) -> None:
    assert attempts_until(error, failures=99, instance=instance) == (False, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.unit
def test_progress_logs_rate_and_eta_at_the_interval_and_at_the_end() -> None:
    clock, log = Clock(), Lines()
    progress = Progress(log, "ingest", total=1_000_000, interval_seconds=10, clock=clock)
    clock.now += 5
    progress.advance(100_000)
    assert log.lines == []  # inside the interval: quiet
    clock.now += 5
    progress.advance(150_000, note="ledger/ledger_2026-11-02.csv")
    assert log.lines == ["ingest: 250,000/1,000,000 rows (25%), 25,000 rows/s, ETA 30s (ledger/ledger_2026-11-02.csv)"]
    clock.now += 1
    progress.advance(750_000)
    assert log.lines[-1] == "ingest: 1,000,000/1,000,000 rows (100%), 90,909 rows/s, ETA 0s"


@pytest.mark.unit
def test_progress_eta_reads_in_minutes_and_hours() -> None:
    clock, log = Clock(), Lines()
    progress = Progress(log, "match", total=10_000_000, unit="items", interval_seconds=0, clock=clock)
    clock.now += 60
    progress.advance(100_000)
    assert log.lines[-1] == "match: 100,000/10,000,000 items (1%), 1,667 items/s, ETA 1h39m"
    clock.now += 1
    progress.advance(9_500_000)
    assert log.lines[-1].endswith("157,377 items/s, ETA 3s")
