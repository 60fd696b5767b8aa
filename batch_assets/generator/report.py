"""What a generation run produced, per business date, in a shape a CLI can print."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class DayReport:
    """Counts for one business date. Rows are as written: duplicate copies and bad rows included."""

    business_date: date
    ledger_rows: int
    bank_rows: int
    files: int
    ledger_invalid: int
    bank_invalid: int
    ledger_duplicates: int
    bank_duplicates: int
    pairs: int  # one-to-one pairs whose later side is booked on this date
    groups: int  # many-to-one groups whose bank line is booked on this date

    @property
    def invalid_rows(self) -> int:
        return self.ledger_invalid + self.bank_invalid

    @property
    def duplicates(self) -> int:
        return self.ledger_duplicates + self.bank_duplicates


_COLUMNS = (
    ("business_date", "date"),
    ("ledger_rows", "ledger"),
    ("bank_rows", "bank"),
    ("files", "files"),
    ("invalid_rows", "invalid"),
    ("duplicates", "dups"),
    ("pairs", "pairs"),
    ("groups", "groups"),
)


@dataclass(frozen=True)
class GenerationReport:
    """The arguments of a run, its per-day counts, the files it wrote and how long it took."""

    start: date
    days: int
    rows: int
    fmt: str
    seed: int
    parts: int
    landing: Path
    truth: Path | None
    day_reports: tuple[DayReport, ...]
    files: tuple[Path, ...]
    seconds: float

    def total(self, name: str) -> int:
        """The sum of one DayReport count over all days, e.g. total("bank_rows")."""
        return sum(getattr(day, name) for day in self.day_reports)

    def table(self) -> str:
        """A plain-text table: one line per day and a total line."""
        header = [title for _, title in _COLUMNS]
        lines = [[str(getattr(day, name)) for name, _ in _COLUMNS] for day in self.day_reports]
        lines.append(["total"] + [str(self.total(name)) for name, _ in _COLUMNS[1:]])
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        text = [
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *lines]
        ]
        text.append(
            f"{self.fmt}, seed {self.seed}, {len(self.files)} files in {self.landing}"
            + (f", truth in {self.truth}" if self.truth else "")
            + f", {self.seconds:.1f} s"
        )
        return "\n".join(text)
