"""The resources every definition shares, and the executor that runs a day's steps."""

import dagster as dg

from batch_assets.alerts import alert_resource
from batch_assets.defs.automation.sensors import landing_sensor_config
from batch_assets.resources import env_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={**env_resources(), "landing_sensor": landing_sensor_config(), "alerts": alert_resource()},
        # Every step that matters writes the warehouse, and the pool runs those one at a time anyway; running a
        # run's steps in its own process saves a Python start-up and a Dagster import per step.
        executor=dg.in_process_executor,
    )
