"""Telemetry ingest: stage, parse and validate, deduplicate, quarantine and load sealed files."""
