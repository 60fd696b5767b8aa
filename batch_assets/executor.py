"""The executor of a run: every step in the run's own process, or on Celery workers when the scale-out setting says."""

import os

import dagster as dg

from batch_assets import dagster_internals
from batch_assets.resources import ScaleOutResource

# Between rounds of the Celery run loop: a Redis round trip per pending task, cheap next to a step.
CELERY_POLL_SECONDS = 0.1


@dg.executor(name="batch_assets", config_schema=dg.in_process_executor.config_schema)
def switchable_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """In one process unless BATCH_ASSETS_EXECUTOR says `celery` when the run starts. On Celery, bucket steps
    go to any worker, and the steps that open the warehouse to its queue (docs/scaling.md)."""
    scale_out = ScaleOutResource().with_environment(os.environ)
    if scale_out.executor == "in_process":
        return dg.in_process_executor.executor_creation_fn(init_context)
    if not dagster_internals.is_persistent(init_context.instance):
        raise dg.DagsterInvariantViolationError(
            "BATCH_ASSETS_EXECUTOR=celery needs a persistent Dagster instance that the workers share (Postgres, "
            "docs/scaling.md); unset it to run in this process."
        )
    from dagster_celery.executor import celery_executor

    dagster_internals.poll_celery_tasks_every(CELERY_POLL_SECONDS)

    agreed = scale_out.celery_settings()
    config = {
        "broker": agreed.pop("broker_url"),
        "backend": agreed.pop("result_backend"),
        "retries": init_context.executor_config["retries"],
        "config_source": agreed,
    }
    celery_context = dg.InitExecutorContext(
        job=init_context.job, executor_def=celery_executor, executor_config=config, instance=init_context.instance
    )
    return celery_executor.executor_creation_fn(celery_context)
