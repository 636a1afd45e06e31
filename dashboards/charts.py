"""Altair charts the pages share. Money becomes float here, for drawing, and nowhere else.

Each builder takes a Polars frame and the columns to draw (with the labels readers see), selects
only those columns (so no exact decimal or list ever reaches the chart as such), and returns a
chart ready for `st.altair_chart`. Number formats are d3 formats; `~` drops trailing zeros.
"""

from __future__ import annotations

import altair as alt
import polars as pl
from altair.utils.schemapi import UndefinedType

HEIGHT = 260
DATE_FORMAT = "%d %b"
LEGEND = alt.Legend(orient="bottom", title=None, columns=2)  # wraps instead of running off


def _long(frame: pl.DataFrame, x: str, series: dict[str, str]) -> pl.DataFrame:
    """One row per (x, series) with float values, so a chart can colour by series."""
    return (
        frame.select(x, *(pl.col(column).cast(pl.Float64) for column in series))
        .rename(series)
        .unpivot(index=x, variable_name="series", value_name="value")
    )


def _time_x(x: str) -> alt.X:
    """One band per day or week, labelled by its date, so weekly charts get no in-between ticks."""
    axis = alt.Axis(format=DATE_FORMAT, labelAngle=0, labelOverlap=True)
    return alt.X(f"yearmonthdate({x}):O", title=None, axis=axis)


def _y(field: str, title: str, y_format: str, *, counts: bool = False) -> alt.Y:
    """The value axis; counts get whole-number ticks only."""
    axis = alt.Axis(format=y_format, tickMinStep=1 if counts else alt.Undefined)
    return alt.Y(field, title=title, axis=axis)


def _legend(series: dict[str, str]) -> alt.Color | UndefinedType:
    """Colour by series with a legend, or leave one series in the theme's colour."""
    if len(series) == 1:
        return alt.Undefined
    labels = list(series.values())
    return alt.Color("series:N", sort=labels, legend=LEGEND)


def _tooltip(x: str, y_format: str) -> list[alt.Tooltip]:
    return [
        alt.Tooltip(f"{x}:T", title="date", format="%a %d %b %Y"),
        alt.Tooltip("series:N", title="measure"),
        alt.Tooltip("value:Q", title="value", format=y_format),
    ]


def _over_dates(
    frame: pl.DataFrame, x: str, series: dict[str, str], y_format: str, mark: str, **encodings
) -> alt.Chart:
    """The frame's series in long form, drawn over dates with a legend and a tooltip."""
    chart = alt.Chart(_long(frame, x, series), height=HEIGHT)
    marked = chart.mark_line(point=True) if mark == "line" else chart.mark_bar()
    return marked.encode(
        x=_time_x(x), color=_legend(series), tooltip=_tooltip(x, y_format), **encodings
    )


def lines(
    frame: pl.DataFrame, x: str, series: dict[str, str], *, y_title: str, y_format: str
) -> alt.Chart:
    """One line per series over dates (ratios and unit costs)."""
    return _over_dates(frame, x, series, y_format, "line", y=_y("value:Q", y_title, y_format))


def stacked_bars(
    frame: pl.DataFrame, x: str, series: dict[str, str], *, y_title: str, y_format: str
) -> alt.Chart:
    """Parts stacked into their total, one bar per date (cost components)."""
    return _over_dates(
        frame,
        x,
        series,
        y_format,
        "bar",
        y=_y("sum(value):Q", y_title, y_format),
        order=alt.Order("series:N"),
    )


def grouped_bars(
    frame: pl.DataFrame, x: str, series: dict[str, str], *, y_title: str, y_format: str
) -> alt.Chart:
    """Counts side by side per date, for comparing a part with its whole (hours, sessions)."""
    return _over_dates(
        frame,
        x,
        series,
        y_format,
        "bar",
        y=_y("value:Q", y_title, y_format, counts=True),
        xOffset=alt.XOffset("series:N", sort=list(series.values())),
    )


def contribution(frame: pl.DataFrame, x: str, *, y_title: str) -> alt.LayerChart:
    """Platform revenue above zero, transaction and infra cost below it, contribution as a line."""
    signed = frame.select(
        x,
        "platform_revenue",
        -pl.col("transaction_cost"),
        -pl.col("infra_cost"),
        "contribution",
    )
    parts = {
        "platform_revenue": "Platform revenue",
        "transaction_cost": "Transaction cost",
        "infra_cost": "Infra cost",
    }
    total = {"contribution": "Contribution"}
    color = alt.Color(
        "series:N",
        scale=alt.Scale(
            domain=[*parts.values(), *total.values()],
            range=["#2ca02c", "#ff7f0e", "#d62728", "#333333"],
        ),
        legend=LEGEND,
    )
    y = _y("value:Q", y_title, ",.2~f")
    bars = (
        alt.Chart(_long(signed, x, parts))
        .mark_bar()
        .encode(x=_time_x(x), y=y, color=color, tooltip=_tooltip(x, ",.2~f"))
    )
    line = (
        alt.Chart(_long(signed, x, total))
        .mark_line(point=True)
        .encode(x=_time_x(x), y=y, color=color, tooltip=_tooltip(x, ",.2~f"))
    )
    return alt.layer(bars, line, height=HEIGHT)


def histogram(
    frame: pl.DataFrame, column: str, *, title: str, x_format: str, unit_interval: bool
) -> alt.Chart:
    """How many creators fall in each band of a per-creator number; missing values are left out.

    unit_interval: the number is a share from 0 to 1, so bands are tenths of it.
    """
    values = frame.select(pl.col(column).cast(pl.Float64)).drop_nulls()
    binning = alt.Bin(extent=[0, 1], step=0.1) if unit_interval else alt.Bin(maxbins=20)
    return (
        alt.Chart(values, height=HEIGHT)
        .mark_bar()
        .encode(
            x=alt.X(f"{column}:Q", bin=binning, title=title, axis=alt.Axis(format=x_format)),
            y=_y("count():Q", "creators", "d", counts=True),
            tooltip=[
                alt.Tooltip(f"{column}:Q", bin=binning, title=title, format=x_format),
                alt.Tooltip("count():Q", title="creators"),
            ],
        )
    )
