"""Pure Polars transforms: all the reconciliation domain logic, with no Dagster imports."""
