"""Ground truth per business date: the true pairs and groups, whether matching can find them, and the bad rows."""

from __future__ import annotations

import numpy as np
import polars as pl

from batch_assets.generator import plan as p
from batch_assets.generator import render
from batch_assets.generator import vocabulary as vocab
from batch_assets.generator.strings import dates, money, pick
from batch_assets.transforms import contract
from batch_assets.transforms.references import normalise_reference

# The matching defaults of RECONCILIATION.md; findability is judged against them.
CARRY_DAYS = 5
DATE_TOLERANCE_DAYS = 2

ONE_TO_ONE = "one_to_one"
MANY_TO_ONE = "many_to_one"
PASS_EXACT = "exact"
PASS_AMOUNT_DATE = "amount_date"
PASS_AGGREGATE = "aggregate"

REASON_LEDGER_QUARANTINED = "ledger row quarantined"
REASON_BANK_QUARANTINED = "bank row quarantined"
REASON_AMOUNT = "amount differs"
REASON_SUM = "ledger items do not sum to the bank amount"
REASON_CARRY = "lag beyond carry days"
REASON_LAG_DIFFERENT = "lag beyond date tolerance and references differ"
REASON_LAG_NULL = "lag beyond date tolerance and reference null"
REASON_REFERENCES_DIFFER = "references differ"
REASON_LEDGER_REFERENCE_NULL = "ledger reference null"
REASON_BANK_REFERENCE_NULL = "bank reference null"

PAIRS_SCHEMA: dict[str, pl.DataType] = {
    "group_id": pl.String(),
    "kind": pl.String(),
    "ledger_txn_id": pl.String(),
    "bank_txn_id": pl.String(),
    "ledger_date": pl.Date(),
    "bank_date": pl.Date(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "ledger_amount": contract.MONEY,
    "bank_amount": contract.MONEY,
    "findable": pl.Boolean(),
    "expected_pass": pl.String(),
    "reason": pl.String(),
}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "file_name": pl.String(),
    "line_number": pl.Int64(),
    "txn_id": pl.String(),
    "rule": pl.String(),
}


def quarantine(plan: p.Plan, side: p.Side, day: int, lay: render.DayLayout) -> pl.DataFrame:
    """Every row of the day's files of one source that must be quarantined, with the rule it breaks first."""
    rows = side.rows(day)
    first = int(side.starts[day])
    bad = np.flatnonzero(side.invalid_rule[rows] >= 0)
    copies = np.flatnonzero(lay.copy)
    written = np.concatenate([lay.written_position(bad), copies])
    original = np.concatenate([bad, lay.order[copies]])
    duplicate = contract.RULES.index(contract.RULE_DUPLICATE_TXN_ID)
    rule = np.concatenate([side.invalid_rule[rows][bad], np.full(len(copies), duplicate)])
    file_index, line = lay.locate(written)
    txn_id = render.txn_ids(plan, side, first + original)
    # A row whose missing field is txn_id has none in the file.
    no_id = np.flatnonzero(
        (rule == render.MISSING)
        & (render.missing_field(side.invalid_variant[rows][original]) == contract.REQUIRED_COLUMNS.index("txn_id"))
    )
    if len(no_id):
        txn_id = txn_id.scatter(no_id, None)
    frame = pl.DataFrame(
        {
            "source": pl.Series([side.source] * len(written), dtype=pl.String),
            "file_name": pick(lay.file_names, file_index, "file_name").cast(pl.String),
            "line_number": pl.Series(line, dtype=pl.Int64),
            "txn_id": txn_id,
            "rule": pick(contract.RULES, rule, "rule").cast(pl.String),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return frame.sort("file_name", "line_number")


def pairs(plan: p.Plan, day: int) -> pl.DataFrame:
    """One row per ledger item of every pair or group whose later side is booked on `day`."""
    ledger, bank = plan.ledger, plan.bank
    delivered = plan.pair_bank >= 0
    pair_ids = np.flatnonzero(delivered & (bank.day[np.where(delivered, plan.pair_bank, 0)] == day))
    sent = plan.batch_bank >= 0
    batch_ids = np.flatnonzero(sent & (bank.day[np.where(sent, plan.batch_bank, 0)] == day))
    sizes = np.diff(np.append(plan.batch_start, len(plan.batch_members)))[batch_ids]
    member_slots = np.repeat(plan.batch_start[batch_ids] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    member_slots = member_slots + np.arange(int(sizes.sum()))
    n_pairs, n_members = len(pair_ids), len(member_slots)

    ledger_row = np.concatenate([plan.pair_ledger[pair_ids], plan.batch_members[member_slots]])
    bank_row = np.concatenate([plan.pair_bank[pair_ids], np.repeat(plan.batch_bank[batch_ids], sizes)])
    group = np.concatenate([np.arange(n_pairs), n_pairs + np.repeat(np.arange(len(batch_ids)), sizes)])
    is_batch = np.arange(n_pairs + n_members) >= n_pairs

    # Group-level facts, broadcast back to the members.
    def any_in_group(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values.astype(np.int64), minlength=n_pairs + len(batch_ids))[group] > 0

    ledger_quarantined = any_in_group(ledger.invalid_rule[ledger_row] >= 0)
    bank_quarantined = bank.invalid_rule[bank_row] >= 0
    ledger_cents = ledger.cents[ledger_row]
    bank_cents = bank.cents[bank_row]
    # Float sums of whole cents are exact far beyond any amount here (below 2**53).
    group_sum = np.rint(np.bincount(group, weights=ledger_cents.astype(np.float64))).astype(np.int64)
    balanced = group_sum[group] == bank_cents
    lag = bank.day[bank_row] - ledger.day[ledger_row]

    ledger_txn = render.txn_ids(plan, ledger, ledger_row, "ledger_txn_id")
    bank_txn = render.txn_ids(plan, bank, bank_row, "bank_txn_id")
    frame = pl.DataFrame(
        [
            ledger_txn,
            bank_txn,
            dates(plan.epoch_day(ledger.day[ledger_row]), "ledger_date"),
            dates(plan.epoch_day(bank.day[bank_row]), "bank_date"),
            pick(plan.account_ids, ledger.account[ledger_row], "account_id").cast(pl.String),
            pick(vocab.CURRENCIES, plan.account_currency[ledger.account[ledger_row]], "currency").cast(pl.String),
            money(ledger_cents, "ledger_amount"),
            money(bank_cents, "bank_amount"),
            render.side_references(plan, ledger, ledger_row, "ledger_reference"),
            render.side_references(plan, bank, bank_row, "bank_reference"),
            pl.Series("group", group),
            pl.Series("is_batch", is_batch),
            pl.Series("ledger_quarantined", ledger_quarantined),
            pl.Series("bank_quarantined", bank_quarantined),
            pl.Series("balanced", balanced),
            pl.Series("lag", lag),
        ]
    )
    frame = frame.with_columns(
        normalise_reference(pl.col("ledger_reference")).alias("ledger_norm"),
        normalise_reference(pl.col("bank_reference")).alias("bank_norm"),
    )
    ledger_null = frame["ledger_norm"].is_null().to_numpy()
    bank_null = frame["bank_norm"].is_null().to_numpy()
    same = ~ledger_null & ~bank_null & (frame["ledger_norm"] == frame["bank_norm"]).fill_null(False).to_numpy()
    # Aggregate needs every member's reference to equal the bank line's.
    frame = frame.with_columns(
        pl.Series("same_reference", same),
        pl.Series("group_ledger_null", any_in_group(ledger_null)),
        pl.Series("group_same_reference", ~any_in_group(~same)),
    )
    ln = pl.col("ledger_norm")
    bn = pl.col("bank_norm")
    lag = pl.col("lag").abs()
    one_to_one = (
        pl.when(pl.col("ledger_quarantined"))
        .then(pl.lit(REASON_LEDGER_QUARANTINED))
        .when(pl.col("bank_quarantined"))
        .then(pl.lit(REASON_BANK_QUARANTINED))
        .when(~pl.col("balanced"))
        .then(pl.lit(REASON_AMOUNT))
        .when(pl.col("same_reference") & (lag > CARRY_DAYS))
        .then(pl.lit(REASON_CARRY))
        .when(pl.col("same_reference") | (lag <= DATE_TOLERANCE_DAYS))
        .then(pl.lit(None, dtype=pl.String))
        .when(ln.is_null() | bn.is_null())
        .then(pl.lit(REASON_LAG_NULL))
        .otherwise(pl.lit(REASON_LAG_DIFFERENT))
    )
    many_to_one = (
        pl.when(pl.col("ledger_quarantined"))
        .then(pl.lit(REASON_LEDGER_QUARANTINED))
        .when(pl.col("bank_quarantined"))
        .then(pl.lit(REASON_BANK_QUARANTINED))
        .when(~pl.col("balanced"))
        .then(pl.lit(REASON_SUM))
        .when(pl.col("group_ledger_null"))
        .then(pl.lit(REASON_LEDGER_REFERENCE_NULL))
        .when(bn.is_null())
        .then(pl.lit(REASON_BANK_REFERENCE_NULL))
        .when(~pl.col("group_same_reference"))
        .then(pl.lit(REASON_REFERENCES_DIFFER))
        .when(lag > CARRY_DAYS)
        .then(pl.lit(REASON_CARRY))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    expected = (
        pl.when(pl.col("reason").is_not_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("is_batch"))
        .then(pl.lit(PASS_AGGREGATE))
        .when(pl.col("same_reference"))
        .then(pl.lit(PASS_EXACT))
        .otherwise(pl.lit(PASS_AMOUNT_DATE))
    )
    frame = (
        frame.with_columns(pl.when(pl.col("is_batch")).then(many_to_one).otherwise(one_to_one).alias("reason"))
        .with_columns(expected.alias("expected_pass"))
        .with_columns(
            pl.col("expected_pass").is_not_null().alias("findable"),
            pl.when(pl.col("is_batch")).then(pl.lit(MANY_TO_ONE)).otherwise(pl.lit(ONE_TO_ONE)).alias("kind"),
            # Named after the id that occurs once per group: a pair's ledger item, a group's bank line.
            pl.when(pl.col("is_batch"))
            .then(pl.concat_str(pl.lit("G-"), pl.col("bank_txn_id")))
            .otherwise(pl.concat_str(pl.lit("P-"), pl.col("ledger_txn_id")))
            .alias("group_id"),
        )
    )
    return frame.select(list(PAIRS_SCHEMA)).cast(PAIRS_SCHEMA)


def manifest(
    plan: p.Plan,
    day: int,
    *,
    seed: int,
    parts: int,
    files: dict[str, list[str]],
    rows: dict[str, int],
    quarantined: pl.DataFrame,
    true_pairs: pl.DataFrame,
) -> dict:
    """The day's counts, for people and for tests that want totals without reading the parquet files."""
    one = true_pairs.filter(pl.col("kind") == ONE_TO_ONE)
    many = true_pairs.filter(pl.col("kind") == MANY_TO_ONE)
    by_pass = (
        true_pairs.filter(pl.col("findable")).group_by("expected_pass").agg(pl.col("group_id").n_unique().alias("n"))
    )
    by_reason = true_pairs.filter(~pl.col("findable")).group_by("reason").agg(pl.col("group_id").n_unique().alias("n"))
    rules = quarantined.group_by("source", "rule").len()
    ledger, bank = plan.ledger, plan.bank
    day_rows = ledger.rows(day)
    open_ledger = int((ledger.kind[day_rows] == p.UNPAIRED).sum())
    return {
        "business_date": plan.date(day).isoformat(),
        "format": plan.fmt,
        "bank_format": plan.bank_format,
        "seed": seed,
        "parts": parts,
        "carry_days": CARRY_DAYS,
        "date_tolerance_days": DATE_TOLERANCE_DAYS,
        "files": files,
        "rows": rows,
        "quarantined": {
            source: dict(rules.filter(pl.col("source") == source).sort("rule").select("rule", "len").iter_rows())
            for source in contract.SOURCES
        },
        "pairs": {
            "one_to_one": one.height,
            "many_to_one_groups": many["group_id"].n_unique(),
            "many_to_one_ledger_items": many.height,
            "findable": {row["expected_pass"]: row["n"] for row in by_pass.sort("expected_pass").iter_rows(named=True)},
            "not_findable": {row["reason"]: row["n"] for row in by_reason.sort("reason").iter_rows(named=True)},
        },
        "unpaired": {
            "ledger_only": open_ledger,
            "bank_only": int((bank.kind[bank.rows(day)] == p.UNPAIRED).sum()),
            # Their bank line would land after the last generated day, so it is never delivered.
            "bank_line_after_range": int(((plan.pair_bank < 0) & (ledger.day[plan.pair_ledger] == day)).sum())
            + int(((plan.batch_bank < 0) & (plan.batch_day == day)).sum()),
        },
    }
