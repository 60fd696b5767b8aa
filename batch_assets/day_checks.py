"""A stage's checks as one step: every check judges every day of the run, on one warehouse connection."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg

from batch_assets import dagster_internals
from batch_assets.partitions import DAILY, ON_WAREHOUSE_HOST, WAREHOUSE_POOL, business_dates
from batch_assets.resources import ThresholdsResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import table_key
from batch_assets.storage import Warehouse


@dataclass(frozen=True)
class CheckDay:
    """What a check judges one day with: the warehouse (read-only) and the thresholds."""

    wh: Warehouse
    thresholds: ThresholdsResource
    day: date


@dataclass(frozen=True)
class DayCheck:
    """One check of one table: its verdict on one day, from what the warehouse holds for it."""

    table: str
    name: str
    description: str
    judge: Callable[[CheckDay], dg.AssetCheckResult]
    blocking: bool = False

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name,
            asset=table_key(self.table),
            description=self.description,
            blocking=self.blocking,
            partitions_def=DAILY,
        )


def checks_step(name: str, checks: Sequence[DayCheck]) -> dg.AssetChecksDefinition:
    """The checks of one stage in one step on the warehouse's host: on Celery each step is a task that loads the
    job, so one step for a stage's checks, not one per check, keeps the serial chain of a day short. A blocking
    check that fails on any day stops the steps after it, for the whole range."""
    specs = [check.spec for check in checks]

    @dg.multi_asset_check(
        name=name,
        specs=specs,
        pool=WAREHOUSE_POOL,
        op_tags=ON_WAREHOUSE_HOST,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def step(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource):
        yield from _judge_days(context, warehouse.open(context.log), thresholds, checks)

    return step


def _judge_days(
    context: dg.AssetCheckExecutionContext, wh: Warehouse, thresholds: ThresholdsResource, checks: Sequence[DayCheck]
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """A run of one day records each result as it is. Over a backfilled range, each day's result goes onto its
    own partition, against that day's latest materialisation, and one output per check closes the step."""
    days = business_dates(context)
    with wh.reading():
        for day in days:
            for check in checks:
                result = check.judge(CheckDay(wh, thresholds, day))
                key = table_key(check.table)
                judged = {
                    "asset_key": key,
                    "check_name": check.name,
                    "passed": result.passed,
                    "metadata": result.metadata,
                    "severity": result.severity,
                }
                if len(days) == 1:
                    yield dg.AssetCheckResult(**judged)
                    continue
                yield dg.AssetCheckEvaluation(
                    **judged,
                    blocking=check.blocking,
                    partition=day.isoformat(),
                    target_materialization_data=dagster_internals.latest_materialization(
                        context.instance, key, day.isoformat()
                    ),
                )
    if len(days) > 1:
        for check in checks:
            yield dg.Output(None, output_name=check.spec.get_python_identifier())
