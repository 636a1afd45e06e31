"""The `settings` resource: `creator_econ.settings.Settings` as Dagster configuration.

Every field is text, empty meaning the default in `Settings`, so no default is written twice.
In `dagster dev` the fields come from the `CREATOR_ECON_*` variables as `dg.EnvVar`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields

import dagster as dg
from clickhouse_connect.driver.client import Client

from creator_econ.settings import ENV, Settings, environment
from warehouse.connection import connect, is_embedded


class PipelineSettings(dg.ConfigurableResource):
    """Folders, warehouse DSN, cost model, ledger and limits (README, "Configuration")."""

    data_dir: str = ""
    telemetry_dir: str = ""
    marts_dir: str = ""
    warehouse: str = ""
    cost_model: str = ""
    ledger: str = ""
    batch_mb: str = ""
    freshness_hours: str = ""
    memory_gb: str = ""

    @property
    def resolved(self) -> Settings:
        return Settings.from_text({f.name: getattr(self, f.name) for f in fields(Settings)})

    @classmethod
    def of(cls, settings: Settings) -> PipelineSettings:
        """The resource for settings already resolved (the command line's)."""
        values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
        return cls(**{name: "" if value is None else str(value) for name, value in values.items()})

    @contextmanager
    def client(self) -> Iterator[Client]:
        """One client per use: a client is not safe to share across threads or runs."""
        settings = self.resolved
        client = connect(settings.warehouse_dsn, settings.memory)
        try:
            yield client
        finally:
            client.close()

    @property
    def embedded(self) -> bool:
        return is_embedded(self.resolved.warehouse_dsn)


def settings_from_env() -> PipelineSettings:
    """The resource `dagster dev` runs with: each variable that is set, as an `EnvVar`."""
    return PipelineSettings(**{name: dg.EnvVar(ENV[name]) for name in environment()})
