"""The data-quality suites pass on a real run and catch broken data; an error-level failure stops
the marts in a real Dagster run, and stale telemetry only warns."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client

from creator_econ.cli import main as cli
from creator_econ.settings import ENV, Settings, SettingsError
from ingest.loader import ingest
from models.publish import HEALTH_DIR
from models.sql import MARTS
from pipelines.assets import ingest_telemetry, publish_marts
from pipelines.checks import CHECKS, QUALITY_CHECKS
from pipelines.health_assets import HEALTH_ASSETS
from pipelines.resources import PipelineSettings
from quality.freshness import freshness_facts, freshness_outcome
from quality.marts_suite import check_marts
from quality.outcomes import (
    CheckOutcome,
    blocking_failures,
    latest_check_results,
    record_outcomes,
)
from quality.raw_suite import check_raw, raw_check_targets
from simulator.run import simulate
from telemetry.files import TelemetryWriter
from warehouse.connection import connect

START = date(2026, 10, 1)
FRESHNESS_HOURS_ENV = ENV["freshness_hours"]


def failed(outcomes: list[CheckOutcome]) -> set[tuple[str, str]]:
    return {(o.check, o.target) for o in outcomes if not o.passed}


def outcome(outcomes: list[CheckOutcome], check: str, target: str) -> CheckOutcome:
    return next(o for o in outcomes if o.check == check and o.target == target)


@pytest.fixture
def run_warehouse(pipeline_run: Path):
    """The session run's warehouse, opened after the run closed it (one path at a time)."""
    client = connect(f"chdb://{pipeline_run / 'warehouse'}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def run_marts(pipeline_run: Path) -> dict[str, pa.Table]:
    return {name: pq.read_table(pipeline_run / "marts" / f"{name}.parquet") for name in MARTS}


def test_suites_pass_on_a_simulated_run(run_warehouse, run_marts):
    raw = check_raw(run_warehouse)
    marts = check_marts(run_marts, run_warehouse)
    assert failed(raw) == set() and failed(marts) == set()
    assert {(c.name, t) for c, t in raw_check_targets()} == {(o.check, o.target) for o in raw}
    reconciled = outcome(marts, "gross_volume_matches_raw", "platform_daily")
    assert reconciled.severity == "error" and "difference=0" in reconciled.observed
    assert {o.target for o in marts} == set(MARTS)


def changed(table: pa.Table, column: str, value=None, delta=None) -> pa.Table:
    """The table with its first row's `column` set to `value` (or moved by `delta`)."""
    frame = pl.from_arrow(table)
    dtype = frame.schema[column]
    new = pl.col(column) + delta if delta is not None else pl.lit(value, dtype=dtype)
    first = pl.int_range(pl.len()) == 0
    return frame.with_columns(pl.when(first).then(new).otherwise(pl.col(column)).alias(column))


@pytest.mark.parametrize(
    ("mart", "column", "value", "delta", "expected"),
    [
        ("platform_daily", "infra_cost", Decimal("-1"), None, "amounts_non_negative"),
        ("session_economics", "gross_volume", Decimal("-0.5"), None, "amounts_non_negative"),
        ("creator_weekly", "earning_hour_ratio", 1.5, None, "ratios_in_unit_range"),
        ("platform_daily", "failure_rate", -0.1, None, "ratios_in_unit_range"),
        ("platform_weekly", "earning_creator_share", 1.01, None, "ratios_in_unit_range"),
        ("platform_daily", "take_rate", 1.2, None, "ratios_in_unit_range"),
        ("creator_weekly", "earning_hours", None, 100, "parts_within_wholes"),
        ("platform_daily", "transactions", None, 1, "transactions_matches_raw"),
        ("platform_daily", "gross_volume", None, Decimal("0.01"), "gross_volume_matches_raw"),
        ("platform_daily", "creator_earnings", None, Decimal("-3"), "creator_earnings_matches_raw"),
    ],
)
def test_each_error_level_mart_check_fails_on_broken_data(
    run_warehouse, run_marts, mart, column, value, delta, expected
):
    broken = {**run_marts, mart: changed(run_marts[mart], column, value, delta).to_arrow()}
    outcomes = check_marts(broken, run_warehouse)
    target = "platform_daily" if expected.endswith("_raw") else mart
    hit = outcome(outcomes, expected, target)
    assert not hit.passed and hit.severity == "error" and hit.blocks_publish
    assert blocking_failures(outcomes)
    assert f"{column}=" in hit.observed or "mart=" in hit.observed


def test_a_duplicated_grain_key_fails(run_warehouse, run_marts):
    weekly = run_marts["creator_weekly"]
    broken = {**run_marts, "creator_weekly": pa.concat_tables([weekly, weekly.slice(0, 1)])}
    hit = outcome(check_marts(broken, run_warehouse), "one_row_per_grain", "creator_weekly")
    assert not hit.passed and hit.severity == "error"
    assert "1 of" in hit.observed or "2 of" in hit.observed


def test_amounts_that_refunds_can_turn_negative_are_not_flagged(run_warehouse, run_marts):
    """Revenue, earnings, contribution and its margin may be negative; take rate may be too
    on a day whose revenue is negative."""
    sessions = changed(run_marts["session_economics"], "creator_earnings", Decimal("-7"))
    sessions = sessions.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(Decimal("-2"), dtype=sessions.schema["platform_revenue"]))
        .otherwise(pl.col("platform_revenue"))
        .alias("platform_revenue")
    )
    daily = changed(run_marts["platform_daily"], "contribution_margin", -45.0)
    marts = {
        **run_marts,
        "session_economics": sessions.to_arrow(),
        "platform_daily": daily.to_arrow(),
    }
    assert failed(check_marts(marts, run_warehouse)) == set()


def test_top_session_share_above_one_fails_in_a_week_without_refunds(run_warehouse, run_marts):
    weekly = changed(run_marts["creator_weekly"], "top_session_share", 1.4).to_arrow()
    outcomes = check_marts({**run_marts, "creator_weekly": weekly}, run_warehouse)
    hit = outcome(outcomes, "ratios_in_unit_range", "creator_weekly")
    assert not hit.passed and "top_session_share=1.4" in hit.observed


# --- The raw suite on a small warehouse of its own, broken by writing rows directly -----------


@pytest.fixture
def loaded(tmp_path: Path, warehouse: Client) -> Client:
    simulate(tmp_path / "telemetry", creators=12, days=2, seed=3)
    ingest(warehouse, tmp_path / "telemetry", read_files_in_warehouse=True)
    return warehouse


def copy_row(client: Client, table: str, **changes) -> None:
    """Write a copy of a row of `table` straight into it, as nothing but ingest should."""
    result = client.query(f"SELECT * FROM {table} ORDER BY occurred_at LIMIT 1")
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))
    row.update(changes)
    client.insert(table, [list(row.values())], column_names=list(row))


def test_raw_suite_passes_on_a_clean_load(loaded):
    outcomes = check_raw(loaded)
    assert failed(outcomes) == set()
    assert all(o.suite == "raw" and o.observed for o in outcomes)


@pytest.mark.parametrize(
    ("table", "changes", "expected"),
    [
        ("raw_gift_sent", {"value_minor": -5, "event_id": uuid.uuid4()}, "amounts_within_bounds"),
        ("raw_gift_sent", {}, "one_row_per_event_id"),
        ("raw_gift_sent", {"event_id": uuid.uuid4()}, "money_ids_unique"),
        ("raw_gift_sent", {"event_id": uuid.uuid4(), "gift_id": "new"}, "rows_in_event_index"),
        (
            "raw_order_paid",
            {"event_id": uuid.uuid4(), "order_id": "o-x", "creator_net_minor": 1},
            "invariants_hold",
        ),
        ("raw_coins_purchased", {"event_id": uuid.uuid4(), "coins": 0}, "amounts_within_bounds"),
    ],
)
def test_each_error_level_raw_check_fails_on_broken_rows(loaded, table, changes, expected):
    copy_row(loaded, table, **changes)
    outcomes = check_raw(loaded)
    hit = outcome(outcomes, expected, table)
    assert not hit.passed and hit.severity == "error" and hit.blocks_publish
    assert "fail" in hit.observed


def test_an_unbalanced_ingest_log_fails(loaded):
    loaded.insert(
        "ingest_log",
        [["x-000000000001.jsonl", 3, 1, 0, 0, 0, 10, datetime.now(UTC)]],
        column_names=[
            "_file",
            "lines_read",
            "loaded",
            "duplicates",
            "quarantined",
            "conflicting",
            "bytes",
            "ingested_at",
        ],
    )
    outcomes = check_raw(loaded)
    accounted = outcome(outcomes, "lines_accounted_for", "ingest_log")
    assert not accounted.passed and "x-000000000001.jsonl" in accounted.observed
    assert not outcome(outcomes, "totals_agree", "ingest_log").passed


# --- Incremental: a run checks the files it loaded, against the rest of the history ---------


def seal_copy_of_a_gift(client: Client, telemetry: Path, **changes) -> dict:
    """A new sealed file holding one gift copied from the warehouse under a new event_id."""
    result = client.query(
        "SELECT event_id, occurred_at, gift_id, session_id, sender_id, coins, value_minor, "
        "currency, splits, platform_fee_minor FROM raw_gift_sent ORDER BY occurred_at LIMIT 1"
    )
    row = dict(zip(result.column_names, result.result_rows[0], strict=True))
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "gift_sent",
        "schema_version": 1,
        "occurred_at": row["occurred_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "source": "late",
        "gift_id": row["gift_id"],
        "session_id": row["session_id"],
        "sender_id": row["sender_id"],
        "coins": row["coins"],
        "value_minor": row["value_minor"],
        "currency": row["currency"],
        "splits": [dict(split) for split in row["splits"]],
        "platform_fee_minor": row["platform_fee_minor"],
        **changes,
    }
    with TelemetryWriter(telemetry, "late") as writer:
        writer.write((json.dumps(event) + "\n").encode())
    return event


def test_a_run_checks_what_it_loaded_against_the_history(loaded, tmp_path):
    # The raw suite ran once (every file checked); a new file brings a gift whose gift_id an
    # older file already loaded, under a new event_id: the new rows alone look clean, the
    # collision with the history is what fails.
    record_outcomes(loaded, check_raw(loaded, full=False))
    seal_copy_of_a_gift(loaded, tmp_path / "telemetry")
    report = ingest(loaded, tmp_path / "telemetry", read_files_in_warehouse=True)
    assert report.total("loaded") == 1
    outcomes = check_raw(loaded, full=False)
    hit = outcome(outcomes, "money_ids_unique", "raw_gift_sent")
    assert not hit.passed and "rows=1" in hit.observed and "distinct_ids=0" in hit.observed
    # The other tables' new rows (none) and the kept totals pass.
    assert failed(outcomes) == {("money_ids_unique", "raw_gift_sent")}


def test_a_run_reads_only_the_files_it_loaded_and_a_full_check_reads_all(loaded, tmp_path):
    # A broken row planted in an already checked file: the next run's check does not read that
    # file, the explicit full check does.
    record_outcomes(loaded, check_raw(loaded, full=False))
    copy_row(loaded, "raw_coins_purchased", event_id=uuid.uuid4(), purchase_id="px", coins=0)
    seal_copy_of_a_gift(loaded, tmp_path / "telemetry", gift_id="g-new")
    ingest(loaded, tmp_path / "telemetry", read_files_in_warehouse=True)
    incremental = check_raw(loaded, full=False)
    assert outcome(incremental, "amounts_within_bounds", "raw_coins_purchased").passed
    assert outcome(incremental, "money_ids_unique", "raw_gift_sent").passed
    full = check_raw(loaded, full=True)
    assert not outcome(full, "amounts_within_bounds", "raw_coins_purchased").passed


def test_the_check_command_rescans_on_request(loaded, tmp_path, capsys):
    # A row planted behind ingest's back: the kept totals catch it on any check (it has no
    # index entry), but only a full rescan reads the row itself and finds its zero coins.
    record_outcomes(loaded, check_raw(loaded, full=False))
    copy_row(loaded, "raw_coins_purchased", event_id=uuid.uuid4(), purchase_id="px", coins=0)
    loaded.close()  # the command opens the warehouse itself
    assert cli(["check", "--data", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "error: rows_in_event_index on raw_coins_purchased" in printed
    assert "amounts_within_bounds" not in printed
    # Two of the suite's 70 checks fail: the row is not in the index, and the raw rows
    # outnumber the loaded lines.
    assert "68/70 passed (the files loaded since the last check)" in printed
    assert cli(["check", "--full", "--data", str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert "error: amounts_within_bounds on raw_coins_purchased" in printed
    assert "(every row)" in printed


# --- Freshness -----------------------------------------------------------------------------------


def sealed_file(root: Path, name: str, hours_old: float) -> Path:
    path = root / "sealed" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}\n")
    stamp = time.time() - hours_old * 3600
    os.utime(path, (stamp, stamp))
    return path


def test_freshness_warns_when_the_newest_file_is_older_than_the_threshold(tmp_path, warehouse):
    empty = freshness_facts(warehouse, tmp_path, 24)
    assert empty.stale and "no sealed telemetry files" in empty.summary()
    sealed_file(tmp_path, "a-000000000001.jsonl", 50)
    sealed_file(tmp_path, "b-000000000001.jsonl", 30)
    facts = freshness_facts(warehouse, tmp_path, 24)
    assert facts.newest_file == "b-000000000001.jsonl"
    assert facts.stale and facts.age_hours == pytest.approx(30, abs=0.1)
    warning = freshness_outcome(facts)
    assert not warning.passed and warning.severity == "warn" and not warning.blocks_publish
    assert "older than the 24 h threshold" in warning.observed
    assert not freshness_facts(warehouse, tmp_path, 36).stale


def test_freshness_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(FRESHNESS_HOURS_ENV, raising=False)
    assert Settings.from_env().freshness_hours == 24
    monkeypatch.setenv(FRESHNESS_HOURS_ENV, "6.5")
    assert Settings.from_env().freshness_hours == 6.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv(FRESHNESS_HOURS_ENV, bad)
        with pytest.raises(SettingsError, match=FRESHNESS_HOURS_ENV):
            Settings.from_env()


def test_recorded_outcomes_keep_the_newest_per_check(warehouse):
    older = CheckOutcome("marts", "c", "platform_daily", False, "error", "bad", "d")
    newer = CheckOutcome("marts", "c", "platform_daily", True, "error", "good", "d")
    now = datetime.now(UTC)
    record_outcomes(warehouse, [older], run_id="r1", checked_at=now - timedelta(minutes=5))
    record_outcomes(warehouse, [newer], run_id="r2", checked_at=now)
    rows = latest_check_results(warehouse).to_pylist()
    assert [(r["check_name"], r["passed"], r["observed"], r["run_id"]) for r in rows] == [
        ("c", True, "good", "r2")
    ]


# --- In a real Dagster run -------------------------------------------------------------------


def test_error_level_failure_stops_the_marts_and_stale_telemetry_only_warns(tmp_path, monkeypatch):
    telemetry, marts = tmp_path / "telemetry", tmp_path / "marts"
    simulate(telemetry, creators=12, days=2, start=START, seed=3)
    settings = PipelineSettings(
        telemetry_dir=str(telemetry),
        marts_dir=str(marts),
        warehouse=f"chdb://{tmp_path / 'warehouse'}",
    )
    monkeypatch.setenv(FRESHNESS_HOURS_ENV, "24")
    assert set(QUALITY_CHECKS) <= set(CHECKS)

    def run(full: bool = False) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [ingest_telemetry, publish_marts, *HEALTH_ASSETS, *CHECKS],
            resources={"settings": settings},
            partition_key=START.isoformat(),  # the marts' daily partition the run recomputes
            raise_on_error=False,
            run_config={"ops": {"raw_quality": {"config": {"full": full}}}},
        )

    first = run()
    assert first.success
    assert all(e.passed for e in first.get_asset_check_evaluations())
    published = {name: (marts / f"{name}.parquet").stat().st_mtime_ns for name in MARTS}

    client = connect(settings.warehouse)
    try:
        copy_row(client, "raw_gift_sent", value_minor=-5, event_id=uuid.uuid4())
    finally:
        client.close()
    for path in (telemetry / "sealed").iterdir():
        old = time.time() - 48 * 3600
        os.utime(path, (old, old))

    # A rescan of every row, as the weekly job does: the planted row is in a checked file.
    second = run(full=True)
    assert not second.success
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in second.get_asset_check_evaluations()
    }
    money = evaluations[("raw_gift_sent", "amounts_within_bounds")]
    assert not money.passed and money.blocking
    assert money.severity == dg.AssetCheckSeverity.ERROR
    assert "value_minor" in money.description
    stale = evaluations[("ingest_log", "telemetry_arriving")]
    assert not stale.passed and not stale.blocking
    assert stale.severity == dg.AssetCheckSeverity.WARN

    materialized = {e.asset_key.to_user_string() for e in second.get_asset_materialization_events()}
    assert "data_health" in materialized and not set(MARTS) & materialized
    assert {name: (marts / f"{name}.parquet").stat().st_mtime_ns for name in MARTS} == published

    results = pl.read_parquet(marts / HEALTH_DIR / "check_results.parquet")
    shown = results.filter(
        (pl.col("check_name") == "amounts_within_bounds") & (pl.col("target") == "raw_gift_sent")
    ).row(0, named=True)
    assert not shown["passed"] and shown["severity"] == "error"
    assert pl.read_parquet(marts / HEALTH_DIR / "freshness.parquet")["stale"][0]


def creator_weeks(week: date, shares: dict[str, float]) -> pa.Table:
    """A small creator_weekly mart: one plausible row per creator, with the given shares."""
    rows = len(shares)
    return pa.table(
        {
            "week": [week] * rows,
            "creator_id": list(shares),
            "live_minutes": [90.0] * rows,
            "live_hours": [2] * rows,
            "earning_hours": [1] * rows,
            "earning_hour_ratio": [0.5] * rows,
            "sessions": [2] * rows,
            "sessions_with_earnings": [1] * rows,
            "median_minutes_to_first_earning": [12.0] * rows,
            "earning_events": [3] * rows,
            "earnings": pa.array([Decimal("1.5")] * rows, pa.decimal128(38, 9)),
            "top_session_share": list(shares.values()),
            "infra_cost": pa.array([Decimal("0.2")] * rows, pa.decimal128(38, 9)),
        }
    )


def test_top_session_share_is_excused_in_a_week_with_a_refund(loaded):
    order_id, creator, paid_at = loaded.query(
        "SELECT order_id, creator_id, occurred_at FROM raw_order_paid ORDER BY occurred_at LIMIT 1"
    ).first_row
    loaded.insert(
        "raw_order_refunded",
        [[uuid.uuid4(), paid_at, "sim", order_id, 100, "requested", "r-000000000001.jsonl", 1]],
        column_names=[
            "event_id",
            "occurred_at",
            "source",
            "order_id",
            "refund_minor",
            "reason",
            "_file",
            "_line",
        ],
    )
    monday = paid_at.date() - timedelta(days=paid_at.weekday())
    weekly = creator_weeks(monday, {creator: 1.4, "someone_else": 1.4})
    hit = outcome(
        check_marts({"creator_weekly": weekly}, loaded),
        "ratios_in_unit_range",
        "creator_weekly",
    )
    assert not hit.passed
    assert (
        "creator_id=someone_else" in hit.observed and f"creator_id={creator} " not in hit.observed
    )
