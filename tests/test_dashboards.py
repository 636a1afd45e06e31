"""The dashboards render on published marts, explain missing ones, and scope a creator."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from creator_econ.settings import ENV
from dashboards import data, ui

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGES = ["views/home.py", "views/finance.py", "views/product.py", "views/creator.py"]
TIMEOUT = 30  # the first run imports DuckDB, Polars and Altair


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Streamlit's data cache is process-wide: one test's marts must not leak into the next."""
    st.cache_data.clear()


def open_page(page: str, marts: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(ENV["marts_dir"], str(marts))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page != PAGES[0]:
        app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def charts_on(app: AppTest) -> int:
    return len(app.get("vega_lite_chart"))


def test_home_shows_links_and_freshness(published_marts, monkeypatch):
    app = open_page("views/home.py", published_marts, monkeypatch)
    latest = duckdb.sql(
        "SELECT max(day) FROM read_parquet(?)",
        params=[str(published_marts / "platform_daily.parquet")],
    ).fetchall()[0][0]
    assert len(app.get("page_link")) == 3
    assert any(f"{latest:%d %B %Y}" in md.value for md in app.markdown)


@pytest.mark.parametrize(
    ("page", "metrics", "charts"),
    [("views/finance.py", 6, 6), ("views/product.py", 6, 5), ("views/creator.py", 6, 5)],
)
def test_page_renders_charts_and_metrics(page, metrics, charts, published_marts, monkeypatch):
    app = open_page(page, published_marts, monkeypatch)
    assert len(app.metric) == metrics
    assert charts_on(app) == charts
    assert not app.error and not app.info


def test_finance_names_cost_model_and_currency(published_marts, monkeypatch):
    app = open_page("views/finance.py", published_marts, monkeypatch)
    version, currency = duckdb.sql(
        "SELECT any_value(cost_model_version), any_value(reporting_currency) FROM read_parquet(?)",
        params=[str(published_marts / "platform_daily.parquet")],
    ).fetchall()[0]
    assert any(version in c.value and currency in c.value for c in app.caption)


def test_finance_headline_follows_the_date_range(published_marts, monkeypatch):
    app = open_page("views/finance.py", published_marts, monkeypatch)
    first, _ = app.date_input[0].value
    app.date_input[0].set_value((first, first)).run()
    assert not app.exception
    revenue, currency = duckdb.sql(
        "SELECT platform_revenue, reporting_currency FROM read_parquet(?) WHERE day = ?",
        params=[str(published_marts / "platform_daily.parquet"), first],
    ).fetchall()[0]
    assert app.metric[0].value == ui.money(revenue, currency)


def test_finance_switches_to_weeks(published_marts, monkeypatch):
    app = open_page("views/finance.py", published_marts, monkeypatch)
    daily_charts = charts_on(app)
    app.radio[0].set_value("week").run()
    assert not app.exception, [e.message for e in app.exception]
    assert charts_on(app) == daily_charts
    assert any("Each week's infra cost" in c.value for c in app.caption)


def test_finance_link_can_open_the_weekly_view(published_marts, monkeypatch):
    monkeypatch.setenv(ENV["marts_dir"], str(published_marts))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.query_params["per"] = "week"
    app.run()
    app.switch_page("views/finance.py").run()
    assert not app.exception, [e.message for e in app.exception]
    assert app.radio[0].value == "week"


def test_weekly_finance_sums_parts_and_recomputes_ratios(published_marts):
    daily = pl.read_parquet(published_marts / "platform_daily.parquet")
    weeks = data.weekly_finance(daily)
    assert weeks.columns == daily.columns
    assert weeks["day"].to_list() == sorted(set(daily["day"].dt.truncate("1w").to_list()))
    for column in ("infra_cost", "contribution", "transactions", "live_minutes"):
        assert weeks[column].sum() == pytest.approx(daily[column].sum())
    first = weeks.row(0, named=True)
    in_first = daily.filter(pl.col("day").dt.truncate("1w") == first["day"])
    assert first["cost_per_live_minute"] == pytest.approx(
        float(in_first["infra_cost"].sum()) / in_first["live_minutes"].sum()
    )
    assert first["failure_rate"] == pytest.approx(
        in_first["failed_transactions"].sum()
        / (in_first["transactions"].sum() + in_first["failed_transactions"].sum())
    )


def test_weekly_ratio_with_nothing_to_divide_by_is_null():
    day = {"day": [date(2026, 11, 2)], "live_minutes": [0.0], "viewer_minutes": [0.0]}
    zeros = {c: [0] for c in ("transactions", "failed_transactions")}
    money = {
        c: [Decimal("1.5")]
        for c in ("infra_cost", "transaction_cost", "contribution", "platform_revenue")
    }
    daily = pl.DataFrame({**day, **zeros, **money, "gross_volume": [Decimal("0")]})
    daily = daily.with_columns(
        pl.lit(None, pl.Float64).alias(name) for name in data.DAILY_RATIOS
    ).with_columns(cost_model_version=pl.lit("v"), reporting_currency=pl.lit("USD"))
    week = data.weekly_finance(daily).row(0, named=True)
    assert week["cost_per_live_minute"] is None
    assert week["take_rate"] is None
    assert week["contribution_margin"] == pytest.approx(1.0)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("folder", ["empty", "absent"])
def test_page_explains_missing_marts(page, folder, tmp_path, monkeypatch):
    marts = tmp_path / folder
    if folder == "empty":
        marts.mkdir()
    app = open_page(page, marts, monkeypatch)
    messages = [m.value for m in [*app.info, *app.error]]
    assert any("creator-econ run --telemetry DIR --marts DIR" in m for m in messages)
    assert charts_on(app) == 0


def test_home_explains_an_unset_marts_folder(monkeypatch):
    monkeypatch.delenv(ENV["marts_dir"], raising=False)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert any("creator-econ dashboard --marts DIR" in m.value for m in app.info)


def test_creator_page_shows_only_the_chosen_creator(published_marts, monkeypatch):
    app = open_page("views/creator.py", published_marts, monkeypatch)
    chosen = app.selectbox[0].options[-1]  # not the default, so choosing really changes it
    app.selectbox[0].set_value(chosen).run()
    assert not app.exception

    expected_sessions = {
        row[0]
        for row in duckdb.sql(
            "SELECT session_id FROM read_parquet(?) WHERE list_contains(creator_ids, ?)",
            params=[str(published_marts / "session_economics.parquet"), chosen],
        ).fetchall()
    }
    shown = app.dataframe[0].value
    assert set(shown["session_id"]) == expected_sessions
    assert all(chosen in hosts.split(", ") for hosts in shown["hosts"])

    sessions, with_earnings = duckdb.sql(
        "SELECT sessions, sessions_with_earnings FROM read_parquet(?) "
        "WHERE creator_id = ? ORDER BY week DESC LIMIT 1",
        params=[str(published_marts / "creator_weekly.parquet"), chosen],
    ).fetchall()[0]
    shown_metrics = {m.label: m.value for m in app.metric}
    assert shown_metrics["Sessions with earnings"] == f"{with_earnings} of {sessions}"


def test_creator_loaders_bind_the_creator_id(published_marts, monkeypatch):
    from dashboards import data

    monkeypatch.setenv(ENV["marts_dir"], str(published_marts))
    assert data.creator_sessions("x' OR '1'='1").is_empty()
    assert data.creator_weekly("x' OR '1'='1").is_empty()


def test_dashboard_command_serves_the_app_on_loopback(published_marts):
    """`creator-econ dashboard` starts a real Streamlit server that answers over HTTP."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "creator_econ.cli", "dashboard", "--marts", str(published_marts)]
    server = subprocess.Popen(
        [*argv, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as reply:
                    assert reply.read() == b"ok"
                    break
            except OSError:
                assert server.poll() is None, "the dashboard exited early"
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)
