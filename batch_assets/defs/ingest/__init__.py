"""Ingest: landing files into the raw tables and the file log."""
