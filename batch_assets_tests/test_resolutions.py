"""Judging a day's resolutions: each applied whole, or rejected whole with the reason the contract names."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from batch_assets.transforms.matching import MATCH_SCHEMA
from batch_assets.transforms.resolutions import (
    HELD_ITEM_SCHEMA,
    ITEM_STATE_SCHEMA,
    RESOLUTION_ROW_SCHEMA,
    STATE_MATCHED,
    STATE_OPEN,
    STATE_RESOLVED,
    STATUS_APPLIED,
    STATUS_REJECTED,
    judge_resolutions,
    manual_matches,
    resolved_items,
)

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
FILE = "resolutions/resolutions_2026-11-24.csv"
# The items the warehouse knows: open ones of one account, one of another account and currency, a matched one,
# and one held by an earlier resolution.
ITEMS = pl.DataFrame(
    [
        ("ledger", "L1", STATE_OPEN, None, "ACC-1", "EUR", Decimal("60.00")),
        ("ledger", "L2", STATE_OPEN, None, "ACC-1", "EUR", Decimal("40.00")),
        ("bank", "B1", STATE_OPEN, None, "ACC-1", "EUR", Decimal("100.00")),
        ("bank", "B2", STATE_OPEN, None, "ACC-1", "EUR", Decimal("97.50")),
        ("ledger", "L3", STATE_OPEN, None, "ACC-1", "EUR", Decimal("100.00")),
        ("bank", "B9", STATE_OPEN, None, "ACC-2", "USD", Decimal("12.00")),
        ("ledger", "L7", STATE_MATCHED, None, "ACC-1", "EUR", Decimal("5.00")),
        ("bank", "B8", STATE_RESOLVED, "R-OLD", "ACC-1", "EUR", Decimal("3.00")),
    ],
    schema=ITEM_STATE_SCHEMA,
    orient="row",
)
APPLIED = pl.DataFrame({"resolution_id": ["R-OLD"]})


def rows(*items: tuple) -> pl.DataFrame:
    """(resolution_id, action, source, txn_id[, write_off_amount, reason_code, reverses]) per row, lines from 2."""
    records = []
    for line, item in enumerate(items, start=2):
        rid, action, source, txn_id, *rest = item
        write_off, reason_code, reverses = (*rest, None, None, None)[:3]
        amount = Decimal(write_off) if write_off is not None else None
        records.append((FILE, line, rid, action, source, txn_id, amount, reason_code, None, "ana", AT, reverses, None))
    return pl.DataFrame(records, schema=RESOLUTION_ROW_SCHEMA, orient="row")


def judged(frame: pl.DataFrame, applied: pl.DataFrame = APPLIED) -> dict[str, tuple[str, str | None]]:
    verdicts = judge_resolutions(frame.lazy(), ITEMS.lazy(), applied.lazy(), DAY).collect()
    return {r["resolution_id"]: (r["status"], r["reason"]) for r in verdicts.iter_rows(named=True)}


def test_a_balanced_many_to_one_match_is_applied_with_its_figures() -> None:
    frame = rows(("R1", "match", "ledger", "L1"), ("R1", "match", "ledger", "L2"), ("R1", "match", "bank", "B1"))
    verdicts = judge_resolutions(frame.lazy(), ITEMS.lazy(), APPLIED.lazy(), DAY).collect()
    (verdict,) = verdicts.to_dicts()
    assert verdict["status"] == STATUS_APPLIED and verdict["reason"] is None
    assert (verdict["account_id"], verdict["currency"], verdict["items"]) == ("ACC-1", "EUR", 3)
    assert (verdict["ledger_total"], verdict["bank_total"]) == (Decimal("100.00"), Decimal("100.00"))
    assert (verdict["file_name"], verdict["line_number"], verdict["business_date"]) == (FILE, 2, DAY)


def test_a_fee_deducted_match_applies_when_the_difference_is_written_off_with_a_reason() -> None:
    frame = rows(("R1", "match", "ledger", "L3", "2.50", "BANK_FEE"), ("R1", "match", "bank", "B2"))
    assert judged(frame) == {"R1": (STATUS_APPLIED, None)}


def test_a_write_off_of_a_standing_break_is_applied() -> None:
    assert judged(rows(("R1", "write_off", "bank", "B9", None, "BANK_ERROR"))) == {"R1": (STATUS_APPLIED, None)}


def test_a_reverse_of_a_resolution_in_force_is_applied() -> None:
    assert judged(rows(("R2", "reverse", None, None, None, None, "R-OLD"))) == {"R2": (STATUS_APPLIED, None)}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (rows(("R1", "match", "ledger", "L404"), ("R1", "match", "bank", "B1")), "unknown item: ledger L404"),
        (rows(("R1", "match", "ledger", "L7"), ("R1", "match", "bank", "B1")), "ledger L7 is already matched"),
        (rows(("R1", "write_off", "bank", "B8", None, "X")), "bank B8 is already resolved by R-OLD"),
        (rows(("R1", "match", "ledger", "L3"), ("R1", "match", "bank", "B9")), "mixed accounts or currencies"),
        (rows(("R1", "match", "ledger", "L3"), ("R1", "match", "bank", "B2")), "amounts do not balance"),
        (rows(("R1", "match", "ledger", "L3", "2.50"), ("R1", "match", "bank", "B2")), "needs a reason_code"),
        (rows(("R1", "reverse", None, None, None, None, "R-NONE")), "reversal of nothing: R-NONE"),
        (rows(("R1", "match", "ledger", "L1"), ("R1", "match", "ledger", "L2")), "at least one ledger item"),
        (rows(("R1", "write_off", "bank", "B9")), "needs a reason_code"),
        (rows(("R1", "write_off", "bank", "B9", "11.00", "X")), "is not the items' total 12.00"),
        (rows(("R1", "split", "bank", "B9")), "action split is none of match, write_off, reverse"),
        (rows(("R1", "match", "ledger", "L1"), ("R1", "write_off", "bank", "B1")), "disagree on the action"),
        (rows(("R-OLD", "write_off", "bank", "B9", None, "X")), "R-OLD was applied before"),
    ],
    ids=[
        "unknown item",
        "already matched",
        "already resolved",
        "mixed accounts",
        "unbalanced",
        "write-off without reason",
        "reversal of nothing",
        "one-sided match",
        "write_off without reason",
        "write_off amount",
        "unknown action",
        "mixed actions",
        "id reused",
    ],
)
def test_an_invalid_resolution_is_rejected_whole_with_its_reason(frame: pl.DataFrame, reason: str) -> None:
    ((status, why),) = judged(frame).values()
    assert status == STATUS_REJECTED and reason in why


def test_one_rejected_resolution_leaves_the_rest_of_the_file_applied() -> None:
    frame = rows(
        ("R1", "match", "ledger", "L404"),
        ("R1", "match", "bank", "B1"),
        ("R2", "write_off", "bank", "B9", None, "BANK_ERROR"),
    )
    verdicts = judged(frame)
    assert verdicts["R1"][0] == STATUS_REJECTED and verdicts["R2"] == (STATUS_APPLIED, None)


def test_an_item_named_by_two_resolutions_belongs_to_the_first_in_file_order() -> None:
    frame = rows(("R1", "write_off", "bank", "B9", None, "X"), ("R2", "write_off", "bank", "B9", None, "Y"))
    verdicts = judged(frame)
    assert verdicts["R1"] == (STATUS_APPLIED, None)
    assert verdicts["R2"][0] == STATUS_REJECTED and "already resolved by R1" in verdicts["R2"][1]


def test_a_resolution_reversed_twice_in_a_day_is_undone_once() -> None:
    frame = rows(("R2", "reverse", None, None, None, None, "R-OLD"), ("R3", "reverse", None, None, None, None, "R-OLD"))
    verdicts = judged(frame)
    assert verdicts["R2"] == (STATUS_APPLIED, None)
    assert verdicts["R3"][0] == STATUS_REJECTED and "already reversed by R2" in verdicts["R3"][1]


def test_judging_the_same_rows_twice_gives_identical_verdicts() -> None:
    frame = rows(("R1", "match", "ledger", "L1"), ("R1", "match", "ledger", "L2"), ("R1", "match", "bank", "B1"))
    first = judge_resolutions(frame.lazy(), ITEMS.lazy(), APPLIED.lazy(), DAY).collect()
    assert first.equals(judge_resolutions(frame.lazy(), ITEMS.lazy(), APPLIED.lazy(), DAY).collect())


def item_fields(states: pl.DataFrame, standing: set[str] = frozenset()) -> pl.DataFrame:
    """The named items' fields as the match stage hands them over: source, ITEM_SCHEMA and `standing`."""
    return states.select(
        "source",
        "txn_id",
        "account_id",
        "currency",
        pl.lit(DAY).alias("booking_date"),
        "amount",
        pl.lit(None, pl.String).alias("reference_norm"),
        pl.lit(DAY).alias("origin_date"),
        pl.col("txn_id").is_in(list(standing)).alias("standing"),
    ).cast({"booking_date": pl.Date, "origin_date": pl.Date})


def test_an_n_to_m_match_is_one_row_per_item_pairing_with_its_written_off_difference() -> None:
    # 60 + 40 in the ledger against 97.50 at the bank: 2.50 written off as a fee.
    frame = rows(
        ("R1", "match", "ledger", "L1", "2.50", "BANK_FEE"),
        ("R1", "match", "ledger", "L2"),
        ("R1", "match", "bank", "B2"),
    )
    verdicts = judge_resolutions(frame.lazy(), ITEMS.lazy(), APPLIED.lazy(), DAY).collect()
    nothing_held = pl.DataFrame(schema=HELD_ITEM_SCHEMA)
    moved = resolved_items(verdicts, frame, item_fields(ITEMS, standing={"L2"}), nothing_held, DAY)
    assert moved.select("txn_id", "action", "revived").rows() == [
        ("B2", "match", False), ("L1", "match", False), ("L2", "match", True)
    ]  # fmt: skip
    matches = manual_matches(verdicts, moved, DAY)
    assert matches.schema == pl.Schema(MATCH_SCHEMA)
    assert matches.select("match_id", "ledger_txn_id", "bank_txn_id", "ledger_amount", "bank_amount").rows() == [
        ("manual:R1", "L1", "B2", Decimal("60.00"), Decimal("97.50")),
        ("manual:R1", "L2", None, Decimal("40.00"), None),
    ]
    assert set(matches["write_off_amount"]) == {Decimal("2.50")} and set(matches["resolution_id"]) == {"R1"}


def test_a_reverse_gives_back_the_items_of_the_resolution_it_undoes() -> None:
    held = item_fields(ITEMS.filter(pl.col("txn_id").is_in(["L3", "B1"]))).drop("standing")
    in_force = held.with_columns(resolution_id=pl.lit("R-OLD"), action=pl.lit("match"))
    frame = rows(("R2", "reverse", None, None, None, None, "R-OLD"))
    verdicts = judge_resolutions(frame.lazy(), ITEMS.lazy(), APPLIED.lazy(), DAY).collect()
    assert verdicts["status"].to_list() == [STATUS_APPLIED]
    moved = resolved_items(verdicts, frame, item_fields(ITEMS), in_force.select(list(HELD_ITEM_SCHEMA)), DAY)
    assert moved.select("resolution_id", "action", "txn_id", "revived").rows() == [
        ("R2", "reverse", "B1", True), ("R2", "reverse", "L3", True)
    ]  # fmt: skip
    assert manual_matches(verdicts, moved.filter(pl.col("action") == "match"), DAY).is_empty()


def test_a_resolution_refused_for_its_own_reasons_claims_no_item_from_a_later_one() -> None:
    frame = rows(
        ("R1", "write_off", "ledger", "L1"),  # no reason_code: refused
        ("R2", "write_off", "ledger", "L1", None, "DUPLICATE"),
        ("R3", "write_off", "ledger", "L1", None, "DUPLICATE"),
    )
    verdicts = judged(frame)
    assert verdicts["R1"] == (STATUS_REJECTED, "a write-off needs a reason_code")
    assert verdicts["R2"] == (STATUS_APPLIED, None)
    assert verdicts["R3"] == (STATUS_REJECTED, "ledger L1 is already resolved by R2 (earlier in the day's files)")
