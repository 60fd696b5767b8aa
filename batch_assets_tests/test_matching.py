"""The matching engine on small hand-written days: each pass, ties, references, groups, carry, expiry, ageing;
and properties on random days: the invariants hold and input order does not matter."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_assets.transforms.exceptions import classify, exceptions
from batch_assets.transforms.matching import ITEM_SCHEMA, match_items, open_items
from batch_assets.transforms.summary import ALL, account_figures, roll_up

pytestmark = pytest.mark.unit

D = date(2026, 11, 10)


def items(*rows: tuple) -> pl.DataFrame:
    """(txn_id, amount, reference_norm, days_before_D[, account]) -> items staged on their booking date."""
    records = []
    for row in rows:
        txn_id, amount, reference, back, *account = row
        booked = D - timedelta(days=back)
        records.append(
            {
                "txn_id": txn_id,
                "account_id": account[0] if account else "A",
                "currency": "EUR",
                "booking_date": booked,
                "amount": Decimal(amount),
                "reference_norm": reference,
                "origin_date": booked,
            }
        )
    return pl.DataFrame(records, schema=ITEM_SCHEMA)


def pairs(ledger: pl.DataFrame, bank: pl.DataFrame, tolerance: int = 2) -> list[tuple[str, str, str]]:
    found = match_items(ledger, bank, D, tolerance)
    return sorted(found.select("match_pass", "ledger_txn_id", "bank_txn_id").rows())


def test_exact_pass_pairs_equal_amount_and_reference_whatever_the_dates() -> None:
    ledger = items(("L1", "10.00", "INV1", 4), ("L2", "10.00", "INV2", 0))
    bank = items(("B1", "10.00", "INV1", 0), ("B2", "10.00", "INV2", 0))
    assert pairs(ledger, bank) == [("exact", "L1", "B1"), ("exact", "L2", "B2")]


def test_exact_ties_pair_in_booking_date_then_txn_id_order() -> None:
    ledger = items(("L2", "5.00", "R", 1), ("L1", "5.00", "R", 1), ("L0", "5.00", "R", 0))
    bank = items(("B9", "5.00", "R", 0), ("B3", "5.00", "R", 2))
    assert pairs(ledger, bank) == [("exact", "L1", "B3"), ("exact", "L2", "B9")]


def test_amount_date_pass_needs_dates_within_tolerance() -> None:
    ledger = items(("L1", "7.00", None, 2), ("L2", "8.00", None, 3), ("L3", "9.00", "X", 0))
    bank = items(("B1", "7.00", "Y", 0), ("B2", "8.00", None, 0), ("B3", "9.00", None, 0))
    assert pairs(ledger, bank) == [("amount_date", "L1", "B1"), ("amount_date", "L3", "B3")]
    assert pairs(ledger, bank, tolerance=3) == [
        ("amount_date", "L1", "B1"),
        ("amount_date", "L2", "B2"),
        ("amount_date", "L3", "B3"),
    ]


def test_amount_date_ties_take_the_earliest_free_bank_item_within_tolerance() -> None:
    ledger = items(("L1", "3.00", None, 4), ("L2", "3.00", None, 1), ("L3", "3.00", None, 0))
    bank = items(("B1", "3.00", None, 0), ("B2", "3.00", None, 2), ("B3", "3.00", None, 1))
    # L1 (day -4) reaches only B2 (day -2); L2 takes the earliest left, B3 (day -1); L3 gets B1.
    assert pairs(ledger, bank) == [
        ("amount_date", "L1", "B2"),
        ("amount_date", "L2", "B3"),
        ("amount_date", "L3", "B1"),
    ]


def test_null_and_nonref_references_never_match_exactly() -> None:
    # Normalisation turns NONREF into null before matching; two nulls are not equal references.
    ledger = items(("L1", "4.00", None, 0))
    bank = items(("B1", "4.00", None, 5))
    assert pairs(ledger, bank) == []
    assert pairs(ledger, items(("B1", "4.00", None, 1))) == [("amount_date", "L1", "B1")]


def test_aggregate_pass_matches_groups_that_sum_exactly() -> None:
    ledger = items(
        ("L1", "1.10", "BATCH", 1), ("L2", "2.20", "BATCH", 1), ("L3", "3.30", "BATCH", 1), ("L4", "9.99", "OTHER", 1)
    )
    bank = items(("B1", "6.60", "BATCH", 0))
    found = match_items(ledger, bank, D, 2)
    assert found.select("match_pass", "ledger_txn_id", "bank_txn_id").rows() == [
        ("aggregate", "L1", "B1"),
        ("aggregate", "L2", "B1"),
        ("aggregate", "L3", "B1"),
    ]
    assert found["match_id"].n_unique() == 1
    assert sum(found["ledger_amount"]) == found["bank_amount"][0] == Decimal("6.60")


def test_aggregate_groups_that_do_not_sum_or_differ_in_date_stay_open() -> None:
    ledger = items(("L1", "1.10", "BATCH", 1), ("L2", "2.20", "BATCH", 1), ("L3", "3.30", "BATCH", 2))
    bank = items(("B1", "6.60", "BATCH", 0))
    assert pairs(ledger, bank) == []


def test_a_later_pass_sees_only_what_earlier_passes_left() -> None:
    ledger = items(("L1", "5.00", "R", 0), ("L2", "5.00", None, 0))
    bank = items(("B1", "5.00", "R", 0))
    assert pairs(ledger, bank) == [("exact", "L1", "B1")]


def test_items_in_other_accounts_or_currencies_never_match() -> None:
    ledger = items(("L1", "5.00", "R", 0, "A"))
    bank = items(("B1", "5.00", "R", 0, "B"))
    assert pairs(ledger, bank) == []
    assert pairs(ledger, bank.with_columns(pl.lit("A").alias("account_id"), pl.lit("USD").alias("currency"))) == []


def test_open_items_carry_until_carry_days_then_expire() -> None:
    ledger = items(("L_new", "1.00", None, 0), ("L_old", "2.00", None, 4), ("L_oldest", "3.00", None, 5))
    bank = items(("B1", "9.00", None, 0))
    left = open_items(ledger, bank, match_items(ledger, bank, D, 2), D, carry_days=5)
    assert left.select("txn_id", "age_days", "carried").sort("txn_id").rows() == [
        ("B1", 0, True),
        ("L_new", 0, True),
        ("L_old", 4, True),
        ("L_oldest", 5, False),
    ]


def test_exceptions_classify_mismatches_missing_items_and_breaks() -> None:
    ledger = items(("L1", "10.00", "INV", 3), ("L2", "4.00", None, 0), ("L3", "8.00", None, 5))
    bank = items(("B1", "10.50", "INV", 0), ("B2", "6.00", None, 4))
    matched = match_items(ledger, bank, D, 2)
    classified = classify(open_items(ledger, bank, matched, D, carry_days=5), grace_days=2)
    rows = {r["txn_id"]: r for r in classified.to_dicts()}
    assert (rows["L1"]["category"], rows["L1"]["counterpart_txn_id"], rows["L1"]["difference"]) == (
        "amount_mismatch",
        "B1",
        Decimal("0.50"),
    )
    assert rows["B1"]["category"] == "amount_mismatch" and not rows["B1"]["is_break"]
    assert (rows["L2"]["category"], rows["L2"]["is_break"]) == ("missing_in_bank", False)
    assert (rows["B2"]["category"], rows["B2"]["is_break"]) == ("missing_in_ledger", True)
    assert (rows["L3"]["status"], rows["L3"]["is_break"]) == ("expired", True)
    assert sorted(exceptions(classified)["txn_id"]) == ["B1", "B2", "L1", "L3"]


def test_summary_counts_rates_breaks_and_ageing_buckets() -> None:
    ledger = items(("L1", "10.00", "INV", 0), ("L2", "4.00", None, 0), ("L3", "8.00", None, 4))
    bank = items(("B1", "10.00", "INV", 0), ("B2", "6.00", None, 3))
    matched = match_items(ledger, bank, D, 2)
    classified = classify(open_items(ledger, bank, matched, D, carry_days=5), grace_days=2)
    standing = pl.DataFrame(
        {
            "account_id": ["A", "A"],
            "currency": ["EUR", "EUR"],
            "booking_date": [D - timedelta(days=8), D - timedelta(days=30)],
        }
    )
    summary = roll_up(D, account_figures(D, ledger, bank, matched, classified, standing))
    account = summary.filter(account_id="A").row(0, named=True)
    assert (account["ledger_items"], account["bank_items"], account["matches_exact"]) == (3, 2, 1)
    assert account["match_rate"] == pytest.approx(2 / 5)
    assert (account["breaks_ledger"], account["breaks_bank"]) == (1, 1)
    assert (account["break_value_ledger"], account["break_value_bank"]) == (Decimal("8.00"), Decimal("6.00"))
    assert (account["age_0_2"], account["age_3_5"], account["age_6_10"], account["age_over_10"]) == (1, 2, 1, 1)
    total = summary.filter(account_id=ALL, currency=ALL).row(0, named=True)
    assert total["ledger_items"] == 3 and total["break_value_ledger"] is None
    assert summary.filter(account_id=ALL, currency="EUR")["break_value_bank"][0] == Decimal("6.00")


# -- properties ------------------------------------------------------------------------------------------

item_rows = st.lists(
    st.tuples(
        st.sampled_from(["1.00", "2.00", "3.00", "5.50", "-1.00"]),
        st.sampled_from([None, "R1", "R2"]),
        st.integers(0, 6),
        st.sampled_from(["A", "B"]),
    ),
    max_size=25,
)


def random_items(prefix: str, rows: list[tuple]) -> pl.DataFrame:
    return items(*[(f"{prefix}{i:03d}", amount, ref, back, acct) for i, (amount, ref, back, acct) in enumerate(rows)])


@settings(max_examples=60, deadline=None)
@given(ledger_rows=item_rows, bank_rows=item_rows, seed=st.integers(0, 1000))
def test_invariants_hold_and_order_does_not_matter(ledger_rows: list, bank_rows: list, seed: int) -> None:
    ledger, bank = random_items("L", ledger_rows), random_items("B", bank_rows)
    matched = match_items(ledger, bank, D, 2)
    left = open_items(ledger, bank, matched, D, carry_days=5)

    # No item is in two matches, and every match balances to the cent.
    assert matched["ledger_txn_id"].is_unique().all()
    per_match = matched.group_by("match_id").agg(
        pl.col("ledger_amount").sum(), pl.col("bank_amount").first(), pl.col("bank_txn_id").n_unique()
    )
    assert (per_match["ledger_amount"] == per_match["bank_amount"]).all()
    assert (per_match["bank_txn_id"] == 1).all()
    assert matched.group_by("bank_txn_id").agg(pl.col("match_id").n_unique())["match_id"].max() in (None, 1)
    # Items are conserved on each side: candidates = matched + carried + expired.
    assert ledger.height == matched["ledger_txn_id"].n_unique() + left.filter(source="ledger").height
    assert bank.height == matched["bank_txn_id"].n_unique() + left.filter(source="bank").height
    # Matched items only pair within an account and currency.
    assert (
        matched.join(ledger, left_on="ledger_txn_id", right_on="txn_id")
        .filter(pl.col("account_id") != pl.col("account_id_right"))
        .is_empty()
    )

    shuffled = match_items(
        ledger.sample(fraction=1, shuffle=True, seed=seed), bank.sample(fraction=1, shuffle=True, seed=seed + 1), D, 2
    )
    assert shuffled.equals(matched)
    assert open_items(ledger.reverse(), bank.reverse(), shuffled, D, 5).equals(left)
