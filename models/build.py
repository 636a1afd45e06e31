"""Computing the marts: the warehouse's aggregates of a window and a cost model in, Arrow marts
out."""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa

from models.cost_model import CostModel
from models.publish import MartsUpdate, as_stored
from models.reads import QUERIES
from models.recompute import Plan, row_keys, split
from models.sql import MARTS, STEPS
from warehouse.memory import DUCKDB_BYTES, MIB

# The aggregates of a week are small; DuckDB gets a fixed slice of the memory budget.
DUCKDB_SETTINGS = {"memory_limit": f"{DUCKDB_BYTES // MIB}MB", "threads": "2"}
FORMAT = "partitions-1"  # the stored partitions' layout; a change recomputes them all


class ModelInputError(ValueError):
    """The data cannot be modelled as it is (for example a currency with no exchange rate)."""


def build_marts(tables: dict[str, pa.Table], cost_model: CostModel) -> dict[str, pa.Table]:
    con = duckdb.connect(config=DUCKDB_SETTINGS)
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


def build_update(
    tables: dict[str, pa.Table], cost_model: CostModel, plan: Plan, whole: Plan | None = None
) -> MartsUpdate:
    """The plan's partitions of every mart, computed from the tables of its window. On a full
    recompute `whole` is the complete plan (of which `plan` is a week): a row that belongs to
    none of its partitions would be lost, so it stops the run."""
    marts = as_stored(build_marts(tables, cost_model))
    partitions = split(marts, plan.keys())
    if plan.full and whole is not None:
        _check_every_row_planned(marts, whole.keys())
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


def _check_every_row_planned(marts: dict[str, pa.Table], keys: dict[str, list]) -> None:
    for name, table in marts.items():
        outside = sorted(set(row_keys(name, table).to_pylist()) - set(keys[name]))
        if outside:
            raise ModelInputError(
                f"{name}: rows fall outside the planned partitions (keys {outside[:5]}); the "
                "partition plan does not cover the data"
            )


def _cost_tables(model: CostModel) -> dict[str, pa.Table]:
    """The prices the metric SQL applies itself (usage is priced in the warehouse) and the fx."""
    prices = {name: model.pico_prices[name] for name in ("per_transaction", "fixed_monthly")}
    return {
        "prices": pa.table({k: pa.array([v], pa.int64()) for k, v in prices.items()}),
        "fx": pa.table(
            {
                "currency": list(model.fx_pico_per_unit),
                "pico": [model.pico_per_minor_unit(c) for c in model.fx_pico_per_unit],
            }
        ),
    }


def _check_currencies(con: duckdb.DuckDBPyConnection, model: CostModel) -> None:
    used = con.execute(
        "SELECT DISTINCT currency FROM (SELECT currency FROM gifts UNION ALL "
        "SELECT currency FROM orders UNION ALL SELECT currency FROM purchases)"
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
