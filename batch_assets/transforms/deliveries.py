"""The file log's rules: which deliveries are duplicates, and what a day's log says after an ingest."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import polars as pl

from batch_assets.transforms.contract import (
    STATUS_DUPLICATE,
    STATUS_INGESTED,
    STATUS_REJECTED,
    STATUS_SUPERSEDED,
)

FILE_LOG_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "source": pl.String(),
    "file_name": pl.String(),
    "sha256": pl.String(),
    "size_bytes": pl.Int64(),
    "status": pl.String(),
    "reason": pl.String(),
    "row_count": pl.Int64(),
    "first_seen_at": pl.Datetime("us", "UTC"),
}
# A delivery of this run: its outcome is ingested, duplicate or rejected once the files have been read.
DELIVERY_SCHEMA: dict[str, pl.DataType] = {k: v for k, v in FILE_LOG_SCHEMA.items() if k != "first_seen_at"}
_KEY = ["file_name", "sha256"]
# The sha256 logged for a file rejected before any of its bytes were read (replaced or removed after the
# listing, or not readable): there is nothing to hash, and reading what the name holds now is not safe.
NOT_READ = ""


def mark_duplicates(deliveries: pl.DataFrame, ingested_elsewhere: pl.DataFrame) -> pl.DataFrame:
    """Mark as duplicates the read deliveries whose bytes were already ingested for the same source: under
    another name on another day (`ingested_elsewhere`: source, sha256, file_name), or earlier by name today.

    Only files with rows count: header-only files are byte-identical by nature, and landing one twice
    cannot count anything twice.
    """
    known = ingested_elsewhere.group_by("source", "sha256").agg(pl.col("file_name").min().alias("_known_as"))
    candidate = (pl.col("status") == STATUS_INGESTED) & (pl.col("row_count") > 0)
    ordered = deliveries.sort("file_name").join(known, on=["source", "sha256"], how="left", maintain_order="left")
    earlier = pl.col("file_name").filter(candidate).first().over("source", "sha256")
    same_as_earlier = candidate & (earlier != pl.col("file_name"))
    elsewhere = candidate & pl.col("_known_as").is_not_null()
    return ordered.with_columns(
        pl.when(elsewhere | same_as_earlier).then(pl.lit(STATUS_DUPLICATE)).otherwise(pl.col("status")).alias("status"),
        pl.when(elsewhere)
        .then(pl.format("same bytes as {}, already ingested", pl.col("_known_as")))
        .when(same_as_earlier)
        .then(pl.format("same bytes as {}", earlier))
        .otherwise(pl.col("reason"))
        .alias("reason"),
    ).drop("_known_as")


def next_file_log(
    deliveries: pl.DataFrame,
    previous: pl.DataFrame,
    failed_sources: Collection[str],
    now: datetime,
) -> pl.DataFrame:
    """The day's file log after an ingest, as a pure function of what was there and what happened.

    Every file this run rejected is listed, with its reason. A source that succeeded lists its current
    deliveries. A source that failed keeps its other entries as they were, because its raw data is unchanged.
    An earlier entry that this run does not list becomes `superseded`: an earlier version of a file, a file
    taken away, or a rejection whose file has since been fixed or withdrawn. An entry keeps the time it was
    first seen, so re-running a day leaves the log identical.
    """
    deliveries = deliveries.cast(DELIVERY_SCHEMA)  # type: ignore[arg-type]
    previous = previous.cast(FILE_LOG_SCHEMA)  # type: ignore[arg-type]
    failed = pl.col("source").is_in(list(failed_sources))
    rejected = pl.col("status") == STATUS_REJECTED
    first_seen = previous.group_by(_KEY).agg(pl.col("first_seen_at").min())

    logged = deliveries.filter(~failed | rejected)
    # A failed source's ingested and duplicate entries describe its unchanged raw data. Its history stays too,
    # unless the same bytes are listed again now (rejected once more), which would list them twice.
    kept = pl.concat(
        [
            previous.filter(failed & pl.col("status").is_in([STATUS_INGESTED, STATUS_DUPLICATE])),
            previous.filter(failed & (pl.col("status") == STATUS_SUPERSEDED)).join(
                logged.select(_KEY), on=_KEY, how="anti"
            ),
        ]
    )
    still_named = deliveries.select("file_name").unique()
    replaced = (
        previous.filter(~failed | rejected)
        .join(logged.select(_KEY), on=_KEY, how="anti")
        .join(still_named.with_columns(pl.lit(True).alias("_named")), on="file_name", how="left")
        .with_columns(
            pl.when(pl.col("status") == STATUS_SUPERSEDED)
            .then(pl.col("reason"))
            .otherwise(
                pl.format(
                    "{} (was {}{})",
                    pl.when(pl.col("_named"))
                    .then(pl.lit("replaced by new bytes"))
                    .otherwise(pl.lit("no longer in the landing zone")),
                    pl.col("status"),
                    pl.when(pl.col("reason").is_not_null())
                    .then(pl.format(": {}", pl.col("reason")))
                    .otherwise(pl.lit("")),
                )
            )
            .alias("reason"),
            pl.lit(STATUS_SUPERSEDED).alias("status"),
        )
        .drop("_named")
    )
    logged = logged.join(first_seen, on=_KEY, how="left").with_columns(
        pl.col("first_seen_at").fill_null(pl.lit(now, FILE_LOG_SCHEMA["first_seen_at"]))
    )
    return (
        pl.concat([kept, replaced, logged.select(FILE_LOG_SCHEMA.keys())], how="vertical")
        .cast(FILE_LOG_SCHEMA)  # type: ignore[arg-type]
        .sort("file_name", "first_seen_at", "sha256", "status")
    )
