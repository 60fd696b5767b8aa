"""The `batch-assets` command: generate sample data, run days through Dagster, report, and start the UI."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from datetime import date, timedelta
from pathlib import Path

# Nothing of the package or of Dagster at module level: `batch-assets --help` and a mistyped argument answer
# without importing Dagster (a second of start-up); each command imports what it uses.

DEMO_START = date(2026, 11, 2)
BANK_FORMATS = ("camt053", "mt940", "bai2")  # the generator's statement formats (generator/statements.py)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _days(start: date, count: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(count)]


def cmd_env(args: argparse.Namespace) -> int:
    """Print every setting as a shell export with the value a run started now would use (the variable where set,
    else the default): `eval "$(batch-assets env)"`."""
    from batch_assets import settings
    from batch_assets.definitions import defs

    if args.markdown:
        print(settings.settings_table(defs.resources), end="")
        return 0
    launch = settings.data_environment(settings.data_home())
    for row in settings.setting_rows(defs.resources):
        value = os.environ.get(row.variable, launch.get(row.variable, row.default))
        if row.type == "path" and row.variable not in launch:
            value = str(settings.under_home(value))  # absolute, so that shell commands can use it as it is
        print(f"# {row.description}")
        print(f"export {row.variable}={shlex.quote(value)}")
    return 0


def _landing() -> Path:
    from batch_assets.resources import LandingZoneResource

    return LandingZoneResource().with_environment(os.environ).path


def cmd_generate(args: argparse.Namespace) -> int:
    from batch_assets import settings

    settings.apply_launch_environment()
    landing = Path(args.landing) if args.landing else _landing()
    report = _generate(args, landing, Path(args.truth) if args.truth else None, parts=args.parts)
    print(
        f"wrote {args.days} day(s) of {args.format}"
        + (f" (bank side as {args.bank_format} statements)" if args.bank_format else "")
        + f" to {landing}"
        + (f", ground truth to {args.truth}" if args.truth else "")
    )
    print(report.table())
    return 0


def _generate(args: argparse.Namespace, landing: Path, truth: Path | None, parts: int = 1):
    from batch_assets.generator import generate

    return generate(
        start=args.start,
        days=args.days,
        rows=args.rows,
        fmt=args.format,
        seed=args.seed,
        landing=landing,
        truth=truth,
        parts=parts,
        bank_format=args.bank_format,
    )


def cmd_breaks(args: argparse.Namespace) -> int:
    """Write the day's open and standing breaks to a sheet to decide on."""
    from batch_assets import settings
    from batch_assets.operations import export_breaks

    settings.apply_launch_environment()
    written = export_breaks(args.day, Path(args.out))
    print(
        f"wrote {written} break(s) of {args.day} to {args.out}: fill in resolution_id, action and the rest, then drop "
        f"it into the landing zone as resolutions/resolutions_<YYYY-MM-DD>{Path(args.out).suffix}"
    )
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    """Write one resolution into the landing zone as its own resolutions file."""
    from batch_assets import settings
    from batch_assets.operations import write_resolution

    settings.apply_launch_environment()
    action = "match" if args.match else "write_off" if args.write_off else "reverse"
    try:
        path = write_resolution(
            _landing(),
            args.day,
            action,
            args.match or args.write_off or [],
            args.by,
            resolution_id=args.id,
            write_off_amount=args.amount,
            reason_code=args.reason,
            comment=args.comment,
            reverses=args.reverse,
        )
    except (ValueError, FileExistsError) as error:
        print(error, file=sys.stderr)
        return 2
    print(f"wrote {path}; it is judged with the day's other resolutions when {args.day} is matched")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daily job for each day from --start, in order, stopping at the first failed day."""
    from batch_assets import settings
    from batch_assets.operations import run_days

    settings.apply_launch_environment()
    days = _days(args.start, args.days)
    failed = run_days(days)
    if failed is not None:
        print(f"{failed} failed; later days were not run. See the run in the Dagster UI (make dev).", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print the per-day ingest and reconciliation tables from the warehouse."""
    from batch_assets import settings

    settings.apply_launch_environment()
    _print_tables(_days(args.start, args.days) if args.start else None, Path(args.truth) if args.truth else None)
    return 0


def _print_tables(days: list[date] | None, truth: Path | None) -> None:
    from batch_assets.operations import (
        break_value_report,
        day_report,
        print_report,
        reconciliation_report,
    )

    print("\nIngest and staging")
    print_report(day_report(days))
    print("\nReconciliation" + (" (precision and recall against the ground truth)" if truth else ""))
    print_report(reconciliation_report(days, truth))
    print("\nBreak value per currency (ledger and bank side, absolute amounts)")
    print_report(break_value_report(days))


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a week of sample data, run every day through Dagster, print what happened."""
    from batch_assets import settings
    from batch_assets.operations import resolve_largest_mismatch, run_days

    settings.apply_launch_environment()
    days = _days(args.start, args.days)
    landing = _landing()
    truth = settings.data_home() / "truth"
    print(f"generating {args.days} days x {args.rows} ledger rows into {landing}")
    _generate(args, landing, truth)
    failed = run_days(days)
    _print_tables(days, truth)
    if failed is not None:
        print(f"{failed} failed; see the run in the Dagster UI (make dev).", file=sys.stderr)
        return 1
    print(
        f"\nWorking the breaks: the largest amount mismatch of {days[-1]} matched by hand, its difference written off"
    )
    applied = resolve_largest_mismatch(landing, days[-1], "demo")
    if applied is None or applied["status"] != "applied":
        print(f"the demo's resolution was not applied: {applied}", file=sys.stderr)
        return 1
    print(
        f"resolution {applied['resolution_id']} {applied['status']} in run {applied['run_id'][:8]}: "
        f"{applied['items']} items of {applied['account_id']} {applied['currency']}, ledger {applied['ledger_total']} "
        f"against bank {applied['bank_total']}, {applied['write_off_amount']} written off ({applied['reason_code']}); "
        f"see ops.resolution_log, or `batch-assets breaks --day {days[-1]} --out breaks.xlsx` for what is left"
    )
    print(f"\nData: {settings.data_home()}. Open the Dagster UI with `make dev` to see the runs, checks and plots.")
    return 0


def cmd_distributed_demo(args: argparse.Namespace) -> int:
    """Start Redis, Postgres, a warehouse worker, two bucket workers and the daemon on sockets under the data
    folder, reconcile a generated week through Celery, print the tables, and stop everything it started."""
    from batch_assets import settings
    from batch_assets.generator import generate
    from batch_assets.local_cluster import WAREHOUSE_FOLDER, LocalCluster, can_isolate

    root = settings.data_home() / "distributed-demo"
    if root.exists():
        print(f"{root} exists from an earlier demo; remove it first", file=sys.stderr)
        return 1
    days = _days(args.start, args.days)
    failed = []
    with LocalCluster(root) as cluster:
        landing, truth = cluster.data / "landing", cluster.data / "truth"
        print(f"generating {args.days} days x {args.rows} ledger rows into {landing}", flush=True)
        generate(
            start=args.start, days=args.days, rows=args.rows, fmt="csv", seed=args.seed, landing=landing, truth=truth
        )
        why = can_isolate()
        cluster.start_workers(2, isolated=why is None)
        print("bucket workers " + ("in namespaces of their own" if why is None else f"on this host ({why})"))
        cluster.start_daemon()
        for day in days:
            run = cluster.run_day(day.isoformat())
            print(f"{day}  run {run.run_id[:8]}  {run.status.value}", flush=True)
            if run.status.value != "SUCCESS":
                failed.append(day)
                break
        os.environ.update(settings.data_environment(cluster.data))
        os.environ[settings.WAREHOUSE] = f"{WAREHOUSE_FOLDER}/warehouse.duckdb"
        _print_tables(days, truth)
    print(f"\nEverything ran under {root}; logs in {root / 'logs'}. Every process it started has stopped.")
    return 1 if failed else 0


def cmd_files(args: argparse.Namespace) -> int:
    """What was delivered for a day, and what happened to each file."""
    import polars as pl

    from batch_assets import settings
    from batch_assets.operations import file_report, print_report, quarantine_report

    settings.apply_launch_environment()
    print(f"Files of {args.day}")
    # Names and reasons whole, wrapped in their cells: a reason cut short does not tell what to fix.
    with pl.Config(fmt_str_lengths=2000):
        print_report(file_report(args.day))
    counts, rows = quarantine_report(args.day, args.rows)
    print(f"\nQuarantined rows of {args.day} per rule")
    print_report(counts)
    print(f"\nFirst {args.rows} quarantined rows")
    print_report(rows)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from batch_assets import settings
    from batch_assets.operations import cancel_run

    settings.apply_launch_environment()
    print(cancel_run(args.run_id, force=args.force))
    return 0


def cmd_reexecute(args: argparse.Namespace) -> int:
    from batch_assets import settings
    from batch_assets.operations import reexecute_from_failure

    settings.apply_launch_environment()
    return 0 if reexecute_from_failure(args.run_id) else 1


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the Dagster webserver and daemon for this code location, bound to loopback by default."""
    from batch_assets import settings

    values = settings.apply_launch_environment()
    dg = Path(sys.executable).with_name("dg")
    command = [str(dg), "dev", "--host", args.host, "--port", str(args.port)]
    print("starting", " ".join(command), f"(DAGSTER_HOME={values['DAGSTER_HOME']})", flush=True)
    os.execv(command[0], command)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    env = commands.add_parser("env", help="print the settings as shell exports, defaults filled in")
    env.add_argument("--markdown", action="store_true", help="print the settings table of the README instead")
    env.set_defaults(func=cmd_env)

    gen = commands.add_parser("generate", help="write realistic sample landing files (and ground truth)")
    gen.add_argument("--start", type=_date, required=True)
    gen.add_argument("--days", type=_positive, required=True)
    gen.add_argument("--rows", type=_positive, required=True, help="ledger rows per day")
    gen.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--landing", help="landing folder (default: the landing setting, $BATCH_ASSETS_LANDING)")
    gen.add_argument("--truth", help="write the ground truth here")
    gen.add_argument("--parts", type=_positive, default=1, help="files per source and day")
    gen.add_argument("--bank-format", choices=BANK_FORMATS, help="write the bank side as statements in this format")
    gen.set_defaults(func=cmd_generate)

    breaks = commands.add_parser("breaks", help="export a day's open and standing breaks to decide on (xlsx or csv)")
    breaks.add_argument("--day", type=_date, required=True)
    breaks.add_argument("--out", required=True, help="FILE.xlsx or FILE.csv")
    breaks.set_defaults(func=cmd_breaks)

    resolve = commands.add_parser("resolve", help="write one resolution (match, write-off or reverse) for a day")
    resolve.add_argument("--day", type=_date, required=True, help="the business date it takes effect on")
    decision = resolve.add_mutually_exclusive_group(required=True)
    decision.add_argument("--match", nargs="+", metavar="SOURCE:TXN_ID", help="items that are one match")
    decision.add_argument("--write-off", nargs="+", metavar="SOURCE:TXN_ID", help="items closed without a partner")
    decision.add_argument("--reverse", metavar="RESOLUTION_ID", help="undo an applied resolution from --day on")
    resolve.add_argument("--amount", help="write_off_amount: a match's difference (ledger minus bank) written off")
    resolve.add_argument("--reason", help="reason_code (required for any write-off)")
    resolve.add_argument("--comment")
    resolve.add_argument("--by", required=True, help="who decided")
    resolve.add_argument("--id", help="the resolution id (default: R-<date>-<random>)")
    resolve.set_defaults(func=cmd_resolve)

    run = commands.add_parser(
        "run", help="run the daily job for consecutive days, in order (re-run from day D forward)"
    )
    run.add_argument("--start", type=_date, required=True)
    run.add_argument("--days", type=_positive, default=1)
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="print the per-day table from the warehouse")
    report.add_argument("--start", type=_date)
    report.add_argument("--days", type=_positive, default=7)
    report.add_argument("--truth", help="ground-truth folder written by `generate --truth`: adds precision and recall")
    report.set_defaults(func=cmd_report)

    demo = commands.add_parser("demo", help="generate a week of data, reconcile it through Dagster, print the table")
    demo.add_argument("--start", type=_date, default=DEMO_START)
    demo.add_argument("--days", type=_positive, default=7)
    demo.add_argument("--rows", type=_positive, default=20_000)
    demo.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--bank-format", choices=BANK_FORMATS, help="send the bank side as statements in this format")
    demo.set_defaults(func=cmd_demo)

    distributed = commands.add_parser(
        "distributed-demo", help="the demo on Celery workers, Redis and Postgres, started and stopped on sockets"
    )
    distributed.add_argument("--start", type=_date, default=DEMO_START)
    distributed.add_argument("--days", type=_positive, default=7)
    distributed.add_argument("--rows", type=_positive, default=2_000)
    distributed.add_argument("--seed", type=int, default=7)
    distributed.set_defaults(func=cmd_distributed_demo)

    files = commands.add_parser("files", help="a day's delivered files (status, reason) and its quarantined rows")
    files.add_argument("day", type=_date)
    files.add_argument("--rows", type=_positive, default=20, help="quarantined rows to list")
    files.set_defaults(func=cmd_files)

    cancel = commands.add_parser("cancel", help="cancel a queued or running run")
    cancel.add_argument("run_id")
    cancel.add_argument(
        "--force", action="store_true", help="mark it canceled even if its worker does not answer (it died)"
    )
    cancel.set_defaults(func=cmd_cancel)

    reexecute = commands.add_parser("reexecute", help="re-execute a failed run from its failed steps")
    reexecute.add_argument("run_id")
    reexecute.set_defaults(func=cmd_reexecute)

    dev = commands.add_parser("dev", help="start the Dagster UI and daemon (dg dev)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
