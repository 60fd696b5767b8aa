"""The schedule and the new-file sensor, evaluated against a real instance: run requests, run keys and cursors."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from batch_assets.definitions import defs
from batch_assets.defs.automation.jobs import SERIAL_TAG
from batch_assets.defs.automation.sensors import Cursor
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_ingest_and_validate import snapshot

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look written `seconds` ago: past the sensor's quiet period."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def deliver(
    landing: Path, day: date, *, ledger_amount: str = "10.00", settled: bool = True, part: str | None = None
) -> list[Path]:
    paths = [
        write_landing(
            landing, "ledger", day, csv_text([txn(f"L-{day}-{part}", ledger_amount, day, reference="R1")]), part=part
        ),
        write_landing(
            landing, "bank", day, csv_text([txn(f"B-{day}-{part}", ledger_amount, day, reference="R1")]), part=part
        ),
    ]
    if settled:
        for path in paths:
            age(path)
    return paths


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> tuple[list[dg.RunRequest], str | None, str | None]:
    """Evaluate the sensor once: its run requests, the new cursor and the skip reason."""
    sensor = defs.get_repository_def().get_sensor_def("landing_files")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    result = sensor.evaluate_tick(context)
    skip = result.skip_message
    return list(result.run_requests or []), result.cursor, skip


# -- the schedule ------------------------------------------------------------------------------------------


def evaluate_schedule(
    instance: dg.DagsterInstance,
    at: datetime,
    monkeypatch: pytest.MonkeyPatch,
    tz: str = "UTC",
    time_of_day: str = "06:00",
):
    monkeypatch.setenv("BATCH_ASSETS_TIMEZONE", tz)
    monkeypatch.setenv("BATCH_ASSETS_SCHEDULE_TIME", time_of_day)
    repository = defs.get_repository_def()
    schedule = repository.get_schedule_def("reconcile_previous_day")
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=repository, resources=defs.resources
    )
    return schedule.evaluate_tick(context)


def test_schedule_waits_for_the_local_schedule_time(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = evaluate_schedule(instance, datetime(2026, 11, 3, 5, 45, tzinfo=UTC), monkeypatch)
    assert not result.run_requests
    assert "after 06:00" in result.skip_message


def test_schedule_requests_the_previous_business_day_once_per_day(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = evaluate_schedule(instance, datetime(2026, 11, 3, 6, 0, tzinfo=UTC), monkeypatch)
    later = evaluate_schedule(instance, datetime(2026, 11, 3, 17, 15, tzinfo=UTC), monkeypatch)
    [request] = first.run_requests
    assert request.partition_key == "2026-11-02"
    assert request.tags[SERIAL_TAG] == "reconcile"
    # Every tick of the day asks with the same run key, so the daemon launches the day once.
    assert [r.run_key for r in later.run_requests] == [request.run_key] == ["schedule:2026-11-02"]


def test_schedule_uses_the_configured_time_zone(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    # 23:30 UTC on 2 Nov is 08:30 on 3 Nov in Tokyo: past 08:00 there, so 2 Nov (Tokyo) is due.
    tokyo = evaluate_schedule(instance, datetime(2026, 11, 2, 23, 30, tzinfo=UTC), monkeypatch, "Asia/Tokyo", "08:00")
    assert [r.partition_key for r in tokyo.run_requests] == ["2026-11-02"]
    # The same instant is 15:30 on 2 Nov in Los Angeles, before 16:00 there.
    la = evaluate_schedule(
        instance, datetime(2026, 11, 2, 23, 30, tzinfo=UTC), monkeypatch, "America/Los_Angeles", "16:00"
    )
    assert not la.run_requests and "America/Los_Angeles" in la.skip_message


# -- the new-file sensor -----------------------------------------------------------------------------------


def test_a_new_complete_day_is_requested_once(landing: Path, instance: dg.DagsterInstance) -> None:
    deliver(landing, D1)
    requests, cursor, _ = tick(instance)
    assert [(r.partition_key, r.tags[SERIAL_TAG]) for r in requests] == [("2026-11-02", "reconcile")]
    assert requests[0].run_key.startswith("files:2026-11-02:")
    assert "2026-11-02" in Cursor.parse(cursor).days

    again, cursor_again, skip = tick(instance, cursor)
    assert again == [] and "no new or changed files" in skip
    assert Cursor.parse(cursor_again).days == Cursor.parse(cursor).days


def test_a_file_still_being_written_waits_for_the_quiet_period(landing: Path, instance: dg.DagsterInstance) -> None:
    ledger, bank = deliver(landing, D1, settled=False)
    age(ledger)  # the bank file was touched just now
    requests, cursor, skip = tick(instance)
    assert requests == []
    assert "bank/bank_2026-11-02.csv still being written" in skip
    assert "2026-11-02" not in Cursor.parse(cursor).days  # looked at again next tick

    age(bank)
    requests, _, _ = tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-11-02"]


def test_a_done_marker_makes_a_fresh_file_ready(landing: Path, instance: dg.DagsterInstance) -> None:
    for path in deliver(landing, D1, settled=False):
        path.with_name(path.name + ".done").touch()
    requests, _, _ = tick(instance)
    assert [r.partition_key for r in requests] == ["2026-11-02"]


def test_a_day_waits_until_both_sources_have_landed(landing: Path, instance: dg.DagsterInstance) -> None:
    ledger, bank = deliver(landing, D1)
    bank.unlink()
    requests, cursor, skip = tick(instance)
    assert requests == [] and "2026-11-02 waits for a bank file" in skip


def test_the_same_bytes_under_a_new_name_give_the_same_run_key(landing: Path, instance: dg.DagsterInstance) -> None:
    ledger, _ = deliver(landing, D1)
    [first], cursor, _ = tick(instance)
    renamed = ledger.with_name("ledger_2026-11-02_01.csv")
    ledger.rename(renamed)
    requests, _, _ = tick(instance, cursor)
    # The names changed, so the day is looked at again; its content did not, so the key is the one the
    # daemon already launched, and it launches nothing.
    assert [r.run_key for r in requests] == [first.run_key]
    copy = ledger.with_name("ledger_2026-11-02_02.csv")
    copy.write_bytes(renamed.read_bytes())
    age(copy)
    requests, _, _ = tick(instance, cursor)
    assert [r.run_key for r in requests] == [first.run_key]


def test_new_bytes_under_the_same_name_give_a_new_run_key(landing: Path, instance: dg.DagsterInstance) -> None:
    deliver(landing, D1)
    [first], cursor, _ = tick(instance)
    deliver(landing, D1, ledger_amount="11.00")
    [second], _, _ = tick(instance, cursor)
    assert second.partition_key == "2026-11-02" and second.run_key != first.run_key


def test_a_changed_day_also_requests_the_reconciled_days_after_it_in_order(
    landing: Path, instance: dg.DagsterInstance
) -> None:
    for day in (D1, D2, D3):
        deliver(landing, day)
    [r1, r2, r3], cursor, _ = tick(instance)
    for day in (D1, D2, D3):
        result = defs.resolve_job_def("daily_reconciliation").execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False
        )
        assert result.success
    deliver(landing, D1, ledger_amount="12.00")
    requests, _, _ = tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert requests[0].run_key.startswith("files:") and all(r.run_key.startswith("forward:") for r in requests[1:])
    assert all(r.tags[SERIAL_TAG] == "reconcile" for r in requests)


def test_symlinks_are_never_followed_and_are_reported_once(
    landing: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text(csv_text([txn("X1", "1.00", D1)]))
    (landing / "ledger").mkdir(parents=True, exist_ok=True)
    (landing / "bank").mkdir(parents=True, exist_ok=True)
    (landing / "ledger" / "ledger_2026-11-02.csv").symlink_to(outside)
    (landing / "bank" / "bank_2026-11-02.csv").symlink_to(outside)
    requests, cursor, skip = tick(instance)
    assert requests == []
    reported = Cursor.parse(cursor).reported
    assert reported == ["bank/bank_2026-11-02.csv", "ledger/ledger_2026-11-02.csv"]
    # Reported on the first tick only: the cursor remembers.
    _, cursor_again, _ = tick(instance, cursor)
    assert Cursor.parse(cursor_again).reported == reported


def test_a_bad_name_is_reported_once_and_never_requested(landing: Path, instance: dg.DagsterInstance) -> None:
    (landing / "ledger").mkdir(parents=True, exist_ok=True)
    (landing / "bank").mkdir(parents=True, exist_ok=True)
    bad = landing / "ledger" / "ledger_2026-13-40.csv"
    bad.write_text("x")
    (landing / "bank" / "statement.csv").write_text("x")
    requests, cursor, skip = tick(instance)
    assert requests == []
    assert (
        "ignored 2 new entries" in skip and "ledger/ledger_2026-13-40.csv (2026-13-40 is not a calendar date)" in skip
    )
    assert Cursor.parse(cursor).reported == ["bank/statement.csv", "ledger/ledger_2026-13-40.csv"]
    _, _, skip_again = tick(instance, cursor)
    assert "ignored" not in skip_again

    deliver(landing, D1)
    requests, _, _ = tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-11-02"]


def test_five_thousand_files_are_paged_through_within_bounded_ticks(
    landing: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_ASSETS_SENSOR_PAGE_SIZE", "500")
    start = date(2025, 1, 1).toordinal()
    days = [date.fromordinal(start + n) for n in range(250)]  # 250 days x 2 sources x 10 parts = 5,000 files
    stamp = time.time() - 3600
    for day in days:
        for source in ("ledger", "bank"):
            for part in range(10):
                path = write_landing(
                    landing, source, day, csv_text([txn(f"{source}-{day}-{part}", "1.00", day)]), part=f"{part:02d}"
                )
                os.utime(path, (stamp, stamp))
    requested: list[str] = []
    cursor = None
    for _ in range(12):
        requests, cursor, _ = tick(instance, cursor)
        assert len(requests) <= 25  # 500 files a page, 20 files a day
        requested += [r.partition_key for r in requests]
        if not requests:
            break
    assert sorted(requested) == [d.isoformat() for d in days]  # every day once, none twice
    assert len(json.dumps(json.loads(cursor))) < 64_000  # the cursor stays small: no per-file state


# -- content that changes back ---------------------------------------------------------------------------


def launch(instance: dg.DagsterInstance, requests: list[dg.RunRequest], launched: set[str]) -> list[str]:
    """Run the requests as the sensor daemon does: a run key it launched before is skipped, the others run in
    the order requested. The days that ran."""
    job = defs.resolve_job_def("daily_reconciliation")
    ran = []
    for request in requests:
        if request.run_key in launched:
            continue
        launched.add(request.run_key)
        job.execute_in_process(
            partition_key=request.partition_key, tags=request.tags, instance=instance, raise_on_error=False
        )
        ran.append(request.partition_key)
    return ran


def held(home: Path, day: date) -> dict[str, list[tuple]]:
    """What the warehouse holds for `day`, but for the file log, which keeps each delivery's history."""
    return {table: rows for table, rows in snapshot(home, day).items() if table != "ops.file_log"}


@pytest.mark.slow
def test_content_that_changes_back_is_run_again_so_the_warehouse_holds_what_landed_last(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    launched: set[str] = set()
    deliver(landing, D1)  # content A
    requests, cursor, _ = tick(instance)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    holds_a = held(home, D1)
    deliver(landing, D1, ledger_amount="11.00")  # content B
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    holds_b = held(home, D1)
    assert holds_b != holds_a

    # A again, then B again: each change back is run, and the warehouse holds what landed last.
    for amount, expected in (("10.00", holds_a), ("11.00", holds_b)):
        paths = deliver(landing, D1, ledger_amount=amount)
        before = cursor
        requests, cursor, _ = tick(instance, before)
        replayed, _, _ = tick(instance, before)  # the same tick evaluated again asks with the same keys
        assert [r.run_key for r in replayed] == [r.run_key for r in requests]
        assert launch(instance, requests + replayed, launched) == ["2026-11-02"]
        assert held(home, D1) == expected

        # Unchanged content launches nothing: a replay of the tick after its run, or the files touched.
        replayed, _, _ = tick(instance, before)
        assert launch(instance, replayed, launched) == []
        for path in paths:
            age(path, 1800)
        requests, cursor, _ = tick(instance, cursor)
        assert launch(instance, requests, launched) == []


def deliver_carrying(landing: Path, day: date, bank_amount: str) -> list[Path]:
    """One ledger item of 10.00 and its bank line: matched when the bank says 10.00, otherwise both stay open
    and are carried into the next day."""
    paths = [
        write_landing(landing, "ledger", day, csv_text([txn(f"L-{day}", "10.00", day, reference="R1")])),
        write_landing(landing, "bank", day, csv_text([txn(f"B-{day}", bank_amount, day, reference="R1")])),
    ]
    for path in paths:
        age(path)
    return paths


@pytest.mark.slow
def test_the_reconciled_days_after_a_day_whose_content_changes_back_are_re_run_each_time(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    launched: set[str] = set()
    deliver_carrying(landing, D1, "10.00")  # content A: D1 carries nothing into D2
    deliver(landing, D2)
    requests, cursor, _ = tick(instance)
    assert launch(instance, requests, launched) == ["2026-11-02", "2026-11-03"]
    holds_a = (held(home, D1), held(home, D2))
    deliver_carrying(landing, D1, "12.00")  # content B: D1's items stay open and D2 carries them
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == ["2026-11-02", "2026-11-03"]
    holds_b = (held(home, D1), held(home, D2))
    assert holds_b[1] != holds_a[1]

    for amount, expected in (("10.00", holds_a), ("12.00", holds_b)):
        deliver_carrying(landing, D1, amount)
        requests, cursor, _ = tick(instance, cursor)
        assert launch(instance, requests, launched) == ["2026-11-02", "2026-11-03"]
        assert (held(home, D1), held(home, D2)) == expected


@pytest.mark.slow
def test_a_day_is_run_again_when_its_files_change_back_after_a_run_that_rejected_one_source(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    launched: set[str] = set()
    ledger, bank = deliver(landing, D1)
    good = {ledger: ledger.read_bytes(), bank: bank.read_bytes()}
    requests, cursor, _ = tick(instance)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    holds = held(home, D1)

    # The ledger is rejected (no ledger materialization), while the bank lands a header-only file.
    ledger.write_text(csv_text([]) + "L-bad,ACC1,2026-11-02\n")
    bank.write_text(csv_text([]))
    for path in (ledger, bank):
        age(path)
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    assert held(home, D1) != holds

    for path, content in good.items():  # the very files of the first run, delivered again
        path.write_bytes(content)
        age(path, 1200)
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    assert held(home, D1) == holds


def test_a_day_that_holds_its_files_is_still_requested_while_a_run_of_it_is_unfinished(
    landing: Path, instance: dg.DagsterInstance
) -> None:
    launched: set[str] = set()
    paths = deliver(landing, D1)
    requests, cursor, _ = tick(instance)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    # A run of the day that has started may have read other bytes than the ones now there: it is not trusted.
    job = defs.resolve_job_def("daily_reconciliation")
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "2026-11-02"})
    for path in paths:
        age(path, 1800)
    requests, _, _ = tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["2026-11-02"] and requests[0].run_key not in launched


@pytest.mark.slow
def test_a_resolutions_file_landing_for_a_reconciled_day_runs_the_day_again_once(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    launched: set[str] = set()
    deliver(landing, D1, ledger_amount="10.00")
    write_landing(landing, "bank", D1, csv_text([txn(f"B-{D1}-fee", "9.50", D1)]), part="fee")
    write_landing(landing, "ledger", D1, csv_text([txn(f"L-{D1}-fee", "10.00", D1)]), part="fee")
    for path in (landing / "bank").iterdir():
        age(path)
    for path in (landing / "ledger").iterdir():
        age(path)
    requests, cursor, _ = tick(instance)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    # A person's decision lands: the day is requested and its resolution applied; a tick after it asks nothing.
    decided = [{"resolution_id": "R1", "action": "match", "source": source, "txn_id": txn_id,
                "write_off_amount": amount, "reason_code": "BANK_FEE", "comment": "", "resolved_by": "ana",
                "resolved_at": "2026-11-03T09:00:00Z"}
               for source, txn_id, amount in (("ledger", f"L-{D1}-fee", "0.50"),
                                              ("bank", f"B-{D1}-fee", ""))]  # fmt: skip
    age(write_landing(landing, "resolutions", D1, csv_text(decided, tuple(decided[0]))))
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == ["2026-11-02"]
    log = snapshot(home, D1)["ops.resolution_log"]
    assert [(row[1], row[5]) for row in log] == [("R1", "applied")]
    requests, cursor, _ = tick(instance, cursor)
    assert launch(instance, requests, launched) == []
