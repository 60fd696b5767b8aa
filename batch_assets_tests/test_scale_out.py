"""Scale-out on real processes: Redis, Postgres, a warehouse worker and two bucket workers in namespaces of their
own. The days through Celery give the tables one process gives, and survive a killed worker, a restarted
broker and a worker that runs other code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.faults import BUCKET_POINT, HOLD_AT, HOLD_DIR
from batch_assets.generator import generate
from batch_assets.local_cluster import BUCKET_QUEUE, WAREHOUSE_FOLDER, LocalCluster, can_isolate, postgres_bindir
from batch_assets.storage import TABLES, Warehouse, qualified

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("scale_out")]

ROOT = Path(__file__).resolve().parent.parent
D1 = date(2026, 11, 2)
DAYS = [D1 + timedelta(days=i) for i in range(3)]
ROWS = 300
# The file log also records when each file was first seen, which differs from one data folder to another.
UNSTABLE_COLUMNS = {"ops.file_log": ["first_seen_at"]}


def _install(script: str, ready: bool) -> None:
    if ready:
        return
    if shutil.which("apt-get") is None:
        pytest.skip(f"not installed, and no apt-get for scripts/{script} to install it")
    subprocess.run([ROOT / "scripts" / script], check=True, capture_output=True, timeout=900)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    _install("install-redis", shutil.which("redis-server") is not None)
    _install("install-postgres", postgres_bindir() is not None)
    with LocalCluster(tmp_path / "cluster") as started:
        yield started


def tables(database: Path) -> dict[str, list[tuple]]:
    """Every warehouse table's rows for the days, in a stable order."""
    wh = Warehouse(database)
    out = {}
    for table in sorted(TABLES):
        sql = f"SELECT * FROM {qualified(table)} WHERE business_date IN ?"  # noqa: S608 (a quoted name, no value)
        frame = wh.query(sql, [DAYS]).drop(UNSTABLE_COLUMNS.get(table, []))
        out[table] = sorted(frame.rows(), key=repr)
    return out


def warehouse_file(cluster: LocalCluster) -> Path:
    return cluster.data / WAREHOUSE_FOLDER / "warehouse.duckdb"


def bank_file(landing: Path, day: date) -> Path:
    return landing / "bank" / f"bank_{day.isoformat()}.csv"


def in_process(landing: Path, home: Path, steps: list) -> dict[str, list[tuple]]:
    """The same deliveries and runs in one process (the default executor), as `batch-assets run` does them. A
    step is a change to the landing folder, or (day, whether its run succeeds)."""
    shutil.copytree(landing, home / "landing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_ASSETS_")}
    env.update(settings.data_environment(home))
    command = [Path(sys.executable).with_name("batch-assets"), "run", "--days", "1", "--start"]
    for step in steps:
        if isinstance(step, tuple):
            day, succeeds = step
            done = subprocess.run([*command, day.isoformat()], env=env, capture_output=True, text=True, timeout=600)
            assert (done.returncode == 0) == succeeds, (day, done.stdout[-2000:], done.stderr[-2000:])
        else:
            step(home / "landing")
    return tables(home / "warehouse.duckdb")


def test_three_days_through_celery_equal_the_one_process_run_with_a_rejected_file_redelivered(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    landing = cluster.data / "landing"
    generate(start=D1, days=len(DAYS), rows=ROWS, fmt="csv", seed=23, landing=landing)
    good = bank_file(landing, DAYS[1]).read_bytes()
    pristine = tmp_path / "pristine"
    shutil.copytree(landing, pristine)

    def break_day_two(folder: Path) -> None:
        # A header the contract does not know: the whole file is rejected at ingest, naming the reason.
        bank_file(folder, DAYS[1]).write_bytes(b"nonsense,columns\n1,2\n")

    def redeliver_day_two(folder: Path) -> None:
        bank_file(folder, DAYS[1]).write_bytes(good)

    # The run of the day with a rejected file fails (and alerts); the re-delivery and a re-run heal it.
    steps = [(DAYS[0], True), break_day_two, (DAYS[1], False), redeliver_day_two, (DAYS[1], True), (DAYS[2], True)]
    expected = in_process(pristine, tmp_path / "one-process", steps)

    cluster.start_workers(2, isolated=can_isolate() is None)
    cluster.start_daemon()
    for step in steps:
        if isinstance(step, tuple):
            day, succeeds = step
            run = cluster.run_day(day.isoformat())
            assert (run.status == dg.DagsterRunStatus.SUCCESS) == succeeds, (day, run.run_id, run.status)
        else:
            step(landing)

    assert tables(warehouse_file(cluster)) == expected
    # Open items were carried from day to day, and the re-delivered file replaced the rejected one.
    wh = Warehouse(warehouse_file(cluster))
    assert wh.query("SELECT count(*) AS n FROM recon.open_items WHERE carried")["n"][0] > 0
    statuses = wh.query(
        "SELECT status FROM ops.file_log WHERE business_date = ? AND source = 'bank' ORDER BY status", [DAYS[1]]
    )["status"].to_list()
    assert statuses == ["ingested", "rejected"] or statuses == ["ingested", "superseded"], statuses
    with cluster.instance() as instance:
        bucket_steps = {
            entry.step_key
            for run in instance.get_runs()
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            if "_bucket[" in (entry.step_key or "")
        }
    assert {"validate.validate_bucket[bucket_0]", "match.match_bucket[bucket_0]"} <= bucket_steps


def test_the_bucket_workers_live_apart_and_cannot_see_the_warehouse(cluster: LocalCluster) -> None:
    why = can_isolate()
    if why is not None:
        pytest.skip(f"workers cannot get namespaces of their own here: {why}")
    cluster.start_workers(2, isolated=True)
    warehouse_file(cluster).write_bytes(b"")  # the file a worker must not reach
    mine = os.readlink("/proc/self/ns/net")
    for name in ("bucket-worker-1", "bucket-worker-2"):
        worker = _celery_process(cluster.processes[name].pid)
        assert os.readlink(f"/proc/{worker}/ns/net") != mine, f"{name} shares this host's network"
        seen = subprocess.run(
            ["nsenter", "-t", str(worker), "-m", "ls", "-A", str(warehouse_file(cluster).parent)],
            capture_output=True,
            text=True,
            check=True,
        )
        assert seen.stdout.strip() == "", f"{name} sees {seen.stdout!r} in the warehouse's folder"


def _celery_process(leader: int, timeout: float = 30) -> int:
    """The Celery process started under `unshare ... sh -c exec`: the same pid once `exec` has run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"celery" in Path(f"/proc/{leader}/cmdline").read_bytes():
            return leader
        time.sleep(0.1)
    raise AssertionError(f"process {leader} never became the Celery worker")


def test_a_bucket_worker_killed_mid_step_loses_nothing_and_the_day_completes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    landing = cluster.data / "landing"
    generate(start=D1, days=1, rows=ROWS, fmt="csv", seed=29, landing=landing)
    expected_home = tmp_path / "one-process"
    expected = in_process(landing, expected_home, [(D1, True)])
    held = tmp_path / "held"
    held.mkdir()
    # Every bucket worker stops in the match stage's bucket step until released; the first one to get there is
    # killed with SIGKILL, the step goes back to the queue, and the other worker runs it.
    hold = {HOLD_AT: f"match:{BUCKET_POINT}", HOLD_DIR: str(held), settings.REDELIVER_AFTER_SECONDS: "10"}
    cluster.start_worker("warehouse-worker", "warehouse", env={settings.REDELIVER_AFTER_SECONDS: "10"})
    for name in ("bucket-worker-1", "bucket-worker-2"):
        cluster.start_worker(name, BUCKET_QUEUE, env=hold)
    cluster.start_daemon()
    with cluster.instance() as instance:
        (marker,) = launch_and_wait_for_the_hold(cluster, held)
        victim = _worker_holding(cluster, int(marker.name.removeprefix("held-")))
        os.killpg(cluster.processes.pop(victim).pid, signal.SIGKILL)
        (held / "release").touch()
        run = completed(cluster, instance, cluster.wait_for_run(instance, D1.isoformat(), set()))
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
    assert tables(warehouse_file(cluster)) == expected
    assert not list((cluster.data / "shared").rglob("*.partial")), "a partial file was left where steps read"


def completed(cluster: LocalCluster, instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """`run`, or, where it failed, its re-execution from the failed steps, the other branch the contract allows."""
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return run
    assert failure_messages(instance, run), f"run {run.run_id} failed without saying why"
    reexecute(cluster, run)
    return cluster.wait_for_run(instance, run.tags["dagster/partition"], {run.run_id})


def reexecute(cluster: LocalCluster, run: dg.DagsterRun) -> None:
    subprocess.run(
        [Path(sys.executable).with_name("batch-assets"), "reexecute", run.run_id],
        env=cluster.environment(),
        check=True,
        capture_output=True,
        timeout=900,
    )


def failure_messages(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """What the run's failed steps, and the run's own failure, said."""
    texts = []
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                texts.append(data.user_failure_data.description)
            if data.error:
                texts.append(data.error.to_string())
        elif event.event_type_value == "PIPELINE_FAILURE":
            texts.append(entry.message or "")
    return "\n".join(texts)


def test_a_broker_restart_mid_run_loses_nothing_and_counts_nothing_twice(cluster: LocalCluster, tmp_path: Path) -> None:
    landing = cluster.data / "landing"
    generate(start=D1, days=1, rows=ROWS, fmt="csv", seed=31, landing=landing)
    expected = in_process(landing, tmp_path / "one-process", [(D1, True)])
    held = tmp_path / "held"
    held.mkdir()
    # The bucket workers stop in the match stage's bucket step; while they wait, Redis stops and starts again
    # from its append-only file, with the run's queued steps and results in it.
    hold = {HOLD_AT: f"match:{BUCKET_POINT}", HOLD_DIR: str(held)}
    cluster.start_worker("warehouse-worker", "warehouse")
    for name in ("bucket-worker-1", "bucket-worker-2"):
        cluster.start_worker(name, BUCKET_QUEUE, env=hold)
    cluster.start_daemon()
    with cluster.instance() as instance:
        launch_and_wait_for_the_hold(cluster, held)
        cluster.stop_redis()
        time.sleep(3)  # long enough for every client to see the broker gone
        cluster.start_redis()
        (held / "release").touch()
        run = completed(cluster, instance, cluster.wait_for_run(instance, D1.isoformat(), set()))
        assert run.status == dg.DagsterRunStatus.SUCCESS, (run.run_id, failure_messages(instance, run))
    assert tables(warehouse_file(cluster)) == expected
    # One commit of each of the day's partitions per stage that wrote it: nothing was committed twice.
    commits = Warehouse(warehouse_file(cluster)).query(
        "SELECT asset_key, count(*) AS n FROM ops.commit_log WHERE partition_key = ? GROUP BY ALL HAVING n > 1",
        [D1.isoformat()],
    )
    assert commits.height == 0, commits


def test_a_bucket_worker_on_other_code_is_refused_and_the_day_completes_on_the_same_code(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    landing = cluster.data / "landing"
    generate(start=D1, days=1, rows=ROWS, fmt="csv", seed=37, landing=landing)
    expected = in_process(landing, tmp_path / "one-process", [(D1, True)])
    # A copy of the package with one line changed: a worker that was not restarted after a deploy.
    other = tmp_path / "other-code"
    shutil.copytree(ROOT / "batch_assets", other / "batch_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", other)  # where load_from_defs_folder finds the project's root
    with (other / "batch_assets" / "transforms" / "matching.py").open("a") as changed:
        changed.write("\n# a change deployed to the warehouse host but not to this worker\n")
    # The worker's interpreter loads that copy as it starts, as a host with the old code installed would: the
    # job's code pointer names the repository's folder, which would otherwise win when a step loads the job.
    (other / "sitecustomize.py").write_text("import batch_assets.definitions  # noqa: F401\n")
    cluster.start_worker("warehouse-worker", "warehouse")
    cluster.start_worker("stale-worker", BUCKET_QUEUE, env={"PYTHONPATH": str(other)})
    cluster.start_daemon()
    with cluster.instance() as instance:
        failed = cluster.run_day(D1.isoformat())
        assert failed.status == dg.DagsterRunStatus.FAILURE, failed.run_id
        said = failure_messages(instance, failed)
        assert "code version" in said and "restart the workers on the same code" in said, said
        # Nothing computed by the other code reached the warehouse.
        staged = Warehouse(warehouse_file(cluster)).query(
            "SELECT count(*) AS n FROM ops.commit_log WHERE partition_key = ? AND asset_key LIKE 'staging.%'",
            [D1.isoformat()],
        )
        assert staged["n"][0] == 0
        cluster.stop("stale-worker")
        cluster.start_worker("bucket-worker-1", BUCKET_QUEUE)
        reexecute(cluster, failed)
        run = cluster.wait_for_run(instance, D1.isoformat(), {failed.run_id})
        assert run.status == dg.DagsterRunStatus.SUCCESS, (run.run_id, failure_messages(instance, run))
    assert tables(warehouse_file(cluster)) == expected


def launch_and_wait_for_the_hold(cluster: LocalCluster, held: Path, timeout: float = 600) -> list[Path]:
    """Launch the run of D1 and wait until a bucket step stops at the hold; the markers of the held steps."""
    cluster.launch(D1.isoformat())
    deadline = time.monotonic() + timeout
    while not (markers := list(held.glob("held-*"))):
        assert time.monotonic() < deadline, "no bucket step reached the hold"
        time.sleep(0.2)
    return markers


def _worker_holding(cluster: LocalCluster, pid: int) -> str:
    """The name of the worker whose process group holds `pid`."""
    group = os.getpgid(pid)
    for name, process in cluster.processes.items():
        if process.pid == group:
            return name
    raise AssertionError(f"process {pid} is in no worker's process group")


def test_the_distributed_demo_reconciles_its_days_and_stops_everything_it_started(tmp_path: Path) -> None:
    _install("install-redis", shutil.which("redis-server") is not None)
    _install("install-postgres", postgres_bindir() is not None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_ASSETS_")}
    env.update(settings.data_environment(tmp_path / "data"))
    command = [Path(sys.executable).with_name("batch-assets"), "distributed-demo", "--days", "2", "--rows", "200"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2026-11-03  run" in done.stdout and "SUCCESS" in done.stdout
    assert "precision" in done.stdout and "Every process it started has stopped" in done.stdout
    root = str(tmp_path / "data" / "distributed-demo")
    leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and root.encode() in _cmdline(p)]
    assert leftovers == [], f"processes still running under {root}: {leftovers}"


def _cmdline(process: Path) -> bytes:
    try:
        return (process / "cmdline").read_bytes()
    except OSError:
        return b""
