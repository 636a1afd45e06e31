"""Opening the warehouse: one clickhouse-connect API, embedded (chDB) or a ClickHouse server."""

from __future__ import annotations

from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from warehouse.memory import MemoryBudget


class WarehouseError(RuntimeError):
    """A warehouse problem explained for the person running the command."""


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def connect(dsn: str, memory: MemoryBudget | None = None) -> Client:
    """A client for the DSN, held to `memory` when given (the embedded engine's own limits are
    set when it starts); an embedded warehouse held by another process gets a clear error."""
    if not dsn.startswith(("chdb:", "http://", "https://", "clickhouse://", "clickhouses://")):
        raise WarehouseError(
            f"warehouse DSN {dsn!r} is not understood: use chdb:///path/to/warehouse for the "
            "embedded warehouse or http(s)://host:8123 for a ClickHouse server"
        )
    options: dict = {}
    if memory is not None:
        options["settings"] = memory.query_settings()
    if is_embedded(dsn):
        # chdb://data/warehouse would name a host "data": a relative path means this folder.
        path = Path(dsn.removeprefix("chdb:").removeprefix("//")).resolve()
        path.mkdir(parents=True, exist_ok=True)
        dsn = f"chdb://{path}"
        if memory is not None:
            options["chdb_options"] = memory.chdb_options()
    try:
        return clickhouse_connect.get_client(dsn=dsn, **options)
    except Exception as exc:  # the driver raises several types; all mean "cannot open"
        if "EmbeddedServer" in str(exc) or "lock" in str(exc).lower():
            raise WarehouseError(
                f"the embedded warehouse at {dsn.removeprefix('chdb://')} is locked: chDB "
                "allows one process per data path and one data path per process. Stop the other "
                "creator-econ or dagster process using it, or use a ClickHouse server DSN for "
                "concurrent use."
            ) from exc
        raise WarehouseError(f"cannot open the warehouse {dsn!r}: {exc}") from exc
