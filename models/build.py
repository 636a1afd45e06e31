"""Computing the marts: the extracted warehouse tables and a cost model in, Arrow marts out."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from models.cost_model import CostModel
from models.sql import MARTS, STEPS


class ModelInputError(ValueError):
    """The data cannot be modelled as it is (for example a currency with no exchange rate)."""


def build_marts(tables: dict[str, pa.Table], cost_model: CostModel) -> dict[str, pa.Table]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in {**tables, **_cost_tables(cost_model)}.items():
            con.register(name, table)
        _check_currencies(con, cost_model)
        for step in STEPS:
            con.execute(step)
        marts = {name: con.table(name).to_arrow_table() for name in MARTS}
    finally:
        con.close()
    return {name: _stamp(name, table, cost_model) for name, table in marts.items()}


def _cost_tables(model: CostModel) -> dict[str, pa.Table]:
    prices = dict(model.pico_prices)
    prices["recording_gb"] = int(
        prices.pop("recording_gb_month") * model.recording_retention_months
    )
    bounds = [0] + [t.up_to_bytes for t in model.egress_tiers[:-1]]
    return {
        "prices": pa.table({k: pa.array([v], pa.int64()) for k, v in prices.items()}),
        "fx": pa.table(
            {
                "currency": list(model.fx_pico_per_unit),
                "pico": [model.pico_per_minor_unit(c) for c in model.fx_pico_per_unit],
            }
        ),
        "tiers": pa.table(
            {
                "from_bytes": pa.array(bounds, pa.int64()),
                "up_to_bytes": pa.array([t.up_to_bytes for t in model.egress_tiers], pa.int64()),
                "pico_per_gb": pa.array([t.pico_per_gb for t in model.egress_tiers], pa.int64()),
            }
        ),
    }


def _check_currencies(con: duckdb.DuckDBPyConnection, model: CostModel) -> None:
    used = con.execute(
        "SELECT DISTINCT currency FROM (SELECT currency FROM gifts UNION ALL "
        "SELECT currency FROM orders UNION ALL SELECT currency FROM purchases_daily)"
    ).fetchall()
    missing = sorted({c for (c,) in used} - set(model.fx_pico_per_unit))
    if missing:
        raise ModelInputError(
            f"the cost model {model.version!r} has no fx_to_reporting rate for {missing}; "
            "add them to its [fx_to_reporting] table"
        )


def _stamp(name: str, table: pa.Table, model: CostModel) -> pa.Table:
    """Every published row names the cost model (and reporting currency) it was priced with."""
    rows = table.num_rows
    table = table.append_column("cost_model_version", pa.array([model.version] * rows, pa.string()))
    if name == "platform_daily":
        table = table.append_column(
            "reporting_currency", pa.array([model.reporting_currency] * rows, pa.string())
        )
    return table
