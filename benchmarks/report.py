"""The benchmark's results: the machine they were measured on, medians over repeats, JSON and a markdown table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("dagster", "dagster-dg-cli", "dagster-duckdb", "polars", "duckdb", "pyarrow", "numpy")
GIB = 1024**3
MODES = {"inprocess": "in-process", "cli": "CLI (dg launch)"}
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


def markdown(results: dict) -> str:
    """The medians as a markdown table, with the machine and the command they were measured with."""
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
        "is the time of its DuckDB statements alone (its process took `startup` more). `CPU s` is the user and "
        "system time of the whole process. Peak RSS is the whole process tree's.",
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
        "precision",
        "recall",
    ]
    table = [header, ["---"] * len(header)]
    for size in results["sizes"]:
        median = size["median"]
        rows = f"{size['rows_per_side']:,}"
        floor = median.get("floor", {})
        spread = median.get("total_seconds_range", {})
        table.append(
            [
                rows,
                "floor",
                _total(floor.get("seconds"), spread.get("floor")),
                _num(floor.get("cpu_seconds")),
                _num(_floor_startup(floor)),
                *[""] * len(STAGE_COLUMNS),
                "",
                _num(floor.get("rows_per_s"), 0),
                _num(_gib(floor), 3),
                "",
                "",
                "",
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
                    _pct(figures.get("precision")),
                    _pct(figures.get("recall")),
                ]
            )
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    failures = [
        f"{size['rows_per_side']:,} rows, run {run['repeat']}, {mode}: {run[mode]['error']}"
        for size in results["sizes"]
        for run in size["runs"]
        for mode in ("floor", *MODES)
        if isinstance(run.get(mode), dict) and run[mode].get("error")
    ]
    if failures:
        lines += ["", "Failed measurements (left out of the medians):", *[f"- {text}" for text in failures]]
    return "\n".join(lines) + "\n"


def _total(median: float | None, spread: list[float] | None) -> str:
    if median is None or not spread or spread[0] == spread[1]:
        return _num(median)
    return f"{_num(median)} ({_num(spread[0])}–{_num(spread[1])})"


def _floor_startup(floor: dict) -> float | None:
    if "process_wall_seconds" not in floor:
        return None
    return floor["process_wall_seconds"] - floor["seconds"]


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


def write_markdown(results: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.md"
    path.write_text("# Benchmark results\n\n" + markdown(results))
    return path
