"""Changes to a warehouse created by an earlier version, applied once each, in order.

A fresh warehouse gets every table as `registry.TABLES` describes it; one created earlier gets
the same through these steps. Each migration is recorded in `schema_migrations` after it ran,
and is written so that running it again after a crash midway gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from warehouse import aggregates
from warehouse.raw_tables import SKIP_INDEXES, raw_table

MIGRATIONS_TABLE = "schema_migrations"


def migrations_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
  name String COMMENT 'the migration that ran',
  applied_at DateTime64(6, 'UTC') COMMENT 'when it finished'
)
ENGINE = MergeTree
ORDER BY name
COMMENT 'migrations applied to this warehouse (warehouse/migrations.py)'"""


def _skip_indexes() -> list[str]:
    statements = []
    for event_type, indexes in SKIP_INDEXES.items():
        table = raw_table(event_type)
        for index in indexes:
            name = index.split()[1]
            statements += [
                f"ALTER TABLE {table} ADD {index.replace('INDEX', 'INDEX IF NOT EXISTS', 1)}",
                f"ALTER TABLE {table} MATERIALIZE INDEX {name} SETTINGS mutations_sync = 2",
            ]
    return statements


def _aggregates() -> list[str]:
    """Fill the ingest-kept aggregates from the raw tables they sum (emptied first)."""
    days = " UNION ALL ".join(
        f"SELECT '{event_type}', toDate({column}), _file FROM {raw_table(event_type)}"
        for event_type, column in aggregates.DAY_TABLES.items()
    )
    return [
        f"TRUNCATE TABLE {aggregates.EGRESS_BY_DAY}",
        f"INSERT INTO {aggregates.EGRESS_BY_DAY} SELECT toDate(interval_start), _file, "
        f"sum(egress_bytes) FROM {raw_table('media_usage')} GROUP BY 1, 2",
        f"TRUNCATE TABLE {aggregates.SESSION_USAGE_END}",
        f"INSERT INTO {aggregates.SESSION_USAGE_END} SELECT session_id, _file, "
        f"max(interval_end) FROM {raw_table('media_usage')} GROUP BY 1, 2",
        f"TRUNCATE TABLE {aggregates.EVENT_DAYS}",
        f"INSERT INTO {aggregates.EVENT_DAYS} SELECT DISTINCT * FROM ({days})",
    ]


@dataclass(frozen=True)
class Migration:
    name: str
    statements: Callable[[], list[str]]


MIGRATIONS: tuple[Migration, ...] = (
    Migration("2026-12-raw-skip-indexes", _skip_indexes),
    Migration("2026-12-ingest-aggregates", _aggregates),
)


def apply_migrations(client: Client) -> list[str]:
    """Runs the migrations this warehouse has not had yet; returns their names."""
    client.command(migrations_ddl())
    done = {r[0] for r in client.query(f"SELECT name FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for migration in MIGRATIONS:
        if migration.name in done:
            continue
        for statement in migration.statements():
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.name, datetime.now(UTC)]],
            column_names=["name", "applied_at"],
        )
        applied.append(migration.name)
    return applied
