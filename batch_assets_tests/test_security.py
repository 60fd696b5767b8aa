"""Safe defaults: a loopback-only UI, a webhook secret written nowhere, and a landing zone that reads only its files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets import settings
from batch_assets.alerts import Alert, AlertResource
from batch_assets.cli import build_parser
from batch_assets.definitions import defs
from batch_assets.defs.alerting import sensors as alerting
from batch_assets.generator import generate
from batch_assets.landing import (
    LandingFile,
    RejectedFile,
    digest_file,
    land_file,
    scan_landing,
)
from batch_assets.landing import csv_file as landing_csv
from batch_assets.storage import Warehouse
from batch_assets_tests.dagster_dev import (
    REPO_ROOT,
    free_port,
    graphql,
    running_dev_command,
)
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_alerting import (  # noqa: F401 (webhook is a fixture)
    Webhook,
    alert_lines,
    reconcile_a_bad_pair_of_days,
    tick,
    webhook,
)
from batch_assets_tests.test_automation import age, deliver
from batch_assets_tests.test_automation import tick as landing_tick
from batch_assets_tests.test_ingest_and_validate import failure_message, run_day

DAY = date(2026, 11, 2)
LISTEN = "0A"  # TCP state in /proc/net/tcp


# -- the webserver binds to loopback ---------------------------------------------------------------------


@contextmanager
def running_batch_assets_dev(home: Path, port: int, overrides: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`batch-assets dev --port PORT`, exactly as `make dev` runs it but for the port: no --host given."""
    command = [str(Path(sys.executable).with_name("batch-assets")), "dev", "--port", str(port)]
    with running_dev_command(home, command, port, overrides, home / "batch-assets-dev.log") as (_, process):
        yield process


def process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # exited meanwhile
        inodes |= {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    return inodes


def listening_addresses(inodes: set[str]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket among `inodes`, IPv4 and IPv6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN and fields[9] in inodes:
                # The kernel prints each 32-bit word of the address in host (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8))
                family = socket.AF_INET if width == 8 else socket.AF_INET6
                found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def outward_address() -> str | None:
    """This machine's address on its default route, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


RESOURCE_VALUES = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { configuredValues { key value type } }
  }
}
"""


@pytest.mark.slow
def test_batch_assets_dev_listens_on_loopback_only_and_shows_no_secret(tmp_path: Path) -> None:
    home, port, token = tmp_path / "data", free_port(), f"T0K3N{uuid.uuid4().hex}"
    overrides = {settings.ALERT_WEBHOOK_URL: f"https://hooks.example.invalid/services/{token}"}
    with running_batch_assets_dev(home, port, overrides) as process:
        listening = listening_addresses(socket_inodes(process_tree(process.pid)))
        assert ("127.0.0.1", port) in listening
        assert {address for address, _ in listening} <= {"127.0.0.1", "::1"}, listening  # never 0.0.0.0 or ::
        if (address := outward_address()) is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=5).close()

        # The UI's resource page shows the definitions' default, never the value a run reads from the environment.
        selector = {
            "repositoryLocationName": "batch_assets",
            "repositoryName": "__repository__",
            "resourceName": "alerts",
        }
        answer = graphql(f"http://127.0.0.1:{port}", RESOURCE_VALUES, {"selector": selector})
        values = {v["key"]: v for v in answer["topLevelResourceDetailsOrError"]["configuredValues"]}
        assert values["webhook_url"]["value"] in ("", '""')
        assert token not in str(answer)
    assert token not in (home / "batch-assets-dev.log").read_text(errors="replace")


@pytest.mark.unit
def test_the_defaults_and_the_readme_say_loopback() -> None:
    assert build_parser().parse_args(["dev"]).host == "127.0.0.1"
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^dev:.*\n\t\$\(BIN\)/batch-assets dev$", makefile, flags=re.M)  # `make dev` adds no --host
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(r"make dev +# the Dagster UI and daemon on http://127\.0\.0\.1:3000", readme)
    assert "`dg dev` bound to 127.0.0.1" in readme


# -- secrets ------------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_webhook_url_has_no_default_in_code_and_is_read_from_the_environment_at_run_time() -> None:
    assert AlertResource.model_fields["webhook_url"].default == ""
    assert AlertResource.variables()["webhook_url"] == settings.ALERT_WEBHOOK_URL
    assert defs.resources["alerts"].webhook_url == ""  # the definitions hold no secret; a run reads it
    code = [p for p in (REPO_ROOT / "batch_assets").rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()]
    assert not [p for p in code if re.search(r"hooks\.slack\.com|https?://[^\s\"']*/hooks/", p.read_text())]


def every_byte_written(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path, path.read_bytes()


def test_the_webhook_secret_is_in_no_log_alert_event_run_or_file(
    landing: Path,
    home: Path,
    instance: dg.DagsterInstance,
    webhook: Webhook,  # noqa: F811 (the fixture imported from test_alerting)
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = f"xoxb-{uuid.uuid4().hex}"
    monkeypatch.setenv(settings.FILE_QUIET_SECONDS, "0")
    monkeypatch.setenv(settings.ALERT_WEBHOOK_URL, f"{webhook.url}/services/T0/B0/{token}?token={token}")
    caplog.set_level(logging.DEBUG)

    # A failed run, failed checks, a bad day and a late file: every kind of alert that carries run details.
    started = tick(alerting.run_failure_alert, instance, None)
    write_landing(landing, "ledger", date(2026, 11, 10), csv_text([txn("L1", "1.00", date(2026, 11, 10))]))
    assert not run_day(instance, date(2026, 11, 10)).success
    tick(alerting.run_failure_alert, instance, started.cursor)
    reconcile_a_bad_pair_of_days(landing, instance, monkeypatch)
    monkeypatch.setenv(settings.EXCEPTION_RATE_ALERT, "0.10")
    tick(alerting.check_failure_alert, instance, None)
    tick(alerting.reconciliation_alert, instance, None)
    _, cursor, _ = landing_tick(instance)
    write_landing(landing, "bank", date(2026, 11, 3), csv_text([txn("B-late", "4.00", date(2026, 11, 3))]), part="02")
    age(landing / "bank" / "bank_2026-11-03_02.csv")
    landing_tick(instance, cursor)

    raised = alert_lines(home / "alerts.jsonl")
    assert sorted({a["kind"] for a in raised}) == [
        "break_value",
        "check_failure",
        "exception_rate",
        "late_file",
        "run_failure",
    ]
    assert len(webhook.paths) == len(raised) and all(token in path for path in webhook.paths)  # the secret was used

    leaks = [str(path) for path, data in every_byte_written(home) if token.encode() in data]
    assert leaks == []  # the alert file, the warehouse, and the instance's runs, event logs and compute logs
    assert token not in str(webhook.bodies)
    assert token not in caplog.text
    for run in instance.get_runs():
        assert token not in repr(run.run_config) and token not in repr(run.tags)
        assert not [e for e in instance.all_logs(run.run_id) if token in repr(e)]


@pytest.mark.unit
def test_a_malformed_webhook_url_is_not_echoed_where_the_failure_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"s3cr3t{uuid.uuid4().hex}"
    urls = [f"http://127.0.0.1:9/services/{token} x", f"http://127.0.0.1:{token}/x", f"http://[::1/{token}"]
    refused = 0
    for number, url in enumerate(urls):
        monkeypatch.setenv(settings.ALERT_WEBHOOK_URL, url)
        try:
            alerts = AlertResource(alert_file=str(tmp_path / "alerts.jsonl"), webhook_backoff_seconds=0.01)
            alerts = alerts.with_environment(os.environ)
        except settings.SettingError as error:  # refused where it is defined: the run fails, naming only the variable
            refused += 1
            assert settings.ALERT_WEBHOOK_URL in str(error) and token not in str(error)
            continue
        with caplog.at_level(logging.ERROR, logger="batch_assets.alerts"):
            assert alerts.send(
                Alert(key=f"run_failure:{number}", kind="run_failure", severity="ERROR", title="t", text="x")
            )
        line = alert_lines(tmp_path / "alerts.jsonl")[-1]
        assert line["webhook"].startswith("failed: ")
        assert token not in line["webhook"] and token not in caplog.text, line["webhook"]
    assert refused == 1  # the one with a space; the others look like URLs and fail when posted


def test_a_day_reconciles_with_no_network_at_all(landing: Path, home: Path) -> None:
    # Everything but the webhook is local: the run works in a network namespace with no interface up.
    generate(start=DAY, days=1, rows=200, fmt="csv", seed=3, landing=landing)
    command = ["unshare", "--net", str(Path(sys.executable).with_name("batch-assets")), "run", "--start", str(DAY)]
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        pytest.skip("no `unshare` command to take the network away")
    if result.returncode != 0 and "unshare failed" in result.stderr:
        pytest.skip(f"cannot create a network namespace (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{DAY}  run" in result.stdout and "  ok  " in result.stdout
    summary = Warehouse(home / "warehouse.duckdb").query(
        "SELECT count(*) FROM recon.summary WHERE business_date = ?", [DAY]
    )
    assert summary.item() > 0


# -- the landing zone ----------------------------------------------------------------------------------------


def outside_ledger(tmp_path: Path) -> Path:
    """A well-formed ledger file outside the landing zone, with a row that must never be read."""
    folder = tmp_path / "outside"
    folder.mkdir(exist_ok=True)
    path = folder / f"ledger_{DAY}.csv"
    path.write_text(csv_text([txn("OUTSIDE-1", "999.00", DAY)]))
    return path


def raw_txn_ids(home: Path) -> list[str]:
    return Warehouse(home / "warehouse.duckdb").query("SELECT txn_id FROM raw.ledger ORDER BY ALL")["txn_id"].to_list()


def test_a_symlinked_source_folder_is_neither_scanned_nor_ingested(
    landing: Path, home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    (landing / "ledger").symlink_to(outside_ledger(tmp_path).parent, target_is_directory=True)
    write_landing(landing, "bank", DAY, csv_text([txn("B1", "999.00", DAY)]))
    age(landing / "bank" / f"bank_{DAY}.csv")
    files, ignored = scan_landing(landing)
    assert [f.name for f in files] == [f"bank/bank_{DAY}.csv"]
    assert [(i.name, i.reason) for i in ignored] == [("ledger", "the source folder is a symlink; it is not followed")]
    requests, _, skip = landing_tick(instance)
    assert requests == [] and f"{DAY} waits for a ledger file" in skip
    result = run_day(instance, DAY)
    assert not result.success and f"no ledger file for {DAY} has landed" in failure_message(result)
    assert raw_txn_ids(home) == []


def test_a_symlink_swapped_in_after_the_sensor_asked_is_not_read_by_the_run(
    landing: Path, home: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    deliver(landing, DAY)
    assert run_day(instance, DAY).success
    before = raw_txn_ids(home)
    ledger = landing / "ledger" / f"ledger_{DAY}.csv"
    ledger.write_text(csv_text([txn("L-new", "3.00", DAY)]))
    age(ledger)
    (requested,), _, _ = landing_tick(instance)
    assert requested.partition_key == DAY.isoformat()

    ledger.unlink()  # between the tick and the run, the file becomes a link to a file elsewhere
    ledger.symlink_to(outside_ledger(tmp_path))
    result = run_day(instance, DAY)
    assert not result.success and f"no ledger file for {DAY} has landed" in failure_message(result)
    assert raw_txn_ids(home) == before and "OUTSIDE-1" not in before  # the old rows stay; nothing was read
    outside_sha = hashlib.sha256(outside_ledger(tmp_path).read_bytes()).hexdigest()
    assert (
        outside_sha
        not in Warehouse(home / "warehouse.duckdb").query("SELECT sha256 FROM ops.file_log")["sha256"].to_list()
    )


def swap_in(ledger: Path, outside: Path, swap: str) -> str:
    """Replace the delivered `ledger` by `outside`: as a symlink, or as a copy renamed over it (another
    regular file under the same name). Returns the reason the swap is rejected with."""
    if swap == "symlink":
        ledger.unlink()
        ledger.symlink_to(outside)
        return "replaced after it was listed (it is now a symlink)"
    incoming = ledger.with_name(".incoming")
    shutil.copyfile(outside, incoming)
    incoming.rename(ledger)
    return "replaced after it was listed (it is now a different file)"


@pytest.mark.parametrize("swap", ["symlink", "rename"])
@pytest.mark.parametrize("moment", ["before hashing", "between hashing and reading"])
@pytest.mark.unit
def test_a_file_swapped_after_the_scan_listed_it_is_rejected_not_read(
    landing: Path, tmp_path: Path, swap: str, moment: str
) -> None:
    ledger = write_landing(landing, "ledger", DAY, csv_text([txn("L1", "1.00", DAY)]))
    (file,), _ = scan_landing(landing, DAY)
    spill = tmp_path / "spill.parquet"
    if moment == "before hashing":
        reason = swap_in(ledger, outside_ledger(tmp_path), swap)
        with pytest.raises(RejectedFile) as rejected:
            digest_file(file)  # as ingest hashes the files it listed
    else:
        digest = digest_file(file)
        reason = swap_in(ledger, outside_ledger(tmp_path), swap)
        with pytest.raises(RejectedFile) as rejected:
            land_file(file, digest, spill)  # as ingest then lands each one
    assert (rejected.value.name, rejected.value.reason) == (file.name, reason)
    assert not spill.exists()  # none of the outside file's rows landed


@pytest.mark.unit
def test_a_fifo_swapped_in_after_the_scan_is_rejected_without_blocking(landing: Path) -> None:
    ledger = write_landing(landing, "ledger", DAY, csv_text([txn("L1", "1.00", DAY)]))
    (file,), _ = scan_landing(landing, DAY)
    ledger.unlink()
    os.mkfifo(ledger)  # opening a FIFO to read waits for a writer
    reasons: list[str] = []

    def hash_it() -> None:
        try:
            digest_file(file)
        except RejectedFile as error:
            reasons.append(error.reason)

    worker = threading.Thread(target=hash_it, daemon=True)
    worker.start()
    worker.join(timeout=10)
    blocked = worker.is_alive()
    if blocked:  # let the stuck open return, so the thread ends
        os.close(os.open(ledger, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=10)
    assert not blocked
    assert reasons == ["replaced after it was listed (it is no longer a regular file)"]


@pytest.mark.unit
def test_a_file_swapped_while_it_is_being_read_is_read_as_listed(
    landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = write_landing(landing, "ledger", DAY, csv_text([txn("L1", "1.00", DAY)]))
    (file,), _ = scan_landing(landing, DAY)
    digest = digest_file(file)
    read_header = landing_csv.csv_header

    def swap_then_read_header(held: LandingFile) -> list[str]:
        swap_in(ledger, outside_ledger(tmp_path), "symlink")  # after the open and check, before any reader
        return read_header(held)

    monkeypatch.setattr(landing_csv, "csv_header", swap_then_read_header)
    spill = tmp_path / "spill.parquet"
    assert land_file(file, digest, spill) == 1
    landed = pl.read_parquet(spill)
    assert landed["txn_id"].to_list() == ["L1"]  # the held file's bytes, the ones hashed; not the outside row


def test_names_with_dot_dot_special_files_and_a_root_given_with_dot_dot(
    landing: Path, home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver(landing, DAY)
    for name in (f"ledger_{DAY}..csv", f"ledger_{DAY}_...csv", f"ledger_{DAY}_..%2F..%2Fetc.csv"):
        (landing / "ledger" / name).write_text(csv_text([txn("DOTS", "1.00", DAY)]))
    os.mkfifo(landing / "ledger" / f"ledger_{DAY}_fifo.csv")  # reading it would block the tick and the run
    (home / "elsewhere").mkdir()
    monkeypatch.setenv(settings.LANDING, str(home / "elsewhere" / ".." / "landing"))

    requests, _, _ = landing_tick(instance)  # returns: the FIFO was never opened
    assert [r.partition_key for r in requests] == [DAY.isoformat()]
    _, ignored = scan_landing(home / "elsewhere" / ".." / "landing")
    assert {i.name for i in ignored} == {
        f"ledger/ledger_{DAY}..csv",
        f"ledger/ledger_{DAY}_...csv",
        f"ledger/ledger_{DAY}_..%2F..%2Fetc.csv",
        f"ledger/ledger_{DAY}_fifo.csv",
    }
    assert run_day(instance, DAY).success
    logged = (
        Warehouse(home / "warehouse.duckdb")
        .query("SELECT file_name FROM ops.file_log ORDER BY ALL")["file_name"]
        .to_list()
    )
    assert logged == [f"bank/bank_{DAY}.csv", f"ledger/ledger_{DAY}.csv"]  # names relative to the root, no ..
    assert "DOTS" not in raw_txn_ids(home)
