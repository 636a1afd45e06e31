"""Dagster wiring: assets, checks, sensors and resources over the plain functions of ingest/ and
models/. No business logic lives here."""
