"""Data health read from the warehouse: what ingest did with each file, what it rejected and
why, duplicates, whether telemetry is still arriving, and the latest data-quality checks.

The dashboards never open the warehouse, so the pipeline publishes these tables as Parquet next
to the marts; this module builds them as Arrow tables and stores check outcomes in the
warehouse so they outlive the run that produced them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.schema import INGEST_LOG, QUARANTINE, ensure_schema, raw_table
from live_runtime.events import EVENT_FIELDS
from live_runtime.telemetry import list_sealed

if TYPE_CHECKING:
    from models.quality import CheckOutcome

CHECK_RESULTS = "check_results"
SAMPLES_PER_REASON = 3  # quarantined lines kept per reason for the health page
SAMPLE_CHARS = 2000  # a sample line is cut to this many characters (its length is kept)
# A sealed file is named <source>-<sequence>.jsonl[.gz] (shared/TELEMETRY.md).
_SOURCE_SQL = "replaceRegexpOne(_file, '-[0-9]+\\\\.jsonl(\\\\.gz)?$', '')"


def check_results_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {CHECK_RESULTS} (
  checked_at DateTime64(6, 'UTC') COMMENT 'when the check ran',
  run_id String COMMENT 'pipeline run that ran it, empty outside a run',
  suite LowCardinality(String) COMMENT 'raw, marts, freshness or ledger',
  check_name String COMMENT 'check name',
  target String COMMENT 'table the outcome is about',
  passed Bool COMMENT 'whether the data met the expectation',
  severity LowCardinality(String) COMMENT 'error blocks publishing the marts, warn does not',
  observed String COMMENT 'what the check saw',
  description String COMMENT 'what the check expects'
)
ENGINE = MergeTree
ORDER BY (suite, check_name, target, checked_at)
COMMENT 'every data-quality check outcome, newest per check and target is the current one'"""


def ensure_health_schema(client: Client) -> None:
    ensure_schema(client)
    client.command(check_results_ddl())


def record_outcomes(
    client: Client,
    outcomes: Iterable[CheckOutcome],
    run_id: str = "",
    checked_at: datetime | None = None,
) -> int:
    """Store check outcomes so the health page shows them after the run; returns how many."""
    ensure_health_schema(client)
    when = checked_at or datetime.now(UTC)
    rows = [
        [when, run_id, o.suite, o.check, o.target, o.passed, o.severity, o.observed, o.description]
        for o in outcomes
    ]
    if rows:
        client.insert(
            CHECK_RESULTS,
            rows,
            column_names=[
                "checked_at",
                "run_id",
                "suite",
                "check_name",
                "target",
                "passed",
                "severity",
                "observed",
                "description",
            ],
        )
    return len(rows)


def latest_check_results(client: Client) -> pa.Table:
    """The newest outcome of every check and target."""
    ensure_health_schema(client)
    return client.query_arrow(
        f"""SELECT toString(suite) AS suite, check_name, target, passed,
  toString(severity) AS severity, observed, description, checked_at, run_id
FROM {CHECK_RESULTS}
ORDER BY suite, check_name, target, checked_at DESC
LIMIT 1 BY suite, check_name, target"""
    )


@dataclass(frozen=True)
class Freshness:
    """Whether telemetry is still arriving, judged by when sealed files arrive: simulated or
    replayed history carries old event times, so the events' own times cannot tell."""

    telemetry_dir: str
    newest_file: str | None
    newest_file_at: datetime | None  # when it was sealed (its modification time), UTC
    newest_ingested_at: datetime | None  # when ingest last committed a file with lines
    newest_event_at: datetime | None  # the latest occurred_at loaded, for context only
    checked_at: datetime
    threshold_hours: float

    @property
    def age_hours(self) -> float | None:
        if self.newest_file_at is None:
            return None
        return (self.checked_at - self.newest_file_at).total_seconds() / 3600

    @property
    def stale(self) -> bool:
        age = self.age_hours
        return age is None or age > self.threshold_hours

    def summary(self) -> str:
        if self.newest_file is None:
            return f"no sealed telemetry files in {self.telemetry_dir}"
        state = "older than" if self.stale else "within"
        return (
            f"newest sealed file {self.newest_file} arrived {self.age_hours:,.1f} h ago, "
            f"{state} the {self.threshold_hours:g} h threshold"
        )

    def table(self) -> pa.Table:
        """One row, as published for the health page."""
        stamp = pa.timestamp("us", tz="UTC")
        return pa.table(
            {
                "telemetry_dir": pa.array([self.telemetry_dir], pa.string()),
                "newest_file": pa.array([self.newest_file], pa.string()),
                "newest_file_at": pa.array([self.newest_file_at], stamp),
                "newest_ingested_at": pa.array([self.newest_ingested_at], stamp),
                "newest_event_at": pa.array([self.newest_event_at], stamp),
                "checked_at": pa.array([self.checked_at], stamp),
                "age_hours": pa.array([self.age_hours], pa.float64()),
                "threshold_hours": pa.array([self.threshold_hours], pa.float64()),
                "stale": pa.array([self.stale], pa.bool_()),
            }
        )


def freshness(
    client: Client,
    telemetry_dir: Path,
    threshold_hours: float,
    now: datetime | None = None,
) -> Freshness:
    """Freshness facts: the newest sealed file's arrival against `threshold_hours`."""
    ensure_schema(client)
    files = list_sealed(Path(telemetry_dir))
    newest = max(files, key=lambda p: (p.stat().st_mtime, p.name), default=None)
    events = " UNION ALL ".join(
        f"SELECT maxOrNull(occurred_at) AS at FROM {raw_table(t)}" for t in EVENT_FIELDS
    )
    ingested, event = client.query(
        f"SELECT (SELECT maxOrNull(ingested_at) FROM {INGEST_LOG} WHERE lines_read > 0), "
        f"(SELECT max(at) FROM ({events}))"
    ).result_rows[0]
    return Freshness(
        telemetry_dir=str(telemetry_dir),
        newest_file=newest.name if newest else None,
        newest_file_at=datetime.fromtimestamp(newest.stat().st_mtime, UTC) if newest else None,
        newest_ingested_at=_utc(ingested),
        newest_event_at=_utc(event),
        checked_at=now or datetime.now(UTC),
        threshold_hours=threshold_hours,
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ingest_log_table(client: Client) -> pa.Table:
    """One row per ingested file, newest first, with whether its line counts balance."""
    return client.query_arrow(
        f"""SELECT _file AS file, {_SOURCE_SQL} AS source, lines_read, loaded, duplicates,
  quarantined, conflicting, bytes, ingested_at,
  lines_read = loaded + duplicates + quarantined AS balanced
FROM {INGEST_LOG} ORDER BY ingested_at DESC, file"""
    )


def quarantine_reasons(client: Client) -> pa.Table:
    """Quarantined lines per reason, most frequent first."""
    return client.query_arrow(
        f"""SELECT toString(reason) AS reason, count() AS lines, uniqExact(_file) AS files,
  min(quarantined_at) AS first_at, max(quarantined_at) AS last_at
FROM {QUARANTINE} GROUP BY reason ORDER BY lines DESC, reason"""
    )


def quarantine_samples(client: Client, per_reason: int = SAMPLES_PER_REASON) -> pa.Table:
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
    ensure_health_schema(client)
    return {
        "ingest_log": ingest_log_table(client),
        "quarantine_reasons": quarantine_reasons(client),
        "quarantine_samples": quarantine_samples(client),
        "duplicates": duplicates_by_source(client),
        "freshness": freshness(client, telemetry_dir, threshold_hours, now).table(),
        "check_results": latest_check_results(client),
    }
