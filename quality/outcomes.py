"""A check's verdict, and where verdicts are kept: the warehouse's `check_results` table, so the
data health page shows them after the run that produced them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from warehouse.bookkeeping import CHECK_RESULTS
from warehouse.registry import ensure_warehouse_schema

Severity = Literal["error", "warn"]
RAW_SUITE, MARTS_SUITE, FRESHNESS_SUITE, LEDGER_SUITE = "raw", "marts", "freshness", "ledger"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict on one table: what was expected, what was seen, how bad a miss is."""

    suite: str
    check: str
    target: str  # the table (warehouse table or mart) the outcome is about
    passed: bool
    severity: Severity
    observed: str
    description: str

    @property
    def blocks_publish(self) -> bool:
        return self.severity == "error" and not self.passed


def blocking_failures(outcomes: Iterable[CheckOutcome]) -> list[CheckOutcome]:
    """The failed error-level outcomes: any of them means the marts must not be published."""
    return [o for o in outcomes if o.blocks_publish]


def record_outcomes(
    client: Client,
    outcomes: Iterable[CheckOutcome],
    run_id: str = "",
    checked_at: datetime | None = None,
) -> int:
    """Store check outcomes so the health page shows them after the run; returns how many."""
    ensure_warehouse_schema(client)
    when = checked_at or datetime.now(UTC)
    rows = [
        [when, run_id, o.suite, o.check, o.target, o.passed, o.severity, o.observed, o.description]
        for o in outcomes
    ]
    if rows:
        client.insert(
            CHECK_RESULTS,
            rows,
            column_names=[
                "checked_at",
                "run_id",
                "suite",
                "check_name",
                "target",
                "passed",
                "severity",
                "observed",
                "description",
            ],
        )
    return len(rows)


def latest_check_results(client: Client) -> pa.Table:
    """The newest outcome of every check and target."""
    ensure_warehouse_schema(client)
    return client.query_arrow(
        f"""SELECT toString(suite) AS suite, check_name, target, passed,
  toString(severity) AS severity, observed, description, checked_at, run_id
FROM {CHECK_RESULTS}
ORDER BY suite, check_name, target, checked_at DESC
LIMIT 1 BY suite, check_name, target"""
    )
