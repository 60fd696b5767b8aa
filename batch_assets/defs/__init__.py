"""Dagster definitions, one folder per domain: ingest, validate, reconcile, automation and alerting."""
