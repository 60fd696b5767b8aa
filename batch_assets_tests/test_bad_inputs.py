"""Bad input files: fuzzing the CSV and JSONL readers, and a corpus of broken files fed through the landing sensor
and the whole daily job, each with its specific error or quarantine reason and the rest of the day intact."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from batch_assets import settings
from batch_assets.alerts import error_text
from batch_assets.cli import main as cli_main
from batch_assets.definitions import defs
from batch_assets.defs.ingest import assets as ingest_assets
from batch_assets.landing import RejectedFile, digest_file, land_file, scan_landing
from batch_assets.storage import Warehouse
from batch_assets.transforms.contract import (
    CONTRACT_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
)
from batch_assets.transforms.validate import formula_like
from batch_assets_tests.helpers import csv_text, txn, write_landing
from batch_assets_tests.test_automation import age, tick
from batch_assets_tests.test_ingest_and_validate import (
    TABLES,
    failure_message,
    materialized,
    run_day,
    snapshot,
)

# The corpus tests share one warehouse and instance (the module-scoped `shared`): under `make test` one worker
# runs them all and builds it once.
pytestmark = pytest.mark.xdist_group("bad_inputs")

# -- fuzzing the readers -------------------------------------------------------------------------------------
#
# The properties: no input crashes the reader (it lands the file or raises RejectedFile), and a landed file is
# landed whole, row for row and value for value as an independent reference parser (Python's csv and json
# modules) reads it. Well-formed files must land. Deterministic (derandomize) and without an example database,
# so CI sees the same few hundred examples every time.

FUZZ = hypothesis_settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Any character but lone surrogates (which cannot be written as UTF-8): NUL, CR, LF, quotes, commas, BOM,
# separators of other scripts and astral characters included.
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NASTY_BYTES = [b'"', b",", b"\n", b"\r", b"\r\n", b"\xff", b"\xe9", b"\x00", b"\xef\xbb\xbf", b"{", b"}", b"\\", b'""']
# The whitespace Polars strips (Unicode White_Space), which differs from Python's str.strip at U+001C..U+001F.
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def land(name: str, content: bytes) -> pl.DataFrame:
    """Land `content` delivered as `name` (e.g. "ledger/ledger_2026-11-10.csv") in a throwaway landing zone; the
    landed rows, or RejectedFile."""
    # Polars' streaming sink can still be closing its output when it has already raised; the folder is
    # scratch, so a late file in it is no reason to fail.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        root = Path(folder) / "landing"
        path = root / name
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        (file,), _ = scan_landing(root)
        spill = Path(folder) / "spill.parquet"
        rows = land_file(file, digest_file(path), spill)
        frame = pl.read_parquet(spill)
        assert frame.height == rows
        return frame


def landed_values(frame: pl.DataFrame, columns: list[str]) -> list[tuple]:
    """The landed rows as (line, values...) with empty text and null alike: the contract reads both as missing."""
    return [
        (row[0], *[value if value else None for value in row[1:]])
        for row in frame.select("line_number", *columns).rows()
    ]


def csv_field(value: str, quote_all: bool) -> str:
    """RFC 4180: a value with a comma, quote, CR or LF is quoted and its quotes doubled. (Python's csv writer
    leaves a CR unquoted when the line terminator is LF.)"""
    if quote_all or any(char in value for char in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def damaged(draw, data: bytes) -> tuple[bytes, bool]:
    """The bytes cut short, with a nasty byte inserted or one deleted, or untouched; and whether untouched."""
    kind = draw(st.sampled_from(["truncate", "insert", "delete", "none"]))
    position = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "truncate":
        data = data[:position]
    elif kind == "insert":
        data = data[:position] + draw(st.sampled_from(NASTY_BYTES)) + data[position:]
    elif kind == "delete":
        data = data[:position] + data[position + 1 :]
    return data, kind == "none"


@st.composite
def csv_files(draw: st.DrawFn, mutate: bool) -> tuple[bytes, list[str], bool]:
    """A CSV file's bytes, its header, and whether it is well-formed by construction (no mutation applied)."""
    optional = draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), unique=True))
    extra = draw(st.lists(st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True), max_size=2, unique=True))
    header = draw(st.permutations([*REQUIRED_COLUMNS, *optional, *[e for e in extra if e not in CONTRACT_COLUMNS]]))
    rows = draw(st.lists(st.lists(ANY_TEXT, min_size=len(header), max_size=len(header)), max_size=5))
    quote_all = draw(st.booleans())
    end = draw(st.sampled_from(["\n", "\r\n"]))
    text = ""
    for row in [header, *rows]:
        text += ",".join(csv_field(value, quote_all) for value in row) + end
        if draw(st.integers(0, 9)) == 0:
            text += end  # a blank line between records
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
    if not mutate:
        return data, header, True
    data, intact = damaged(draw, data)
    return data, header, intact


def reference_csv(data: bytes) -> tuple[list[str], list[tuple]] | None:
    """How Python's csv module reads the file (header, then (line, values...) per record), or None when the
    file is not a well-formed CSV file of the contract by that reading."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    reader = csv.reader(io.StringIO(text, newline="\n"), strict=True)
    try:
        header = next(reader)
        records = []
        previous_end = reader.line_num
        for row in reader:
            if row:
                records.append((previous_end + 1, *row))
            previous_end = reader.line_num
    except (csv.Error, StopIteration):
        return None
    if len(set(header)) != len(header) or not set(REQUIRED_COLUMNS) <= set(header):
        return None
    if any(len(record) != len(header) + 1 for record in records):
        return None
    order = [name for name in CONTRACT_COLUMNS if name in header]
    index = [header.index(name) + 1 for name in order]
    return order, [(r[0], *[r[i] or None for i in index]) for r in records]


@FUZZ
@given(csv_files(mutate=False))
@pytest.mark.unit
def test_a_well_formed_csv_file_lands_whole_and_exact(case: tuple[bytes, list[str], bool]) -> None:
    data, header, _ = case
    expected = reference_csv(data)
    assert expected is not None, "the generator made a file the reference parser rejects"
    columns, rows = expected
    frame = land("ledger/ledger_2026-11-10.csv", data)
    assert landed_values(frame, columns) == rows


@FUZZ
@given(csv_files(mutate=True))
@pytest.mark.unit
def test_any_csv_bytes_land_whole_or_are_rejected(case: tuple[bytes, list[str], bool]) -> None:
    data, header, well_formed = case
    try:
        frame = land("ledger/ledger_2026-11-10.csv", data)
    except RejectedFile as rejected:
        assert rejected.name == "ledger/ledger_2026-11-10.csv" and rejected.reason
        assert not well_formed, f"a well-formed file was rejected: {rejected.reason}"
        return
    expected = reference_csv(data)
    assert expected is not None, "landed a file that is not well-formed CSV"
    columns, rows = expected
    assert landed_values(frame, columns) == rows


# JSON values as text: numbers are written by hand so that their exact spelling is part of the example.
JSON_NUMBERS = st.sampled_from(
    ["0", "-0", "12.5", "-12.50", "1e3", "1E-2", "1234567890123456.78", "0.1", "100000000000000000000000"]
)


@st.composite
def json_lines(draw: st.DrawFn) -> tuple[str, dict[str, str | None] | None]:
    """One JSONL line and the record it holds as text (numbers as written), or None for a line that is no record."""
    keys = draw(st.lists(st.sampled_from([*CONTRACT_COLUMNS, "extra_key", "note"]), unique=True, max_size=6))
    members: list[str] = []
    record: dict[str, str | None] = {}
    for key in keys:
        kind = draw(st.sampled_from(["text", "number", "bool", "null"]))
        if kind == "text":
            value = draw(ANY_TEXT)
            token, as_text = json.dumps(value, ensure_ascii=draw(st.booleans())), value
        elif kind == "number":
            token = as_text = draw(JSON_NUMBERS)
        elif kind == "bool":
            token = as_text = draw(st.sampled_from(["true", "false"]))
        else:
            token, as_text = "null", None
        members.append(f"{json.dumps(key)}{draw(st.sampled_from(['', ' ']))}:{draw(st.sampled_from(['', ' ']))}{token}")
        if key in CONTRACT_COLUMNS:
            record[key] = as_text
    return "{" + ", ".join(members) + "}", {name: record.get(name) for name in CONTRACT_COLUMNS}


@st.composite
def jsonl_files(draw: st.DrawFn, mutate: bool) -> tuple[bytes, bool]:
    lines = draw(st.lists(json_lines(), max_size=5))
    text = ""
    for line, _ in lines:
        text += draw(st.sampled_from(["", "\n", "  \n"])) + line + draw(st.sampled_from(["\n", "\r\n"]))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
    if not mutate:
        return data, True
    return damaged(draw, data)


def reference_jsonl(data: bytes) -> list[tuple] | None:
    """How Python's json module reads the file: (line, values...) per record, numbers as written; None when a
    line is not an object of values, a key repeats, or a text value is not Unicode text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        return None
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip(WHITE_SPACE)
        if not line:
            continue

        def pairs(items: list[tuple[str, object]]) -> dict:
            if len({key for key, _ in items}) != len(items):
                raise ValueError("repeated key")
            return dict(items)

        def constant(name: str) -> object:
            raise ValueError(name)

        try:
            value = json.loads(line, parse_float=str, parse_int=str, parse_constant=constant, object_pairs_hook=pairs)
        except (ValueError, RecursionError):
            return None
        if not isinstance(value, dict):
            return None
        row: list[str | None] = []
        for name in CONTRACT_COLUMNS:
            field = value.get(name)
            if isinstance(field, (dict, list)):
                return None
            if isinstance(field, bool):
                field = str(field).lower()
            if isinstance(field, str) and any("\ud800" <= c <= "\udfff" for c in field):
                return None
            row.append(field or None)
        records.append((number, *row))
    return records


@FUZZ
@given(jsonl_files(mutate=False))
@pytest.mark.unit
def test_a_well_formed_jsonl_file_lands_whole_with_numbers_as_written(case: tuple[bytes, bool]) -> None:
    data, _ = case
    expected = reference_jsonl(data)
    assert expected is not None, "the generator made a file the reference parser rejects"
    if not data.strip(b"\xef\xbb\xbf \r\n"):
        return  # nothing but whitespace: the zero-byte rule and the header-only rule have their own tests
    frame = land("bank/bank_2026-11-10.jsonl", data)
    assert landed_values(frame, list(CONTRACT_COLUMNS)) == expected


@FUZZ
@given(jsonl_files(mutate=True))
@pytest.mark.unit
def test_any_jsonl_bytes_land_whole_or_are_rejected(case: tuple[bytes, bool]) -> None:
    data, well_formed = case
    try:
        frame = land("bank/bank_2026-11-10.jsonl", data)
    except RejectedFile as rejected:
        assert rejected.name == "bank/bank_2026-11-10.jsonl" and rejected.reason
        assert not well_formed or not data, f"a well-formed file was rejected: {rejected.reason}"
        return
    expected = reference_jsonl(data)
    assert expected is not None, "landed a file that is not well-formed JSONL"
    assert landed_values(frame, list(CONTRACT_COLUMNS)) == expected


# -- the corpus, through the sensor and the daily job ---------------------------------------------------------
#
# One warehouse and one Dagster instance serve the whole corpus: day D0 is reconciled once, day D1 takes every
# file that is odd but acceptable together with the row-level corpus, and each rejected file has a day of its own
# after that. Each test delivers into a landing zone of its own, so the sensor sees that test's files only.

D0 = date(2026, 11, 2)
D1 = date(2026, 11, 3)
FIRST_REJECTION_DAY = date(2026, 11, 5)
HEADER = ",".join(CONTRACT_COLUMNS) + "\n"


@dataclass
class Shared:
    home: Path
    instance: dg.DagsterInstance
    day_zero: dict[str, list[tuple]]

    def warehouse(self) -> Warehouse:
        return Warehouse(self.home / "warehouse.duckdb")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """A warehouse and instance with D0 reconciled: one ledger item matched, one left open."""
    root = tmp_path_factory.mktemp("corpus")
    home = root / "data"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.data_environment(home).items():
            patch.setenv(name, value)
        # The row-level corpus quarantines most of D1 on purpose; the blocking rate check must let it through.
        patch.setenv(settings.QUARANTINE_RATE_WARN, "1")
        patch.setenv(settings.QUARANTINE_RATE_ERROR, "1")
        landing = home / "landing"
        write_landing(
            landing, "ledger", D0, csv_text([txn("D0-L1", "10.00", D0, reference="INV-0"), txn("D0-L2", "5.00", D0)])
        )
        write_landing(landing, "bank", D0, csv_text([txn("D0-B1", "10.00", D0, reference="inv 0")]))
        (home / "dagster_home").mkdir(parents=True)
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
            assert run_day(instance, D0).success
            shared = Shared(home, instance, snapshot(home, D0))
            assert len(shared.day_zero["recon.matches"]) == 1
            yield shared


@pytest.fixture
def own_landing(shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own landing zone, so that the sensor and the run see only what this test delivers."""
    folder = tmp_path / "landing"
    folder.mkdir()
    monkeypatch.setenv(settings.LANDING, str(folder))
    return folder


def settle(landing: Path) -> None:
    """Every delivered file past the sensor's quiet period."""
    for path in landing.rglob("*"):
        if path.is_file():
            age(path)


def run_requested_day(instance: dg.DagsterInstance, day: date) -> dg.ExecuteInProcessResult:
    """Tick the landing sensor, check it asks for `day` alone, and run the daily job as it asked."""
    requests, _, skip = tick(instance)
    assert [(r.partition_key, r.run_key.split(":")[0]) for r in requests] == [(day.isoformat(), "files")], skip
    job = defs.resolve_job_def("daily_reconciliation")
    return job.execute_in_process(
        partition_key=requests[0].partition_key, tags=requests[0].tags, instance=instance, raise_on_error=False
    )


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


GOOD_PARQUET = pl.DataFrame(
    {"txn_id": ["P1"], "account_id": ["ACC1"], "booking_date": [None], "amount": ["4.50"], "currency": ["EUR"]}
)


def jsonl_line(**values: object) -> str:
    return json.dumps(values)


def reject_cases() -> list[tuple[str, str, str, Callable[[date], bytes], str]]:
    """(id, source, file name suffix, content for a day, the reason the file is rejected with)."""

    def rows(day: date, *lines: str) -> bytes:
        return (HEADER + "".join(lines)).encode()

    def good(day: date, txn_id: str = "G1") -> str:
        return f"{txn_id},ACC1,{day},,1.00,EUR,R1,,\n"

    return [
        (
            "truncated-mid-row",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d), good(d, "G2"), f"G3,ACC1,{d},,1.0"),
            "line 4: expected 9 fields, found 5 (ragged row)",
        ),
        (
            "truncated-in-quotes",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d), f'G2,ACC1,{d},,1.00,EUR,"R2'),
            "line 3: unterminated quoted value (truncated file?)",
        ),
        (
            "too-few-fields",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d), f"G2,ACC1,{d},,1.00\n", good(d, "G3")),
            "line 3: expected 9 fields, found 5 (ragged row)",
        ),
        (
            "too-many-fields",
            "bank",
            "_02.csv",
            lambda d: rows(d, good(d), f"G2,ACC1,{d},,1.00,EUR,R,C,D,surplus\n"),
            "line 3: expected 9 fields, found 10 (ragged row)",
        ),
        (
            "latin-1",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d)) + f"G2,ACC1,{d},,1.00,EUR,caf\xe9,,\n".encode("latin-1"),
            "line 3: not UTF-8 (byte 0xe9 at column 33)",
        ),
        (
            "zero-bytes",
            "bank",
            "_02.csv",
            lambda d: b"",
            "zero-byte file (a day with no transactions is a header-only file)",
        ),
        (
            "one-megabyte-line",
            "ledger",
            "_02.csv",
            lambda d: b"x" * (1 << 20),
            "line 1: the header is longer than 1048576 bytes",
        ),
        (
            "renamed-column",
            "ledger",
            "_02.csv",
            lambda d: HEADER.replace("amount", "amt").encode() + good(d).encode(),
            "line 1: missing required column(s) amount",
        ),
        (
            "missing-column",
            "bank",
            "_02.csv",
            lambda d: f"txn_id,account_id,booking_date,amount\nG1,ACC1,{d},1.00\n".encode(),
            "line 1: missing required column(s) currency",
        ),
        (
            "stray-quote",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d), f'G2,ACC1,{d},,1.00,EUR,6" pipe,,\n'),
            "line 3: a quote inside an unquoted value (quote the whole value and double the quote)",
        ),
        # A blank LF line in a CRLF file, which DuckDB's strict parser refuses without naming a line.
        (
            "mixed-line-endings",
            "ledger",
            "_02.csv",
            lambda d: rows(d, good(d), "\n", good(d, "G2")).replace(b"\n", b"\r\n").replace(b"\r\n\r\n", b"\r\n\n"),
            "line 3: ends in LF but line 1 ends in CRLF; lines must all end alike",
        ),
        (
            "cr-line-endings",
            "bank",
            "_02.csv",
            lambda d: rows(d, good(d), good(d, "G2")).replace(b"\n", b"\r"),
            "line 1: a carriage return (CR) inside the line; lines must end in LF or CRLF",
        ),
        (
            "corrupt-parquet",
            "bank",
            "_02.parquet",
            lambda d: parquet_bytes(GOOD_PARQUET.with_columns(booking_date=pl.lit(d)))[:-40] + b"\x00" * 40,
            "unreadable Parquet (",
        ),
        (
            "float-amounts-parquet",
            "ledger",
            "_02.parquet",
            lambda d: parquet_bytes(GOOD_PARQUET.with_columns(booking_date=pl.lit(d), amount=pl.lit(4.5))),
            "column(s) amount (Float64) are floating point; use decimal, integer or text columns",
        ),
        (
            "jsonl-bad-line",
            "bank",
            "_02.jsonl",
            lambda d: (
                jsonl_line(txn_id="J1", account_id="ACC1", booking_date=str(d), amount="1.00", currency="EUR")
                + '\n{"txn_id": "J2", "amount": \n'
            ).encode(),
            "line 2: invalid JSON (Expecting value at column 27)",
        ),
        (
            "jsonl-repeated-key",
            "ledger",
            "_02.jsonl",
            lambda d: (
                f'{{"txn_id": "J1", "account_id": "ACC1", "booking_date": "{d}", "amount": "1.00", '
                '"amount": "100.00", "currency": "EUR"}\n'
            ).encode(),
            "line 1: key 'amount' appears more than once in an object",
        ),
        (
            "jsonl-nul",
            "bank",
            "_02.jsonl",
            lambda d: (
                jsonl_line(txn_id="J1", account_id="ACC1", booking_date=str(d), amount="1.00", currency="EUR")
                + "\n{\x00}\n"
            ).encode(),
            "line 2: a NUL byte at column 2, which JSON text cannot hold",
        ),
    ]


REJECT_CASES = reject_cases()


@pytest.mark.parametrize(
    ("index", "source", "suffix", "content", "reason"),
    [(i, *case[1:]) for i, case in enumerate(REJECT_CASES)],
    ids=[case[0] for case in REJECT_CASES],
)
def test_a_rejected_file_names_file_line_and_reason_and_the_rest_of_the_day_is_intact(
    shared: Shared,
    own_landing: Path,
    index: int,
    source: str,
    suffix: str,
    content: Callable[[date], bytes],
    reason: str,
) -> None:
    landing = own_landing
    day = FIRST_REJECTION_DAY + timedelta(days=index)
    other = "bank" if source == "ledger" else "ledger"
    write_landing(landing, source, day, csv_text([txn(f"{source}-{day}-1", "7.00", day)]), part="01")
    bad = landing / source / f"{source}_{day}{suffix}"
    bad.write_bytes(content(day))
    other_rows = [txn(f"{other}-{day}-1", "7.00", day), txn(f"{other}-{day}-2", "-1.25", day)]
    write_landing(landing, other, day, csv_text(other_rows))
    settle(landing)

    # The sensor cannot see inside files: it requests the day, and the run rejects the file.
    result = run_requested_day(shared.instance, day)
    assert not result.success
    bad_name = f"{source}/{bad.name}"
    assert f"{source}: {bad_name} rejected: {reason}" in failure_message(result)
    assert materialized(result) == {f"raw/{other}", "raw/resolutions", "ops/file_log"}

    wh = shared.warehouse()
    # The other source landed whole; the failing source landed nothing, not even its good part.
    assert wh.read_partition(f"raw.{other}", day, ["file_name", "line_number", "txn_id", "amount"]).rows() == [
        (f"{other}/{other}_{day}.csv", 2, f"{other}-{day}-1", "7.00"),
        (f"{other}/{other}_{day}.csv", 3, f"{other}-{day}-2", "-1.25"),
    ]
    assert wh.last_commit(f"raw.{source}", day) is None
    assert wh.read_partition(f"raw.{source}", day).is_empty()
    log = wh.read_partition("ops.file_log", day, ["file_name", "status", "reason", "row_count"]).rows()
    assert log == sorted(
        [(bad_name, "rejected", log_reason(log, bad_name), None), (f"{other}/{other}_{day}.csv", "ingested", None, 2)]
    )
    assert log_reason(log, bad_name).startswith(reason)
    # Nothing downstream ran on half a day, and the reconciled day before is untouched.
    assert all(wh.last_commit(table, day) is None for table in ("staging.ledger", "staging.bank", "recon.matches"))
    assert snapshot(shared.home, D0) == shared.day_zero


def log_reason(log: list[tuple], name: str) -> str:
    return next(reason for file_name, _, reason, _ in log if file_name == name)


FORMULA = "formula_like_text"
FORMULA_DETAIL = "starts like a spreadsheet formula (=, @, or a + or - that does not start a number)"
# The row-level corpus, one row a line from line 2 of ledger part 01: (txn_id, values, rule, detail).
ROW_CORPUS: list[tuple[str, dict[str, str], str | None, str | None]] = [
    ("R-good", {"amount": "12.00", "reference": "INV-11"}, None, None),
    ("R-exponent", {"amount": "1e3"}, "invalid_amount", "amount 1e3 is not a decimal"),
    ("R-thousands", {"amount": "1,000.00"}, "invalid_amount", "amount 1,000.00 is not a decimal"),
    ("R-nan", {"amount": "NaN"}, "invalid_amount", "amount NaN is not a decimal"),
    ("R-mills", {"amount": "12.345"}, "invalid_amount", "amount 12.345 has more than 2 fractional digits"),
    ("R-feb30", {"booking_date": "2026-02-30"}, "invalid_date", "booking_date 2026-02-30 is not a date (YYYY-MM-DD)"),
    ("R-value-feb30", {"value_date": "2026-02-30"}, "invalid_date", "value_date 2026-02-30 is not a date (YYYY-MM-DD)"),
    ("R-hyperlink", {"reference": '=HYPERLINK("http://x","y")'}, FORMULA, f"reference {FORMULA_DETAIL}"),
    ("R-at", {"counterparty": "@SUM(A1:A9)"}, FORMULA, f"counterparty {FORMULA_DETAIL}"),
    ("R-plus", {"description": "+cmd|' /C calc'!A0"}, FORMULA, f"description {FORMULA_DETAIL}"),
    ("R-minus-dde", {"description": "-2+3+cmd|' /C calc'!A0"}, FORMULA, f"description {FORMULA_DETAIL}"),
    ("R-account", {"account_id": "=1+1"}, FORMULA, f"account_id {FORMULA_DETAIL}"),
    ("=R-txn", {}, FORMULA, f"txn_id {FORMULA_DETAIL}"),
    # Signs that are data, not formulas: a negative amount, a "-" placeholder, phone numbers, "--".
    (
        "R-negative",
        {"amount": "-7.25", "reference": "-", "counterparty": "+44 20 7946 0958", "description": "--"},
        None,
        None,
    ),
    ("R-signed", {"amount": "+3.00", "reference": "+1 (555) 010-9999"}, None, None),
]


def test_odd_but_valid_files_land_and_bad_rows_are_quarantined_with_rule_and_detail(
    shared: Shared, own_landing: Path
) -> None:
    landing = own_landing
    d = D1.isoformat()
    row_corpus = [{**txn(txn_id, "1.00", D1), **values} for txn_id, values, _, _ in ROW_CORPUS]
    write_landing(landing, "ledger", D1, csv_text(row_corpus), part="01")
    write_landing(landing, "ledger", D1, "\ufeff" + csv_text([txn("P2-1", "2.00", D1)]), part="02")  # UTF-8 BOM
    write_landing(landing, "ledger", D1, HEADER, part="03")  # header only: no rows, and that is fine
    write_landing(
        landing,
        "ledger",
        D1,
        csv_text([txn("P4-1", "4.00", D1, branch="north")], [*CONTRACT_COLUMNS, "branch"]),
        part="04",
    )
    write_landing(landing, "ledger", D1, csv_text([txn("P5-1", "5.00", D1)], REQUIRED_COLUMNS), part="05")
    megabyte = "d" * (1 << 20)
    write_landing(landing, "ledger", D1, csv_text([txn("P6-1", "6.00", D1, description=megabyte)]), part="06")
    crlf = f'{HEADER}P7-1,ACC1,{d},,7.00,EUR,,,"two\nlines"\n\nP7-2,ACC1,{d},,7.50,EUR,,,\n'.replace("\n", "\r\n")
    write_landing(landing, "ledger", D1, crlf.encode(), part="07")
    jsonl = (
        f'{{"txn_id": "P8-1", "account_id": "ACC1", "booking_date": "{d}", '
        '"amount": 1234567890123456.78, "currency": "EUR"}\n\n'
        f'{{"txn_id": "P8-2", "account_id": "ACC1", "booking_date": "{d}", "amount": 1e3, "currency": "EUR"}}\n'
        f'{{"txn_id": "P8-3", "account_id": "ACC1", "booking_date": "{d}", '
        '"amount": 8.5, "currency": "eur", "tag": [1]}\n'
    )
    write_landing(landing, "ledger", D1, jsonl, part="08", ext="jsonl")
    parquet = pl.DataFrame(
        {"txn_id": ["P9-1"], "account_id": ["ACC1"], "booking_date": [D1], "amount": ["9.99"], "currency": ["EUR"]}
    )
    write_landing(
        landing,
        "ledger",
        D1,
        parquet_bytes(parquet.with_columns(pl.col("amount").cast(pl.Decimal(18, 2)))),
        part="09",
        ext="parquet",
    )
    bank = [
        txn("B-good", "12.00", D1, reference="inv 11"),
        txn("B-negative", "-7.25", D1),
        txn("B-signed", "3.00", D1, reference="1 555 010 9999"),
        txn("B-formula", "1.00", D1, description="=cmd|' /C calc'!A0"),
    ]
    write_landing(landing, "bank", D1, csv_text(bank))
    settle(landing)

    result = run_requested_day(shared.instance, D1)
    assert result.success, failure_message(result)

    wh = shared.warehouse()
    ledger = lambda part, ext="csv": f"ledger/ledger_{d}_{part}.{ext}"  # noqa: E731
    staged = wh.read_partition("staging.ledger", D1, ["file_name", "line_number", "txn_id", "amount"])
    assert sorted((f, n, t, str(a)) for f, n, t, a in staged.rows()) == [
        (ledger("01"), 2, "R-good", "12.00"),
        (ledger("01"), 15, "R-negative", "-7.25"),
        (ledger("01"), 16, "R-signed", "3.00"),
        (ledger("02"), 2, "P2-1", "2.00"),
        (ledger("04"), 2, "P4-1", "4.00"),
        (ledger("05"), 2, "P5-1", "5.00"),
        (ledger("06"), 2, "P6-1", "6.00"),
        (ledger("07"), 2, "P7-1", "7.00"),
        (ledger("07"), 5, "P7-2", "7.50"),
        (ledger("08", "jsonl"), 1, "P8-1", "1234567890123456.78"),  # exactly as written, not through a float
        (ledger("08", "jsonl"), 4, "P8-3", "8.50"),
        (ledger("09", "parquet"), 1, "P9-1", "9.99"),
    ]
    quarantine = wh.read_partition(
        "staging.quarantine", D1, ["source", "file_name", "line_number", "rule", "detail"]
    ).rows()
    expected_quarantine = [
        ("ledger", ledger("01"), line, rule, detail)
        for line, (_, _, rule, detail) in enumerate(ROW_CORPUS, start=2)
        if rule is not None
    ]
    expected_quarantine += [
        ("ledger", ledger("08", "jsonl"), 3, "invalid_amount", "amount 1e3 is not a decimal"),
        ("bank", f"bank/bank_{d}.csv", 5, FORMULA, f"description {FORMULA_DETAIL}"),
    ]
    assert sorted(quarantine) == sorted(expected_quarantine)

    log = wh.read_partition("ops.file_log", D1, ["file_name", "status", "row_count"]).rows()
    assert log == [
        (f"bank/bank_{d}.csv", "ingested", 4),
        (ledger("01"), "ingested", len(ROW_CORPUS)),
        (ledger("02"), "ingested", 1),
        (ledger("03"), "ingested", 0),
        (ledger("04"), "ingested", 1),
        (ledger("05"), "ingested", 1),
        (ledger("06"), "ingested", 1),
        (ledger("07"), "ingested", 2),
        (ledger("08", "jsonl"), "ingested", 3),
        (ledger("09", "parquet"), "ingested", 1),
    ]
    raw = wh.read_partition("raw.ledger", D1).filter(pl.col("txn_id").is_in(["P4-1", "P8-3"])).sort("txn_id")
    assert json.loads(raw["extra"][0]) == {"branch": "north"} and json.loads(raw["extra"][1])["tag"] == [1]
    assert wh.read_partition("staging.ledger", D1).filter(txn_id="P6-1")["description"][0] == megabyte
    assert wh.read_partition("staging.ledger", D1).filter(txn_id="P7-1")["description"][0] == "two\r\nlines"

    matches = wh.read_partition("recon.matches", D1, ["match_pass", "ledger_txn_id", "bank_txn_id"]).rows()
    assert sorted(matches) == [
        ("amount_date", "R-negative", "B-negative"),
        ("exact", "R-good", "B-good"),
        ("exact", "R-signed", "B-signed"),
    ]
    # No text a spreadsheet would run made it past validation, into any table a person exports.
    for table in ("staging.ledger", "staging.bank", "recon.matches", "recon.open_items", "recon.exceptions"):
        frame = wh.read_partition(table, D1)
        text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
        assert frame.select(pl.any_horizontal(formula_like(pl.col(c)) for c in text)).to_series().sum() == 0, table
    assert snapshot(shared.home, D0) == shared.day_zero


def test_withdrawing_a_rejected_file_lands_and_stages_the_rest_of_its_source(
    home: Path, landing: Path, instance: dg.DagsterInstance
) -> None:
    """A rejected file holds its whole source back (the source's day stays as it was); the source's good
    parts land, and the day stages, once it is withdrawn."""
    day = D1
    write_landing(landing, "ledger", day, csv_text([txn("W-L1", "3.00", day, reference="W1")]), part="01")
    bad = write_landing(landing, "ledger", day, HEADER + f"W-L2,ACC1,{day},,1.0", part="02")
    write_landing(landing, "bank", day, csv_text([txn("W-B1", "3.00", day, reference="w 1")]))
    settle(landing)
    result = run_requested_day(instance, day)
    assert "line 2: expected 9 fields, found 5 (ragged row)" in failure_message(result)
    wh = Warehouse(home / "warehouse.duckdb")
    assert wh.read_partition("raw.ledger", day).is_empty()
    assert wh.read_partition("raw.bank", day, ["txn_id"]).rows() == [("W-B1",)]

    bad.unlink()
    result = run_requested_day(instance, day)
    assert result.success, failure_message(result)
    assert wh.read_partition("staging.ledger", day, ["txn_id"]).rows() == [("W-L1",)]
    assert wh.read_partition("staging.bank", day, ["txn_id"]).rows() == [("W-B1",)]
    assert wh.read_partition("recon.matches", day, ["ledger_txn_id", "bank_txn_id"]).rows() == [("W-L1", "W-B1")]


# -- several rejected files on one day ------------------------------------------------------------------------

CASES = {case[0]: case for case in REJECT_CASES}


def bad_file(landing: Path, source: str, day: date, part: str, case: str) -> tuple[str, str]:
    """Deliver the corpus file `case` as `source` part `part`; its logged name and the reason it is rejected with."""
    _, _, suffix, content, reason = CASES[case]
    path = write_landing(landing, source, day, content(day), part=part, ext=suffix.rsplit(".", 1)[1])
    return f"{source}/{path.name}", reason


def replace_after_listing(monkeypatch: pytest.MonkeyPatch, path: Path, content: str) -> str:
    """Have another file renamed over `path` right after the ingest lists the landing zone, as a writer that
    re-delivers in the middle of a run does; the reason the listed file is then rejected with."""
    listed = ingest_assets.scan_landing

    def list_then_replace(*args, **kwargs):
        found = listed(*args, **kwargs)
        incoming = path.with_name(".incoming")
        incoming.write_text(content)
        incoming.rename(path)
        return found

    monkeypatch.setattr(ingest_assets, "scan_landing", list_then_replace)
    return "replaced after it was listed (it is now a different file)"


def ingest_error(result: dg.ExecuteInProcessResult) -> str:
    """What the ingest step's failure tells the operator."""
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == "ingest"]
    return error_text(event)


def file_log(home: Path, day: date) -> list[tuple]:
    return (
        Warehouse(home / "warehouse.duckdb")
        .read_partition("ops.file_log", day, ["file_name", "status", "reason", "row_count"])
        .rows()
    )


def test_every_rejected_file_of_a_day_is_in_the_file_log_after_one_run(
    home: Path,
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    day = D1
    write_landing(landing, "ledger", day, csv_text([txn("E-L1", "3.00", day)]), part="01")
    write_landing(landing, "bank", day, csv_text([txn("E-B1", "3.00", day)]), part="01")
    rejected = dict(
        [
            bad_file(landing, "ledger", day, "02", "zero-bytes"),
            bad_file(landing, "ledger", day, "03", "too-few-fields"),
            bad_file(landing, "ledger", day, "04", "corrupt-parquet"),
            bad_file(landing, "bank", day, "02", "latin-1"),
            bad_file(landing, "bank", day, "03", "jsonl-bad-line"),
            bad_file(landing, "bank", day, "04", "missing-column"),
        ]
    )
    swapped = write_landing(landing, "ledger", day, csv_text([txn("E-L5", "5.00", day)]), part="05")
    rejected[f"ledger/{swapped.name}"] = replace_after_listing(monkeypatch, swapped, csv_text([txn("X", "9.99", day)]))
    settle(landing)

    result = run_requested_day(instance, day)
    assert not result.success
    # The run judged every file: each rejection is in the file log, with its reason, after this one run.
    log = file_log(home, day)
    assert [(name, status, count) for name, status, _, count in log] == [
        (name, "rejected", None) for name in sorted(rejected)
    ]
    for name, _, reason, _ in log:
        assert reason.startswith(rejected[name]), (name, reason)
    # The ingest step's error names every rejected file with its reason, and says what to do next.
    for message in (ingest_error(result), failure_message(result)):
        for name, reason in rejected.items():
            assert f"{name} rejected: {reason}" in message
        assert f"batch-assets files {day}" in message
    # Both sources failed: nothing of the day landed, not even the good parts; only the file log and the day's
    # (here empty) resolutions, which never hold a day back, were written.
    written = {"ops.file_log", "raw.resolutions"}
    assert materialized(result) == {t.replace(".", "/") for t in written}
    assert all(Warehouse(home / "warehouse.duckdb").last_commit(t, day) is None for t in TABLES if t not in written)

    # The operator's view lists every file with its whole reason.
    capsys.readouterr()
    assert cli_main(["files", day.isoformat()]) == 0
    shown = capsys.readouterr().out
    assert "…" not in shown  # nothing cut short
    for name, reason in rejected.items():
        assert name in shown and reason.split("(")[0].strip() in shown


def clean_run(landing: Path, folder: Path, monkeypatch: pytest.MonkeyPatch, day: date) -> dict[str, list[tuple]]:
    """The tables of `day` that one clean run of `landing`'s files gives, in a warehouse and instance of their own."""
    home = folder / "clean"
    shutil.copytree(landing, home / "landing")
    (home / "dagster_home").mkdir()
    with monkeypatch.context() as patch:
        patch.setenv(settings.HOME, str(home))
        patch.setenv(settings.LANDING, str(home / "landing"))
        patch.setenv(settings.WAREHOUSE, str(home / "warehouse.duckdb"))
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
            assert run_day(instance, day).success
    return snapshot(home, day)


def data_tables(tables: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Every table but the file log, whose history differs with the deliveries that led to the same files."""
    return {name: rows for name, rows in tables.items() if name != "ops.file_log"}


def test_rejected_files_keep_the_days_data_until_every_one_is_fixed_and_the_day_then_equals_a_clean_run(
    home: Path, landing: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = D1
    write_landing(landing, "ledger", day, csv_text([txn("F-L1", "4.00", day, reference="F1")]), part="01")
    write_landing(landing, "bank", day, csv_text([txn("F-B1", "4.00", day, reference="f 1"), txn("F-B2", "6.00", day)]))
    assert run_day(instance, day).success
    before = snapshot(home, day)

    zero_name, zero_reason = bad_file(landing, "ledger", day, "02", "zero-bytes")
    column_name, column_reason = bad_file(landing, "ledger", day, "03", "renamed-column")
    result = run_day(instance, day)
    assert not result.success
    assert f"{zero_name} rejected: {zero_reason}" in ingest_error(result)
    assert f"{column_name} rejected: {column_reason}" in ingest_error(result)
    assert data_tables(snapshot(home, day)) == data_tables(before)
    ledger_01, bank = f"ledger/ledger_{day}_01.csv", f"bank/bank_{day}.csv"
    assert file_log(home, day) == [
        (bank, "ingested", None, 2),
        (ledger_01, "ingested", None, 1),
        (zero_name, "rejected", zero_reason, None),
        (column_name, "rejected", column_reason, None),
    ]

    # One file fixed, the other not: the fixed file's rejection is history, the other's still stands.
    write_landing(landing, "ledger", day, csv_text([txn("F-L2", "6.00", day)]), part="02")
    result = run_day(instance, day)
    assert not result.success
    assert zero_name not in ingest_error(result) and f"{column_name} rejected: {column_reason}" in ingest_error(result)
    assert data_tables(snapshot(home, day)) == data_tables(before)
    assert file_log(home, day) == [
        (bank, "ingested", None, 2),
        (ledger_01, "ingested", None, 1),
        (zero_name, "superseded", f"replaced by new bytes (was rejected: {zero_reason})", None),
        (column_name, "rejected", column_reason, None),
    ]

    write_landing(landing, "ledger", day, csv_text([txn("F-L3", "-1.00", day)]), part="03")
    result = run_day(instance, day)
    assert result.success, failure_message(result)
    log = file_log(home, day)
    assert sorted((name, status) for name, status, _, _ in log) == [
        (bank, "ingested"),
        (ledger_01, "ingested"),
        (zero_name, "ingested"),
        (zero_name, "superseded"),
        (column_name, "ingested"),
        (column_name, "superseded"),
    ]
    assert data_tables(snapshot(home, day)) == data_tables(clean_run(landing, tmp_path, monkeypatch, day))
