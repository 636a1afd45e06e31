"""Telemetry ingest: parse, validate, deduplicate, quarantine and load sealed files."""
