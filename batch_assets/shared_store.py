"""The shared store: the folder where a stage's bucket steps find their inputs and leave their outputs, as Parquet.

Bucket steps may run on other hosts, which never open the warehouse; they read and write only here. Every file
is published whole: written under a temporary name, flushed, then renamed into place, so a step killed while
writing leaves at most a temporary file that no step reads. A file's name holds the run, the stage, the day and
the bucket, and a step is handed the exact names it reads (a `BucketTask`), so it reads exactly what the step
before it published for this run, never a file of another run or an older attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from batch_assets import settings
from batch_assets.storage import disk_full_error, is_out_of_space

PARTIAL = ".partial"


@dataclass(frozen=True)
class PublishedFile:
    """A file of the store as its writer published it: where, how many rows and bytes, and its sha256, so that
    the step that commits it can tell that it reads what was written."""

    path: str
    rows: int
    size: int
    sha256: str


@dataclass(frozen=True)
class BucketTask:
    """One bucket of a stage for the run's days: its inputs per day (and those before the first day), and the
    code version of the step that planned it. Bucket steps receive it as their input."""

    stage: str
    run_id: str
    bucket: int
    buckets: int
    days: tuple[date, ...]
    inputs: Mapping[str, PublishedFile]
    code_version: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> PublishedFile:
        return self.inputs[name]


@dataclass(frozen=True)
class BucketResult:
    """What a bucket step published: each day's output files by table, and its figures, which add up across
    buckets (buckets hold disjoint accounts or txn_ids)."""

    stage: str
    bucket: int
    code_version: str
    outputs: Mapping[date, Mapping[str, PublishedFile]]
    figures: Mapping[date, Mapping[str, Any]]


class StoreError(Exception):
    """A file of the shared store is missing or is not the file its writer published."""


class SharedStore:
    """The store's folder, any POSIX file system every worker mounts at the same path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def folder(self, run_id: str, stage: str, day: date | None = None, bucket: int | None = None) -> Path:
        """Where a run's stage keeps its files: per day (or `before` the run's first day) and per bucket."""
        path = self.root / run_id / stage
        path = path / (day.isoformat() if day else "before")
        return path / f"bucket-{bucket:04d}" if bucket is not None else path

    def publish(self, frame: pl.DataFrame, path: Path) -> PublishedFile:
        """Write `frame` to `path` whole: a temporary name, flushed to disk, then one rename into place."""
        with self.publishing(path) as partial:
            frame.write_parquet(partial, compression="lz4")
        return self.describe(path, frame.height)

    @contextmanager
    def publishing(self, path: Path) -> Iterator[Path]:
        """A temporary name for another writer to write `path` through; renamed into place when the block ends
        without an error, removed otherwise."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}{PARTIAL}")
        try:
            with self._space_named(f"publishing {path.name}"):
                yield partial
                self._move_into_place(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private folder of the store for a writer that writes several files at once (DuckDB's partitioned
        COPY); `adopt` publishes each of them, and the folder goes when the block ends."""
        folder = self.root / f"{uuid.uuid4().hex}{PARTIAL}"
        try:
            with self._space_named("writing files to publish"):
                folder.mkdir(parents=True)
                yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def adopt(self, written: Path, path: Path) -> PublishedFile:
        """Publish a file written in `scratch()`: flushed, then renamed into place (one file system)."""
        with self._space_named(f"publishing {path.name}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._move_into_place(written, path)
        return self.describe(path)

    @staticmethod
    def _move_into_place(written: Path, path: Path) -> None:
        with open(written, "rb") as data:
            os.fsync(data.fileno())
        os.replace(written, path)

    @contextmanager
    def _space_named(self, doing: str) -> Iterator[None]:
        """A full disk becomes an error that names the store and its setting, not a rejected file."""
        try:
            yield
        except Exception as error:
            if is_out_of_space(error):
                raise disk_full_error(self.root, doing, settings.SHARED_STORE) from error
            raise

    @staticmethod
    def describe(path: Path, rows: int | None = None) -> PublishedFile:
        if rows is None:
            import pyarrow.parquet  # only where a file is described: loading the code location need not import it

            rows = pyarrow.parquet.read_metadata(path).num_rows
        return PublishedFile(str(path), rows, path.stat().st_size, _sha256(path))

    @staticmethod
    def verified(file: PublishedFile) -> Path:
        """The path of a published file after checking that it is still the file that was published."""
        path = Path(file.path)
        if not path.exists():
            raise StoreError(f"{path} is missing from the shared store: re-execute the run from its failed steps")
        if path.stat().st_size != file.size or _sha256(path) != file.sha256:
            raise StoreError(
                f"{path} is not the file its step published (size or sha256 differ): another writer replaced it. "
                "Re-execute the run from its failed steps."
            )
        return path

    def publish_object(self, value: Any, path: Path) -> None:
        """Pickle a small value (a step's output) to `path`, whole, as `publish` writes a frame."""
        with self.publishing(path) as partial:
            partial.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def read_object(path: Path) -> Any:
        if not path.exists():
            raise StoreError(f"{path} is missing from the shared store: re-execute the run from the start")
        return pickle.loads(path.read_bytes())  # noqa: S301 (written by this run's own steps, see publish_object)

    def read(self, file: PublishedFile, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.verified(file), columns=columns)

    def remove_run(self, run_id: str, stage: str) -> None:
        """Delete a stage's files of a run once its commit holds them."""
        shutil.rmtree(self.root / run_id / stage, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_json(value: BucketTask | BucketResult) -> str:
    return json.dumps(asdict(value), default=str, sort_keys=True)
