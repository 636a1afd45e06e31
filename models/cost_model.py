"""The versioned cost model file (docs/metrics.md) turned into exact integer prices.

Prices are held as integer pico-units (1e-12) of the reporting currency, so every cost the
models compute is an exact integer sum until it is published as a decimal.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from telemetry.events import MINOR_UNIT_DIGITS

PICO = 10**12
PRICE_NAMES = (
    "publisher_minute",
    "viewer_minute",
    "transcode_minute",
    "relay_minute",
    "recording_gb_month",
    "per_transaction",
    "fixed_monthly",
)


class CostModelError(ValueError):
    """The cost model file cannot be used; the message says which entry and why."""


@dataclass(frozen=True)
class EgressTier:
    up_to_bytes: int | None  # month-to-date cumulative bound; None for the last tier
    pico_per_gb: int


@dataclass(frozen=True)
class CostModel:
    version: str
    reporting_currency: str
    pico_prices: dict[str, int]
    recording_retention_months: Decimal
    egress_tiers: tuple[EgressTier, ...]
    fx_pico_per_unit: dict[str, int]

    @property
    def recording_pico_per_gb(self) -> int:
        """A GB recorded costs its monthly price for every month it is kept (truncated)."""
        return int(self.pico_prices["recording_gb_month"] * self.recording_retention_months)

    def pico_per_minor_unit(self, currency: str) -> int:
        """Reporting pico-units per minor unit of `currency` (exact for the listed currencies)."""
        return self.fx_pico_per_unit[currency] // 10 ** MINOR_UNIT_DIGITS[currency]


def default_cost_model_path() -> Path:
    return Path(str(resources.files("models") / "cost_model_default.toml"))


def load_cost_model(path: Path | None = None) -> CostModel:
    path = Path(path) if path else default_cost_model_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CostModelError(f"cost model file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CostModelError(f"cost model file {path} is not valid TOML: {exc}") from exc
    return parse_cost_model(raw, str(path))


def parse_cost_model(raw: dict, where: str = "cost model") -> CostModel:
    def need(table: dict, key: str, context: str):
        if key not in table:
            raise CostModelError(f"{where}: missing {context}{key}")
        return table[key]

    prices = need(raw, "prices", "")
    pico_prices = {
        n: _pico(need(prices, n, "prices."), f"{where}: prices.{n}") for n in PRICE_NAMES
    }
    tiers = need(prices, "egress_tiers", "prices.")
    if not tiers or "up_to_gb" in tiers[-1] or any("up_to_gb" not in t for t in tiers[:-1]):
        raise CostModelError(
            f"{where}: prices.egress_tiers needs at least one tier; every tier but the last "
            "has up_to_gb, the last has none"
        )
    bounds = [_decimal(t["up_to_gb"], f"{where}: up_to_gb") for t in tiers[:-1]]
    if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
        raise CostModelError(f"{where}: egress tier bounds must increase")
    egress = tuple(
        EgressTier(
            int(_decimal(t["up_to_gb"], "up_to_gb") * 10**9) if "up_to_gb" in t else None,
            _pico(need(t, "per_gb", "egress tier "), f"{where}: egress per_gb"),
        )
        for t in tiers
    )
    reporting = need(raw, "reporting_currency", "")
    fx = {
        code: _pico(rate, f"{where}: fx_to_reporting.{code}")
        for code, rate in need(raw, "fx_to_reporting", "").items()
    }
    if reporting not in fx:
        fx[reporting] = PICO
    unknown = sorted(set(fx) - set(MINOR_UNIT_DIGITS))
    if unknown:
        raise CostModelError(f"{where}: unknown currencies in fx_to_reporting: {unknown}")
    return CostModel(
        version=str(need(raw, "version", "")),
        reporting_currency=reporting,
        pico_prices=pico_prices,
        recording_retention_months=_decimal(
            need(prices, "recording_retention_months", "prices."), "retention"
        ),
        egress_tiers=egress,
        fx_pico_per_unit=fx,
    )


def _decimal(value: object, what: str) -> Decimal:
    """TOML floats are read through their shortest text form, so 0.002 stays exactly 0.002."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CostModelError(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise CostModelError(f"{what} must be a number, got {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise CostModelError(f"{what} must be a non-negative number, got {value!r}")
    return number


def _pico(value: object, what: str) -> int:
    number = _decimal(value, what) * PICO
    if number != number.to_integral_value():
        raise CostModelError(f"{what} has more than 12 decimal places: {value!r}")
    return int(number)
