"""Runs the real `dg dev` (webserver, daemon and code server) for a test, against a temporary data folder.

`running_dagster_dev(home)` starts it on a free loopback port with every setting pointed into `home` and the
shipped dagster.yaml, waits until the webserver answers and the code location has loaded, yields the base
URL, and on the way out stops the whole process group, printing the log tail if the body failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from batch_assets import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
# Generous: on a busy 2-core machine importing dagster in three processes takes a while.
STARTUP_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 30.0
LOG_TAIL_LINES = 80

LOCATION_STATUS_QUERY = """
query LocationStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""


# What the UI sends to launch a backfill, and the selector of the daily job's partitions in this code location.
LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
REPOSITORY = {"repositoryLocationName": "batch_assets", "repositoryName": "__repository__"}


LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN_STATUS = """
query RunStatus($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


def launch_partition(base_url: str, partition: str) -> str:
    """What the UI's Launchpad sends to run the daily job for one partition; returns the run id."""
    params = {
        "selector": {**REPOSITORY, "jobName": "daily_reconciliation"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    launched = graphql(base_url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_run(base_url: str, run_id: str, timeout: float = 300.0) -> str:
    """The run's status once it has ended (SUCCESS, FAILURE or CANCELED)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(base_url, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise DagsterDevError(f"run {run_id} had not ended after {timeout:.0f} s")


def job_backfill_params(partitions: list[str]) -> dict[str, Any]:
    """Jobs → daily_reconciliation → Materialize all → a range → Launch backfill, with no tag added."""
    selector = {"repositorySelector": REPOSITORY, "partitionSetName": "daily_reconciliation_partition_set"}
    return {"selector": selector, "partitionNames": partitions, "fromFailure": False, "tags": []}


class DagsterDevError(RuntimeError):
    """`dg dev` exited, did not come up in time, or could not load the code location."""


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dev_environment(home: Path, base_url: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment for `dg dev`: every setting derived from `home` alone, then `overrides`.

    Settings exported in the caller's shell are deliberately ignored, so a developer's own data folder is
    never touched by a test.
    """
    values = settings.data_environment(home)
    values[settings.UI_URL] = base_url
    environ = {**os.environ, **values, **(overrides or {})}
    # `dg dev` starts `dagster` sub-commands by name, and warns unless the project's venv is the active one.
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")])
    environ["VIRTUAL_ENV"] = sys.prefix
    return environ


def graphql(
    base_url: str, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """POST a query to the webserver's GraphQL endpoint and return its `data`; raise on GraphQL errors."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise DagsterDevError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _server_answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/server_info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _location_loaded(base_url: str) -> bool:
    """True once every code location has loaded; raises with Dagster's message if one failed to load."""
    try:
        workspace = graphql(base_url, LOCATION_STATUS_QUERY)["workspaceOrError"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    if workspace["__typename"] != "Workspace" or not workspace["locationEntries"]:
        return False
    for entry in workspace["locationEntries"]:
        if entry["loadStatus"] != "LOADED":
            return False
        location = entry["locationOrLoadError"]
        if location and location["__typename"] == "PythonError":
            raise DagsterDevError(f"code location {entry['name']} failed to load: {location['message']}")
    return True


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DagsterDevError(f"dg dev exited with code {process.returncode} before it was ready")
        if _server_answers(base_url) and _location_loaded(base_url):
            return
        time.sleep(1)
    raise DagsterDevError(f"dg dev was not ready at {base_url} within {STARTUP_TIMEOUT_SECONDS:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop dg dev and everything it started (webserver, daemon, code server, run workers)."""
    # start_new_session made dg dev the leader of its own process group, so the group is exactly its tree.
    pgid = process.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    # Children may outlive the leader (or ignore SIGTERM); make sure nothing of the group is left.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def running_dagster_dev(
    home: Path, port: int | None = None, overrides: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run `dg dev` on 127.0.0.1 against the data folder `home`; yield its base URL, e.g. http://127.0.0.1:PORT.

    `port` defaults to a free one. `overrides` sets variables on top of the defaults, e.g.
    `{settings.FILE_QUIET_SECONDS: "0"}` for a sensor test. Its log is `home/dg-dev.log`.
    """
    port = port or free_port()
    command = [str(Path(sys.executable).with_name("dg")), "dev", "--host", "127.0.0.1", "--port", str(port)]
    with running_dev_command(home, command, port, overrides, home / "dg-dev.log") as (base_url, _):
        yield base_url


def copy_of_the_repository(target: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied to `target`, as a fresh clone has them,
    with the project's venv linked in; nothing of ./data comes along."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def scrubbed_environment(clone: Path) -> dict[str, str]:
    """What a new user's shell has: a PATH with the venv first, a home folder, no BATCH_ASSETS_* nor DAGSTER_HOME."""
    venv_bin = clone / ".venv" / "bin"
    return {
        "PATH": os.pathsep.join([str(venv_bin), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(clone.parent),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(clone / ".venv"),
    }


@contextmanager
def running_plain_dev(clone: Path, tool: str = "dg", port: int | None = None) -> Iterator[str]:
    """`dg dev` (or `dagster dev`) started in the repository copy `clone` as a new user starts it: nothing
    exported, so the instance and the data are the defaults under `clone/data`. Yields the base URL."""
    port = port or free_port()
    command = [str(clone / ".venv" / "bin" / tool), "dev", "--host", "127.0.0.1", "--port", str(port)]
    log = clone / f"{tool}-dev.log"
    process = _start(command, clone, scrubbed_environment(clone), log)
    with _served(process, f"http://127.0.0.1:{port}", log) as base_url:
        yield base_url


def _start(command: list[str], cwd: Path, environ: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as log_file:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def _served(process: subprocess.Popen[bytes], base_url: str, log: Path) -> Iterator[str]:
    """Wait until `process` serves the UI with the code location loaded; stop its whole tree on the way out."""
    try:
        _wait_until_ready(process, base_url)
        yield base_url
    except BaseException:
        print(f"--- last {LOG_TAIL_LINES} lines of {log} ---\n{log_tail(log)}", file=sys.stderr)
        raise
    finally:
        _stop(process)


@contextmanager
def running_dev_command(
    home: Path, command: list[str], port: int, overrides: Mapping[str, str] | None, log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `command` (a `dg dev` serving on `port`, or a launcher of one) against the data folder `home`;
    yield the base URL and the process once the UI answers and the code location has loaded."""
    base_url = f"http://127.0.0.1:{port}"
    environ = dev_environment(home, base_url, overrides)
    dagster_home = Path(environ["DAGSTER_HOME"])
    settings.write_instance_config(dagster_home)
    # Create the SQLite storage once up front: the webserver and the daemon racing to create a fresh
    # DAGSTER_HOME can fail with alembic's "more than one head" (see KNOWN-TRAPS.md).
    with dg.DagsterInstance.from_config(str(dagster_home)):
        pass
    (Path(environ[settings.HOME]) / "landing").mkdir(parents=True, exist_ok=True)

    process = _start(command, REPO_ROOT, environ, log)
    with _served(process, base_url, log):
        yield base_url, process
