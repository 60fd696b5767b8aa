"""The public statement samples beside the project (../shared/statements), each landed as a day's bank file:
what it stages, what validation quarantines and why, or why the whole file is rejected. A test skips, with
the reason, where the samples are absent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from batch_assets_tests.statement_corpus import CORPUS, corpus_files, land_sample

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Staged:
    """A sample that lands: its rows, the business date it is judged on (its entries' commonest booking date;
    the test day when they have none), the rows validation stages, those it quarantines per rule, and the
    sums per currency and sign (`EUR+` credits, `EUR-` debits) as delivered."""

    rows: int
    day: str | None
    staged: int
    quarantined: dict[str, int]
    sums: dict[str, str]


SUBITE = "Subite-eu__camt-to-coda/example-files/CAMT"
S053 = f"{SUBITE}/LT625883379695428516/CAMT_053/"
OTHER = f"{SUBITE}/Other/"
GENKGO = "genkgo__camt/test/data/"


def unbalanced(statement: str, figures: str) -> str:
    return f"Document/BkToCstmrStmt/Stmt[1] ({statement}): statement does not balance: {figures}"


def chf_under_sek(line: int) -> str:
    return (
        f"line {line}, Document/BkToCstmrDbtCdtNtfctn/Ntfctn[1]/Ntry[1]/NtryDtls/TxDtls[1]: the detail is in CHF but "
        "its entry is in SEK"
    )


# genkgo's camt.053 samples give balances in several currencies (a library's fixtures, not real statements).
MIXED_CURRENCIES = unbalanced("253EURNL26VAYB8060476890", "opening balance in EUR, closing balance in SEK")

# Every camt sample that stages rows or is rejected. Each Subite camt.053 statement balances: opening plus its
# entries equals closing, which is what settles the signs of its entries.
CAMT: dict[str, Staged | str] = {
    S053 + "2024-04-03.xml": Staged(8, "2024-04-03", 8, {}, {"EUR+": "3736837.61", "EUR-": "-921579.61"}),
    S053 + "2024-04-05.xml": Staged(5, "2024-04-05", 5, {}, {"EUR+": "2306172.28", "EUR-": "-304276.65"}),
    S053 + "2024-04-11.xml": Staged(15, "2024-04-11", 15, {}, {"EUR+": "940505.25", "EUR-": "-5209685.01"}),
    S053 + "2024-05-23.xml": Staged(9, "2024-05-23", 9, {}, {"EUR+": "1018325.46", "EUR-": "-3827235.36"}),
    S053 + "2024-06-10.xml": Staged(7, "2024-06-10", 7, {}, {"EUR+": "1344143.33", "EUR-": "-1021492.80"}),
    S053 + "2024-06-18.xml": Staged(12, "2024-06-18", 12, {}, {"EUR+": "653569.59", "EUR-": "-5497205.94"}),
    S053 + "2024-06-20.xml": Staged(4, "2024-06-20", 4, {}, {"EUR+": "436264.74", "EUR-": "-1133429.03"}),
    S053 + "2024-06-24.xml": Staged(9, "2024-06-24", 9, {}, {"EUR+": "299176.63", "EUR-": "-650169.27"}),
    S053 + "2024-06-27.xml": Staged(11, "2024-06-27", 11, {}, {"EUR+": "375184.80", "EUR-": "-3807272.92"}),
    S053 + "2024-07-08.xml": Staged(6, "2024-07-08", 6, {}, {"EUR+": "789329.16", "EUR-": "-403803.98"}),
    S053 + "2024-08-09.xml": Staged(10, "2024-08-09", 10, {}, {"EUR+": "1689742.76", "EUR-": "-1467382.35"}),
    S053 + "2024-08-21.xml": Staged(8, "2024-08-21", 8, {}, {"EUR+": "1845366.85", "EUR-": "-2555071.49"}),
    S053 + "2024-09-04.xml": Staged(9, "2024-09-04", 9, {}, {"EUR+": "1368875.33", "EUR-": "-440998.16"}),
    S053 + "2024-09-06.xml": Staged(4, "2024-09-06", 4, {}, {"EUR+": "2457311.04", "EUR-": "-252380.68"}),
    S053 + "2024-09-19.xml": Staged(8, "2024-09-19", 8, {}, {"EUR+": "1010056.10", "EUR-": "-887578.19"}),
    OTHER + "BE68793230773034-202411.xml": Staged(
        268, "2024-11-10", 17, {"booking_date_mismatch": 251}, {"EUR+": "180000.00", "EUR-": "-151831.25"}
    ),
    OTHER + "BE68793230773034-202412.xml": Staged(
        264, "2024-12-20", 25, {"booking_date_mismatch": 239}, {"EUR+": "100400.00", "EUR-": "-145974.01"}
    ),
    OTHER + "account_statement-2.xml": Staged(
        462, "2024-04-15", 15, {"booking_date_mismatch": 447}, {"EUR+": "425004.99", "EUR-": "-424449.70"}
    ),
    OTHER + "account_statement-3.xml": Staged(
        314, "2024-10-14", 17, {"booking_date_mismatch": 297}, {"EUR+": "210000.00", "EUR-": "-184072.66"}
    ),
    OTHER + "account_statement.xml": Staged(3, "2024-05-23", 3, {}, {"EUR+": "789904.40", "EUR-": "-789904.40"}),
    GENKGO + "camt052.v1.xml": Staged(1, "2007-10-18", 1, {}, {"SEK-": "-200000.00"}),
    GENKGO + "camt052.v2.other-account.xml": Staged(1, "2007-10-18", 1, {}, {"SEK-": "-200000.00"}),
    # no booking date and no closing balance: quarantined
    GENKGO + "camt052.v2.with-account-name.xml": Staged(
        1, None, 0, {"missing_required_field": 1}, {"SEK-": "-200000.00"}
    ),
    GENKGO + "camt052.v2.xml": Staged(1, "2007-10-18", 1, {}, {"SEK-": "-200000.00"}),
    # its one entry is pending
    GENKGO + "camt052.v4.xml": Staged(0, None, 0, {}, {}),
    # its one entry is pending
    GENKGO + "camt052.v6.Amt-zero.xml": Staged(0, None, 0, {}, {}),
    # its one entry is pending
    GENKGO + "camt052.v6.xml": Staged(0, None, 0, {}, {}),
    GENKGO + "camt052.v8.xml": Staged(1, "2007-10-18", 1, {}, {"SEK-": "-200000.00"}),
    # synthetic balances that do not add up
    GENKGO + "camt053.v2.all-balance-types.xml": unbalanced(
        "CAMT0532015012200001", "opening 1.01 EUR + booked entries 8.850 = 9.860, but the closing balance is 4.04"
    ),
    # synthetic: 18.150 + 8.850 is 27.000, its closing says 27.050
    GENKGO + "camt053.v2.five.decimals.xml": unbalanced(
        "253EURNL26VAYB8060476890",
        "opening 18.150 EUR + booked entries 8.850 = 27.000, but the closing balance is 27.050",
    ),
    GENKGO + "camt053.v2.minimal.ultimate.xml": MIXED_CURRENCIES,
    # its balances mix EUR, SEK, CHF and JPY
    GENKGO + "camt053.v2.minimal.xml": MIXED_CURRENCIES,
    GENKGO + "camt053.v2.multi.statement.xml": Staged(2, "2014-12-31", 2, {}, {"EUR+": "8.85", "EUR-": "-7.00"}),
    GENKGO + "camt053.v2.with-account-name.xml": Staged(1, "2014-12-31", 1, {}, {"EUR+": "8.85"}),
    GENKGO + "camt053.v2.with-party-ids.xml": MIXED_CURRENCIES,
    # broken on purpose: a group header and no statement
    GENKGO + "camt053.v2.wrong.xml": "Document/BkToCstmrStmt: a camt.053 message with no Stmt",
    GENKGO + "camt053.v3.xml": MIXED_CURRENCIES,
    GENKGO + "camt053.v4.xml": MIXED_CURRENCIES,
    GENKGO + "camt053.v8.xml": MIXED_CURRENCIES,
    # no booking date: quarantined
    GENKGO + "camt054.v2.with-account-name.xml": Staged(
        1, None, 0, {"missing_required_field": 1}, {"SEK-": "-200000.00"}
    ),
    # three details without amounts describe one entry
    GENKGO + "camt054.v2.xml": Staged(1, "2007-10-18", 1, {}, {"SEK-": "-200000.00"}),
    # synthetic: CHF details under a SEK entry
    GENKGO + "camt054.v4.xml": chf_under_sek(94),
    # no booking date: quarantined
    GENKGO + "camt054.v8-with-UETR.xml": Staged(1, None, 0, {"missing_required_field": 1}, {"SEK-": "-200000.00"}),
    # no booking date: quarantined
    GENKGO + "camt054.v8-with-financial-institution.xml": Staged(
        1, None, 0, {"missing_required_field": 1}, {"SEK-": "-200000.00"}
    ),
    # synthetic: CHF details under a SEK entry
    GENKGO + "camt054.v8.xml": chf_under_sek(96),
    # an opening balance and no entries
    GENKGO + "camt53.only-Dt-with-DtTm.xml": Staged(0, None, 0, {}, {}),
}
# Balance-only intraday reports (no entries) and notifications whose one entry is for information only (Sts
# INFO, its batch of 41 to 500 details netting exactly to it): they land no row.
CAMT_EMPTY = (f"{SUBITE}/LT809872649478701594/CAMT_052/", f"{SUBITE}/LT809872649478701594/CAMT_054/")


def camt_samples() -> list[Path]:
    return corpus_files("camt", "*.xml")


def test_every_camt_sample_is_stated_here() -> None:
    names = {str(path.relative_to(CORPUS / "camt")) for path in camt_samples()}
    stated = set(CAMT) | {name for name in names if name.startswith(CAMT_EMPTY)}
    assert names == stated
    assert sum(name.startswith(CAMT_EMPTY) for name in names) == 40


def camt_sample(name: str) -> Path:
    (path,) = [path for path in camt_samples() if str(path.relative_to(CORPUS / "camt")) == name]
    return path


@pytest.mark.parametrize("name", sorted(CAMT))
def test_a_camt_sample_stages_quarantines_or_is_rejected_as_stated(name: str, tmp_path: Path) -> None:
    assert_landed_as_stated(land_sample(camt_sample(name), tmp_path, "xml"), CAMT[name])


def assert_landed_as_stated(landed, expected: Staged | str) -> None:
    if isinstance(expected, str):
        assert landed.rejected == expected
        return
    assert landed.rejected is None
    assert landed.rows.height == expected.rows
    day = date.fromisoformat(expected.day) if expected.day and expected.day[5:7] <= "12" else date(2026, 11, 21)
    assert landed.judged(day) == (expected.staged, expected.quarantined)
    assert {f"{c}{s}": str(v) for (c, s), v in sorted(landed.sums().items())} == expected.sums


def test_camt_samples_without_booked_entries_land_no_row(tmp_path: Path) -> None:
    empty = [path for path in camt_samples() if str(path.relative_to(CORPUS / "camt")).startswith(CAMT_EMPTY)]
    for index, path in enumerate(empty):
        landed = land_sample(path, tmp_path / str(index), "xml")
        assert landed.rejected is None and landed.rows.height == 0, path


def test_a_real_statement_with_one_amount_changed_no_longer_balances(tmp_path: Path) -> None:
    """The balance check is live on the real files: one entry a cent off and the statement is rejected."""
    (path,) = [p for p in camt_samples() if p.name == "2024-04-03.xml" and "CAMT_053" in str(p)]
    text = path.read_bytes()
    assert text.count(b'<Amt Ccy="EUR">318525</Amt>') == 2  # the entry and its one summary detail
    changed = tmp_path / "2024-04-03.xml"
    changed.write_bytes(text.replace(b'<Amt Ccy="EUR">318525</Amt>', b'<Amt Ccy="EUR">318525.01</Amt>'))
    landed = land_sample(changed, tmp_path / "land", "xml")
    assert landed.rejected == (
        "Document/BkToCstmrStmt/Stmt[1] (MSG85093864-KGIWDI): statement does not balance: opening 18083042.49 EUR "
        "+ booked entries 2815257.99 = 20898300.48, but the closing balance is 20898300.49"
    )


# Every MT940 sample of WoLpH/mt940 (its fixtures: many are edited or cut to test a parser, so many do not balance).
MT940_ROOT = "WoLpH__mt940/mt940_tests/"
MT940: dict[str, Staged | str] = {
    # 31 statements in SWIFT envelopes, most without lines
    "ASNB/0708271685_09022020_164516.940.txt": Staged(
        8, "2020-01-05", 2, {"booking_date_mismatch": 6}, {"EUR+": "2828.90", "EUR-": "-2771.96"}
    ),
    # a tag-only fragment with no :20:, not a statement
    "betterplace/amount_formats.sta": "line 1: :60F: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "betterplace/currency_in_25.sta": "line 1: :25: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "betterplace/empty_86.sta": "line 1: :86: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "betterplace/empty_entry_date.sta": "line 1: :61: before any :20: field",
    "betterplace/empty_line.sta": "statement 1 (line 2): no :25: field",
    # a tag-only fragment with no :20:, not a statement
    "betterplace/missing_crlf_at_end.sta": "line 1: :62F: before any :20: field",
    # 26 statements; six returned transfers carry the bank reference of the transfer they return: the second of each
    # is a duplicate txn_id
    "betterplace/sepa_mt9401.sta": Staged(
        97, "2007-09-04", 91, {"duplicate_txn_id": 6}, {"EUR+": "5188474.94", "EUR-": "-14457610.84"}
    ),
    # its lines do not add up to its closing balance (an edited fixture)
    "betterplace/sepa_snippet.sta": (
        "statement 2 (line 25) (T089414096000001): statement does not balance: opening -1970431.87 EUR +"
        " lines -2501917.30 = -4472349.17, but the closing balance is -4472049.09"
    ),
    # broken on purpose
    "betterplace/sepa_snippet_broken.sta": (
        "statement 1 (line 1) (T089414086000001): statement does not balance: opening 766656.49 EUR + "
        "lines 50990.05 = 817646.54, but the closing balance is 1125250.4"
    ),
    "betterplace/with_binary_character.sta": Staged(4, "2010-03-19", 4, {}, {"EUR+": "14215.30", "EUR-": "-193282.05"}),
    # a tag-only fragment with no :20:, not a statement
    "cmxl/account_balance_credit.sta": "line 1: :60F: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/account_balance_debit.sta": "line 1: :60F: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/account_identification_iban.sta": "line 1: :25: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/account_identification_legacy.sta": "line 1: :25: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/available_balance.sta": "line 1: :64: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/closing_balance.sta": "line 1: :62F: before any :20: field",
    "cmxl/mt940.sta": Staged(
        16,
        "2013-10-17",
        6,
        {"booking_date_mismatch": 10},
        {
            "DEM+": "49396.74",
            "DEM-": "-49309.44",
            "EUR+": "3000.00",
            "EUR-": "-800.00",
            "PLN+": "20040.00",
            "PLN-": "-10000.00",
        },
    ),
    "cmxl/reference.sta": "statement 1 (line 1): no :25: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/statement_details.sta": "line 1: :61: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/statement_line.sta": "line 1: :61: before any :20: field",
    # a tag-only fragment with no :20:, not a statement
    "cmxl/statement_number.sta": "line 1: :28C: before any :20: field",
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/abnamro.sta": (
        "statement 1 (line 4) (ABN AMRO BANK NV): statement does not balance: opening 3236.28 EUR + "
        "lines -321.44 = 2914.84, but the closing balance is 876.84"
    ),
    "jejik/generic.sta": Staged(2, "2011-01-01", 1, {"booking_date_mismatch": 1}, {"EUR-": "-20.00"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/ing.sta": (
        "statement 1 (line 4) (MPBZ): statement does not balance: opening 0.00 EUR + lines -45.59 = "
        "-45.59, but the closing balance is 3.47"
    ),
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/knab.sta": (
        "statement 2 (line 10) (B4G30MS9D00A003D): statement does not balance: opening 3058.98 EUR + "
        "lines -6760 = -3701.02, but the closing balance is 798.98"
    ),
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/postfinance.sta": (
        "statement 2 (line 15) (2014040708285928): statement does not balance: opening 229.2 CHF + lines"
        " -69.8 = 159.4, but the closing balance is 159.6"
    ),
    "jejik/rabobank-iban.sta": Staged(4, "2013-01-01", 1, {"booking_date_mismatch": 3}, {"EUR-": "-70.00"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/rabobank.sta": (
        "statement 1 (line 2) (940A110615): statement does not balance: opening 473.17 EUR + lines "
        "-1213.28 = -740.11, but the closing balance is 395.82"
    ),
    "jejik/sns.sta": Staged(2, "2012-06-08", 2, {}, {"EUR-": "-25.00"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "jejik/triodos.sta": (
        "statement 1 (line 1) (1308728725026/1): statement does not balance: opening 4975.09 EUR + lines"
        " -715.70 = 4259.39, but the closing balance is 4370.79"
    ),
    "mBank/mt940.sta": Staged(3, "2017-01-19", 3, {}, {"PLN+": "0.03"}),
    "mBank/mt942.sta": Staged(3, "2017-01-19", 3, {}, {"PLN+": "0.03"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "mBank/with_newline_in_tnr.sta": (
        "statement 1 (line 2) (ST170201CYC/1): statement does not balance: opening 0.46 PLN + lines "
        "89.00 = 89.46, but the closing balance is 860.17"
    ),
    "sberbank/171011_01234945.sta": Staged(3, "2017-10-11", 3, {}, {"HUF-": "-9437.00"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "self-provided/details_60-63.sta": (
        "statement 1 (line 1) (STARTUMS): statement does not balance: opening 12345.12 EUR + lines "
        "-233.15 = 12111.97, but the closing balance is 12345.98"
    ),
    # malformed on purpose: not SWIFT at all
    "self-provided/empty_non_swift.sta": "no MT940 or MT942 message: no :20: field",
    # malformed on purpose: value date 30 February
    "self-provided/february_30.sta": Staged(1, "2016-03-01", 0, {"invalid_date": 1}, {"EUR-": "-6.00"}),
    # a statement with no closing balance
    "self-provided/gv_codes.sta": "statement 1 (line 1): no :62F: balance (an MT940 statement has both)",
    # malformed on purpose: lines 1 to 10, no field
    "self-provided/invalid_statement.sta": "no MT940 or MT942 message: no :20: field",
    "self-provided/long_statement_number.sta": Staged(0, None, 0, {}, {}),
    # its lines do not add up to its closing balance (an edited fixture)
    "self-provided/malformed_details.sta": (
        "statement 1 (line 1) (STARTUMS): statement does not balance: opening 12345.12 EUR + lines "
        "-233.15 = 12111.97, but the closing balance is 12345.98"
    ),
    "self-provided/mt942.sta": Staged(1, "2016-10-31", 1, {}, {"EUR-": "-0.42"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "self-provided/overly_long_details.sta": (
        "statement 1 (line 1) (STARTUMS): statement does not balance: opening 12345.12 EUR + lines "
        "-233.15 = 12111.97, but the closing balance is 12345.98"
    ),
    # a DOS code page, not UTF-8
    "self-provided/raiffeisen-cmi.sta": "line 7: not UTF-8 (byte 0xa0 at column 11)",
    # its :62M: has no currency
    "self-provided/raphaelm.sta": "line 27: :62M: 'C020315105000,00' is not mark, YYMMDD, currency, amount",
    "self-provided/sparkassen.sta": "line 1: :61: before any :20: field",
    # raw MT940 despite its name: a fragment with no :20:
    "self-provided/transaction_details.yml": "line 1: :61: before any :20: field",
    # the same 30 February value date
    "self-provided/transaction_details_wrapped.sta": Staged(1, "2016-03-01", 0, {"invalid_date": 1}, {"EUR-": "-6.00"}),
    # its lines do not add up to its closing balance (an edited fixture)
    "self-provided/whitespace.sta": (
        "statement 1 (line 1) (STARTUMS): statement does not balance: opening 12345.12 EUR + lines "
        "-233.15 = 12111.97, but the closing balance is 12345.98"
    ),
    # the same 30 February value date; a ':26:' line inside :86: text is text
    "self-provided/wrapped_timestamp.sta": Staged(1, "2016-03-01", 0, {"invalid_date": 1}, {"EUR-": "-6.00"}),
}


def mt940_samples() -> list[Path]:
    return corpus_files("mt940", "*.sta", "*.txt", "*.yml")


def test_every_mt940_sample_is_stated_here() -> None:
    assert {str(path.relative_to(CORPUS / "mt940" / MT940_ROOT)) for path in mt940_samples()} == set(MT940)


@pytest.mark.parametrize("name", sorted(MT940))
def test_an_mt940_sample_stages_quarantines_or_is_rejected_as_stated(name: str, tmp_path: Path) -> None:
    landed = land_sample(CORPUS / "mt940" / MT940_ROOT / name, tmp_path, "sta")
    assert_landed_as_stated(landed, MT940[name])


# Every BAI2 sample: ministryofjustice/bai2's and moov-io/bai2's fixtures.
BAI2: dict[str, Staged | str] = {
    # no 16 details; blank trailer amounts are not checked
    "ministryofjustice__bai2/tests/data/account_trailer_amount_blank_example.bai2": Staged(0, None, 0, {}, {}),
    # a 0.01 credit between equal opening and closing ledgers
    "ministryofjustice__bai2/tests/data/citi_example.bai2": (
        "line 12: record 49: account 77777777: statement does not balance: opening ledger 100.00 GBP + "
        "details 0.01 = 100.01, but the closing ledger is 100.00"
    ),
    "ministryofjustice__bai2/tests/data/nwb_example.bai2": Staged(
        5, "2009-12-16", 5, {}, {"GBP+": "0.89", "GBP-": "-27.65"}
    ),
    "ministryofjustice__bai2/tests/data/svb_us_example.bai2": Staged(
        2, "2022-02-01", 1, {"booking_date_mismatch": 1}, {"USD+": "13959.96"}
    ),
    # broken on purpose
    "moov-io__bai2/test/testdata/errors/sample-parseError.txt": (
        "line 1: record 00: a 00 record before the 01 file header"
    ),
    "moov-io__bai2/test/testdata/sample1.txt": Staged(
        17, "2006-03-17", 17, {}, {"CAD+": "3200.00", "CAD-": "-3200.00"}
    ),
    "moov-io__bai2/test/testdata/sample2.txt": Staged(4, "2004-06-20", 4, {}, {"USD+": "309500.00"}),
    # records packed on lines, a 16 record's text broken across lines
    "moov-io__bai2/test/testdata/sample3.txt": Staged(26, "2022-09-19", 26, {}, {"USD+": "397.13", "USD-": "-594.18"}),
    # its account trailer's control total is not the sum of its amounts
    "moov-io__bai2/test/testdata/sample4-continuations-newline-delimited.txt": (
        "line 22: record 49: the account's control total (the sum of its 03 and 16 amounts) is "
        "-1260161341762, but the records add up to 7999960"
    ),
    # its account trailer's control total is not the sum of its amounts
    "moov-io__bai2/test/testdata/sample5-issue113.txt": (
        "line 22: record 49: the account's control total (the sum of its 03 and 16 amounts) is "
        "-1260161341762, but the records add up to 7999960"
    ),
}


def test_every_bai2_sample_is_stated_here() -> None:
    samples = corpus_files("bai2", "*.bai2", "*.txt")
    assert {str(path.relative_to(CORPUS / "bai2")) for path in samples} == set(BAI2)


@pytest.mark.parametrize("name", sorted(BAI2))
def test_a_bai2_sample_stages_quarantines_or_is_rejected_as_stated(name: str, tmp_path: Path) -> None:
    assert_landed_as_stated(land_sample(CORPUS / "bai2" / name, tmp_path, "bai2"), BAI2[name])
