"""The shared store publishes every file whole, and a reader gets exactly the file that was published or an error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from batch_assets.shared_store import PARTIAL, SharedStore, StoreError

pytestmark = pytest.mark.unit


def test_a_published_file_reads_back_as_written_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = SharedStore(tmp_path)
    frame = pl.DataFrame({"txn_id": ["a", "b"], "amount": [1, 2]})
    published = store.publish(frame, tmp_path / "run" / "out.parquet")
    assert published.rows == 2 and published.size == (tmp_path / "run" / "out.parquet").stat().st_size
    assert store.read(published).equals(frame)
    assert not list(tmp_path.rglob(f"*{PARTIAL}"))


def test_a_file_replaced_after_it_was_published_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = SharedStore(tmp_path)
    published = store.publish(pl.DataFrame({"n": [1]}), tmp_path / "out.parquet")
    pl.DataFrame({"n": [2]}).write_parquet(tmp_path / "out.parquet")
    with pytest.raises(StoreError, match="not the file its step published.*Re-execute the run"):
        store.read(published)
    (tmp_path / "out.parquet").unlink()
    with pytest.raises(StoreError, match="missing from the shared store"):
        store.read(published)


def test_a_writer_killed_mid_write_leaves_the_old_file_or_none_never_a_partial_one(tmp_path: Path) -> None:
    """SIGKILL while a large frame is being written: the final name holds the earlier file, untouched."""
    target = tmp_path / "out.parquet"
    store = SharedStore(tmp_path)
    first = store.publish(pl.DataFrame({"n": [0]}), target)
    writer = textwrap.dedent(
        f"""
        from pathlib import Path
        import polars as pl
        from batch_assets.shared_store import SharedStore
        print("writing", flush=True)
        SharedStore({str(tmp_path)!r}).publish(pl.DataFrame({{"n": range(30_000_000)}}), Path({str(target)!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    # Kill the writer as soon as its temporary file exists: in the middle of writing it.
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(f"*{PARTIAL}")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    found = pl.read_parquet(target)
    assert found.equals(pl.DataFrame({"n": [0]})) or found.height == 30_000_000
    if found.height == 1:
        assert store.read(first).equals(found)


def test_a_step_output_round_trips_through_the_store(tmp_path: Path) -> None:
    store = SharedStore(tmp_path)
    store.publish_object({"bucket": 3}, tmp_path / "steps" / "plan" / "tasks")
    assert store.read_object(tmp_path / "steps" / "plan" / "tasks") == {"bucket": 3}
    with pytest.raises(StoreError, match="missing"):
        store.read_object(tmp_path / "steps" / "other")


def test_files_written_together_in_scratch_are_published_one_by_one_and_the_scratch_folder_goes(
    tmp_path: Path,
) -> None:
    store = SharedStore(tmp_path)
    with store.scratch() as folder:
        for index in range(2):
            pl.DataFrame({"n": [index] * (index + 1)}).write_parquet(folder / f"part-{index}.parquet")
        published = [store.adopt(folder / f"part-{i}.parquet", tmp_path / "run" / f"b{i}.parquet") for i in range(2)]
    assert [file.rows for file in published] == [1, 2]
    assert store.read(published[1]).equals(pl.DataFrame({"n": [1, 1]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    with pytest.raises(RuntimeError, match="writer failed"), store.scratch() as folder:
        pl.DataFrame({"n": [9]}).write_parquet(folder / "part.parquet")
        raise RuntimeError("writer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
