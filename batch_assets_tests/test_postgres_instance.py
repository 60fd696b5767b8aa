"""docs/operations.md's Postgres section works: its commands move a fresh DAGSTER_HOME onto a throwaway Postgres."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets_tests.dagster_dev import free_port

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"
HEADING = "## Move `DAGSTER_HOME` to Postgres for a shared deployment"


def section() -> str:
    """The runbook's Postgres section, from its heading to the next one."""
    text = DOC.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    return text[start:] if end == -1 else text[start:end]


def fenced(language: str) -> list[str]:
    """The section's ```<language> blocks."""
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


def documented_commands() -> list[str]:
    """Every line of the section's ```bash blocks (test_operations_doc.py runs the ```sh ones)."""
    return [line.strip() for block in fenced("bash") for line in block.splitlines() if line.strip()]


def run(command: Sequence[str | Path], timeout: float = 120) -> str:
    completed = subprocess.run(
        [str(part) for part in command], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{command} exited {completed.returncode}:\n{output[-6000:]}"
    return output


def server_bindir() -> Path | None:
    """The newest installed Postgres server's bin folder, if there is one."""
    servers = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    newest = max(servers, key=lambda path: float(Path(path).parents[1].name), default=None)
    return None if newest is None else Path(newest).parent


@dataclass(frozen=True)
class Postgres:
    bindir: Path
    port: int
    url: str

    def query(self, sql: str) -> str:
        psql = [self.bindir / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "dagster"]
        return run([*psql, "-v", "ON_ERROR_STOP=1", "-Atc", sql]).strip()


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A throwaway cluster on 127.0.0.1 (trust auth) with an empty database `dagster`; stopped afterwards."""
    if server_bindir() is None:
        if shutil.which("apt-get") is None:
            pytest.skip("no Postgres server, and no apt-get for scripts/install-postgres to install one")
        run([ROOT / "scripts" / "install-postgres"], timeout=900)
    bindir = server_bindir()
    assert bindir is not None, "scripts/install-postgres ran but installed no Postgres server"
    # Postgres refuses to run as root; as root, run the server as the `postgres` user the package created.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    cluster = Path(tempfile.mkdtemp(prefix="batch-assets-pg-"))
    data = cluster / "data"
    try:
        if as_owner:
            shutil.chown(cluster, "postgres", "postgres")
        run([*as_owner, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={cluster} -c fsync=off"
        pg_ctl = [*as_owner, bindir / "pg_ctl", "-D", data, "-w", "-t", "60"]
        run([*pg_ctl, "-l", cluster / "server.log", "-o", options, "start"])
        try:
            server = Postgres(bindir, port, f"postgresql+psycopg2://postgres@127.0.0.1:{port}/dagster")
            run([bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "dagster"])
            yield server
        finally:
            run([*pg_ctl, "-m", "fast", "stop"])
    finally:
        shutil.rmtree(cluster, ignore_errors=True)


@pytest.mark.slow
def test_the_postgres_runbook_section_moves_the_instance_to_postgres(
    home: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def shell(command: str) -> str:
        """A documented command, verbatim, the way the runbook runs it: after `eval "$(… env)"`."""
        assert command in documented_commands(), f"not in the Postgres section of docs/operations.md: {command}"
        ran.append(command)
        return run(["bash", "-c", f'set -e; eval "$(.venv/bin/batch-assets env)"; {command}'], timeout=300)

    monkeypatch.setenv("DAGSTER_PG_URL", postgres.url)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    [install, migrate, info] = documented_commands()

    # The documented packages are the ones requirements.lock pins.
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert all(pin in lock for pin in re.findall(r"\S+==\S+", install))
    shell(install)

    # The shipped dagster.yaml, plus the documented storage block.
    [storage] = fenced("yaml")
    config = settings.write_instance_config(dagster_home)
    config.write_text(config.read_text() + "\n" + storage)

    shell(migrate)
    assert "run_storage: PostgresRunStorage" in shell(info)

    # A real day through the job, with the instance on Postgres.
    run([".venv/bin/batch-assets", "generate", "--start", "2026-11-02", "--days", "1", "--rows", "200"])
    run([".venv/bin/batch-assets", "run", "--start", "2026-11-02", "--days", "1"], timeout=300)

    assert postgres.query("SELECT status FROM runs") == "SUCCESS"
    assert int(postgres.query("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")) > 0
    with dg.DagsterInstance.get() as instance:
        [stored] = instance.get_runs()
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert stored.tags["dagster/partition"] == "2026-11-02" and stored.status == dg.DagsterRunStatus.SUCCESS
    assert not (dagster_home / "history").exists(), "a SQLite run history was created next to Postgres"

    # Every command of the section was run above.
    assert ran == documented_commands()
