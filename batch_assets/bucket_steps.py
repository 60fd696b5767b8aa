"""A stage as bucket steps: its plan and its commit run where the warehouse is, its buckets run anywhere.

The plan reads the warehouse, publishes each bucket's inputs to the shared store and hands every bucket step
a `BucketTask`. A bucket step reads only those files, runs the stage's transforms over its bucket of every day
of the run, in day order, and publishes its outputs. The commit then commits each day, all buckets at once, in
one transaction, as a stage always has. In one process the steps simply run one after the other; on Celery the
plan and the commit go to the warehouse's queue and the buckets to any worker.
"""

import hashlib
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.faults import BUCKET_POINT, fault_point
from batch_assets.partitions import ON_WAREHOUSE_HOST, WAREHOUSE_POOL, business_dates
from batch_assets.progress import Progress, ProgressResource
from batch_assets.resources import ScaleOutResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.shared_store import BucketResult, BucketTask, PublishedFile, SharedStore
from batch_assets.stage import StageRun, run_stage
from batch_assets.storage import Bucket, Warehouse

# A graph-backed asset states its data version on its Output, which dagster 1.13 marks beta and warns about on
# every output; @asset's MaterializeResult takes the same value with no warning.
warnings.filterwarnings("ignore", message="Parameter `data_version` of initializer `Output.__init__`")


@cache
def code_version() -> str:
    """The code every step of a stage must share: the sha256 of this package's Python source. A bucket step on a
    worker that runs other code refuses its task, and the commit refuses results computed by other code."""
    digest = hashlib.sha256()
    root = package_files.files("batch_assets")
    for path in sorted(Path(str(root)).rglob("*.py")):
        digest.update(path.relative_to(Path(str(root))).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Planning:
    """What a stage's plan works with: the warehouse, the shared store, the run's days, the resources."""

    stage: str
    context: dg.OpExecutionContext
    wh: Warehouse
    store: SharedStore
    days: list[date]

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def path(self, name: str, day: date | None = None, bucket: int | None = None) -> Path:
        """Where the plan publishes input `name` (of `day`, or of the days before the run) for `bucket`."""
        return self.store.folder(self.run_id, self.stage, day, bucket) / "in" / f"{_file_name(name)}.parquet"

    def publish(self, frame: pl.DataFrame | pl.LazyFrame, name: str, day: date | None, bucket: int) -> PublishedFile:
        path = self.path(name, day, bucket)
        if isinstance(frame, pl.LazyFrame):
            with self.store.publishing(path) as partial:
                frame.sink_parquet(partial, compression="lz4", engine="streaming")
            return self.store.describe(path)
        return self.store.publish(frame, path)

    def export(
        self, table: str, day: date, buckets: list[Bucket], name: str, columns: list[str] | None = None, **kw: Any
    ) -> list[PublishedFile]:
        """Publish each bucket of one day of a warehouse table, copied by DuckDB straight to Parquet in one pass
        over the day."""
        with self.store.scratch() as folder:
            written = self.wh.export(table, day, folder, buckets, columns, **kw)
            return [
                self.store.adopt(path, self.path(name, day, b.index)) for b, path in zip(buckets, written, strict=True)
            ]


def by_bucket(files: Mapping[str, list[PublishedFile]]) -> list[dict[str, PublishedFile]]:
    """Each bucket's inputs by name, from each input's files by bucket."""
    counts = {len(published) for published in files.values()}
    if len(counts) > 1:
        raise ValueError(f"inputs with different numbers of buckets: {sorted(counts)}")
    return [dict(zip(files, bucket, strict=True)) for bucket in zip(*files.values(), strict=True)]


@dataclass(frozen=True)
class Planned:
    """A plan: per day what the commit needs (input fingerprints, counts), each bucket's inputs, and the
    parameters every bucket step uses."""

    per_day: Mapping[date, Mapping[str, Any]]
    buckets: list[Mapping[str, PublishedFile]]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class StagePlan:
    """The plan's part that the commit reads."""

    stage: str
    days: tuple[date, ...]
    per_day: Mapping[date, Mapping[str, Any]]
    buckets: int
    code_version: str


class BucketWork:
    """A bucket step at work: its task's inputs, and its outputs and figures, per day."""

    def __init__(self, task: BucketTask, store: SharedStore, progress: Progress) -> None:
        self.task, self.store, self.progress = task, store, progress
        self._outputs: dict[date, dict[str, PublishedFile]] = {day: {} for day in task.days}
        self._figures: dict[date, Counter] = {day: Counter() for day in task.days}
        self._rows_read = 0

    @property
    def params(self) -> Mapping[str, Any]:
        return self.task.params

    def read(self, name: str, day: date | None = None, columns: list[str] | None = None) -> pl.DataFrame:
        frame = self.store.read(self.task.inputs[input_key(name, day)], columns)
        self._rows_read += frame.height
        return frame

    def publish(self, day: date, table: str, frame: pl.DataFrame) -> None:
        folder = self.store.folder(self.task.run_id, self.task.stage, day, self.task.bucket)
        self._outputs[day][table] = self.store.publish(frame, folder / "out" / f"{_file_name(table)}.parquet")

    def count(self, day: date, figures: Mapping[str, Any]) -> None:
        """Add to the day's figures; the rows read since the last count are done, for the progress line."""
        self._figures[day].update(figures)
        self.progress.advance(self._rows_read, note=f"bucket {self.task.bucket + 1} of {self.task.buckets}, {day}")
        self._rows_read = 0

    def result(self) -> BucketResult:
        figures = {day: dict(counter) for day, counter in self._figures.items()}
        return BucketResult(self.task.stage, self.task.bucket, self.task.code_version, self._outputs, figures)


def input_key(name: str, day: date | None = None) -> str:
    """The name a bucket task knows an input by: per day, or once for the days before the run."""
    return f"{name}@{day.isoformat()}" if day else name


def _file_name(name: str) -> str:
    return name.replace("/", "-").replace("@", "-")


def day_files(stage: StageRun, results: list[BucketResult], table: str) -> list[Path]:
    """The published files of `table` for the stage's day from every bucket, each checked to be the file its
    bucket step wrote."""
    return [SharedStore.verified(r.outputs[stage.day][table]) for r in results if table in r.outputs[stage.day]]


def day_figures(stage: StageRun, results: list[BucketResult]) -> Counter:
    """The day's figures, added up over the buckets (which hold disjoint accounts or txn_ids)."""
    total: Counter = Counter()
    for result in results:
        total.update(result.figures[stage.day])
    return total


@dataclass(frozen=True)
class BucketedStage:
    """A stage's three parts. `plan` runs on the warehouse's host; `compute` anywhere, one bucket at a time, and
    sees only its task; `commit_day` commits one day and yields its materialisations."""

    name: str
    outs: Mapping[str, dg.AssetOut]
    plan: Callable[[Planning], Planned]
    compute: Callable[[BucketWork], None]
    commit_day: Callable[[StageRun, Mapping[str, Any], list[BucketResult]], Iterator[dg.MaterializeResult]]
    plan_resources: frozenset[str] = frozenset()

    def steps(self, after: list[Any]) -> dict[str, Any]:
        """Wire the plan, one bucket step per task, and the commit; `after` are the upstream assets. The graph
        of the stage's asset returns this."""
        plan_op = self._plan_op(len(after))
        plan, tasks = plan_op(**{f"after_{i}": upstream for i, upstream in enumerate(after)})
        committed = self._commit_op(plan, tasks.map(self._bucket_op).collect())
        if len(self.outs) == 1:
            return {next(iter(self.outs)): committed}
        return {name: getattr(committed, name) for name in self.outs}

    def _plan_op(self, upstream: int) -> dg.OpDefinition:
        stage = self

        @dg.op(
            name=f"{self.name}_plan",
            # One input per upstream asset: Dagster refuses a fan-in of asset inputs that are fan-ins themselves.
            ins={f"after_{i}": dg.In(dg.Nothing) for i in range(upstream)},
            out={"plan": dg.Out(StagePlan), "tasks": dg.DynamicOut(BucketTask)},
            tags=ON_WAREHOUSE_HOST,
            pool=WAREHOUSE_POOL,
            retry_policy=TRANSIENT_RETRY,
            required_resource_keys={"warehouse", "scale_out", *self.plan_resources},
        )
        @fail_fast_unless_transient
        def plan_op(context: dg.OpExecutionContext):
            days = business_dates(context)
            warehouse: WarehouseResource = context.resources.warehouse
            store = context.resources.scale_out.store()
            planned = stage.plan(Planning(stage.name, context, warehouse.open(context.log), store, days))
            version = code_version()
            yield dg.Output(StagePlan(stage.name, tuple(days), planned.per_day, len(planned.buckets), version), "plan")
            for index, inputs in enumerate(planned.buckets):
                task = BucketTask(
                    stage.name, context.run.run_id, index, len(planned.buckets), tuple(days), inputs, version,
                    planned.params,
                )  # fmt: skip
                yield dg.DynamicOutput(task, mapping_key=f"bucket_{index}", output_name="tasks")

        return plan_op

    @property
    def _bucket_op(self) -> dg.OpDefinition:
        stage = self

        @dg.op(name=f"{self.name}_bucket", retry_policy=TRANSIENT_RETRY)
        @fail_fast_unless_transient
        def bucket_op(
            context: dg.OpExecutionContext, task: BucketTask, scale_out: ScaleOutResource, progress: ProgressResource
        ) -> BucketResult:
            if task.code_version != code_version():
                raise dg.Failure(
                    f"{stage.name} bucket {task.bucket + 1} of {task.buckets} was planned by code version "
                    f"{task.code_version}, but this worker runs {code_version()}: restart the workers on the "
                    "same code as the warehouse's host, then re-execute the run from its failed steps.",
                    allow_retries=False,
                )
            fault_point(BUCKET_POINT, stage.name)
            rows = sum(file.rows for file in task.inputs.values())
            work = BucketWork(task, scale_out.store(), progress.tracker(context.log, stage.name, total=rows))
            stage.compute(work)
            return work.result()

        return bucket_op

    @property
    def _commit_op(self) -> dg.OpDefinition:
        stage = self
        names = {out.key: name for name, out in self.outs.items()}

        @dg.op(
            name=f"{self.name}_commit",
            ins={"plan": dg.In(StagePlan), "results": dg.In(list)},
            out={name: dg.Out(dg.Nothing) for name in self.outs},
            tags=ON_WAREHOUSE_HOST,
            pool=WAREHOUSE_POOL,
            retry_policy=TRANSIENT_RETRY,
        )
        @fail_fast_unless_transient
        def commit_op(
            context: dg.OpExecutionContext,
            plan: StagePlan,
            results: list[BucketResult],
            warehouse: WarehouseResource,
            scale_out: ScaleOutResource,
        ):
            foreign = sorted({r.code_version for r in results} - {plan.code_version, code_version()})
            if foreign or plan.code_version != code_version():
                raise dg.Failure(
                    f"{stage.name}: results of code version(s) {', '.join(foreign) or plan.code_version} are not "
                    f"committed by code version {code_version()}: restart every worker on one code version, then "
                    "re-execute the run from its failed steps.",
                    allow_retries=False,
                )
            ordered = sorted(results, key=lambda r: r.bucket)
            for result in run_stage(
                stage.name, context, warehouse, lambda s: stage.commit_day(s, plan.per_day[s.day], ordered)
            ):
                yield dg.Output(
                    None, names[result.asset_key], metadata=result.metadata, data_version=result.data_version
                )
            # This run's files are committed. Files of an earlier run that this one re-executed stay: that run may
            # be re-executed once more, and its steps that succeeded hand over the same files again.
            scale_out.store().remove_run(context.run.run_id, stage.name)

        return commit_op
