"""The benchmark's results: the machine they were measured on, medians over repeats, JSON and a markdown table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("dagster", "dagster-dg-cli", "dagster-duckdb", "polars", "duckdb", "pyarrow", "numpy")
GIB = 1024**3
MODES = {"inprocess": "in-process", "cli": "CLI (dg launch)"}
BASELINES = {"floor": "floor", "reference": "reference (SQL)"}
STAGE_COLUMNS = ("ingest", "validate", "match", "exceptions", "summary", "checks")


def _first_line_with(path: str, prefix: str) -> str | None:
    try:
        with open(path) as handle:
            return next((line for line in handle if line.startswith(prefix)), None)
    except OSError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _git(repo: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(repo: Path) -> dict:
    """Cores, memory, the container's limits where it has any, library versions and the code's commit."""
    memory = _first_line_with("/proc/meminfo", "MemTotal:")
    model = _first_line_with("/proc/cpuinfo", "model name")
    status = _git(repo, "status", "--porcelain")
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model.split(":", 1)[1].strip() if model else None,
        "memory_total_bytes": int(memory.split()[1]) * 1024 if memory else None,
        "cgroup_memory_max": _read("/sys/fs/cgroup/memory.max"),
        "cgroup_cpu_max": _read("/sys/fs/cgroup/cpu.max"),
        # The machine may be shared: the load before the first measurement says how quiet it was.
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: metadata.version(name) for name in PACKAGES},
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


def median_of(records: list[dict]) -> dict:
    """The median of every number in `records` (dicts of the same shape), recursively; other values dropped."""
    out: dict = {}
    for key in records[0]:
        values = [record.get(key) for record in records]
        if all(isinstance(v, dict) for v in values):
            out[key] = median_of(values)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
    return out


def write_json(results: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def markdown(
    results: dict,
    backfill: dict | None = None,
    history: dict | None = None,
    scale_out: dict | None = None,
    bank_formats: dict | None = None,
) -> str:
    """The medians as a markdown table, with the machine and the command they were measured with, then the
    targets (with the backfill's and the history's figures when they are given)."""
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines = [
        f"Measured {results['started_at']} with `{results['command']}`; median of {results['repeats']} run(s).",
        "",
        f"Machine: {machine['cpu_count']} cores ({machine['cpu_model']}), "
        f"{_num(machine['memory_total_bytes'] / GIB, 1)} GiB memory, load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}; Python {machine['python']}, {versions}.",
        "",
        "Seconds are wall time. `startup` is the process's time outside the run (interpreter, imports, loading "
        "the definitions, the instance); `between` is Dagster's time between the steps of the run. The floor "
        "and the reference (benchmarks/reference_sql.py, the day's work as bare DuckDB SQL) are the time of "
        "their DuckDB statements alone (their processes took `startup` more). `CPU s` is the user and system "
        "time of the whole process. Peak RSS is the whole process tree's. The ratios are each run's total over "
        "the same run's floor or reference, then the median.",
        "",
        f"The machine's 1-minute load average before each measurement was {_load_range(results)}.",
        "",
    ]
    header = [
        "rows/side",
        "mode",
        "total s (min–max)",
        "CPU s",
        "startup",
        *STAGE_COLUMNS,
        "between",
        "rows/s",
        "peak RSS GiB",
        "total / floor",
        "total / reference",
        "precision",
        "recall",
    ]
    table = [header, ["---"] * len(header)]
    for size in results["sizes"]:
        median = size["median"]
        rows = f"{size['rows_per_side']:,}"
        spread = median.get("total_seconds_range", {})
        for name, label in BASELINES.items():
            figures = median.get(name, {})
            if not figures:
                continue
            table.append(
                [
                    rows,
                    label,
                    _total(figures.get("seconds"), spread.get(name)),
                    _num(figures.get("cpu_seconds")),
                    _num(_baseline_startup(figures)),
                    *[""] * len(STAGE_COLUMNS),
                    "",
                    _num(figures.get("rows_per_s"), 0),
                    _num(_gib(figures), 3),
                    "",
                    "",
                    _pct(figures.get("precision")),
                    _pct(figures.get("recall")),
                ]
            )
        for mode, label in MODES.items():
            figures = median.get(mode)
            if not figures:
                continue
            stages = figures.get("stages", {})
            table.append(
                [
                    rows,
                    label,
                    _total(figures.get("total_seconds"), spread.get(mode)),
                    _num(figures.get("cpu_seconds")),
                    _num(figures.get("startup_seconds")),
                    *[_num(stages.get(stage)) for stage in STAGE_COLUMNS],
                    _num(figures.get("between_steps_seconds")),
                    _num(figures.get("rows_per_s"), 0),
                    _num(_gib(figures), 3),
                    _num(median.get("ratio_to_floor", {}).get(mode)),
                    _num(median.get("ratio_to_reference", {}).get(mode)),
                    _pct(figures.get("precision")),
                    _pct(figures.get("recall")),
                ]
            )
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    failures = [
        f"{size['rows_per_side']:,} rows, run {run['repeat']}, {mode}: {run[mode]['error']}"
        for size in results["sizes"]
        for run in size["runs"]
        for mode in (*BASELINES, *MODES)
        if isinstance(run.get(mode), dict) and run[mode].get("error")
    ]
    if failures:
        lines += ["", "Failed measurements (left out of the medians):", *[f"- {text}" for text in failures]]
    if bank_formats:
        from benchmarks.bank_formats import markdown as bank_formats_markdown

        lines += ["", "## Bank statement formats", "", bank_formats_markdown(bank_formats)]
    lines += ["", "## Targets", "", targets_markdown(targets(results, backfill, history, scale_out, bank_formats))]
    return "\n".join(lines) + "\n"


def _total(median: float | None, spread: list[float] | None) -> str:
    if median is None or not spread or spread[0] == spread[1]:
        return _num(median)
    return f"{_num(median)} ({_num(spread[0])}–{_num(spread[1])})"


def _baseline_startup(figures: dict) -> float | None:
    if "process_wall_seconds" not in figures:
        return None
    return figures["process_wall_seconds"] - figures["seconds"]


def _load_range(results: dict) -> str:
    loads = [
        figures["load_average_before"]
        for size in results["sizes"]
        for run in size["runs"]
        for figures in run.values()
        if isinstance(figures, dict) and "load_average_before" in figures
    ]
    return f"{min(loads):.2f} to {max(loads):.2f}" if loads else "not measured"


def _gib(figures: dict) -> float | None:
    peak = figures.get("peak_rss_bytes")
    return None if peak is None else peak / GIB


def write_markdown(
    results: dict,
    out: Path,
    backfill: dict | None = None,
    history: dict | None = None,
    scale_out: dict | None = None,
    bank_formats: dict | None = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.md"
    path.write_text("# Benchmark results\n\n" + markdown(results, backfill, history, scale_out, bank_formats))
    return path


# The targets of issues 13, 14 and 15 that `make bench` measures: which figure, its limit, and its unit.
ONE_MILLION = 1_000_000
FIVE_MILLION = 5_000_000
TWENTY_MILLION = 20_000_000
SMALL_DAY = 1_000
BACKFILL_SHAPE = (30, 10_000)  # days, ledger rows a day
HISTORY_DAYS = 60


@dataclass(frozen=True)
class Target:
    measure: str
    target: str
    limit: float
    unit: str
    at_least: bool = False  # a speed-up: met when the value is the limit or more

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


TARGETS = {
    "floor": Target("5M a side, whole day through Dagster, against the floor", "≤ 3×", 3.0, "×"),
    "reference": Target("5M a side, against reference_sql.py", "≤ 2.5×", 2.5, "×"),
    "rss_5m": Target("5M a side, peak RSS of the process tree", "≤ 1.5 GiB", 1.5, " GiB"),
    "rss_20m": Target("20M a side, peak RSS", "≤ 2 GiB", 2.0, " GiB"),
    "small_day": Target("1,000-row day, whole process (`dg launch`)", "≤ 3 s", 3.0, " s"),
    "backfill": Target("30-day backfill of 10,000-row days through the daemon", "≤ 60 s", 60.0, " s"),
    "history": Target("day 61 against day 1 (same size, 60 days of history)", "≤ 1.1×", 1.1, "×"),
    "buckets_2_workers": Target("5M a side, bucket stages: 1 Celery worker over 2", "≥ 1.7×", 1.7, "×", True),
    "day_2_workers": Target("5M a side, whole run: 1 Celery worker over 2", "≥ 1.4×", 1.4, "×", True),
    "celery_cost": Target("5M a side, 2 Celery workers over one process on 2 cores", "≤ 1.3×", 1.3, "×"),
    "camt_1m": Target("camt.053 of 1M entries, ingest (fingerprint and land)", "≤ 15 s", 15.0, " s"),
    "camt_5m_rss": Target("camt.053 of 5M entries, ingest peak RSS", "≤ 1 GiB", 1.0, " GiB"),
}


def _size(results: dict, rows: int) -> dict | None:
    return next((size for size in results["sizes"] if size["rows_per_side"] == rows and "median" in size), None)


def _worst(per_mode: dict[str, float], unit: str) -> tuple[float | None, str]:
    """The largest figure over the modes (a target holds only if it holds for each), and all of them."""
    if not per_mode:
        return None, ""
    shown = ", ".join(f"{MODES.get(mode, mode)} {value:.2f}{unit}" for mode, value in per_mode.items())
    return max(per_mode.values()), shown + ("; the larger is quoted" if len(per_mode) > 1 else "")


def _measured(
    results: dict, backfill: dict | None, history: dict | None, scale_out: dict | None, bank_formats: dict | None
) -> dict[str, tuple[float | None, str]]:
    """Each target's value (None when not measured in this round) and how it was measured, or how to."""
    out: dict[str, tuple[float | None, str]] = {}
    five = _size(results, FIVE_MILLION)
    for key, ratio in (("floor", "ratio_to_floor"), ("reference", "ratio_to_reference")):
        out[key] = _worst(five["median"].get(ratio, {}), "×") if five else (None, "")
    for key, size in (("rss_5m", five), ("rss_20m", _size(results, TWENTY_MILLION))):
        per_mode = {m: size["median"][m]["peak_rss_bytes"] / GIB for m in MODES if m in size["median"]} if size else {}
        out[key] = _worst(per_mode, " GiB")
    small = _size(results, SMALL_DAY)
    cli = small["median"].get("cli") if small else None
    out["small_day"] = (cli["total_seconds"], "median of the `dg launch` runs at 1,000 rows") if cli else (None, "")
    if backfill:
        shape = (backfill["days"], backfill["rows"])
        runs = f"{backfill['runs']} run" + ("s" if backfill["runs"] != 1 else "")
        note = f"{runs}, {backfill['succeeded']} succeeded; median run {backfill.get('run_seconds_median', 0):.1f} s"
        if shape == BACKFILL_SHAPE:
            out["backfill"] = (backfill["wall_seconds"], note)
        else:
            out["backfill"] = (
                None,
                f"measured {shape[0]} days of {shape[1]:,} rows instead: {backfill['wall_seconds']:.1f} s",
            )
    if history:
        note = (
            f"{history['rows']:,} rows a side, median of {history['repeats']} per-run ratios; day 1 "
            f"{history['day_1']['median_seconds']:.2f} s, day {history['history_days'] + 1} "
            f"{history['day_n']['median_seconds']:.2f} s"
        )
        if history["history_days"] == HISTORY_DAYS and history.get("ratio") is not None:
            out["history"] = (history["ratio"], note)
        else:
            out["history"] = (None, f"measured with {history['history_days']} days of history instead: {note}")
    if scale_out:
        shape = f"{scale_out['rows']:,} rows a side, median of {scale_out['repeats']} paired repeats"
        for key, ratio in (
            ("buckets_2_workers", "bucket_stages_2_over_1"),
            ("day_2_workers", "day_2_over_1"),
            ("celery_cost", "celery_2_to_inprocess"),
        ):
            value = scale_out["ratios"][ratio]
            out[key] = (value, shape) if scale_out["rows"] == FIVE_MILLION else (None, f"{shape}: {value:.2f}×")
    if bank_formats:
        camt = bank_formats["formats"]["camt053"]
        # A day of 1M bank lines, give or take the generator's draw: the time is scaled to exactly 1M entries.
        per_million = camt["median_seconds"] * ONE_MILLION / camt["lines"]
        note = f"{camt['lines']:,} entries in {camt['median_seconds']:.1f} s, median of {bank_formats['repeats']}"
        near = abs(camt["lines"] - ONE_MILLION) <= ONE_MILLION // 10
        out["camt_1m"] = (per_million, note) if near else (None, f"{note}: {per_million:.1f} s per 1M")
        if memory := bank_formats.get("memory"):
            gib = memory["peak_rss_bytes"] / GIB
            note = f"{memory['lines']:,} entries, {memory['seconds']:.0f} s"
            out["camt_5m_rss"] = (
                (gib, note) if memory["lines"] >= 0.9 * FIVE_MILLION else (None, f"{note}: {gib:.2f} GiB")
            )
    return out


HOW_TO_MEASURE = {
    "floor": "needs 5000000 in --sizes",
    "reference": "needs 5000000 in --sizes",
    "rss_5m": "needs 5000000 in --sizes",
    "rss_20m": "needs --with-20m",
    "small_day": "needs 1000 in --sizes and cli in --modes",
    "backfill": "python -m benchmarks.backfill, then python -m benchmarks.targets",
    "history": "python -m benchmarks.history, then python -m benchmarks.targets",
    "buckets_2_workers": "python -m benchmarks.scale_out, then python -m benchmarks.targets",
    "day_2_workers": "python -m benchmarks.scale_out, then python -m benchmarks.targets",
    "celery_cost": "python -m benchmarks.scale_out, then python -m benchmarks.targets",
    "camt_1m": "python -m benchmarks.bank_formats, then python -m benchmarks.targets",
    "camt_5m_rss": "python -m benchmarks.bank_formats --memory-lines 5000000, then python -m benchmarks.targets",
}


def targets(
    results: dict,
    backfill: dict | None = None,
    history: dict | None = None,
    scale_out: dict | None = None,
    bank_formats: dict | None = None,
) -> list[dict]:
    """One row per target, measured or not: measure, value, target, met (None when not measured), and how."""
    measured = _measured(results, backfill, history, scale_out, bank_formats)
    rows = []
    for key, target in TARGETS.items():
        value, how = measured.get(key, (None, ""))
        rows.append(
            {
                "key": key,
                "measure": target.measure,
                "value": value,
                "shown": "not measured" if value is None else f"{value:.2f}{target.unit}",
                "target": target.target,
                "met": None if value is None else target.met(value),
                "how": how if value is not None or how else HOW_TO_MEASURE[key],
            }
        )
    return rows


def targets_markdown(rows: list[dict]) -> str:
    met = {True: "yes", False: "**no**", None: ""}
    lines = ["| measure | value | target | met | how it was measured |", "|---|---|---|---|---|"]
    lines += [f"| {r['measure']} | {r['shown']} | {r['target']} | {met[r['met']]} | {r['how']} |" for r in rows]
    return "\n".join(lines)


def _finished_since(path: Path, started_at: str) -> dict | None:
    """The JSON at `path` if it was measured in the same round as results.json (finished after it started)."""
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    finished = figures.get("finished_at")
    if not finished or datetime.fromisoformat(finished) < datetime.fromisoformat(started_at):
        return None
    return figures


def companions(results: dict, out: Path) -> dict[str, dict | None]:
    """backfill.json, history.json, scale_out.json and bank_formats.json from `out`, each only if it belongs to this
    round of results.json: an older file would put another day's figure beside these."""
    names = ("backfill", "history", "scale_out", "bank_formats")
    return {name: _finished_since(out / f"{name}.json", results["started_at"]) for name in names}
