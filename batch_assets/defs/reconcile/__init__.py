"""Reconcile: matching, exceptions and the summary, with the checks of the contract's invariants."""
