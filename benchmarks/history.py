"""`make bench`, third part: whether a day costs more once the warehouse and the instance hold 60 days of history.

It generates 61 consecutive business days of N rows a side with the project's generator, reconciles days 1 to
60 in one process (`run_days`, as `batch-assets run` does), then, per repeat, times day 1 alone in a fresh data
folder and day 61 in a copy of the folder that holds the 60 days: each a whole process, in-process by default.
Both folders see the same landing zone (all 61 days), so the one difference is the history. It writes
history.json and history.md to --out; the ratio is each repeat's day 61 over its day 1, then the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from batch_assets import settings
from benchmarks import report
from benchmarks.proctree import run_measured
from benchmarks.run import DEFAULT_DAY, REPO, _fresh, run_environment, time_pipeline

STAGES = ("ingest", "validate", "match", "exceptions", "summary", "checks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.history", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="ledger rows a day")
    parser.add_argument("--days", type=int, default=60, help="days of history before the measured day")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each day; the median is quoted")
    parser.add_argument("--mode", choices=tuple(report.MODES), default="inprocess")
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_DAY, help="day 1")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--work-dir", type=Path, help="where the days and data folders go (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a process is killed")
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    return parser


def _run(command: list[str], env: dict[str, str], log: Path, timeout: float, what: str) -> float:
    result = run_measured(command, env=env, cwd=REPO, log=log, timeout_seconds=timeout)
    if result.returncode != 0:
        raise SystemExit(f"{what} exited with {result.returncode}:\n{result.log_tail()}")
    return result.wall_seconds


def _with_history(folder: Path, history: Path) -> Path:
    """A copy of the data folder `history` under `folder`, its landing zone hard-linked (only read)."""
    data = folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(history, data, ignore=lambda where, names: ["landing"] if Path(where) == history else [])
    shutil.copytree(history / "landing", data / "landing", copy_function=os.link)
    return data


def _summary(runs: list[dict]) -> dict:
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return {}
    totals = [run["total_seconds"] for run in ok]
    return {
        "median_seconds": statistics.median(totals),
        "range_seconds": [min(totals), max(totals)],
        "median": report.median_of(ok),
    }


def markdown(result: dict) -> str:
    first, last = result["first_day"], result["measured_day"]
    header = ["day", "history", "total s (min–max)", "run s", *STAGES, "between", "peak RSS GiB"]
    lines = [
        f"**Day {result['history_days'] + 1} against day 1**, {result['rows']:,} ledger rows a day, "
        f"{report.MODES[result['mode']]}, median of {result['repeats']}: day 1 ({first}) alone in a fresh data "
        f"folder, day {result['history_days'] + 1} ({last}) after {result['history_days']} reconciled days "
        f"(built in {result['build_seconds']:.0f} s). Ratio {_ratio(result)}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for key, day, history in (("day_1", first, 0), ("day_n", last, result["history_days"])):
        summary = result[key]
        if not summary:
            lines.append(f"| {day} | {history} days | failed |")
            continue
        median = summary["median"]
        low, high = summary["range_seconds"]
        stages = median.get("stages", {})
        lines.append(
            "| "
            + " | ".join(
                [
                    day,
                    f"{history} days",
                    f"{summary['median_seconds']:.2f} ({low:.2f}–{high:.2f})",
                    f"{median.get('run_seconds', 0):.2f}",
                    *[f"{stages.get(stage, 0):.2f}" for stage in STAGES],
                    f"{median.get('between_steps_seconds', 0):.2f}",
                    f"{median.get('peak_rss_bytes', 0) / report.GIB:.3f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _ratio(result: dict) -> str:
    return "not measured" if result["ratio"] is None else f"{result['ratio']:.2f}×"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.days < 1 or args.repeats < 1 or args.rows < 1:
        parser.error("--days, --repeats and --rows must be at least 1")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    measured_day = args.start + timedelta(days=args.days)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="batch-assets-history-"))
    history = work / "history" / "data"
    landing = history / "landing"
    try:
        print(f"generating {args.days + 1} days of {args.rows:,} ledger rows into {landing}", flush=True)
        generate = [sys.executable, "-m", "batch_assets.cli", "generate", "--start", args.start.isoformat()]
        generate += ["--days", str(args.days + 1), "--rows", str(args.rows), "--seed", str(args.seed)]
        _run(
            [*generate, "--landing", str(landing)],
            dict(os.environ),
            work / "generate.log",
            args.timeout,
            "generating the days",
        )
        print(f"reconciling {args.start} and the {args.days - 1} days after it in one process", flush=True)
        env = run_environment(history)
        settings.write_instance_config(Path(env["DAGSTER_HOME"]))
        build = [sys.executable, "-m", "benchmarks.children", "inprocess", "--day", args.start.isoformat()]
        build_seconds = _run(
            [*build, "--days", str(args.days)], env, work / "history.log", args.timeout, "reconciling the history"
        )
        runs = []
        for repeat in range(1, args.repeats + 1):
            folder = work / f"run-{repeat}-day-1"
            day_1 = time_pipeline(args.mode, args.start, _fresh(folder, landing), folder, args.timeout)
            folder = work / f"run-{repeat}-day-{args.days + 1}"
            data = _with_history(folder, history)
            day_n = time_pipeline(args.mode, measured_day, data, folder, args.timeout, history=True)
            ratio = None if "error" in day_1 or "error" in day_n else day_n["total_seconds"] / day_1["total_seconds"]
            runs.append({"repeat": repeat, "day_1": day_1, "day_n": day_n, "ratio": ratio})
            print(f"run {repeat}: {_progress(day_1)} on day 1, {_progress(day_n)} on day {args.days + 1}", flush=True)
            if not args.keep:
                for name in ("1", str(args.days + 1)):
                    shutil.rmtree(work / f"run-{repeat}-day-{name}", ignore_errors=True)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    ratios = [run["ratio"] for run in runs if run["ratio"] is not None]
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.history", *(sys.argv[1:] if argv is None else argv)]),
        "rows": args.rows,
        "history_days": args.days,
        "repeats": args.repeats,
        "mode": args.mode,
        "first_day": args.start.isoformat(),
        "measured_day": measured_day.isoformat(),
        "build_seconds": build_seconds,
        "day_1": _summary([run["day_1"] for run in runs]),
        "day_n": _summary([run["day_n"] for run in runs]),
        "ratio": statistics.median(ratios) if ratios else None,
        "runs": runs,
        "machine": report.machine_info(REPO),
        # benchmarks/targets.py puts this beside results.json only if it was measured in the same round.
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "history.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (args.out / "history.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0 if len(ratios) == args.repeats else 1


def _progress(figures: dict) -> str:
    if "error" in figures:
        return f"FAILED ({figures['error']})"
    return f"{figures['total_seconds']:.2f}s"


if __name__ == "__main__":
    sys.exit(main())
