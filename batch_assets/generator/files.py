"""Atomic file writing: a watcher of the landing folder never sees half a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary sibling and rename it into place.

    The temporary name starts with a dot, so it never fits the landing file-name pattern, and it is in
    the same folder, so os.replace is an atomic rename on the same file system.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_frame(frame: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        write_atomic(path, lambda target: frame.write_csv(target, include_header=True, line_terminator="\n"))
    elif fmt == "jsonl":
        write_atomic(path, frame.write_ndjson)
    elif fmt == "parquet":
        write_atomic(path, frame.write_parquet)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def write_json(document: dict, path: Path) -> None:
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    write_atomic(path, lambda target: target.write_text(text, encoding="utf-8"))
