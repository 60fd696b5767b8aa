"""Alerts: raised once per event to the log, the alert file and a real webhook on loopback; the sensors find
failed runs, failed checks, missed SLAs and bad days in a real Dagster instance, the landing sensor finds late
files for reconciled days, and neither a second tick nor a replayed tick raises an alert twice."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from batch_assets import settings
from batch_assets.alerts import Alert, AlertResource
from batch_assets.definitions import defs
from batch_assets.defs.alerting import sensors as alerting
from batch_assets.resources import CalendarResource
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_automation import age, deliver
from batch_assets_tests.test_automation import tick as landing_tick
from batch_assets_tests.test_ingest_and_validate import deliver_good_day, run_day

FAILED_DAY = date(2026, 11, 10)
D1, D2 = date(2026, 11, 3), date(2026, 11, 4)  # a Tuesday and a Wednesday


@dataclass
class Webhook:
    """A receiver on loopback that answers with `statuses` in turn (then 200) and keeps every body and path."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            hook.paths.append(self.path)
            self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def unreachable_url() -> Iterator[str]:
    # The port stays bound, and never listens, for the whole test: no other test can start a server on it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/nobody-listens"


@pytest.fixture
def hooked(home: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> Webhook:
    """The code location's settings with the webhook pointed at the loopback receiver."""
    monkeypatch.setenv(settings.ALERT_WEBHOOK_URL, webhook.url)
    return webhook


def alert_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def resource(tmp_path: Path, url: str = "") -> AlertResource:
    return AlertResource(
        alert_file=str(tmp_path / "alerts" / "alerts.jsonl"), webhook_url=url, webhook_backoff_seconds=0.01
    )


SAMPLE = Alert(
    key="run_failure:abc",
    kind="run_failure",
    severity="ERROR",
    title="Run of daily_reconciliation failed for 2026-11-10",
    text="ingest: bank file missing",
    business_date="2026-11-10",
    run_id="abc",
    step="ingest",
    error="bank file missing",
    url="http://ui/runs/abc",
)


# -- the resource --------------------------------------------------------------------------------------


def test_an_alert_goes_to_the_log_the_file_and_the_webhook_once(
    tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = resource(tmp_path, webhook.url)
    with caplog.at_level(logging.INFO, logger="batch_assets.alerts"):
        assert alerts.send(SAMPLE) is True
        assert alerts.send(SAMPLE) is False

    (line,) = alert_lines(Path(alerts.alert_file))
    fields = ("key", "kind", "severity", "business_date", "run_id", "step", "error", "url", "webhook")
    assert {k: line[k] for k in fields} == {
        "key": "run_failure:abc",
        "kind": "run_failure",
        "severity": "ERROR",
        "business_date": "2026-11-10",
        "run_id": "abc",
        "step": "ingest",
        "error": "bank file missing",
        "url": "http://ui/runs/abc",
        "webhook": "sent",
    }
    assert line["raised_at"].endswith("+00:00")
    (body,) = webhook.bodies
    assert body["text"] == "[ERROR] Run of daily_reconciliation failed for 2026-11-10\ningest: bank file missing"
    assert "<http://ui/runs/abc|Open in Dagster>" in body["blocks"][0]["text"]["text"]
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    assert "raised before" in caplog.records[1].getMessage()


def test_a_5xx_answer_is_retried_until_the_webhook_takes_the_alert(tmp_path: Path, webhook: Webhook) -> None:
    webhook.statuses = [500, 503]
    alerts = resource(tmp_path, webhook.url)
    assert alerts.send(SAMPLE)
    assert len(webhook.bodies) == 3 and webhook.bodies[0] == webhook.bodies[2]
    assert alert_lines(Path(alerts.alert_file))[0]["webhook"] == "sent"


def test_a_4xx_answer_is_not_retried_and_the_alert_is_kept(tmp_path: Path, webhook: Webhook) -> None:
    webhook.statuses = [400]
    alerts = resource(tmp_path, webhook.url)
    assert alerts.send(SAMPLE)
    assert len(webhook.bodies) == 1
    assert alert_lines(Path(alerts.alert_file))[0]["webhook"] == "failed: HTTP 400 Bad Request"


def test_an_unreachable_webhook_fails_after_retries_and_the_alert_still_lands(
    tmp_path: Path, unreachable_url: str
) -> None:
    alerts = resource(tmp_path, unreachable_url)
    assert alerts.send(SAMPLE)
    (line,) = alert_lines(Path(alerts.alert_file))
    assert line["webhook"].startswith("failed: ")
    assert "Connection refused" in line["webhook"]
    assert unreachable_url not in line["webhook"]  # a webhook URL is a secret
    assert not alerts.send(SAMPLE)


def test_a_torn_last_line_neither_hides_keys_nor_swallows_the_next_alert(tmp_path: Path) -> None:
    alerts = resource(tmp_path)
    path = Path(alerts.alert_file)
    path.parent.mkdir()
    path.write_text(json.dumps({"key": "sla:2026-11-01"}) + '\n{"key": "sla:2026-11')
    assert not alerts.send(Alert(key="sla:2026-11-01", kind="sla_breach", severity="ERROR", title="t", text="x"))
    assert alerts.send(SAMPLE)
    lines = path.read_text().splitlines()
    assert lines[1] == '{"key": "sla:2026-11'
    assert json.loads(lines[2])["key"] == SAMPLE.key


def test_the_settings_are_parsed_strictly(tmp_path: Path) -> None:
    assert AlertResource(alert_on_warn="True").warn_alerts() is True
    assert AlertResource().warn_alerts() is False
    with pytest.raises(ValueError, match="alert_on_warn"):
        AlertResource(alert_on_warn="yes please")
    with pytest.raises(ValueError, match="is not a decimal number"):
        AlertResource(exception_rate_alert="ten percent")


# -- the sensors ---------------------------------------------------------------------------------------


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorExecutionData:
    """One evaluation with the code location's resources, as the daemon's code server does it."""
    resources = defs.get_repository_def().get_top_level_resources()
    needed = {key: resources[key] for key in sensor.required_resource_keys}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=needed)
    return sensor.evaluate_tick(context)


def test_a_failed_run_alerts_once_with_its_step_error_partition_and_link(
    landing: Path, home: Path, instance: dg.DagsterInstance, hooked: Webhook
) -> None:
    started = tick(alerting.run_failure_alert, instance, None)  # a run-status sensor starts at "now"
    write_landing(landing, "ledger", FAILED_DAY, csv_text([txn("L1", "1.00", FAILED_DAY)]))
    result = run_day(instance, FAILED_DAY)
    assert not result.success

    first = tick(alerting.run_failure_alert, instance, started.cursor)
    again = tick(alerting.run_failure_alert, instance, first.cursor)
    replay = tick(alerting.run_failure_alert, instance, started.cursor)  # a tick that crashed before saving

    (alert,) = alert_lines(home / "alerts.jsonl")
    run_id = result.run_id
    assert alert["key"] == f"run_failure:{run_id}" and alert["run_id"] == run_id
    assert (alert["kind"], alert["severity"], alert["business_date"], alert["step"]) == (
        "run_failure",
        "ERROR",
        "2026-11-10",
        "ingest",
    )
    assert alert["error"].startswith("ingest: bank: no bank file for 2026-11-10 has landed in")
    assert alert["url"] == f"http://127.0.0.1:3000/runs/{run_id}"
    assert alert["webhook"] == "sent"
    (body,) = hooked.bodies
    assert "Run of daily_reconciliation failed for 2026-11-10" in body["text"]
    assert first.cursor != started.cursor and again.cursor == first.cursor
    assert "was alerted before" in replay.skip_message


def test_a_failed_run_that_will_be_retried_waits_for_its_retry(landing: Path, home: Path, tmp_path: Path) -> None:
    with dg.instance_for_test(
        temp_dir=str(tmp_path), overrides={"run_retries": {"enabled": True, "max_retries": 1}}
    ) as instance:
        started = tick(alerting.run_failure_alert, instance, None)
        write_landing(landing, "ledger", FAILED_DAY, csv_text([txn("L1", "1.00", FAILED_DAY)]))
        result = run_day(instance, FAILED_DAY)
        checked = tick(alerting.run_failure_alert, instance, started.cursor)
    assert checked.skip_message == f"run {result.run_id} failed and is retried; the retry alerts if it fails too"
    assert not (home / "alerts.jsonl").exists()


def reconcile_a_bad_pair_of_days(landing: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """D1: a ledger and a bank item share a reference but not the amount (2 exceptions of 2 candidates).
    D2: they are carried, now breaks worth 20.50 EUR (no grace); a new pair matches (2 exceptions of 4).
    The match-rate check only warns (its ERROR limit is 0); the break-value check fails with ERROR on D2."""
    for name, value in {
        settings.GRACE_DAYS: "0",
        settings.MATCH_RATE_ERROR: "0",
        settings.BREAK_VALUE_WARN: "1.00",
        settings.BREAK_VALUE_ERROR: "5.00",
    }.items():
        monkeypatch.setenv(name, value)
    write_landing(landing, "ledger", D1, csv_text([txn("L1", "10.00", D1, reference="INV-1")]))
    write_landing(landing, "bank", D1, csv_text([txn("B1", "10.50", D1, reference="INV-1")]))
    write_landing(landing, "ledger", D2, csv_text([txn("L2", "5.00", D2, reference="INV-2")]))
    write_landing(landing, "bank", D2, csv_text([txn("B2", "5.00", D2, reference="INV-2")]))
    for day in (D1, D2):
        assert run_day(instance, day).success


def test_failed_checks_alert_by_severity_once_each(
    landing: Path, home: Path, instance: dg.DagsterInstance, hooked: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile_a_bad_pair_of_days(landing, instance, monkeypatch)
    first = tick(alerting.check_failure_alert, instance, None)
    again = tick(alerting.check_failure_alert, instance, first.cursor)
    replay = tick(alerting.check_failure_alert, instance, None)

    (alert,) = alert_lines(home / "alerts.jsonl")  # failed WARN checks are not alerted by default
    assert alert["key"] == f"check:recon/summary:break_value:{D2}:{alert['run_id']}"
    assert (alert["kind"], alert["severity"], alert["business_date"], alert["step"]) == (
        "check_failure",
        "ERROR",
        str(D2),
        "summary_checks",  # the step of the summary's checks
    )
    assert alert["details"]["metadata"] == {
        "break_value_EUR": "20.50",
        "value": "20.50",
        "warn_limit": "1.00",
        "error_limit": "5.00",
        "direction": "above is worse",
    }
    assert alert["url"].endswith(f"/runs/{alert['run_id']}")
    assert len(hooked.bodies) == 1
    assert again.cursor == first.cursor and again.skip_message.startswith("nothing to alert: 0 new ended runs")
    assert replay.skip_message.startswith("nothing to alert") and replay.cursor == first.cursor

    # With WARN alerts on, a backlog read one ended run a tick raises the two match-rate warnings, once.
    monkeypatch.setenv(settings.ALERT_ON_WARN, "true")
    monkeypatch.setattr(alerting, "EVENTS_PER_TICK", 1)
    cursor, ticks = None, 0
    while (result := tick(alerting.check_failure_alert, instance, cursor)).cursor != cursor:
        cursor, ticks = result.cursor, ticks + 1
    assert cursor == first.cursor and ticks == 2  # the runs of D1 and D2
    raised = sorted(
        (a["details"]["check"], a["severity"], a["business_date"]) for a in alert_lines(home / "alerts.jsonl")
    )
    assert raised == [
        ("break_value", "ERROR", str(D2)),
        ("match_rate", "WARN", str(D1)),
        ("match_rate", "WARN", str(D2)),
    ]
    assert len(hooked.bodies) == 3


@dg.asset
def bank_total() -> int:
    return 1


@dg.asset_check(asset=bank_total)
def bank_total_balances() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description="off by one")


@dg.asset(deps=[bank_total])
def bank_report() -> None:
    raise dg.Failure("the report failed after the check")


def test_failed_checks_of_failed_runs_alert_too_and_runs_are_read_in_the_order_they_ended(
    home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = [bank_total, bank_total_balances]
    runs = [
        dg.materialize(checked, instance=instance),
        dg.materialize([*checked, bank_report], instance=instance, raise_on_error=False),
        dg.materialize(checked, instance=instance),
    ]
    assert [run.success for run in runs] == [True, False, True]

    # One ended run a tick: a success, a failure and a success again, none skipped, none alerted twice.
    monkeypatch.setattr(alerting, "EVENTS_PER_TICK", 1)
    cursor, alerted = None, []
    while (result := tick(alerting.check_failure_alert, instance, cursor)).cursor != cursor:
        cursor = result.cursor
        alerted.append([alert["run_id"] for alert in alert_lines(home / "alerts.jsonl")])
    ids = [run.run_id for run in runs]
    assert alerted == [ids[:1], ids[:2], ids]
    assert {alert["key"] for alert in alert_lines(home / "alerts.jsonl")} == {
        f"check:bank_total:bank_total_balances::{run_id}" for run_id in ids
    }


def test_a_bad_day_alerts_its_exception_rate_and_break_value(
    landing: Path, home: Path, instance: dg.DagsterInstance, hooked: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile_a_bad_pair_of_days(landing, instance, monkeypatch)
    monkeypatch.setenv(settings.EXCEPTION_RATE_ALERT, "0.75")  # D1 is at 100%, D2 at 50%
    first = tick(alerting.reconciliation_alert, instance, None)
    again = tick(alerting.reconciliation_alert, instance, first.cursor)
    replay = tick(alerting.reconciliation_alert, instance, None)

    rate, value = alert_lines(home / "alerts.jsonl")
    assert rate["key"] == f"exception_rate:{D1}:{rate['run_id']}"
    assert (rate["kind"], rate["severity"], rate["business_date"]) == ("exception_rate", "WARN", str(D1))
    assert rate["details"] == {"exceptions": 2, "candidates": 2, "rate": "1.000000"}
    assert value["key"] == f"break_value:{D2}:EUR:{value['run_id']}"
    assert (value["kind"], value["severity"], value["business_date"]) == ("break_value", "ERROR", str(D2))
    assert value["details"] == {"currency": "EUR", "break_value": "20.50", "limit": "5.00"}
    assert [b["text"].splitlines()[0] for b in hooked.bodies] == [
        f"[WARN] {D1}: exception rate 100.00% is above 75.00%",
        f"[ERROR] {D2}: break value 20.50 EUR is above 5.00",
    ]
    summaries = instance.fetch_materializations(alerting.SUMMARY_KEY, limit=10).records
    assert first.cursor == str(max(r.storage_id for r in summaries))
    assert again.cursor == first.cursor and "0 new recon/summary materializations" in again.skip_message
    assert "2 new recon/summary materializations" in replay.skip_message and len(hooked.bodies) == 2


def due_day(monkeypatch: pytest.MonkeyPatch, deadline: str) -> date:
    monkeypatch.setenv(settings.SLA_DEADLINE, deadline)
    return CalendarResource(timezone="UTC", sla_deadline=deadline).previous_business_day()


def test_a_missed_sla_alerts_once_for_the_day(
    home: Path, instance: dg.DagsterInstance, hooked: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = due_day(monkeypatch, "00:00")  # always passed
    first = tick(alerting.sla_breach_alert, instance, None)
    again = tick(alerting.sla_breach_alert, instance, first.cursor)
    replay = tick(alerting.sla_breach_alert, instance, None)

    (alert,) = alert_lines(home / "alerts.jsonl")
    assert (alert["key"], alert["kind"], alert["severity"], alert["business_date"]) == (
        f"sla:{day}",
        "sla_breach",
        "ERROR",
        str(day),
    )
    assert alert["title"] == f"{day} is not reconciled: SLA 00:00 UTC missed"
    assert first.cursor == str(day) and again.skip_message == f"the SLA breach of {day} was alerted"
    assert replay.cursor == str(day) and len(hooked.bodies) == 1


def test_a_reconciled_day_raises_no_sla_alert(
    landing: Path, home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = due_day(monkeypatch, "00:00")
    deliver_good_day(landing, day)
    result = run_day(instance, day)
    assert result.success
    checked = tick(alerting.sla_breach_alert, instance, None)
    assert checked.skip_message == f"{day} was reconciled: recon/summary materialized in run {result.run_id}"
    assert checked.cursor is None and not (home / "alerts.jsonl").exists()


def test_before_the_deadline_nothing_is_due(
    home: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = due_day(monkeypatch, "23:59:59.999999")
    checked = tick(alerting.sla_breach_alert, instance, None)
    assert f"{day} is due by 23:59:59.999999" in checked.skip_message
    assert not (home / "alerts.jsonl").exists()


ALERT_SENSOR_NAMES = {"run_failure_alert", "check_failure_alert", "sla_breach_alert", "reconciliation_alert"}


def test_alerting_is_on_by_default_and_configured_from_the_environment() -> None:
    assert {s.name for s in defs.sensors} >= ALERT_SENSOR_NAMES
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors if s.name in ALERT_SENSOR_NAMES)
    resource = defs.resources["alerts"]
    assert resource.variables() == {
        "alert_file": settings.ALERT_FILE,
        "webhook_url": settings.ALERT_WEBHOOK_URL,
        "alert_on_warn": settings.ALERT_ON_WARN,
        "exception_rate_alert": settings.EXCEPTION_RATE_ALERT,
        "ui_url": settings.UI_URL,
    }
    assert resource.path == settings.data_home() / "alerts.jsonl"


# -- late files ----------------------------------------------------------------------------------------

LATE_DAYS = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]


def late_file_alerts(home: Path) -> list[dict]:
    return [a for a in alert_lines(home / "alerts.jsonl") if a["kind"] == "late_file"]


def reconcile_late_days(landing: Path, instance: dg.DagsterInstance) -> tuple[str | None, list[dg.RunRequest]]:
    """Deliver and reconcile LATE_DAYS the way the sensor would; the sensor's cursor and requests."""
    for day in LATE_DAYS:
        deliver(landing, day)
    requests, cursor, _ = landing_tick(instance)
    assert [r.partition_key for r in requests] == [d.isoformat() for d in LATE_DAYS]
    for day in LATE_DAYS:
        assert run_day(instance, day).success
    return cursor, requests


def test_a_late_file_for_a_reconciled_day_alerts_once_per_change_with_its_files_and_the_stale_days(
    landing: Path, home: Path, instance: dg.DagsterInstance, hooked: Webhook
) -> None:
    first, second, third = (d.isoformat() for d in LATE_DAYS)
    cursor, _ = reconcile_late_days(landing, instance)
    assert late_file_alerts(home) == []  # a first delivery is not late

    ledger = write_landing(landing, "ledger", LATE_DAYS[0], csv_text([txn("L-late", "12.00", LATE_DAYS[0])]))
    extra = write_landing(landing, "bank", LATE_DAYS[0], csv_text([txn("B-late", "3.00", LATE_DAYS[0])]), part="02")
    for path in (ledger, extra):
        age(path)
    requests, after, _ = landing_tick(instance, cursor)
    assert [r.partition_key for r in requests] == [first, second, third]

    (alert,) = late_file_alerts(home)
    assert (alert["severity"], alert["business_date"]) == ("WARN", first)
    # Keyed by the change the run key names: the new content and the ingest it follows.
    assert alert["key"] == f"late_file:{requests[0].run_key.removeprefix('files:')}"
    assert requests[0].run_key.startswith(f"files:{first}:{requests[0].tags['batch_assets/content_key']}:after:")
    assert alert["details"]["files"] == [f"bank/bank_{first}_02.csv", f"ledger/ledger_{first}.csv"]
    assert alert["details"]["rerun_days"] == [first, second, third]
    assert (
        f"bank/bank_{first}_02.csv (new), ledger/ledger_{first}.csv (changed) landed after {first} was reconciled"
        in alert["text"]
    )
    assert f"{second}, {third}, carried its open items: they are stale" in alert["text"]
    assert alert["webhook"] == "sent" and "Late file(s) for 2026-11-02" in hooked.bodies[-1]["text"]

    # The next tick has seen the change; a tick replayed from the old cursor asks again but alerts nothing new.
    again, _, skip = landing_tick(instance, after)
    replay, _, _ = landing_tick(instance, cursor)
    assert again == [] and "no new or changed files" in skip
    assert [r.run_key for r in replay] == [r.run_key for r in requests]
    assert len(late_file_alerts(home)) == 1 and len(hooked.bodies) == 1

    # Another change is another alert: here of the middle day, whose only later day is the third.
    write_landing(landing, "ledger", LATE_DAYS[1], csv_text([txn("L-mid", "7.00", LATE_DAYS[1])]), part="02")
    age(landing / "ledger" / f"ledger_{second}_02.csv")
    landing_tick(instance, after)
    assert [(a["business_date"], a["details"]["rerun_days"]) for a in late_file_alerts(home)] == [
        (first, [first, second, third]),
        (second, [second, third]),
    ]


def test_files_renamed_or_touched_after_reconciliation_raise_no_late_file_alert(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    cursor, _ = reconcile_late_days(landing, instance)
    day = LATE_DAYS[1].isoformat()
    ledger = landing / "ledger" / f"ledger_{day}.csv"
    renamed = ledger.rename(ledger.with_name(f"ledger_{day}_resent.csv"))
    age(renamed, 1800)
    bank = landing / "bank" / f"bank_{day}.csv"
    age(bank, 1200)  # touched: a new mtime, the same bytes
    requests, _, skip = landing_tick(instance, cursor)
    # The sensor looks at the day again; the warehouse already holds its bytes, so nothing is run again.
    assert requests == [] and f"the warehouse already holds the files of {day}" in skip
    assert late_file_alerts(home) == []


def test_a_rejected_resolution_alerts_once_with_its_day_and_a_next_step(
    landing: Path, home: Path, instance: dg.DagsterInstance
) -> None:
    deliver_good_day(landing, D1)
    columns = ("resolution_id", "action", "source", "txn_id", "write_off_amount", "reason_code", "comment",
               "resolved_by", "resolved_at")  # fmt: skip
    unknown = {"resolution_id": "R1", "action": "write_off", "source": "ledger", "txn_id": "NOBODY",
               "reason_code": "X", "resolved_by": "ana", "resolved_at": "2026-11-03T09:00:00Z"}  # fmt: skip
    write_landing(landing, "resolutions", D1, csv_text([unknown], columns))
    assert run_day(instance, D1).success  # a rejected resolution holds no day back
    first = tick(alerting.check_failure_alert, instance, None)
    tick(alerting.check_failure_alert, instance, first.cursor)

    (alert,) = [a for a in alert_lines(home / "alerts.jsonl") if a["details"]["check"] == "resolutions_applied"]
    assert alert["key"] == f"check:ops/resolution_log:resolutions_applied:{D1}:{alert['run_id']}"
    assert (alert["severity"], alert["business_date"]) == ("ERROR", str(D1))
    metadata = alert["details"]["metadata"]
    assert (metadata["rejected_resolutions"], metadata["rejected_files"]) == (1, 0)
    assert "new resolutions file" in metadata["next_step"] and "new resolutions file" in alert["text"]
