"""Product: do creators earn often and early while live, and how evenly are earnings spread."""

import polars as pl
import streamlit as st

from dashboards import charts, data, ui

st.title("Product")
with ui.marts_required():
    weekly = data.platform_weekly()
ui.require_rows(weekly, "weeks")

week = st.selectbox(
    "Week (Monday, UTC)", weekly["week"].reverse().to_list(), format_func=ui.week_label
)
with ui.marts_required():
    creators = data.creators_in_week(week)
this_week = weekly.filter(pl.col("week") == week).row(0, named=True)

headline = [*st.columns(3), *st.columns(3)]
headline[0].metric(
    "Active creators",
    ui.number(this_week["active_creators"]),
    help="Creators live for any time this week.",
)
headline[1].metric(
    "Earning creator share",
    ui.percent(this_week["earning_creator_share"]),
    help="Share of active creators with at least one earning event (a gift or a sale).",
)
headline[2].metric(
    "Median earning-hour ratio",
    ui.percent(this_week["median_earning_hour_ratio"]),
    help="For the typical active creator: the share of their live hours holding an earning event.",
)
headline[3].metric(
    "Earnings Gini",
    ui.number(this_week["earnings_gini"], 2),
    help="0 when every active creator earns the same, near 1 when one creator earns it all.",
)
headline[4].metric(
    "Top 1% earnings share",
    ui.percent(this_week["top1pct_earnings_share"]),
    help="Share of all earnings going to the top 1% of active creators.",
)
headline[5].metric(
    "Median minutes to first earning",
    ui.number(creators["median_minutes_to_first_earning"].median(), 1),
    help="Across creators who earned: the middle of their median wait, in a session, from going "
    "live to their first earning event.",
)

st.subheader(f"{ui.week_label(week)}, across creators")
if creators.is_empty():
    st.info("No creator rows for this week.", icon=":material/info:")
else:
    left, middle, right = st.columns(3)
    with left:
        ui.chart(
            charts.histogram(
                creators,
                "earning_hour_ratio",
                title="earning-hour ratio",
                x_format=".0%",
                unit_interval=True,
            ),
            "Each creator's earning hours out of their live hours: the clock hours they were "
            "live in that held at least one gift or sale for them. Right is better: effort "
            "turning into income often.",
        )
    with middle:
        ui.chart(
            charts.histogram(
                creators,
                "top_session_share",
                title="top session share",
                x_format=".0%",
                unit_interval=True,
            ),
            "The lottery index: each earning creator's best single session as a share of their "
            "week's earnings. Near 100% means one lucky stream; near 1/sessions means steady.",
        )
    with right:
        ui.chart(
            charts.histogram(
                creators,
                "median_minutes_to_first_earning",
                title="median minutes to first earning",
                x_format=",.0f",
                unit_interval=False,
            ),
            "For each creator who earned: the median, over their sessions with earnings, of "
            "the minutes from going live to the first gift or sale. Left is better.",
        )

st.subheader("Week by week")
left, right = st.columns(2)
with left:
    ui.chart(
        charts.lines(
            weekly,
            "week",
            {
                "earning_creator_share": "Earning creator share",
                "median_earning_hour_ratio": "Median earning-hour ratio",
            },
            y_title="share",
            y_format=".1~%",
        ),
        "Earning creator share: active creators who earned at all that week. Median "
        "earning-hour ratio: the typical active creator's share of live hours that earned.",
    )
with right:
    ui.chart(
        charts.lines(
            weekly,
            "week",
            {
                "earnings_gini": "Earnings Gini",
                "top1pct_earnings_share": "Top 1% share",
            },
            y_title="0 = even, 1 = all to one",
            y_format=".2f",
        ),
        "How concentrated earnings are among active creators. Gini: 0 when all earn the same, "
        "near 1 when one earns it all. Top 1% share: the part of all earnings the top 1% take.",
    )
