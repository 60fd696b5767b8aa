"""batch_assets: a Dagster code location that reconciles a ledger against bank statements, day by day."""
