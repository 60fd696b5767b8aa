"""The daily job, and the tags that keep runs of consecutive business days in order."""

from __future__ import annotations

import dagster as dg

# Day D+1 carries day D's open items, so runs that reconcile days must not overlap or overtake each
# other. Every run of the daily job carries this tag (a job tag, so the UI's launches and job backfills
# have it too); the shipped dagster.yaml limits it to one run at a time, and the run queue starts runs in
# the order they were requested.
SERIAL_TAG = "batch_assets/serial"
SERIAL_VALUE = "reconcile"
TRIGGER_TAG = "batch_assets/trigger"

daily_job = dg.define_asset_job(
    name="daily_reconciliation",
    selection=dg.AssetSelection.all(),
    description="Every stage of one business day, from landing files to the summary, with all checks.",
    tags={SERIAL_TAG: SERIAL_VALUE},
)


def run_tags(trigger: str, **extra: str) -> dict[str, str]:
    """Tags of an automated run: serialised with the other reconciling runs, and saying what started it."""
    return {SERIAL_TAG: SERIAL_VALUE, TRIGGER_TAG: trigger, **extra}
