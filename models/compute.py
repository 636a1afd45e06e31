"""Running the models over a plan: one week's window at a time, aggregates in, partitions out.

Each window's aggregates come from the warehouse (models/reads.py), the metric SQL runs on
them in DuckDB (models/build.py), and only the plan's partitions of that week are kept, so
memory follows a week of the platform whatever the history holds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from models.build import build_update, tier_bounds
from models.cost_model import CostModel
from models.planning import plan_refresh
from models.publish import MartsUpdate
from models.reads import read_window
from models.recompute import Plan, format_window

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def compute_update(
    client: Client,
    plan: Plan,
    cost_model: CostModel,
    on_week: Callable[[int, str], None] = lambda number, text: None,
) -> MartsUpdate:
    """The plan's partitions of every mart, computed week by week; `on_week` hears of each
    week done (its number and a line saying what it read)."""
    # With nothing to compute, one empty window still gives every mart its schema.
    windows = plan.windows() or [((EPOCH, EPOCH), frozenset())]
    updates = []
    for number, (window, days) in enumerate(windows, 1):
        tables = read_window(client, window, cost_model)
        rows = sum(t.num_rows for t in tables.values())
        updates.append(build_update(tables, cost_model, plan.only(days), whole=plan))
        on_week(
            number,
            f"models: week {number}/{len(windows)}: {rows:,} aggregate rows for "
            f"{format_window(window)}",
        )
    return MartsUpdate.combine(updates)


def compute_marts(client: Client, cost_model: CostModel) -> dict[str, pa.Table]:
    """Every mart over the whole loaded history, in memory and published nowhere (tests and
    what-if runs)."""
    plan = plan_refresh(client, None, tier_bounds(cost_model))
    return compute_update(client, plan, cost_model).tables()
