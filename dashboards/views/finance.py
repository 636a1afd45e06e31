"""Finance: what a live minute and a transaction cost, and what the platform keeps."""

import polars as pl
import streamlit as st

from dashboards import charts, data, ui

st.title("Finance")
with ui.marts_required():
    daily = data.platform_daily()
ui.require_rows(daily, "days")

range_column, grain_column = st.columns([3, 1])
with range_column:
    start, end = ui.date_range(daily["day"], "Days (UTC)")
with grain_column:
    # `?per=week` in the address opens the weekly view, so a link can share it.
    grains = ["day", "week"]
    asked = st.query_params.get("per", "day")
    grain = st.radio(
        "Per",
        grains,
        index=grains.index(asked) if asked in grains else 0,
        horizontal=True,
        help="Weeks start on Monday.",
    )
days = daily.filter(pl.col("day").is_between(start, end))
if days.is_empty():
    st.info("No days in this range; widen it.", icon=":material/info:")
    st.stop()
# The charts below plot one point per period; a week's ratios come from its sums.
periods = days if grain == "day" else data.weekly_finance(days)

currency = " / ".join(days["reporting_currency"].unique(maintain_order=True).to_list())
versions = ", ".join(days["cost_model_version"].unique(maintain_order=True).to_list())
st.caption(
    f"Cost model **{versions}** · amounts in **{currency}** · {start:%d %b %Y} to "
    f"{end:%d %b %Y}. Headline numbers are over the whole range, not averages of days."
)

sums = days.select(
    pl.col(
        "platform_revenue",
        "gross_volume",
        "contribution",
        "infra_cost",
        "live_minutes",
        "transaction_cost",
        "transactions",
    ).sum()
).row(0, named=True)
revenue, contribution = sums["platform_revenue"], sums["contribution"]
headline = [*st.columns(3), *st.columns(3)]
headline[0].metric(
    "Platform revenue",
    ui.money(revenue, currency),
    help="Gift platform fees plus order commissions, minus commissions of refunded orders.",
)
headline[1].metric(
    "Contribution",
    ui.money(contribution, currency),
    help="Platform revenue minus transaction cost minus infra cost.",
)
headline[2].metric(
    "Contribution margin",
    ui.percent(ui.ratio(contribution, revenue)),
    help="Contribution as a share of platform revenue.",
)
headline[3].metric(
    "Take rate",
    ui.percent(ui.ratio(revenue, sums["gross_volume"]), 2),
    help="Platform revenue as a share of gross volume (gifts plus paid orders, before refunds).",
)
headline[4].metric(
    "Cost per live minute",
    ui.money(ui.ratio(sums["infra_cost"], sums["live_minutes"]), currency, 4),
    help="Infra cost divided by the minutes sessions were live.",
)
headline[5].metric(
    "Cost per transaction",
    ui.money(ui.ratio(sums["transaction_cost"], sums["transactions"]), currency, 4),
    help="Transaction cost divided by coin purchases, gifts and paid orders.",
)

left, right = st.columns(2)
with left:
    st.subheader("Cost per live minute")
    ui.chart(
        charts.lines(
            periods,
            "day",
            {"cost_per_live_minute": "Cost per live minute"},
            y_title=f"{currency} per live minute",
            y_format=",.4~f",
        ),
        f"Each {grain}'s infra cost (usage priced by the cost model, plus its share of the "
        f"fixed monthly cost) divided by the minutes sessions were live in that {grain}.",
    )
with right:
    st.subheader("Cost per transaction")
    ui.chart(
        charts.lines(
            periods,
            "day",
            {"cost_per_transaction": "Cost per transaction"},
            y_title=f"{currency} per transaction",
            y_format=",.4~f",
        ),
        f"Each {grain}'s transaction cost (payment and store fees, the per-transaction fee, and "
        "payment fees of refunded orders) divided by its coin purchases, gifts and paid orders. "
        f"A {grain} with no transactions has no point.",
    )

left, right = st.columns(2)
with left:
    st.subheader("Contribution margin and take rate")
    ui.chart(
        charts.lines(
            periods,
            "day",
            {"contribution_margin": "Contribution margin", "take_rate": "Take rate"},
            y_title="share",
            y_format=".1~%",
        ),
        "Contribution margin: what is left of platform revenue after transaction and infra "
        "cost, as a share of it. Take rate: platform revenue as a share of gross volume. "
        f"A {grain} without revenue (or volume) has no point.",
    )
with right:
    st.subheader("Contribution and its parts")
    ui.chart(
        charts.contribution(periods, "day", y_title=f"{currency} per {grain}"),
        "Platform revenue above zero, transaction and infra cost below it; the line is the "
        "contribution left over (revenue minus both costs). Refunds count on the day of refund.",
    )

left, right = st.columns(2)
with left:
    st.subheader("Infra cost by component")
    ui.chart(
        charts.stacked_bars(
            periods,
            "day",
            {
                "publish_cost": "Publish",
                "delivery_cost": "Delivery",
                "transcode_cost": "Transcode",
                "relay_cost": "Relay",
                "egress_cost": "Egress",
                "recording_cost": "Recording",
                "fixed_cost": "Fixed",
            },
            y_title=f"{currency} per {grain}",
            y_format=",.2~f",
        ),
        "Usage minutes and bytes priced by the cost model: publishing, delivery to viewers, "
        "transcoding, relay, egress (cheaper per GB as the month's volume grows) and recording, "
        "plus the fixed monthly cost spread evenly over the month's days.",
    )
with right:
    st.subheader("Transaction cost by component")
    ui.chart(
        charts.stacked_bars(
            periods,
            "day",
            {
                "payment_fees": "Payment fees",
                "store_fees": "Store fees",
                "per_transaction_fees": "Per-transaction fees",
                "refunded_payment_fees": "Payment fees of refunds",
            },
            y_title=f"{currency} per {grain}",
            y_format=",.2~f",
        ),
        "Payment and app-store fees on coin purchases, the fixed fee on every transaction, and "
        f"the payment fees of orders refunded in that {grain}.",
    )
