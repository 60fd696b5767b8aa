"""Smoke test of the `make bench` harness at a tiny size, so that it cannot rot; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.collect import STAGES
from benchmarks.proctree import run_measured

REPO = Path(__file__).resolve().parents[1]


def test_peak_rss_counts_the_whole_process_tree(tmp_path: Path) -> None:
    # A parent that holds little and a grandchild that holds ~200 MB: only the tree's sum sees both.
    grandchild = "b = bytearray(200 * 2**20); import time; time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    result = run_measured(
        [sys.executable, "-c", parent], env={}, cwd=tmp_path, log=tmp_path / "log", timeout_seconds=60
    )
    assert result.returncode == 0
    assert result.peak_tree_rss_bytes > 200 * 2**20
    assert result.samples > 5


def test_a_small_child_of_a_big_harness_is_measured_small(tmp_path: Path) -> None:
    # The kernel's ru_maxrss of a spawned child starts at its parent's RSS at the spawn: after the harness
    # had scored a 5M-row day, every later child "peaked" at the harness's 3.9 GiB.
    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page, so that it is resident
    # Long enough for a few samples even when the harness's /proc scans are slowed by a busy machine.
    child = "import time; time.sleep(2)"
    result = run_measured([sys.executable, "-c", child], env={}, cwd=tmp_path, log=tmp_path / "log", timeout_seconds=60)
    assert result.returncode == 0 and result.samples > 3
    assert 0 < result.peak_rss_bytes < 200 * 2**20
    del ballast


@pytest.mark.slow
def test_bench_harness_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--sizes",
        "2000",
        "--repeats",
        "1",
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path / "work"),
        "--timeout",
        "300",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, textwrap.shorten(done.stdout + done.stderr, 4000)

    results = json.loads((out / "results.json").read_text())
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["memory_total_bytes"] > 0
    assert {"dagster", "polars", "duckdb"} <= set(machine["versions"]) and machine["python"]

    (size,) = results["sizes"]
    assert size["rows_per_side"] == 2000 and size["input_rows"] > 0
    (run,) = size["runs"]
    assert run["floor"]["seconds"] > 0 and run["floor"]["peak_rss_bytes"] > 0
    assert run["floor"]["rows"]["ledger"] + run["floor"]["rows"]["bank"] == size["input_rows"]
    for mode in ("inprocess", "cli"):
        figures = run[mode]
        assert "error" not in figures, figures
        assert figures["run_status"] == "SUCCESS"
        assert set(figures["stages"]) == set(STAGES) and all(s > 0 for s in figures["stages"].values())
        assert figures["total_seconds"] > figures["run_seconds"] > sum(figures["stages"].values())
        assert figures["rows_per_s"] > 0 and figures["peak_rss_bytes"] > 0
        assert 0 <= figures["precision"] <= 1 and 0 <= figures["recall"] <= 1 and figures["matches"] > 0
        assert run["ratio_to_floor"][mode] > 1
        assert size["median"][mode]["total_seconds"] == figures["total_seconds"]
    assert set(size["median"]["ratio_to_floor"]) == {"inprocess", "cli"}

    table = (out / "results.md").read_text()
    assert "| rows/side | mode | total s" in table and "| peak RSS GiB | total / floor |" in table
    assert all(f"| 2,000 | {label} |" in table for label in ("floor", "in-process", "CLI (dg launch)"))
    assert not (tmp_path / "work" / "rows-2000").exists()  # the data folders are removed unless --keep


@pytest.mark.slow
def test_make_profile_ranks_the_pipelines_own_lines_at_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "profile"
    command = [sys.executable, "-m", "benchmarks.profile", "--rows", "2000", "--rate", "200", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, textwrap.shorten(done.stdout + done.stderr, 4000)

    recording = json.loads((out / "profile.speedscope.json").read_text())
    assert recording["profiles"] and recording["shared"]["frames"]
    ranked = (out / "profile.txt").read_text().splitlines()[1:]
    # The run itself is the top of the ranking, and the stages' own code is in it.
    assert "run_days" in ranked[0] and ranked[0].lstrip().startswith("100.0%")
    assert any("batch_assets/defs/validate/assets.py" in line for line in ranked)


@pytest.mark.slow
def test_the_backfill_benchmark_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.backfill", "--days", "2", "--rows", "200", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, textwrap.shorten(done.stdout + done.stderr, 4000)
    result = json.loads((tmp_path / "backfill.json").read_text())
    assert result["runs"] == result["succeeded"] == 2 and result["wall_seconds"] > result["run_seconds_median"] > 0
    assert "| 2 | 2 |" in (tmp_path / "backfill.md").read_text()
