"""Checks of the validate stage: rows conserved per file, txn_ids staged once, and the quarantine rate."""

from decimal import Decimal

import dagster as dg

from batch_assets.partitions import DAILY, WAREHOUSE_POOL, business_date
from batch_assets.resources import ThresholdsResource, WarehouseResource
from batch_assets.retries import TRANSIENT_RETRY, fail_fast_unless_transient
from batch_assets.stage import table_key, threshold_result
from batch_assets.storage import qualified
from batch_assets.transforms.contract import SOURCES


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
            """,  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
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
        description=f"Invariant 3: each {source} txn_id of the day is staged once, and on no earlier day: the first "
        "occurrence in business-date order wins, so a later day's copy is that day's duplicate, found when it is "
        "re-run.",
        blocking=True,
        partitions_def=DAILY,
        pool=WAREHOUSE_POOL,
        retry_policy=TRANSIENT_RETRY,
    )
    @fail_fast_unless_transient
    def txn_id_unique(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = business_date(context)
        table = qualified(staging)
        (within, earlier, rows) = (
            warehouse.open(context.log)
            .query(
                f"""
            WITH today AS (SELECT txn_id FROM {table} WHERE business_date = $day)
            SELECT (SELECT count(*) - count(DISTINCT txn_id) FROM today) AS within_day,
                   (SELECT count(*) FROM {table} other
                    WHERE other.business_date < $day AND other.txn_id IN (SELECT txn_id FROM today)) AS on_earlier_days,
                   (SELECT count(*) FROM today) AS rows
            """,  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                {"day": day},
            )
            .row(0)
        )
        return dg.AssetCheckResult(
            passed=within == 0 and earlier == 0,
            metadata={"rows": rows, "repeated_within_day": within, "also_staged_on_earlier_days": earlier},
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
                f"SELECT (SELECT count(*) FROM {qualified(f'raw.{source}')} WHERE business_date = $day), "  # noqa: S608 (values are bound; test_sql_binding.py checks what is spliced)
                f"(SELECT count(*) FROM {qualified('staging.quarantine')} WHERE business_date = $day "
                "AND source = $source)",
                {"day": day, "source": source},
            ).row(0),
        )
        for source in SOURCES
    ]
    rates = {
        source: (Decimal(quarantined) / Decimal(raw) if raw else Decimal(0)) for source, raw, quarantined in counts
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


validate_checks = [
    *[_rows_conserved_check(source) for source in SOURCES],
    *[_txn_id_unique_check(source) for source in SOURCES],
    quarantine_rate,
]
