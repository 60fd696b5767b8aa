"""Helpers for tests: writing landing files and contract rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from batch_assets.transforms.contract import CONTRACT_COLUMNS


def csv_text(rows: Sequence[dict[str, str]], columns: Sequence[str] = CONTRACT_COLUMNS) -> str:
    """A CSV file's text: a header of `columns`, then one line per row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_landing(
    landing: Path, source: str, day: date, content: str | bytes, part: str | None = None, ext: str = "csv"
) -> Path:
    """Deliver one file to the landing zone under its contract name."""
    suffix = f"_{part}" if part else ""
    path = landing / source / f"{source}_{day.isoformat()}{suffix}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def txn(
    txn_id: str,
    amount: str,
    day: date,
    *,
    account: str = "ACC1",
    currency: str = "EUR",
    reference: str = "",
    **extra: str,
) -> dict[str, str]:
    """One contract row."""
    return {
        "txn_id": txn_id,
        "account_id": account,
        "booking_date": day.isoformat(),
        "value_date": "",
        "amount": amount,
        "currency": currency,
        "reference": reference,
        "counterparty": "",
        "description": "",
        **extra,
    }
