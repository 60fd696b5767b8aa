"""The new-file sensor: request a run for each business day whose landed files are complete and new, and alert
when files land late for a day that was already reconciled."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg

from batch_assets import settings
from batch_assets.alerts import Alert, AlertResource
from batch_assets.defs.automation import jobs
from batch_assets.landing import (
    DONE_SUFFIX,
    LandingFile,
    RejectedFile,
    digest_file,
    scan_landing,
)
from batch_assets.partitions import DAILY, tagged_days
from batch_assets.resources import LandingZoneResource
from batch_assets.settings import Settings, setting
from batch_assets.transforms.contract import LANDING_SOURCES, SOURCES

OPEN_ITEMS_KEY = dg.AssetKey(["recon", "open_items"])
RAW_KEYS = {source: dg.AssetKey(["raw", source]) for source in LANDING_SOURCES}
FILE_LOG_KEY = dg.AssetKey(["ops", "file_log"])
# A run of these may still be reading a day's files, or about to: the warehouse may soon hold other bytes.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# Hashing is the expensive part of a tick; stop starting new days after this much of the daemon's 60 s.
HASH_BUDGET_SECONDS = 30.0
REPORTED_LIMIT = 2000


class LandingSensorConfig(Settings):
    """How the new-file sensor decides a file is complete, and how much it looks at per tick."""

    quiet_seconds: float = setting(
        60.0,
        settings.FILE_QUIET_SECONDS,
        "seconds a landing file's size and mtime must stay unchanged before the sensor takes it",
        ge=0,
    )
    page_size: int = setting(
        500,
        settings.SENSOR_PAGE_SIZE,
        "landing files the new-file sensor looks at per tick (the cursor pages through the rest)",
        ge=1,
    )


@dataclass
class Cursor:
    """What the sensor remembers between ticks, kept small (it is stored with every tick).

    `days` maps a business day to a fingerprint of its files' names, sizes and mtimes as last requested,
    so an unchanged day costs a stat, never a hash. `after` is the last day of the previous page.
    `reported` holds ignored names already logged, so each is reported once."""

    after: str = ""
    days: dict[str, str] = field(default_factory=dict)
    reported: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            after=data.get("after", ""), days=dict(data.get("days", {})), reported=list(data.get("reported", []))
        )

    def dump(self) -> str:
        return json.dumps({"after": self.after, "days": self.days, "reported": self.reported}, sort_keys=True)


def _stat_fingerprint(files: list[LandingFile]) -> str:
    text = "\n".join(f"{f.name}\t{f.size_bytes}\t{f.mtime_ns}" for f in sorted(files, key=lambda f: f.name))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _content_key(shas: dict[str, str]) -> str:
    """The day's distinct file contents (`shas`: file name to sha256): the same bytes under another name give
    the same key."""
    return hashlib.sha256("\n".join(sorted(set(shas.values()))).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Held:
    """What the warehouse holds for a day, as its ingests recorded it in their materializations (a sensor never
    opens the warehouse, whose lock the writing runs need).

    `files` maps each source whose raw partition was ever written to that partition's files (name to sha256),
    and `runs` to the run that wrote it. `ingest_run` is the latest run whose ingest committed anything for the
    day: the file log is written by every ingest that judged the files, even when a source failed."""

    files: dict[str, dict[str, str]]
    runs: dict[str, str]
    ingest_run: str | None

    @property
    def after(self) -> str:
        """Names the warehouse's state of the day in run keys: it changes with every ingest that commits."""
        return self.ingest_run or "none"

    def seen(self) -> dict[str, str]:
        return {name: sha for files in self.files.values() for name, sha in files.items()}

    def holds(self, files: list[LandingFile], shas: dict[str, str]) -> bool:
        """Whether the day already holds exactly these bytes, all from the latest ingest: then nothing after
        that ingest failed part-way, and a run would change nothing."""
        if self.ingest_run is None or any(self.runs.get(source) != self.ingest_run for source in LANDING_SOURCES):
            return False
        return all(
            set(self.files.get(source, {}).values()) == {shas[f.name] for f in files if f.source == source}
            for source in LANDING_SOURCES
        )


def _held(instance: dg.DagsterInstance, day: str) -> Held:
    """Read from the latest materializations of the day's raw partitions and of its file log."""
    files: dict[str, dict[str, str]] = {}
    runs: dict[str, str] = {}
    for source, key in RAW_KEYS.items():
        record = _latest_materialization(instance, key, day)
        if record is not None:
            metadata = record.asset_materialization.metadata
            entries = metadata["input_files"].value if "input_files" in metadata else []
            files[source] = {entry["file_name"]: entry["sha256"] for entry in entries}
            runs[source] = record.run_id
    log = _latest_materialization(instance, FILE_LOG_KEY, day)
    return Held(files, runs, log.run_id if log is not None else None)


def _latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1)
    return records.records[0] if records.records else None


def _unfinished_run(instance: dg.DagsterInstance, day: str) -> bool:
    """Whether a run of the daily job that covers `day` (that day alone, or a backfilled range) has not ended."""
    unfinished = instance.get_run_records(dg.RunsFilter(job_name=jobs.daily_job.name, statuses=UNFINISHED))
    return any((days := tagged_days(r.dagster_run.tags)) and days[0] <= day <= days[1] for r in unfinished)


def _done_markers(root: Path) -> set[str]:
    markers: set[str] = set()
    for source in LANDING_SOURCES:
        folder = root / source
        if folder.is_dir() and not folder.is_symlink():
            with os.scandir(folder) as entries:
                markers.update(
                    f"{source}/{e.name[: -len(DONE_SUFFIX)]}" for e in entries if e.name.endswith(DONE_SUFFIX)
                )
    return markers


def _unstable(files: list[LandingFile], markers: set[str], now_ns: int, quiet_seconds: float) -> list[str]:
    """Files still being written. A file is complete when `<name>.done` exists, or when its mtime (which every
    write moves, size changes included) is at least `quiet_seconds` old."""
    quiet_ns = int(quiet_seconds * 1e9)
    return [f.name for f in files if f.name not in markers and now_ns - f.mtime_ns < quiet_ns]


@dg.sensor(
    job=jobs.daily_job,
    name="landing_files",
    # A tick costs a directory listing plus hashing of changed days only (bounded by the page and the
    # hashing budget), so it can look often and start a day soon after its files land.
    minimum_interval_seconds=15,
    description="Requests a run for each business day whose ledger and bank files have landed complete (quiet for "
    "BATCH_ASSETS_FILE_QUIET_SECONDS or marked <name>.done) with new content, and re-runs the days after it that "
    "were already reconciled.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def landing_files(
    context: dg.SensorEvaluationContext,
    landing: LandingZoneResource,
    landing_sensor: LandingSensorConfig,
    alerts: AlertResource,
):
    quiet_seconds, page_size = landing_sensor.quiet_seconds, landing_sensor.page_size
    cursor = Cursor.parse(context.cursor)
    root = landing.path
    if not root.is_dir():
        return dg.SkipReason(f"the landing zone {root} does not exist")

    files, ignored = scan_landing(root)
    reported = set(cursor.reported)
    newly_ignored: list[str] = []
    for item in ignored:
        if item.name not in reported:
            newly_ignored.append(f"{item.name} ({item.reason})")
            cursor.reported.append(item.name)
            reported.add(item.name)

    first, last = DAILY.start.date(), date.fromisoformat(DAILY.get_last_partition_key())
    by_day: dict[str, list[LandingFile]] = defaultdict(list)
    for file in files:
        if first <= file.business_date <= last:
            by_day[file.business_date.isoformat()].append(file)
        elif file.name not in reported:
            newly_ignored.append(f"{file.name} (its business date has no partition: {first} to {last})")
            cursor.reported.append(file.name)
    cursor.reported = cursor.reported[-REPORTED_LIMIT:]
    for entry in newly_ignored:
        context.log.warning(f"ignored landing entry {entry}")
    ignored_note = (
        f"; ignored {len(newly_ignored)} new entries: " + ", ".join(newly_ignored[:10]) if newly_ignored else ""
    )

    changed = [day for day in sorted(by_day) if cursor.days.get(day) != _stat_fingerprint(by_day[day])]
    # Page through the changed days from where the last tick stopped, wrapping round.
    ordered = [d for d in changed if d > cursor.after] + [d for d in changed if d <= cursor.after]

    markers = _done_markers(root)
    now_ns = time.time_ns()
    started = time.monotonic()
    ready: dict[str, str] = {}
    shas: dict[str, dict[str, str]] = {}
    waiting: list[str] = []
    examined = 0
    for day in ordered:
        if examined >= page_size or time.monotonic() - started > HASH_BUDGET_SECONDS:
            break
        day_files = by_day[day]
        examined += len(day_files)
        cursor.after = day
        missing = [s for s in SOURCES if not any(f.source == s for f in day_files)]
        if missing:
            waiting.append(f"{day} waits for a {' and a '.join(missing)} file")
            continue
        unstable = _unstable(day_files, markers, now_ns, quiet_seconds)
        if unstable:
            waiting.append(
                f"{day}: {', '.join(unstable)} still being written (no .done, changed < {quiet_seconds:g}s ago)"
            )
            continue
        # Hashed through the file as listed, so a FIFO or symlink swapped in since cannot block or mislead us.
        # Every file is hashed, so that the wait names each one that cannot be.
        day_shas: dict[str, str] = {}
        unreadable: list[str] = []
        for f in day_files:
            try:
                day_shas[f.name] = digest_file(f).sha256
            except RejectedFile as error:
                unreadable.append(str(error))
        if unreadable:
            waiting.append(f"{day} cannot be hashed: {'; '.join(unreadable)}")
            continue
        shas[day] = day_shas
        ready[day] = _content_key(shas[day])
        cursor.days[day] = _stat_fingerprint(day_files)
    if len(ordered) and ordered[-1] == cursor.after:
        cursor.after = ""  # a full lap: the next tick starts from the first day again

    # A run key names the content and the warehouse's state of the day it follows, so content that comes back
    # (A, B, then A again) is a new key, while a replayed tick asks with the same key. A day that already holds
    # its files, with no run of it unfinished, needs no run: renamed or touched files are not requested.
    held = {day: _held(context.instance, day) for day in ready}
    current = [
        day for day in ready if held[day].holds(by_day[day], shas[day]) and not _unfinished_run(context.instance, day)
    ]
    for day in current:
        del ready[day]
    more = f" and {len(current) - 10} more days" if len(current) > 10 else ""
    current_note = f"; the warehouse already holds the files of {', '.join(current[:10])}{more}" if current else ""

    if not ready:
        context.update_cursor(cursor.dump())
        if waiting:
            return dg.SkipReason("no business day is ready: " + "; ".join(waiting[:20]) + current_note + ignored_note)
        return dg.SkipReason(
            f"no new or changed files in {root} ({len(files)} files, all requested before){current_note}{ignored_note}"
        )

    change = {day: f"{key}:after:{held[day].after}" for day, key in ready.items()}
    requests = [
        dg.RunRequest(
            run_key=f"files:{day}:{change[day]}",
            partition_key=day,
            tags=jobs.run_tags(
                "landing_files",
                **{"batch_assets/content_key": key, "batch_assets/after_ingest": held[day].after},
            ),
        )
        for day, key in sorted(ready.items())
    ]
    # New bytes for a day change what every later reconciled day carried: re-run those after it, in order.
    # A reconciled day whose files were only renamed or touched changes nothing after it.
    # None until the asset has been materialised once.
    statuses = context.instance.get_status_by_partition(OPEN_ITEMS_KEY, DAILY.get_partition_keys(), DAILY) or {}
    reconciled = {day for day, status in statuses.items() if status == dg.AssetPartitionStatus.MATERIALIZED}
    late = {day: _late_files(held[day], shas[day]) for day in ready if day in reconciled}
    changed = [day for day in ready if day not in late or late[day]]
    # Made of the days' run keys, so a forward re-run is asked for again whenever its trigger is new.
    trigger = hashlib.sha256(" ".join(f"{d}:{c}" for d, c in sorted(change.items())).encode()).hexdigest()[:16]
    earliest = min(changed, default=None)
    later = sorted(d for d in reconciled if earliest and d > earliest and d not in ready)
    requests += [
        dg.RunRequest(
            run_key=f"forward:{day}:{trigger}", partition_key=day, tags=jobs.run_tags("landing_files:forward")
        )
        for day in later
    ]
    requests.sort(key=lambda r: r.partition_key)
    for day, files in sorted(late.items()):
        if files:
            _alert_late_files(context, alerts, day, change[day], files, sorted(d for d in reconciled if d > day))
    context.log.info(
        f"requesting {len(ready)} day(s) with new or changed files ({', '.join(sorted(ready))}) and {len(later)} "
        "later day(s) to re-run"
    )
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


def _late_files(held: Held, shas: dict[str, str]) -> dict[str, str]:
    """The files of a day whose bytes the warehouse does not hold, each marked "new" or "changed"."""
    seen = held.seen()
    seen_bytes = set(seen.values())
    return {name: "changed" if name in seen else "new" for name, sha in sorted(shas.items()) if sha not in seen_bytes}


def _alert_late_files(
    context: dg.SensorEvaluationContext,
    alerts: AlertResource,
    day: str,
    change: str,
    files: dict[str, str],
    later: list[str],
) -> None:
    """Alert that `files` landed for `day` after it was reconciled. The key is the change its run key names (the
    new content and the state it follows), so each change alerts once, however often a tick is replayed."""
    stale = (
        f"The reconciled days after it, {', '.join(later)}, carried its open items: they are stale until they "
        "are re-run, in order, which this tick requests."
        if later
        else "No reconciled day follows it."
    )
    described = ", ".join(f"{name} ({how})" for name, how in files.items())
    alerts.send(
        Alert(
            key=f"late_file:{day}:{change}",
            kind="late_file",
            severity="WARN",
            title=f"Late file(s) for {day}, which was already reconciled",
            text=f"{described} landed after {day} was reconciled; {day} is re-run. {stale}",
            business_date=day,
            url=f"{alerts.ui_url.rstrip('/')}/assets/recon/summary?partition={day}",
            details={"files": list(files), "rerun_days": [day, *later], "content_key": change.split(":")[0]},
        ),
        context.log,
    )
