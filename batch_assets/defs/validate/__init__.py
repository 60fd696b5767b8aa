"""Validate: raw rows judged into staging or quarantine, with the checks of that stage."""
