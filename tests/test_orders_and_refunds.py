"""Orders and refunds as docs/models.md ("Orders and refunds") settles them, end to end through
`creator-econ run`, on hand-written telemetry with every expected amount worked out by hand:

- an `order_id` paid twice under different event ids counts once (the first);
- a refund whose order has not been seen is not counted, and counts once the order arrives and
  the marts are recomputed.

Amounts are in USD minor units in the telemetry and in dollars in the marts.
"""

from __future__ import annotations

import contextlib
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from handmade import gift, order, refund, seal

from creator_econ.cli import main

SOURCE = "shop"


def run(telemetry: Path, root: Path) -> str:
    """`creator-econ run` in this process; its standard output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(
            ["run", "--telemetry", str(telemetry), "--marts", str(root / "marts"),
             "--data", str(root)]
        )  # fmt: skip
    assert code == 0, printed.getvalue()[-3000:]
    return printed.getvalue()


def daily(root: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(root / "marts" / "platform_daily.parquet").to_pylist()
    return {r["day"].isoformat(): r for r in rows}


def creator_weekly(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    rows = pq.read_table(root / "marts" / "creator_weekly.parquet").to_pylist()
    return {(r["week"].isoformat(), r["creator_id"]): r for r in rows}


def dollars(text: str) -> Decimal:
    return Decimal(text)


def recomputed_days(output: str) -> set[date]:
    """The days of the run's `marts: recomputed days 2026-10-01..2026-10-03, 2026-10-09`."""
    line = next(x for x in output.splitlines() if x.startswith("marts: recomputed days "))
    days: set[date] = set()
    for run_ in line.removeprefix("marts: recomputed days ").split(", "):
        first, _, last = run_.partition("..")
        start, end = date.fromisoformat(first), date.fromisoformat(last or first)
        days |= {start + timedelta(d) for d in range((end - start).days + 1)}
    return days


# --- an order paid twice ---------------------------------------------------------------------


def test_an_order_paid_twice_under_two_event_ids_counts_once(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry"
    # Order o1: $10.00 gross, $0.30 payment fee, $1.00 commission, so $8.70 to c1. Its paid
    # event comes again the next day under another event id (the same amounts).
    seal(
        telemetry,
        SOURCE,
        [
            order(1, "2026-10-01T10:00:00.000000Z", 1000, 30, 100, order_id="o1", source=SOURCE),
            gift(3, "2026-10-01T12:00:00.000000Z", 200, share=150, source=SOURCE),
            order(2, "2026-10-02T09:00:00.000000Z", 1000, 30, 100, order_id="o1", source=SOURCE),
            gift(4, "2026-10-02T12:00:00.000000Z", 100, share=70, source=SOURCE),
        ],
    )
    run(telemetry, tmp_path)
    days = daily(tmp_path)
    assert sorted(days) == ["2026-10-01", "2026-10-02"]
    oct_1, oct_2 = days["2026-10-01"], days["2026-10-02"]
    # Oct 1: the order once ($10.00) and the $2.00 gift.
    assert oct_1["transactions"] == 2
    assert oct_1["gross_volume"] == dollars("12.00")
    assert oct_1["order_commissions"] == dollars("1.00")
    assert oct_1["platform_revenue"] == dollars("1.50")  # $1.00 commission + $0.50 gift fee
    assert oct_1["creator_earnings"] == dollars("10.20")  # $8.70 + $1.50
    assert oct_1["per_transaction_fees"] == dollars("0.0002")  # 2 x $0.0001
    # Oct 2: only the $1.00 gift; the second payment of o1 is not a second order.
    assert oct_2["transactions"] == 1
    assert oct_2["gross_volume"] == dollars("1.00")
    assert oct_2["order_commissions"] == 0
    assert oct_2["platform_revenue"] == dollars("0.30")
    assert oct_2["creator_earnings"] == dollars("0.70")
    # Week of Sep 28 for c1: $8.70 + $1.50 + $0.70, from 3 earning events (the order once).
    week = creator_weekly(tmp_path)[("2026-09-28", "c1")]
    assert (week["earnings"], week["earning_events"]) == (dollars("10.90"), 3)


# --- a refund before its order -----------------------------------------------------------------

# Order o9: $20.00 gross on Oct 1, $0.60 payment fee, $2.00 commission: $17.40 to c2. It is
# refunded in full on Oct 3, and the refund is delivered before the order.
ORDER_O9 = order(
    12, "2026-10-01T09:00:00.000000Z", 2000, 60, 200, order_id="o9", creator="c2", source=SOURCE
)
REFUND_FILE = [
    gift(11, "2026-10-03T10:00:00.000000Z", 1000, share=700, source=SOURCE),  # $10.00, $3.00 fee
    refund(10, "2026-10-03T12:00:00.000000Z", "o9", 2000, source=SOURCE),
]


@pytest.fixture(scope="module")
def refund_first(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run 1 sees the refund only; run 2 sees its order. Beside it, one fresh run over the
    same two files (the refund in the earlier sealed file)."""
    root = tmp_path_factory.mktemp("refund")
    telemetry = root / "telemetry"
    seal(telemetry, SOURCE, REFUND_FILE)
    out: dict[str, Any] = {"first": run(telemetry, root / "state"), "root": root / "state"}
    out["daily_first"] = daily(root / "state")
    seal(telemetry, SOURCE, [ORDER_O9])
    out["second"] = run(telemetry, root / "state")
    out["daily_second"] = daily(root / "state")
    out["weekly_second"] = creator_weekly(root / "state")
    run(telemetry, root / "fresh")
    out["daily_fresh"] = daily(root / "fresh")
    return out


def test_a_refund_of_an_unseen_order_is_not_counted(refund_first) -> None:
    days = refund_first["daily_first"]
    assert sorted(days) == ["2026-10-03"]
    oct_3 = days["2026-10-03"]
    assert oct_3["platform_revenue"] == dollars("3.00")  # the gift fee only
    assert oct_3["creator_earnings"] == dollars("7.00")
    assert (oct_3["refunded_commissions"], oct_3["refunded_payment_fees"]) == (0, 0)


def test_the_refund_counts_once_its_order_arrives(refund_first) -> None:
    # The second run recomputes the refund's day, though it loaded no event dated Oct 3.
    assert date(2026, 10, 3) in recomputed_days(refund_first["second"])
    days = refund_first["daily_second"]
    assert sorted(days) == ["2026-10-01", "2026-10-02", "2026-10-03"]
    oct_1, oct_3 = days["2026-10-01"], days["2026-10-03"]
    assert (oct_1["transactions"], oct_1["gross_volume"]) == (1, dollars("20.00"))
    assert oct_1["platform_revenue"] == dollars("2.00")
    assert oct_1["creator_earnings"] == dollars("17.40")
    # Oct 3: the refund takes back the commission and the creator's net, and the payment fee
    # is a cost; the refund is not a transaction.
    assert oct_3["refunded_commissions"] == dollars("2.00")
    assert oct_3["refunded_payment_fees"] == dollars("0.60")
    assert oct_3["platform_revenue"] == dollars("1.00")  # $3.00 - $2.00
    assert oct_3["creator_earnings"] == dollars("-10.40")  # $7.00 - $17.40
    assert (oct_3["transactions"], oct_3["gross_volume"]) == (1, dollars("10.00"))
    # c2 earned $17.40 and gave it back in the same week.
    c2 = refund_first["weekly_second"][("2026-09-28", "c2")]
    assert (c2["earnings"], c2["earning_events"]) == (0, 1)


def test_late_order_and_a_run_over_both_files_agree(refund_first) -> None:
    assert refund_first["daily_second"] == refund_first["daily_fresh"]
