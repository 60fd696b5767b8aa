"""Resolutions: a person's decisions on breaks (match, write_off, reverse), each judged whole: applied or rejected."""

from __future__ import annotations

from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY
from batch_assets.transforms.matching import ITEM_SCHEMA, MATCH_SCHEMA, PASS_MANUAL, both_sides

ACTION_MATCH = "match"
ACTION_WRITE_OFF = "write_off"
ACTION_REVERSE = "reverse"
ACTIONS: tuple[str, ...] = (ACTION_MATCH, ACTION_WRITE_OFF, ACTION_REVERSE)

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
# The day's resolutions files as landed (raw.resolutions).
RAW_RESOLUTION_SCHEMA: dict[str, pl.DataType] = {"business_date": pl.Date(), **RESOLUTION_ROW_SCHEMA}
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

# The resolution log (ops.resolution_log): every verdict, and a `reversed` row for a resolution a reverse undid.
RESOLUTION_LOG_SCHEMA: dict[str, pl.DataType] = {**VERDICT_SCHEMA, "run_id": pl.String()}
# Each item an applied resolution moved (recon.resolved_items): matched or written off, or given back to the
# candidates by a reverse. `revived`: the item became a candidate of the day through it (a standing break, or
# an item of the reversed resolution), so the day's candidates count it.
RESOLVED_ITEM_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "resolution_id": pl.String(),
    "action": pl.String(),
    "source": pl.String(),
    **ITEM_SCHEMA,
    "revived": pl.Boolean(),
}

# The items an applied resolution holds while it is in force: what a reverse of it gives back.
HELD_ITEM_SCHEMA: dict[str, pl.DataType] = {
    c: t for c, t in RESOLVED_ITEM_SCHEMA.items() if c not in ("business_date", "revived")
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
    rows: pl.LazyFrame,
    item_states: pl.LazyFrame,
    applied_ids: pl.LazyFrame,
    business_date: date,
    in_force_ids: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Each resolution of the day (its rows grouped by resolution_id), applied or rejected whole with its reason.

    `item_states` is ITEM_STATE_SCHEMA for the items the rows name; `applied_ids` holds `resolution_id` of every
    resolution applied before the day (each is applied once: its id is refused again), and `in_force_ids` of
    those still in force, which a reverse may name (by default all of `applied_ids`). Where two of the day's
    resolutions name one item, the first in (file, line) order has it.
    """
    ordered = rows.with_columns(order=pl.int_range(pl.len())).join(item_states, on=["source", "txn_id"], how="left")
    # Two resolutions that name one item: the first (in file and line order) that is valid on its own has it,
    # and a later one is refused; one refused for its own reasons claims nothing.
    alone = _judged(ordered.with_columns(claimed_by=pl.lit(None, pl.String)), applied_ids, in_force_ids, business_date)
    valid = alone.filter(pl.col("reason").is_null()).select("resolution_id").collect()
    claims = _claims(
        ordered.select("resolution_id", "action", "source", "txn_id").collect(), set(valid["resolution_id"])
    )
    ordered = ordered.join(claims.lazy(), on=["resolution_id", "source", "txn_id"], how="left")
    return _judged(ordered, applied_ids, in_force_ids, business_date)


def _claims(rows: pl.DataFrame, valid: set[str]) -> pl.DataFrame:
    """For the items of valid resolutions, which earlier valid resolution already has them (greedily in order:
    a resolution is accepted when none of its items is taken)."""
    items_of: dict[str, list[tuple[str, str]]] = {}
    for rid, action, source, txn_id in rows.iter_rows():
        if rid in valid and action in _ITEM_ACTIONS and txn_id is not None:
            items_of.setdefault(rid, []).append((source, txn_id))
    taken: dict[tuple[str, str], str] = {}
    lost: list[tuple[str, str, str, str]] = []
    for rid, items in items_of.items():
        holders = [(item, taken[item]) for item in items if taken.get(item, rid) != rid]
        if holders:
            lost += [(rid, source, txn_id, holder) for (source, txn_id), holder in holders]
        else:
            taken.update(dict.fromkeys(items, rid))
    return pl.DataFrame(
        lost,
        schema={"resolution_id": pl.String, "source": pl.String, "txn_id": pl.String, "claimed_by": pl.String},
        orient="row",
    )


def _judged(
    ordered: pl.LazyFrame, applied_ids: pl.LazyFrame, in_force_ids: pl.LazyFrame | None, business_date: date
) -> pl.LazyFrame:
    """The verdicts, once each row knows its item's state and whether an earlier resolution claimed it."""
    ordered = ordered.with_columns(row_reason=_row_reasons())
    applied = applied_ids.select("resolution_id").unique().with_columns(already=pl.lit(True))
    in_force = (applied_ids if in_force_ids is None else in_force_ids).select("resolution_id").unique()
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
        .join(
            in_force.with_columns(reversible=pl.lit(True)).rename({"resolution_id": "reverses"}),
            on="reverses",
            how="left",
        )
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


def resolved_items(
    verdicts: pl.DataFrame, rows: pl.DataFrame, items: pl.DataFrame, in_force: pl.DataFrame, business_date: date
) -> pl.DataFrame:
    """The items the day's applied resolutions move (RESOLVED_ITEM_SCHEMA), in resolution and item order.

    `items` holds the named items' fields (source + ITEM_SCHEMA) and `standing` (a standing break, so naming it
    revives it); `in_force` (HELD_ITEM_SCHEMA) the items of the resolutions in force, which a reverse gives back
    to the candidates.
    """
    applied = verdicts.filter(pl.col("status") == STATUS_APPLIED).select("resolution_id", "action", "reverses")
    decided = (
        applied.filter(pl.col("action").is_in(_ITEM_ACTIONS))
        .join(rows.select("resolution_id", "source", "txn_id").unique(), on="resolution_id")
        .join(items, on=["source", "txn_id"])
        .with_columns(revived=pl.col("standing"))
    )
    given_back = (
        applied.filter(pl.col("action") == ACTION_REVERSE)
        .join(in_force.drop("action").rename({"resolution_id": "reverses"}), on="reverses")
        .with_columns(revived=pl.lit(True))
    )
    columns = [c for c in RESOLVED_ITEM_SCHEMA if c != "business_date"]
    return (
        pl.concat([decided.select(columns), given_back.select(columns)])
        .with_columns(business_date=pl.lit(business_date))
        .select(list(RESOLVED_ITEM_SCHEMA))
        .cast(RESOLVED_ITEM_SCHEMA)  # type: ignore[arg-type]
        .sort("resolution_id", "source", "txn_id")
    )


def manual_matches(verdicts: pl.DataFrame, resolved: pl.DataFrame, business_date: date) -> pl.DataFrame:
    """The manual matches (MATCH_SCHEMA, pass `manual`) of the day's applied match resolutions: one row per
    item pairing, the ledger and bank items zipped in txn_id order, so N:M groups need no fan-out."""
    matched = resolved.filter(pl.col("action") == ACTION_MATCH).sort("txn_id")
    side = {
        source: matched.filter(pl.col("source") == source).with_columns(_k=pl.int_range(pl.len()).over("resolution_id"))
        for source in ("ledger", "bank")
    }
    pairs = side["ledger"].join(side["bank"], on=["resolution_id", "_k"], how="full", coalesce=True, suffix="_bank")
    write_offs = verdicts.filter(pl.col("status") == STATUS_APPLIED).select("resolution_id", "write_off_amount")
    return (
        pairs.join(write_offs, on="resolution_id", how="left")
        .select(
            pl.lit(business_date).alias("business_date"),
            pl.format("{}:{}", pl.lit(PASS_MANUAL), pl.col("resolution_id")).alias("match_id"),
            pl.lit(PASS_MANUAL).alias("match_pass"),
            pl.coalesce("account_id", "account_id_bank").alias("account_id"),
            pl.coalesce("currency", "currency_bank").alias("currency"),
            *both_sides(),
            pl.coalesce("reference_norm", "reference_norm_bank").alias("reference_norm"),
            "resolution_id",
            pl.col("write_off_amount").fill_null(_ZERO),
        )
        .cast(MATCH_SCHEMA)  # type: ignore[arg-type]
        .sort("match_id", "ledger_txn_id", "bank_txn_id", nulls_last=True)
    )
