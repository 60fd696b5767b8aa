"""The day's reconciliation as one bare DuckDB script, so the platform's cost can be weighed against plain SQL."""

# Every statement below is put together from this module's own constants and the two source names; values
# (paths, the day, the day counts) are bound as parameters.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

SOURCES = ("ledger", "bank")
REQUIRED_COLUMNS = ("txn_id", "account_id", "booking_date", "amount", "currency")
CONTRACT_COLUMNS = (
    "txn_id",
    "account_id",
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "reference",
    "counterparty",
    "description",
)
# Judged for spreadsheet formulas in this order, as the platform does, so the detail names the same column.
TEXT_COLUMNS = ("txn_id", "account_id", "reference", "counterparty", "description")
CSV_NAME = re.compile(r"^(ledger|bank)_([0-9]{4}-[0-9]{2}-[0-9]{2})(?:_[A-Za-z0-9]+)?\.csv\Z", re.ASCII)
# Unicode White_Space, what the platform strips (Polars' strip_chars), spelled for RE2, whose \s is ASCII
# only; DuckDB's trim() strips spaces alone.
_WS_CHARS = r"\t\n\v\f\r\x{85}\p{Z}"
WS = f"[{_WS_CHARS}]"
_WS_CODES = (9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_SIGNED_NUMBER = rf"{WS}*[+\-][{_WS_CHARS}+\-]*(?:[0-9.][0-9{_WS_CHARS}()./\-]*)?"
_ISO_DATE = "[0-9]{4}-[0-9]{2}-[0-9]{2}"
_AMOUNT = r"[+-]?[0-9]{1,16}(\.[0-9]{1,2})?"
# The floor's options, and one more: the platform reads with Polars, which keeps a quoted empty field ("")
# as an empty string, where DuckDB would read it as null.
READ_OPTIONS = (
    "header = true, auto_detect = false, strict_mode = true, delim = ',', quote = '\"', escape = '\"', "
    "encoding = 'utf-8', allow_quoted_nulls = false"
)


def _trimmed(column: str) -> str:
    """Text without surrounding white space, empty read as missing."""
    return f"nullif(regexp_replace({column}, '^{WS}+|{WS}+$', '', 'g'), '')"


def _formula_like(column: str) -> str:
    """Whether a spreadsheet would run the text as a formula (=, @, or a sign that starts no number)."""
    # The first character settles nearly every value, and ord() costs a fraction of a regular expression:
    # five text columns of every row are judged.
    first = ", ".join(str(code) for code in (ord("="), ord("@"), ord("+"), ord("-"), *_WS_CODES))
    return (
        f"CASE WHEN ord({column}) IN ({first}) THEN regexp_matches({column}, '^{WS}*[=@]') OR "
        f"(regexp_matches({column}, '^{WS}*[+\\-]') AND NOT regexp_full_match({column}, '{_SIGNED_NUMBER}')) "
        "ELSE false END"
    )


def _reference_letters(column: str) -> str:
    """Upper-cased, A-Z and 0-9 only (the normalised reference, before the null words)."""
    # Dashes and spaces are the usual separators, and replace() is cheap: the regular expression runs only
    # on what is left with other characters in it.
    upper = f"replace(replace(upper({column}), '-', ''), ' ', '')"
    return (
        f"CASE WHEN regexp_full_match({upper}, '[A-Z0-9]*') THEN {upper} "
        f"ELSE regexp_replace({upper}, '[^A-Z0-9]', '', 'g') END"
    )


# The three fields that staging and the duplicate check take trimmed are kept trimmed; their text as
# delivered, which only the quarantine shows, is kept beside them where it differs (in a handful of rows).
TRIMMED = ("txn_id", "account_id", "currency")
JUDGED_TABLE = f"""
CREATE TEMP TABLE judged_{{source}} (
    file_id INTEGER, line_number BIGINT, {", ".join(f"{c} VARCHAR, {c}_raw VARCHAR" for c in TRIMMED)},
    booking_date VARCHAR, value_date VARCHAR, amount VARCHAR, reference VARCHAR, counterparty VARCHAR,
    description VARCHAR, d_booking DATE, d_value DATE, d_amount DECIMAL(18,2), rule VARCHAR)
"""

# One pass over a file: read it strictly as text, type it, and name the first rule each row breaks, in the
# contract's order. A record's line is its ordinality under the header line: one record per line, as the
# generator writes (a file with quoted newlines would need its lines counted, which the platform does and
# this script does not).
JUDGE = f"""
INSERT INTO judged_{{source}}
WITH raw AS (
    SELECT ordinality + 1 AS line_number, {{projection}}
    FROM read_csv($path, columns = $columns, {READ_OPTIONS}) WITH ORDINALITY
), cleaned AS (
    SELECT *,
        {_trimmed("txn_id")} AS t_txn_id,
        {_trimmed("account_id")} AS t_account_id,
        {_trimmed("booking_date")} AS t_booking,
        {_trimmed("value_date")} AS t_value,
        {_trimmed("amount")} AS t_amount,
        upper({_trimmed("currency")}) AS t_currency
    FROM raw
), typed AS (
    SELECT *,
        CASE WHEN regexp_full_match(t_booking, '{_ISO_DATE}') THEN TRY_CAST(t_booking AS DATE) END AS d_booking,
        CASE WHEN regexp_full_match(t_value, '{_ISO_DATE}') THEN TRY_CAST(t_value AS DATE) END AS d_value,
        CASE WHEN regexp_full_match(t_amount, '{_AMOUNT}') THEN CAST(t_amount AS DECIMAL(18,2)) END AS d_amount
    FROM cleaned
)
SELECT $file_id, line_number,
    {", ".join(f"t_{c}, CASE WHEN {c} IS DISTINCT FROM t_{c} THEN {c} END" for c in TRIMMED)},
    booking_date, value_date, amount, reference, counterparty, description, d_booking, d_value, d_amount,
    CASE
        WHEN t_txn_id IS NULL OR t_account_id IS NULL OR t_booking IS NULL OR t_amount IS NULL
             OR t_currency IS NULL THEN 'missing_required_field'
        WHEN d_amount IS NULL THEN 'invalid_amount'
        WHEN d_booking IS NULL OR (t_value IS NOT NULL AND d_value IS NULL) THEN 'invalid_date'
        WHEN NOT regexp_full_match(t_currency, '[A-Z]{{3}}') THEN 'invalid_currency'
        WHEN d_booking <> $day THEN 'booking_date_mismatch'
        WHEN {" OR ".join(_formula_like(c) for c in TEXT_COLUMNS)} THEN 'formula_like_text'
    END AS rule
FROM typed
"""
# A column of judged_<source> as it was delivered.
AS_DELIVERED = {
    column: f"coalesce(j.{column}_raw, j.{column})" if column in TRIMMED else f"j.{column}"
    for column in CONTRACT_COLUMNS
}

# Of the rows that broke no rule, every copy of a txn_id after the first by (file name, line). Only keys
# seen more than once are ranked: nearly every txn_id occurs once, and a window over all of them would
# sort the whole day for a handful of rows.
REPEATS = """
CREATE TEMP TABLE repeats_{source} AS
WITH good AS (
    SELECT file_id, line_number, txn_id FROM judged_{source} WHERE rule IS NULL
), shared AS (
    SELECT txn_id FROM good GROUP BY txn_id HAVING count(*) > 1
), ranked AS (
    SELECT file_id, line_number, txn_id, row_number() OVER w AS k, first_value(file_name) OVER w AS first_file,
           first_value(line_number) OVER w AS first_line
    FROM good SEMI JOIN shared USING (txn_id) JOIN files USING (file_id)
    WINDOW w AS (PARTITION BY txn_id ORDER BY file_name, line_number)
)
SELECT file_id, line_number, 'txn_id ' || txn_id || ' first seen in ' || first_file || ' line ' || first_line AS detail
FROM ranked WHERE k > 1
"""

STAGING = f"""
CREATE TABLE staging.{{source}} AS
SELECT business_date, txn_id, account_id, booking_date, value_date, amount, currency, reference,
    CASE WHEN letters IN ('', 'NONREF', 'NOTPROVIDED') THEN NULL ELSE letters END AS reference_norm,
    counterparty, description, file_name, line_number
FROM (
    SELECT $day::DATE AS business_date, j.txn_id, j.account_id, d_booking AS booking_date,
        coalesce(d_value, d_booking) AS value_date, d_amount AS amount, j.currency, reference,
        {_reference_letters("reference")} AS letters, counterparty, description, f.file_name, j.line_number
    FROM judged_{{source}} j JOIN files f USING (file_id) ANTI JOIN repeats_{{source}} r USING (file_id, line_number)
    WHERE j.rule IS NULL
)
"""

QUARANTINE_TABLE = """
CREATE TABLE staging.quarantine (
    business_date DATE, source VARCHAR, file_name VARCHAR, line_number BIGINT, rule VARCHAR, detail VARCHAR,
    txn_id VARCHAR, account_id VARCHAR, booking_date VARCHAR, value_date VARCHAR, amount VARCHAR,
    currency VARCHAR, reference VARCHAR, counterparty VARCHAR, description VARCHAR)
"""

# The detail is worked out again for the quarantined rows alone, in the platform's words: the rule was
# enough to split the day.
_DETAIL = f"""
CASE
    WHEN j.rule IS NULL THEN r.detail
    WHEN j.rule = 'missing_required_field' THEN CASE
        {" ".join(f"WHEN {_trimmed(AS_DELIVERED[c])} IS NULL THEN '{c} is missing'" for c in REQUIRED_COLUMNS)} END
    WHEN j.rule = 'invalid_amount' THEN 'amount ' || {_trimmed("j.amount")} || CASE
        WHEN regexp_full_match({_trimmed("j.amount")}, '[+-]?[0-9]+\\.[0-9]{{3,}}')
            THEN ' has more than 2 fractional digits'
        WHEN regexp_full_match({_trimmed("j.amount")}, '[+-]?[0-9]{{17,}}(\\.[0-9]*)?')
            THEN ' has more than 16 integer digits'
        ELSE ' is not a decimal' END
    WHEN j.rule = 'invalid_date' AND d_booking IS NULL
        THEN 'booking_date ' || {_trimmed("j.booking_date")} || ' is not a date (YYYY-MM-DD)'
    WHEN j.rule = 'invalid_date' THEN 'value_date ' || {_trimmed("j.value_date")} || ' is not a date (YYYY-MM-DD)'
    WHEN j.rule = 'invalid_currency' THEN 'currency ' || {AS_DELIVERED["currency"]} || ' is not 3 letters'
    WHEN j.rule = 'booking_date_mismatch' THEN 'booking_date ' || {_trimmed("j.booking_date")}
        || ' is not the file''s business date ' || $day::DATE::VARCHAR
    ELSE CASE {" ".join(f"WHEN {_formula_like(AS_DELIVERED[c])} THEN '{c}'" for c in TEXT_COLUMNS)} END
        || ' starts like a spreadsheet formula (=, @, or a + or - that does not start a number)'
END
"""

QUARANTINE = f"""
INSERT INTO staging.quarantine
SELECT $day::DATE, '{{source}}', f.file_name, j.line_number, coalesce(j.rule, 'duplicate_txn_id'),
    {_DETAIL}, {", ".join(AS_DELIVERED.values())}
FROM judged_{{source}} j JOIN files f USING (file_id)
    LEFT JOIN repeats_{{source}} r ON j.file_id = r.file_id AND j.line_number = r.line_number
WHERE j.rule IS NOT NULL OR r.file_id IS NOT NULL
"""

ITEMS = "txn_id, account_id, currency, booking_date, amount, reference_norm"
_EXACT_KEYS = "account_id, currency, amount, reference_norm"
PAIR = """
    account_id, currency, l.txn_id AS ledger_txn_id, b.txn_id AS bank_txn_id, l.amount AS ledger_amount,
    b.amount AS bank_amount, l.booking_date AS ledger_booking_date, b.booking_date AS bank_booking_date
"""


def _ranked(table: str, keys: str, where: str = "") -> str:
    """The items of `table` numbered from 1 within their key group in (booking_date, txn_id) order: the
    contract's tie-break. The k-th ledger item of a group pairs with the k-th bank item of it."""
    # Nearly every key group holds one item, whose number is 1: only the crowded groups go through the
    # window, which sorts what it numbers (the platform ranks the same way).
    return f"""
        WITH items AS (SELECT {ITEMS} FROM {table} {where}),
        crowded AS (SELECT {keys} FROM items GROUP BY {keys} HAVING count(*) > 1)
        SELECT *, 1 AS k FROM items ANTI JOIN crowded USING ({keys})
        UNION ALL
        SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY booking_date, txn_id) AS k
        FROM items SEMI JOIN crowded USING ({keys})"""


# Each pass sees only what the passes before it left: l1/b1 after exact, l2/b2 after amount_date.
MATCHING = [
    (
        "exact",
        f"""CREATE TEMP TABLE m_exact AS
    WITH l AS ({_ranked("staging.ledger", _EXACT_KEYS, "WHERE reference_norm IS NOT NULL")}),
         b AS ({_ranked("staging.bank", _EXACT_KEYS, "WHERE reference_norm IS NOT NULL")})
    SELECT 'exact' AS match_pass, {PAIR}, reference_norm
    FROM l JOIN b USING (account_id, currency, amount, reference_norm, k)""",
    ),
    (
        "exact",
        f"CREATE TEMP TABLE l1 AS SELECT {ITEMS} FROM staging.ledger ANTI JOIN m_exact m ON txn_id = m.ledger_txn_id",
    ),
    (
        "exact",
        f"CREATE TEMP TABLE b1 AS SELECT {ITEMS} FROM staging.bank ANTI JOIN m_exact m ON txn_id = m.bank_txn_id",
    ),
    # Pairing the k-th with the k-th is the platform's greedy walk (each ledger item takes the first free bank
    # item within tolerance) when every booking date is the business date, as on one day without carry-in;
    # with carried items the walk can pair across ranks, which rank pairing cannot.
    (
        "amount_date",
        f"""CREATE TEMP TABLE m_amount_date AS
    WITH l AS ({_ranked("l1", "account_id, currency, amount")}), b AS ({_ranked("b1", "account_id, currency, amount")})
    SELECT 'amount_date' AS match_pass, {PAIR}, l.reference_norm
    FROM l JOIN b USING (account_id, currency, amount, k)
    WHERE abs(l.booking_date - b.booking_date) <= $tolerance""",
    ),
    (
        "amount_date",
        f"CREATE TEMP TABLE l2 AS SELECT {ITEMS} FROM l1 ANTI JOIN m_amount_date m ON txn_id = m.ledger_txn_id",
    ),
    (
        "amount_date",
        f"CREATE TEMP TABLE b2 AS SELECT {ITEMS} FROM b1 ANTI JOIN m_amount_date m ON txn_id = m.bank_txn_id",
    ),
    # A group is ranked by its first txn_id, as the platform ranks it.
    (
        "aggregate",
        f"""CREATE TEMP TABLE m_aggregate AS
    WITH g AS (
        SELECT account_id, currency, booking_date, reference_norm, sum(amount)::DECIMAL(18,2) AS amount,
               min(txn_id) AS txn_id
        FROM l2 WHERE reference_norm IS NOT NULL
        GROUP BY account_id, currency, booking_date, reference_norm HAVING count(*) >= 2
    ), rg AS (
        SELECT *, row_number() OVER (PARTITION BY account_id, currency, reference_norm, amount
                                     ORDER BY booking_date, txn_id) AS k FROM g
    ), b AS ({_ranked("b2", "account_id, currency, reference_norm, amount", "WHERE reference_norm IS NOT NULL")}),
    paired AS (
        SELECT account_id, currency, rg.booking_date, reference_norm, b.txn_id AS bank_txn_id,
               b.amount AS bank_amount, b.booking_date AS bank_booking_date
        FROM rg JOIN b USING (account_id, currency, reference_norm, amount, k)
    )
    SELECT 'aggregate' AS match_pass, account_id, currency, l.txn_id AS ledger_txn_id, p.bank_txn_id,
           l.amount AS ledger_amount, p.bank_amount, l.booking_date AS ledger_booking_date,
           p.bank_booking_date, reference_norm
    FROM paired p JOIN l2 l USING (account_id, currency, booking_date, reference_norm)""",
    ),
    (
        "matches",
        """CREATE TABLE recon.matches AS
    SELECT $day::DATE AS business_date, match_pass || ':' || bank_txn_id AS match_id, *
    FROM (SELECT * FROM m_exact UNION ALL SELECT * FROM m_amount_date UNION ALL SELECT * FROM m_aggregate),
    -- no resolutions in a bare script: no manual matches
    (SELECT NULL::VARCHAR AS resolution_id, NULL::DECIMAL(18,2) AS write_off_amount)""",
    ),
    (
        "open items",
        """CREATE TABLE recon.open_items AS
    WITH left_open AS (
        SELECT 'ledger' AS source, * FROM l2 ANTI JOIN m_aggregate m ON txn_id = m.ledger_txn_id
        UNION ALL
        SELECT 'bank' AS source, * FROM b2 ANTI JOIN m_aggregate m ON txn_id = m.bank_txn_id
    )
    SELECT $day::DATE AS business_date, source, txn_id, account_id, currency, booking_date, amount,
           reference_norm, $day::DATE AS origin_date, ($day::DATE - booking_date)::INTEGER AS age_days,
           ($day::DATE - booking_date) < $carry_days AS carried
    FROM left_open""",
    ),
]


def _for(template: str, source: str) -> str:
    # Not str.format: the statements hold regular expressions with braces of their own.
    return template.replace("{source}", source)


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def day_files(landing: Path, day: date) -> dict[str, list[Path]]:
    """The day's CSV deliveries per source, in name order: the order in which a txn_id's first copy wins."""
    files: dict[str, list[Path]] = {}
    for source in SOURCES:
        folder = landing / source
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        files[source] = [
            folder / name
            for name in names
            if (m := CSV_NAME.match(name)) and m[1] == source and m[2] == day.isoformat()
        ]
    return files


def _duckdb_config() -> dict:
    # The threads and memory limit that the platform's connections and the floor read, so that all three
    # run DuckDB alike; and no promise to keep insertion order, as on the platform's connections: every
    # statement here orders what it needs itself, and DuckDB buffers less without it.
    config: dict = {"preserve_insertion_order": False}
    threads = int(os.environ.get("BATCH_ASSETS_DUCKDB_THREADS") or 0)
    if threads > 0:
        config["threads"] = threads
    if os.environ.get("BATCH_ASSETS_DUCKDB_MEMORY_LIMIT"):
        config["memory_limit"] = os.environ["BATCH_ASSETS_DUCKDB_MEMORY_LIMIT"]
    return config


def reconcile(
    landing: Path, day: date, database: Path, tolerance_days: int = 2, carry_days: int = 5
) -> tuple[float, dict[str, float]]:
    """Write the day's staging, quarantine, matches and open items into the new DuckDB file `database`.
    Returns the seconds from connect to close (the close checkpoints the tables into the file) and the
    seconds of each step."""
    if database.exists():
        raise SystemExit(f"{database} exists: the reference writes a fresh file")
    files = day_files(landing, day)
    headers = {path: _header(path) for paths in files.values() for path in paths}
    for path, header in headers.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise SystemExit(f"{path}: missing required column(s) {', '.join(missing)}")
    steps: dict[str, float] = {}
    started = time.perf_counter()
    conn = duckdb.connect(str(database), config=_duckdb_config())

    def run(step: str, sql: str, **params: object) -> None:
        began = time.perf_counter()
        conn.execute(sql, {name: value for name, value in params.items() if f"${name}" in sql})
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - began

    conn.execute("BEGIN")
    conn.execute("CREATE SCHEMA staging; CREATE SCHEMA recon")
    conn.execute("CREATE TEMP TABLE files (file_id INTEGER, file_name VARCHAR)")
    file_id = 0
    for source in SOURCES:
        conn.execute(_for(JUDGED_TABLE, source))
        for path in files[source]:
            header = headers[path]
            # Every column of the header is read, as text, or the strict parser would reject the file; the
            # optional contract columns a file lacks are null.
            projection = ", ".join(c if c in header else f"NULL::VARCHAR AS {c}" for c in CONTRACT_COLUMNS)
            name = path.relative_to(landing).as_posix()
            conn.execute("INSERT INTO files VALUES (?, ?)", [file_id, name])
            sql = _for(JUDGE, source).replace("{projection}", projection)
            run(
                f"read and judge {source}",
                sql,
                path=str(path),
                file_id=file_id,
                day=day,
                columns=dict.fromkeys(header, "VARCHAR"),
            )
            file_id += 1
    conn.execute(QUARANTINE_TABLE)
    for source in SOURCES:
        run(f"duplicates {source}", _for(REPEATS, source))
        run(f"staging {source}", _for(STAGING, source), day=day)
        run(f"quarantine {source}", _for(QUARANTINE, source), day=day)
    for step, sql in MATCHING:
        run(step, sql, day=day, tolerance=tolerance_days, carry_days=carry_days)
    run("commit and close", "COMMIT")
    began = time.perf_counter()
    conn.close()
    steps["commit and close"] += time.perf_counter() - began
    return time.perf_counter() - started, steps


def figures(database: Path) -> dict:
    """What the day came to, read back from the file: rows per table, and matches per pass."""
    with duckdb.connect(str(database), read_only=True) as conn:

        def one(sql: str) -> int:
            return conn.execute(sql).fetchone()[0]

        by_pass = dict(
            conn.execute("SELECT match_pass, count(DISTINCT match_id) FROM recon.matches GROUP BY 1").fetchall()
        )
        return {
            "staged": {s: one(f"SELECT count(*) FROM staging.{s}") for s in SOURCES},
            "quarantined": one("SELECT count(*) FROM staging.quarantine"),
            "matches": one("SELECT count(DISTINCT match_id) FROM recon.matches"),
            "matched_ledger_items": one("SELECT count(*) FROM recon.matches"),
            "matches_by_pass": {p: by_pass.get(p, 0) for p in ("exact", "amount_date", "aggregate")},
            "open_items": one("SELECT count(*) FROM recon.open_items"),
            "database_bytes": database.stat().st_size,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_sql", description=__doc__)
    parser.add_argument("--landing", type=Path, required=True, help="the landing zone: <landing>/<source>/*.csv")
    parser.add_argument("--day", type=date.fromisoformat, required=True, help="the business day, YYYY-MM-DD")
    parser.add_argument("--db", type=Path, required=True, help="the DuckDB file to create")
    parser.add_argument("--date-tolerance-days", type=int, default=2)
    parser.add_argument("--carry-days", type=int, default=5)
    parser.add_argument("--result", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--steps", action="store_true", help="also print the seconds of each step")
    args = parser.parse_args(argv)
    seconds, steps = reconcile(args.landing, args.day, args.db, args.date_tolerance_days, args.carry_days)
    result = {"seconds": seconds, **figures(args.db), "steps": steps}
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=2))
    by_pass = ", ".join(f"{p} {n:,}" for p, n in result["matches_by_pass"].items())
    print(
        f"{args.day}: {result['matches']:,} matches ({by_pass}), {result['matched_ledger_items']:,} ledger items "
        f"matched; staged {result['staged']['ledger']:,} ledger and {result['staged']['bank']:,} bank rows, "
        f"{result['quarantined']:,} quarantined, {result['open_items']:,} open items; {seconds:.2f} s"
    )
    if args.steps:
        for step, step_seconds in steps.items():
            print(f"{step_seconds:8.2f} s  {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
