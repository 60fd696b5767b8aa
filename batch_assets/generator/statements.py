"""The bank side written as statements: camt.053, MT940 or BAI2, one statement per account and day, that balance."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from batch_assets.generator import plan as p
from batch_assets.generator import render
from batch_assets.generator.files import write_atomic

FORMATS: tuple[str, ...] = ("camt053", "mt940", "bai2")
# What a statement line is beyond its row: the share of camt entries that open a batch of 2 to 6 details, and
# the share of lines marked as reversals (camt RvslInd; MT940 RC/RD). BAI2 has neither.
BATCH_SHARE = 0.02
BATCH_SIZES = (2, 6)
REVERSAL_SHARE = 0.01
CAMT_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
# BAI2 type codes: incoming and outgoing money transfers.
BAI2_CREDIT, BAI2_DEBIT = "195", "495"


@dataclass
class Balances:
    """Each account's booked balance in cents, carried from one day's closing to the next day's opening."""

    cents: np.ndarray

    @classmethod
    def opening(cls, plan: p.Plan, seed: int) -> Balances:
        rng = np.random.default_rng([seed, 940])
        # Whole units, so that a currency without minor units (JPY) has a balance it can print.
        return cls(rng.integers(1_000, 10_000_000, len(plan.account_ids), dtype=np.int64) * 100)


def layout(plan: p.Plan, side: p.Side, day: int, parts: int) -> render.DayLayout:
    """The day's rows in statement order: account by account, each account's lines in written order.

    Parts split the day between accounts, so that every statement is whole in one file.
    """
    base = render.layout(plan, side, day, 1)
    accounts = side.account[int(side.starts[day]) + base.order]
    sequence = np.argsort(accounts, kind="stable")
    order, copy, accounts = base.order[sequence], base.copy[sequence], accounts[sequence]
    total = len(order)
    # A part ends at the first account boundary at or after its even share of the lines.
    boundaries = np.concatenate([np.flatnonzero(np.diff(accounts)) + 1, [total]])
    cuts = boundaries[np.searchsorted(boundaries, np.arange(1, parts, dtype=np.int64) * total // parts)]
    return render.DayLayout(
        order=order,
        copy=copy,
        bounds=np.concatenate([[0], cuts, [total]]).astype(np.int64),
        file_names=render.file_names(side.source, plan.date(day), parts, plan.format_of(side.source)),
        first_line=1,
    )


def write(
    plan: p.Plan,
    side: p.Side,
    day: int,
    lay: render.DayLayout,
    frame: pl.DataFrame,
    balances: Balances,
    seed: int,
    landing: Path,
) -> None:
    """Write the day's statement files and move the balances on to the day's closing ones."""
    fmt = plan.format_of(side.source)
    rows = int(side.starts[day]) + lay.order
    rng = np.random.default_rng([seed, day, 53])
    lines = frame.with_columns(pl.col(pl.Categorical).cast(pl.String)).with_columns(
        pl.Series("account", side.account[rows]),
        pl.Series("cents", side.cents[rows]),
        pl.Series("null_reference", _null_reference(side, rows)),
        pl.Series("reversal", rng.random(len(rows)) < REVERSAL_SHARE),
        pl.Series("entry", _entries(side, rows, lay, rng) if fmt == "camt053" else np.arange(len(rows))),
    )
    opening = balances.cents.copy()
    balances.cents += _sums(side.account[rows], side.cents[rows], len(balances.cents))
    render_file = {"camt053": _camt, "mt940": _mt940, "bai2": _bai2}[fmt]
    for index, name in enumerate(lay.file_names):
        part = lines.slice(int(lay.bounds[index]), int(lay.bounds[index + 1] - lay.bounds[index]))
        accounts = np.unique(part["account"].to_numpy()) if part.height else np.zeros(1, dtype=np.int64)
        # A file without lines still holds one statement (an empty one balances: its closing is its opening).
        statements = _Statements(plan, day, accounts, opening, balances.cents if part.height else opening)
        text = render_file(part, statements)
        write_atomic(landing / name, lambda target, text=text: _write_lines(text, target))


def _sums(accounts: np.ndarray, cents: np.ndarray, size: int) -> np.ndarray:
    sums = np.zeros(size, dtype=np.int64)
    np.add.at(sums, accounts, cents)
    return sums


def _null_reference(side: p.Side, rows: np.ndarray) -> np.ndarray:
    """Lines whose reference, as the bank prints it, normalises to nothing."""
    return (side.ref_template[rows] < 0) | np.isin(side.ref_variant[rows], p.NO_REFERENCE)


def _entries(side: p.Side, rows: np.ndarray, lay: render.DayLayout, rng: np.random.Generator) -> np.ndarray:
    """The camt entry of each line: most lines are an entry of their own; a few runs of lines of one account,
    sign and value date, none a copy or a bad line, are the details of one batch entry."""
    n = len(rows)
    entry = np.arange(n, dtype=np.int64)
    key = np.stack([side.account[rows], np.sign(side.cents[rows]), side.value_day[rows]], axis=1)
    eligible = ~lay.copy & (side.invalid_rule[rows] < 0)
    opens = np.flatnonzero(rng.random(n) < BATCH_SHARE)
    sizes = rng.integers(BATCH_SIZES[0], BATCH_SIZES[1] + 1, len(opens))
    free = 0
    for first, size in zip(opens.tolist(), sizes.tolist(), strict=True):
        if first < free or not eligible[first]:
            continue
        last = first + 1
        while last < min(n, first + size) and eligible[last] and (key[last] == key[first]).all():
            entry[last] = first
            last += 1
        free = last
    return entry


@dataclass
class _Statements:
    """The statements of one file: per account in it, its opening and closing balance."""

    plan: p.Plan
    day: int
    accounts: np.ndarray
    opening: np.ndarray
    closing: np.ndarray

    def each(self) -> Iterator[tuple[int, str, str, int, int]]:
        """Per account in the file: its index, id, currency, opening and closing balance in cents."""
        for account in self.accounts.tolist():
            currency = p.vocab.CURRENCIES[int(self.plan.account_currency[account])]
            yield (
                account,
                self.plan.account_ids[account],
                currency,
                int(self.opening[account]),
                int(self.closing[account]),
            )

    def heads_and_tails(self, head, tail) -> pl.DataFrame:
        """Per account: the text before its first line and after its last one."""
        heads, tails, keys = [], [], []
        for account, account_id, currency, opening, closing in self.each():
            keys.append(account)
            heads.append(head(account, account_id, currency, opening, closing))
            tails.append(tail(account, account_id, currency, opening, closing))
        return pl.DataFrame({"account": keys, "head": heads, "tail": tails}, schema_overrides={"account": pl.Int64})


def _join_statements(entries: pl.DataFrame, statements: _Statements, head, tail) -> pl.Series:
    """Each account's statement: its head, its entries' lines, its tail; an account without lines is head and tail."""
    framing = statements.heads_and_tails(head, tail)
    if entries.height == 0:
        return pl.Series([h + t for h, t in zip(framing["head"], framing["tail"], strict=True)])
    entries = entries.with_columns(pl.col("account").cast(pl.Int64)).join(framing, on="account", how="left")
    first = pl.col("account") != pl.col("account").shift(1)
    last = pl.col("account") != pl.col("account").shift(-1)
    return entries.select(
        pl.concat_str(
            pl.when(first.fill_null(True)).then(pl.col("head")).otherwise(pl.lit("")),
            pl.col("text"),
            pl.when(last.fill_null(True)).then(pl.col("tail")).otherwise(pl.lit("")),
        )
    ).to_series()


def _write_lines(text: pl.Series, target: Path) -> None:
    """Each value is one or more whole lines; written as they are, one after the other."""
    pl.DataFrame({"text": text}).write_csv(target, include_header=False, quote_style="never", line_terminator="\n")


# -- shared pieces -------------------------------------------------------------------------------------------------


def _money(cents: int) -> str:
    return f"{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _absolute(column: str = "amount") -> pl.Expr:
    return pl.col(column).str.strip_prefix("-")


def _escaped(column: str) -> pl.Expr:
    return (
        pl.col(column)
        .str.replace_all("&", "&amp;", literal=True)
        .str.replace_all("<", "&lt;", literal=True)
        .str.replace_all(">", "&gt;", literal=True)
    )


def _element(tag: str, value: pl.Expr) -> pl.Expr:
    """`<tag>value</tag>`, or nothing where the value is null or empty."""
    return (
        pl.when(value.is_null() | (value == ""))
        .then(pl.lit(""))
        .otherwise(pl.concat_str(pl.lit(f"<{tag}>"), value, pl.lit(f"</{tag}>")))
    )


def _credit() -> pl.Expr:
    return pl.col("cents") >= 0


# -- camt.053 ------------------------------------------------------------------------------------------------------


def _camt(lines: pl.DataFrame, statements: _Statements) -> pl.Series:
    plan, day = statements.plan, statements.day
    date = plan.date(day).isoformat()
    mark = pl.when(_credit()).then(pl.lit("CRDT")).otherwise(pl.lit("DBIT"))
    party = pl.when(_credit()).then(pl.lit("Dbtr")).otherwise(pl.lit("Cdtr"))
    name = _escaped("counterparty")
    parties = (
        pl.when(name.is_null())
        .then(pl.lit(""))
        .otherwise(
            pl.concat_str(
                pl.lit("<RltdPties><"), party, pl.lit("><Nm>"), name, pl.lit("</Nm></"), party, pl.lit("></RltdPties>")
            )
        )
    )
    family = pl.when(_credit()).then(pl.lit("RCDT")).otherwise(pl.lit("ICDT"))
    code = pl.concat_str(
        pl.lit("<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>"),
        family,
        pl.lit("</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"),
    )
    amount = pl.concat_str(pl.lit('<Amt Ccy="'), pl.col("currency"), pl.lit('">'), _absolute(), pl.lit("</Amt>"))
    dates = pl.concat_str(
        _element("BookgDt", _element("Dt", pl.col("booking_date"))),
        _element("ValDt", _element("Dt", pl.col("value_date"))),
    )
    end_to_end = _element("EndToEndId", _escaped("reference"))
    information = _element("AddtlTxInf", _escaped("description"))
    single = pl.concat_str(
        pl.lit("<Ntry>"),
        amount,
        pl.lit("<CdtDbtInd>"),
        mark,
        pl.lit("</CdtDbtInd>"),
        pl.when(pl.col("reversal")).then(pl.lit("<RvslInd>true</RvslInd>")).otherwise(pl.lit("")),
        pl.lit("<Sts>BOOK</Sts>"),
        dates,
        _element("AcctSvcrRef", pl.col("txn_id")),
        code,
        pl.lit("<NtryDtls><TxDtls>"),
        _element("Refs", end_to_end),
        parties,
        information,
        pl.lit("</TxDtls></NtryDtls></Ntry>"),
    )
    detail = pl.concat_str(
        pl.lit("<TxDtls><Refs>"),
        _element("AcctSvcrRef", pl.col("txn_id")),
        end_to_end,
        pl.lit("</Refs><AmtDtls><TxAmt>"),
        amount,
        pl.lit("</TxAmt></AmtDtls>"),
        parties,
        information,
        pl.lit("</TxDtls>"),
    )
    in_batch = pl.len().over("entry") > 1
    lines = lines.with_columns(single=single, detail=detail, head=dates, code=code, batch=in_batch)
    singles = lines.filter(~pl.col("batch")).select("entry", "account", text="single")
    batches = (
        lines.filter(pl.col("batch"))
        .group_by("entry", maintain_order=True)
        .agg(
            pl.col("account").first(),
            pl.col("cents").sum(),
            pl.col("currency").first(),
            pl.col("head").first(),
            pl.col("code").first(),
            pl.col("txn_id").first(),
            pl.col("detail").str.join("\n"),
            pl.len().alias("count"),
        )
        .select(
            "entry",
            "account",
            text=pl.concat_str(
                pl.lit('<Ntry><Amt Ccy="'),
                pl.col("currency"),
                pl.lit('">'),
                pl.col("cents").abs().map_batches(_money_series, return_dtype=pl.String),
                pl.lit("</Amt><CdtDbtInd>"),
                mark,
                pl.lit("</CdtDbtInd><Sts>BOOK</Sts>"),
                pl.col("head"),
                pl.lit("<AcctSvcrRef>BATCH-"),
                pl.col("txn_id"),
                pl.lit("</AcctSvcrRef>"),
                pl.col("code"),
                pl.lit("<NtryDtls><Btch><NbOfTxs>"),
                pl.col("count").cast(pl.String),
                pl.lit("</NbOfTxs></Btch>\n"),
                pl.col("detail"),
                pl.lit("\n</NtryDtls></Ntry>"),
            ),
        )
    )
    entries = pl.concat([singles, batches.cast({"account": singles.schema["account"]})]).sort("entry")

    def head(account, account_id, currency, opening, closing) -> str:
        return (
            f"<Stmt><Id>STMT-{date}-{account_id}</Id><ElctrncSeqNb>{day + 1}</ElctrncSeqNb>"
            f"<CreDtTm>{date}T23:00:00</CreDtTm><Acct><Id><Othr><Id>{account_id}</Id></Othr></Id><Ccy>{currency}</Ccy>"
            f"</Acct>\n{_camt_balance('OPBD', currency, opening, plan.date(day - 1).isoformat())}\n"
            f"{_camt_balance('CLBD', currency, closing, date)}\n"
        )

    def tail(*_) -> str:
        return "\n</Stmt>"

    body = _join_statements(entries, statements, head, tail)
    document = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{CAMT_NAMESPACE}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>MSG-{date}</MsgId><CreDtTm>{date}T23:00:00</CreDtTm></GrpHdr>"
    )
    return pl.concat([pl.Series([document]), body, pl.Series(["</BkToCstmrStmt></Document>"])])


def _camt_balance(kind: str, currency: str, cents: int, date: str) -> str:
    mark = "CRDT" if cents >= 0 else "DBIT"
    return (
        f'<Bal><Tp><CdOrPrtry><Cd>{kind}</Cd></CdOrPrtry></Tp><Amt Ccy="{currency}">{_money(cents)}</Amt>'
        f"<CdtDbtInd>{mark}</CdtDbtInd><Dt><Dt>{date}</Dt></Dt></Bal>"
    )


def _money_series(cents: pl.Series) -> pl.Series:
    return pl.Series([_money(c) for c in cents.to_list()], dtype=pl.String)


# -- MT940 ---------------------------------------------------------------------------------------------------------


def _mt940(lines: pl.DataFrame, statements: _Statements) -> pl.Series:
    plan, day = statements.plan, statements.day
    yymmdd = plan.date(day).strftime("%y%m%d")
    credit = _credit()
    mark = (
        pl.when(pl.col("reversal"))
        .then(pl.when(credit).then(pl.lit("RD")).otherwise(pl.lit("RC")))
        .otherwise(pl.when(credit).then(pl.lit("C")).otherwise(pl.lit("D")))
    )
    booking = pl.col("booking_date")
    value = pl.coalesce(pl.col("value_date"), booking)
    reference = pl.when(pl.col("null_reference")).then(pl.lit("NOTPROVIDED")).otherwise(pl.col("reference"))
    text = pl.concat_str(
        pl.lit(":61:"),
        value.str.slice(2, 2),
        value.str.slice(5, 2),
        value.str.slice(8, 2),
        booking.str.slice(5, 2),
        booking.str.slice(8, 2),
        mark,
        _absolute().str.replace(".", ",", literal=True),
        pl.lit("NTRFNONREF//"),
        pl.col("txn_id"),
        pl.lit("\n:86:"),
        pl.when(credit).then(pl.lit("166")).otherwise(pl.lit("116")),
        pl.lit("?00"),
        pl.col("description").fill_null(""),
        pl.lit("?20EREF+"),
        reference,
        pl.when(pl.col("counterparty").is_null())
        .then(pl.lit(""))
        .otherwise(pl.concat_str(pl.lit("?32"), pl.col("counterparty"))),
    )
    entries = lines.select("account", text=text)

    def balance(tag: str, cents: int, currency: str, on: str) -> str:
        return f":{tag}:{'C' if cents >= 0 else 'D'}{on}{currency}{_money(cents).replace('.', ',')}"

    def head(account, account_id, currency, opening, closing) -> str:
        before = plan.date(day - 1).strftime("%y%m%d")
        return (
            f":20:S{yymmdd}{account:09d}\n:25:{account_id}\n:28C:{day + 1:05d}/001\n"
            f"{balance('60F', opening, currency, before)}\n"
        )

    def tail(account, account_id, currency, opening, closing) -> str:
        return f"\n{balance('62F', closing, currency, yymmdd)}\n-"

    return _join_statements(entries, statements, head, tail)


# -- BAI2 ----------------------------------------------------------------------------------------------------------


def _bai2(lines: pl.DataFrame, statements: _Statements) -> pl.Series:
    plan, day = statements.plan, statements.day
    yymmdd = plan.date(day).strftime("%y%m%d")
    # BAI2 amounts are in the currency's minor units; a currency without them (JPY) is in whole units.
    whole = [i for i, code in enumerate(p.vocab.CURRENCIES) if p.vocab.CURRENCY_STEP_CENTS[i] == 100]
    unit = np.where(np.isin(statements.plan.account_currency, whole), 100, 1)
    units = lines["cents"].to_numpy() // unit[lines["account"].to_numpy()] if lines.height else np.zeros(0, np.int64)
    lines = lines.with_columns(pl.Series("units", units, dtype=pl.Int64))
    value = pl.col("value_date")
    funds = (
        pl.when(value.is_null())
        .then(pl.lit("Z"))
        .otherwise(
            pl.concat_str(
                pl.lit("V,"), value.str.slice(2, 2), value.str.slice(5, 2), value.str.slice(8, 2), pl.lit(",")
            )
        )
    )
    reference = pl.col("reference").fill_null("")
    text = pl.concat_str(
        pl.lit("16,"),
        pl.when(_credit()).then(pl.lit(BAI2_CREDIT)).otherwise(pl.lit(BAI2_DEBIT)),
        pl.lit(","),
        pl.col("units").abs().cast(pl.String),
        pl.lit(","),
        funds,
        pl.lit(","),
        pl.col("txn_id"),
        pl.lit(","),
        reference,
        pl.lit(","),
        # The text would be taken for the reference where the customer reference says none.
        pl.when(pl.col("null_reference")).then(pl.lit("")).otherwise(pl.col("description").fill_null("")),
        pl.lit("/"),
    )
    entries = lines.select("account", text=text)
    per_account = _per_account(lines, statements, unit)
    control = {a: o + c + s for a, (o, c, s, _) in per_account.items()}
    group_total = sum(control.values())
    group_records = 2 + sum(n + 2 for _, _, _, n in per_account.values())

    def head(account, account_id, currency, opening, closing) -> str:
        o, c, _, _ = per_account[account]
        return f"03,{account_id},{currency},010,{o},,,015,{c},,/\n"

    def tail(account, *_) -> str:
        return f"\n49,{control[account]},{per_account[account][3] + 2}/"

    body = _join_statements(entries, statements, head, tail)
    header = f"01,BANKSEND,RECEIVER,{yymmdd},2359,{yymmdd}{day + 1:03d},,,2/\n02,RECEIVER,BANKSEND,1,{yymmdd},2359,,2/"
    trailer = f"98,{group_total},{len(per_account)},{group_records}/\n99,{group_total},1,{group_records + 2}/"
    return pl.concat([pl.Series([header]), body, pl.Series([trailer])])


def _per_account(
    lines: pl.DataFrame, statements: _Statements, unit: np.ndarray
) -> dict[int, tuple[int, int, int, int]]:
    """Per account: opening and closing ledger and the sum of its details, in BAI2 units, and its detail count."""
    summed = lines.group_by("account").agg(pl.col("units").abs().sum().alias("sum"), pl.len().alias("n"))
    found = {int(a): (int(s), int(n)) for a, s, n in summed.iter_rows()}
    return {
        a: (
            int(statements.opening[a] // unit[a]),
            int(statements.closing[a] // unit[a]),
            *found.get(a, (0, 0)),
        )
        for a in statements.accounts.tolist()
    }
