"""Small pieces every page shares: the friendly stop when marts are missing, and number formats."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data

NOTHING = "—"  # shown for a ratio whose denominator is zero, or a value not there yet


@contextmanager
def marts_required() -> Iterator[None]:
    """Turn a missing mart into a clear message and end the page, instead of a traceback."""
    try:
        yield
    except data.MartMissing as missing:
        st.info(str(missing), icon=":material/info:")
        st.stop()


def require_rows(frame: pl.DataFrame, what: str) -> None:
    """End the page with a message when a mart is published but holds nothing to show yet."""
    if frame.is_empty():
        st.info(
            f"The marts hold no {what} yet. Run `{data.RUN_HINT}` again once telemetry has "
            "arrived.",
            icon=":material/info:",
        )
        st.stop()


def date_range(days: pl.Series, label: str) -> tuple[date, date]:
    """A date-range picker over the days present; a half-picked range counts as one day."""
    first, last = days.min(), days.max()
    picked = st.date_input(label, value=(first, last), min_value=first, max_value=last)
    start = picked[0] if picked else first
    end = picked[1] if len(picked) > 1 else start
    return start, end


def ratio(numerator: Decimal | float | None, denominator: Decimal | float | None) -> float | None:
    """numerator / denominator, or None when the denominator is zero (as in the marts)."""
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def money(value: Decimal | float | None, currency: str, places: int = 2) -> str:
    return NOTHING if value is None else f"{value:,.{places}f} {currency}"


def percent(value: float | None, places: int = 1) -> str:
    return NOTHING if value is None else f"{value:.{places}%}"


def number(value: float | None, places: int = 0) -> str:
    return NOTHING if value is None else f"{value:,.{places}f}"


def week_label(week: date) -> str:
    return f"Week of {week:%d %b %Y}"


def chart(figure: alt.TopLevelMixin, caption: str) -> None:
    """A chart across its column, with the sentence that says what its number means."""
    st.altair_chart(figure, width="stretch")
    st.caption(caption)
