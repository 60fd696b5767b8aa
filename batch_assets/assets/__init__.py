"""The asset graph, one module per stage: ingest, validate (and, later, match, exceptions, summary)."""
