"""Is telemetry still arriving? Judged by when sealed files arrive, and only ever a warning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from quality.outcomes import FRESHNESS_SUITE, CheckOutcome
from telemetry.events import EVENT_FIELDS
from telemetry.files import list_sealed
from warehouse.bookkeeping import INGEST_LOG
from warehouse.raw_tables import raw_table
from warehouse.registry import ensure_warehouse_schema


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


def freshness_facts(
    client: Client,
    telemetry_dir: Path,
    threshold_hours: float,
    now: datetime | None = None,
) -> Freshness:
    """Freshness facts: the newest sealed file's arrival against `threshold_hours`."""
    ensure_warehouse_schema(client)
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


def freshness_outcome(facts: Freshness) -> CheckOutcome:
    """A warning, never a block: republishing history must work whatever the clock says."""
    return CheckOutcome(
        suite=FRESHNESS_SUITE,
        check="telemetry_arriving",
        target=INGEST_LOG,
        passed=not facts.stale,
        severity="warn",
        observed=facts.summary(),
        description=(
            f"A sealed telemetry file arrived within the last {facts.threshold_hours:g} hours "
            "(by the newest sealed file's time, not the events' own times)."
        ),
    )
