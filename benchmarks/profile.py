"""`make profile`: where a day's time goes, sampled by py-spy over the whole in-process run of the daily job.

It generates one day, runs `python -m benchmarks.children inprocess` under `py-spy record` in a fresh data
folder, and writes two files to --out: `profile.speedscope.json` (open it in a speedscope viewer, such as
the speedscope npm package) and `profile.txt`, the project's own functions ranked by their inclusive
share of the samples of the run's main thread. `--idle` sampling is on, so time spent waiting in DuckDB's or
Polars' native threads counts against the Python line that waits for them.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from batch_assets import settings
from benchmarks.run import DEFAULT_DAY, REPO, _fresh, generate_day, run_environment

RUN_FRAME = "run_days"
PROJECT = "batch_assets"


def rank_frames(speedscope: dict, top: int) -> list[tuple[float, float, str]]:
    """The project's functions by inclusive share of the samples whose stack passes through `run_days`."""
    frames = speedscope["shared"]["frames"]
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0.0
    for profile in speedscope["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not any(frames[i]["name"] == RUN_FRAME for i in stack):
                continue
            total += weight
            seen = set()
            for i in stack:
                file = frames[i].get("file") or ""
                if PROJECT not in file:
                    continue
                # Per function, not per line: a function's lines would each be ranked on their own.
                where = f"{frames[i]['name']}  {file[file.rfind(PROJECT) :]}"
                if where not in seen:
                    seen.add(where)
                    inclusive[where] += weight
    return [(count / total if total else 0.0, count, where) for where, count in inclusive.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows of the generated day")
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    parser.add_argument("--top", type=int, default=40, help="lines in profile.txt")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "profile")
    parser.add_argument("--day", type=date.fromisoformat, default=DEFAULT_DAY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        parser.error(f"{py_spy} is missing: run `make install`")

    work = Path(tempfile.mkdtemp(prefix="batch-assets-profile-"))
    try:
        day = generate_day(args, args.rows, work / "day")
        data = _fresh(work / "run", day.landing)
        env = run_environment(data)
        settings.write_instance_config(Path(env["DAGSTER_HOME"]))
        args.out.mkdir(parents=True, exist_ok=True)
        child = [sys.executable, "-m", "benchmarks.children", "inprocess", "--day", args.day.isoformat()]
        recording = args.out / "profile.speedscope.json"
        subprocess.run(
            [
                str(py_spy),
                "record",
                "--idle",
                "--rate",
                str(args.rate),
                "--format",
                "speedscope",
                "--output",
                str(recording),
                "--",
                *child,
            ],
            cwd=REPO,
            env=env,
            check=True,
            timeout=args.timeout,
            stdout=subprocess.DEVNULL,
        )
        ranked = rank_frames(json.loads(recording.read_text()), args.top)
        unit = json.loads(recording.read_text())["profiles"][0].get("unit", "none")
        lines = [
            f"{args.rows:,} ledger rows ({day.input_rows:,} both sides), {args.rate} samples/s; inclusive share "
            f"of the run (run_days) and weight ({unit})",
            *[f"{share:6.1%} {weight:10.2f}  {where}" for share, weight, where in ranked],
        ]
        (args.out / "profile.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        print(f"\nwrote {args.out / 'profile.speedscope.json'} and {args.out / 'profile.txt'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
