"""Resolutions: a person's decisions on breaks (match, write_off, reverse), each judged whole: applied or rejected."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY

ACTION_MATCH = "match"
ACTION_WRITE_OFF = "write_off"
ACTION_REVERSE = "reverse"
ACTIONS: tuple[str, ...] = (ACTION_MATCH, ACTION_WRITE_OFF, ACTION_REVERSE)
PASS_MANUAL = "manual"

STATUS_APPLIED = "applied"
STATUS_REJECTED = "rejected"
STATUS_REVERSED = "reversed"

# Where an item named by a resolution stands before the day's resolutions: one it may name (a candidate of the
# day, or a standing break), or one it may not.
STATE_OPEN = "open"
STATE_MATCHED = "matched"
STATE_RESOLVED = "resolved"

# A resolutions file as read: one row per item (a reverse has one row and no item), in file and line order.
RESOLUTION_ROW_SCHEMA: dict[str, pl.DataType] = {
    "file_name": pl.String(),
    "line_number": pl.Int64(),
    "resolution_id": pl.String(),
    "action": pl.String(),
    "source": pl.String(),
    "txn_id": pl.String(),
    "write_off_amount": MONEY,
    "reason_code": pl.String(),
    "comment": pl.String(),
    "resolved_by": pl.String(),
    "resolved_at": pl.Datetime("us", "UTC"),
    "reverses": pl.String(),
    "problem": pl.String(),  # what is wrong with the row as read (a value that fits no column), else null
}
# Each item a resolution names, as the warehouse knows it: its state and figures; an unknown item has no row.
ITEM_STATE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "txn_id": pl.String(),
    "state": pl.String(),
    "resolved_by_id": pl.String(),  # the resolution that holds it, when its state is resolved
    "account_id": pl.String(),
    "currency": pl.String(),
    "amount": MONEY,
}
# One row per resolution of the day: what was decided, its figures, and whether it was applied (and if not, why).
VERDICT_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "resolution_id": pl.String(),
    "action": pl.String(),
    "file_name": pl.String(),
    "line_number": pl.Int64(),
    "status": pl.String(),
    "reason": pl.String(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "items": pl.Int64(),
    "ledger_total": MONEY,
    "bank_total": MONEY,
    "write_off_amount": MONEY,
    "reverses": pl.String(),
    "reason_code": pl.String(),
    "comment": pl.String(),
    "resolved_by": pl.String(),
    "resolved_at": pl.Datetime("us", "UTC"),
}

_ITEM_ACTIONS = [ACTION_MATCH, ACTION_WRITE_OFF]
_ZERO = pl.lit(0).cast(MONEY)


def _item() -> pl.Expr:
    return pl.concat_str(pl.col("source"), pl.lit(" "), pl.col("txn_id"))


def _row_reasons() -> pl.Expr:
    """The first thing wrong with one row, or null."""
    named_item = pl.col("action").is_in(_ITEM_ACTIONS)
    return (
        pl.when(pl.col("problem").is_not_null())
        .then(pl.col("problem"))
        .when(pl.col("resolution_id").is_null())
        .then(pl.lit("a row without a resolution_id"))
        .when(~pl.col("action").is_in(ACTIONS) | pl.col("action").is_null())
        .then(pl.format("action {} is none of match, write_off, reverse", pl.col("action").fill_null("(empty)")))
        .when(pl.col("resolved_by").is_null() | pl.col("resolved_at").is_null())
        .then(pl.lit("resolved_by and resolved_at are required on every row"))
        .when(named_item & (~pl.col("source").is_in(["ledger", "bank"]) | pl.col("txn_id").is_null()))
        .then(pl.lit("an item needs its source (ledger or bank) and its txn_id"))
        .when((pl.col("action") == ACTION_REVERSE) & pl.col("reverses").is_null())
        .then(pl.lit("a reverse names the resolution it undoes in reverses"))
        .when(named_item & pl.col("state").is_null())
        .then(pl.format("unknown item: {} is no item of the ledger or the bank", _item()))
        .when(named_item & (pl.col("state") == STATE_MATCHED))
        .then(pl.format("{} is already matched", _item()))
        .when(named_item & (pl.col("state") == STATE_RESOLVED))
        .then(pl.format("{} is already resolved by {}", _item(), pl.col("resolved_by_id")))
        .when(named_item & pl.col("claimed_by").is_not_null())
        .then(pl.format("{} is already resolved by {} (earlier in the day's files)", _item(), pl.col("claimed_by")))
    )


def judge_resolutions(
    rows: pl.LazyFrame, item_states: pl.LazyFrame, applied_ids: pl.LazyFrame, business_date: date
) -> pl.LazyFrame:
    """Each resolution of the day (its rows grouped by resolution_id), applied or rejected whole with its reason.

    `item_states` is ITEM_STATE_SCHEMA for the items the rows name; `applied_ids` holds `resolution_id` of every
    resolution applied before the day and still in force (a reverse may name only those). A resolution id
    already in the log is refused: each is applied once. Where two of the day's resolutions name one item, the
    first in (file, line) order has it.
    """
    ordered = rows.with_columns(order=pl.int_range(pl.len())).join(item_states, on=["source", "txn_id"], how="left")
    # The first resolution (in file and line order) to name an item has it; a later one is refused.
    first_claim = (
        ordered.filter(pl.col("action").is_in(_ITEM_ACTIONS) & pl.col("txn_id").is_not_null())
        .sort("order")
        .group_by("source", "txn_id", maintain_order=True)
        .agg(pl.col("resolution_id").first().alias("first_claim"))
    )
    ordered = ordered.join(first_claim, on=["source", "txn_id"], how="left").with_columns(
        claimed_by=pl.when(pl.col("first_claim") != pl.col("resolution_id")).then(pl.col("first_claim"))
    )
    ordered = ordered.with_columns(row_reason=_row_reasons())
    applied = applied_ids.select("resolution_id").unique().with_columns(already=pl.lit(True))
    ledger = pl.col("source") == "ledger"
    grouped = (
        ordered.sort("order")
        .group_by("resolution_id", maintain_order=True)
        .agg(
            pl.col("order").min(),
            pl.col("action").first(),
            pl.col("action").n_unique().alias("actions"),
            pl.col("file_name").first(),
            pl.col("line_number").first(),
            pl.col("row_reason").drop_nulls().first(),
            pl.col("account_id").drop_nulls().unique().sort().alias("accounts"),
            pl.col("currency").drop_nulls().unique().sort().alias("currencies"),
            pl.col("txn_id").filter(pl.col("action").is_in(_ITEM_ACTIONS)).count().alias("items"),
            pl.col("txn_id").filter(ledger).count().alias("ledger_items"),
            pl.col("txn_id").filter(~ledger).count().alias("bank_items"),
            pl.col("amount").filter(ledger).sum().alias("ledger_total"),
            pl.col("amount").filter(~ledger).sum().alias("bank_total"),
            pl.col("write_off_amount").drop_nulls().unique().alias("write_offs"),
            pl.col("reverses").drop_nulls().first(),
            pl.col("reason_code").drop_nulls().first(),
            pl.col("comment").drop_nulls().first(),
            pl.col("resolved_by").drop_nulls().first(),
            pl.col("resolved_at").drop_nulls().first(),
        )
        .join(applied, on="resolution_id", how="left")
        .join(applied.rename({"resolution_id": "reverses", "already": "reversible"}), on="reverses", how="left")
    )
    # A resolution reversed twice in the day: the first reverse undoes it, a later one has nothing left to undo.
    first_reverse = (
        grouped.filter(pl.col("action") == ACTION_REVERSE)
        .sort("order")
        .group_by("reverses", maintain_order=True)
        .agg(pl.col("resolution_id").first().alias("first_reverse"))
    )
    # Joins keep no order: the verdicts come out in the order of the resolutions' first rows.
    grouped = grouped.join(first_reverse, on="reverses", how="left").sort("order")
    return (
        grouped.with_columns(_verdict())
        .select(
            pl.lit(business_date).alias("business_date"),
            "resolution_id",
            "action",
            "file_name",
            "line_number",
            pl.when(pl.col("reason").is_null())
            .then(pl.lit(STATUS_APPLIED))
            .otherwise(pl.lit(STATUS_REJECTED))
            .alias("status"),
            "reason",
            pl.col("accounts").list.first().alias("account_id"),
            pl.col("currencies").list.first().alias("currency"),
            "items",
            pl.col("ledger_total").fill_null(_ZERO),
            pl.col("bank_total").fill_null(_ZERO),
            pl.col("write_offs").list.first().alias("write_off_amount"),
            "reverses",
            "reason_code",
            "comment",
            "resolved_by",
            "resolved_at",
        )
        .cast(VERDICT_SCHEMA)
    )  # type: ignore[arg-type]


def _verdict() -> pl.Expr:
    """Why a resolution is refused, the first reason that holds; null when it is applied."""
    action = pl.col("action")
    write_off = pl.col("write_offs").list.first().fill_null(_ZERO)
    difference = pl.col("ledger_total").fill_null(_ZERO) - pl.col("bank_total").fill_null(_ZERO)
    total = pl.col("ledger_total").fill_null(_ZERO) + pl.col("bank_total").fill_null(_ZERO)
    return (
        pl.when(pl.col("actions") > 1)
        .then(pl.lit("its rows disagree on the action"))
        .when(pl.col("already").fill_null(False))
        .then(
            pl.format("resolution id {} was applied before: each resolution is applied once", pl.col("resolution_id"))
        )
        .when(pl.col("row_reason").is_not_null())
        .then(pl.col("row_reason"))
        .when(pl.col("write_offs").list.len() > 1)
        .then(pl.lit("its rows give different write_off_amounts"))
        .when((pl.col("accounts").list.len() > 1) | (pl.col("currencies").list.len() > 1))
        .then(
            pl.format(
                "mixed accounts or currencies: {} in {}",
                pl.col("accounts").list.join(", "),
                pl.col("currencies").list.join(", "),
            )
        )
        .when((action == ACTION_MATCH) & ((pl.col("ledger_items") == 0) | (pl.col("bank_items") == 0)))
        .then(pl.lit("a match needs at least one ledger item and one bank item"))
        .when((action == ACTION_MATCH) & (difference != write_off))
        .then(
            pl.format(
                "amounts do not balance: ledger {} - bank {} = {}, but write_off_amount is {}; name the difference "
                "in write_off_amount with a reason_code",
                pl.col("ledger_total").fill_null(_ZERO),
                pl.col("bank_total").fill_null(_ZERO),
                difference,
                write_off,
            )
        )
        .when((action == ACTION_WRITE_OFF) & (pl.col("write_offs").list.len() == 1) & (write_off != total))
        .then(pl.format("write_off_amount {} is not the items' total {}", write_off, total))
        .when(((action == ACTION_WRITE_OFF) | (difference != _ZERO)) & pl.col("reason_code").is_null())
        .then(pl.lit("a write-off needs a reason_code"))
        .when((action == ACTION_REVERSE) & ~pl.col("reversible").fill_null(False))
        .then(pl.format("reversal of nothing: {} is not a resolution in force", pl.col("reverses")))
        .when((action == ACTION_REVERSE) & (pl.col("first_reverse") != pl.col("resolution_id")))
        .then(
            pl.format("reversal of nothing: {} is already reversed by {}", pl.col("reverses"), pl.col("first_reverse"))
        )
        .alias("reason")
    )
