"""Alerts: what one alert says, and the resource that raises each alert once (log, JSONL file, webhook)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import field_validator

from batch_assets import settings
from batch_assets.settings import Settings, decimal_text, setting, under_home

SLACK_BLOCK_LIMIT = 3000  # Slack rejects a section block with longer text
_LOG = logging.getLogger("batch_assets.alerts")


@dataclass(frozen=True)
class Alert:
    """One alert. `key` names the event: an alert whose key is already in the alert file is not raised again."""

    key: str
    kind: str  # run_failure, check_failure, sla_breach, exception_rate, break_value or late_file
    severity: str  # ERROR or WARN
    title: str
    text: str
    business_date: str | None = None
    run_id: str | None = None
    step: str | None = None
    error: str | None = None
    url: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value not in (None, {})}


class AlertResource(Settings):
    """Where alerts go: the log, a JSONL file (the record of every alert, and what de-duplicates them) and an
    optional Slack-compatible incoming webhook."""

    alert_file: str = setting("alerts.jsonl", settings.ALERT_FILE, "JSONL file every alert is appended to", kind="path")
    webhook_url: str = setting(
        "",
        settings.ALERT_WEBHOOK_URL,
        "Slack-compatible incoming-webhook URL alerts are POSTed to; empty for none",
        kind="URL",
        secret=True,  # a Slack webhook URL is a credential
        pattern=r"^(https?://\S+)?$",
    )
    alert_on_warn: bool = setting(
        False, settings.ALERT_ON_WARN, "true to alert on failed WARN-severity checks too, not only ERROR ones"
    )
    exception_rate_alert: str = setting(
        "0.10",
        settings.EXCEPTION_RATE_ALERT,
        "exceptions / candidate items of a day above which an alert is raised",
        kind="decimal",
    )
    ui_url: str = setting(
        "http://127.0.0.1:3000", settings.UI_URL, "the Dagster UI's address, for links in alerts", kind="URL"
    )
    webhook_timeout_seconds: float = 10.0
    webhook_attempts: int = 4
    webhook_backoff_seconds: float = 1.0

    @field_validator("exception_rate_alert")
    @classmethod
    def _is_decimal(cls, value: str) -> str:
        return decimal_text("exception_rate_alert", value)

    @property
    def path(self) -> Path:
        return under_home(self.alert_file)

    def warn_alerts(self) -> bool:
        """Whether failed WARN-severity checks alert too."""
        return self.alert_on_warn

    def exception_rate_limit(self) -> Decimal:
        return Decimal(self.exception_rate_alert)

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"

    def send(self, alert: Alert, log: Any = None) -> bool:
        """Raise `alert` unless its key is already in the alert file. True if it was raised.

        The record is written even when the webhook fails, with the webhook's outcome in it."""
        log = log or _LOG
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as file:
            # Held from the key lookup to the append, so two sensor ticks cannot both raise one event.
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            existing = file.read()
            if alert.key in _keys(existing):
                log.info(f"alert {alert.key} was raised before; not raising it again")
                return False
            record = {**alert.record(), "raised_at": datetime.now(UTC).isoformat(timespec="seconds")}
            (log.error if alert.severity == "ERROR" else log.warning)(f"ALERT {alert.title}: {alert.text}")
            record["webhook"] = self._post(record, log) if self.webhook_url else "none"
            if existing and not existing.endswith("\n"):
                file.write("\n")  # a line torn by a crash must not swallow this record
            file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())
        return True

    def _post(self, record: Mapping[str, Any], log: Any) -> str:
        """POST the alert to the webhook, retrying connection errors and 5xx; the outcome, never an exception.
        Messages leave out the URL: a Slack webhook URL is a secret."""
        # The HTTP client only where an alert is posted: every process that loads the definitions imports this
        # module, and most never send an alert.
        import http.client
        import urllib.error
        import urllib.request

        request = None
        if not self.webhook_url.startswith(("http://", "https://")):
            outcome = "the webhook URL is not an http(s) URL"
        else:
            try:
                request = urllib.request.Request(
                    self.webhook_url,
                    data=json.dumps(slack_message(record)).encode(),
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
            except ValueError as error:  # e.g. an unclosed IPv6 bracket; raising here would lose the alert
                outcome = f"the webhook URL is malformed ({error})"
        if request is not None:
            for attempt in range(max(self.webhook_attempts, 1)):
                if attempt:
                    delay = self.webhook_backoff_seconds * 2 ** (attempt - 1)
                    time.sleep(delay + random.uniform(0, delay))
                try:
                    with urllib.request.urlopen(request, timeout=self.webhook_timeout_seconds) as response:
                        response.read()
                    return "sent"
                except urllib.error.HTTPError as error:
                    outcome = f"HTTP {error.code} {error.reason}"
                    if error.code < 500 and error.code != 429:
                        break  # the receiver refused this message; sending it again gets the same answer
                except (OSError, http.client.HTTPException) as error:
                    outcome = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
                except Exception as error:  # a webhook must never cost the alert or the sensor tick
                    outcome = f"{type(error).__name__}: {error}"
                    break
        # urllib quotes a malformed URL's path or port in its message, and the path is the secret.
        outcome = redact_url(outcome, self.webhook_url)
        log.error(f"webhook for alert {record['key']} failed ({outcome}); the alert is in {self.alert_file}")
        return f"failed: {outcome}"


def redact_url(text: str, url: str) -> str:
    """`text` with every piece of `url` but its scheme and host replaced by `***`: the user, password, port,
    path and query of a webhook URL may each hold its secret, and the host is what an operator needs to see."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        kept = {parts.scheme, parts.hostname or ""}
    except ValueError:
        kept = set()
    pieces = {url, url.strip(), *re.split(r"[/?&=#:@\s]+", url)} - kept
    for piece in sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _keys(text: str) -> set[str]:
    keys = set()
    for line in text.splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line
    return keys


def slack_message(record: Mapping[str, Any]) -> dict[str, Any]:
    """An incoming-webhook message: `text` for notifications and plain receivers, blocks for Slack."""
    body = f"*{record['title']}*\n{record['text']}"
    if record.get("url"):
        body += f"\n<{record['url']}|Open in Dagster>"
    return {
        "text": f"[{record['severity']}] {record['title']}\n{record['text']}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:SLACK_BLOCK_LIMIT]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{record['kind']} · `{record['key']}`"}]},
        ],
    }


def error_text(event: dg.DagsterEvent) -> str:
    """What the step said when it raised dg.Failure, else the exception's message."""
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    if data.error is None:
        return "no error recorded"
    # After the last retry Dagster's own message is only "Exceeded max_retries of 4"; what went wrong (the
    # lock holder's PID, what to do) is in the chain of causes.
    messages, error = [], data.error
    while error is not None:
        message = error.message.strip()
        if message and not message.startswith("Error occurred while executing"):
            messages.append(message)
        error = error.cause
    return "\ncaused by: ".join(messages) or data.error.message.strip()
