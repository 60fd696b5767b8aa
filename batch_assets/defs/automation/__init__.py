"""Automation: the daily job, its schedule and the new-file sensor."""
