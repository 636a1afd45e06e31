"""Computing the marts: the extracted warehouse tables and a cost model in, Arrow marts out."""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa

from models.cost_model import CostModel
from models.extract import QUERIES
from models.publish import MartsUpdate, as_stored
from models.recompute import Plan, row_keys, split
from models.sql import MARTS, STEPS

FORMAT = "partitions-1"  # the stored partitions' layout; a change recomputes them all


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


def build_update(tables: dict[str, pa.Table], cost_model: CostModel, plan: Plan) -> MartsUpdate:
    """The plan's partitions of every mart, computed from the tables of its window."""
    marts = as_stored(build_marts(tables, cost_model))
    keys = plan.keys()
    partitions = split(marts, keys)
    if plan.full:
        _check_every_row_kept(marts, partitions)
    return MartsUpdate(partitions, {n: t.schema for n, t in marts.items()}, plan.full)


def model_fingerprint(cost_model: CostModel, warehouse: str) -> str:
    """Changes whenever stored partitions could differ from a recompute: another cost model,
    other model SQL, or another warehouse. Partitions of another fingerprint are recomputed,
    never mixed with new ones."""
    text = "\n".join([FORMAT, warehouse, repr(cost_model), *STEPS, *QUERIES.values()])
    return hashlib.sha256(text.encode()).hexdigest()


def tier_bounds(cost_model: CostModel) -> tuple[int, ...]:
    """Month-to-date egress bytes at which each priced tier ends."""
    return tuple(t.up_to_bytes for t in cost_model.egress_tiers[:-1] if t.up_to_bytes is not None)


def _check_every_row_kept(marts: dict[str, pa.Table], partitions: dict) -> None:
    """A full recompute keeps every row: a row outside the planned keys would be lost."""
    for name, table in marts.items():
        kept = sum(t.num_rows for t in partitions[name].values())
        if kept != table.num_rows:
            keys = sorted(set(row_keys(name, table).to_pylist()) - set(partitions[name]))
            raise ModelInputError(
                f"{name}: {table.num_rows - kept} rows fall outside the planned partitions "
                f"(keys {keys[:5]}); the partition plan does not cover the data"
            )


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
