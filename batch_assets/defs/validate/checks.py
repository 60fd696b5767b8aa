"""Checks of the validate stage: rows conserved per file, txn_ids staged once, and the quarantine rate."""

from decimal import Decimal

import dagster as dg

from batch_assets.day_checks import CheckDay, DayCheck, checks_step
from batch_assets.stage import threshold_result
from batch_assets.storage import qualified
from batch_assets.transforms.contract import SOURCES

QUARANTINE = "staging.quarantine"


def _rows_conserved(source: str):
    staging = f"staging.{source}"

    def judge(c: CheckDay) -> dg.AssetCheckResult:
        # Counted by the commits that wrote the three partitions: the landed files, and the validate stage's own
        # transaction, in the pass that fingerprinted its rows.
        figures = c.wh.partition_figures([f"raw.{source}", staging, QUARANTINE], c.day)
        raw = figures[f"raw.{source}"].get("rows_by_file", {})
        staged = figures[staging].get("rows_by_file", {})
        quarantined = {
            name: n for name, n in figures[QUARANTINE].get("rows_by_file", {}).items() if name.startswith(f"{source}/")
        }
        per_file = [
            {
                "file_name": name,
                "raw": raw.get(name, 0),
                "staged": staged.get(name, 0),
                "quarantined": quarantined.get(name, 0),
            }
            for name in sorted({*raw, *staged, *quarantined})
        ]
        broken = [f for f in per_file if f["raw"] != f["staged"] + f["quarantined"]]
        return dg.AssetCheckResult(
            passed=not broken,
            metadata={
                "files": len(per_file),
                "raw_rows": sum(raw.values()),
                "staged_rows": sum(staged.values()),
                "quarantined_rows": sum(quarantined.values()),
                "unbalanced_files": dg.MetadataValue.json(broken),
            },
        )

    return DayCheck(
        staging,
        "rows_conserved",
        f"Invariant 1: for every {source} file of the day, raw rows = staged rows + quarantined rows.",
        judge,
        blocking=True,
    )


def _txn_id_unique(source: str):
    staging = f"staging.{source}"

    def judge(c: CheckDay) -> dg.AssetCheckResult:
        today = c.wh.partition_figures([staging], c.day)[staging]
        rows = today.get("rows", 0)
        within = rows - today.get("distinct_txn_ids", 0)
        (earlier,) = c.wh.query(
            f"""
            SELECT count(*) AS n FROM {qualified(staging)} other
            WHERE other.business_date < $day
              AND other.txn_id IN (SELECT txn_id FROM {qualified(staging)} WHERE business_date = $day)
            """,  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
            {"day": c.day},
        ).row(0)
        return dg.AssetCheckResult(
            passed=within == 0 and earlier == 0,
            metadata={"rows": rows, "repeated_within_day": within, "also_staged_on_earlier_days": earlier},
        )

    return DayCheck(
        staging,
        "txn_id_unique",
        f"Invariant 3: each {source} txn_id of the day is staged once, and on no earlier day: the first "
        "occurrence in business-date order wins, so a later day's copy is that day's duplicate, found when it is "
        "re-run.",
        judge,
        blocking=True,
    )


def _quarantine_rate(c: CheckDay) -> dg.AssetCheckResult:
    raw_tables = [f"raw.{source}" for source in SOURCES]
    figures = c.wh.partition_figures([*raw_tables, QUARANTINE], c.day)
    by_source = figures[QUARANTINE].get("rows_by_source", {})
    counts = [(source, figures[f"raw.{source}"].get("rows", 0), by_source.get(source, 0)) for source in SOURCES]
    rates = {
        source: (Decimal(quarantined) / Decimal(raw) if raw else Decimal(0)) for source, raw, quarantined in counts
    }
    return threshold_result(
        max(rates.values(), default=Decimal(0)),
        c.thresholds.value("quarantine_rate_warn"),
        c.thresholds.value("quarantine_rate_error"),
        higher_is_worse=True,
        metadata={
            **{f"rate_{source}": float(round(rate, 6)) for source, rate in rates.items()},
            **{f"quarantined_{s}": q for s, _, q in counts},
            **{f"raw_{s}": r for s, r, _ in counts},
        },
    )


validate_checks = checks_step(
    "validate_checks",
    [
        *[_rows_conserved(source) for source in SOURCES],
        *[_txn_id_unique(source) for source in SOURCES],
        DayCheck(
            QUARANTINE,
            "quarantine_rate",
            "Quarantined / raw rows per source, against the WARN and ERROR thresholds "
            "(BATCH_ASSETS_QUARANTINE_RATE_WARN / _ERROR). An ERROR blocks matching.",
            _quarantine_rate,
            blocking=True,
        ),
    ],
)
