"""The fixed word lists of the sample data: currencies, names, descriptions and the broken values used for bad rows."""

from __future__ import annotations

from datetime import date

# ISO code, share of accounts, typical size against EUR, minor units per smallest amount step.
# JPY has no minor unit in practice, so its amounts step by 100 "cents" and print as `1234.00`.
CURRENCIES: tuple[str, ...] = ("EUR", "USD", "GBP", "CHF", "JPY", "SEK", "NOK", "DKK", "PLN")
CURRENCY_SHARE: tuple[float, ...] = (0.42, 0.22, 0.12, 0.07, 0.06, 0.04, 0.03, 0.02, 0.02)
CURRENCY_SCALE: tuple[float, ...] = (1.0, 1.1, 0.85, 0.95, 150.0, 11.0, 11.0, 7.5, 4.3)
CURRENCY_STEP_CENTS: tuple[int, ...] = (1, 1, 1, 1, 100, 1, 1, 1, 1)

_STEMS = (
    "Acme",
    "Nordwind",
    "Blue Harbor",
    "Keller",
    "Solaris",
    "Vega",
    "Orion",
    "Atlas",
    "Lumen",
    "Pioneer",
    "Alpine",
    "Baltic",
    "Cobalt",
    "Delta",
    "Evergreen",
    "Falcon",
    "Granite",
    "Horizon",
    "Iris",
    "Juniper",
)
_FORMS = ("GmbH", "Ltd", "AG", "SA", "BV", "Inc.", "SARL", "AB", "& Co. KG", "LLC")
# A few names with a comma or non-ASCII letters, so that CSV quoting and UTF-8 are exercised.
COUNTERPARTIES: tuple[str, ...] = tuple(f"{stem} {form}" for stem in _STEMS for form in _FORMS) + (
    "Müller & Söhne GmbH",
    "Smith, Jones & Partners LLP",
    "Société Générale Équipements SA",
    "Østergaard, Holm ApS",
)
# Banks print the remitter in capitals.
BANK_COUNTERPARTIES: tuple[str, ...] = tuple(name.upper() for name in COUNTERPARTIES)
ACQUIRERS: tuple[str, ...] = (
    "ADYEN N.V.",
    "STRIPE PAYMENTS EUROPE LTD",
    "WORLDLINE SA",
    "PAYPAL (EUROPE) S.A R.L.",
)

LEDGER_DESCRIPTIONS: tuple[str, ...] = (
    "Customer payment",
    "Invoice settlement",
    "Supplier payment",
    "Customer refund",
    "Card sale",
    "Payroll",
    "Direct debit",
)
LEDGER_CREDIT = (0, 1)
LEDGER_DEBIT = (2, 3, 5, 6)
LEDGER_CARD = 4

BANK_DESCRIPTIONS: tuple[str, ...] = (
    "SEPA CREDIT TRANSFER",
    "INCOMING SWIFT PAYMENT",
    "SEPA DIRECT DEBIT",
    "OUTGOING TRANSFER",
    "CARD SETTLEMENT",
    "ACCOUNT MAINTENANCE FEE",
    "INTEREST",
    "CHARGES",
)
BANK_CREDIT = (0, 1)
BANK_DEBIT = (2, 3)
BANK_CARD = 4
BANK_ONLY = (5, 6, 7)

# Broken values for quarantine rows. Each is wrong under the contract and under any sane lenient
# parser, so that no reading of the contract can stage them.
BAD_AMOUNTS: tuple[str, ...] = ("12.345", "1,000.00", "abc", "12.3.4", "0.001", "EUR 15.00")
BAD_CURRENCIES: tuple[str, ...] = ("EU", "EURO", "E1R", "US$", "GBPP", "12")


def bad_dates(business_date: date) -> tuple[str, ...]:
    """Date-shaped text that is no calendar date, in the business date's year."""
    year = business_date.year
    return (f"{year}-02-30", f"{year}-13-01", f"{year}-04-31", f"{year}-00-10", "not a date")
