"""The daily schedule: reconcile the previous business day once its local schedule time has passed."""

from __future__ import annotations

import dagster as dg

from batch_assets.defs.automation import jobs
from batch_assets.resources import CalendarResource

# The local time and time zone are settings read when the schedule is evaluated, so the schedule ticks
# often and decides itself; its run key makes it fire once per business day however many ticks pass.
TICK_CRON = "*/15 * * * *"


@dg.schedule(
    job=jobs.daily_job,
    cron_schedule=TICK_CRON,
    name="reconcile_previous_day",
    description="Once a day, after BATCH_ASSETS_SCHEDULE_TIME in BATCH_ASSETS_TIMEZONE, reconcile the previous "
    "business day (one run per day, keyed by the day).",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def reconcile_previous_day(context: dg.ScheduleEvaluationContext, calendar: CalendarResource):
    now = calendar.now(context.scheduled_execution_time)
    if not calendar.passed("schedule_time", now):
        return dg.SkipReason(
            f"{now:%H:%M} {calendar.timezone}: the previous business day is reconciled after {calendar.schedule_time}"
        )
    day = calendar.previous_business_day(now).isoformat()
    return dg.RunRequest(run_key=f"schedule:{day}", partition_key=day, tags=jobs.run_tags("schedule"))
