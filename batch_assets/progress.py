"""Progress of long steps: rows done out of the total, rate and ETA, logged at a steady interval."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from batch_assets.settings import PROGRESS_SECONDS, Settings, setting


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts work done towards a known total and logs `stage: done/total unit (pct), rate, ETA` at most
    once per interval, plus once at the end, so a long step shows life without flooding the run log."""

    def __init__(
        self,
        log: Any,
        stage: str,
        total: int,
        unit: str = "rows",
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.stage, self.total, self.unit = log, stage, max(int(total), 0), unit
        self.interval, self.clock = interval_seconds, clock
        self.started = self.last_logged = clock()
        self.done = 0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def message(self, note: str = "") -> str:
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        rate = self.rate
        remaining = max(self.total - self.done, 0)
        eta = _duration(remaining / rate) if rate > 0 and remaining else ("0s" if not remaining else "unknown")
        text = f"{self.stage}: {self.done:,}/{self.total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s, ETA {eta}"
        return f"{text} ({note})" if note else text

    def advance(self, amount: int, note: str = "") -> None:
        self.done += int(amount)
        now = self.clock()
        if now - self.last_logged >= self.interval or self.done >= self.total:
            self.last_logged = now
            self.log.info(self.message(note))


class ProgressResource(Settings):
    """How often long steps log their progress."""

    interval_seconds: float = setting(10.0, PROGRESS_SECONDS, "how often long steps log rows done, rate and ETA", gt=0)

    def tracker(self, log: Any, stage: str, total: int, unit: str = "rows") -> Progress:
        return Progress(log, stage, total, unit, interval_seconds=self.interval_seconds)
