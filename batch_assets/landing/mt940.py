"""SWIFT MT940 statements and MT942 interim reports: one row per `:61:` statement line, read line by line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from batch_assets.landing.rows import ReadRows, amount_text, streamed_statement
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile

EXTENSIONS = ("sta", "mt940", "mt942")
SOURCES = ("bank",)

# Where a row's reference comes from, in order: the first whose normalised form is not null.
REFERENCE_SOURCES = ("end_to_end_id", "customer_reference", "remittance_information")
_TAG = re.compile(r":([0-9]{2}[A-Z]?):(.*)\Z", re.DOTALL)
# The fields of MT940 and MT942; a line that looks like another tag (":26:37 …" in wrapped :86: text) continues
# the field before it.
FIELDS = frozenset({"20", "21", "25", "28", "28C", "60F", "60M", "61", "62F", "62M", "64", "65", "86", "34F", "13",
                    "13D", "90D", "90C"})  # fmt: skip
# :61: value date, [entry date], mark (C, D, RC, RD), [funds code], amount, transaction type (N, F or S and
# three characters by the standard; banks also send other letters and spaces), references.
_LINE = re.compile(
    r"(?P<value>[0-9]{6})(?P<entry>[0-9]{4})?(?P<mark>RC|RD|C|D)(?P<funds>[A-Z])?(?P<amount>[0-9]+(?:,[0-9]*)?)"
    r"(?P<type>[A-Z][A-Z0-9 ]{3})(?P<customer>.*?)(?://(?P<bank>.*))?\Z"
)
# Amounts have a decimal comma; some banks leave it out of whole amounts (Knab's 500, mBank's PLN0).
_BALANCE = re.compile(r"(?P<mark>[CD])(?P<date>[0-9]{6})(?P<currency>[A-Z]{3})(?P<amount>[0-9]+(?:,[0-9]*)?)\Z")
_FLOOR = re.compile(r"(?P<currency>[A-Z]{3})[CD]?[0-9]+(?:,[0-9]*)?\Z")
# SEPA fields in German structured :86: text (?20 to ?29 carry them): the end-to-end reference and the
# remittance text; ?32 and ?33 the counterparty's name.
_SUBFIELD = re.compile(r"\?([0-9]{2})")
_PURPOSE = tuple(str(n) for n in (*range(20, 30), *range(60, 64)))  # the subfields that carry the purpose
_SEPA_KEY = re.compile(r"(EREF|KREF|MREF|CRED|DEBT|SVWZ|ABWA|ABWE|IBAN|BIC)\+")
_ENVELOPE = re.compile(r"(\{[1-3]:[^}]*\})*\{4:\s*\Z")
_NO_REFERENCE = "NONREF"


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
    """The file's rows, read as Polars pulls them; a check that fails rejects the whole file."""
    return streamed_statement(Statements(file).rows, REFERENCE_SOURCES)


@dataclass
class _Field:
    tag: str
    text: str
    line: int


_END = _Field("-", "", 0)  # a message's end: a `-` line, the next :20:, or the end of the file


@dataclass
class _Statement:
    """One message as it is read: the fields that head it, its statement lines' running total, and the lines it
    cannot turn into rows until its head is known (none, when its balance comes before its lines, as it should)."""

    line: int
    index: int
    heads: dict[str, _Field] = field(default_factory=dict)  # the first of each tag, :61: and :86: aside
    total: Decimal = Decimal(0)
    lines: int = 0
    waiting: list[tuple[_Field, _Field | None, int]] = field(default_factory=list)
    head: tuple[str, str, str, str, str] | None = None  # what its rows carry, once known (see Statements._head)
    kind: str | None = None  # MT940 or MT942, and the currency, once the rows began with them
    currency: str | None = None

    @property
    def where(self) -> str:
        return f"statement {self.index} (line {self.line})"

    def first(self, *tags: str) -> _Field | None:
        return next((self.heads[tag] for tag in tags if tag in self.heads), None)


class Statements:
    """One MT940/MT942 file, line by line: each statement line becomes a row as soon as its `:86:` is read, and each
    message is checked at its end; memory holds one field at a time, not a statement."""

    def __init__(self, file: LandingFile) -> None:
        self.file = file
        self.rows_out = 0

    def rows(self) -> Iterator[dict]:
        statement: _Statement | None = None
        statements = 0
        pending: _Field | None = None  # a :61: whose :86: may come next
        for item in self._fields():
            if statement is not None and pending is not None and item.tag != "86":
                yield from self._line(statement, pending, None)
                pending = None
            if item is _END:
                if statement is not None:
                    yield from self._finish(statement)
                statement = None
            elif item.tag == "20":
                if statement is not None:
                    yield from self._finish(statement)
                statements += 1
                statement = _Statement(item.line, statements, {"20": item})
            elif statement is None:
                raise RejectedFile(self.file.name, f"line {item.line}: :{item.tag}: before any :20: field")
            elif item.tag == "61":
                pending = item
            elif item.tag == "86":
                if pending is not None:
                    yield from self._line(statement, pending, item)
                    pending = None
            else:
                statement.heads.setdefault(item.tag, item)
        if not statements:
            raise RejectedFile(self.file.name, "no MT940 or MT942 message: no :20: field")

    def _lines(self) -> Iterator[tuple[int, str]]:
        with open(self.file.path, "rb") as data:
            for number, raw in enumerate(data, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise RejectedFile(
                        self.file.name,
                        f"line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                    ) from None
                # Transmission wrappers: SOH and ETX around a message (mBank), a line ending in CR LF.
                yield number, text.rstrip("\r\n").strip("\x01\x03")

    def _fields(self) -> Iterator[_Field]:
        """Each field once it is whole (a field's text goes on over the lines that start no tag), and _END where a
        message ends."""
        current: _Field | None = None
        for number, text in self._lines():
            if _ENVELOPE.match(text.strip()):
                continue  # a SWIFT envelope's basic, application and user headers, then {4: opens the text
            if text.strip() in ("-", "-}") or text.startswith("-}{5:"):
                if current is not None:
                    yield current
                current = None
                yield _END
                continue
            tag = _TAG.match(text)
            if tag is not None and tag[1] in FIELDS:
                if current is not None:
                    yield current
                current = _Field(tag[1], tag[2], number)
            elif current is not None:
                current.text += "\n" + text
            # else: a bank's header before the first message (ABN AMRO's "ABNANL2A", "940"), or nothing
        if current is not None:
            yield current
        yield _END

    def _head(self, statement: _Statement) -> tuple[str, str, str, str, str] | None:
        """What every row of the statement carries (its reference, account, number, kind and currency), or None
        while the fields that tell it have not all been read."""
        opening, closing = statement.first("60F", "60M"), statement.first("62F", "62M")
        floor = statement.first("34F")
        if statement.first("25") is None or statement.first("28C", "28") is None or (opening is None and floor is None):
            return None
        kind = "MT940" if opening is not None or closing is not None else "MT942"
        currency = self._currency(statement, opening, closing, floor)
        return (
            statement.heads["20"].text.strip(),
            self._required(statement, "25"),
            self._required(statement, "28C", "28"),
            kind,
            currency,
        )

    def _line(self, statement: _Statement, line: _Field, details: _Field | None) -> Iterator[dict]:
        statement.lines += 1
        statement.waiting.append((line, details, statement.lines))
        if statement.head is None:
            statement.head = self._head(statement)
        if statement.head is not None:
            yield from self._flush(statement, statement.head)

    def _flush(self, statement: _Statement, head: tuple[str, str, str, str, str]) -> Iterator[dict]:
        reference, account, number, kind, currency = head
        statement.kind, statement.currency = kind, currency
        for line, details, position in statement.waiting:
            row, amount = self._row(line, details, kind, reference, number, position)
            statement.total += amount
            yield {**row, "account_id": account, "currency": currency}
        statement.waiting.clear()

    def _finish(self, statement: _Statement) -> Iterator[dict]:
        where = statement.where
        self._required(statement, "25")
        self._required(statement, "28C", "28")
        opening, closing = statement.first("60F", "60M"), statement.first("62F", "62M")
        floor = statement.first("34F")
        interim = opening is None and closing is None and (floor is not None or statement.first("13D", "13"))
        if not interim and (opening is None or closing is None):
            missing = ":60F:" if opening is None else ":62F:"
            raise RejectedFile(self.file.name, f"{where}: no {missing} balance (an MT940 statement has both)")
        kind = "MT942" if interim else "MT940"
        currency = self._currency(statement, opening, closing, floor)
        if statement.kind is not None and (statement.kind, statement.currency) != (kind, currency):
            raise RejectedFile(
                self.file.name,
                f"{where}: its balances come after its statement lines and make it an {kind} in {currency}, not the "
                f"{statement.kind} in {statement.currency} its lines were read as; put :60F: before the :61: lines",
            )
        reference = statement.heads["20"].text.strip()
        account, number = self._required(statement, "25"), self._required(statement, "28C", "28")
        yield from self._flush(statement, (reference, account, number, kind, currency))
        if opening is not None and closing is not None:
            start, end = self._balance(opening, where), self._balance(closing, where)
            if start[1] != end[1]:
                raise RejectedFile(
                    self.file.name, f"{where}: statement does not balance: opening in {start[1]}, closing in {end[1]}"
                )
            if start[0] + statement.total != end[0]:
                raise RejectedFile(
                    self.file.name,
                    f"{where} ({reference}): statement does not balance: opening {start[0]} {start[1]} + lines "
                    f"{statement.total} = {start[0] + statement.total}, but the closing balance is {end[0]}",
                )

    def _required(self, statement: _Statement, *tags: str) -> str:
        found = statement.first(*tags)
        if found is None or not found.text.strip():
            raise RejectedFile(self.file.name, f"{statement.where}: no :{tags[0]}: field")
        return found.text.strip()

    def _currency(self, statement: _Statement, opening, closing, floor) -> str:
        if opening is not None or closing is not None:
            return self._balance(opening or closing, statement.where)[1]
        matched = _FLOOR.match(floor.text.strip()) if floor is not None else None
        if matched is None:
            raise RejectedFile(
                self.file.name, f"{statement.where}: no currency: neither a :60F: balance nor a :34F: floor limit"
            )
        return matched["currency"]

    def _balance(self, balance: _Field, where: str) -> tuple[Decimal, str]:
        matched = _BALANCE.match(balance.text.strip())
        if matched is None:
            raise RejectedFile(
                self.file.name,
                f"line {balance.line}: :{balance.tag}: {balance.text.strip()!r} is not mark, YYMMDD, currency, amount",
            )
        amount = Decimal(matched["amount"].replace(",", "."))
        return (amount if matched["mark"] == "C" else -amount), matched["currency"]

    def _row(self, line: _Field, details: _Field | None, kind: str, reference: str, number: str, position: int):
        first, _, supplementary = line.text.partition("\n")
        matched = _LINE.match(first.strip())
        if matched is None:
            raise RejectedFile(
                self.file.name,
                f"line {line.line}: :61: {first.strip()!r} is not value date, [entry date], C/D/RC/RD, amount, "
                "type and reference",
            )
        value = Decimal(matched["amount"].replace(",", "."))
        # A reversal of a credit (RC) takes money out, a reversal of a debit (RD) puts it back.
        amount = value if matched["mark"] in ("C", "RD") else -value
        value_date = _date(matched["value"])
        booking_date = _entry_date(matched["entry"], matched["value"]) if matched["entry"] else value_date
        bank = (matched["bank"] or "").strip()
        customer = matched["customer"].strip()
        text = details.text if details is not None else ""
        structured = _structured(text)
        self.rows_out += 1
        extra = {
            "format": kind,
            "statement_reference": reference,
            "statement_number": number,
            "source_line": line.line,
            "mark": matched["mark"],
            "transaction_type": matched["type"],
            "bank_reference": bank or None,
            "customer_reference": customer or None,
            "supplementary_details": supplementary.strip() or None,
            "information": text.strip() or None,
        }
        txn_id = bank if bank and bank.upper() != _NO_REFERENCE else f"{reference}/{number}/{position}"
        return {
            "line_number": self.rows_out,
            "txn_id": txn_id,
            "booking_date": booking_date,
            "value_date": value_date,
            "amount": amount_text(amount),
            "end_to_end_id": structured.get("EREF"),
            "customer_reference": None if customer.upper() == _NO_REFERENCE else customer or None,
            "remittance_information": _remittance(text, structured),
            "counterparty": structured.get("name"),
            "description": " ".join(text.split()) or None,
            "extra": json.dumps({k: v for k, v in extra.items() if v is not None}, sort_keys=True),
        }, amount


def _remittance(text: str, structured: dict[str, str]) -> str | None:
    """The remittance text: in structured :86: the SEPA purpose (`SVWZ+`), or the purpose lines when they carry no
    SEPA keys; never the posting text (`?00`) or the names, which are no reference. Else the whole :86:."""
    if structured:
        return structured.get("SVWZ") or structured.get("purpose")
    return " ".join(text.split()) or None


def _structured(text: str) -> dict[str, str]:
    """German structured :86: text (`?20EREF+…?21…?32name`): the SEPA keys' values and the counterparty."""
    if "?" not in text:
        return {}
    flat = text.replace("\n", "")
    parts = _SUBFIELD.split(flat)
    subfields: dict[str, str] = {}
    for code, value in zip(parts[1::2], parts[2::2], strict=False):
        subfields[code] = subfields.get(code, "") + value
    purpose = "".join([subfields.get(code, "") for code in _PURPOSE])
    found: dict[str, str] = {}
    pieces = _SEPA_KEY.split(purpose)
    for key, value in zip(pieces[1::2], pieces[2::2], strict=False):
        found.setdefault(key, value.strip())
    if not found and purpose.strip():
        found["purpose"] = " ".join(purpose.split())
    name = (subfields.get("32", "") + subfields.get("33", "")).strip()
    if name:
        found["name"] = name
    return found


def _date(yymmdd: str) -> str:
    """A SWIFT date (YYMMDD) as YYYY-MM-DD, in 2000 to 2099; not checked here: validation quarantines a bad one."""
    return f"20{yymmdd[:2]}-{yymmdd[2:4]}-{yymmdd[4:]}"


def _entry_date(mmdd: str, value: str) -> str:
    """The entry date (MMDD) in the value date's year, or the next or previous one across a year end."""
    year, value_month, month = 2000 + int(value[:2]), int(value[2:4]), int(mmdd[:2])
    if value_month == 12 and month == 1:
        year += 1
    elif value_month == 1 and month == 12:
        year -= 1
    return f"{year:04d}-{mmdd[:2]}-{mmdd[2:]}"
