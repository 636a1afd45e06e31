"""The tables the data health page shows, read from the warehouse: what ingest did with each
file, what it rejected and why, duplicates per source, freshness and the latest checks.

The dashboards never open the warehouse, so the pipeline publishes these tables as Parquet next
to the marts (pipelines/health_assets.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from creator_econ.settings import Settings
from models.publish import HEALTH_DIR, publish_one
from quality.freshness import freshness_facts
from quality.outcomes import latest_check_results
from warehouse.bookkeeping import INGEST_LOG, QUARANTINE
from warehouse.registry import ensure_warehouse_schema

SAMPLES_PER_REASON = 3  # quarantined lines kept per reason for the health page
SAMPLE_CHARS = 2000  # a sample line is cut to this many characters (its length is kept)
# A sealed file is named <source>-<sequence>.jsonl[.gz] (docs/telemetry.md).
_SOURCE_SQL = "replaceRegexpOne(_file, '-[0-9]+\\\\.jsonl(\\\\.gz)?$', '')"


def ingest_log_table(client: Client) -> pa.Table:
    """One row per ingested file, newest first, with whether its line counts balance."""
    return client.query_arrow(
        f"""SELECT _file AS file, {_SOURCE_SQL} AS source, lines_read, loaded, duplicates,
  quarantined, conflicting, bytes, ingested_at,
  lines_read = loaded + duplicates + quarantined AS balanced
FROM {INGEST_LOG} ORDER BY ingested_at DESC, file"""
    )


def quarantine_reasons_table(client: Client) -> pa.Table:
    """Quarantined lines per reason, most frequent first."""
    return client.query_arrow(
        f"""SELECT toString(reason) AS reason, count() AS lines, uniqExact(_file) AS files,
  min(quarantined_at) AS first_at, max(quarantined_at) AS last_at
FROM {QUARANTINE} GROUP BY reason ORDER BY lines DESC, reason"""
    )


def quarantine_samples_table(client: Client, per_reason: int = SAMPLES_PER_REASON) -> pa.Table:
    """The first few quarantined lines of each reason, as read, with their file and line."""
    return client.query_arrow(
        f"""SELECT toString(reason) AS reason, _file AS file, _line AS line, event_type,
  event_id, substring(raw_line, 1, {{chars:UInt32}}) AS raw_line, length(raw_line) AS line_bytes
FROM {QUARANTINE} ORDER BY reason, _file, _line LIMIT {{per_reason:UInt32}} BY reason""",
        parameters={"chars": SAMPLE_CHARS, "per_reason": per_reason},
    )


def duplicates_by_source(client: Client) -> pa.Table:
    """Redelivered lines per telemetry source: exact duplicates dropped, conflicting ones
    quarantined."""
    return client.query_arrow(
        f"""SELECT source, files, read AS lines_read, dropped AS duplicates,
  conflicts AS conflicting, if(read = 0, NULL, dropped / read) AS duplicate_share
FROM (SELECT {_SOURCE_SQL} AS source, count() AS files, sum(lines_read) AS read,
        sum(duplicates) AS dropped, sum(conflicting) AS conflicts
      FROM {INGEST_LOG} GROUP BY source)
ORDER BY source"""
    )


def health_tables(
    client: Client,
    telemetry_dir: Path,
    threshold_hours: float,
    now: datetime | None = None,
) -> dict[str, pa.Table]:
    """Every table the health page reads, by file name (without .parquet)."""
    ensure_warehouse_schema(client)
    return {
        "ingest_log": ingest_log_table(client),
        "quarantine_reasons": quarantine_reasons_table(client),
        "quarantine_samples": quarantine_samples_table(client),
        "duplicates": duplicates_by_source(client),
        "freshness": freshness_facts(client, telemetry_dir, threshold_hours, now).table(),
        "check_results": latest_check_results(client),
    }


def publish_health(client: Client, settings: Settings) -> dict[str, pa.Table]:
    """Read the health tables from the warehouse and replace their Parquet files; also called
    at the end of a step that just recorded check outcomes, so the page shows them at once."""
    tables = health_tables(client, settings.telemetry, settings.freshness_hours)
    folder = settings.marts / HEALTH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        publish_one(table, folder / f"{name}.parquet")
    return tables
