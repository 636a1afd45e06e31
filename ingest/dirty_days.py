"""Days whose mart partitions newly loaded events make stale, noted in the warehouse.

Ingest notes them in the same batch as the events (before the ingest log row that commits it);
the marts run reads them and deletes the notes it covered once it has published, so a crash at
any point leaves them for the next run (docs/models.md, "Partitions and late events").
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from clickhouse_connect.driver.client import Client

from warehouse.bookkeeping import MARTS_DIRTY_DAYS
from warehouse.registry import ensure_warehouse_schema

PENDING = f"SELECT day, max(noted_at) FROM {MARTS_DIRTY_DAYS} GROUP BY day"
CLEAR = f"DELETE FROM {MARTS_DIRTY_DAYS} WHERE noted_at <= {{until:DateTime64(6, 'UTC')}}"


def note_dirty_days(client: Client, days: set[date]) -> None:
    """Record days whose mart partitions the new events make stale."""
    if days:
        now = datetime.now(UTC)
        client.insert(
            MARTS_DIRTY_DAYS, [[d, now] for d in sorted(days)], column_names=["day", "noted_at"]
        )


def pending_dirty_days(client: Client) -> tuple[frozenset[date], datetime | None]:
    """The days noted as stale and the time of the latest note (None when there is none)."""
    ensure_warehouse_schema(client)
    rows = client.query(PENDING).result_rows
    if not rows:
        return frozenset(), None
    return frozenset(r[0] for r in rows), max(r[1] for r in rows)


def clear_dirty_days(client: Client, noted_until: datetime) -> None:
    """Forget the notes up to `noted_until`: the marts covering them are published. Notes
    written later (a load that ran meanwhile) stay for the next publish."""
    client.command(CLEAR, parameters={"until": noted_until})
