"""Where the pipeline reads and writes, configurable per deployment (environment variables)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from clickhouse_connect.driver.client import Client

from ingest.warehouse import connect, default_dsn, is_embedded

DATA_DIR = Path(os.environ.get("CREATOR_ECON_DATA", "data"))


class PipelineSettings(dg.ConfigurableResource):
    """Folders, warehouse DSN and cost model file; defaults live under ./data."""

    telemetry_dir: str = str(DATA_DIR / "telemetry")
    marts_dir: str = str(DATA_DIR / "marts")
    warehouse: str = default_dsn(DATA_DIR)
    cost_model: str = ""  # empty: the default cost model shipped with the project
    ledger: str = ""  # runtime ledger database to reconcile with; empty: none configured
    batch_mb: int = 512  # telemetry loaded per ingest batch; smaller uses less memory

    @contextmanager
    def client(self) -> Iterator[Client]:
        """One client per use: a client is not safe to share across threads or runs."""
        client = connect(self.warehouse)
        try:
            yield client
        finally:
            client.close()

    @property
    def embedded(self) -> bool:
        return is_embedded(self.warehouse)


def settings_from_env() -> PipelineSettings:
    env = os.environ.get
    return PipelineSettings(
        telemetry_dir=env("CREATOR_ECON_TELEMETRY", str(DATA_DIR / "telemetry")),
        marts_dir=env("CREATOR_ECON_MARTS", str(DATA_DIR / "marts")),
        warehouse=env("CREATOR_ECON_WAREHOUSE", default_dsn(DATA_DIR)),
        cost_model=env("CREATOR_ECON_COST_MODEL", ""),
        ledger=env("CREATOR_ECON_LEDGER", ""),
        batch_mb=int(env("CREATOR_ECON_BATCH_MB", "512")),
    )
