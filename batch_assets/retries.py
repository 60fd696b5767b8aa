"""Step retries: back off and retry transient warehouse and I/O errors; fail fast on everything else."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg
import duckdb

from batch_assets.storage import WarehouseLockTimeout

# A lock held by an outside process (an analyst's session), a network share
# hiccup: waiting helps. About 2 + 4 + 8 + 16 s, each ±50%, on top of the storage module's own lock wait.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=4, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    WarehouseLockTimeout,
    duckdb.IOException,
    OSError,  # includes ConnectionError and TimeoutError
)

F = TypeVar("F", bound=Callable)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


@contextlib.contextmanager
def _only_transient_errors_retry() -> Iterator[None]:
    try:
        yield
    except dg.Failure:
        raise  # the step chose; data errors already say allow_retries=False
    except Exception as error:
        if is_transient(error):
            raise
        # A data or code error gives the same result however often it runs: report it now, once.
        raise dg.Failure(
            description=f"{type(error).__name__}: {error}",
            metadata={"error_type": type(error).__name__, "retried": False},
            allow_retries=False,
        ) from error


def fail_fast_unless_transient(fn: F) -> F:
    """Wrap an asset or check body so that the step's RetryPolicy applies to transient errors only."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            with _only_transient_errors_retry():
                yield from fn(*args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _only_transient_errors_retry():
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
