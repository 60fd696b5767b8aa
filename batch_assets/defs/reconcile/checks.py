"""Checks of the reconciliation: items conserved, matched once, matches balance, and the summary's thresholds."""

from datetime import timedelta
from decimal import Decimal

import dagster as dg

from batch_assets.day_checks import CheckDay, DayCheck, checks_step
from batch_assets.stage import threshold_result
from batch_assets.storage import Warehouse
from batch_assets.transforms.contract import SOURCES
from batch_assets.transforms.summary import ALL

RESOLVED = "recon.resolved_items"


def _items_conserved(c: CheckDay) -> dg.AssetCheckResult:
    # Every figure comes from the commits that wrote the partitions (the stage's own transaction).
    tables = [*(f"staging.{source}" for source in SOURCES), "recon.matches", "recon.open_items", RESOLVED]
    today = c.wh.partition_figures(tables, c.day)
    yesterday = c.wh.partition_figures(["recon.open_items"], c.day - timedelta(days=1))
    open_today, matches, resolved = today["recon.open_items"], today["recon.matches"], today[RESOLVED]
    sides = {
        source: {
            "staged": today[f"staging.{source}"].get("rows", 0),
            "carried_in": yesterday["recon.open_items"].get("carried_by_source", {}).get(source, 0),
            "revived": resolved.get("revived_by_source", {}).get(source, 0),
            "matched": matches.get(f"distinct_{source}_txn_ids", 0),
            "written_off": resolved.get("written_off_by_source", {}).get(source, 0),
            "carried_out": open_today.get("carried_by_source", {}).get(source, 0),
            "expired": open_today.get("expired_by_source", {}).get(source, 0),
        }
        for source in SOURCES
    }
    balanced = all(
        v["staged"] + v["carried_in"] + v["revived"]
        == v["matched"] + v["written_off"] + v["carried_out"] + v["expired"]
        for v in sides.values()
    )
    return dg.AssetCheckResult(
        passed=balanced,
        metadata={f"{source}_{name}": n for source, values in sides.items() for name, n in values.items()},
    )


def _matched_once(c: CheckDay) -> dg.AssetCheckResult:
    today = c.wh.partition_figures(["recon.matches"], c.day)["recon.matches"]
    (earlier,) = c.wh.query(
        """
        WITH today AS (SELECT ledger_txn_id, bank_txn_id FROM recon.matches WHERE business_date = $day),
        undone AS (SELECT resolution_id FROM ops.resolution_log WHERE status = 'reversed' AND business_date <= $day)
        SELECT count(*) FROM recon.matches m WHERE m.business_date < $day
          AND (m.ledger_txn_id IN (SELECT ledger_txn_id FROM today)
               OR m.bank_txn_id IN (SELECT bank_txn_id FROM today))
          AND (m.resolution_id IS NULL OR m.resolution_id NOT IN (SELECT resolution_id FROM undone))
        """,
        {"day": c.day},
    ).row(0)
    counts = {
        "ledger_repeated": today.get("ledger_rows", today.get("rows", 0)) - today.get("distinct_ledger_txn_ids", 0),
        # (bank item, match) pairs beyond one per bank item: zero unless a bank item is in several matches.
        "bank_in_several_matches": today.get("bank_match_pairs", 0) - today.get("distinct_bank_txn_ids", 0),
        "matched_on_earlier_days": earlier,
        "match_rows": today.get("rows", 0),
    }
    passed = counts["ledger_repeated"] == counts["bank_in_several_matches"] == counts["matched_on_earlier_days"] == 0
    return dg.AssetCheckResult(passed=passed, metadata=counts)


def _matches_balance(c: CheckDay) -> dg.AssetCheckResult:
    result = c.wh.query(
        """
        WITH per_match AS (
          SELECT match_id, bool_or(resolution_id IS NOT NULL) AS manual, sum(ledger_amount) AS ledger_total,
                 min(bank_amount) AS bank_min, max(bank_amount) AS bank_max, sum(bank_amount) AS bank_sum,
                 coalesce(max(write_off_amount), 0) AS written_off
          FROM recon.matches WHERE business_date = $day GROUP BY match_id),
        totals AS (
          SELECT *, CASE WHEN manual THEN bank_sum ELSE bank_max END AS bank_total FROM per_match)
        SELECT count(*) AS matches,
               count(*) FILTER (manual AND coalesce(ledger_total, 0) - coalesce(bank_total, 0) <> written_off
                                OR NOT manual AND (ledger_total <> bank_max OR bank_min <> bank_max)) AS unbalanced,
               CAST(coalesce(sum(ledger_total), 0) AS VARCHAR) AS ledger_total,
               CAST(coalesce(sum(bank_total), 0) AS VARCHAR) AS bank_total,
               CAST(coalesce(sum(written_off), 0) AS VARCHAR) AS written_off
        FROM totals
        """,
        {"day": c.day},
    ).row(0, named=True)
    return dg.AssetCheckResult(passed=result["unbalanced"] == 0, metadata=result)


NEXT_STEP = (
    "ops.resolution_log and ops.file_log give each rejection's reason: correct it in a new resolutions file (with a "
    "new resolution_id), or run `batch-assets breaks` for the current breaks."
)


def _resolutions_applied(c: CheckDay) -> dg.AssetCheckResult:
    (rejected, rejected_files) = c.wh.query(
        """
        SELECT (SELECT count(*) FROM ops.resolution_log WHERE business_date = $day AND status = 'rejected'),
               (SELECT count(*) FROM ops.file_log WHERE business_date = $day AND source = 'resolutions'
                AND status = 'rejected')
        """,
        {"day": c.day},
    ).row(0)
    return dg.AssetCheckResult(
        passed=rejected == rejected_files == 0,
        # An error, so that it alerts whatever BATCH_ASSETS_ALERT_ON_WARN says, as a rejected file does; the
        # check does not block, so the day still reconciles with the resolutions that were applied.
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_resolutions": rejected,
            "rejected_files": rejected_files,
            **({"next_step": NEXT_STEP} if rejected or rejected_files else {}),
        },
    )


def _summary_row(wh: Warehouse, day, where: str) -> list[dict]:
    return wh.query(
        f"SELECT * FROM recon.summary WHERE business_date = $day AND account_id = $all AND {where}",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        {"day": day, "all": ALL},
    ).to_dicts()


def _match_rate(c: CheckDay) -> dg.AssetCheckResult:
    (total,) = _summary_row(c.wh, c.day, "currency = $all")
    return threshold_result(
        Decimal(str(round(total["match_rate"], 6))),
        c.thresholds.value("match_rate_warn"),
        c.thresholds.value("match_rate_error"),
        higher_is_worse=False,
        metadata={k: total[k] for k in ("ledger_items", "bank_items", "matched_ledger", "matched_bank")},
    )


def _break_value(c: CheckDay) -> dg.AssetCheckResult:
    rows = _summary_row(c.wh, c.day, "currency <> $all")
    values = {r["currency"]: r["break_value_ledger"] + r["break_value_bank"] for r in rows}
    return threshold_result(
        max(values.values(), default=Decimal("0.00")),
        c.thresholds.value("break_value_warn"),
        c.thresholds.value("break_value_error"),
        higher_is_worse=True,
        metadata={f"break_value_{currency}": str(value) for currency, value in sorted(values.items())},
    )


def _amount_mismatches(c: CheckDay) -> dg.AssetCheckResult:
    (total,) = _summary_row(c.wh, c.day, "currency = $all")
    return threshold_result(
        Decimal(total["amount_mismatches"]),
        c.thresholds.value("amount_mismatch_warn"),
        c.thresholds.value("amount_mismatch_error"),
        higher_is_worse=True,
        metadata={"amount_mismatches": total["amount_mismatches"]},
    )


match_checks = checks_step(
    "match_checks",
    [
        DayCheck(
            "recon.open_items",
            "items_conserved",
            "Invariant 2, per side: candidates (staged today + carried from yesterday + revived by resolutions) = "
            "matched today (manual included) + written off + carried into tomorrow + expired today.",
            _items_conserved,
            blocking=True,
        ),
        DayCheck(
            "recon.matches",
            "matched_once",
            "Invariant 3: no item is in two matches — each ledger item in one match row, each bank item in one "
            "match, and none matched on an earlier day (a later day that still has it is stale until re-run "
            "forward).",
            _matched_once,
            blocking=True,
        ),
        DayCheck(
            "recon.matches",
            "matches_balance",
            "Invariant 4: in every match the ledger amounts add up to the bank amount, to the cent; in a manual "
            "match, up to the difference its resolution wrote off.",
            _matches_balance,
            blocking=True,
        ),
        DayCheck(
            "ops.resolution_log",
            "resolutions_applied",
            "Every resolution of the day, and every resolutions file, was applied: a rejected one fails the check "
            "(and alerts) with its reason in ops.resolution_log or ops.file_log; the day still reconciles.",
            _resolutions_applied,
        ),
    ],
)

summary_checks = checks_step(
    "summary_checks",
    [
        DayCheck(
            "recon.summary",
            "match_rate",
            "Match rate (matched / candidate items) of the day, against BATCH_ASSETS_MATCH_RATE_WARN / _ERROR.",
            _match_rate,
        ),
        DayCheck(
            "recon.summary",
            "break_value",
            "Break value (absolute amounts of breaks) of the worst currency, against BATCH_ASSETS_BREAK_VALUE_WARN "
            "/ _ERROR.",
            _break_value,
        ),
        DayCheck(
            "recon.summary",
            "amount_mismatches",
            "Count of amount mismatches of the day, against BATCH_ASSETS_AMOUNT_MISMATCH_WARN / _ERROR.",
            _amount_mismatches,
        ),
    ],
)
