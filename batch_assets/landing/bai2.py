"""BAI2 cash management balance reports: one row per `16` transaction detail, read record by record, with every
control total and record count checked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from batch_assets.landing.rows import ReadRows, amount_text, streamed_statement
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile

EXTENSIONS = ("bai2", "bai")
SOURCES = ("bank",)

REFERENCE_SOURCES = ("customer_reference", "remittance_information")
# ISO 4217 currencies without minor units: their BAI2 amounts are whole units, everyone else's are cents.
WHOLE_UNIT_CURRENCIES = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                                   "VND", "VUV", "XAF", "XOF", "XPF"})  # fmt: skip
NON_MONETARY = "890"
RECORD_CODES = frozenset({"01", "02", "03", "16", "49", "88", "98", "99"})
OPENING_LEDGER, CLOSING_LEDGER = "010", "015"
# A physical line may hold several records, each ended by "/" (moov-io's sample3): split before a record code.
_PACKED = re.compile(r"/\s+(?=(?:01|02|03|16|49|88|98|99),)")
_AMOUNT = re.compile(r"[+-]?[0-9]+\Z")


@dataclass
class _Record:
    code: str
    fields: list[str]
    line: int
    physical: int = 1  # itself and its 88 continuations, as record counts count them


@dataclass
class _Account:
    number: str
    currency: str
    line: int
    opening: Decimal | None = None
    closing: Decimal | None = None
    control: int = 0  # the sum of the amounts of its 03 and 16 records, as written
    records: int = 1
    lines: Decimal = Decimal(0)
    details: int = 0


@dataclass
class _Group:
    as_of: str
    currency: str
    line: int
    control: int = 0
    accounts: int = 0
    records: int = 1
    number: int = 0


@dataclass
class _File:
    identifier: str
    control: int = 0
    details: int = 0
    groups: int = 0
    records: int = 1
    accounts: list = field(default_factory=list)


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
    """The file's rows, read as Polars pulls them; a check that fails rejects the whole file."""
    return streamed_statement(Report(file).rows, REFERENCE_SOURCES)


class Report:
    """One BAI2 file, record by record: 01 file, 02 group, 03 account, 16 details, and their trailers."""

    def __init__(self, file: LandingFile) -> None:
        self.file = file
        self.rows_out = 0

    def rows(self) -> Iterator[dict]:
        report: _File | None = None
        group: _Group | None = None
        account: _Account | None = None
        ended = False
        for record in self._records():
            if ended:
                self._reject(record, "a record after the 99 file trailer")
            code = record.code
            if code == "01":
                if report is not None:
                    self._reject(record, "a second 01 file header")
                report = _File(f"{self._field(record, 0)}:{self._field(record, 4)}", records=record.physical)
                continue
            if report is None:
                self._reject(record, f"a {code} record before the 01 file header")
            report.records += record.physical
            if group is not None:
                group.records += record.physical
            if account is not None:
                account.records += record.physical
            if code == "02":
                if group is not None:
                    self._reject(record, "a 02 group header inside a group (no 98 trailer before it)")
                report.groups += 1
                group = _Group(_date(self._field(record, 3)), self._field(record, 5), record.line, number=report.groups)
                group.records = record.physical
            elif code == "03":
                if group is None or account is not None:
                    self._reject(record, "a 03 account record outside a group, or before the last one's 49 trailer")
                group.accounts += 1
                account = self._account(record, group)
                account.records = record.physical
            elif code == "16":
                if account is None:
                    self._reject(record, "a 16 transaction detail outside an account")
                row = self._detail(record, report, group, account)
                if row is not None:
                    yield row
            elif code == "49":
                if account is None:
                    self._reject(record, "a 49 account trailer without its 03 record")
                self._close_account(record, account)
                group.control += account.control
                account = None
            elif code == "98":
                if group is None or account is not None:
                    self._reject(record, "a 98 group trailer outside a group, or before its last account's 49")
                self._check(record, 0, group.control, "the group's control total (the sum of its 49 totals)")
                self._check(record, 1, group.accounts, "the group's number of accounts")
                self._check(record, 2, group.records, "the group's number of records")
                report.control += group.control
                group = None
            elif code == "99":
                if group is not None:
                    self._reject(record, "a 99 file trailer inside a group (no 98 trailer before it)")
                self._check(record, 0, report.control, "the file's control total (the sum of its 98 totals)")
                self._check(record, 1, report.groups, "the file's number of groups")
                self._check(record, 2, report.records, "the file's number of records")
                ended = True
            else:
                self._reject(record, f"record code {code!r} is not a BAI2 record")
        if report is None:
            raise RejectedFile(self.file.name, "no 01 file header: not a BAI2 file")
        if not ended:
            raise RejectedFile(self.file.name, "no 99 file trailer: the file is cut short")

    # -- records -----------------------------------------------------------------------------------------------

    def _records(self) -> Iterator[_Record]:
        """Logical records: 88 continuations joined to the record they continue, packed records split."""
        pending: _Record | None = None
        for number, text in self._lines():
            for piece in _PACKED.split(text):
                piece = piece.strip()
                if not piece:
                    continue
                code, _, rest = piece.partition(",")
                if code not in RECORD_CODES and pending is not None and pending.code == "16":
                    # A 16 record's text broken across lines with no 88 (moov-io's sample3): the text goes on.
                    pending.fields[-1:] = _continued(pending, piece)
                    continue
                if code == "88":
                    if pending is None:
                        raise RejectedFile(
                            self.file.name, f"line {number}: an 88 continuation with nothing to continue"
                        )
                    pending.fields[-1:] = _continued(pending, rest)
                    pending.physical += 1
                    continue
                if pending is not None:
                    yield pending
                pending = _Record(code, _split(code, rest), number)
        if pending is not None:
            yield pending

    def _lines(self) -> Iterator[tuple[int, str]]:
        with open(self.file.path, "rb") as data:
            for number, raw in enumerate(data, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise RejectedFile(
                        self.file.name,
                        f"line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                    ) from None

    def _account(self, record: _Record, group: _Group) -> _Account:
        number = self._field(record, 0)
        if not number:
            self._reject(record, "the 03 record has no account number")
        currency = self._field(record, 1) or group.currency or "USD"  # BAI2: blank means the group's, then US dollars
        account = _Account(number, currency, record.line)
        items = record.fields[2:]
        position = 0
        while position < len(items):
            if not items[position].strip():
                position += 1  # an empty field between summaries (",,,/" before an 88 continuation)
                continue
            code, amount = items[position].strip(), items[position + 1].strip() if position + 1 < len(items) else ""
            value = self._amount(record, amount, currency) if amount else None
            if amount:
                account.control += int(amount)
            if code == OPENING_LEDGER and value is not None:
                account.opening = value
            elif code == CLOSING_LEDGER and value is not None:
                account.closing = value
            position += 3  # type code, amount, item count; then the funds type and what it brings
            position += 1 + _funds_extras(items, position + 1)
        return account

    def _detail(self, record: _Record, report: _File, group: _Group, account: _Account) -> dict | None:
        fields = [*record.fields[:-1], record.fields[-1].rstrip().removesuffix("/")]  # "/" ends the record
        code, amount_text_ = self._field(record, 0), self._field(record, 1)
        if not code.isdigit() or len(code) != 3:
            self._reject(record, f"type code {code!r} is not three digits")
        if not amount_text_:
            self._reject(record, "the 16 record has no amount")
        if amount_text_.startswith("-"):
            self._reject(record, f"amount {amount_text_!r} has a sign: a detail's sign comes from its type code")
        account.control += int(amount_text_) if _AMOUNT.match(amount_text_) else 0
        value = self._amount(record, amount_text_, account.currency)
        position = 2
        funds = fields[position].strip() if position < len(fields) else ""
        extras = _funds_extras(fields, position + 1)
        value_date = _date(fields[position + 1].strip()) if funds == "V" and position + 1 < len(fields) else None
        position += 1 + extras
        bank = fields[position].strip() if position < len(fields) else ""
        customer = fields[position + 1].strip() if position + 1 < len(fields) else ""
        text = ",".join(fields[position + 2 :]).strip() if position + 2 < len(fields) else ""
        account.details += 1
        report.details += 1
        if code == NON_MONETARY:
            return None  # information only: no money moved
        number = int(code)
        if 100 <= number <= 399:
            signed = value
        elif 400 <= number <= 699:
            signed = -value
        else:
            self._reject(record, f"type code {code} is neither a credit (100 to 399) nor a debit (400 to 699)")
        account.lines += signed
        self.rows_out += 1
        derived = f"{report.identifier}/{group.as_of}/{report.details}"  # the detail's position in the file
        extra = {
            "format": "BAI2",
            "file_id": report.identifier,
            "type_code": code,
            "funds_type": funds or None,
            "bank_reference": bank or None,
            "customer_reference": customer or None,
            "source_line": record.line,
        }
        return {
            "line_number": self.rows_out,
            "txn_id": bank or derived,
            "account_id": account.number,
            "booking_date": group.as_of,
            "value_date": value_date,
            "amount": amount_text(signed),
            "currency": account.currency,
            "customer_reference": customer or None,
            "remittance_information": text or None,
            "counterparty": None,
            "description": text or None,
            "extra": json.dumps({k: v for k, v in extra.items() if v is not None}, sort_keys=True),
        }

    def _close_account(self, record: _Record, account: _Account) -> None:
        self._check(record, 0, account.control, "the account's control total (the sum of its 03 and 16 amounts)")
        self._check(record, 1, account.records, "the account's number of records")
        if account.opening is not None and account.closing is not None:
            if account.opening + account.lines != account.closing:
                self._reject(
                    record,
                    f"account {account.number}: statement does not balance: opening ledger {account.opening} "
                    f"{account.currency} + details {account.lines} = {account.opening + account.lines}, but the "
                    f"closing ledger is {account.closing}",
                )

    # -- fields ------------------------------------------------------------------------------------------------

    def _field(self, record: _Record, index: int) -> str:
        return record.fields[index].strip().rstrip("/").strip() if index < len(record.fields) else ""

    def _check(self, record: _Record, index: int, counted: int, what: str) -> None:
        given = self._field(record, index)
        if not given:
            return  # a blank figure is not given (some banks leave trailer amounts blank)
        if not _AMOUNT.match(given) or int(given) != counted:
            self._reject(record, f"{what} is {given}, but the records add up to {counted}")

    def _amount(self, record: _Record, text: str, currency: str) -> Decimal:
        if not _AMOUNT.match(text):
            self._reject(record, f"amount {text!r} is not a whole number of minor units")
        units = Decimal(int(text))
        return units if currency in WHOLE_UNIT_CURRENCIES else units.scaleb(-2)

    def _reject(self, record: _Record, reason: str) -> None:
        raise RejectedFile(self.file.name, f"line {record.line}: record {record.code}: {reason}")


def _split(code: str, rest: str) -> list[str]:
    """A record's fields; a 16 record's text (its last field) may hold commas, which stay in it."""
    rest = rest.rstrip()
    if code != "16" and rest.endswith("/"):
        rest = rest[:-1]
    return rest.split(",")


def _continued(record: _Record, rest: str) -> list[str]:
    """The last field of `record` followed by an 88 continuation's fields. In a 16 record whose text has begun,
    the continuation is more of that text; otherwise its fields are the record's next fields."""
    last, more = record.fields[-1], rest.rstrip().removesuffix("/").split(",")
    if record.code == "16":
        text_at = 3 + _funds_extras(record.fields, 3) + 2  # type, amount, funds and extras, bank and customer refs
        if len(record.fields) > text_at:
            return [(last.rstrip().removesuffix("/").rstrip() + " " + ",".join(more)).strip()]
        return [last.rstrip().removesuffix("/"), *more]
    return [last, *more]


def _funds_extras(fields: list[str], at: int) -> int:
    """How many fields follow a funds type code at `at - 1`: S has three amounts, V a date and a time, D a count
    and that many pairs of days and amounts."""
    funds = fields[at - 1].strip() if 0 <= at - 1 < len(fields) else ""
    if funds == "S":
        return 3
    if funds == "V":
        return 2
    if funds == "D":
        count = fields[at].strip() if at < len(fields) else "0"
        return 1 + 2 * (int(count) if count.isdigit() else 0)
    return 0


def _date(yymmdd: str) -> str | None:
    return f"20{yymmdd[:2]}-{yymmdd[2:4]}-{yymmdd[4:6]}" if len(yymmdd) == 6 and yymmdd.isdigit() else None
