"""The resources every definition shares, each with its settings at their defaults, and the executor of a run."""

import dagster as dg

from batch_assets.alerts import AlertResource
from batch_assets.defs.automation.sensors import LandingSensorConfig
from batch_assets.executor import switchable_executor
from batch_assets.progress import ProgressResource
from batch_assets.resources import (
    CalendarResource,
    LandingZoneResource,
    MatchingResource,
    ScaleOutResource,
    StepOutputs,
    ThresholdsResource,
    WarehouseResource,
)


@dg.definitions
def resources() -> dg.Definitions:
    scale_out = ScaleOutResource()
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
            "scale_out": scale_out,
            "io_manager": StepOutputs(),
        },
        # A run's steps in its own process, which saves a Python start-up and a Dagster import per step; with
        # BATCH_ASSETS_EXECUTOR=celery, on Celery workers instead (docs/scaling.md).
        executor=switchable_executor,
    )
