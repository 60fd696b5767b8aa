"""Matching: the three passes (exact, amount_date, aggregate) over a day's candidates, and what stays open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from batch_assets.transforms.contract import MONEY

PASS_EXACT = "exact"
PASS_AMOUNT_DATE = "amount_date"
PASS_AGGREGATE = "aggregate"
PASSES: tuple[str, ...] = (PASS_EXACT, PASS_AMOUNT_DATE, PASS_AGGREGATE)
PASS_MANUAL = "manual"  # people's resolutions (transforms.resolutions), applied before the passes

# One reconcilable item of either side: a staged row of the day, or an open item carried from earlier days.
ITEM_SCHEMA: dict[str, pl.DataType] = {
    "txn_id": pl.String(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "booking_date": pl.Date(),
    "amount": MONEY,
    "reference_norm": pl.String(),
    "origin_date": pl.Date(),  # the business date on which the item was staged
}

MATCH_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "match_id": pl.String(),
    "match_pass": pl.String(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "ledger_txn_id": pl.String(),
    "bank_txn_id": pl.String(),
    "ledger_amount": MONEY,
    "bank_amount": MONEY,
    "ledger_booking_date": pl.Date(),
    "bank_booking_date": pl.Date(),
    "reference_norm": pl.String(),
    # A manual match only (pass `manual`): the resolution that made it, and the difference it wrote off. A
    # manual match has a row per item pairing (ledger and bank items zipped in txn_id order), so either side
    # of a row may be empty.
    "resolution_id": pl.String(),
    "write_off_amount": MONEY,
}

OPEN_ITEM_SCHEMA: dict[str, pl.DataType] = {
    "business_date": pl.Date(),
    "source": pl.String(),
    **ITEM_SCHEMA,
    "age_days": pl.Int32(),
    "carried": pl.Boolean(),  # True: a candidate again on the next day; False: expired on this day
}

_ACCOUNT = ["account_id", "currency"]
_ORDER = ["booking_date", "txn_id"]


@dataclass(frozen=True)
class MatchParameters:
    """The contract's knobs. Defaults: carry 5 days, 2 days of date tolerance, 2 days of grace."""

    carry_days: int = 5
    date_tolerance_days: int = 2
    grace_days: int = 2


# The staged columns an item is made of (its origin date is the row's business date): the matching reads no others.
_ITEM_FROM_STAGED = {"business_date": "origin_date", **{c: c for c in ITEM_SCHEMA if c != "origin_date"}}
STAGED_ITEM_COLUMNS: tuple[str, ...] = tuple(_ITEM_FROM_STAGED)


def items_from_staged(staged: pl.LazyFrame) -> pl.LazyFrame:
    """A day's staged rows as items."""
    return (
        staged.select(STAGED_ITEM_COLUMNS).rename(_ITEM_FROM_STAGED).select(list(ITEM_SCHEMA)).cast(ITEM_SCHEMA)  # type: ignore[arg-type]
    )


def items_from_open(open_items: pl.LazyFrame, source: str) -> pl.LazyFrame:
    """The open items carried into the next day, for one side."""
    return (
        open_items.filter(pl.col("carried") & (pl.col("source") == source)).select(list(ITEM_SCHEMA)).cast(ITEM_SCHEMA)  # type: ignore[arg-type]
    )


def _ranked(items: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Number items within each key group in (booking_date, txn_id) order: the documented tie-break. Rows in
    no particular order."""
    # Nearly every group has one item, whose rank is 0; only the others need the sort (5x faster at 1M).
    counted = items.with_columns(pl.len().over(keys).alias("_n"))
    alone = counted.filter(pl.col("_n") == 1).with_columns(pl.lit(0, pl.UInt32).alias("_rank"))
    crowded = (
        counted.filter(pl.col("_n") > 1)
        .sort(_ORDER)
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over(keys).alias("_rank"))
    )
    return pl.concat([alone, crowded]).drop("_n")


def both_sides() -> list[pl.Expr]:
    """A joined row's ledger fields (unsuffixed) and bank fields (suffixed `_bank`) under the matches' names."""
    return [
        pl.col(f"{field}{suffix}").alias(f"{side}_{field}")
        for field in ("txn_id", "amount", "booking_date")
        for side, suffix in (("ledger", ""), ("bank", "_bank"))
    ]


def _pairs(joined: pl.DataFrame, match_pass: str) -> pl.DataFrame:
    """Matched ledger/bank rows (joined, bank columns suffixed) in MATCH_SCHEMA, without business_date."""
    return joined.select(
        pl.format("{}:{}", pl.lit(match_pass), pl.col("txn_id_bank")).alias("match_id"),
        pl.lit(match_pass).alias("match_pass"),
        "account_id",
        "currency",
        *both_sides(),
        "reference_norm",
    )


def _exact(ledger: pl.DataFrame, bank: pl.DataFrame) -> pl.DataFrame:
    keys = [*_ACCOUNT, "amount", "reference_norm"]
    joined = _ranked(ledger.filter(pl.col("reference_norm").is_not_null()), keys).join(
        _ranked(bank.filter(pl.col("reference_norm").is_not_null()), keys),
        on=[*keys, "_rank"],
        suffix="_bank",
    )
    return _pairs(joined.with_columns(pl.col("amount").alias("amount_bank")), PASS_EXACT)


def _amount_date(ledger: pl.DataFrame, bank: pl.DataFrame, tolerance: int) -> pl.DataFrame:
    """Equal account, currency and amount; booking dates at most `tolerance` days apart.

    Within a group of equal (account, currency, amount), ledger items are taken in (booking_date, txn_id)
    order and each is paired with the earliest bank item, in the same order, that is still free and within
    tolerance. Groups with one item on each side (nearly all) are paired with expressions; the others run the
    same greedy rule as a two-pointer walk, which is inherently sequential.
    """
    keys = [*_ACCOUNT, "amount"]
    ledger = ledger.with_columns(pl.len().over(keys).alias("_n"))
    bank = bank.with_columns(pl.len().over(keys).alias("_n"))
    singles = (
        ledger.filter(pl.col("_n") == 1)
        .join(bank.filter(pl.col("_n") == 1), on=keys, suffix="_bank")
        .filter((pl.col("booking_date") - pl.col("booking_date_bank")).dt.total_days().abs() <= tolerance)
        .with_columns(pl.col("amount").alias("amount_bank"))
    )
    crowded = (
        pl.concat([ledger.filter(pl.col("_n") > 1).select(keys), bank.filter(pl.col("_n") > 1).select(keys)])
        .unique()
        .sort(keys)
        .with_row_index("_group")
    )
    greedy = _greedy_within_tolerance(
        ledger.join(crowded, on=keys).sort("_group", *_ORDER),
        bank.join(crowded, on=keys).sort("_group", *_ORDER),
        tolerance,
    )
    columns = [*keys, "txn_id", "booking_date", "reference_norm", "txn_id_bank", "amount_bank", "booking_date_bank"]
    return _pairs(pl.concat([singles.select(columns), greedy.select(columns)]), PASS_AMOUNT_DATE)


def _greedy_within_tolerance(ledger: pl.DataFrame, bank: pl.DataFrame, tolerance: int) -> pl.DataFrame:
    """The greedy pairing of `_amount_date` over groups numbered `_group`; both sides sorted by
    (_group, booking_date, txn_id). Returns joined rows like a Polars join with suffix `_bank`."""
    ledger_groups, ledger_days = ledger["_group"].to_list(), ledger["booking_date"].to_list()
    bank_groups, bank_days = bank["_group"].to_list(), bank["booking_date"].to_list()
    chosen_ledger: list[int] = []
    chosen_bank: list[int] = []
    j = 0
    for i, (group, day) in enumerate(zip(ledger_groups, ledger_days, strict=True)):
        # A bank item of an earlier group, or too early for this ledger item, is too early for all later ones.
        while j < len(bank_groups) and (
            bank_groups[j] < group or (bank_groups[j] == group and (day - bank_days[j]).days > tolerance)
        ):
            j += 1
        if j < len(bank_groups) and bank_groups[j] == group and (bank_days[j] - day).days <= tolerance:
            chosen_ledger.append(i)
            chosen_bank.append(j)
            j += 1
    right = bank[chosen_bank].select(
        pl.col("txn_id").alias("txn_id_bank"),
        pl.col("amount").alias("amount_bank"),
        pl.col("booking_date").alias("booking_date_bank"),
    )
    return pl.concat([ledger[chosen_ledger], right], how="horizontal")


def _aggregate(ledger: pl.DataFrame, bank: pl.DataFrame) -> pl.DataFrame:
    """Two or more ledger items with the same account, currency, booking date and non-null reference whose
    amounts sum exactly to one bank item with that reference. Groups and bank items with equal keys are
    paired in (booking_date, txn_id) order."""
    groups = (
        ledger.filter(pl.col("reference_norm").is_not_null())
        .group_by([*_ACCOUNT, "booking_date", "reference_norm"])
        .agg(
            pl.col("amount").sum().cast(MONEY).alias("amount"),
            pl.col("txn_id").sort().alias("txn_ids"),
            pl.col("amount").sort_by("txn_id").alias("amounts"),
            pl.len().alias("_n"),
        )
        .filter(pl.col("_n") >= 2)
        .with_columns(pl.col("txn_ids").list.first().alias("txn_id"))
    )
    keys = [*_ACCOUNT, "reference_norm", "amount"]
    joined = _ranked(groups, keys).join(
        _ranked(bank.filter(pl.col("reference_norm").is_not_null()), keys), on=[*keys, "_rank"], suffix="_bank"
    )
    exploded = (
        joined.with_columns(pl.col("amount").alias("amount_bank"))
        .drop("txn_id", "amount")
        .explode(["txn_ids", "amounts"])
        .rename({"txn_ids": "txn_id", "amounts": "amount"})
    )
    return _pairs(exploded, PASS_AGGREGATE)


def match_items(ledger: pl.DataFrame, bank: pl.DataFrame, business_date: date, tolerance_days: int) -> pl.DataFrame:
    """Run the passes in order; each sees only what earlier passes left. One row per matched ledger item."""
    found: list[pl.DataFrame] = []
    for match_pass in PASSES:
        if match_pass == PASS_EXACT:
            pairs = _exact(ledger, bank)
        elif match_pass == PASS_AMOUNT_DATE:
            pairs = _amount_date(ledger, bank, tolerance_days)
        else:
            pairs = _aggregate(ledger, bank)
        found.append(pairs)
        ledger = ledger.join(pairs.select(pl.col("ledger_txn_id").alias("txn_id")), on="txn_id", how="anti")
        bank = bank.join(pairs.select(pl.col("bank_txn_id").alias("txn_id")).unique(), on="txn_id", how="anti")
    return (
        pl.concat(found)
        .with_columns(
            pl.lit(business_date).alias("business_date"),
            pl.lit(None, pl.String).alias("resolution_id"),
            pl.lit(None, MONEY).alias("write_off_amount"),
        )
        .select(list(MATCH_SCHEMA))
        .cast(MATCH_SCHEMA)  # type: ignore[arg-type]
        .sort("match_id", "ledger_txn_id")
    )


def open_items(
    ledger: pl.DataFrame, bank: pl.DataFrame, matches: pl.DataFrame, business_date: date, carry_days: int
) -> pl.DataFrame:
    """Every candidate left unmatched on the day, with its age. Those younger than `carry_days` are carried
    to the next day; the others expire here and become standing breaks."""
    sides = []
    for source, items, matched in (("ledger", ledger, "ledger_txn_id"), ("bank", bank, "bank_txn_id")):
        left = items.join(matches.select(pl.col(matched).alias("txn_id")).unique(), on="txn_id", how="anti")
        sides.append(left.with_columns(pl.lit(source).alias("source")))
    age = (pl.lit(business_date) - pl.col("booking_date")).dt.total_days().cast(pl.Int32)
    return (
        pl.concat(sides)
        .with_columns(pl.lit(business_date).alias("business_date"), age.alias("age_days"))
        .with_columns((pl.col("age_days") < carry_days).alias("carried"))
        .select(list(OPEN_ITEM_SCHEMA))
        .cast(OPEN_ITEM_SCHEMA)  # type: ignore[arg-type]
        .sort("source", "booking_date", "txn_id")
    )
