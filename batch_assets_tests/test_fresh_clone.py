"""A fresh clone with nothing exported: plain `dagster asset materialize`, `dg launch` and a run launched in
`dagster dev` reconcile days, and everything they write (the warehouse, the instance) is under ./data.

(`dg dev` with nothing exported is driven through a real browser in test_ui_browser.py.)"""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from batch_assets.storage import Warehouse
from batch_assets_tests.dagster_dev import (
    copy_of_the_repository,
    launch_partition,
    running_plain_dev,
    scrubbed_environment,
    wait_for_run,
)
from batch_assets_tests.helpers import csv_text, txn, write_landing

pytestmark = pytest.mark.slow

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


def deliver(landing: Path, day: date) -> None:
    write_landing(landing, "ledger", day, csv_text([txn(f"L-{day}", "12.50", day, reference="INV-1")]))
    write_landing(landing, "bank", day, csv_text([txn(f"B-{day}", "12.50", day, reference="inv 1")]))


def run(clone: Path, *command: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(clone / ".venv" / "bin" / command[0]), *command[1:]],
        cwd=clone,
        env=scrubbed_environment(clone),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def test_plain_dagster_commands_and_dagster_dev_reconcile_days_under_data_in_a_fresh_clone_with_nothing_set(
    tmp_path: Path,
) -> None:
    clone = copy_of_the_repository(tmp_path / "clone")
    for day in (D1, D2, D3):
        deliver(clone / "data" / "landing", day)

    run(
        clone,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "batch_assets.definitions",
        "--select",
        "*",
        "--partition",
        str(D1),
    )
    run(clone, "dg", "launch", "--assets", "*", "--partition", str(D2))
    with running_plain_dev(clone, "dagster") as base_url:
        # Launched as the UI's Launchpad does: through the queue, the daemon and a run worker.
        assert wait_for_run(base_url, launch_partition(base_url, str(D3))) == "SUCCESS"

    summary = Warehouse(clone / "data" / "warehouse.duckdb").query(
        "SELECT business_date, matched_ledger, matched_bank FROM recon.summary "
        "WHERE account_id = '*' AND currency = '*' ORDER BY business_date"
    )
    assert summary.rows() == [(D1, 1, 1), (D2, 1, 1), (D3, 1, 1)]
    # Both runs are in the instance under ./data/dagster_home, the one `batch-assets dev` would show too.
    with dg.DagsterInstance.from_config(str(clone / "data" / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags.get("dagster/partition") for r in runs) == [str(D1), str(D2), str(D3)]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert not list(clone.glob(".tmp_dagster_home_*"))  # nothing left outside ./data
