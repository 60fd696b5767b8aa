"""Reference normalisation: the one rule both sides' references are compared by."""

from __future__ import annotations

import polars as pl

# After upper-casing and stripping, these say "no reference" and are treated as null.
NULL_REFERENCES: tuple[str, ...] = ("", "NONREF", "NOTPROVIDED")


def normalise_reference(reference: pl.Expr) -> pl.Expr:
    """Upper-case, keep only A-Z and 0-9; empty, NONREF and NOTPROVIDED become null."""
    cleaned = reference.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")
    return pl.when(~cleaned.is_in(NULL_REFERENCES)).then(cleaned)
