"""The generate() entry point: validate the arguments, draw the plan, write the landing files and the truth."""

from __future__ import annotations

import datetime
import pathlib
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from batch_assets.generator import render, statements
from batch_assets.generator import truth as truth_files
from batch_assets.generator.files import write_frame, write_json
from batch_assets.generator.plan import Plan, build_plan
from batch_assets.generator.rates import Rates
from batch_assets.generator.report import DayReport, GenerationReport
from batch_assets.transforms import contract

MAX_DAYS = 10_000  # day numbers are sorted as int16


def generate(
    *,
    start: datetime.date,
    days: int,
    rows: int,
    fmt: str,
    seed: int,
    landing: pathlib.Path,
    truth: pathlib.Path | None = None,
    parts: int = 1,
    rates: Rates | None = None,
    bank_format: str | None = None,
) -> GenerationReport:
    """Write `days` consecutive business dates of ledger and bank files from `start` into `landing`.

        report = generate(start=date(2026, 11, 21), days=3, rows=10_000, fmt="csv", seed=7,
                          landing=Path("data/landing"), truth=Path("data/truth"))
        print(report.table())

    `rows` ledger rows per day (duplicate copies come on top); the bank side has about as many lines.
    Files are `<landing>/<source>/<source>_<YYYY-MM-DD>[_<part>].<ext>`; with parts > 1 each source's
    day is split into `_01`, `_02`, ... in written order. CSV and JSONL hold every value as text,
    Parquet is typed (amount Decimal(18,2), dates Date), so its bad rows only break the rules a typed
    file can break. A JSONL part with no rows is not written (a zero-byte file is rejected by the
    contract). With `truth`, each date D gets `<truth>/<D>/pairs.parquet`, `quarantine.parquet` and
    `manifest.json` (see truth.py). The same arguments always give byte-identical files. Existing
    files with the same names are replaced; nothing else is touched.

    The whole range is planned in memory at once (amounts are unique over the whole range), so memory
    grows with days * rows: about 450 bytes a row at 5M rows, more with truth.
    """
    if not isinstance(start, datetime.date) or isinstance(start, datetime.datetime):
        raise TypeError("start must be a datetime.date")
    if fmt not in contract.FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(contract.FORMATS)}, got {fmt!r}")
    if bank_format is not None and bank_format not in statements.FORMATS:
        raise ValueError(f"bank_format must be one of {', '.join(statements.FORMATS)}, got {bank_format!r}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    if rows < 0:
        raise ValueError("rows must not be negative")
    if parts < 1:
        raise ValueError("parts must be at least 1")
    rates = rates or Rates()
    landing = pathlib.Path(landing)
    truth = pathlib.Path(truth) if truth is not None else None
    began = time.perf_counter()

    plan = build_plan(start=start, days=days, rows=rows, seed=seed, fmt=fmt, rates=rates, bank_format=bank_format)
    balances = statements.Balances.opening(plan, seed) if bank_format else None
    written: list[pathlib.Path] = []
    reports: list[DayReport] = []
    # Files are written on a second thread while the next frame (or the truth) is built: polars writes
    # without holding the GIL, so the two overlap. What is written never depends on the timing.
    with ThreadPoolExecutor(max_workers=1) as writer:
        for day in range(days):
            writes: list[Future] = []
            counts: dict[str, int] = {}
            names: dict[str, list[str]] = {}
            layouts: dict[str, render.DayLayout] = {}
            for source in contract.SOURCES:
                side = plan.side(source)
                names[source] = []
                if source == "bank" and balances is not None:
                    lay = statements.layout(plan, side, day, parts)
                    frame = render.day_frame(plan, side, day, lay)
                    # Statements carry balances from day to day, so they are written in order, here.
                    statements.write(plan, side, day, lay, frame, balances, seed, landing)
                    written.extend(landing / name for name in lay.file_names)
                    names[source].extend(lay.file_names)
                    counts[source], layouts[source] = frame.height, lay
                    continue
                lay = render.layout(plan, side, day, parts)
                frame = render.day_frame(plan, side, day, lay)
                for index, name in enumerate(lay.file_names):
                    chunk = frame.slice(int(lay.bounds[index]), int(lay.bounds[index + 1] - lay.bounds[index]))
                    # An empty JSONL file would be zero bytes, which the contract rejects as unreadable;
                    # CSV keeps its header and Parquet its schema, so those are written even when empty.
                    if fmt == "jsonl" and chunk.height == 0:
                        continue
                    path = landing / name
                    writes.append(writer.submit(write_frame, chunk, path, fmt))
                    written.append(path)
                    names[source].append(name)
                counts[source] = frame.height
                layouts[source] = lay
                del frame
            reports.append(_day_report(plan, day, counts, names, layouts))
            if truth is not None:
                _write_truth(plan, day, truth / plan.date(day).isoformat(), seed, parts, names, counts, layouts)
            # At most one day of frames in memory; a failed write stops the run here.
            for write in writes:
                write.result()

    return GenerationReport(
        start=start,
        days=days,
        rows=rows,
        fmt=fmt,
        seed=seed,
        parts=parts,
        landing=landing,
        truth=truth,
        day_reports=tuple(reports),
        files=tuple(written),
        seconds=time.perf_counter() - began,
    )


def _day_report(plan: Plan, day: int, counts: dict[str, int], names: dict[str, list[str]], layouts) -> DayReport:
    ledger, bank = plan.ledger, plan.bank
    return DayReport(
        business_date=plan.date(day),
        ledger_rows=counts["ledger"],
        bank_rows=counts["bank"],
        files=len(names["ledger"]) + len(names["bank"]),
        ledger_invalid=int((ledger.invalid_rule[ledger.rows(day)] >= 0).sum()),
        bank_invalid=int((bank.invalid_rule[bank.rows(day)] >= 0).sum()),
        ledger_duplicates=int(layouts["ledger"].copy.sum()),
        bank_duplicates=int(layouts["bank"].copy.sum()),
        pairs=_completed_pairs(plan, day),
        groups=_completed_groups(plan, day),
    )


def _write_truth(plan: Plan, day: int, folder: pathlib.Path, seed: int, parts: int, names, counts, layouts) -> None:
    quarantined = truth_files.quarantine(plan, plan.ledger, day, layouts["ledger"]).vstack(
        truth_files.quarantine(plan, plan.bank, day, layouts["bank"])
    )
    true_pairs = truth_files.pairs(plan, day)
    write_frame(true_pairs, folder / "pairs.parquet", "parquet")
    write_frame(quarantined, folder / "quarantine.parquet", "parquet")
    manifest = truth_files.manifest(
        plan, day, seed=seed, parts=parts, files=names, rows=counts, quarantined=quarantined, true_pairs=true_pairs
    )
    write_json(manifest, folder / "manifest.json")


def _completed_pairs(plan: Plan, day: int) -> int:
    sent = plan.pair_bank >= 0
    return int((sent & (plan.bank.day[np.where(sent, plan.pair_bank, 0)] == day)).sum())


def _completed_groups(plan: Plan, day: int) -> int:
    sent = plan.batch_bank >= 0
    return int((sent & (plan.bank.day[np.where(sent, plan.batch_bank, 0)] == day)).sum())
