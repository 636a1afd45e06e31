"""Every warehouse table, in one list: its name, what it is for, and the function that builds its
DDL. Creating the schema, the DDL snapshot test and the docs all read this list, so a table
cannot exist without being registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from clickhouse_connect.driver.client import Client

from telemetry.events import EVENT_FIELDS
from warehouse import aggregates
from warehouse import bookkeeping as books
from warehouse.migrations import MIGRATIONS_TABLE, apply_migrations, migrations_ddl
from warehouse.raw_tables import raw_table, raw_table_ddl
from warehouse.staging_tables import STAGING_TABLES, staging_ddl

Kind = Literal["raw", "bookkeeping", "aggregate", "staging"]


@dataclass(frozen=True)
class Table:
    name: str
    kind: Kind  # staging tables are created per ingest, the others once
    ddl: Callable[[], str]


TABLES: tuple[Table, ...] = (
    *(Table(raw_table(t), "raw", partial(raw_table_ddl, t)) for t in EVENT_FIELDS),
    Table(books.EVENT_INDEX, "bookkeeping", books.event_index_ddl),
    Table(books.QUARANTINE, "bookkeeping", books.quarantine_ddl),
    Table(books.INGEST_LOG, "bookkeeping", books.ingest_log_ddl),
    Table(books.INGEST_ATTEMPTS, "bookkeeping", books.ingest_attempts_ddl),
    Table(books.MARTS_DIRTY_DAYS, "bookkeeping", books.marts_dirty_days_ddl),
    Table(books.CHECK_RESULTS, "bookkeeping", books.check_results_ddl),
    Table(MIGRATIONS_TABLE, "bookkeeping", migrations_ddl),
    Table(aggregates.EGRESS_BY_DAY, "aggregate", aggregates.egress_by_day_ddl),
    Table(aggregates.SESSION_USAGE_END, "aggregate", aggregates.session_usage_end_ddl),
    Table(aggregates.EVENT_DAYS, "aggregate", aggregates.event_days_ddl),
    *(Table(name, "staging", partial(staging_ddl, name)) for name in STAGING_TABLES),
)


def all_ddl() -> list[str]:
    """DDL of every lasting table (all but staging), each `CREATE TABLE IF NOT EXISTS`."""
    return [table.ddl() for table in TABLES if table.kind != "staging"]


def ensure_warehouse_schema(client: Client) -> None:
    """Creates whatever lasting table is missing and applies pending migrations; safe to call
    before any read or write."""
    for ddl in all_ddl():
        client.command(ddl)
    apply_migrations(client)


def create_staging_tables(client: Client) -> None:
    """Fresh, empty staging tables for one ingest run."""
    for table in TABLES:
        if table.kind == "staging":
            client.command(f"DROP TABLE IF EXISTS {table.name}")
            client.command(table.ddl())
