"""`make bench`, last part: the targets table from this round's results.json, backfill.json, history.json,
scale_out.json and bank_formats.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.run import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="where the results are")
    args = parser.parse_args(argv)
    path = args.out / "results.json"
    if not path.exists():
        parser.error(f"{path} is missing: run python -m benchmarks.run first")
    results = json.loads(path.read_text())
    companions = report.companions(results, args.out)
    # results.md is written again with the figures the later parts of the round added.
    md_path = report.write_markdown(results, args.out, **companions)
    print(report.targets_markdown(report.targets(results, **companions)))
    print(f"\ntargets added to {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
