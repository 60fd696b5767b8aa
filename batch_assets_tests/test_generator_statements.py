"""The generator's bank side as camt.053, MT940 and BAI2 statements, read back through the real statement readers."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from batch_assets.generator import GenerationReport, generate, statements
from batch_assets.landing import digest_file, read_landing_file, scan_landing
from batch_assets.transforms import contract
from batch_assets.transforms.references import normalise_reference
from batch_assets_tests.test_generator import BUSY, DAYS, START, _judge, _truth

pytestmark = pytest.mark.unit

ROWS = 3_000


def _generate(root: Path, bank_format: str | None, *, seed: int = 11, parts: int = 2) -> GenerationReport:
    return generate(
        start=START,
        days=DAYS,
        rows=ROWS,
        fmt="csv",
        seed=seed,
        landing=root / "landing",
        truth=root / "truth",
        parts=parts,
        rates=BUSY,
        bank_format=bank_format,
    )


@pytest.fixture(scope="module", params=statements.FORMATS)
def generated(request, tmp_path_factory) -> tuple[str, Path, GenerationReport]:
    root = tmp_path_factory.mktemp(request.param)
    return request.param, root, _generate(root, request.param)


@pytest.fixture(scope="module")
def as_csv(tmp_path_factory) -> Path:
    """The same seed's days with the bank side as CSV: what every statement must say in another form."""
    root = tmp_path_factory.mktemp("csv")
    _generate(root, None)
    return root


def _read_back(root: Path) -> pl.DataFrame:
    """Every bank row of every statement file, read by the landing zone's own readers."""
    files, ignored = scan_landing(root / "landing", sources=("bank",))
    assert not ignored, ignored
    frames = [read_landing_file(file, digest_file(file)).collect() for file in files]
    return pl.concat(frames).with_columns(source=pl.lit("bank"))


def _csv_bank(root: Path) -> pl.DataFrame:
    frames = [pl.read_csv(path, infer_schema=False) for path in sorted((root / "landing" / "bank").glob("*.csv"))]
    return pl.concat(frames)


def _good(rows: pl.DataFrame, truth_root: Path) -> pl.DataFrame:
    """Rows that no rule quarantines, keyed by txn_id."""
    bad = _truth(truth_root, "quarantine.parquet").filter(pl.col("source") == "bank")
    return rows.join(bad.select("txn_id"), on="txn_id", how="anti")


def test_every_statement_file_lands_whole_under_a_name_the_bank_source_reads(generated):
    fmt, root, report = generated
    rows = _read_back(root)
    extension = {"camt053": ".xml", "mt940": ".sta", "bai2": ".bai2"}[fmt]
    names = [path.name for path in sorted((root / "landing" / "bank").iterdir())]
    assert len(names) == DAYS * 2 and all(name.endswith(extension) for name in names)
    assert rows.height == sum(day.bank_rows for day in report.day_reports)


def test_the_statements_say_what_the_csv_of_the_same_seed_says(generated, as_csv):
    fmt, root, _ = generated
    columns = ["txn_id", "account_id", "booking_date", "amount", "currency"]
    read = _good(_read_back(root), root)
    written = _good(_csv_bank(as_csv), as_csv)
    both = read.join(written, on="txn_id", suffix="_csv")
    # Only the bad rows differ: a statement can carry no unparsable amount, date or currency.
    assert both.height >= 0.98 * written.height
    for column in columns[1:]:
        mismatched = both.filter(pl.col(column) != pl.col(f"{column}_csv"))
        if column == "amount":
            mismatched = both.filter(pl.col("amount").cast(contract.MONEY) != pl.col("amount_csv").cast(contract.MONEY))
        assert mismatched.is_empty(), (column, mismatched.head(3))
    # The reference a statement carries normalises as the CSV's does, so matching sees the same day.
    norms = both.select(
        normalise_reference(pl.col("reference")).alias("read"),
        normalise_reference(pl.col("reference_csv")).alias("csv"),
    )
    assert norms.filter(pl.col("read").ne_missing(pl.col("csv"))).is_empty()
    assert norms["read"].null_count() > 0


def test_quarantine_truth_is_exactly_what_the_read_statements_break(generated):
    fmt, root, _ = generated
    rows = _read_back(root).sort("source", "file_name", "line_number")
    judged = rows.with_columns(verdict=pl.Series(_judge(rows), dtype=pl.String)).filter(pl.col("verdict").is_not_null())
    truth = _truth(root, "quarantine.parquet").filter(pl.col("source") == "bank")
    key = ["source", "file_name", "line_number"]
    expected = judged.select(*key, pl.col("verdict").alias("rule"), "txn_id").sort(key)
    assert truth.select(*key, "rule", "txn_id").sort(key).equals(expected)
    # A statement carries duplicates, and (except BAI2, whose lines take their group's date) lines of another day.
    rules = set(truth["rule"])
    expected_rules = {contract.RULE_DUPLICATE_TXN_ID}
    if fmt != "bai2":
        expected_rules.add(contract.RULE_BOOKING_DATE_MISMATCH)
    assert rules == expected_rules


def test_statements_carry_several_accounts_and_currencies_and_the_formats_own_marks(generated):
    fmt, root, _ = generated
    rows = _read_back(root)
    assert rows["account_id"].n_unique() >= 20 and rows["currency"].n_unique() >= 5
    extra = [json.loads(text) for text in rows["extra"]]
    if fmt == "camt053":
        batches = {e["batch_entry"] for e in extra if "batch_entry" in e}
        assert len(batches) >= 10
        assert sum(1 for e in extra if e.get("reversal")) >= 10
    elif fmt == "mt940":
        marks = {e["mark"] for e in extra}
        assert marks == {"C", "D", "RC", "RD"}
    else:
        assert {e["type_code"] for e in extra} == {statements.BAI2_CREDIT, statements.BAI2_DEBIT}
    # Signs follow the marks: credits positive, debits (and reversed credits) negative.
    amounts = rows["amount"].cast(contract.MONEY)
    assert (amounts > 0).any() and (amounts < 0).any()


def test_same_seed_gives_identical_statements(generated, tmp_path):
    fmt, root, _ = generated
    _generate(tmp_path, fmt)
    for path in sorted((root / "landing" / "bank").iterdir()):
        assert (tmp_path / "landing" / "bank" / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_day_with_no_lines_is_still_a_statement_that_lands(tmp_path):
    generate(start=START, days=1, rows=0, fmt="csv", seed=1, landing=tmp_path, bank_format="camt053")
    (file,), _ = scan_landing(tmp_path, sources=("bank",))
    assert read_landing_file(file, digest_file(file)).collect().height == 0


def test_an_unknown_bank_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="bank_format must be one of camt053, mt940, bai2"):
        generate(start=START, days=1, rows=10, fmt="csv", seed=1, landing=tmp_path, bank_format="mt103")


def test_the_command_line_writes_the_bank_side_as_statements(tmp_path):
    import subprocess
    import sys

    command = [str(Path(sys.executable).with_name("batch-assets")), "generate", "--start", "2026-11-21", "--days", "1"]
    command += ["--rows", "500", "--bank-format", "bai2", "--landing", str(tmp_path)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BATCH_ASSETS_HOME": str(tmp_path / "data")}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "bank side as bai2 statements" in completed.stdout
    (file,), _ = scan_landing(tmp_path, sources=("bank",))
    assert file.name == "bank/bank_2026-11-21.bai2"
    assert read_landing_file(file, digest_file(file)).collect().height > 400
