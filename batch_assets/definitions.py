"""The code location: every asset, check, job and resource, assembled into `defs`."""

from __future__ import annotations

import dagster as dg

from batch_assets.alerting import ALERT_SENSORS, alert_resource
from batch_assets.assets.exceptions import recon_exceptions
from batch_assets.assets.ingest import ingest
from batch_assets.assets.match import match
from batch_assets.assets.summary import recon_summary
from batch_assets.assets.validate import validate
from batch_assets.checks import CHECKS
from batch_assets.jobs import daily_job
from batch_assets.resources import env_resources
from batch_assets.schedules import SCHEDULES
from batch_assets.sensors import SENSORS, landing_sensor_config

ASSETS = [ingest, validate, match, recon_exceptions, recon_summary]

defs = dg.Definitions(
    assets=ASSETS,
    # Every step that matters writes the warehouse, and the pool runs those one at a time anyway; running a
    # run's steps in its own process saves a Python start-up and a Dagster import per step.
    executor=dg.in_process_executor,
    asset_checks=CHECKS,
    jobs=[daily_job],
    schedules=SCHEDULES,
    sensors=[*SENSORS, *ALERT_SENSORS],
    resources={**env_resources(), "landing_sensor": landing_sensor_config(), "alerts": alert_resource()},
)
