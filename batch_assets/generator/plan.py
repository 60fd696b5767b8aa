"""The numeric plan of a data set: every ledger item, bank line, pair, batch and perturbation, as numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import numpy as np

from batch_assets.generator import amounts
from batch_assets.generator import vocabulary as vocab
from batch_assets.generator.rates import Rates
from batch_assets.generator.strings import digits_needed
from batch_assets.transforms import contract

# What a row is. Ledger: half of a one-to-one pair, a member of a many-to-one batch, or an item the
# bank never shows. Bank: the other half of a pair, a batch's settlement line, or a line the ledger
# never booked.
ONE_TO_ONE, BATCH, UNPAIRED = 0, 1, 2

# Reference templates: invoice numbers, settlement-batch ids and (bank-only) direct-debit mandates.
REF_NONE, REF_INVOICE, REF_SETTLEMENT, REF_MANDATE = -1, 0, 1, 2
REF_PREFIXES: tuple[bytes, ...] = (b"INV", b"STL", b"MDT")

# How the bank prints a reference. The first five normalise to the ledger's reference.
VERBATIM, LOWER, MIXED, SPACED, COMPACT, PREFIXED, NONREF, NOTPROVIDED, EMPTY = range(9)
COSMETIC = (LOWER, MIXED, SPACED, COMPACT)
NO_REFERENCE = (NONREF, NOTPROVIDED, EMPTY)

ZIPF_EXPONENT = 1.0
AMOUNT_SIGMA = 1.2
MEDIAN_CENTS = 9_000  # a typical account's typical item: 90.00 EUR
BATCH_MEMBER_FRACTION = 1 / 3  # card sales are smaller than invoices
BANK_ONLY_FRACTION = 1 / 4  # fees, interest and small direct debits
BANK_ONLY_NEGATIVE = 0.6
BANK_VALUE_DATE_MISSING = 0.02
MEDIAN_FEE_CENTS = 250

# Which rules a bad row breaks, by file format, with weights. Typed Parquet (Decimal amounts, Date
# dates) cannot hold an unparsable amount or date, so Parquet files only carry the other rules.
_RULE_INDEX = {rule: i for i, rule in enumerate(contract.RULES)}
BAD_ROW_RULES: dict[str, tuple[tuple[str, float], ...]] = {
    "csv": (
        (contract.RULE_MISSING_FIELD, 0.3),
        (contract.RULE_INVALID_AMOUNT, 0.2),
        (contract.RULE_INVALID_DATE, 0.2),
        (contract.RULE_INVALID_CURRENCY, 0.15),
        (contract.RULE_BOOKING_DATE_MISMATCH, 0.15),
    ),
    "parquet": (
        (contract.RULE_MISSING_FIELD, 0.4),
        (contract.RULE_INVALID_CURRENCY, 0.3),
        (contract.RULE_BOOKING_DATE_MISMATCH, 0.3),
    ),
}
BAD_ROW_RULES["jsonl"] = BAD_ROW_RULES["csv"]
# A bank statement states every amount, date and currency in a form the reader checks (a bad one rejects the whole
# file), so the only bad row a statement can carry is a line booked on another day. A BAI2 file books all of an
# account's lines on its group's as-of date, so it carries none.
BAD_ROW_RULES["camt053"] = BAD_ROW_RULES["mt940"] = ((contract.RULE_BOOKING_DATE_MISMATCH, 1.0),)
BAD_ROW_RULES["bai2"] = ()
# invalid_variant picks the field, the broken value or the wrong date; 60 divides evenly by every list.
VARIANTS = 60

_STREAMS = ("accounts", "structure", "amounts", "lag", "references", "text", "bank_order", "ledger_bad", "bank_bad")


@dataclass
class Side:
    """One source's rows over the whole range, in file order (day by day, then line by line).

    Duplicated copies are not rows here: `duplicate` marks a row that is sent twice, and the copy goes
    right after the row at `duplicate_after` (a position within the same day).
    """

    source: str
    prefix: bytes  # of the txn ids: L or B
    day: np.ndarray  # business day index of each row (= its booking day)
    starts: np.ndarray  # first row of each day, plus the end
    kind: np.ndarray  # ONE_TO_ONE, BATCH or UNPAIRED
    link: np.ndarray  # the pair or batch a row belongs to (index into Plan.pair_* / batch_*), else -1
    account: np.ndarray
    cents: np.ndarray  # signed amount in cents
    value_day: np.ndarray  # -1: no value date
    ref_template: np.ndarray  # REF_*; REF_NONE: no reference at all
    ref_year: np.ndarray
    ref_number: np.ndarray
    ref_variant: np.ndarray  # how the reference is printed: VERBATIM ... EMPTY
    counterparty: np.ndarray  # index into the side's name list, -1: none
    description: np.ndarray
    # Index into contract.RULES of the rule a bad row breaks; -1 for a good row.
    invalid_rule: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    invalid_variant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # which field / bad value
    duplicate: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    duplicate_after: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.day)

    def rows(self, day: int) -> slice:
        return slice(int(self.starts[day]), int(self.starts[day + 1]))

    def count(self, day: int) -> int:
        return int(self.starts[day + 1] - self.starts[day])


@dataclass
class Plan:
    """Everything the files and the ground truth are rendered from."""

    start: date
    days: int
    fmt: str
    account_ids: list[str]
    account_currency: np.ndarray
    ledger: Side
    bank: Side
    pair_ledger: np.ndarray
    pair_bank: np.ndarray
    pair_mismatch: np.ndarray
    batch_day: np.ndarray
    batch_bank: np.ndarray
    batch_cents: np.ndarray
    batch_members: np.ndarray
    batch_start: np.ndarray
    txn_width: int
    ref_width: int
    bank_format: str | None = None

    def date(self, day: int) -> date:
        """The calendar date of a day index; -1 and `days` are the days around the range."""
        return self.start + timedelta(days=int(day))

    def epoch_day(self, day: np.ndarray | int) -> np.ndarray:
        return np.asarray(day, dtype=np.int64) + (self.start - date(1970, 1, 1)).days

    @cached_property
    def date_text(self) -> list[str]:
        """ISO text of every day index from -1 to `days`, at position index + 1."""
        return [self.date(d).isoformat() for d in range(-1, self.days + 1)]

    @cached_property
    def _compact_dates(self) -> np.ndarray:
        return np.array([int(text.replace("-", "")) for text in self.date_text], dtype=np.int64)

    def compact_date(self, day: np.ndarray) -> np.ndarray:
        """YYYYMMDD as an integer per day index, for txn ids."""
        return self._compact_dates[np.asarray(day) + 1]

    def side(self, source: str) -> Side:
        return self.ledger if source == "ledger" else self.bank

    def format_of(self, source: str) -> str:
        """The file format of a source: the bank side may be sent as statements (camt053, mt940, bai2)."""
        return self.bank_format if source == "bank" and self.bank_format else self.fmt


def _stochastic_round(rng: np.random.Generator, expected: float) -> int:
    # Keeps the long-run rate exact even when rows * rate is below one per day.
    return int(np.floor(expected + rng.random()))


def build_plan(
    *, start: date, days: int, rows: int, seed: int, fmt: str, rates: Rates, bank_format: str | None = None
) -> Plan:
    """Draw the whole data set. The same arguments always give the same plan."""
    # One independent stream per concern, so that changing one rate does not reshuffle everything else.
    seeds = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    rng = {name: np.random.default_rng(s) for name, s in zip(_STREAMS, seeds, strict=True)}
    years = np.array([(start + timedelta(days=d)).year for d in range(days + 1)], dtype=np.int16)

    # Accounts: one currency each, Zipf-like activity. Busy accounts move bigger money, which also
    # keeps their amounts from crowding into the same few cents.
    r = rng["accounts"]
    n_accounts = max(20, rows // 200)
    share = np.asarray(vocab.CURRENCY_SHARE) / sum(vocab.CURRENCY_SHARE)
    currency = np.minimum(np.searchsorted(np.cumsum(share), (np.arange(n_accounts) + 0.5) / n_accounts), len(share) - 1)
    currency = r.permutation(currency)
    weight = (r.permutation(n_accounts) + 1.0) ** -ZIPF_EXPONENT
    weight /= weight.sum()
    median_cents = (
        np.exp(r.normal(np.log(MEDIAN_CENTS), 0.8, n_accounts))
        * (n_accounts * weight) ** 0.35
        * np.asarray(vocab.CURRENCY_SCALE)[currency]
    )
    step_cents = np.asarray(vocab.CURRENCY_STEP_CENTS, dtype=np.int64)[currency]
    account_ids = [f"ACC-{i + 1:06d}" for i in range(n_accounts)]

    def sample_accounts(generator: np.random.Generator, n: int) -> np.ndarray:
        # Multinomial counts, then a shuffle: twice as fast as a searchsorted per row at millions of rows.
        counts = generator.multinomial(n, weight)
        accounts = np.repeat(np.arange(n_accounts, dtype=np.int32), counts)
        generator.shuffle(accounts)
        return accounts

    # Day structure: which ledger rows are pair halves, batch members or unpaired.
    r = rng["structure"]
    mean_size = rates.batch_mean_size
    kinds, links, batch_sizes, batch_days, bank_only_days = [], [], [], [], []
    n_pairs = n_batches = 0
    for d in range(days):
        unpaired = min(rows, _stochastic_round(r, rows * rates.ledger_only))
        bank_only = _stochastic_round(r, rows * rates.bank_only)
        # Batches are `rates.batch` of the *bank* lines, and each batch eats mean_size ledger rows.
        expected = rates.batch * rows * (1 - rates.ledger_only + rates.bank_only) / (1 + rates.batch * (mean_size - 1))
        sizes = r.integers(rates.batch_min, rates.batch_max + 1, _stochastic_round(r, expected))
        sizes = sizes[np.cumsum(sizes) <= rows - unpaired]
        members = int(sizes.sum())
        paired = rows - members - unpaired
        kind = np.repeat(np.array([BATCH, UNPAIRED, ONE_TO_ONE], np.int8), [members, unpaired, paired])
        r.shuffle(kind)
        link = np.full(rows, -1, dtype=np.int64)
        link[kind == ONE_TO_ONE] = n_pairs + np.arange(paired)
        member_rows = np.flatnonzero(kind == BATCH)
        r.shuffle(member_rows)
        link[member_rows] = n_batches + np.repeat(np.arange(len(sizes)), sizes)
        kinds.append(kind)
        links.append(link)
        batch_sizes.append(sizes)
        batch_days.append(np.full(len(sizes), d, np.int64))
        bank_only_days.append(np.full(bank_only, d, np.int64))
        n_pairs += paired
        n_batches += len(sizes)
    n_ledger = days * rows
    kind = np.concatenate(kinds) if kinds else np.zeros(0, np.int8)
    link = np.concatenate(links) if links else np.zeros(0, np.int64)
    ledger_day = np.repeat(np.arange(days, dtype=np.int32), rows)
    batch_size = np.concatenate(batch_sizes).astype(np.int64)
    batch_day = np.concatenate(batch_days)
    bo_day = np.concatenate(bank_only_days)
    n_bank_only = len(bo_day)
    pair_ledger = np.flatnonzero(kind == ONE_TO_ONE)
    member_rows = np.flatnonzero(kind == BATCH)
    batch_members = member_rows[np.argsort(link[member_rows], kind="stable")]
    batch_start = (np.cumsum(batch_size) - batch_size).astype(np.int64)
    single = kind != BATCH

    # Accounts, signs and raw amounts.
    r = rng["amounts"]
    account = np.empty(n_ledger, dtype=np.int32)
    account[single] = sample_accounts(r, int(single.sum()))
    batch_account = sample_accounts(r, n_batches)
    account[batch_members] = np.repeat(batch_account, batch_size)
    negative = np.empty(n_ledger, dtype=bool)
    negative[single] = _uniform(r, int(single.sum())) < rates.negative
    batch_negative = r.random(n_batches) < rates.negative_batch
    negative[batch_members] = np.repeat(batch_negative, batch_size)
    scale = np.where(single, 1.0, BATCH_MEMBER_FRACTION)
    ledger_steps = _draw_steps(r, median_cents[account] * scale, step_cents[account])
    bo_account = sample_accounts(r, n_bank_only)
    bo_negative = r.random(n_bank_only) < BANK_ONLY_NEGATIVE
    bo_steps = _draw_steps(r, median_cents[bo_account] * BANK_ONLY_FRACTION, step_cents[bo_account])

    # Every amount unique within its (account, sign), the derived batch sums and fee-hit amounts too.
    ledger_group = amounts.group_of(account, negative)
    mismatch = _uniform(r, len(pair_ledger)) < rates.amount_mismatch
    mismatch_rows = pair_ledger[mismatch]
    fee_cents = np.exp(r.normal(np.log(MEDIAN_FEE_CENTS), 0.7, len(mismatch_rows)))
    fee_cents *= np.asarray(vocab.CURRENCY_SCALE)[currency[account[mismatch_rows]]]
    fee_steps = np.maximum(1, np.rint(fee_cents / step_cents[account[mismatch_rows]])).astype(np.int64)
    # Banks deduct their fee from incoming money and add it to outgoing money.
    fee_sign = np.where(negative[mismatch_rows], 1, -1)
    all_steps, batch_steps, mismatch_steps = amounts.settle(
        np.concatenate([ledger_group, amounts.group_of(bo_account, bo_negative)]),
        np.concatenate([ledger_steps, bo_steps]),
        batch_members=batch_members,
        batch_start=batch_start,
        batch_group=amounts.group_of(batch_account, batch_negative),
        mismatch_items=mismatch_rows,
        fee_steps=fee_steps,
        fee_sign=fee_sign,
    )
    ledger_steps, bo_steps = all_steps[:n_ledger], all_steps[n_ledger:]
    sign = np.where(negative, -1, 1)
    ledger_cents = ledger_steps * step_cents[account] * sign
    batch_cents = batch_steps * step_cents[batch_account] * np.where(batch_negative, -1, 1)
    pair_bank_cents = ledger_cents[pair_ledger]
    pair_bank_cents[mismatch] = mismatch_steps * step_cents[account[mismatch_rows]] * sign[mismatch_rows]
    bo_cents = bo_steps * step_cents[bo_account] * np.where(bo_negative, -1, 1)

    # Bank posting lag; a line that would land after the range is never delivered.
    r = rng["lag"]
    pair_bank_day = ledger_day[pair_ledger] + _draw_lag(r, len(pair_ledger), rates)
    batch_bank_day = batch_day + _draw_lag(r, n_batches, rates)

    # References. The ledger numbers invoices in booking order; the bank may print them differently.
    r = rng["references"]
    ref_template = np.where(single, REF_INVOICE, REF_SETTLEMENT).astype(np.int8)
    ref_number = np.where(single, np.arange(1, n_ledger + 1), link + 1)
    ref_year = years[ledger_day]  # batch members are booked on their batch's day
    ref_missing = single & (_uniform(r, n_ledger) < rates.ledger_reference_missing)
    ref_missing[mismatch_rows] = False  # an amount mismatch is, by definition, found by its reference
    pair_variant = _draw_variant(r, len(pair_ledger), rates)
    pair_variant[mismatch & (pair_variant >= PREFIXED)] = VERBATIM
    batch_variant = _draw_variant(r, n_batches, rates)
    u = r.random(n_bank_only)
    bo_variant = np.where(u < 0.4, VERBATIM, np.where(u < 0.8, NONREF, EMPTY)).astype(np.int8)

    # Text.
    r = rng["text"]
    ledger_counterparty = r.integers(0, len(vocab.COUNTERPARTIES), n_ledger).astype(np.int16)
    pick = r.integers(0, 12, n_ledger, dtype=np.int8)  # 12 splits evenly over 2 credit and 4 debit texts
    credit = np.asarray(vocab.LEDGER_CREDIT, dtype=np.int8)[pick % len(vocab.LEDGER_CREDIT)]
    debit = np.asarray(vocab.LEDGER_DEBIT, dtype=np.int8)[pick % len(vocab.LEDGER_DEBIT)]
    ledger_description = np.where(single, np.where(negative, debit, credit), vocab.LEDGER_CARD).astype(np.int8)
    batch_acquirer = r.integers(0, len(vocab.ACQUIRERS), n_batches)
    bo_description = np.asarray(vocab.BANK_ONLY)[r.integers(0, len(vocab.BANK_ONLY), n_bank_only)]

    ledger = Side(
        source="ledger",
        prefix=b"L",
        day=ledger_day,
        starts=np.arange(days + 1, dtype=np.int64) * rows,
        kind=kind,
        link=link,
        account=account,
        cents=ledger_cents,
        value_day=ledger_day,
        ref_template=np.where(ref_missing, REF_NONE, ref_template).astype(np.int8),
        ref_year=ref_year,
        ref_number=ref_number,
        ref_variant=np.full(n_ledger, VERBATIM, np.int8),
        counterparty=ledger_counterparty,
        description=ledger_description,
    )

    # Bank lines: delivered pair halves, delivered batch lines and bank-only lines, shuffled per day.
    r = rng["bank_order"]
    pair_sent = np.flatnonzero(pair_bank_day < days)
    batch_sent = np.flatnonzero(batch_bank_day < days)
    line_kind = np.repeat(
        np.array([ONE_TO_ONE, BATCH, UNPAIRED], np.int8), [len(pair_sent), len(batch_sent), n_bank_only]
    )
    line_link = np.concatenate([pair_sent, batch_sent, np.arange(n_bank_only)]).astype(np.int64)
    # Small integers sort by radix in numpy's stable sort: days fit in int16 for 89 years.
    line_day = np.concatenate([pair_bank_day[pair_sent], batch_bank_day[batch_sent], bo_day]).astype(np.int16)
    shuffled = r.permutation(len(line_kind))
    order = shuffled[np.argsort(line_day[shuffled], kind="stable")]
    bank_row = np.empty(len(order), dtype=np.int64)
    bank_row[order] = np.arange(len(order))
    pair_bank = np.full(len(pair_ledger), -1, dtype=np.int64)
    pair_bank[pair_sent] = bank_row[: len(pair_sent)]
    batch_bank = np.full(n_batches, -1, dtype=np.int64)
    batch_bank[batch_sent] = bank_row[len(pair_sent) : len(pair_sent) + len(batch_sent)]

    b_kind, b_link, b_day = line_kind[order], line_link[order], line_day[order].astype(np.int32)
    is_only = b_kind == UNPAIRED
    n_bank = len(order)

    # Every bank column is one gather from [pair values | batch values | bank-only values].
    source = np.array([0, len(pair_ledger), len(pair_ledger) + n_batches], dtype=np.int64)[b_kind] + b_link
    pair_row = pair_ledger
    fields = {
        "cents": (np.int64, pair_bank_cents, batch_cents, bo_cents),
        "value_day": (np.int32, ledger_day[pair_row], batch_day, bo_day),
        "account": (np.int32, account[pair_row], batch_account, bo_account),
        "ref_template": (np.int8, REF_INVOICE, REF_SETTLEMENT, REF_MANDATE),
        "ref_year": (np.int16, ref_year[pair_row], years[batch_day], years[bo_day]),
        "ref_number": (np.int64, ref_number[pair_row], np.arange(1, n_batches + 1), np.arange(1, n_bank_only + 1)),
        "ref_variant": (np.int8, pair_variant, batch_variant, bo_variant),
        "counterparty": (np.int16, ledger_counterparty[pair_row], len(vocab.BANK_COUNTERPARTIES) + batch_acquirer, -1),
    }
    column = {}
    for name, (dtype, *parts) in fields.items():
        sizes = (len(pair_row), n_batches, n_bank_only)
        stacked = np.concatenate(
            [np.broadcast_to(np.asarray(v, dtype=dtype), (k,)) for v, k in zip(parts, sizes, strict=True)]
        )
        column[name] = np.take(stacked, source)

    value_day = column["value_day"]
    value_day[_uniform(r, n_bank) < BANK_VALUE_DATE_MISSING] = -1
    bank_cents = column["cents"]
    bank_description = np.where(bank_cents < 0, vocab.BANK_DEBIT[0], vocab.BANK_CREDIT[0])
    swap = _uniform(r, n_bank) < 0.3
    bank_description = np.where(swap, bank_description + 1, bank_description)
    bank_description = np.where(b_kind == BATCH, vocab.BANK_CARD, bank_description)
    if n_bank_only:
        bank_description = np.where(is_only, bo_description[np.where(is_only, b_link, 0)], bank_description)
    bank = Side(
        source="bank",
        prefix=b"B",
        day=b_day,
        starts=np.searchsorted(b_day, np.arange(days + 1)).astype(np.int64),
        kind=b_kind,
        link=b_link,
        account=column["account"],
        cents=bank_cents,
        value_day=value_day,
        ref_template=column["ref_template"],
        ref_year=column["ref_year"],
        ref_number=column["ref_number"],
        ref_variant=column["ref_variant"],
        counterparty=column["counterparty"],
        description=bank_description.astype(np.int8),
    )

    _perturb(ledger, rng["ledger_bad"], rates, fmt)
    _perturb(bank, rng["bank_bad"], rates, bank_format or fmt)
    most_rows = max([0] + [side.count(d) for side in (ledger, bank) for d in range(days)])
    return Plan(
        start=start,
        days=days,
        fmt=fmt,
        account_ids=account_ids,
        account_currency=currency,
        ledger=ledger,
        bank=bank,
        pair_ledger=pair_ledger,
        pair_bank=pair_bank,
        pair_mismatch=mismatch,
        batch_day=batch_day,
        batch_bank=batch_bank,
        batch_cents=batch_cents,
        batch_members=batch_members,
        batch_start=batch_start,
        txn_width=digits_needed(most_rows, 6),
        ref_width=digits_needed(max(n_ledger, n_batches, n_bank_only), 7),
        bank_format=bank_format,
    )


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    # float32 is plenty for coin flips at these rates and halves the time and memory of the draw.
    return rng.random(n, dtype=np.float32)


def _draw_steps(rng: np.random.Generator, median_cents: np.ndarray, step_cents: np.ndarray) -> np.ndarray:
    cents = median_cents * np.exp(AMOUNT_SIGMA * rng.standard_normal(len(median_cents), dtype=np.float32))
    return np.clip(np.rint(cents / step_cents), 1, amounts.MAX_STEPS // 2).astype(np.int64)


def _draw_lag(rng: np.random.Generator, n: int, rates: Rates) -> np.ndarray:
    weights = np.cumsum(rates.lag_weights) / sum(rates.lag_weights)
    days = np.minimum(np.searchsorted(weights, rng.random(n), side="right"), 2) + 1
    return np.where(_uniform(rng, n) < rates.lag, days, 0).astype(np.int64)


def _draw_variant(rng: np.random.Generator, n: int, rates: Rates) -> np.ndarray:
    u = _uniform(rng, n)
    pick = rng.integers(0, 12, n, dtype=np.int8)  # 12 splits evenly over the 4 cosmetic and the 3 missing forms
    cosmetic = np.asarray(COSMETIC)[pick % len(COSMETIC)]
    missing = np.asarray(NO_REFERENCE)[pick % len(NO_REFERENCE)]
    edge_prefixed = rates.reference_cosmetic + rates.reference_prefixed
    edge_missing = edge_prefixed + rates.reference_missing
    variant = np.where(
        u < rates.reference_cosmetic,
        cosmetic,
        np.where(u < edge_prefixed, PREFIXED, np.where(u < edge_missing, missing, VERBATIM)),
    )
    return variant.astype(np.int8)


def _perturb(side: Side, rng: np.random.Generator, rates: Rates, fmt: str) -> None:
    """Mark bad rows (with the rule each breaks) and duplicated rows; copies are only made of good rows."""
    n = len(side)
    rules = BAD_ROW_RULES[fmt]
    bad = np.flatnonzero(_uniform(rng, n) < rates.invalid)
    side.invalid_rule = np.full(n, -1, dtype=np.int8)
    # Drawn whatever the format, so that the rest of the day is the same in every format; a format that can
    # carry no bad row sends those rows good.
    draw = rng.random(len(bad))
    if rules:
        weights = np.cumsum([w for _, w in rules]) / sum(w for _, w in rules)
        rule_ids = np.array([_RULE_INDEX[name] for name, _ in rules], dtype=np.int8)
        side.invalid_rule[bad] = rule_ids[np.minimum(np.searchsorted(weights, draw, side="right"), len(rules) - 1)]
    side.invalid_variant = np.zeros(n, dtype=np.int8)
    side.invalid_variant[bad] = rng.integers(0, VARIANTS, len(bad))
    side.duplicate = _uniform(rng, n) < rates.duplicate
    side.duplicate[bad] = False
    copied = np.flatnonzero(side.duplicate)
    position = copied - side.starts[side.day[copied]]
    size = side.starts[side.day[copied] + 1] - side.starts[side.day[copied]]
    side.duplicate_after = np.zeros(n, dtype=np.int64)
    side.duplicate_after[copied] = position + np.floor(rng.random(len(copied)) * (size - position)).astype(np.int64)
