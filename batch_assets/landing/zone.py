"""Deliveries in the landing zone: finding them safely, what identifies one (sha256, size, lines), holding one
open while it is read, and the error that rejects one."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from batch_assets.landing import formats
from batch_assets.transforms.contract import LANDING_SOURCES, RESOLUTION_FORMATS, RESOLUTIONS, parse_landing_name

# A `.done` marker says its file is complete; dot-files are writers' temporary names. Neither is a delivery.
DONE_SUFFIX = ".done"


@dataclass(frozen=True)
class LandingFile:
    """A delivered file whose name fits the contract."""

    path: Path
    name: str  # relative to the landing root, e.g. "ledger/ledger_2026-11-21.csv"
    source: str
    business_date: date
    format: str
    size_bytes: int
    mtime_ns: int
    device: int  # st_dev and st_ino as listed: reading checks that the name still holds this very file
    inode: int


@dataclass(frozen=True)
class IgnoredFile:
    """Something in the landing zone that is not a delivery, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class FileDigest:
    """What one streaming pass over a file's bytes tells: its identity and its line structure."""

    sha256: str
    size_bytes: int
    newlines: int
    ends_with_newline: bool


class RejectedFile(Exception):
    """A file that cannot be read as a whole. The message names the file, the line when known, and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def scan_landing(
    root: Path, business_date: date | None = None, sources: Iterable[str] = LANDING_SOURCES
) -> tuple[list[LandingFile], list[IgnoredFile]]:
    """Deliveries under `root/<source>/`, sorted by name, and the entries that were ignored with a reason.

    Symlinks are never followed and nothing outside `root` is read, so the landing zone cannot be used to
    pull in other files.
    """
    files: list[LandingFile] = []
    ignored: list[IgnoredFile] = []
    real_root = root.resolve()
    for source in sources:
        folder = root / source
        if folder.is_symlink():
            ignored.append(IgnoredFile(source, "the source folder is a symlink; it is not followed"))
            continue
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                name = f"{source}/{printable_name(entry.name)}"
                if entry.name.startswith(".") or entry.name.endswith(DONE_SUFFIX):
                    continue
                if entry.is_symlink():
                    ignored.append(IgnoredFile(name, "a symlink; symlinks are not followed"))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    ignored.append(IgnoredFile(name, "not a regular file"))
                    continue
                if Path(entry.path).resolve().parent != real_root / source:
                    ignored.append(IgnoredFile(name, "resolves outside the landing zone"))
                    continue
                try:
                    extensions = RESOLUTION_FORMATS if source == RESOLUTIONS else formats.extensions(source)
                    parsed = parse_landing_name(source, entry.name, extensions)
                except ValueError as error:
                    ignored.append(IgnoredFile(name, str(error)))
                    continue
                if business_date is not None and parsed.business_date != business_date:
                    continue
                try:
                    listed = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while we listed: it is not part of this listing
                files.append(
                    LandingFile(
                        path=Path(entry.path),
                        name=name,
                        source=parsed.source,
                        business_date=parsed.business_date,
                        format=parsed.format,
                        size_bytes=listed.st_size,
                        mtime_ns=listed.st_mtime_ns,
                        device=listed.st_dev,
                        inode=listed.st_ino,
                    )
                )
    files.sort(key=lambda f: f.name)
    ignored.sort(key=lambda f: f.name)
    return files, ignored


def printable_name(name: str) -> str:
    """A file name as it may be reported: control characters, line and paragraph separators, format
    characters and bytes that are not UTF-8 (surrogate escapes) written as escapes, so that a hostile name
    can neither split nor forge a log line. Names that fit the contract are ASCII and come out unchanged."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in name)


def digest_file(file: LandingFile | Path, chunk_size: int = 8 << 20) -> FileDigest:
    """sha256, size and newline count in one streaming pass. A listed file is read only if its name still
    holds the file that was listed (RejectedFile otherwise); a bare path is read as it is."""
    if isinstance(file, LandingFile):
        with held_open(file) as held:
            return _digest(held.path, chunk_size)
    return _digest(file, chunk_size)


@contextmanager
def held_open(file: LandingFile) -> Iterator[LandingFile]:
    """The listed file opened once and held open while it is read: `path` becomes /proc/self/fd/N, so every
    reader (Python, DuckDB, Polars) reads the bytes of this open file, whatever the name points at by then."""
    # The scan's checks hold only for what it listed: a name swapped for a symlink or another file is not read.
    try:
        fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO swapped in cannot block
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RejectedFile(file.name, "replaced after it was listed (it is now a symlink)") from None
        # Faults of this one file, which waiting will not cure: they reject it, so the other files are still
        # judged. Anything else (out of file handles, I/O errors) is the machine's and stays an error.
        if error.errno == errno.ENOENT:
            raise RejectedFile(file.name, "removed after it was listed (deliver it again, or leave it out)") from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise RejectedFile(
                file.name, "cannot be opened: permission denied (let the user that runs Dagster read it)"
            ) from None
        raise
    try:
        problem = _not_as_listed(file, os.fstat(fd))
        if problem:
            raise RejectedFile(file.name, f"replaced after it was listed ({problem})")
        yield replace(file, path=Path(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)


def _not_as_listed(file: LandingFile, opened: os.stat_result) -> str | None:
    """Why the opened file is not the one the scan listed, or None when it is."""
    if not stat.S_ISREG(opened.st_mode):
        return "it is no longer a regular file"
    if (opened.st_dev, opened.st_ino) != (file.device, file.inode):
        return "it is now a different file"
    return None


def _digest(path: Path, chunk_size: int) -> FileDigest:
    sha = hashlib.sha256()
    size = newlines = 0
    last = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            sha.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return FileDigest(sha.hexdigest(), size, newlines, last == b"\n")


def find_non_utf8_line(path: Path) -> str | None:
    """The first line that is not UTF-8; only runs once a file has already failed to decode."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return f"line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
    return None


def find_nul_line(path: Path) -> str | None:
    """The first line with a NUL byte, which no JSON text holds; only runs once a file has failed to read."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:
                column = raw.index(b"\x00") + 1
                return f"line {number}: a NUL byte at column {column}, which JSON text cannot hold"
    return None


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
