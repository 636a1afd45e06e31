"""Creator: one creator's weeks and sessions. Until sign-in arrives, the creator is picked here."""

import polars as pl
import streamlit as st

from dashboards import charts, data, ui

st.title("Creator")
with ui.marts_required():
    creator_ids = data.creator_ids()
    currency = data.reporting_currency()
if not creator_ids:
    st.info(f"The marts hold no creators yet. Run `{data.RUN_HINT}` once telemetry has arrived.")
    st.stop()

creator_id = st.selectbox("Creator", creator_ids)
with ui.marts_required():
    weeks = data.creator_weekly(creator_id)
    sessions = data.creator_sessions(creator_id)

latest = weeks.row(-1, named=True)
st.subheader(f"{ui.week_label(latest['week'])} (latest)")
headline = [*st.columns(3), *st.columns(3)]
headline[0].metric(
    "Earnings",
    ui.money(latest["earnings"], currency),
    help="Gift shares plus net sales, minus net sales of refunded orders.",
)
headline[1].metric(
    "Earning hours",
    f"{latest['earning_hours']} of {latest['live_hours']}",
    help="Clock hours you were live in that held at least one gift or sale, out of all of them.",
)
headline[2].metric(
    "Earning-hour ratio",
    ui.percent(latest["earning_hour_ratio"]),
    help="Earning hours as a share of live hours.",
)
headline[3].metric(
    "Sessions with earnings",
    f"{latest['sessions_with_earnings']} of {latest['sessions']}",
    help="Sessions started this week in which you earned, out of all you were live in.",
)
headline[4].metric(
    "Minutes to first earning",
    ui.number(latest["median_minutes_to_first_earning"], 1),
    help="Median over sessions with earnings: minutes from going live to the first gift or sale.",
)
headline[5].metric(
    "Top session share",
    ui.percent(latest["top_session_share"]),
    help="Your best session's share of the week's earnings: near 100% means one lucky stream.",
)

left, right = st.columns(2)
with left:
    ui.chart(
        charts.stacked_bars(
            weeks,
            "week",
            {"earnings": "Earnings"},
            y_title=f"{currency} per week",
            y_format=",.2~f",
        ),
        "Earnings by week: gift shares and net sales, less refunds, on the day they happen.",
    )
with right:
    ui.chart(
        charts.grouped_bars(
            weeks,
            "week",
            {"live_hours": "Live hours", "earning_hours": "Earning hours"},
            y_title="clock hours",
            y_format=",.0f",
        ),
        "Live hours: clock hours you were live in. Earning hours: those that held at least one "
        "gift or sale. The closer the bars, the more steadily effort turns into income.",
    )

left, right = st.columns(2)
with left:
    ui.chart(
        charts.lines(
            weeks,
            "week",
            {
                "earning_hour_ratio": "Earning-hour ratio",
                "top_session_share": "Top session share",
            },
            y_title="share",
            y_format=".1~%",
        ),
        "Earning-hour ratio: earning hours out of live hours (higher is better). Top session "
        "share: your best session's part of the week's earnings (lower means steadier).",
    )
with right:
    ui.chart(
        charts.grouped_bars(
            weeks,
            "week",
            {
                "sessions": "Sessions",
                "sessions_with_earnings": "Sessions with earnings",
            },
            y_title="sessions",
            y_format=",.0f",
        ),
        "Sessions started in the week that you were live in, and those in which you earned.",
    )

ui.chart(
    charts.lines(
        weeks,
        "week",
        {"median_minutes_to_first_earning": "Median minutes to first earning"},
        y_title="minutes",
        y_format=",.1~f",
    ),
    "Over your sessions with earnings, the median minutes from going live to the first gift or "
    "sale. A week without earnings has no point.",
)

st.subheader("Sessions")
st.dataframe(
    sessions.select(
        "session_id",
        pl.col("creator_ids").list.join(", ").alias("hosts"),
        "started_at",
        pl.col("ended_at").dt.strftime("%Y-%m-%d %H:%M").fill_null("still live"),
        "live_minutes",
        "viewer_minutes",
        "creator_earnings",
        "gross_volume",
        "platform_revenue",
        "infra_cost",
        "contribution",
    ),
    hide_index=True,
    column_config={
        "session_id": "Session",
        "hosts": "Hosts",
        "started_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm"),
        "ended_at": st.column_config.TextColumn("Ended (UTC)"),
        "live_minutes": st.column_config.NumberColumn("Live min", format="%.0f"),
        "viewer_minutes": st.column_config.NumberColumn("Viewer min", format="%.0f"),
        "creator_earnings": st.column_config.NumberColumn("Earnings", format="%.2f"),
        "gross_volume": st.column_config.NumberColumn("Gross", format="%.2f"),
        "platform_revenue": st.column_config.NumberColumn("Platform rev.", format="%.2f"),
        "infra_cost": st.column_config.NumberColumn("Infra cost", format="%.2f"),
        "contribution": st.column_config.NumberColumn("Contribution", format="%.2f"),
    },
)
st.caption(
    f"Sessions you hosted or co-hosted, newest first; amounts in {currency}. Amounts are the "
    "whole session's, across all its hosts. A session with no end is still live."
)
