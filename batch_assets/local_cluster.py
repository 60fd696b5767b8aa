"""A scale-out deployment on one machine, on sockets only: Redis, Postgres, Celery workers and the daemon.

`make distributed-demo` and the scale-out tests start it and stop everything they started. Every service
listens on a Unix socket in the cluster's folder, so a worker in a network namespace of its own still reaches
the broker and the instance, and never anything else. A bucket worker may also get a mount namespace in which
the warehouse's folder is an empty tmpfs: it cannot open the DuckDB file even by mistake.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from batch_assets import dagster_internals, settings
from batch_assets.partitions import WAREHOUSE_QUEUE

# The queue dagster-celery sends a step to when the step names none: the bucket steps.
BUCKET_QUEUE = "dagster"
REPO = Path(__file__).resolve().parent.parent
WAREHOUSE_FOLDER = "warehouse"

INSTANCE_YAML = """\
# A scale-out instance: Postgres storage, which every worker reaches; runs queued and started by the daemon.
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: batch_assets/serial
        limit: 1
run_queue:
  dequeue_interval_seconds: 1
telemetry:
  enabled: false
"""


def write_worker_config(folder: Path, env: dict[str, str]) -> Path:
    """The module dagster-celery's worker app reads its settings from, with the settings a run would use in
    `env`; the worker finds it on its PYTHONPATH."""
    from batch_assets.resources import ScaleOutResource

    agreed = ScaleOutResource().with_environment(env).celery_settings()
    path = folder / "dagster_celery_config.py"
    path.write_text("".join(f"{name} = {value!r}\n" for name, value in agreed.items()))
    return path


class ClusterError(RuntimeError):
    """A service of the local cluster did not start."""


def postgres_bindir() -> Path | None:
    """The newest installed Postgres server's bin folder (Debian's layout), if there is one."""
    servers = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    newest = max(servers, key=lambda path: float(Path(path).parents[1].name), default=None)
    return None if newest is None else Path(newest).parent


def can_isolate() -> str | None:
    """Why a worker cannot get network and mount namespaces of its own here, or None when it can."""
    if shutil.which("unshare") is None:
        return "no `unshare` command"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`unshare --net --mount` is not allowed here: {probe.stderr.strip()}"
    return None


@dataclass
class LocalCluster:
    """Everything under `root`: the data folder (`root/data`), the sockets, Postgres's files and every log."""

    root: Path
    # Settings every process of the cluster runs with, over their defaults (BATCH_ASSETS_BUCKET_ROWS, say).
    overrides: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _pg_root: Path | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def redis_socket(self) -> Path:
        return self.root / "redis.sock"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.redis_socket}"

    @property
    def pg_root(self) -> Path:
        """Postgres's files and socket, in a folder of their own: as root, the server runs as `postgres`, which
        may not enter the cluster's folder (a test's temporary folder is private)."""
        if self._pg_root is None:
            self._pg_root = Path(tempfile.mkdtemp(prefix="batch-assets-pg-"))
        return self._pg_root

    @property
    def pg_url(self) -> str:
        return f"postgresql+psycopg2://postgres@/dagster?host={self.pg_root}"

    def environment(self, **extra: str) -> dict[str, str]:
        """The warehouse host's environment: every path in the data folder, Celery as the executor."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("BATCH_ASSETS_")}
        env.update(settings.data_environment(self.data))
        env.update(
            {
                settings.EXECUTOR: "celery",
                settings.BROKER_URL: self.broker_url,
                settings.WAREHOUSE: f"{WAREHOUSE_FOLDER}/warehouse.duckdb",
                "DAGSTER_PG_URL": self.pg_url,
                **self.overrides,
                **extra,
            }
        )
        return env

    # -- services ----------------------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.data / WAREHOUSE_FOLDER).mkdir(parents=True, exist_ok=True)
        home = self.data / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
        self.start_redis()
        self._start_postgres()
        # One process creates the instance's tables before several start using them.
        self._run([sys.executable, "-m", "dagster", "instance", "migrate"], "instance")
        return self

    def start_redis(self) -> None:
        self.redis_socket.unlink(missing_ok=True)
        command = ["redis-server", "--port", "0", "--unixsocket", str(self.redis_socket), "--unixsocketperm", "777"]
        # Queued steps survive a restart of the broker: every write is in the append-only file before Redis
        # answers it.
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.root)]
        self._spawn("redis", command)
        self._wait_for(lambda: self.redis_socket.exists(), "redis")

    def stop_redis(self) -> None:
        self.stop("redis")

    def _start_postgres(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise ClusterError("no Postgres server: run scripts/install-postgres")
        # Postgres refuses to run as root; as root, run the server as the `postgres` user the package created.
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        sockets = self.pg_root
        if as_owner:
            shutil.chown(sockets, "postgres", "postgres")
        data = sockets / "data"
        self._run([*as_owner, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], "initdb", sockets)
        options = f"-c listen_addresses='' -c unix_socket_directories={sockets} -c fsync=off"
        self._pg_ctl = [*as_owner, bindir / "pg_ctl", "-D", data, "-w", "-t", "60"]
        self._run([*self._pg_ctl, "-l", sockets / "server.log", "-o", options, "start"], "postgres", sockets)
        self._run([bindir / "createdb", "-h", sockets, "-U", "postgres", "dagster"], "createdb")

    def start_worker(
        self,
        name: str,
        queue: str,
        *,
        isolated: bool = False,
        env: dict[str, str] | None = None,
        cores: str | None = None,
    ) -> subprocess.Popen:
        """A Celery worker serving `queue` with concurrency 1, in a scratch folder of its own. `isolated`: in
        network and mount namespaces of its own, where the warehouse's folder is an empty tmpfs. `env` adds to
        or overrides the warehouse host's environment. `cores`: the CPUs it may run on, as `taskset -c` takes
        them."""
        scratch = self.root / "workers" / name
        config = scratch / "config"
        config.mkdir(parents=True, exist_ok=True)
        env = self.environment(**(env or {}))
        write_worker_config(config, env)
        command = [sys.executable, "-m", "celery", *self._worker_args(queue, name)]
        if cores is not None:
            command = ["taskset", "-c", cores, *command]
        if isolated:
            hide = 'mount -t tmpfs tmpfs "$1" && shift && exec "$@"'
            isolate = ["unshare", "--net", "--mount", "--", "sh", "-c", hide, "sh", str(self.data / WAREHOUSE_FOLDER)]
            command = [*isolate, *command]
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(config), env.get("PYTHONPATH", "")])),
            TMPDIR=str(scratch),
        )
        return self._spawn(name, command, env=env, cwd=scratch)

    @staticmethod
    def _worker_args(queue: str, name: str) -> list[str]:
        return [
            "-A", "dagster_celery.app", "worker", "-Q", queue, "-c", "1", "--prefetch-multiplier=1",
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
        ]  # fmt: skip

    def start_workers(self, buckets: int = 2, *, isolated: bool = False) -> None:
        """The warehouse's worker (its queue, concurrency 1, on this host) and `buckets` bucket workers."""
        self.start_worker("warehouse-worker", WAREHOUSE_QUEUE)
        for index in range(1, buckets + 1):
            self.start_worker(f"bucket-worker-{index}", BUCKET_QUEUE, isolated=isolated)

    def start_daemon(self) -> subprocess.Popen:
        command = [Path(sys.executable).with_name("dagster-daemon"), "run", "-w", REPO / "workspace.yaml"]
        return self._spawn("daemon", command, env=self.environment(), cwd=REPO)

    def launch(self, day: str) -> None:
        """Queue a run of the daily job for one business day; the daemon starts it."""
        tags = json.dumps({"dagster/partition": day, "batch_assets/serial": "reconcile"})
        command = [sys.executable, "-m", "dagster", "job", "launch", "-w", str(REPO / "workspace.yaml")]
        self._run([*command, "-j", "daily_reconciliation", "--tags", tags], f"launch {day}", cwd=REPO)

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The cluster's Dagster instance, from this process."""
        previous = os.environ.get("DAGSTER_PG_URL")
        os.environ["DAGSTER_PG_URL"] = self.pg_url
        try:
            instance = dg.DagsterInstance.from_config(str(self.data / "dagster_home"))
        finally:
            if previous is None:
                del os.environ["DAGSTER_PG_URL"]
            else:
                os.environ["DAGSTER_PG_URL"] = previous
        with instance:
            yield instance

    def run_day(self, day: str, timeout: float = 900) -> dg.DagsterRun:
        """Queue a run of one business day, and wait until it has ended."""
        with self.instance() as instance:
            known = {run.run_id for run in dagster_internals.partition_runs(instance, day)}
            self.launch(day)
            return self.wait_for_run(instance, day, known, timeout)

    def wait_for_run(
        self, instance: dg.DagsterInstance, day: str, known: set[str], timeout: float = 900
    ) -> dg.DagsterRun:
        """The first run of `day` not in `known`, once it has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [r for r in dagster_internals.partition_runs(instance, day) if r.run_id not in known]
            if new and new[-1].is_finished:
                return new[-1]
            time.sleep(1)
        raise ClusterError(f"the run of {day} did not end within {timeout:.0f}s; see {self.root / 'logs'}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        for name in [n for n in self.processes if n not in ("redis",)]:
            self.stop(name)
        self.stop("redis")
        if hasattr(self, "_pg_ctl"):
            stop = [*map(str, self._pg_ctl), "-m", "fast", "stop"]
            subprocess.run(stop, capture_output=True, check=False, cwd=self.pg_root)
        if self._pg_root is not None:
            shutil.rmtree(self._pg_root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------------

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _spawn(
        self, name: str, command: list, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(
                [str(part) for part in command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env or self.environment(),
                cwd=cwd or self.root,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        self.processes[name] = process
        return process

    def _run(self, command: list, what: str, cwd: Path | None = None) -> None:
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            env=self.environment(),
            cwd=cwd or self.root,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(f"{what} failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")

    def _wait_for(self, ready, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} did not start within {timeout:.0f}s; see {self.log(what)}")
            time.sleep(0.05)
