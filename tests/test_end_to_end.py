"""Simulate, run, read the marts: money adds up across creators and platform; reruns are no-ops."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from creator_econ.cli import main as cli
from models.sql import MARTS
from warehouse.connection import connect


def mart(marts: Path, name: str, sql: str = "SELECT * FROM m") -> list[tuple]:
    con = duckdb.connect()
    con.read_parquet(str(marts / f"{name}.parquet")).create_view("m")
    return con.execute(sql).fetchall()


def digest(marts: Path) -> dict[str, str]:
    return {n: hashlib.sha256((marts / f"{n}.parquet").read_bytes()).hexdigest() for n in MARTS}


@pytest.fixture(scope="module")
def warehouse_totals(pipeline_run: Path) -> dict[str, int]:
    """Money straight from the raw tables, in minor units (the simulator uses USD only)."""
    client = connect(f"chdb://{pipeline_run / 'warehouse'}")
    try:
        sql = {
            "gift_value": "SELECT sum(value_minor) FROM raw_gift_sent",
            "gift_fee": "SELECT sum(platform_fee_minor) FROM raw_gift_sent",
            "order_gross": "SELECT sum(gross_minor) FROM raw_order_paid",
            "order_net": "SELECT sum(creator_net_minor) FROM raw_order_paid",
            "commission": "SELECT sum(commission_minor) FROM raw_order_paid",
            "refunded_net": "SELECT sum(creator_net_minor) FROM raw_order_paid WHERE order_id IN "
            "(SELECT order_id FROM raw_order_refunded)",
            "refunded_commission": "SELECT sum(commission_minor) FROM raw_order_paid WHERE "
            "order_id IN (SELECT order_id FROM raw_order_refunded)",
            "transactions": "SELECT (SELECT count() FROM raw_gift_sent) + "
            "(SELECT count() FROM raw_order_paid) + (SELECT count() FROM raw_coins_purchased)",
            "sessions": "SELECT uniqExact(session_id) FROM raw_session_started",
            "distinct_events": "SELECT uniqExact(event_id) FROM event_index",
            "rows": "SELECT count() FROM event_index",
        }
        return {k: int(client.query(q).result_rows[0][0] or 0) for k, q in sql.items()}
    finally:
        client.close()


def cents(value: int) -> Decimal:
    return Decimal(value) / 100


def test_every_event_loaded_once(pipeline_run, warehouse_totals):
    assert warehouse_totals["rows"] == warehouse_totals["distinct_events"] > 1000
    client = connect(f"chdb://{pipeline_run / 'warehouse'}")
    try:
        ((lines, loaded, dups, quarantined),) = client.query(
            "SELECT sum(lines_read), sum(loaded), sum(duplicates), sum(quarantined) FROM ingest_log"
        ).result_rows
    finally:
        client.close()
    assert lines == loaded + dups + quarantined
    assert loaded == warehouse_totals["rows"]
    assert dups > 0  # the simulator redelivers a few events, as at-least-once delivery does


def test_money_in_equals_money_out(published_marts, warehouse_totals):
    t = warehouse_totals
    ((gross, revenue, earnings, transactions),) = mart(
        published_marts,
        "platform_daily",
        "SELECT sum(gross_volume), sum(platform_revenue), sum(creator_earnings), "
        "sum(transactions) FROM m",
    )
    assert gross == cents(t["gift_value"] + t["order_gross"])
    assert revenue == cents(t["gift_fee"] + t["commission"] - t["refunded_commission"])
    assert earnings == cents(t["gift_value"] - t["gift_fee"] + t["order_net"] - t["refunded_net"])
    # Every unit of value goes to a creator, the platform, or the processor (order fees).
    assert transactions == t["transactions"]
    (creator_total,) = mart(published_marts, "creator_weekly", "SELECT sum(earnings) FROM m")[0]
    assert creator_total == earnings


def test_costs_add_up_from_their_parts(published_marts):
    rows = mart(
        published_marts,
        "platform_daily",
        "SELECT infra_cost, publish_cost + delivery_cost + transcode_cost + relay_cost + "
        "egress_cost + recording_cost + fixed_cost, transaction_cost, payment_fees + store_fees + "
        "per_transaction_fees + refunded_payment_fees, contribution, "
        "platform_revenue - transaction_cost - infra_cost FROM m",
    )
    for infra, infra_parts, txn, txn_parts, contribution, expected in rows:
        assert infra == infra_parts
        assert txn == txn_parts
        assert contribution == expected


def test_sessions_and_creators_reconcile_to_the_platform(published_marts, warehouse_totals):
    (sessions,) = mart(published_marts, "session_economics", "SELECT count(*) FROM m")[0]
    assert sessions == warehouse_totals["sessions"]
    (daily_sessions,) = mart(published_marts, "platform_daily", "SELECT sum(sessions) FROM m")[0]
    assert daily_sessions == sessions
    (session_infra, daily_infra) = (
        mart(published_marts, "session_economics", "SELECT sum(infra_cost) FROM m")[0][0],
        mart(published_marts, "platform_daily", "SELECT sum(infra_cost) FROM m")[0][0],
    )
    # Fixed cost of days with no live session is in no session, and each published figure is
    # rounded to 1e-9 on its own: sessions may exceed the daily total by rounding alone.
    assert session_infra - daily_infra <= sessions * Decimal("0.000000001")
    assert session_infra > daily_infra * Decimal("0.9")
    (creator_infra,) = mart(published_marts, "creator_weekly", "SELECT sum(infra_cost) FROM m")[0]
    assert abs(creator_infra - session_infra) < Decimal("0.000001")


def test_one_row_per_grain_and_ratios_in_range(published_marts):
    for name, key in [
        ("platform_daily", "day"),
        ("creator_weekly", "week, creator_id"),
        ("platform_weekly", "week"),
        ("session_economics", "session_id"),
    ]:
        (dupes,) = mart(
            published_marts,
            name,
            f"SELECT count(*) FROM (SELECT {key} FROM m GROUP BY ALL HAVING count(*) > 1)",
        )[0]
        assert dupes == 0, name
    (bad,) = mart(
        published_marts,
        "creator_weekly",
        "SELECT count(*) FROM m WHERE earning_hour_ratio NOT BETWEEN 0 AND 1 "
        "OR earning_hours > live_hours OR sessions_with_earnings > sessions",
    )[0]
    assert bad == 0
    (weeks,) = mart(
        published_marts,
        "platform_weekly",
        "SELECT count(*) FROM m WHERE earnings_gini BETWEEN 0 AND 1 "
        "AND earning_creator_share BETWEEN 0 AND 1 AND top1pct_earnings_share BETWEEN 0 AND 1",
    )[0]
    assert weeks >= 2


def test_second_run_changes_no_mart(pipeline_run, published_marts):
    before = digest(published_marts)
    assert (
        cli(
            [
                "run",
                "--telemetry",
                str(pipeline_run / "telemetry"),
                "--marts",
                str(published_marts),
                "--data",
                str(pipeline_run),
            ]
        )
        == 0
    )
    assert digest(published_marts) == before


def test_run_reports_bad_input_without_a_traceback(tmp_path, capsys):
    (tmp_path / "telemetry" / "sealed").mkdir(parents=True)
    bad_model = tmp_path / "prices.toml"
    bad_model.write_text("version = 'x'\n")
    code = cli(
        [
            "run",
            "--telemetry",
            str(tmp_path / "telemetry"),
            "--marts",
            str(tmp_path / "marts"),
            "--data",
            str(tmp_path),
            "--cost-model",
            str(bad_model),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "missing prices" in err and "Traceback" not in err


def test_a_second_writer_is_told_about_the_lock(tmp_path, warehouse):
    """chDB admits one process per warehouse folder: the second gets a message, not a crash."""
    (tmp_path / "telemetry" / "sealed").mkdir(parents=True)
    argv = ["run", "--telemetry", str(tmp_path / "telemetry"), "--marts", str(tmp_path / "m")]
    argv += ["--data", str(tmp_path)]  # the `warehouse` fixture holds tmp_path/warehouse
    done = subprocess.run(
        [sys.executable, "-m", "creator_econ.cli", *argv], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "is locked: chDB allows one process per data path" in done.stderr
    assert "Traceback" not in done.stderr
