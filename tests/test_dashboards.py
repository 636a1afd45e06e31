"""What a reader sees on the dashboards: the numbers, checked against hand arithmetic.

Most tests open the pages on small hand-made marts with round numbers (`HAND`), so each
expected text below is worked out by hand, not by the dashboard code. A few open the marts a
real pipeline run published, compare against sums made here with Polars, and check that the
hand-made marts have the published schema.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from creator_econ.settings import ENV
from dashboards import data

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGES = ["views/home.py", "views/finance.py", "views/product.py", "views/creator.py"]
TIMEOUT = 30  # the first run imports DuckDB, Polars and Altair
CURRENCY = "EUR"  # not the default USD, so a hard-coded currency would show
VERSION = "cost-model-test"


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Streamlit's data cache is process-wide: one test's marts must not leak into the next."""
    st.cache_data.clear()


def open_page(page: str, marts: Path, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv(ENV["marts_dir"], str(marts))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT)
    app.query_params.update(query)
    app.run()
    if page != PAGES[0]:
        app.switch_page(page).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def charts_on(app: AppTest) -> int:
    return len(app.get("vega_lite_chart"))


def chart_frames(app: AppTest) -> list[pl.DataFrame]:
    """The data every chart on the page draws, as sent to the browser (Arrow IPC)."""
    return [
        pl.from_arrow(pa.ipc.open_stream(dataset.data.data).read_all())
        for chart in app.get("vega_lite_chart")
        for dataset in chart.proto.datasets
    ]


def series(app: AppTest, name: str) -> dict[date, float | None]:
    """One drawn series (by its legend label) as {x: value}, whichever chart draws it."""
    found = [
        frame.filter(pl.col("series") == name)
        for frame in chart_frames(app)
        if "series" in frame.columns
    ]
    rows = [row for frame in found for row in frame.iter_rows()]
    assert rows, f"no chart draws {name!r}"
    return {x: value for x, _, value in rows}


def histogram_values(app: AppTest, column: str) -> list[float]:
    """The values a histogram bins (one per creator)."""
    frames = [f for f in chart_frames(app) if f.columns == [column]]
    assert len(frames) == 1, f"expected one histogram of {column}"
    return frames[0][column].to_list()


# --- Hand-made marts --------------------------------------------------------------------------

MONEY = pl.Decimal(38, 9)
DAILY_SCHEMA = {
    "day": pl.Date,
    "live_minutes": pl.Float64,
    "viewer_minutes": pl.Float64,
    "sessions": pl.Int64,
    "infra_cost": MONEY,
    "cost_per_live_minute": pl.Float64,
    "cost_per_viewer_minute": pl.Float64,
    "transactions": pl.Int64,
    "failed_transactions": pl.Int64,
    "failure_rate": pl.Float64,
    "transaction_cost": MONEY,
    "cost_per_transaction": pl.Float64,
    "gross_volume": MONEY,
    "platform_revenue": MONEY,
    "creator_earnings": MONEY,
    "contribution": MONEY,
    "contribution_margin": pl.Float64,
    "take_rate": pl.Float64,
    **{
        name: MONEY
        for name in (
            "publish_cost",
            "delivery_cost",
            "transcode_cost",
            "relay_cost",
            "egress_cost",
            "recording_cost",
            "fixed_cost",
            "payment_fees",
            "store_fees",
            "per_transaction_fees",
            "refunded_payment_fees",
            "gift_platform_fees",
            "order_commissions",
            "refunded_commissions",
        )
    },
    "cost_model_version": pl.String,
    "reporting_currency": pl.String,
}
WEEKLY_SCHEMA = {
    "week": pl.Date,
    "active_creators": pl.Int64,
    "earning_creators": pl.Int64,
    "earning_creator_share": pl.Float64,
    "median_earning_hour_ratio": pl.Float64,
    "earnings_gini": pl.Float64,
    "top1pct_earnings_share": pl.Float64,
    "cost_model_version": pl.String,
}
CREATOR_SCHEMA = {
    "week": pl.Date,
    "creator_id": pl.String,
    "live_minutes": pl.Float64,
    "live_hours": pl.Int64,
    "earning_hours": pl.Int64,
    "earning_hour_ratio": pl.Float64,
    "sessions": pl.Int64,
    "sessions_with_earnings": pl.Int64,
    "median_minutes_to_first_earning": pl.Float64,
    "earning_events": pl.Int64,
    "earnings": MONEY,
    "top_session_share": pl.Float64,
    "infra_cost": MONEY,
    "cost_model_version": pl.String,
}
SESSION_SCHEMA = {
    "session_id": pl.String,
    "creator_ids": pl.List(pl.String),
    "started_at": pl.Datetime("us"),
    "ended_at": pl.Datetime("us"),
    "live_minutes": pl.Float64,
    "viewer_minutes": pl.Float64,
    "gross_volume": MONEY,
    "creator_earnings": MONEY,
    "platform_revenue": MONEY,
    "infra_cost": MONEY,
    "contribution": MONEY,
    "cost_model_version": pl.String,
}

SUN_1_NOV, MON_2_NOV, TUE_3_NOV = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)
WEEK_OF_26_OCT, WEEK_OF_2_NOV = date(2026, 10, 26), MON_2_NOV


def day_row(
    day: date,
    *,
    revenue: int,
    gross: int,
    transaction_cost: int,
    transactions: int,
    infra_cost: int,
    live_minutes: int,
) -> dict:
    """One platform_daily row; its own ratios are what the mart would hold for the day."""
    contribution = revenue - transaction_cost - infra_cost
    zero = Decimal(0)
    return {
        "day": day,
        "live_minutes": float(live_minutes),
        "viewer_minutes": 10.0 * live_minutes,
        "sessions": 3,
        "infra_cost": Decimal(infra_cost),
        "cost_per_live_minute": infra_cost / live_minutes,
        "cost_per_viewer_minute": infra_cost / (10.0 * live_minutes),
        "transactions": transactions,
        "failed_transactions": 0,
        "failure_rate": 0.0,
        "transaction_cost": Decimal(transaction_cost),
        "cost_per_transaction": transaction_cost / transactions,
        "gross_volume": Decimal(gross),
        "platform_revenue": Decimal(revenue),
        "creator_earnings": Decimal(gross - revenue),
        "contribution": Decimal(contribution),
        "contribution_margin": contribution / revenue,
        "take_rate": revenue / gross,
        "publish_cost": zero,
        "delivery_cost": zero,
        "transcode_cost": zero,
        "relay_cost": zero,
        "egress_cost": zero,
        "recording_cost": zero,
        "fixed_cost": Decimal(infra_cost),
        "payment_fees": zero,
        "store_fees": zero,
        "per_transaction_fees": Decimal(transaction_cost),
        "refunded_payment_fees": zero,
        "gift_platform_fees": Decimal(revenue),
        "order_commissions": zero,
        "refunded_commissions": zero,
        "cost_model_version": VERSION,
        "reporting_currency": CURRENCY,
    }


# Three days over two weeks (Sunday 1 Nov ends the week of 26 Oct). Written out of order, so
# "the latest day" cannot be "the last row".
DAYS = [
    day_row(
        TUE_3_NOV,
        revenue=7000,
        gross=30000,
        transaction_cost=1000,
        transactions=40,
        infra_cost=2000,
        live_minutes=200,
    ),  # fmt: skip
    day_row(
        SUN_1_NOV,
        revenue=1000,
        gross=10000,
        transaction_cost=500,
        transactions=30,
        infra_cost=1000,
        live_minutes=150,
    ),  # fmt: skip
    day_row(
        MON_2_NOV,
        revenue=2000,
        gross=10000,
        transaction_cost=500,
        transactions=10,
        infra_cost=1000,
        live_minutes=50,
    ),  # fmt: skip
]

# platform_weekly: as the pipeline would have summarised CREATORS below.
WEEKS = [
    (WEEK_OF_26_OCT, 4, 2, 0.5, 0.25, 0.5, 0.75),
    (WEEK_OF_2_NOV, 5, 4, 0.8, 0.4, 0.4567, 0.3),
]

# creator_weekly, a row per creator and week
CREATOR_COLUMNS = [
    "week",
    "creator_id",
    "live_hours",
    "earning_hours",
    "earning_hour_ratio",
    "sessions",
    "sessions_with_earnings",
    "median_minutes_to_first_earning",
    "earnings",
    "top_session_share",
]
CREATORS = [
    (WEEK_OF_26_OCT, "c-01", 10, 5, 0.5, 5, 2, 12.5, "500", 0.6),
    (WEEK_OF_26_OCT, "c-02", 6, 3, 0.5, 3, 3, 7.5, "300", 0.4),
    (WEEK_OF_26_OCT, "c-03", 3, 0, 0.0, 1, 0, None, "0", None),
    (WEEK_OF_26_OCT, "c-06", 4, 0, 0.0, 2, 0, None, "0", None),
    (WEEK_OF_2_NOV, "c-01", 8, 6, 0.75, 4, 3, 4.0, "1234.5", 0.5),
    (WEEK_OF_2_NOV, "c-02", 4, 0, 0.0, 2, 0, None, "0", None),
    (WEEK_OF_2_NOV, "c-03", 2, 1, 0.5, 1, 1, 10.0, "20", 1.0),
    (WEEK_OF_2_NOV, "c-04", 10, 3, 0.3, 5, 2, 20.0, "75", 0.8),
    (WEEK_OF_2_NOV, "c-05", 5, 2, 0.4, 3, 1, 31.0, "12", 1.0),
    # Not live that week (so not active), yet earning: a sale settled after the stream.
    (WEEK_OF_2_NOV, "c-07", 0, 0, None, 0, 0, None, "9", None),
]

# session_economics: c-01 hosts s-1 and co-hosts s-2 (still live); "c-010" is another creator.
SESSIONS = [
    ("s-1", ["c-01"], datetime(2026, 11, 2, 10), datetime(2026, 11, 2, 11)),
    ("s-2", ["c-02", "c-01"], datetime(2026, 11, 3, 9), None),
    ("s-3", ["c-02"], datetime(2026, 10, 27, 20), datetime(2026, 10, 27, 21, 30)),
    ("s-4", ["c-03", "c-010"], datetime(2026, 11, 1, 8), datetime(2026, 11, 1, 9)),
]


def write_marts(folder: Path, *, empty: bool = False) -> Path:
    """The four marts the pages read, hand-made; `empty`: published but without a row."""
    folder.mkdir(parents=True)
    weekly = [dict(zip(WEEKLY_SCHEMA, (*w, VERSION), strict=True)) for w in WEEKS]
    creators = [
        {
            **dict(zip(CREATOR_COLUMNS, row, strict=True)),
            "live_minutes": 60.0 * row[2],
            "earning_events": 2 * row[6],
            "earnings": Decimal(row[8]),
            "infra_cost": Decimal(row[2]),
            "cost_model_version": VERSION,
        }
        for row in CREATORS
    ]
    sessions = [
        {
            "session_id": session,
            "creator_ids": hosts,
            "started_at": started,
            "ended_at": ended,
            "live_minutes": 60.0,
            "viewer_minutes": 600.0,
            "gross_volume": Decimal(100),
            "creator_earnings": Decimal(80),
            "platform_revenue": Decimal(20),
            "infra_cost": Decimal(5),
            "contribution": Decimal(15),
            "cost_model_version": VERSION,
        }
        for session, hosts, started, ended in SESSIONS
    ]
    for name, rows, schema in [
        ("platform_daily", DAYS, DAILY_SCHEMA),
        ("platform_weekly", weekly, WEEKLY_SCHEMA),
        ("creator_weekly", creators, CREATOR_SCHEMA),
        ("session_economics", sessions, SESSION_SCHEMA),
    ]:
        frame = pl.DataFrame([] if empty else rows, schema=schema, orient="row")
        frame.write_parquet(folder / f"{name}.parquet")
    return folder


@pytest.fixture(scope="module")
def hand_marts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_marts(tmp_path_factory.mktemp("hand") / "marts")


# --- Home -------------------------------------------------------------------------------------


def test_home_says_data_through_the_latest_day(hand_marts, monkeypatch):
    app = open_page("views/home.py", hand_marts, monkeypatch)
    links = app.get("page_link")
    assert [(link.proto.label, link.proto.page) for link in links] == [
        ("Finance", "finance"),
        ("Product", "product"),
        ("Creator", "creator"),
    ]
    through = [md.value for md in app.markdown if "Data through" in md.value]
    assert through == [
        "**Data through Tuesday 03 November 2026** (UTC), the latest day in the marts."
    ]
    assert any(f"`{hand_marts}`" in c.value for c in app.caption)


# --- Finance ----------------------------------------------------------------------------------

HEADLINE = [
    "Platform revenue",
    "Contribution",
    "Contribution margin",
    "Take rate",
    "Cost per live minute",
    "Cost per transaction",
]


@pytest.mark.parametrize(
    ("picked", "shown", "caption"),
    [
        pytest.param(
            None,
            # 1000+2000+7000; -500+500+4000; 4000/10000; 10000/50000; 4000/400; 2000/80
            ["10,000.00 EUR", "4,000.00 EUR", "40.0%", "20.00%", "10.0000 EUR", "25.0000 EUR"],
            "01 Nov 2026 to 03 Nov 2026",
            id="whole range",
        ),
        pytest.param(
            (MON_2_NOV, TUE_3_NOV),
            # 9000; 4500; 4500/9000; 9000/40000; 3000/250; 1500/50
            ["9,000.00 EUR", "4,500.00 EUR", "50.0%", "22.50%", "12.0000 EUR", "30.0000 EUR"],
            "02 Nov 2026 to 03 Nov 2026",
            id="last two days",
        ),
        pytest.param(
            (SUN_1_NOV, SUN_1_NOV),
            # 1000; -500; -500/1000; 1000/10000; 1000/150; 500/30
            ["1,000.00 EUR", "-500.00 EUR", "-50.0%", "10.00%", "6.6667 EUR", "16.6667 EUR"],
            "01 Nov 2026 to 01 Nov 2026",
            id="one losing day",
        ),
        pytest.param(
            (TUE_3_NOV,),  # a half-picked range counts as its one day
            # 7000; 4000; 4000/7000; 7000/30000; 2000/200; 1000/40
            ["7,000.00 EUR", "4,000.00 EUR", "57.1%", "23.33%", "10.0000 EUR", "25.0000 EUR"],
            "03 Nov 2026 to 03 Nov 2026",
            id="half-picked",
        ),
    ],
)
def test_finance_headline_is_over_the_picked_days(picked, shown, caption, hand_marts, monkeypatch):
    app = open_page("views/finance.py", hand_marts, monkeypatch)
    assert app.date_input[0].value == (SUN_1_NOV, TUE_3_NOV)
    if picked is not None:
        app.date_input[0].set_value(picked).run()
        assert not app.exception, [e.message for e in app.exception]
    assert metrics(app) == dict(zip(HEADLINE, shown, strict=True))
    assert any(
        c.value.startswith(f"Cost model **{VERSION}** · amounts in **{CURRENCY}** · {caption}.")
        for c in app.caption
    )


# Each week's ratios from the week's sums. The week of 2 Nov holds Monday (1000 infra over 50
# live minutes, 20.0) and Tuesday (2000 over 200, 10.0): 3000/250 = 12.0, where averaging the
# days would give 15.0. Likewise 1500/50 = 30.0 per transaction (not 37.5), 4500/9000 margin
# (not 41.1%) and 9000/40000 take rate (not 21.7%).
DAILY_POINTS = {
    "Cost per live minute": {SUN_1_NOV: 1000 / 150, MON_2_NOV: 20.0, TUE_3_NOV: 10.0},
    "Cost per transaction": {SUN_1_NOV: 500 / 30, MON_2_NOV: 50.0, TUE_3_NOV: 25.0},
    "Contribution margin": {SUN_1_NOV: -0.5, MON_2_NOV: 0.25, TUE_3_NOV: 4000 / 7000},
    "Take rate": {SUN_1_NOV: 0.1, MON_2_NOV: 0.2, TUE_3_NOV: 7000 / 30000},
    "Contribution": {SUN_1_NOV: -500.0, MON_2_NOV: 500.0, TUE_3_NOV: 4000.0},
}
WEEKLY_POINTS = {
    "Cost per live minute": {WEEK_OF_26_OCT: 1000 / 150, WEEK_OF_2_NOV: 12.0},
    "Cost per transaction": {WEEK_OF_26_OCT: 500 / 30, WEEK_OF_2_NOV: 30.0},
    "Contribution margin": {WEEK_OF_26_OCT: -0.5, WEEK_OF_2_NOV: 0.5},
    "Take rate": {WEEK_OF_26_OCT: 0.1, WEEK_OF_2_NOV: 0.225},
    "Contribution": {WEEK_OF_26_OCT: -500.0, WEEK_OF_2_NOV: 4500.0},
    "Platform revenue": {WEEK_OF_26_OCT: 1000.0, WEEK_OF_2_NOV: 9000.0},
    "Infra cost": {WEEK_OF_26_OCT: -1000.0, WEEK_OF_2_NOV: -3000.0},
    "Transaction cost": {WEEK_OF_26_OCT: -500.0, WEEK_OF_2_NOV: -1500.0},
    "Fixed": {WEEK_OF_26_OCT: 1000.0, WEEK_OF_2_NOV: 3000.0},
    "Per-transaction fees": {WEEK_OF_26_OCT: 500.0, WEEK_OF_2_NOV: 1500.0},
}


def assert_points(app: AppTest, expected: dict[str, dict[date, float]]) -> None:
    for name, points in expected.items():
        assert series(app, name) == pytest.approx(points), name


def test_finance_weeks_recompute_ratios_from_sums(hand_marts, monkeypatch):
    app = open_page("views/finance.py", hand_marts, monkeypatch)
    assert app.radio[0].value == "day"
    assert_points(app, DAILY_POINTS)
    headline = metrics(app)

    app.radio[0].set_value("week").run()
    assert not app.exception, [e.message for e in app.exception]
    assert_points(app, WEEKLY_POINTS)
    assert metrics(app) == headline  # the headline is over the range, whatever the grain
    assert any(c.value.startswith("Each week's infra cost") for c in app.caption)


def test_finance_link_opens_the_weekly_view(hand_marts, monkeypatch):
    app = open_page("views/finance.py", hand_marts, monkeypatch, per="week")
    assert app.radio[0].value == "week"
    assert_points(app, WEEKLY_POINTS)


def test_finance_link_with_an_unknown_period_shows_days(hand_marts, monkeypatch):
    app = open_page("views/finance.py", hand_marts, monkeypatch, per="fortnight")
    assert app.radio[0].value == "day"
    assert_points(app, DAILY_POINTS)


def test_weekly_ratio_with_nothing_to_divide_by_is_null():
    day = day_row(MON_2_NOV, revenue=3, gross=1, transaction_cost=1, transactions=1,
                  infra_cost=1, live_minutes=1)  # fmt: skip
    daily = pl.DataFrame(
        [{**day, "live_minutes": 0.0, "gross_volume": Decimal(0), "transactions": 0}],
        schema=DAILY_SCHEMA,
        orient="row",
    )
    week = data.weekly_finance(daily).row(0, named=True)
    assert week["day"] == WEEK_OF_2_NOV
    assert week["cost_per_live_minute"] is None
    assert week["take_rate"] is None
    assert week["cost_per_transaction"] is None
    assert week["failure_rate"] is None
    assert week["contribution_margin"] == pytest.approx(1 / 3)


# --- Product ----------------------------------------------------------------------------------

PRODUCT = {
    WEEK_OF_2_NOV: {
        "Active creators": "5",
        "Earning creator share": "80.0%",
        "Median earning-hour ratio": "40.0%",
        "Earnings Gini": "0.46",
        "Top 1% earnings share": "30.0%",
        "Median minutes to first earning": "15.0",  # middle of 4, 10, 20, 31 (c-02 earned none)
    },
    WEEK_OF_26_OCT: {
        "Active creators": "4",
        "Earning creator share": "50.0%",
        "Median earning-hour ratio": "25.0%",
        "Earnings Gini": "0.50",
        "Top 1% earnings share": "75.0%",
        "Median minutes to first earning": "10.0",  # middle of 12.5 and 7.5
    },
}
DISTRIBUTIONS = {  # each histogram's values: the week's creators that have one, in creator order
    WEEK_OF_2_NOV: {
        "earning_hour_ratio": [0.75, 0.0, 0.5, 0.3, 0.4],
        "top_session_share": [0.5, 1.0, 0.8, 1.0],
        "median_minutes_to_first_earning": [4.0, 10.0, 20.0, 31.0],
    },
    WEEK_OF_26_OCT: {
        "earning_hour_ratio": [0.5, 0.5, 0.0, 0.0],
        "top_session_share": [0.6, 0.4],
        "median_minutes_to_first_earning": [12.5, 7.5],
    },
}


def test_product_shows_the_picked_weeks_numbers(hand_marts, monkeypatch):
    app = open_page("views/product.py", hand_marts, monkeypatch)
    week = app.selectbox[0]
    assert week.options == ["Week of 02 Nov 2026", "Week of 26 Oct 2026"]  # newest first
    for picked in [WEEK_OF_2_NOV, WEEK_OF_26_OCT]:
        if picked != week.value:
            week.set_value(picked)
            app.run()
            assert not app.exception, [e.message for e in app.exception]
        assert metrics(app) == PRODUCT[picked]
        label = f"Week of {picked:%d %b %Y}, across creators"
        assert [s.value for s in app.subheader][0] == label
        for column, values in DISTRIBUTIONS[picked].items():
            assert histogram_values(app, column) == pytest.approx(values), column
        week = app.selectbox[0]
    # The week-by-week lines are the whole platform_weekly mart, whatever week is picked.
    assert series(app, "Earning creator share") == {WEEK_OF_26_OCT: 0.5, WEEK_OF_2_NOV: 0.8}
    assert series(app, "Earnings Gini") == {WEEK_OF_26_OCT: 0.5, WEEK_OF_2_NOV: 0.4567}


# --- Creator ----------------------------------------------------------------------------------

CREATOR_HEADLINES = {
    "c-01": (
        "Week of 02 Nov 2026 (latest)",
        ["1,234.50 EUR", "6 of 8", "75.0%", "3 of 4", "4.0", "50.0%"],
    ),
    "c-02": ("Week of 02 Nov 2026 (latest)", ["0.00 EUR", "0 of 4", "0.0%", "0 of 2", "—", "—"]),
    # c-06 was last live in the week of 26 Oct: its own latest week, not the marts' latest.
    "c-06": ("Week of 26 Oct 2026 (latest)", ["0.00 EUR", "0 of 4", "0.0%", "0 of 2", "—", "—"]),
    "c-07": ("Week of 02 Nov 2026 (latest)", ["9.00 EUR", "0 of 0", "—", "0 of 0", "—", "—"]),
}
CREATOR_LABELS = [
    "Earnings",
    "Earning hours",
    "Earning-hour ratio",
    "Sessions with earnings",
    "Minutes to first earning",
    "Top session share",
]
CREATOR_SESSIONS = {  # newest first, with the hosts and end as shown
    "c-01": [("s-2", "c-02, c-01", "still live"), ("s-1", "c-01", "2026-11-02 11:00")],
    "c-02": [("s-2", "c-02, c-01", "still live"), ("s-3", "c-02", "2026-10-27 21:30")],
    "c-06": [],
    "c-07": [],
}


def test_creator_page_shows_the_chosen_creators_week_and_sessions(hand_marts, monkeypatch):
    app = open_page("views/creator.py", hand_marts, monkeypatch)
    assert app.selectbox[0].options == ["c-01", "c-02", "c-03", "c-04", "c-05", "c-06", "c-07"]
    assert app.selectbox[0].value == "c-01"
    for creator in CREATOR_HEADLINES:
        if creator != app.selectbox[0].value:
            app.selectbox[0].set_value(creator).run()
            assert not app.exception, [e.message for e in app.exception]
        title, shown = CREATOR_HEADLINES[creator]
        assert app.subheader[0].value == title
        assert metrics(app) == dict(zip(CREATOR_LABELS, shown, strict=True)), creator
        table = app.dataframe[0].value
        rows = list(zip(table["session_id"], table["hosts"], table["ended_at"], strict=True))
        assert rows == CREATOR_SESSIONS[creator], creator

    app.selectbox[0].set_value("c-01").run()
    assert series(app, "Earnings") == {WEEK_OF_26_OCT: 500.0, WEEK_OF_2_NOV: 1234.5}
    assert series(app, "Earning hours") == {WEEK_OF_26_OCT: 5, WEEK_OF_2_NOV: 6}
    assert any(f"amounts in {CURRENCY}" in c.value for c in app.caption)


def test_creator_loaders_bind_the_creator_id(hand_marts, monkeypatch):
    monkeypatch.setenv(ENV["marts_dir"], str(hand_marts))
    assert data.creator_sessions("x' OR '1'='1").is_empty()
    assert data.creator_weekly("x' OR '1'='1").is_empty()
    assert data.creator_sessions("c-01")["session_id"].to_list() == ["s-2", "s-1"]


# --- Missing or empty marts -------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("folder", ["empty", "absent"])
def test_page_explains_missing_marts(page, folder, tmp_path, monkeypatch):
    marts = tmp_path / folder
    if folder == "empty":
        marts.mkdir()
    app = open_page(page, marts, monkeypatch)
    messages = [m.value for m in app.info]
    assert len(messages) == 1
    assert data.RUN_HINT in messages[0] and str(marts) in messages[0]
    assert not app.metric and charts_on(app) == 0


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("views/home.py", "The marts hold no days yet."),
        ("views/finance.py", "The marts hold no days yet."),
        ("views/product.py", "The marts hold no weeks yet."),
        ("views/creator.py", "The marts hold no creators yet."),
    ],
)
def test_page_explains_marts_without_rows(page, message, tmp_path, monkeypatch):
    app = open_page(page, write_marts(tmp_path / "marts", empty=True), monkeypatch)
    assert [m.value.startswith(message) for m in app.info] == [True]
    assert not app.metric and charts_on(app) == 0


def test_home_explains_an_unset_marts_folder(monkeypatch):
    monkeypatch.delenv(ENV["marts_dir"], raising=False)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert any("creator-econ dashboard --marts DIR" in m.value for m in app.info)


# --- On the marts of a real pipeline run ------------------------------------------------------


def test_hand_made_marts_have_the_published_schema(hand_marts, published_marts):
    for name in ["platform_daily", "platform_weekly", "creator_weekly", "session_economics"]:
        published = pl.read_parquet_schema(published_marts / f"{name}.parquet")
        assert pl.read_parquet_schema(hand_marts / f"{name}.parquet") == published, name


def real_finance_headline(marts: Path) -> dict[str, str]:
    """The finance headline over every published day, summed here with Polars."""
    daily = pl.read_parquet(marts / "platform_daily.parquet")
    (currency,) = daily["reporting_currency"].unique().to_list()
    total = {
        c: sum(daily[c].to_list(), Decimal(0)) for c in DAILY_SCHEMA if DAILY_SCHEMA[c] == MONEY
    }
    total["live_minutes"] = daily["live_minutes"].sum()
    total["transactions"] = daily["transactions"].sum()

    def share(top: str, bottom: str) -> float:
        return float(total[top]) / float(total[bottom])

    return {
        "Platform revenue": f"{total['platform_revenue']:,.2f} {currency}",
        "Contribution": f"{total['contribution']:,.2f} {currency}",
        "Contribution margin": f"{share('contribution', 'platform_revenue'):.1%}",
        "Take rate": f"{share('platform_revenue', 'gross_volume'):.2%}",
        "Cost per live minute": f"{share('infra_cost', 'live_minutes'):,.4f} {currency}",
        "Cost per transaction": f"{share('transaction_cost', 'transactions'):,.4f} {currency}",
    }


def test_pages_show_the_published_marts(published_marts, monkeypatch):
    """Every page renders a real run's marts, with numbers that match sums made here."""
    daily = pl.read_parquet(published_marts / "platform_daily.parquet")
    weekly = pl.read_parquet(published_marts / "platform_weekly.parquet")
    creators = pl.read_parquet(published_marts / "creator_weekly.parquet")
    sessions = pl.read_parquet(published_marts / "session_economics.parquet")

    app = open_page("views/home.py", published_marts, monkeypatch)
    assert any(f"Data through {daily['day'].max():%A %d %B %Y}**" in m.value for m in app.markdown)

    app.switch_page("views/finance.py").run()
    assert not app.exception and not app.error and not app.info
    assert metrics(app) == real_finance_headline(published_marts)
    assert charts_on(app) == 6

    app.switch_page("views/product.py").run()
    assert not app.exception and not app.error and not app.info
    latest = weekly.sort("week").row(-1, named=True)
    in_week = creators.filter(pl.col("week") == latest["week"], pl.col("live_hours") > 0)
    shown = metrics(app)
    assert shown["Active creators"] == f"{latest['active_creators']:,}"
    assert shown["Active creators"] == str(in_week.height)
    assert shown["Earning creator share"] == f"{latest['earning_creator_share']:.1%}"
    minutes = in_week["median_minutes_to_first_earning"].drop_nulls().sort().to_list()
    middle = (minutes[(len(minutes) - 1) // 2] + minutes[len(minutes) // 2]) / 2
    assert shown["Median minutes to first earning"] == f"{middle:,.1f}"
    assert charts_on(app) == 5

    app.switch_page("views/creator.py").run()
    assert not app.exception and not app.error and not app.info
    chosen = creators["creator_id"].sort()[-1]  # not the default, so choosing really changes it
    app.selectbox[0].set_value(chosen).run()
    assert not app.exception
    row = creators.filter(pl.col("creator_id") == chosen).sort("week").row(-1, named=True)
    shown = metrics(app)
    assert (
        shown["Sessions with earnings"] == f"{row['sessions_with_earnings']} of {row['sessions']}"
    )
    assert shown["Earning hours"] == f"{row['earning_hours']} of {row['live_hours']}"
    currency = daily["reporting_currency"][0]
    assert shown["Earnings"] == f"{row['earnings']:,.2f} {currency}"
    hosted = sessions.filter(pl.col("creator_ids").list.contains(chosen)).sort(
        ["started_at", "session_id"], descending=[True, False]
    )
    assert list(app.dataframe[0].value["session_id"]) == hosted["session_id"].to_list()
    assert charts_on(app) == 5


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
