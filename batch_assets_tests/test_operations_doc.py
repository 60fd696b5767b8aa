"""docs/operations.md works: every command in it runs, against a temporary data folder, and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import BACKFILL_ID_TAG

from batch_assets import settings
from batch_assets.alerts import Alert, AlertResource
from batch_assets.defs.automation.jobs import SERIAL_TAG
from batch_assets.generator import generate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operations.md"


def documented_commands() -> list[str]:
    """Every line of the doc's ```sh blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


class Shell:
    """Runs documented commands from the project root, the way the runbook says: after `eval "$(… env)"`."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, command: str, ok: bool = True, **placeholders: str) -> str:
        assert command in documented_commands(), f"not in docs/operations.md: {command}"
        self.ran.append(command)
        for name, value in placeholders.items():
            command = command.replace(name, value)
        completed = subprocess.run(
            ["bash", "-c", f'set -e; eval "$(.venv/bin/batch-assets env)"; {command}'],
            cwd=ROOT,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = completed.stdout + completed.stderr
        assert (completed.returncode == 0) == ok, f"{command} exited {completed.returncode}:\n{output[-6000:]}"
        return output


def runs(tag_value: str | None = None) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.get() as instance:
        found = instance.get_runs()
    return [r for r in found if tag_value is None or r.tags.get(SERIAL_TAG) == tag_value]


@pytest.mark.slow
def test_every_command_in_the_runbook_works(home: Path, landing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.FILE_QUIET_SECONDS, "3600")  # the sample files stay "being written" throughout
    settings.write_instance_config(Path(os.environ["DAGSTER_HOME"]))
    generate(start=date(2026, 11, 2), days=4, rows=300, fmt="csv", seed=3, landing=landing)
    late_bank = landing / "bank" / "bank_2026-11-05.csv"
    held_back = late_bank.read_bytes()
    late_bank.unlink()
    shell = Shell()

    shell('eval "$(.venv/bin/batch-assets env)"')

    assert "reconcile_previous_day" in shell(".venv/bin/dagster schedule list -w workspace.yaml")
    shell(".venv/bin/dagster schedule start reconcile_previous_day -w workspace.yaml")
    assert "[RUNNING]" in shell(".venv/bin/dagster schedule list -w workspace.yaml")
    shell(".venv/bin/dagster schedule stop reconcile_previous_day -w workspace.yaml")
    assert "[STOPPED]" in shell(".venv/bin/dagster schedule list -w workspace.yaml")

    assert "landing_files" in shell(".venv/bin/dagster sensor list -w workspace.yaml")
    shell(".venv/bin/dagster sensor start landing_files -w workspace.yaml")
    # The files were written a moment ago: inside the quiet period.
    assert "still being written" in shell(".venv/bin/dagster sensor preview landing_files -w workspace.yaml")
    shell(".venv/bin/dagster sensor stop landing_files -w workspace.yaml")
    shell(".venv/bin/dagster sensor cursor landing_files --delete -w workspace.yaml")

    shell(".venv/bin/batch-assets run --start 2026-11-02 --days 3")
    assert len(runs()) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs())
    files = shell(".venv/bin/batch-assets files 2026-11-03")
    assert "ledger/ledger_2026-11-03.csv" in files and "ingested" in files and "duplicate_txn_id" in files

    # A backfill of a range is one run that takes the days in order, here in this process.
    shell(".venv/bin/dg launch --job daily_reconciliation --partition-range 2026-11-02...2026-11-04")
    (ranged,) = [r for r in runs() if "dagster/asset_partition_range_start" in r.tags]
    assert ranged.status == dg.DagsterRunStatus.SUCCESS
    assert (ranged.tags["dagster/asset_partition_range_start"], ranged.tags["dagster/asset_partition_range_end"]) == (
        "2026-11-02",
        "2026-11-04",
    )

    # Submitted to the queue (no daemon here), one run per day, serialised by the job's tag; then cancel one.
    shell(
        ".venv/bin/dagster job backfill -w workspace.yaml -j daily_reconciliation "
        "--from 2026-11-02 --to 2026-11-04 --noprompt"
    )
    queued = [r for r in runs("reconcile") if BACKFILL_ID_TAG in r.tags]
    assert sorted(r.tags["dagster/partition"] for r in queued) == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert all(r.status == dg.DagsterRunStatus.QUEUED for r in queued)
    listed = shell(".venv/bin/dagster run list --limit 5")
    assert queued[0].run_id in listed
    shell(".venv/bin/batch-assets cancel RUN_ID", RUN_ID=queued[0].run_id)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(queued[0].run_id).status == dg.DagsterRunStatus.CANCELED

    # A day whose bank file is late fails; once it lands, re-execute from failure.
    # Re-running forward from 4 Nov: 4 Nov is re-run, 5 Nov fails, its bank file is late.
    output = shell(".venv/bin/batch-assets run --start 2026-11-04 --days 2", ok=False)
    assert "2026-11-05" in output and "bank" in output
    [failed] = [r for r in runs() if r.status == dg.DagsterRunStatus.FAILURE]
    assert failed.tags["dagster/partition"] == "2026-11-05"
    late_bank.write_bytes(held_back)
    output = shell(".venv/bin/batch-assets reexecute RUN_ID", RUN_ID=failed.run_id)
    assert re.search(rf"re-executed {failed.run_id} from failure as run \S+: ok\n", output)

    AlertResource().with_environment(os.environ).send(
        Alert(key="doc-test", kind="run_failure", severity="ERROR", title="a test alert", text="from the runbook test")
    )
    alerts = shell('tail -n 5 "$BATCH_ASSETS_ALERT_FILE" | .venv/bin/python -m json.tool --json-lines')
    assert '"key": "doc-test"' in alerts

    # Every command of the runbook was run above.
    assert set(documented_commands()) == set(shell.ran)
