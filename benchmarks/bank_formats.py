"""`make bench`, bank statements: each format's ingest of one day of bank lines against the same day's CSV, and the
peak RSS of ingesting a much larger camt.053."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from benchmarks.proctree import run_measured
from benchmarks.run import REPO

FORMATS = ("csv", "camt053", "mt940", "bai2")
DAY = date(2025, 1, 6)
# Bank lines per ledger row in a generated day (pairs, batch lines and bank-only lines), as measured at 1M.
BANK_LINES_PER_LEDGER_ROW = 0.833
GIB = 1 << 30


def _ledger_rows(lines: int) -> int:
    return max(1, round(lines / BANK_LINES_PER_LEDGER_ROW))


def cmd_generate(args: argparse.Namespace) -> int:
    """One day of landing files with the bank side in `--bank-format` (csv: the plain bank CSV)."""
    from batch_assets.generator import generate

    bank_format = None if args.bank_format == "csv" else args.bank_format
    generate(start=DAY, days=1, rows=args.rows, fmt="csv", seed=7, landing=args.landing, bank_format=bank_format)
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    """What the ingest does with one bank file, measured alone: fingerprint it, then land its rows in the spill."""
    from batch_assets.landing import digest_file, land_file, scan_landing

    (file,), _ = scan_landing(args.landing, DAY, sources=("bank",))
    began = time.perf_counter()
    digest = digest_file(file)
    rows = land_file(file, digest, args.spill)
    seconds = time.perf_counter() - began
    args.result.write_text(json.dumps({"seconds": seconds, "rows": rows, "bytes": file.size_bytes}))
    return 0


def _child(subcommand: list[str], log: Path, timeout: float):
    command = [sys.executable, "-m", "benchmarks.bank_formats", *subcommand]
    result = run_measured(command, env={"PATH": "/usr/bin:/bin"}, cwd=REPO, log=log, timeout_seconds=timeout)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(subcommand[:1])} failed ({result.returncode}):\n{result.log_tail()}")
    return result


def _land(work: Path, fmt: str, name: str, timeout: float) -> dict:
    result_path = work / f"{name}.json"
    child = _child(
        ["land", "--landing", str(work / fmt), "--spill", str(work / f"{name}.parquet"), "--result", str(result_path)],
        work / f"{name}.log",
        timeout,
    )
    (work / f"{name}.parquet").unlink(missing_ok=True)
    figures = json.loads(result_path.read_text())
    return {**figures, "peak_rss_bytes": child.peak_rss_bytes, "wall_seconds": child.wall_seconds}


def measure(lines: int, repeats: int, memory_lines: int, work: Path) -> dict:
    rows = _ledger_rows(lines)
    for fmt in FORMATS:
        _child(
            ["generate", "--rows", str(rows), "--bank-format", fmt, "--landing", str(work / fmt)],
            work / "gen.log",
            3600,
        )
    runs: dict[str, list[dict]] = {fmt: [] for fmt in FORMATS}
    for repeat in range(repeats):
        # Each repeat lands every format once, in a rotated order, so that the ratios pair runs of like conditions.
        order = FORMATS[repeat % len(FORMATS) :] + FORMATS[: repeat % len(FORMATS)]
        for fmt in order:
            runs[fmt].append(_land(work, fmt, f"{fmt}-{repeat}", 3600))
    formats = {}
    for fmt in FORMATS:
        seconds = [run["seconds"] for run in runs[fmt]]
        ratios = [run["seconds"] / csv["seconds"] for run, csv in zip(runs[fmt], runs["csv"], strict=True)]
        formats[fmt] = {
            "lines": runs[fmt][0]["rows"],
            "bytes": runs[fmt][0]["bytes"],
            "seconds": seconds,
            "median_seconds": statistics.median(seconds),
            "lines_per_second": runs[fmt][0]["rows"] / statistics.median(seconds),
            "ratio_to_csv": statistics.median(ratios),
            "peak_rss_bytes": statistics.median(run["peak_rss_bytes"] for run in runs[fmt]),
        }
    for fmt in FORMATS:
        shutil.rmtree(work / fmt)
    memory = None
    if memory_lines:
        _child(
            [
                "generate",
                "--rows",
                str(_ledger_rows(memory_lines)),
                "--bank-format",
                "camt053",
                "--landing",
                str(work / "big"),
            ],
            work / "gen-big.log",
            7200,
        )
        landed = _land(work, "big", "big", 7200)
        memory = {
            "lines": landed["rows"],
            "bytes": landed["bytes"],
            "seconds": landed["seconds"],
            "peak_rss_bytes": landed["peak_rss_bytes"],
        }
    return {"lines": lines, "ledger_rows": rows, "repeats": repeats, "formats": formats, "memory": memory}


def markdown(figures: dict) -> str:
    lines = [
        f"Ingest of one day's bank file (fingerprint and land the rows), {figures['formats']['csv']['lines']:,} bank "
        f"lines, median of {figures['repeats']}; the ratio is each repeat's time over the CSV's in the same repeat.",
        "",
        "| format | file MB | seconds | lines/s | ratio to CSV | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for fmt, f in figures["formats"].items():
        lines.append(
            f"| {fmt} | {f['bytes'] / 1e6:,.0f} | {f['median_seconds']:.2f} | {f['lines_per_second']:,.0f} | "
            f"{f['ratio_to_csv']:.2f}× | {f['peak_rss_bytes'] / (1 << 20):,.0f} |"
        )
    if memory := figures.get("memory"):
        lines += [
            "",
            f"camt.053 of {memory['lines']:,} entries ({memory['bytes'] / 1e9:.2f} GB): landed in "
            f"{memory['seconds']:.1f} s, peak RSS {memory['peak_rss_bytes'] / GIB:.2f} GiB.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bank_formats", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    generate = commands.add_parser("generate")
    generate.add_argument("--rows", type=int, required=True)
    generate.add_argument("--bank-format", choices=FORMATS, required=True)
    generate.add_argument("--landing", type=Path, required=True)
    generate.set_defaults(func=cmd_generate)
    land = commands.add_parser("land")
    land.add_argument("--landing", type=Path, required=True)
    land.add_argument("--spill", type=Path, required=True)
    land.add_argument("--result", type=Path, required=True)
    land.set_defaults(func=cmd_land)
    parser.add_argument("--lines", type=int, default=1_000_000, help="bank lines in the day of each format")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-lines", type=int, default=5_000_000, help="entries of the large camt.053 (0: skip)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args(argv)
    if args.command:
        return args.func(args)
    started = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(prefix="bank-formats-") as folder:
        figures = measure(args.lines, args.repeats, args.memory_lines, Path(folder))
    figures.update(started_at=started, finished_at=datetime.now(UTC).isoformat())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bank_formats.json").write_text(json.dumps(figures, indent=2))
    print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
