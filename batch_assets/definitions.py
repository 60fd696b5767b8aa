"""The code location: every asset, check, job and resource, assembled into `defs`."""

from __future__ import annotations

import dagster as dg

from batch_assets.assets.exceptions import recon_exceptions
from batch_assets.assets.ingest import ingest
from batch_assets.assets.match import match
from batch_assets.assets.summary import recon_summary
from batch_assets.assets.validate import validate
from batch_assets.checks import CHECKS
from batch_assets.resources import env_resources

ASSETS = [ingest, validate, match, recon_exceptions, recon_summary]

daily_job = dg.define_asset_job(
    name="daily_reconciliation",
    selection=dg.AssetSelection.all(),
    description="Every stage of one business day, from landing files to the summary, with all checks.",
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[daily_job],
    resources=env_resources(),
)
