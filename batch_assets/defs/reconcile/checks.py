"""Checks of the reconciliation: items conserved, matched once, matches balance, and the summary's thresholds."""

from datetime import date, timedelta
from decimal import Decimal

import dagster as dg

from batch_assets.partitions import DAILY, ON_WAREHOUSE_HOST, WAREHOUSE_POOL
from batch_assets.resources import ThresholdsResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import run_check, table_key, threshold_result
from batch_assets.storage import Warehouse
from batch_assets.transforms.contract import SOURCES
from batch_assets.transforms.summary import ALL


def _items_conserved_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.open_items"),
        name="items_conserved",
        description="Invariant 2, per side: candidates (staged today + carried from yesterday) = matched today + "
        "carried into tomorrow + expired today.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        op_tags=ON_WAREHOUSE_HOST,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def items_conserved(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        wh = warehouse.open(context.log)

        def one_day(day: date) -> dg.AssetCheckResult:
            # Every figure comes from the commits that wrote the partitions (the stage's own transaction).
            tables = [*(f"staging.{source}" for source in SOURCES), "recon.matches", "recon.open_items"]
            with wh.reading():
                today = wh.partition_figures(tables, day)
                yesterday = wh.partition_figures(["recon.open_items"], day - timedelta(days=1))
            open_today, matches = today["recon.open_items"], today["recon.matches"]
            sides = {
                source: {
                    "staged": today[f"staging.{source}"].get("rows", 0),
                    "carried_in": yesterday["recon.open_items"].get("carried_by_source", {}).get(source, 0),
                    "matched": matches.get(f"distinct_{source}_txn_ids", 0),
                    "carried_out": open_today.get("carried_by_source", {}).get(source, 0),
                    "expired": open_today.get("expired_by_source", {}).get(source, 0),
                }
                for source in SOURCES
            }
            balanced = all(
                v["staged"] + v["carried_in"] == v["matched"] + v["carried_out"] + v["expired"] for v in sides.values()
            )
            return dg.AssetCheckResult(
                passed=balanced,
                metadata={f"{source}_{name}": n for source, values in sides.items() for name, n in values.items()},
            )

        yield from run_check(context, wh, one_day)

    return items_conserved


def _matched_once_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.matches"),
        name="matched_once",
        description="Invariant 3: no item is in two matches — each ledger item in one match row, each bank item in "
        "one match, and none matched on an earlier day (a later day that still has it is stale until re-run forward).",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        op_tags=ON_WAREHOUSE_HOST,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def matched_once(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        wh = warehouse.open(context.log)

        def one_day(day: date) -> dg.AssetCheckResult:
            with wh.reading():
                today = wh.partition_figures(["recon.matches"], day)["recon.matches"]
                (earlier,) = wh.query(
                    """
                    WITH today AS (SELECT ledger_txn_id, bank_txn_id FROM recon.matches WHERE business_date = $day)
                    SELECT count(*) FROM recon.matches m WHERE m.business_date < $day
                      AND (m.ledger_txn_id IN (SELECT ledger_txn_id FROM today)
                           OR m.bank_txn_id IN (SELECT bank_txn_id FROM today))
                    """,
                    {"day": day},
                ).row(0)
            counts = {
                "ledger_repeated": today.get("rows", 0) - today.get("distinct_ledger_txn_ids", 0),
                # (bank item, match) pairs beyond one per bank item: zero unless a bank item is in several matches.
                "bank_in_several_matches": today.get("bank_match_pairs", 0) - today.get("distinct_bank_txn_ids", 0),
                "matched_on_earlier_days": earlier,
                "match_rows": today.get("rows", 0),
            }
            passed = (
                counts["ledger_repeated"] == counts["bank_in_several_matches"] == counts["matched_on_earlier_days"] == 0
            )
            return dg.AssetCheckResult(passed=passed, metadata=counts)

        yield from run_check(context, wh, one_day)

    return matched_once


def _matches_balance_check() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table_key("recon.matches"),
        name="matches_balance",
        description="Invariant 4: in every match the ledger amounts add up to the bank amount, to the cent.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        op_tags=ON_WAREHOUSE_HOST,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def matches_balance(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        wh = warehouse.open(context.log)

        def one_day(day: date) -> dg.AssetCheckResult:
            result = wh.query(
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

        yield from run_check(context, wh, one_day)

    return matches_balance


def _summary_row(wh: Warehouse, day: date, where: str) -> list[dict]:
    return wh.query(
        f"SELECT * FROM recon.summary WHERE business_date = $day AND account_id = $all AND {where}",  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
        {"day": day, "all": ALL},
    ).to_dicts()


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="match_rate",
    description="Match rate (matched / candidate items) of the day, against BATCH_ASSETS_MATCH_RATE_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    op_tags=ON_WAREHOUSE_HOST,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def match_rate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource):
    wh = warehouse.open(context.log)

    def one_day(day: date) -> dg.AssetCheckResult:
        (total,) = _summary_row(wh, day, "currency = $all")
        return threshold_result(
            Decimal(str(round(total["match_rate"], 6))),
            thresholds.value("match_rate_warn"),
            thresholds.value("match_rate_error"),
            higher_is_worse=False,
            metadata={k: total[k] for k in ("ledger_items", "bank_items", "matched_ledger", "matched_bank")},
        )

    yield from run_check(context, wh, one_day)


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="break_value",
    description="Break value (absolute amounts of breaks) of the worst currency, against "
    "BATCH_ASSETS_BREAK_VALUE_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    op_tags=ON_WAREHOUSE_HOST,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def break_value(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource):
    wh = warehouse.open(context.log)

    def one_day(day: date) -> dg.AssetCheckResult:
        rows = _summary_row(wh, day, "currency <> $all")
        values = {r["currency"]: r["break_value_ledger"] + r["break_value_bank"] for r in rows}
        return threshold_result(
            max(values.values(), default=Decimal("0.00")),
            thresholds.value("break_value_warn"),
            thresholds.value("break_value_error"),
            higher_is_worse=True,
            metadata={f"break_value_{currency}": str(value) for currency, value in sorted(values.items())},
        )

    yield from run_check(context, wh, one_day)


@dg.asset_check(
    asset=table_key("recon.summary"),
    name="amount_mismatches",
    description="Count of amount mismatches of the day, against BATCH_ASSETS_AMOUNT_MISMATCH_WARN / _ERROR.",
    partitions_def=DAILY,
    pool=WAREHOUSE_POOL,
    op_tags=ON_WAREHOUSE_HOST,
    retry_policy=TRANSIENT_RETRY,
)
@fail_fast_unless_transient
def amount_mismatches(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, thresholds: ThresholdsResource
):
    wh = warehouse.open(context.log)

    def one_day(day: date) -> dg.AssetCheckResult:
        (total,) = _summary_row(wh, day, "currency = $all")
        return threshold_result(
            Decimal(total["amount_mismatches"]),
            thresholds.value("amount_mismatch_warn"),
            thresholds.value("amount_mismatch_error"),
            higher_is_worse=True,
            metadata={"amount_mismatches": total["amount_mismatches"]},
        )

    yield from run_check(context, wh, one_day)


reconcile_checks = [_items_conserved_check(), _matched_once_check(), _matches_balance_check()]
