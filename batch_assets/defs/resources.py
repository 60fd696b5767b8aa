"""The resources every definition shares, each with its settings at their defaults, and the executor of a day."""

import dagster as dg

from batch_assets.alerts import AlertResource
from batch_assets.defs.automation.sensors import LandingSensorConfig
from batch_assets.progress import ProgressResource
from batch_assets.resources import (
    CalendarResource,
    LandingZoneResource,
    MatchingResource,
    ThresholdsResource,
    WarehouseResource,
)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        # Defaults only: a setting's variable, where set, overrides its default when a run or tick starts.
        resources={
            "warehouse": WarehouseResource(),
            "landing": LandingZoneResource(),
            "thresholds": ThresholdsResource(),
            "matching": MatchingResource(),
            "progress": ProgressResource(),
            "calendar": CalendarResource(),
            "landing_sensor": LandingSensorConfig(),
            "alerts": AlertResource(),
        },
        # Every step that matters writes the warehouse, and the pool runs those one at a time anyway; running a
        # run's steps in its own process saves a Python start-up and a Dagster import per step.
        executor=dg.in_process_executor,
    )
