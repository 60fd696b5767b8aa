"""ISO 20022 camt.052, camt.053 and camt.054 bank statements: one row per booked entry, batches expanded, read
as a stream of XML elements so that memory does not grow with the file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _json_text

from lxml import etree

from batch_assets.landing.rows import ReadRows, amount_text, streamed_statement
from batch_assets.landing.zone import FileDigest, LandingFile, RejectedFile

EXTENSIONS = ("xml",)
SOURCES = ("bank",)

# The message's root element below Document, what it is called, and its statements' element.
MESSAGES = {
    "BkToCstmrAcctRpt": ("camt.052", "Rpt"),
    "BkToCstmrStmt": ("camt.053", "Stmt"),
    "BkToCstmrDbtCdtNtfctn": ("camt.054", "Ntfctn"),
    # version 001.01 named its roots after the version
    "BkToCstmrAcctRptV01": ("camt.052", "Rpt"),
    "BkToCstmrStmtV01": ("camt.053", "Stmt"),
    "BkToCstmrDbtCdtNtfctnV01": ("camt.054", "Ntfctn"),
}
# Entry statuses (ExternalEntryStatus1Code): only booked entries are staged.
STATUSES = frozenset({"BOOK", "PDNG", "INFO", "FUTR"})
# Where the account's identifier is, in order: version 001.01 also had BBAN and proprietary identifiers.
ACCOUNT_IDS = ("IBAN", "Othr/Id", "BBAN", "PrtryAcct/Id")
OPENING_BALANCES = ("OPBD", "PRCD")  # opening booked; or the previous day's closing booked
CLOSING_BALANCES = ("CLBD",)
# Where a row's reference comes from, in order of preference: the first whose normalised form is not null.
REFERENCE_SOURCES = ("end_to_end_id", "creditor_reference", "remittance_information")
# What a row takes from an entry and from a detail, each read in one XPath evaluation (libxml2's, in C): a find
# per field from Python cost five times as much.
ENTRY_FIELDS = {
    "status": "Sts",  # the code itself, or (from version 9) its Cd or Prtry child
    "booking_date": "BookgDt/Dt",
    "booking_time": "BookgDt/DtTm",
    "value_date": "ValDt/Dt",
    "value_time": "ValDt/DtTm",
    "bank_reference": "AcctSvcrRef",
    "entry_reference": "NtryRef",
    "reversal": "RvslInd",
    "domain_code": "BkTxCd/Domn/Cd",
    "proprietary_code": "BkTxCd/Prtry/Cd",
    "entry_information": "AddtlNtryInf",
}
DETAIL_FIELDS = {
    "end_to_end_id": "Refs/EndToEndId",
    "creditor_reference": "RmtInf/Strd/CdtrRefInf/Ref",
    "remittance_information": "RmtInf/Ustrd",
    "Dbtr": "RltdPties/Dbtr/Nm",
    "Dbtr_party": "RltdPties/Dbtr/Pty/Nm",
    "Cdtr": "RltdPties/Cdtr/Nm",
    "Cdtr_party": "RltdPties/Cdtr/Pty/Nm",
    "transaction_information": "AddtlTxInf",
    "transaction_id": "Refs/TxId",
    "uetr": "Refs/UETR",
    "detail_reference": "Refs/AcctSvcrRef",
}
# What the quick reading of an entry takes besides its fields, and how it takes each (_STRING when not named).
_ENTRY_MORE = {"amount": "Amt", "mark": "CdtDbtInd", "details": "NtryDtls/TxDtls"}
# Between fields: a private-use character. Text may hold it (nothing forbids it), so a split that does not give
# one value per field falls back to a find per field.
_SEPARATOR = "\ue000"
_NAMESPACE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.05[234]\.001\.[0-9]{2}\Z")
# ActiveOrHistoricCurrencyAndAmount: digits, at most one point; never a sign (the mark gives it), never an exponent.
_AMOUNT = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)\Z")
# The usual amount, whole units and cents: its sum is kept in integer cents, its text written without Decimal. At
# most 18 digits (the schema's limit), so that int() never meets Python's limit on digits.
_CENTS = re.compile(r"([0-9]{1,18})\.([0-9]{2})\Z")
# What a row gives Polars, in this order; rows.py derives the reference from the last three.
COLUMNS = (
    "line_number", "txn_id", "amount", "account_id", "booking_date", "value_date", "currency", "counterparty",
    "description", "extra", *REFERENCE_SOURCES,
)  # fmt: skip
# How the quick reading of an entry takes an element: its text as XPath's string() gives it, its text as
# findtext gives it, the first such element itself, or every such element.
_STRING, _FLAT, _FIRST, _EVERY = range(4)
_UNSET = object()
_ENTRY_KINDS = {"amount": _FIRST, "mark": _FLAT, "details": _EVERY}


def read(file: LandingFile, digest: FileDigest) -> ReadRows:
    """The file's rows, read as Polars pulls them; a statement that fails a check rejects the whole file."""
    return streamed_statement(Statements(file).rows, REFERENCE_SOURCES, columns=COLUMNS)


@dataclass
class _Statement:
    """What a statement says before its entries: its id, account, path, and opening and closing balances."""

    id: str
    account: str | None
    path: str
    opening: tuple[Decimal, str] | None = None
    closing: tuple[Decimal, str] | None = None
    closing_date: str | None = None
    booked: dict[str, Decimal] = field(default_factory=dict)  # signed sum of booked entries per currency
    cents: dict[str, int] = field(default_factory=dict)  # the same, of the entries read quickly, in cents
    entries: int = 0


class Statements:
    """One camt file, element by element: each statement's header, then its entries as they end."""

    def __init__(self, file: LandingFile) -> None:
        self.file = file
        self.message = ""
        self.ns = ""
        self.rows_out = 0
        self._paths: dict[str, str] = {}
        self._readers: dict[str, etree.XPath] = {}
        self._entry_steps: dict = {}
        self._detail_steps: dict = {}

    def rows(self) -> Iterator[tuple]:
        statement: _Statement | None = None
        statement_element = None  # the statement being read: an entry right below it is one of its entries
        statements = 0
        names: dict[str, str] = {}
        events = etree.iterparse(
            str(self.file.path),
            events=("start", "end"),
            tag=("{*}Document", *(f"{{*}}{name}" for name in MESSAGES), "{*}Stmt", "{*}Rpt", "{*}Ntfctn", "{*}Ntry"),
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
            remove_comments=True,
            remove_pis=True,
        )  # fmt: skip
        try:
            for event, element in events:
                tag = element.tag
                name = names.get(tag)
                if name is None:
                    name = names[tag] = etree.QName(element).localname
                if event == "start":
                    if name == "Document":
                        self.ns = etree.QName(element).namespace or ""
                        if not _NAMESPACE.match(self.ns):
                            self._reject(
                                element, "Document", f"namespace {self.ns!r} is not a camt.052, 053 or 054 one"
                            )
                        self._entry_steps = _steps(self.ns, {**ENTRY_FIELDS, **_ENTRY_MORE}, _ENTRY_KINDS)
                        self._detail_steps = _steps(self.ns, DETAIL_FIELDS, {})
                    elif name in MESSAGES:
                        self.message = name
                    elif self._is_statement(element, name):
                        statements += 1
                        statement = None  # its header is read when its first entry, or its end, is reached
                        statement_element = element
                    continue
                if name == "Ntry":
                    parent = element.getparent()
                    if parent is None or parent is not statement_element:
                        continue
                    if statement is None:
                        statement = self._statement(parent, statements)
                    statement.entries += 1
                    row = self._quick_entry(element, statement)
                    if row is None:
                        yield from self._entry(element, statement)
                    elif row:
                        yield row
                    element.clear(keep_tail=False)
                    parent.remove(element)
                elif element is statement_element:
                    if statement is None:
                        statement = self._statement(element, statements)
                    self._check_balance(statement)
                    statement = None
                    statement_element = None
                    element.clear(keep_tail=False)
                    parent = element.getparent()
                    if parent is not None:
                        parent.remove(element)
        except etree.XMLSyntaxError as error:
            line = f"line {error.lineno}: " if error.lineno else ""
            raise RejectedFile(self.file.name, f"{line}not well-formed XML ({error.msg})") from None
        if not self.message:
            raise RejectedFile(
                self.file.name,
                f"not a camt.052, camt.053 or camt.054 message: no {', '.join(MESSAGES)} element under Document",
            )
        if not statements:
            kind = MESSAGES[self.message]
            raise RejectedFile(self.file.name, f"Document/{self.message}: a {kind[0]} message with no {kind[1]}")

    def _is_statement(self, element, name: str | None = None) -> bool:
        """A statement (report, notification) of the message: the element right below the message's root."""
        if element is None or not self.message:
            return False
        parent = element.getparent()
        local = name or etree.QName(element).localname
        return (
            local == MESSAGES[self.message][1] and parent is not None and etree.QName(parent).localname == self.message
        )

    # -- one statement's header and balances ------------------------------------------------------------------

    def _q(self, path: str) -> str:
        """An element path in this file's namespace: 'Acct/Id/IBAN' becomes '{ns}Acct/{ns}Id/{ns}IBAN'."""
        found = self._paths.get(path)
        if found is None:
            found = "/".join(f"{{{self.ns}}}{part}" if self.ns else part for part in path.split("/"))
            self._paths[path] = found
        return found

    def _fields(self, element, fields: dict[str, str]) -> dict[str, str | None]:
        """Several fields of `element` at once, each its first match's text, stripped; None where absent or empty."""
        key = next(iter(fields))
        reader = self._readers.get(key)
        if reader is None:
            parts = [f"string({'/'.join(f'c:{step}' for step in path.split('/'))})" for path in fields.values()]
            separated = f", '{_SEPARATOR}', ".join(parts)
            reader = etree.XPath(f"concat({separated})", namespaces={"c": self.ns})
            self._readers[key] = reader
        values = reader(element).split(_SEPARATOR)
        if len(values) != len(fields):
            return {name: self._text(element, path) for name, path in fields.items()}
        return {name: value.strip() or None for name, value in zip(fields, values, strict=True)}

    def _text(self, element, path: str) -> str | None:
        if element is None:
            return None
        text = element.findtext(self._q(path))
        return text.strip() if text is not None and text.strip() else None

    def _statement(self, element, index: int) -> _Statement:
        kind = MESSAGES[self.message][1]
        path = f"Document/{self.message}/{kind}[{index}]"
        identifier = self._text(element, "Id")
        if identifier is None:
            self._reject(element, f"{path}/Id", "the statement has no Id")
        account = next(filter(None, (self._text(element, f"Acct/Id/{path}") for path in ACCOUNT_IDS)), None)
        statement = _Statement(identifier, account, path)
        for number, balance in enumerate(element.iterfind(self._q("Bal")), start=1):
            code = self._text(balance, "Tp/CdOrPrtry/Cd")
            if code in OPENING_BALANCES or code in CLOSING_BALANCES:
                where = f"{path}/Bal[{number}]"
                figure = (self._signed(balance, where), self._currency(balance, where))
                if code in OPENING_BALANCES:
                    statement.opening = statement.opening or figure
                else:
                    if statement.closing is None:
                        statement.closing = figure
                        statement.closing_date = _date_part(
                            self._text(balance, "Dt/Dt") or self._text(balance, "Dt/DtTm")
                        )
        return statement

    def _check_balance(self, statement: _Statement) -> None:
        """Opening plus the booked entries equals closing, where the statement gives both balances."""
        if statement.opening is None or statement.closing is None:
            return
        booked = dict(statement.booked)
        for currency, cents in statement.cents.items():
            # Decimal(0) plus amounts of two decimals: the same figure, and exponent, as their Decimal sum.
            booked[currency] = booked.get(currency, Decimal(0)) + Decimal(cents).scaleb(-2)
        (opening, currency), (closing, closing_currency) = statement.opening, statement.closing
        if closing_currency != currency:
            raise RejectedFile(
                self.file.name,
                f"{statement.path} ({statement.id}): statement does not balance: opening balance in {currency}, "
                f"closing balance in {closing_currency}",
            )
        foreign = sorted(set(booked) - {currency})
        if foreign:
            raise RejectedFile(
                self.file.name,
                f"{statement.path} ({statement.id}): statement does not balance: booked entries in "
                f"{', '.join(foreign)} on a statement whose balances are in {currency}",
            )
        lines = booked.get(currency, Decimal(0))
        if opening + lines != closing:
            raise RejectedFile(
                self.file.name,
                f"{statement.path} ({statement.id}): statement does not balance: opening {opening} {currency} + "
                f"booked entries {lines} = {opening + lines}, but the closing balance is {closing}",
            )

    # -- one entry, and its details --------------------------------------------------------------------------

    def _quick_entry(self, entry, statement: _Statement) -> tuple | None:
        """The usual entry read in one walk of its elements: its row, or () when it is not booked. None when it is
        anything else (a batch, an amount other than units and cents, a check that fails, text that XPath would
        read differently): `_entry` reads that one, with its checks and their messages."""
        values = [_UNSET] * len(self._entry_steps["slots"])
        values[-1] = []
        if not _gather(entry, self._entry_steps["tags"], values):
            return None
        *texts, amount, mark, details = values
        mark = mark.strip() if isinstance(mark, str) else None
        if len(details) > 1 or amount is _UNSET or len(amount) or mark not in ("CRDT", "DBIT"):
            return None
        cents = _CENTS.match((amount.text or "").strip())
        currency = amount.get("Ccy")
        if cents is None or not currency:
            return None
        fields = _stripped(texts)
        if fields is _UNSET:
            return None
        (status, booking_date, booking_time, value_date, value_time, bank_reference, entry_reference, reversal,
         domain_code, proprietary_code, entry_information) = fields  # fmt: skip
        if status is None and MESSAGES[self.message][0] == "camt.053":
            status = "BOOK"
        if status not in STATUSES:
            return None
        found = [None] * len(DETAIL_FIELDS)
        if details:
            found = [_UNSET] * len(DETAIL_FIELDS)
            if not _gather(details[0], self._detail_steps["tags"], found) or (found := _stripped(found)) is _UNSET:
                return None
        if status != "BOOK":
            return ()
        debit = mark == "DBIT"
        units, hundredths = int(cents[1]), cents[2]
        signed = units * 100 + int(hundredths)
        statement.cents[currency] = statement.cents.get(currency, 0) + (-signed if debit else signed)
        (end_to_end_id, creditor_reference, remittance_information, debtor, debtor_party, creditor, creditor_party,
         transaction_information, transaction_id, uetr, detail_reference) = found  # fmt: skip
        self.rows_out += 1
        # The parts of json.dumps(extra, sort_keys=True), in its key order; empty values left out as there.
        code = domain_code or proprietary_code
        line = entry.sourceline
        extra = "{" + ", ".join(filter(None, (
            code and '"bank_transaction_code": ' + _json_text(code),
            detail_reference and '"detail_reference": ' + _json_text(detail_reference),
            '"element": ' + _json_text(f"{statement.path}/Ntry[{statement.entries}]"),
            entry_reference and '"entry_reference": ' + _json_text(entry_reference),
            '"format": ' + _json_text(self.ns.rsplit(":", 1)[-1] or MESSAGES[self.message][0]),
            '"reversal": true' if reversal in ("true", "1") else '"reversal": false',
            line is not None and f'"source_line": {line}',
            '"statement_id": ' + _json_text(statement.id),
            transaction_id and '"transaction_id": ' + _json_text(transaction_id),
            uetr and '"uetr": ' + _json_text(uetr),
        ))) + "}"  # fmt: skip
        # A debit of zero is zero, as Decimal negates it (not -0.00); its counterparty is the debtor's.
        credit = not debit or signed == 0
        return (
            self.rows_out,
            bank_reference or f"{statement.id}/{statement.entries}",
            f"{'' if credit else '-'}{units}.{hundredths}",
            statement.account,
            _date_part(booking_date or booking_time) or statement.closing_date,
            _date_part(value_date or value_time),
            currency,
            (debtor or debtor_party) if credit else (creditor or creditor_party),
            transaction_information or entry_information,
            extra,
            end_to_end_id,
            creditor_reference,
            remittance_information,
        )

    def _entry(self, entry, statement: _Statement) -> Iterator[tuple]:
        path = f"{statement.path}/Ntry[{statement.entries}]"
        fields = self._fields(entry, ENTRY_FIELDS)
        status = fields["status"]
        if status is None and MESSAGES[self.message][0] == "camt.053":
            status = "BOOK"  # an end-of-day statement reports booked entries; real files omit the status
        if status not in STATUSES:
            self._reject(entry, f"{path}/Sts", f"entry status {status!r} is none of {', '.join(sorted(STATUSES))}")
        amount = self._signed(entry, path)
        currency = self._currency(entry, path)
        details = list(entry.iterfind(self._q("NtryDtls/TxDtls")))
        # A batch is split only when its details carry amounts; details without any describe the entry.
        split = len(details) > 1 and any(self._has_amount(detail) for detail in details)
        amounts = self._batch_amounts(details, amount, currency, path) if split else []
        if status != "BOOK":
            return
        statement.booked[currency] = statement.booked.get(currency, Decimal(0)) + amount
        shared = {
            "account_id": statement.account,
            # Without a booking date, an end-of-day statement's entry is booked on its closing balance's date.
            "booking_date": _date_part(fields["booking_date"] or fields["booking_time"]) or statement.closing_date,
            "value_date": _date_part(fields["value_date"] or fields["value_time"]),
            "currency": currency,
        }
        entry_id = fields["bank_reference"] or f"{statement.id}/{statement.entries}"
        extra = {
            "format": self.ns.rsplit(":", 1)[-1] or MESSAGES[self.message][0],
            "statement_id": statement.id,
            "entry_reference": fields["entry_reference"],
            "reversal": fields["reversal"] in ("true", "1"),
            "bank_transaction_code": fields["domain_code"] or fields["proprietary_code"],
        }
        if not split:
            detail = details[0] if details else None
            yield self._row(entry, detail, path, amount, entry_id, shared, extra, fields["entry_information"])
            return
        for number, (detail, signed) in enumerate(zip(details, amounts, strict=True), start=1):
            where = f"{path}/NtryDtls/TxDtls[{number}]"
            yield self._row(
                entry, detail, where, signed, None, shared, {**extra, "batch_entry": entry_id},
                fields["entry_information"], f"{entry_id}/{number}",
            )  # fmt: skip

    def _row(
        self, entry, detail, path: str, amount: Decimal, txn_id: str | None, shared: dict, extra: dict,
        entry_information: str | None, derived_id: str | None = None,
    ) -> tuple:  # fmt: skip
        """One staged row: an entry with at most one detail, or one detail of a batch (`path` names which); a
        detail's own bank reference, else `derived_id`, is a batch detail's txn_id."""
        self.rows_out += 1
        found = dict.fromkeys(DETAIL_FIELDS) if detail is None else self._fields(detail, DETAIL_FIELDS)
        party = "Dbtr" if amount >= 0 else "Cdtr"
        more = {
            "element": path,
            "source_line": (detail if "/TxDtls[" in path else entry).sourceline,
            "transaction_id": found["transaction_id"],
            "uetr": found["uetr"],
            "detail_reference": found["detail_reference"],
        }
        row = {
            "line_number": self.rows_out,
            "txn_id": txn_id or found["detail_reference"] or derived_id,
            "amount": amount_text(amount),
            **shared,
            "end_to_end_id": found["end_to_end_id"],
            "creditor_reference": found["creditor_reference"],
            "remittance_information": found["remittance_information"],
            "counterparty": found[party] or found[f"{party}_party"],
            "description": found["transaction_information"] or entry_information,
            "extra": json.dumps({k: v for k, v in {**extra, **more}.items() if v not in (None, "")}, sort_keys=True),
        }
        return tuple(row[name] for name in COLUMNS)

    def _batch_amounts(self, details: list, amount: Decimal, currency: str, path: str) -> list[Decimal]:
        """Each detail's signed amount, checked to be in the entry's currency and to sum to the entry."""
        amounts = []
        for number, detail in enumerate(details, start=1):
            where = f"{path}/NtryDtls/TxDtls[{number}]"
            amounts.append(self._detail_amount(detail, where, amount))
            own = self._detail_currency(detail)
            if own is not None and own != currency:
                self._reject(detail, where, f"the detail is in {own} but its entry is in {currency}")
        if (total := sum(amounts, Decimal(0))) != amount:
            self._reject(
                details[0].getparent().getparent(),
                path,
                f"the batch's {len(details)} details sum to {total} but the entry is {amount}",
            )
        return amounts

    def _detail_amount(self, detail, where: str, entry_amount: Decimal) -> Decimal:
        """A detail's signed amount: its own amount (Amt, or AmtDtls/TxAmt/Amt in version 2) and its own mark, or
        the entry's mark when it has none."""
        own = detail.find(self._q("Amt"))
        path = f"{where}/Amt"
        if own is None:
            own, path = detail.find(self._q("AmtDtls/TxAmt/Amt")), f"{where}/AmtDtls/TxAmt/Amt"
        if own is None:
            self._reject(detail, where, "a detail of a batch has no amount")
        value = _decimal(own.text)
        if value is None:
            self._reject(own, path, f"{(own.text or '').strip()!r} is not an amount (digits, one point)")
        mark = self._text(detail, "CdtDbtInd")
        if mark is None:
            return value if entry_amount >= 0 else -value
        return self._apply_mark(detail, f"{where}/CdtDbtInd", value, mark)

    def _has_amount(self, detail) -> bool:
        return detail.find(self._q("Amt")) is not None or detail.find(self._q("AmtDtls/TxAmt/Amt")) is not None

    def _detail_currency(self, detail) -> str | None:
        own = detail.find(self._q("Amt"))
        if own is None:
            own = detail.find(self._q("AmtDtls/TxAmt/Amt"))
        return None if own is None else own.get("Ccy")

    def _signed(self, element, path: str) -> Decimal:
        amount = element.find(self._q("Amt"))
        if amount is None:
            self._reject(element, path, "no Amt")
        value = _decimal(amount.text)
        if value is None:
            self._reject(amount, f"{path}/Amt", f"{(amount.text or '').strip()!r} is not an amount (digits, one point)")
        mark = self._text(element, "CdtDbtInd")
        if mark is None and etree.QName(element).localname == "Bal":
            mark = "CRDT"  # a balance with no mark is not negative (real statements omit it)
        return self._apply_mark(element, f"{path}/CdtDbtInd", value, mark)

    def _apply_mark(self, element, path: str, value: Decimal, mark: str | None) -> Decimal:
        # A reversal is marked as the direction of the reversing entry itself (ISO 20022: CRDT with RvslInd true
        # reverses a debit), so the mark alone gives the sign, and a reversal has the opposite sign of what it
        # reverses.
        if mark == "CRDT":
            return value
        if mark == "DBIT":
            return -value
        self._reject(element, path, f"credit/debit mark {mark!r} is neither CRDT nor DBIT")
        raise AssertionError  # unreachable: _reject raises

    def _currency(self, element, path: str) -> str:
        currency = element.find(self._q("Amt")).get("Ccy")
        if not currency:
            self._reject(element, f"{path}/Amt", "the amount has no Ccy")
        return currency

    def _reject(self, element, path: str, reason: str) -> None:
        line = getattr(element, "sourceline", None)
        where = f"line {line}, " if line else ""
        raise RejectedFile(self.file.name, f"{where}{path}: {reason}")


def _steps(ns: str, fields: dict[str, str], kinds: dict[str, int]) -> dict:
    """The element paths of `fields` as a tree of tags for `_gather`: each tag's (slot, kind, the tags below)."""
    tags: dict = {}
    for slot, (name, path) in enumerate(fields.items()):
        *parts, last = [f"{{{ns}}}{part}" if ns else part for part in path.split("/")]
        node = tags
        for part in parts:
            node = node.setdefault(part, (None, None, {}))[2]
        node[last] = (slot, kinds.get(name, _STRING), None)
    return {"tags": tags, "slots": list(fields)}


def _gather(parent, tags: dict, values: list) -> bool:
    """Walk `parent`'s elements along `tags`, filling each slot from its first match in document order (as
    XPath's first match); False when an element holds what the quick reading does not (mixed content, entities)."""
    for child in parent:
        step = tags.get(child.tag)
        if step is None:
            continue
        slot, kind, below = step
        if below is not None:
            if not _gather(child, below, values):
                return False
        elif kind == _EVERY:
            values[slot].append(child)
        elif values[slot] is _UNSET:
            if kind == _FIRST:
                values[slot] = child
            elif not len(child):
                values[slot] = child.text
            elif kind == _FLAT or len(child) > 1 or len(child[0]) or not isinstance(child[0].tag, str):
                return False
            else:
                # XPath's string(): all the text below, as that of a code in its own element (Sts/Cd).
                values[slot] = f"{child.text or ''}{child[0].text or ''}{child[0].tail or ''}"
    return True


def _stripped(texts: list):
    """Each text stripped, None where absent or empty; _UNSET where one holds the separator, where the XPath
    reading falls back to findtext and so reads it otherwise."""
    out = []
    for text in texts:
        if text is _UNSET or text is None:
            out.append(None)
        elif _SEPARATOR in text:
            return _UNSET
        else:
            out.append(text.strip() or None)
    return out


def _decimal(text: str | None) -> Decimal | None:
    """A camt amount as an exact decimal, or None when the text is not one."""
    text = (text or "").strip()
    return Decimal(text) if _AMOUNT.match(text) else None


def _date_part(text: str | None) -> str | None:
    """A camt date, or the date of a date-time (2024-04-03T10:00:00.000000000+03:00)."""
    return text[:10] if text else None
