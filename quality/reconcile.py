"""Reconciliation: the runtime ledger's daily money totals against the warehouse's raw tables.

The ledger is the book of record; the warehouse is what the telemetry delivered. Both are summed
per UTC day in exact integers, the warehouse restricted to the ledger's own telemetry sources
(a warehouse may also hold other sources, simulated data say). A difference means an event the
relay has not sealed yet, a sealed file not ingested yet, or an event lost or doubled on the way.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

from live_runtime.ledger import books
from warehouse.raw_tables import raw_table

METRICS = (
    "coin_purchases",
    "coin_purchase_amount",
    "coin_refunds",
    "coin_refund_amount",
    "gifts",
    "gift_value",
    "orders",
    "order_gross",
    "refunds",
    "refund_amount",
    "creator_earnings",
    "platform_fees",
    "payouts",
    "payout_amount",
)

# Ledger side: movements counted per kind, and postings summed per kind and account.
CREATORS = books.earnings("")  # every creator's earnings account starts with this
EARNING_KINDS = ("gift", "order", "refund")
LEDGER_COUNTS = {
    "coin_purchases": "purchase",
    "coin_refunds": "coin_refund",
    "gifts": "gift",
    "orders": "order",
    "refunds": "refund",
    "payouts": "payout",
}
LEDGER_SUMS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    # metric: (movement kinds, accounts, sign)
    "coin_purchase_amount": (("purchase",), (books.PAYMENTS,), -1),
    "coin_refund_amount": (("coin_refund",), (books.PAYMENTS,), 1),
    "gift_value": (("gift",), (books.GIFT_FUNDING,), -1),
    "order_gross": (("order",), (books.PAYMENTS,), -1),
    "refund_amount": (("refund",), (books.PAYMENTS,), 1),
    "creator_earnings": (EARNING_KINDS, (CREATORS,), 1),
    "platform_fees": (EARNING_KINDS, (books.GIFT_FEES, books.COMMISSION), 1),
    "payout_amount": (("payout",), (books.PAYOUTS,), 1),
}

# Warehouse side: one query per raw table, each value column added to a metric with a sign.
_SOURCES = "source IN {sources:Array(String)}"
WAREHOUSE_QUERIES: list[tuple[str, tuple[tuple[str, int], ...]]] = [
    (
        f"SELECT toString(toDate(occurred_at)) AS day, count(), sum(amount_minor) "
        f"FROM {raw_table('coins_purchased')} WHERE {_SOURCES} GROUP BY day",
        (("coin_purchases", 1), ("coin_purchase_amount", 1)),
    ),
    (
        f"SELECT toString(toDate(occurred_at)) AS day, count(), sum(value_minor), "
        f"sum(arraySum(s -> tupleElement(s, 'share_minor'), splits)), sum(platform_fee_minor) "
        f"FROM {raw_table('gift_sent')} WHERE {_SOURCES} GROUP BY day",
        (
            ("gifts", 1),
            ("gift_value", 1),
            ("creator_earnings", 1),
            ("platform_fees", 1),
        ),
    ),
    (
        f"SELECT toString(toDate(occurred_at)) AS day, count(), sum(gross_minor), "
        f"sum(creator_net_minor), sum(commission_minor) "
        f"FROM {raw_table('order_paid')} WHERE {_SOURCES} GROUP BY day",
        (
            ("orders", 1),
            ("order_gross", 1),
            ("creator_earnings", 1),
            ("platform_fees", 1),
        ),
    ),
    (
        # A refund is dated by its own event and takes back its order's net and commission; a
        # refund whose order the warehouse lacks takes back nothing, and so shows as a difference.
        f"SELECT toString(toDate(r.occurred_at)) AS day, count(), sum(r.refund_minor), "
        f"sum(o.net), sum(o.commission) FROM {raw_table('order_refunded')} AS r "
        f"LEFT JOIN (SELECT order_id, any(creator_net_minor) AS net, "
        f"any(commission_minor) AS commission FROM {raw_table('order_paid')} "
        f"WHERE {_SOURCES} GROUP BY order_id) AS o ON o.order_id = r.order_id "
        f"WHERE r.{_SOURCES} GROUP BY day",
        (
            ("refunds", 1),
            ("refund_amount", 1),
            ("creator_earnings", -1),
            ("platform_fees", -1),
        ),
    ),
    (
        f"SELECT toString(toDate(occurred_at)) AS day, count(), sum(refund_minor) "
        f"FROM {raw_table('coins_refunded')} WHERE {_SOURCES} GROUP BY day",
        (("coin_refunds", 1), ("coin_refund_amount", 1)),
    ),
    (
        f"SELECT toString(toDate(occurred_at)) AS day, count(), sum(amount_minor) "
        f"FROM {raw_table('payout_issued')} WHERE {_SOURCES} GROUP BY day",
        (("payouts", 1), ("payout_amount", 1)),
    ),
]
MONEY_EVENTS = (
    "coins_purchased",
    "coins_refunded",
    "gift_sent",
    "order_paid",
    "order_refunded",
    "payout_issued",
)
RAW_TABLES = tuple(raw_table(t) for t in MONEY_EVENTS)

Totals = dict[tuple[str, str], int]  # (day, metric) -> exact integer


class ReconcileError(Exception):
    """Reconciliation cannot run; the message says why in one line."""


class Row(NamedTuple):
    day: str
    metric: str
    ledger: int
    warehouse: int
    difference: int  # warehouse - ledger


@dataclass(frozen=True)
class Reconciliation:
    ledger_path: Path
    sources: tuple[str, ...]
    rows: list[Row]  # every metric for every day either side has, by day then metric

    @property
    def days(self) -> list[str]:
        return sorted({r.day for r in self.rows})

    @property
    def differences(self) -> list[Row]:
        return [r for r in self.rows if r.difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        """One line: agreement, or the first differences by metric and day."""
        if self.ok:
            return f"ledger and warehouse agree on {_plural(len(self.days), 'day')}"
        shown = ", ".join(
            f"{r.metric} on {r.day} (ledger {r.ledger:,}, warehouse {r.warehouse:,})"
            for r in self.differences[:5]
        )
        more = len(self.differences) - 5
        return f"{_plural(len(self.differences), 'difference')}: {shown}" + (
            f" and {more} more" if more > 0 else ""
        )

    def table(self) -> str:
        """Totals of every metric, then each differing day, then a verdict on the last line."""
        sources = ", ".join(self.sources) or "none"
        lines = [
            f"ledger {self.ledger_path} (telemetry source {sources}) against the warehouse, "
            f"{_plural(len(self.days), 'day')}",
            "",
        ]
        totals = [
            ("total", metric, *_sums(r for r in self.rows if r.metric == metric))
            for metric in METRICS
        ]
        lines += _aligned(totals)
        if not self.ok:
            lines += ["", "differences by day:"]
            lines += _aligned([tuple(r) for r in self.differences])
            lines += [
                "",
                "note: events the runtime has not yet relayed into a sealed telemetry file,",
                "and sealed files not yet loaded by `creator-econ run`, show as differences too",
                f"{_plural(len(self.differences), 'difference')} between ledger and warehouse "
                f"on {_plural(len({r.day for r in self.differences}), 'day')}",
            ]
        else:
            lines += ["", f"ledger and warehouse agree on {_plural(len(self.days), 'day')}"]
        return "\n".join(lines)


def reconcile(db_path: Path, client: Client) -> Reconciliation:
    """Daily totals of the ledger at `db_path` against the warehouse behind `client`."""
    db_path = Path(db_path)
    conn = _open_ledger(db_path)
    try:
        sources = _sources(conn)
        ledger = ledger_totals(conn)
    finally:
        conn.close()
    _require_raw_tables(client)
    warehouse = warehouse_totals(client, sources)
    days = sorted({day for day, _ in ledger} | {day for day, _ in warehouse})
    rows = [
        _row(day, m, ledger.get((day, m), 0), warehouse.get((day, m), 0))
        for day in days
        for m in METRICS
    ]
    return Reconciliation(db_path, tuple(sources), rows)


def _row(day: str, metric: str, ledger: int, warehouse: int) -> Row:
    return Row(day, metric, ledger, warehouse, warehouse - ledger)


def ledger_totals(conn: sqlite3.Connection) -> Totals:
    """Movement counts and posting sums per UTC day and metric."""
    totals: Totals = defaultdict(int)
    counts = conn.execute("SELECT day, kind, count(*) FROM movements GROUP BY day, kind")
    by_kind = {kind: metric for metric, kind in LEDGER_COUNTS.items()}
    for day, kind, count in counts:
        if kind in by_kind:
            totals[(day, by_kind[kind])] += count
    sums = conn.execute(
        "SELECT m.day, m.kind, CASE WHEN substr(p.account_id, 1, length(:creators)) = :creators "
        "THEN :creators ELSE p.account_id END AS account, sum(p.amount) "
        "FROM movements AS m JOIN postings AS p ON p.movement_id = m.id "
        "GROUP BY m.day, m.kind, account",
        {"creators": CREATORS},
    )
    for day, kind, account, amount in sums:
        for metric, (kinds, accounts, sign) in LEDGER_SUMS.items():
            if kind in kinds and account in accounts:
                totals[(day, metric)] += sign * amount
    return dict(totals)


def warehouse_totals(client: Client, sources: list[str]) -> Totals:
    """The same figures from the raw tables, for events of the given sources only."""
    totals: Totals = defaultdict(int)
    if not sources:
        return {}
    for sql, columns in WAREHOUSE_QUERIES:
        for day, *values in client.query(sql, parameters={"sources": sources}).result_rows:
            for value, (metric, sign) in zip(values, columns, strict=True):
                totals[(day, metric)] += sign * int(value)
    return dict(totals)


def _open_ledger(path: Path) -> sqlite3.Connection:
    """Read-only: reconciliation never writes to the book of record."""
    if not path.is_file():
        raise ReconcileError(f"no ledger database at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise ReconcileError(f"{path} is not a runtime ledger database: {exc}") from exc
    missing = {"movements", "postings", "outbox"} - names
    if missing:
        conn.close()
        raise ReconcileError(
            f"{path} is not a runtime ledger database (no {', '.join(sorted(missing))} table)"
        )
    return conn


def _sources(conn: sqlite3.Connection) -> list[str]:
    """The telemetry sources this ledger wrote: only their events are compared."""
    rows = conn.execute("SELECT DISTINCT json_extract(line, '$.source') FROM outbox")
    return sorted(r[0] for r in rows if r[0] is not None)


def _require_raw_tables(client: Client) -> None:
    present = {
        r[0]
        for r in client.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() "
            "AND name IN {names:Array(String)}",
            parameters={"names": list(RAW_TABLES)},
        ).result_rows
    }
    missing = [t for t in RAW_TABLES if t not in present]
    if missing:
        raise ReconcileError(
            f"the warehouse has no raw tables yet (missing {', '.join(missing)}): load the "
            "runtime's telemetry first with `creator-econ run --telemetry DIR ...`"
        )


def _sums(rows) -> tuple[int, int, int]:
    ledger = warehouse = 0
    for r in rows:
        ledger += r.ledger
        warehouse += r.warehouse
    return ledger, warehouse, warehouse - ledger


def _aligned(rows: list[tuple]) -> list[str]:
    """Day and metric left-aligned, amounts right-aligned with thousands separators."""
    header = ("day", "metric", "ledger", "warehouse", "difference")
    cells = [header] + [
        (day, metric, f"{a:,}", f"{b:,}", f"{d:+,}" if d else "0") for day, metric, a, b, d in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return [
        "  ".join(
            text.ljust(width) if i < 2 else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    ]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"
