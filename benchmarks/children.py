"""What the measured child processes run: generating a day, the ingest floor, and the day in-process."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

# Only what the floor needs is imported at module level: the floor process must not carry Dagster's or
# Polars' import cost and memory, or it would not be the least work an ingest must do.
import duckdb

SOURCES = ("ledger", "bank")


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def cmd_generate(args: argparse.Namespace) -> int:
    """One business day of CSV landing files and its ground truth, with the project's own generator."""
    from batch_assets.generator import generate

    report = generate(
        start=args.day, days=1, rows=args.rows, fmt="csv", seed=args.seed, landing=args.landing, truth=args.truth
    )
    (day,) = report.day_reports
    _write_json(
        args.result,
        {
            "seconds": report.seconds,
            "ledger_rows": day.ledger_rows,
            "bank_rows": day.bank_rows,
            "invalid_rows": day.invalid_rows,
            "pairs": day.pairs,
            "groups": day.groups,
            "csv_bytes": sum(f.stat().st_size for f in report.files),
        },
    )
    return 0


def _duckdb_config() -> dict:
    # The same two knobs, read the same way, as WarehouseResource.open gives the pipeline's connections,
    # so that the floor and the pipeline run DuckDB with the same threads and memory limit.
    config: dict = {}
    threads = int(os.environ.get("BATCH_ASSETS_DUCKDB_THREADS") or 0)
    if threads > 0:
        config["threads"] = threads
    if os.environ.get("BATCH_ASSETS_DUCKDB_MEMORY_LIMIT"):
        config["memory_limit"] = os.environ["BATCH_ASSETS_DUCKDB_MEMORY_LIMIT"]
    return config


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle))


def cmd_floor(args: argparse.Namespace) -> int:
    """The least work any ingest must do: read the day's CSV files with the declared schema (every column as
    text, as the contract reads CSV) with DuckDB's strict parser, and write them into a fresh DuckDB file."""
    pattern = f"{args.day.isoformat()}*.csv"
    files = {source: sorted((args.landing / source).glob(f"{source}_{pattern}")) for source in SOURCES}
    columns = {}
    for source, paths in files.items():
        headers = {tuple(_header(p)) for p in paths}
        if len(headers) != 1:
            raise SystemExit(f"{source}: expected files with one and the same header, found {len(headers)}")
        columns[source] = dict.fromkeys(headers.pop(), "VARCHAR")
    started = time.perf_counter()
    conn = duckdb.connect(str(args.database), config=_duckdb_config())
    rows = {}
    for source, paths in files.items():
        conn.execute(
            f"CREATE TABLE raw_{source} AS SELECT * FROM read_csv(?, columns = ?, header = true, "  # noqa: S608 (source is ledger or bank)
            "auto_detect = false, strict_mode = true, delim = ',', quote = '\"', escape = '\"', encoding = 'utf-8')",
            [[str(p) for p in paths], columns[source]],
        )
        rows[source] = conn.execute(f"SELECT count(*) FROM raw_{source}").fetchone()[0]  # noqa: S608 (source is ledger or bank)
    conn.close()  # closing checkpoints the data into the file: part of the write
    seconds = time.perf_counter() - started
    _write_json(args.result, {"seconds": seconds, "rows": rows, "database_bytes": args.database.stat().st_size})
    return 0


def cmd_inprocess(args: argparse.Namespace) -> int:
    """The day's whole job in this process (or --days consecutive days, in order), the way `batch-assets run`
    does it: execute_in_process against the real instance in $DAGSTER_HOME, so that its step events can be
    read afterwards."""
    from datetime import timedelta

    from batch_assets.operations import run_days

    return 0 if run_days([args.day + timedelta(days=i) for i in range(args.days)]) is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.children", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--landing", type=Path, required=True)
    gen.add_argument("--truth", type=Path, required=True)
    gen.set_defaults(func=cmd_generate)
    floor = commands.add_parser("floor")
    floor.add_argument("--landing", type=Path, required=True)
    floor.add_argument("--database", type=Path, required=True)
    floor.set_defaults(func=cmd_floor)
    inprocess = commands.add_parser("inprocess")
    inprocess.add_argument("--days", type=int, default=1)
    inprocess.set_defaults(func=cmd_inprocess)
    for command in (gen, floor, inprocess):
        command.add_argument("--day", type=date.fromisoformat, required=True)
        command.add_argument("--result", type=Path)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
