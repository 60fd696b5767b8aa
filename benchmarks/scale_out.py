"""`make bench`, fourth part: one day on Celery with one and two bucket workers, and in one process, paired.

It generates one business day of N rows a side, then, per repeat and in turn, runs the whole daily job on it
three ways, each in a fresh data folder and with `dg launch` (the job's own executor, no daemon in the way):
- `inprocess`: the default executor, the process pinned to both cores (`taskset -c 0,1`);
- `celery-1` and `celery-2`: the Celery executor on a local cluster (Redis, Postgres, the warehouse's worker
  on both cores) with one or two bucket workers, each pinned to a core of its own, with one Polars and one
  DuckDB thread.
From each run's step events it takes the run's time, the bucket stages' time (for each stage of bucket steps,
its first bucket step's start to its last one's end) and every step's time, and from the workers their peak
RSS. Ratios are taken within each repeat, then the median is quoted. It writes scale_out.json and
scale_out.md to --out, and the cost of each part per million rows that docs/scaling.md projects from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from batch_assets import settings
from batch_assets.local_cluster import BUCKET_QUEUE, WAREHOUSE_FOLDER, LocalCluster
from batch_assets.partitions import WAREHOUSE_QUEUE
from batch_assets.storage import Warehouse
from benchmarks.collect import ASSET_STAGES
from benchmarks.proctree import memory_bytes, run_measured, tree_pids
from benchmarks.run import DEFAULT_DAY, REPO, _fresh, generate_day, pipeline_command, run_environment

GIB = 1 << 30
CONFIGS = ("inprocess", "celery-1", "celery-2")
# One thread for each library in a bucket worker, so that one worker is one core's work.
ONE_THREAD = {"POLARS_MAX_THREADS": "1", settings.DUCKDB_THREADS: "1"}
MILLION = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_out", description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000, help="ledger rows of the day (about as many bank)")
    parser.add_argument(
        "--bucket-rows", type=int, default=650_000, help="rows per bucket: 8 at 5M, duplicates included, 4 a worker"
    )
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each configuration")
    parser.add_argument(
        "--fit-rows",
        type=int,
        help="a smaller day run once on 2 workers, to split costs into fixed and per row (default: a fifth of --rows)",
    )
    parser.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--work-dir", type=Path, help="where the day and the data folders go (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a run is given up")
    return parser


def spans(instance: dg.DagsterInstance) -> dict:
    """The one run's status, its RUN_START to end, and each step's (start, end) from its events."""
    (run,) = instance.get_runs()
    started: dict[str, float] = {}
    steps: dict[str, tuple[float, float]] = {}
    run_start = run_end = None
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_START:
            run_start = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
            run_end = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps[entry.step_key] = (started.pop(entry.step_key, entry.timestamp), entry.timestamp)
    return {"run_id": run.run_id, "status": run.status.value, "run": (run_start, run_end), "steps": steps}


def phases(steps: dict[str, tuple[float, float]]) -> dict:
    """Per stage of bucket steps: its plan, its bucket steps (each one's seconds, and first start to last end)
    and its commit; and the other steps (ingest and the checks) by name."""
    stages: dict[str, dict] = defaultdict(lambda: {"buckets": []})
    other = {}
    for key, (start, end) in steps.items():
        node, _, op = key.partition(".")
        stage = ASSET_STAGES.get(node)
        if stage is None or not op:
            other[key] = end - start
        elif "_bucket[" in op:
            stages[stage]["buckets"].append((start, end))
        else:
            stages[stage][op.rsplit("_", 1)[-1]] = end - start  # plan or commit
    out = {}
    for stage, parts in stages.items():
        buckets = parts.pop("buckets")
        out[stage] = {
            **parts,
            "bucket_steps": len(buckets),
            "bucket_seconds": sorted(end - start for start, end in buckets),
            "bucket_wall": max(end for _, end in buckets) - min(start for start, _ in buckets),
        }
    return {"stages": out, "other_steps": other}


def summarise(timeline: dict) -> dict:
    run_start, run_end = timeline["run"]
    parts = phases(timeline["steps"])
    return {
        "run_id": timeline["run_id"],
        "status": timeline["status"],
        "run_seconds": run_end - run_start,
        "bucket_stages_seconds": sum(stage["bucket_wall"] for stage in parts["stages"].values()),
        **parts,
    }


def matches(database: Path, day: date) -> int:
    return Warehouse(database).query("SELECT count(*) AS n FROM recon.matches WHERE business_date = ?", [day])["n"][0]


def run_inprocess(args: argparse.Namespace, landing: Path, folder: Path) -> dict:
    data = _fresh(folder, landing)
    env = {**run_environment(data), settings.BUCKET_ROWS: str(args.bucket_rows)}
    settings.write_instance_config(Path(env["DAGSTER_HOME"]))
    command = ["taskset", "-c", "0,1", *pipeline_command("cli", args.day)]
    result = run_measured(command, env=env, cwd=REPO, log=folder / "inprocess.log", timeout_seconds=args.timeout)
    if result.returncode != 0:
        raise SystemExit(f"the in-process run failed:\n{result.log_tail()}")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        figures = summarise(spans(instance))
    return {
        **figures,
        "total_seconds": result.wall_seconds,
        "peak_rss_bytes": result.peak_rss_bytes,
        "matches": matches(data / "warehouse.duckdb", args.day),
    }


def run_celery(args: argparse.Namespace, landing: Path, folder: Path, workers: int) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    overrides = {settings.BUCKET_ROWS: str(args.bucket_rows)}
    with LocalCluster(folder / "cluster", overrides=overrides) as cluster:
        shutil.copytree(landing, cluster.data / "landing", copy_function=os.link)
        cluster.start_worker("warehouse-worker", WAREHOUSE_QUEUE, cores="0,1")
        for index in range(workers):
            cluster.start_worker(f"bucket-worker-{index + 1}", BUCKET_QUEUE, env=ONE_THREAD, cores=str(index))
        command = pipeline_command("cli", args.day)
        env = cluster.environment()
        result = run_measured(command, env=env, cwd=REPO, log=folder / "launch.log", timeout_seconds=args.timeout)
        if result.returncode != 0:
            raise SystemExit(f"the Celery run with {workers} worker(s) failed:\n{result.log_tail()}")
        worker_rss = {name: _worker_peak(process.pid) for name, process in cluster.processes.items()}
        with cluster.instance() as instance:
            figures = summarise(spans(instance))
        counted = matches(cluster.data / WAREHOUSE_FOLDER / "warehouse.duckdb", args.day)
    bucket_workers = [rss for name, rss in worker_rss.items() if name.startswith("bucket-worker")]
    return {
        **figures,
        "total_seconds": result.wall_seconds,
        "launcher_peak_rss_bytes": result.peak_rss_bytes,
        "warehouse_worker_peak_rss_bytes": worker_rss.get("warehouse-worker", 0),
        "bucket_worker_peak_rss_bytes": max(bucket_workers, default=0),
        "matches": counted,
    }


def _worker_peak(pid: int) -> int:
    """The largest high-water mark of the worker's processes: Celery's pool process does the steps."""
    return max((memory_bytes(p)[1] for p in tree_pids(pid)), default=0)


def ratios(repeat: dict[str, dict]) -> dict[str, float]:
    one, two, local = repeat["celery-1"], repeat["celery-2"], repeat["inprocess"]
    return {
        "bucket_stages_2_over_1": one["bucket_stages_seconds"] / two["bucket_stages_seconds"],
        "day_2_over_1": one["run_seconds"] / two["run_seconds"],
        "celery_2_to_inprocess": two["run_seconds"] / local["run_seconds"],
    }


def serial_seconds(run: dict) -> float:
    """Everything of a run outside its bucket stages: ingest, plans, commits, checks and each step's start."""
    return run["run_seconds"] - run["bucket_stages_seconds"]


def costs(measured: list[dict], rows: int, small: dict, small_rows: int) -> dict:
    """What a day costs on Celery with 2 bucket workers, as a fixed part plus a part per million rows a side,
    fitted through the median of the repeats at `rows` and the one run at `small_rows`: the serial wall time,
    the bucket steps' total work (which the workers share) and the warehouse worker's peak RSS. A bucket
    worker's peak follows the bucket size, not the day's, so it is carried over as measured."""
    big = {
        "serial": statistics.median(serial_seconds(m) for m in measured),
        "work": statistics.median(sum(sum(s["bucket_seconds"]) for s in m["stages"].values()) for m in measured),
        "warehouse_rss": statistics.median(m["warehouse_worker_peak_rss_bytes"] for m in measured),
    }
    little = {
        "serial": serial_seconds(small),
        "work": sum(sum(s["bucket_seconds"]) for s in small["stages"].values()),
        "warehouse_rss": small["warehouse_worker_peak_rss_bytes"],
    }
    spread = (rows - small_rows) / MILLION
    fitted = {}
    for name in big:
        per_million = max((big[name] - little[name]) / spread, 0.0)
        fitted[name] = {"fixed": max(big[name] - per_million * rows / MILLION, 0.0), "per_million": per_million}
    fitted["bucket_worker_rss"] = max(m["bucket_worker_peak_rss_bytes"] for m in measured)
    return fitted


def projection(fitted: dict, rows: int, workers: tuple[int, ...] = (4, 8, 16)) -> list[dict]:
    """A day of `rows` a side on W bucket workers, from the fitted costs: the serial part, plus the bucket work
    shared W ways; the memory of the warehouse worker and of each bucket worker."""

    def at(name: str) -> float:
        return fitted[name]["fixed"] + fitted[name]["per_million"] * rows / MILLION

    return [
        {
            "workers": w,
            "seconds": at("serial") + at("work") / w,
            "serial_seconds": at("serial"),
            "warehouse_worker_rss_bytes": at("warehouse_rss"),
            "bucket_worker_rss_bytes": fitted["bucket_worker_rss"],
        }
        for w in workers
    ]


def markdown(result: dict) -> str:
    r = result
    lines = [
        f"**Scale-out**, {r['rows']:,} ledger rows a side, buckets of {r['bucket_rows']:,} rows, median of "
        f"{r['repeats']} paired repeats (`python -m benchmarks.scale_out`): `dg launch` of the day in one process "
        "pinned to 2 cores, and on Celery with 1 and 2 bucket workers, each pinned to one core with one thread.",
        "",
        "| configuration | run s | bucket stages s | total s | bucket worker peak RSS GiB |",
        "|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        m = r["median"][config]
        rss = m.get("bucket_worker_peak_rss_bytes") or m.get("peak_rss_bytes")
        lines.append(
            f"| {config} | {m['run_seconds']:.1f} | {m['bucket_stages_seconds']:.1f} | {m['total_seconds']:.1f} "
            f"| {rss / GIB:.2f} |"
        )
    q = r["ratios"]
    lines += [
        "",
        f"- bucket stages, 1 worker over 2: **{q['bucket_stages_2_over_1']:.2f}×** (target ≥ 1.7×)",
        f"- whole run, 1 worker over 2: **{q['day_2_over_1']:.2f}×** (target ≥ 1.4×)",
        f"- whole run, 2 workers on Celery over one process on 2 cores: **{q['celery_2_to_inprocess']:.2f}×** "
        "(target ≤ 1.3×)",
        "",
        "Costs on Celery with 2 bucket workers, fitted as fixed + per million rows a side through "
        f"{r['rows']:,} and {r['fit_rows']:,} rows:",
        "",
        "| part | fixed | per million rows |",
        "|---|---|---|",
        *[
            f"| {label} | {scale(r['costs'][name]['fixed'])} | {scale(r['costs'][name]['per_million'])} |"
            for name, label, scale in (
                ("serial", "serial wall (ingest, plans, commits, checks, step starts)", lambda v: f"{v:.2f} s"),
                ("work", "bucket work (shared by the workers)", lambda v: f"{v:.2f} s"),
                ("warehouse_rss", "warehouse worker peak RSS", lambda v: f"{v / GIB:.2f} GiB"),
            )
        ],
        "",
        "| stage | plan s | bucket steps | bucket step s (median) | bucket wall s | commit s |",
        "|---|---|---|---|---|---|",
    ]
    for stage, parts in r["celery_2_stages"].items():
        lines.append(
            f"| {stage} | {parts.get('plan', 0):.2f} | {parts['bucket_steps']} | "
            f"{statistics.median(parts['bucket_seconds']):.2f} | {parts['bucket_wall']:.2f} | "
            f"{parts.get('commit', 0):.2f} |"
        )
    lines += [
        "",
        f"Projected for 100M rows a side, buckets of {r['bucket_rows']:,} rows:",
        "",
        "| bucket workers | wall min | of it serial min | warehouse worker GiB | each bucket worker GiB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['workers']} | {p['seconds'] / 60:.1f} | {p['serial_seconds'] / 60:.1f} | "
        f"{p['warehouse_worker_rss_bytes'] / GIB:.1f} | {p['bucket_worker_rss_bytes'] / GIB:.2f} |"
        for p in r["projection_100m"]
    ]
    return "\n".join(lines) + "\n"


def _median_figures(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and k != "matches"]
    return {k: statistics.median(run[k] for run in runs) for k in keys}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for command in ("taskset", "redis-server"):
        if shutil.which(command) is None:
            raise SystemExit(f"{command} is missing: `make redis-server postgres-server` installs the services")
    started_at = datetime.now(UTC).isoformat()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="batch-assets-scale-out-"))
    work.mkdir(parents=True, exist_ok=True)
    day = generate_day(args, args.rows, work / "day")
    repeats: list[dict[str, dict]] = []
    for index in range(args.repeats):
        repeat = {}
        for config in CONFIGS:
            folder = work / f"{config}-{index}"
            if config == "inprocess":
                repeat[config] = run_inprocess(args, day.landing, folder)
            else:
                repeat[config] = run_celery(args, day.landing, folder, int(config.split("-")[1]))
            shutil.rmtree(folder, ignore_errors=True)
            m = repeat[config]
            print(
                f"repeat {index + 1} {config}: run {m['run_seconds']:.1f} s, bucket stages "
                f"{m['bucket_stages_seconds']:.1f} s, {m['matches']:,} matches",
                flush=True,
            )
        if len({m["matches"] for m in repeat.values()}) != 1:
            raise SystemExit(f"the configurations matched different numbers of pairs: {repeat}")
        repeats.append(repeat)
    per_repeat = [ratios(repeat) for repeat in repeats]
    fit_rows = args.fit_rows or args.rows // 5
    small = run_celery(args, generate_day(args, fit_rows, work / "fit-day").landing, work / "fit", 2)
    shutil.rmtree(work / "fit", ignore_errors=True)
    print(f"fit {fit_rows:,} rows celery-2: run {small['run_seconds']:.1f} s", flush=True)
    fitted = costs([repeat["celery-2"] for repeat in repeats], args.rows, small, fit_rows)
    result = {
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "rows": args.rows,
        "bucket_rows": args.bucket_rows,
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "runs": repeats,
        "median": {config: _median_figures([r[config] for r in repeats]) for config in CONFIGS},
        "ratios_per_repeat": per_repeat,
        "ratios": {key: statistics.median(r[key] for r in per_repeat) for key in per_repeat[0]},
        "celery_2_stages": repeats[len(repeats) // 2]["celery-2"]["stages"],
        "fit_rows": fit_rows,
        "fit_run": small,
        "costs": fitted,
        "projection_100m": projection(fitted, 100 * MILLION),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_out.json").write_text(json.dumps(result, indent=2, default=str))
    text = markdown(result)
    (args.out / "scale_out.md").write_text(text)
    print(text)
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
