"""Alerting: sensors that raise alerts on failures, SLA breaches and bad days."""
