"""Every setting of the pipeline with its default, written once, and the one place that reads
the environment.

The command line builds `Settings` from its flags; Dagster builds its `settings` resource from
the `CREATOR_ECON_*` variables (as `dg.EnvVar`, so the UI shows where a value came from and never
the value of a DSN with a password); the dashboards read the marts folder their launcher set.
A setting left empty takes its default here, and paths under the data folder follow it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from warehouse.memory import MemoryBudget, MemoryBudgetError

ENV: dict[str, str] = {
    "data_dir": "CREATOR_ECON_DATA",
    "telemetry_dir": "CREATOR_ECON_TELEMETRY",
    "marts_dir": "CREATOR_ECON_MARTS",
    "warehouse": "CREATOR_ECON_WAREHOUSE",
    "cost_model": "CREATOR_ECON_COST_MODEL",
    "ledger": "CREATOR_ECON_LEDGER",
    "batch_mb": "CREATOR_ECON_BATCH_MB",
    "freshness_hours": "CREATOR_ECON_FRESHNESS_HOURS",
    "memory_gb": "CREATOR_ECON_MEMORY_GB",
}
RUNTIME_ENV: dict[str, str] = {
    "webhook_secret": "CREATOR_ECON_WEBHOOK_SECRET",
    "signups_per_minute": "CREATOR_ECON_SIGNUPS_PER_MINUTE",
    "failed_sign_ins_per_minute": "CREATOR_ECON_FAILED_SIGN_INS_PER_MINUTE",
}
MB = 1024 * 1024
BATCH_MB = 512  # the most telemetry one ingest batch loads when not told otherwise


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    """Where the pipeline reads and writes, and how much it takes at once."""

    data_dir: Path = Path("data")
    telemetry_dir: Path | None = None  # None: <data>/telemetry
    marts_dir: Path | None = None  # None: <data>/marts
    warehouse: str = ""  # "": the embedded warehouse in <data>/warehouse
    cost_model: Path | None = None  # None: the cost model shipped with the project
    ledger: Path | None = None  # runtime ledger to reconcile with; None: no reconciliation
    batch_mb: int | None = None  # telemetry per ingest batch; None: what the memory allows
    freshness_hours: float = 24.0  # no new sealed file for longer than this is a warning
    memory_gb: float = 2.0  # what a run may use at most, engines included

    @property
    def telemetry(self) -> Path:
        return self.telemetry_dir or self.data_dir / "telemetry"

    @property
    def marts(self) -> Path:
        return self.marts_dir or self.data_dir / "marts"

    @property
    def warehouse_dsn(self) -> str:
        return self.warehouse or embedded_dsn(self.data_dir)

    @property
    def memory(self) -> MemoryBudget:
        try:
            return MemoryBudget.of_gib(self.memory_gb)
        except MemoryBudgetError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def batch_bytes(self) -> int:
        """Telemetry per ingest batch: as asked, or the most the memory budget holds (at most
        BATCH_MB); a batch larger than the budget holds is refused in one line."""
        largest = self.memory.largest_batch_bytes
        if self.batch_mb is None:
            return min(BATCH_MB * MB, largest)
        if self.batch_mb * MB > largest:
            raise SettingsError(
                f"batches of {self.batch_mb} MB do not fit a {self.memory_gb:g} GiB memory "
                f"budget: give at most {largest // MB} MB (--batch-mb), or more memory "
                "(--memory-gb)"
            )
        return self.batch_mb * MB

    @property
    def runtime_dir(self) -> Path:
        """Where `runtime serve` keeps its ledger and telemetry unless told otherwise."""
        return self.data_dir / "runtime"

    @classmethod
    def from_text(cls, values: Mapping[str, str]) -> Settings:
        """Settings from text values by field name (flags or environment); empty means default."""
        given = {name: value.strip() for name, value in values.items() if value.strip()}
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingsError(f"unknown settings: {sorted(unknown)}")
        typed: dict[str, object] = {}
        for name, value in given.items():
            typed[name] = _typed(name, value)
        return cls(**typed)

    @classmethod
    def from_env(cls) -> Settings:
        return cls.from_text(environment())


@dataclass(frozen=True)
class RuntimeSettings:
    """What `runtime serve` takes from the environment rather than from flags."""

    webhook_secret: str = field(default="", repr=False)  # "": a new one at each start
    signups_per_minute: int = 20  # account creations per client address
    failed_sign_ins_per_minute: int = 10  # per login and client address

    @classmethod
    def from_env(cls) -> RuntimeSettings:
        given = environment(RUNTIME_ENV)
        return cls(**{name: _typed(name, value, RUNTIME_ENV) for name, value in given.items()})


def environment(names: Mapping[str, str] = ENV) -> dict[str, str]:
    """The settings given in the environment, by field name: the one place that reads it."""
    return {name: os.environ[var] for name, var in names.items() if os.environ.get(var, "").strip()}


def embedded_dsn(data_dir: Path) -> str:
    return f"chdb://{Path(data_dir).resolve() / 'warehouse'}"


DEFAULTS = Settings()


def _typed(name: str, value: str, names: Mapping[str, str] = ENV) -> object:
    """The value of a text setting, or a one-line error naming its variable."""
    where = f"{names[name]}={value!r}"
    if name in ("batch_mb", "signups_per_minute", "failed_sign_ins_per_minute"):
        if not value.isdigit() or int(value) < 1:
            raise SettingsError(f"{where}: give a whole number, at least 1")
        return int(value)
    if name in ("memory_gb", "freshness_hours"):
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number > 0:
            unit = "GiB" if name == "memory_gb" else "hours"
            raise SettingsError(f"{where}: give a positive number of {unit}")
        return number
    if name == "webhook_secret":
        where = names[name]  # never the secret itself in a message
        if not value.startswith("whsec_") or len(value) < 24:
            raise SettingsError(f"{where}: give a secret of the form whsec_..., 24 chars or more")
        return value
    if name == "warehouse":
        return value
    return Path(value)
