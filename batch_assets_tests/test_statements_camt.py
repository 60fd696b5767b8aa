"""camt.052, camt.053 and camt.054 statements, read by the bank source: our own samples, one per rule and edge."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch

import polars as pl
import pytest
from hypothesis import given
from polars.testing import assert_frame_equal

from batch_assets.landing import RejectedFile
from batch_assets.landing.camt import Statements
from batch_assets_tests.statement_corpus import corpus_files, land_statement
from batch_assets_tests.statement_fuzz import FUZZ, assert_landed_whole_or_rejected, mutations

pytestmark = pytest.mark.unit

DAY = date(2026, 11, 21)
SAMPLES = Path(__file__).parent / "statements" / "camt"


def land(tmp_path: Path, content: bytes) -> pl.DataFrame:
    return land_statement(tmp_path, content, "xml", DAY)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def rejection(tmp_path: Path, content: bytes) -> str:
    with pytest.raises(RejectedFile) as caught:
        land(tmp_path, content)
    assert caught.value.name == f"bank/bank_{DAY.isoformat()}.xml"
    return caught.value.reason


def test_each_booked_entry_is_a_row_with_its_sign_and_a_batch_is_one_row_per_detail(tmp_path: Path) -> None:
    rows = land(tmp_path, sample("two_statements.camt053.xml"))

    got = {r["txn_id"]: (r["account_id"], r["amount"], r["currency"]) for r in rows.iter_rows(named=True)}
    assert got == {
        "BANKREF-1": ("DE89370400440532013000", "250.00", "EUR"),
        # no bank reference: the statement's id and the entry's position
        "STMT-EUR-2026-11-21/2": ("DE89370400440532013000", "-100.00", "EUR"),
        # a batch: each detail with its own amount and mark, and its own reference or the entry's and its position
        "D-1": ("DE89370400440532013000", "100.00", "EUR"),
        "BATCH-9/2": ("DE89370400440532013000", "250.00", "EUR"),
        "BATCH-9/3": ("DE89370400440532013000", "-50.00", "EUR"),
        # a reversal of a debit is a credit
        "REV-4": ("DE89370400440532013000", "40.00", "EUR"),
        # the second statement, an account without an IBAN
        "S2-1": ("0123456789", "-12.34", "USD"),
    }
    # The pending entry is not staged; rows are numbered in file order.
    assert "PENDING-5" not in got
    assert rows["line_number"].to_list() == list(range(1, 8))
    assert set(rows["booking_date"]) == {"2026-11-21"}
    sums = (
        rows.with_columns(pl.col("amount").cast(pl.Decimal(18, 2)))
        .group_by("currency", (pl.col("amount") > 0).alias("credit"))
        .agg(pl.col("amount").sum())
    )
    assert {(c, bool(p), a) for c, p, a in sums.iter_rows()} == {
        ("EUR", True, Decimal("640.00")),
        ("EUR", False, Decimal("-150.00")),
        ("USD", False, Decimal("-12.34")),
    }


def test_the_reference_is_the_end_to_end_id_then_the_creditor_reference_then_the_remittance_text(
    tmp_path: Path,
) -> None:
    rows = {r["txn_id"]: r for r in land(tmp_path, sample("two_statements.camt053.xml")).iter_rows(named=True)}
    assert rows["BANKREF-1"]["reference"] == "E2E-INV-1001"
    # NOTPROVIDED is no reference, so the remittance text is taken
    assert rows["STMT-EUR-2026-11-21/2"]["reference"] == "Invoice 77"
    assert rows["BATCH-9/3"]["reference"] == "RF18 5390 0754 7034"
    assert rows["REV-4"]["reference"] is None
    assert rows["BANKREF-1"]["counterparty"] == "Acme GmbH"
    assert rows["STMT-EUR-2026-11-21/2"]["counterparty"] == "Paper Supplies Ltd"
    assert rows["STMT-EUR-2026-11-21/2"]["description"] == "Card payment"
    assert rows["BANKREF-1"]["value_date"] == "2026-11-22"


def test_what_does_not_map_is_kept_in_extra_with_the_element_it_came_from(tmp_path: Path) -> None:
    rows = {r["txn_id"]: r for r in land(tmp_path, sample("two_statements.camt053.xml")).iter_rows(named=True)}
    first = json.loads(rows["BANKREF-1"]["extra"])
    assert first == {
        "bank_transaction_code": "PMNT",
        "element": "Document/BkToCstmrStmt/Stmt[1]/Ntry[1]",
        "entry_reference": "1",
        "format": "camt.053.001.08",
        "reversal": False,
        "source_line": 13,
        "statement_id": "STMT-EUR-2026-11-21",
        "transaction_id": "TX-1",
    }
    detail = json.loads(rows["BATCH-9/2"]["extra"])
    assert detail["batch_entry"] == "BATCH-9"
    assert detail["element"] == "Document/BkToCstmrStmt/Stmt[1]/Ntry[3]/NtryDtls/TxDtls[2]"
    assert json.loads(rows["REV-4"]["extra"])["reversal"] is True


def test_a_notification_stages_its_booked_batch_and_not_its_entry_for_information(tmp_path: Path) -> None:
    rows = land(tmp_path, sample("notification.camt054.xml"))
    assert rows.select("txn_id", "amount", "reference").rows() == [
        ("NTF-1-1/1/1", "-30.00", "SALARY-A"),
        ("NTF-1-1/1/2", "-40.00", "SALARY-B"),
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "does_not_balance.camt053.xml",
            "Document/BkToCstmrStmt/Stmt[1] (STMT-EUR-2026-11-21): statement does not balance: opening 1000.00 EUR "
            "+ booked entries 490.00 = 1490.00, but the closing balance is 1400.00",
        ),
        (
            "batch_does_not_sum.camt053.xml",
            "Document/BkToCstmrStmt/Stmt[1]/Ntry[3]: the batch's 3 details sum to 255.00 but the entry is 300.00",
        ),
        (
            "unknown_status.camt052.xml",
            "Document/BkToCstmrAcctRpt/Rpt[1]/Ntry[2]/Sts: entry status 'BOOKED' is none of BOOK, FUTR, INFO, PDNG",
        ),
    ],
)
def test_a_statement_that_contradicts_itself_is_rejected_naming_the_element(
    tmp_path: Path, name: str, reason: str
) -> None:
    assert reason in rejection(tmp_path, sample(name))


def test_a_truncated_statement_is_rejected_with_its_line_and_lands_nothing(tmp_path: Path) -> None:
    reason = rejection(tmp_path, sample("truncated.camt053.xml"))
    assert reason.startswith("line ") and "not well-formed XML" in reason
    assert not (tmp_path / "spill.parquet").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<Document/>", "Document: namespace '' is not a camt.052, 053 or 054 one"),
        (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><Other/></Document>',
            "not a camt.052, camt.053 or camt.054 message",
        ),
        (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr/>'
            b"</BkToCstmrStmt></Document>",
            "Document/BkToCstmrStmt: a camt.053 message with no Stmt",
        ),
        (
            b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document xmlns="urn:iso:std:iso:20022:tech:xsd:'
            b'camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&x;</Id></Stmt></BkToCstmrStmt></Document>',
            "the statement has no Id",
        ),
    ],
)
def test_a_file_that_is_no_camt_statement_is_rejected_with_why(tmp_path: Path, content: bytes, reason: str) -> None:
    assert reason in rejection(tmp_path, content)


def test_an_amount_with_a_sign_or_an_exponent_is_rejected_with_its_element(tmp_path: Path) -> None:
    for amount in ("-5.00", "1E+2"):
        content = sample("two_statements.camt053.xml").replace(
            b'"EUR">250.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>',
            f'"EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>'.encode(),
        )
        assert f"Stmt[1]/Ntry[1]/Amt: '{amount}' is not an amount" in rejection(tmp_path, content)


# -- fuzzing: mutations of a statement are landed whole or rejected with a reason, never a crash or part of a file --

GOOD = (SAMPLES / "two_statements.camt053.xml").read_bytes()


MUTATIONS = mutations(GOOD, re.compile(rb"<Ntry>.*?</Ntry>", re.DOTALL))


@FUZZ
@given(MUTATIONS)
def test_a_mutated_statement_lands_whole_or_is_rejected_with_a_reason(content: bytes) -> None:
    # The second statement has no balances, so it can lose entries unnoticed; the first cannot.
    assert_landed_whole_or_rejected(content, GOOD, "xml")


def landed(folder: Path, content: bytes) -> pl.DataFrame | str:
    try:
        return land(folder, content)
    except RejectedFile as rejected:
        return rejected.reason


def landed_both_ways(content: bytes) -> tuple[pl.DataFrame | str, pl.DataFrame | str]:
    """What the file lands as (its rows, or why it is rejected): with the usual entries read quickly, and with
    every entry read in full, element by element, as an unusual one is."""
    with tempfile.TemporaryDirectory() as quick, tempfile.TemporaryDirectory() as full:
        first = landed(Path(quick), content)
        with patch.object(Statements, "_quick_entry", lambda self, entry, statement: None):
            return first, landed(Path(full), content)


def assert_same(quick: pl.DataFrame | str, full: pl.DataFrame | str) -> None:
    if isinstance(quick, str) or isinstance(full, str):
        assert quick == full
    else:
        assert_frame_equal(quick, full)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.xml")), ids=lambda path: path.name)
def test_the_quick_reading_of_an_entry_lands_what_the_full_reading_does(path: Path) -> None:
    assert_same(*landed_both_ways(path.read_bytes()))


def test_the_quick_reading_agrees_on_every_public_camt_sample() -> None:
    for path in corpus_files("camt", "*.xml"):
        assert_same(*landed_both_ways(path.read_bytes()))


@FUZZ
@given(MUTATIONS)
def test_the_quick_reading_agrees_on_a_mutated_statement(content: bytes) -> None:
    assert_same(*landed_both_ways(content))
