"""Asset checks: the contract's invariants and thresholds, verified against what the warehouse committed."""

import warnings
from decimal import Decimal

import dagster as dg

from batch_assets.assets.common import table_key
from batch_assets.partitions import DAILY, WAREHOUSE_POOL, business_date
from batch_assets.resources import ThresholdsResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.storage import quote_ident, qualified
from batch_assets.transforms.contract import SOURCES
from batch_assets.transforms.summary import ALL

# Partitioned checks are how each day's check result lands on that day's partition in the UI; the
# feature is marked preview in dagster 1.13 and warns once per check at import, which says nothing
# a user can act on.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


def _rows_conserved_check(source: str) -> dg.AssetChecksDefinition:
    staging = f"staging.{source}"

    @dg.asset_check(
        asset=table_key(staging),
        name="rows_conserved",
        description=f"Invariant 1: for every {source} file of the day, raw rows = staged rows + quarantined rows.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def rows_conserved(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        per_file = warehouse.open(context.log).query(
            f"""
            WITH raw AS (SELECT file_name, count(*) AS n FROM {qualified(f"raw.{source}")}
                         WHERE business_date = $day GROUP BY file_name),
                 staged AS (SELECT file_name, count(*) AS n FROM {qualified(staging)}
                            WHERE business_date = $day GROUP BY file_name),
                 quarantined AS (SELECT file_name, count(*) AS n FROM {qualified("staging.quarantine")}
                                 WHERE business_date = $day AND source = $source GROUP BY file_name)
            SELECT coalesce(raw.file_name, staged.file_name, quarantined.file_name) AS file_name,
                   coalesce(raw.n, 0) AS raw, coalesce(staged.n, 0) AS staged,
                   coalesce(quarantined.n, 0) AS quarantined
            FROM raw FULL JOIN staged USING (file_name) FULL JOIN quarantined USING (file_name)
            ORDER BY file_name
            """,
            {"day": day, "source": source},
        )
        broken = per_file.filter(per_file["raw"] != per_file["staged"] + per_file["quarantined"])
        return dg.AssetCheckResult(
            passed=broken.is_empty(),
            metadata={
                "files": per_file.height,
                "raw_rows": int(per_file["raw"].sum()),
                "staged_rows": int(per_file["staged"].sum()),
                "quarantined_rows": int(per_file["quarantined"].sum()),
                "unbalanced_files": dg.MetadataValue.json(broken.to_dicts()),
            },
        )

    return rows_conserved


def _txn_id_unique_check(source: str) -> dg.AssetChecksDefinition:
    staging = f"staging.{source}"

    @dg.asset_check(
        asset=table_key(staging),
        name="txn_id_unique",
        description=f"Invariant 3: each {source} txn_id of the day is staged once, on no other day either.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def txn_id_unique(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        table = qualified(staging)
        (within, across, rows) = warehouse.open(context.log).query(
            f"""
            WITH today AS (SELECT txn_id FROM {table} WHERE business_date = $day)
            SELECT (SELECT count(*) - count(DISTINCT txn_id) FROM today) AS within_day,
                   (SELECT count(*) FROM {table} other
                    WHERE other.business_date <> $day AND other.txn_id IN (SELECT txn_id FROM today)) AS across_days,
                   (SELECT count(*) FROM today) AS rows
            """,
            {"day": day},
        ).row(0)
        return dg.AssetCheckResult(
            passed=within == 0 and across == 0,
            metadata={"rows": rows, "repeated_within_day": within, "also_staged_on_other_days": across},
        )

    return txn_id_unique


@dg.asset_check(
    asset=table_key("staging.quarantine"),
    name="quarantine_rate",
    description="Quarantined / raw rows per source, against the WARN and ERROR thresholds "
    "(BATCH_ASSETS_QUARANTINE_RATE_WARN / _ERROR). An ERROR blocks matching.",
    blocking=True,
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def quarantine_rate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource
) -> dg.AssetCheckResult:
    day = business_date(context)
    wh = warehouse.open(context.log)
    counts = [
        (
            source,
            *wh.query(
                f"SELECT (SELECT count(*) FROM {qualified(f'raw.{source}')} WHERE business_date = $day), "
                f"(SELECT count(*) FROM {qualified('staging.quarantine')} WHERE business_date = $day "
                "AND source = $source)",
                {"day": day, "source": source},
            ).row(0),
        )
        for source in SOURCES
    ]
    rates = {
        source: (Decimal(quarantined) / Decimal(raw) if raw else Decimal(0))
        for source, raw, quarantined in counts
    }
    return threshold_result(
        max(rates.values(), default=Decimal(0)),
        thresholds.value("quarantine_rate_warn"),
        thresholds.value("quarantine_rate_error"),
        higher_is_worse=True,
        metadata={
            **{f"rate_{source}": float(round(rate, 6)) for source, rate in rates.items()},
            **{f"quarantined_{s}": q for s, _, q in counts},
            **{f"raw_{s}": r for s, r, _ in counts},
        },
    )


def threshold_result(
    value: Decimal, warn: Decimal, error: Decimal, *, higher_is_worse: bool, metadata: dict
) -> dg.AssetCheckResult:
    """Pass within WARN; past WARN fail as a warning; past ERROR fail as an error. The numbers judged, and
    the limits, go into the metadata."""
    past = (lambda limit: value > limit) if higher_is_worse else (lambda limit: value < limit)
    return dg.AssetCheckResult(
        passed=not past(warn),
        severity=dg.AssetCheckSeverity.ERROR if past(error) else dg.AssetCheckSeverity.WARN,
        metadata={
            **metadata,
            "value": str(value),
            "warn_limit": str(warn),
            "error_limit": str(error),
            "direction": "above is worse" if higher_is_worse else "below is worse",
        },
    )


def _items_conserved_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.open_items"),
        name="items_conserved",
        description="Invariant 2, per side: candidates (staged today + carried from yesterday) = matched today + "
        "carried into tomorrow + expired today.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def items_conserved(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        wh = warehouse.open(context.log)
        sides = {}
        for source in SOURCES:
            sides[source] = wh.query(
                f"""
                SELECT
                  (SELECT count(*) FROM {qualified(f"staging.{source}")} WHERE business_date = $day) AS staged,
                  (SELECT count(*) FROM recon.open_items WHERE business_date = $day - 1 AND source = $source
                     AND carried) AS carried_in,
                  (SELECT count(DISTINCT {quote_ident(f"{source}_txn_id")}) FROM recon.matches
                     WHERE business_date = $day) AS matched,
                  (SELECT count(*) FROM recon.open_items WHERE business_date = $day AND source = $source
                     AND carried) AS carried_out,
                  (SELECT count(*) FROM recon.open_items WHERE business_date = $day AND source = $source
                     AND NOT carried) AS expired
                """,
                {"day": day, "source": source},
            ).row(0, named=True)
        balanced = all(
            v["staged"] + v["carried_in"] == v["matched"] + v["carried_out"] + v["expired"] for v in sides.values()
        )
        return dg.AssetCheckResult(
            passed=balanced,
            metadata={f"{source}_{name}": n for source, values in sides.items() for name, n in values.items()},
        )

    return items_conserved


def _matched_once_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.matches"),
        name="matched_once",
        description="Invariant 3: no item is in two matches — each ledger item in one match row, each bank item in "
        "one match, on one day only.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def matched_once(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        counts = warehouse.open(context.log).query(
            """
            WITH today AS (SELECT * FROM recon.matches WHERE business_date = $day)
            SELECT
              (SELECT count(*) - count(DISTINCT ledger_txn_id) FROM today) AS ledger_repeated,
              (SELECT count(*) FROM (SELECT bank_txn_id FROM today GROUP BY bank_txn_id
                                     HAVING count(DISTINCT match_id) > 1)) AS bank_in_several_matches,
              (SELECT count(*) FROM recon.matches m WHERE m.business_date <> $day
                 AND (m.ledger_txn_id IN (SELECT ledger_txn_id FROM today)
                      OR m.bank_txn_id IN (SELECT bank_txn_id FROM today))) AS matched_on_other_days,
              (SELECT count(*) FROM today) AS match_rows
            """,
            {"day": day},
        ).row(0, named=True)
        passed = counts["ledger_repeated"] == counts["bank_in_several_matches"] == counts["matched_on_other_days"] == 0
        return dg.AssetCheckResult(passed=passed, metadata=counts)

    return matched_once


def _matches_balance_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.matches"),
        name="matches_balance",
        description="Invariant 4: in every match the ledger amounts add up to the bank amount, to the cent.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def matches_balance(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        result = warehouse.open(context.log).query(
            """
            WITH per_match AS (
              SELECT match_id, sum(ledger_amount) AS ledger_total, min(bank_amount) AS bank_min,
                     max(bank_amount) AS bank_max
              FROM recon.matches WHERE business_date = $day GROUP BY match_id)
            SELECT count(*) AS matches,
                   count(*) FILTER (ledger_total <> bank_max OR bank_min <> bank_max) AS unbalanced,
                   CAST(coalesce(sum(ledger_total), 0) AS VARCHAR) AS ledger_total,
                   CAST(coalesce(sum(bank_max), 0) AS VARCHAR) AS bank_total
            FROM per_match
            """,
            {"day": day},
        ).row(0, named=True)
        return dg.AssetCheckResult(passed=result["unbalanced"] == 0, metadata=result)

    return matches_balance


def _summary_row(warehouse: WarehouseResource, context: dg.AssetCheckExecutionContext, where: str) -> list[dict]:
    return warehouse.open(context.log).query(
        f"SELECT * FROM recon.summary WHERE business_date = $day AND account_id = $all AND {where}",
        {"day": business_date(context), "all": ALL},
    ).to_dicts()


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="match_rate",
    description="Match rate (matched / candidate items) of the day, against BATCH_ASSETS_MATCH_RATE_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def match_rate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource
) -> dg.AssetCheckResult:
    (total,) = _summary_row(warehouse, context, "currency = $all")
    return threshold_result(
        Decimal(str(round(total["match_rate"], 6))),
        thresholds.value("match_rate_warn"),
        thresholds.value("match_rate_error"),
        higher_is_worse=False,
        metadata={k: total[k] for k in ("ledger_items", "bank_items", "matched_ledger", "matched_bank")},
    )


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="break_value",
    description="Break value (absolute amounts of breaks) of the worst currency, against "
    "BATCH_ASSETS_BREAK_VALUE_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def break_value(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource
) -> dg.AssetCheckResult:
    rows = _summary_row(warehouse, context, "currency <> $all")
    values = {r["currency"]: r["break_value_ledger"] + r["break_value_bank"] for r in rows}
    return threshold_result(
        max(values.values(), default=Decimal("0.00")),
        thresholds.value("break_value_warn"),
        thresholds.value("break_value_error"),
        higher_is_worse=True,
        metadata={f"break_value_{currency}": str(value) for currency, value in sorted(values.items())},
    )


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="amount_mismatches",
    description="Count of amount mismatches of the day, against BATCH_ASSETS_AMOUNT_MISMATCH_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def amount_mismatches(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource
) -> dg.AssetCheckResult:
    (total,) = _summary_row(warehouse, context, "currency = $all")
    return threshold_result(
        Decimal(total["amount_mismatches"]),
        thresholds.value("amount_mismatch_warn"),
        thresholds.value("amount_mismatch_error"),
        higher_is_worse=True,
        metadata={"amount_mismatches": total["amount_mismatches"]},
    )


CHECKS = [
    *[_rows_conserved_check(source) for source in SOURCES],
    *[_txn_id_unique_check(source) for source in SOURCES],
    quarantine_rate,
    _items_conserved_check(),
    _matched_once_check(),
    _matches_balance_check(),
    match_rate,
    break_value,
    amount_mismatches,
]
