"""`make bench`: generate days of N rows a side, then time the ingest floor, the SQL reference and the daily job."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from batch_assets import settings
from benchmarks import report
from benchmarks.collect import accuracy, reference_accuracy, run_stages
from benchmarks.proctree import ChildResult, run_measured

REPO = Path(__file__).resolve().parents[1]
# A Monday just after the partitions' start date, so that it is a partition on any clock after 2025.
DEFAULT_DAY = date(2025, 1, 6)
TWENTY_MILLION = 20_000_000
# What each run of the day measures besides the pipeline, and the per-run ratios of its total to them.
BASELINES = ("floor", "reference")
RATIOS = {"ratio_to_floor": "floor", "ratio_to_reference": "reference"}
PATH_SETTINGS = (
    settings.HOME,
    settings.LANDING,
    settings.WAREHOUSE,
    settings.SHARED_STORE,
    settings.ALERT_FILE,
    "DAGSTER_HOME",
)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of row counts") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("row counts must be at least 1")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=[1_000, 1_000_000, 5_000_000],
        help="ledger rows per day, comma-separated (1,000 gives the small-day row of the targets)",
    )
    parser.add_argument("--with-20m", action="store_true", help="also a day of 20M rows a side")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the tables quote the median")
    parser.add_argument(
        "--modes", default="inprocess,cli", help="inprocess, cli or both (the floor and the reference always run)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="where results.json and results.md go")
    parser.add_argument("--work-dir", type=Path, help="where generated days and run folders go (default: a temp dir)")
    parser.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY, help="the business day to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a measurement is killed")
    parser.add_argument("--keep", action="store_true", help="keep the data folders (they are large)")
    return parser


def run_environment(data: Path) -> dict[str, str]:
    """This process's environment with every path setting pointed into the fresh data folder `data`; tuning
    knobs the caller exported (such as BATCH_ASSETS_DUCKDB_THREADS) are kept, the others get their defaults."""
    env = {name: value for name, value in os.environ.items() if name not in PATH_SETTINGS}
    env.update(settings.data_environment(data))
    return env


def knobs() -> dict[str, str]:
    """The settings the measurements ran with, paths left out (each run has its own)."""
    from batch_assets.definitions import defs

    rows = settings.setting_rows(defs.resources)
    return {r.variable: os.environ.get(r.variable, r.default) for r in rows if r.variable not in PATH_SETTINGS}


def _child(module_args: list[str], **kwargs) -> ChildResult:
    return run_measured([sys.executable, "-m", "benchmarks.children", *module_args], cwd=REPO, **kwargs)


def _failure(result: ChildResult, what: str) -> dict:
    return {"error": f"{what} exited with {result.returncode}; log {result.log}", "log_tail": result.log_tail()}


def _process(result: ChildResult) -> dict:
    return {
        "cpu_seconds": result.cpu_seconds,
        "load_average_before": result.load_before,
        "peak_rss_bytes": result.peak_rss_bytes,
        "peak_tree_rss_bytes_sampled": result.peak_tree_rss_bytes,
        "max_process_rss_bytes": result.max_process_rss_bytes,
        "rss_samples": result.samples,
    }


def _fresh(folder: Path, landing: Path) -> Path:
    """A fresh data folder under `folder` whose landing zone holds the generated day (hard links: the
    pipeline only reads landing files, and a copy of gigabytes would only cost time)."""
    data = folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(landing, data / "landing", copy_function=os.link)
    return data


@dataclass(frozen=True)
class GeneratedDay:
    """One generated business day: its landing files, its ground truth, and its rows as written."""

    folder: Path
    figures: dict

    @property
    def landing(self) -> Path:
        return self.folder / "landing"

    @property
    def truth(self) -> Path:
        return self.folder / "truth"

    @property
    def input_rows(self) -> int:
        return self.figures["ledger_rows"] + self.figures["bank_rows"]


def generate_day(args: argparse.Namespace, rows: int, folder: Path) -> GeneratedDay:
    result_file = folder / "generated.json"
    result = _child(
        [
            "generate",
            "--day",
            args.day.isoformat(),
            "--rows",
            str(rows),
            "--seed",
            str(args.seed),
            "--landing",
            str(folder / "landing"),
            "--truth",
            str(folder / "truth"),
            "--result",
            str(result_file),
        ],
        env=os.environ,
        log=folder / "generate.log",
        timeout_seconds=args.timeout,
    )
    if result.returncode != 0:
        raise SystemExit(f"generating {rows:,} rows failed:\n{result.log_tail()}")
    return GeneratedDay(folder, {**json.loads(result_file.read_text()), **_process(result)})


def measure_floor(args: argparse.Namespace, day: GeneratedDay, folder: Path) -> dict:
    data = _fresh(folder, day.landing)
    result_file = folder / "floor.json"
    result = _child(
        [
            "floor",
            "--day",
            args.day.isoformat(),
            "--landing",
            str(data / "landing"),
            "--database",
            str(data / "floor.duckdb"),
            "--result",
            str(result_file),
        ],
        env=run_environment(data),
        log=folder / "floor.log",
        timeout_seconds=args.timeout,
    )
    if result.returncode != 0:
        return _failure(result, "the floor")
    floor = json.loads(result_file.read_text())
    return {
        **floor,
        "process_wall_seconds": result.wall_seconds,
        "rows_per_s": day.input_rows / floor["seconds"],
        **_process(result),
    }


def measure_reference(args: argparse.Namespace, day: GeneratedDay, folder: Path) -> dict:
    """benchmarks/reference_sql.py on the day: the same day's work as bare SQL, in its own process and
    fresh folder; its time is its DuckDB statements alone, as the floor's is."""
    data = _fresh(folder, day.landing)
    database = data / "reference.duckdb"
    result_file = folder / "reference.json"
    result = run_measured(
        [
            sys.executable,
            "-m",
            "benchmarks.reference_sql",
            "--landing",
            str(data / "landing"),
            "--day",
            args.day.isoformat(),
            "--db",
            str(database),
            "--result",
            str(result_file),
        ],
        env=run_environment(data),
        cwd=REPO,
        log=folder / "reference.log",
        timeout_seconds=args.timeout,
    )
    if result.returncode != 0:
        return _failure(result, "the reference")
    reference = json.loads(result_file.read_text())
    return {
        **reference,
        "process_wall_seconds": result.wall_seconds,
        "rows_per_s": day.input_rows / reference["seconds"],
        **_process(result),
        **reference_accuracy(database, day.truth, args.day),
    }


def pipeline_command(mode: str, day: date) -> list[str]:
    if mode == "inprocess":
        return [sys.executable, "-m", "benchmarks.children", "inprocess", "--day", day.isoformat()]
    # `dg launch --job` executes the job in this one process (dagster's `job execute` underneath),
    # reading the code location from pyproject.toml's [tool.dg] block, so the working directory is the repo.
    return [
        str(Path(sys.executable).with_name("dg")),
        "launch",
        "--job",
        "daily_reconciliation",
        "--partition",
        day.isoformat(),
    ]


def time_pipeline(mode: str, day: date, data: Path, folder: Path, timeout: float, *, history: bool = False) -> dict:
    """The day's whole job, every asset and check, as one process against the data folder `data` and its
    Dagster instance, which holds no other run unless `history` (then the newest run is this one)."""
    env = run_environment(data)
    dagster_home = Path(env["DAGSTER_HOME"])
    settings.write_instance_config(dagster_home)
    command = pipeline_command(mode, day)
    result = run_measured(command, env=env, cwd=REPO, log=folder / f"{mode}.log", timeout_seconds=timeout)
    if result.returncode != 0:
        return _failure(result, f"the {mode} run")
    run = run_stages(dagster_home, latest=history)
    if run["run_status"] != "SUCCESS":
        return {"error": f"run {run['run_id']} ended {run['run_status']}", **run}
    return {
        "total_seconds": result.wall_seconds,
        "startup_seconds": result.wall_seconds - run["run_seconds"],
        **run,
        **_process(result),
    }


def measure_pipeline(args: argparse.Namespace, mode: str, day: GeneratedDay, folder: Path) -> dict:
    """The day's whole job in one fresh data folder and Dagster instance, with its accuracy."""
    data = _fresh(folder, day.landing)
    figures = time_pipeline(mode, args.day, data, folder, args.timeout)
    if "error" in figures:
        return figures
    return {
        **figures,
        "rows_per_s": day.input_rows / figures["total_seconds"],
        **accuracy(data / "warehouse.duckdb", day.truth, args.day),
    }


def summarise(runs: list[dict], modes: list[str]) -> dict:
    """Medians over the runs that succeeded; each ratio to the floor or the reference is taken within its own
    run first."""
    median: dict = {}
    for name in (*BASELINES, *modes):
        ok = [run[name] for run in runs if "error" not in run[name]]
        if ok:
            median[name] = report.median_of(ok)
    for key in RATIOS:
        ratios = {mode: [run[key][mode] for run in runs if mode in run[key]] for mode in modes}
        median[key] = {mode: statistics.median(values) for mode, values in ratios.items() if values}
    # On a shared machine the spread says how far to trust the median.
    totals = {
        name: [run[name].get("total_seconds", run[name].get("seconds")) for run in runs if "error" not in run[name]]
        for name in (*BASELINES, *modes)
    }
    median["total_seconds_range"] = {name: [min(values), max(values)] for name, values in totals.items() if values}
    return median


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    modes = [mode for mode in args.modes.split(",") if mode]
    if not set(modes) <= set(report.MODES):
        parser.error(f"--modes takes {', '.join(report.MODES)}")
    sizes = args.sizes + ([TWENTY_MILLION] if args.with_20m and TWENTY_MILLION not in args.sizes else [])
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="batch-assets-bench-"))
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "business_day": args.day.isoformat(),
        "repeats": args.repeats,
        "modes": modes,
        "machine": report.machine_info(REPO),
        "settings": knobs(),
        "sizes": [],
    }
    failed = False
    for rows in sizes:
        folder = work / f"rows-{rows}"
        print(f"generating one day of {rows:,} ledger rows into {folder}", flush=True)
        day = generate_day(args, rows, folder / "day")
        size = {"rows_per_side": rows, "input_rows": day.input_rows, "generated": day.figures, "runs": []}
        results["sizes"].append(size)
        for repeat in range(1, args.repeats + 1):
            run: dict = {"repeat": repeat, **{key: {} for key in RATIOS}}
            run["floor"] = measure_floor(args, day, folder / f"run-{repeat}-floor")
            run["reference"] = measure_reference(args, day, folder / f"run-{repeat}-reference")
            for mode in modes:
                run[mode] = measure_pipeline(args, mode, day, folder / f"run-{repeat}-{mode}")
                for key, baseline in RATIOS.items():
                    if "error" not in run[mode] and "error" not in run[baseline]:
                        run[key][mode] = run[mode]["total_seconds"] / run[baseline]["seconds"]
            size["runs"].append(run)
            failed |= any("error" in run[name] for name in (*BASELINES, *modes))
            print(_progress(rows, run, modes), flush=True)
            size["median"] = summarise(size["runs"], modes)
            # Written after every run, so that an interrupted benchmark keeps what it measured.
            report.write_json(results, args.out)
            if not args.keep:
                for name in (*BASELINES, *modes):
                    shutil.rmtree(folder / f"run-{repeat}-{name}", ignore_errors=True)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    json_path = report.write_json(results, args.out)
    companions = report.companions(results, args.out)
    md_path = report.write_markdown(results, args.out, **companions)
    print()
    print(report.markdown(results, **companions))
    print(f"results: {json_path} and {md_path}")
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def _progress(rows: int, run: dict, modes: list[str]) -> str:
    parts = [f"{rows:,} rows, run {run['repeat']}:"]
    for name in (*BASELINES, *modes):
        figures = run[name]
        if "error" in figures:
            parts.append(f"{name} FAILED ({figures['error']})")
            continue
        seconds = figures.get("total_seconds", figures.get("seconds"))
        text = f"{name} {seconds:.2f}s {figures['peak_rss_bytes'] / report.GIB:.2f} GiB"
        if "matches" in figures:
            text += f" {figures['matches']:,} matches"
        parts.append(text)
    return "  ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
