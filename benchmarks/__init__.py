"""The `make bench` harness: the daily pipeline timed end to end, per stage and against the ingest floor."""
