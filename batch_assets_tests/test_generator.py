"""Tests of the sample-data generator: file contract, determinism, ground truth, realism and rates."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import polars as pl
import pytest

from batch_assets.generator import GenerationReport, Rates, files, generate
from batch_assets.generator import truth as truth_module
from batch_assets.transforms import contract
from batch_assets.transforms.references import normalise_reference

pytestmark = pytest.mark.unit

START = dt.date(2026, 12, 30)  # the range crosses a year end on purpose
DAYS = 4
ROWS = 3_000
# RECONCILIATION.md's matching defaults, restated here so that the truth is checked against them.
CARRY_DAYS = 5
DATE_TOLERANCE_DAYS = 2
AMOUNT = re.compile(r"^-?\d+(\.\d{1,2})?$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# High enough that every kind of mess shows up in a few thousand rows.
BUSY = Rates(
    invalid=0.01, duplicate=0.005, amount_mismatch=0.02, lag=0.3, reference_prefixed=0.05, reference_missing=0.05
)


def _generate(root: Path, fmt: str, *, seed: int = 11, rows: int = ROWS, days: int = DAYS, parts: int = 2, rates=BUSY):
    return generate(
        start=START,
        days=days,
        rows=rows,
        fmt=fmt,
        seed=seed,
        landing=root / "landing",
        truth=root / "truth",
        parts=parts,
        rates=rates,
    )


@pytest.fixture(scope="module", params=contract.FORMATS)
def generated(request, tmp_path_factory) -> tuple[str, Path, GenerationReport]:
    root = tmp_path_factory.mktemp(request.param)
    return request.param, root, _generate(root, request.param)


def _read(path: Path, fmt: str) -> pl.DataFrame:
    """A landing file with every contract column as text, the way an ingest would stage it raw."""
    if fmt == "csv":
        frame = pl.read_csv(path, infer_schema=False)
    elif fmt == "jsonl":
        frame = pl.read_ndjson(path, schema=dict.fromkeys(contract.CONTRACT_COLUMNS, pl.String))
    else:
        frame = pl.read_parquet(path)
        assert frame.schema["amount"] == pl.Decimal(18, 2), "parquet amounts must be Decimal(18,2), never float"
        assert frame.schema["booking_date"] == pl.Date
        frame = frame.with_columns(pl.all().cast(pl.String))
    return frame.select(contract.CONTRACT_COLUMNS)


def _landing_rows(root: Path, fmt: str) -> pl.DataFrame:
    """Every written row of every file, with source, relative file name, line number and business date."""
    frames = []
    for path in sorted((root / "landing").glob("*/*")):
        name = contract.parse_landing_name(path.parent.name, path.name)
        frame = _read(path, fmt)
        first = 2 if fmt == "csv" else 1
        frames.append(
            frame.with_columns(
                source=pl.lit(name.source),
                file_name=pl.lit(f"{path.parent.name}/{path.name}"),
                line_number=pl.int_range(first, first + frame.height, dtype=pl.Int64),
                business_date=pl.lit(name.business_date),
            )
        )
    return pl.concat(frames)


def _truth(root: Path, name: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(path) for path in sorted((root / "truth").glob(f"*/{name}"))])


def _judge(rows: pl.DataFrame) -> list[str | None]:
    """An independent reading of the contract's quarantine rules: the first rule each row breaks."""
    seen: set[str] = set()
    verdicts: list[str | None] = []
    for row in rows.sort("source", "file_name", "line_number").iter_rows(named=True):
        verdict = None
        if any(row[column] in (None, "") for column in contract.REQUIRED_COLUMNS):
            verdict = contract.RULE_MISSING_FIELD
        elif not AMOUNT.match(row["amount"]):
            verdict = contract.RULE_INVALID_AMOUNT
        elif not all(_is_date(row[name]) for name in ("booking_date", "value_date") if row[name] not in (None, "")):
            verdict = contract.RULE_INVALID_DATE
        elif not re.fullmatch(r"[A-Za-z]{3}", row["currency"]):
            verdict = contract.RULE_INVALID_CURRENCY
        elif dt.date.fromisoformat(row["booking_date"]) != row["business_date"]:
            verdict = contract.RULE_BOOKING_DATE_MISMATCH
        elif (row["source"], row["txn_id"]) in seen:
            verdict = contract.RULE_DUPLICATE_TXN_ID
        if verdict is None:
            seen.add((row["source"], row["txn_id"]))
        verdicts.append(verdict)
    return verdicts


def _is_date(text: str) -> bool:
    if not ISO_DATE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _judged(root: Path, fmt: str) -> pl.DataFrame:
    rows = _landing_rows(root, fmt).sort("source", "file_name", "line_number")
    return rows.with_columns(verdict=pl.Series(_judge(rows), dtype=pl.String))


def _staged(root: Path, fmt: str) -> pl.DataFrame:
    """The rows an ingest would stage: no rule broken, amounts as Decimal(18,2)."""
    return (
        _judged(root, fmt)
        .filter(pl.col("verdict").is_null())
        .with_columns(pl.col("amount").cast(contract.MONEY), pl.col("booking_date").str.to_date())
    )


# --- files ----------------------------------------------------------------------------------------


def test_file_names_fit_the_contract_and_every_format_reads_back(generated):
    fmt, root, report = generated
    paths = sorted((root / "landing").glob("*/*"))
    assert [p for p in paths if p.name.startswith(".")] == [], "a temporary file was left behind"
    assert len(paths) == len(report.files) == DAYS * 2 * 2
    for path in paths:
        name = contract.parse_landing_name(path.parent.name, path.name)
        assert contract.FILE_NAME_PATTERN.match(path.name)
        assert name.format == fmt and name.part in ("01", "02")
        assert START <= name.business_date < START + dt.timedelta(days=DAYS)
        frame = _read(path, fmt)
        assert frame.height > 0
    expected = {
        f"{source}/{source}_{START + dt.timedelta(days=d)}_{part}.{fmt}"
        for source in contract.SOURCES
        for d in range(DAYS)
        for part in ("01", "02")
    }
    assert {f"{p.parent.name}/{p.name}" for p in paths} == expected


def test_one_part_gives_the_plain_name_and_csv_amounts_have_two_decimals(tmp_path):
    _generate(tmp_path, "csv", days=1, rows=200, parts=1, rates=Rates(invalid=0.0))
    names = sorted(p.name for p in (tmp_path / "landing").glob("*/*"))
    assert names == ["bank_2026-12-30.csv", "ledger_2026-12-30.csv"]
    text = (tmp_path / "landing" / "ledger" / "ledger_2026-12-30.csv").read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    assert set(header) == set(contract.CONTRACT_COLUMNS) and header != sorted(header)
    amounts = pl.read_csv(tmp_path / "landing" / "ledger" / "ledger_2026-12-30.csv", infer_schema=False)["amount"]
    assert amounts.str.contains(r"^-?\d+\.\d{2}$").all(), "CSV amounts are plain decimals with exactly 2 decimals"


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    def snapshot(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for fmt in contract.FORMATS:
        first = snapshot(_generate(tmp_path / f"{fmt}-a", fmt, seed=5, rows=500).landing.parent)
        again = snapshot(_generate(tmp_path / f"{fmt}-b", fmt, seed=5, rows=500).landing.parent)
        other = snapshot(_generate(tmp_path / f"{fmt}-c", fmt, seed=6, rows=500).landing.parent)
        assert first == again
        assert first.keys() == other.keys()
        assert all(first[name] != other[name] for name in first if name.startswith("landing"))


def test_txn_ids_are_unique_per_source_across_days(generated):
    fmt, root, _ = generated
    rows = _landing_rows(root, fmt)
    copies = _truth(root, "quarantine.parquet").filter(pl.col("rule") == contract.RULE_DUPLICATE_TXN_ID).height
    with_id = rows.filter(pl.col("txn_id").is_not_null())
    assert with_id.height - with_id.select("source", "txn_id").n_unique() == copies


# --- ground truth: quarantine ---------------------------------------------------------------------


def test_quarantine_truth_is_exactly_the_rows_that_break_a_rule(generated):
    fmt, root, _ = generated
    judged = _judged(root, fmt).filter(pl.col("verdict").is_not_null())
    truth = _truth(root, "quarantine.parquet")
    assert truth.schema == pl.Schema(truth_module.QUARANTINE_SCHEMA)
    key = ["source", "file_name", "line_number"]
    expected = judged.select(*key, pl.col("verdict").alias("rule"), "txn_id").sort(key)
    assert truth.select(*key, "rule", "txn_id").sort(key).equals(expected)
    rules = set(truth["rule"])
    assert contract.RULE_DUPLICATE_TXN_ID in rules and contract.RULE_MISSING_FIELD in rules
    if fmt == "parquet":
        # A typed Parquet file cannot carry an unparsable amount or date.
        assert rules.isdisjoint({contract.RULE_INVALID_AMOUNT, contract.RULE_INVALID_DATE})
    else:
        # The generator writes no spreadsheet formulas: that rule is proven by the bad-input corpus instead.
        assert rules == set(contract.RULES) - {contract.RULE_FORMULA_LIKE_TEXT}


# --- ground truth: pairs --------------------------------------------------------------------------


def test_pairs_point_at_real_rows_and_groups_balance(generated):
    fmt, root, _ = generated
    pairs = _truth(root, "pairs.parquet")
    assert pairs.schema == pl.Schema(truth_module.PAIRS_SCHEMA)
    assert pairs["ledger_amount"].dtype == contract.MONEY and pairs["bank_amount"].dtype == contract.MONEY
    staged = _staged(root, fmt)
    ledger = staged.filter(pl.col("source") == "ledger")
    bank = staged.filter(pl.col("source") == "bank")
    findable = pairs.filter("findable")
    joined = findable.join(ledger, left_on="ledger_txn_id", right_on="txn_id", how="left").join(
        bank, left_on="bank_txn_id", right_on="txn_id", how="left", suffix="_bank"
    )
    assert joined.height == findable.height
    assert joined["amount"].null_count() == 0 and joined["amount_bank"].null_count() == 0
    assert (joined["amount"] == joined["ledger_amount"]).all()
    assert (joined["amount_bank"] == joined["bank_amount"]).all()
    assert (joined["booking_date"] == joined["ledger_date"]).all()
    assert (joined["account_id"] == joined["account_id_right"]).all()
    # Every id exists somewhere in the files, unless its row lost the txn_id itself.
    written = set(_landing_rows(root, fmt)["txn_id"].drop_nulls())
    lost = set(_truth(root, "quarantine.parquet")["txn_id"].drop_nulls())
    ids = set(pairs["ledger_txn_id"]) | set(pairs["bank_txn_id"])
    assert ids - written <= ids - lost
    assert len(ids - written) <= pairs.filter(~pl.col("findable")).height
    groups = (
        pairs.filter(pl.col("kind") == "many_to_one")
        .group_by("group_id")
        .agg(
            pl.col("ledger_amount").sum(),
            pl.col("bank_amount").first(),
            pl.len(),
            pl.col("account_id").n_unique(),
            pl.col("ledger_date").n_unique(),
        )
    )
    assert groups.height > 0
    assert (groups["ledger_amount"] == groups["bank_amount"]).all()
    assert groups["len"].is_between(2, 8).all()
    assert (groups["account_id"] == 1).all() and (groups["ledger_date"] == 1).all()
    assert pairs.filter(pl.col("kind") == "one_to_one")["group_id"].is_unique().all()


def test_amounts_have_at_most_two_decimals_and_true_pairs_share_the_sign(generated):
    fmt, root, _ = generated
    staged = _staged(root, fmt)
    assert staged["amount"].dtype == contract.MONEY
    text = _landing_rows(root, fmt)["amount"].drop_nulls()
    valid = text.filter(text.str.contains(AMOUNT.pattern))
    assert valid.str.contains(r"\.\d{2}$").all()
    pairs = _truth(root, "pairs.parquet")
    assert ((pairs["ledger_amount"] > 0) == (pairs["bank_amount"] > 0)).all()
    assert (pairs["ledger_amount"] < 0).any() and (pairs["ledger_amount"] > 0).any()


def test_findable_follows_the_contract_on_the_file_contents(generated):
    fmt, root, _ = generated
    pairs = _truth(root, "pairs.parquet")
    staged = _staged(root, fmt).with_columns(normalise_reference(pl.col("reference")).alias("norm"))
    ledger = staged.filter(pl.col("source") == "ledger").select("txn_id", "norm", "amount", "booking_date")
    bank = staged.filter(pl.col("source") == "bank").select("txn_id", "norm", "amount", "booking_date")
    rows = pairs.join(ledger, left_on="ledger_txn_id", right_on="txn_id", how="left").join(
        bank, left_on="bank_txn_id", right_on="txn_id", how="left", suffix="_b"
    )
    both = pl.col("amount").is_not_null() & pl.col("amount_b").is_not_null()
    same_ref = (pl.col("norm") == pl.col("norm_b")).fill_null(False)
    gap = (pl.col("booking_date_b") - pl.col("booking_date")).dt.total_days().abs()
    one = rows.filter(pl.col("kind") == "one_to_one").with_columns(
        expected=pl.when(~both | (pl.col("amount") != pl.col("amount_b")))
        .then(None)
        .when(same_ref & (gap <= CARRY_DAYS))
        .then(pl.lit("exact"))
        .when(~same_ref & (gap <= DATE_TOLERANCE_DAYS))
        .then(pl.lit("amount_date"))
        .otherwise(None)
    )
    assert one["expected"].equals(one["expected_pass"], check_names=False)
    many = (
        rows.filter(pl.col("kind") == "many_to_one")
        .group_by("group_id")
        .agg(
            pl.col("expected_pass").first(),
            (both & same_ref & (gap <= CARRY_DAYS)).all().alias("refs_ok"),
            (pl.col("amount").sum() == pl.col("amount_b").first()).alias("sums"),
        )
        .with_columns(expected=pl.when(pl.col("refs_ok") & pl.col("sums")).then(pl.lit("aggregate")).otherwise(None))
    )
    assert many["expected"].equals(many["expected_pass"], check_names=False)
    assert set(pairs["expected_pass"].drop_nulls()) == {"exact", "amount_date", "aggregate"}
    assert (pairs["findable"] == pairs["expected_pass"].is_not_null()).all()
    assert (pairs["findable"] == pairs["reason"].is_null()).all()
    assert {"amount differs", "ledger row quarantined", "bank row quarantined"} <= set(pairs["reason"].drop_nulls())
    # An amount mismatch keeps its reference, so the engine can report it as one.
    differs = rows.filter(pl.col("reason") == "amount differs")
    assert differs.height > 0 and differs.select(same_ref.all()).item()
    assert (differs["amount"] != differs["amount_b"]).all()


def test_lagging_bank_lines_put_their_pair_on_the_later_day(generated):
    fmt, root, _ = generated
    for folder in sorted((root / "truth").iterdir()):
        day = dt.date.fromisoformat(folder.name)
        pairs = pl.read_parquet(folder / "pairs.parquet")
        assert (pairs["bank_date"] == day).all()
        assert (pairs["ledger_date"] <= day).all()
    pairs = _truth(root, "pairs.parquet").with_columns(
        lag=(pl.col("bank_date") - pl.col("ledger_date")).dt.total_days()
    )
    assert set(pairs["lag"].unique()) == {0, 1, 2, 3}
    lagged = pairs.filter(pl.col("lag") > 0)
    staged = _staged(root, fmt)
    located = lagged.join(staged.filter(pl.col("source") == "bank"), left_on="bank_txn_id", right_on="txn_id")
    assert located.height > 0 and (located["business_date"] == located["bank_date"]).all()
    located = lagged.join(staged.filter(pl.col("source") == "ledger"), left_on="ledger_txn_id", right_on="txn_id")
    assert located.height > 0 and (located["business_date"] == located["ledger_date"]).all()
    # A lagging bank line that would land after the range is not delivered at all.
    manifest = json.loads((root / "truth" / str(START + dt.timedelta(days=DAYS - 1)) / "manifest.json").read_text())
    assert manifest["unpaired"]["bank_line_after_range"] > 0


# --- precision ------------------------------------------------------------------------------------


def test_no_two_unpaired_items_of_an_account_share_an_amount(generated):
    fmt, root, _ = generated
    staged = _staged(root, fmt)
    pairs = _truth(root, "pairs.parquet").filter(pl.col("kind") == "one_to_one")
    true_pairs = set(zip(pairs["ledger_txn_id"], pairs["bank_txn_id"], strict=True))
    shared = (
        staged.group_by("account_id", "currency", "amount")
        .agg(pl.col("source"), pl.col("txn_id"))
        .filter(pl.col("txn_id").list.len() > 1)
    )
    assert shared.height > 0, "true pairs share an amount, so some groups must exist"
    for row in shared.iter_rows(named=True):
        by_source = dict(zip(row["source"], row["txn_id"], strict=True))
        assert len(row["txn_id"]) == 2 and set(by_source) == {"ledger", "bank"}, row
        assert (by_source["ledger"], by_source["bank"]) in true_pairs, row


def test_every_account_has_one_currency_and_activity_is_skewed(tmp_path):
    _generate(tmp_path, "parquet", rows=20_000, days=1, parts=1, rates=Rates())
    staged = _staged(tmp_path, "parquet")
    assert staged.group_by("account_id").agg(pl.col("currency").n_unique())["currency"].max() == 1
    assert staged["currency"].n_unique() >= 5
    ledger = staged.filter(pl.col("source") == "ledger")
    per_account = ledger["account_id"].value_counts()["count"].sort(descending=True)
    assert per_account.len() > 50
    assert per_account[0] > 10 * per_account.median()


# --- rates ----------------------------------------------------------------------------------------


def test_default_rates_are_roughly_respected(tmp_path):
    rows, days = 20_000, 3
    report = _generate(tmp_path, "parquet", rows=rows, days=days, parts=1, rates=Rates())
    manifests = [json.loads(p.read_text()) for p in sorted((tmp_path / "truth").glob("*/manifest.json"))]
    pairs = _truth(tmp_path, "pairs.parquet")
    one = pairs.filter(pl.col("kind") == "one_to_one")
    total_rows = rows * days
    bank_lines = report.total("bank_rows") - report.total("bank_duplicates")

    def near(value: float, expected: float, tolerance: float = 0.35) -> bool:
        return abs(value - expected) <= tolerance * expected

    lagged = one.filter(pl.col("bank_date") > pl.col("ledger_date")).height / one.height
    assert near(lagged, 0.10 * 0.9, 0.4)  # the last day's lagging lines are not delivered
    assert near((one["reason"] == "amount differs").sum() / one.height, 0.005)
    assert near(sum(m["unpaired"]["ledger_only"] for m in manifests) / total_rows, 0.005)
    assert near(sum(m["unpaired"]["bank_only"] for m in manifests) / total_rows, 0.003, 0.5)
    assert near(report.total("groups") / bank_lines, 0.02, 0.2)
    assert near(report.total("ledger_invalid") / total_rows, 0.001, 0.5)
    assert near(report.total("ledger_duplicates") / total_rows, 0.001, 0.5)
    assert near(report.total("bank_invalid") / bank_lines, 0.001, 0.5)
    assert near(report.total("bank_duplicates") / bank_lines, 0.001, 0.5)
    findable = pairs.filter("findable").group_by("expected_pass").agg(pl.col("group_id").n_unique())
    share = dict(zip(findable["expected_pass"], findable["group_id"], strict=True))
    assert share["exact"] > 0.9 * one.height
    assert 0.02 * one.height < share["amount_date"] < 0.1 * one.height
    assert one.height / total_rows > 0.85


def test_files_are_written_under_a_name_a_watcher_ignores_then_renamed(tmp_path):
    final = tmp_path / "ledger" / "ledger_2026-12-30.csv"
    seen = []

    def write(target: Path) -> None:
        seen.append(target)
        assert target.parent == final.parent and not final.exists()
        assert contract.FILE_NAME_PATTERN.match(target.name) is None
        target.write_text("txn_id\n")

    files.write_atomic(final, write)
    assert final.read_text() == "txn_id\n" and len(seen) == 1 and not seen[0].exists()

    def fail_half_way(target: Path) -> None:
        target.write_text("txn_id\nL1")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.write_atomic(tmp_path / "ledger" / "ledger_2026-12-31.csv", fail_half_way)
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == ["ledger_2026-12-30.csv"]


def test_zero_rows_give_header_only_csv_and_no_empty_jsonl(tmp_path):
    csv = generate(start=START, days=1, rows=0, fmt="csv", seed=1, landing=tmp_path / "csv")
    assert all(p.read_text().count("\n") == 1 for p in csv.files) and len(csv.files) == 2
    jsonl = generate(start=START, days=1, rows=0, fmt="jsonl", seed=1, landing=tmp_path / "jsonl")
    assert jsonl.files == () and list((tmp_path / "jsonl").rglob("*.jsonl")) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        generate(start=START, days=1, rows=10, fmt="xlsx", seed=1, landing=tmp_path)
    with pytest.raises(ValueError):
        generate(start=START, days=0, rows=10, fmt="csv", seed=1, landing=tmp_path)
    with pytest.raises(ValueError):
        Rates(lag=1.5)
