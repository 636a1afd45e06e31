"""Every read the dashboards make, cached: the pages never open a file or a database themselves.

Each loader opens an in-memory DuckDB, reads a published Parquet mart with its path (and any
filter value) bound as a parameter, and returns a Polars frame. Money stays an exact decimal here;
charts turn it into floats at the last moment.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import streamlit as st

from creator_econ.settings import environment
from models.publish import HEALTH_DIR

RUN_HINT = "creator-econ run --telemetry DIR --marts DIR"
TTL_SECONDS = 60  # a publish shows up within a minute without restarting the app


class MartMissing(LookupError):
    """The marts folder is not set, or a mart a page needs has not been published yet."""


def marts_dir() -> Path | None:
    """The marts folder the app was started with, if any."""
    folder = environment().get("marts_dir")
    return Path(folder) if folder else None


def mart_path(name: str) -> str:
    """Path of a published mart, or MartMissing with what to do about it."""
    folder = _published_folder()
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise MartMissing(
            f"`{name}.parquet` is not in `{folder}` yet. "
            f"Run `{RUN_HINT}` first to publish the marts."
        )
    return str(path)


def _published_folder() -> Path:
    """The marts folder, or MartMissing when it is not set or not there yet."""
    folder = marts_dir()
    if folder is None:
        raise MartMissing(
            f"No marts folder is set. Publish the marts with `{RUN_HINT}`, then start the "
            "dashboards with `creator-econ dashboard --marts DIR`."
        )
    if not folder.is_dir():
        raise MartMissing(
            f"The marts folder `{folder}` does not exist yet. "
            f"Run `{RUN_HINT}` first to publish the marts."
        )
    return folder


def _query(sql: str, *params: object) -> pl.DataFrame:
    """Rows of one bound query; times come back in UTC whatever the server's time zone."""
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.sql(sql, params=list(params)).pl()


@st.cache_data(ttl=TTL_SECONDS)
def latest_day() -> date | None:
    """The latest day in the marts, for the freshness line."""
    frame = _query("SELECT max(day) AS day FROM read_parquet(?)", mart_path("platform_daily"))
    return frame["day"][0]


@st.cache_data(ttl=TTL_SECONDS)
def platform_daily() -> pl.DataFrame:
    """The platform's daily finance numbers, one row per day."""
    return _query("SELECT * FROM read_parquet(?) ORDER BY day", mart_path("platform_daily"))


@st.cache_data(ttl=TTL_SECONDS)
def platform_weekly() -> pl.DataFrame:
    """The platform's weekly earnings-frequency numbers, one row per week."""
    return _query("SELECT * FROM read_parquet(?) ORDER BY week", mart_path("platform_weekly"))


@st.cache_data(ttl=TTL_SECONDS)
def creators_in_week(week: date) -> pl.DataFrame:
    """Every creator's numbers for one week, for the distributions across creators."""
    return _query(
        "SELECT * FROM read_parquet(?) WHERE week = ? ORDER BY creator_id",
        mart_path("creator_weekly"),
        week,
    )


@st.cache_data(ttl=TTL_SECONDS)
def creator_ids() -> list[str]:
    """Creators with at least one week in the marts, for choosing one."""
    frame = _query(
        "SELECT DISTINCT creator_id FROM read_parquet(?) ORDER BY creator_id",
        mart_path("creator_weekly"),
    )
    return frame["creator_id"].to_list()


@st.cache_data(ttl=TTL_SECONDS)
def creator_weekly(creator_id: str) -> pl.DataFrame:
    """One creator's weekly numbers, oldest week first."""
    return _query(
        "SELECT * FROM read_parquet(?) WHERE creator_id = ? ORDER BY week",
        mart_path("creator_weekly"),
        creator_id,
    )


@st.cache_data(ttl=TTL_SECONDS)
def creator_sessions(creator_id: str) -> pl.DataFrame:
    """Sessions the creator hosted or co-hosted, newest first."""
    return _query(
        "SELECT * FROM read_parquet(?) WHERE list_contains(creator_ids, ?) "
        "ORDER BY started_at DESC, session_id",
        mart_path("session_economics"),
        creator_id,
    )


@st.cache_data(ttl=TTL_SECONDS)
def reporting_currency() -> str:
    """The currency every amount in the marts is in (named only in the daily mart)."""
    frame = _query(
        "SELECT DISTINCT reporting_currency FROM read_parquet(?) ORDER BY 1",
        mart_path("platform_daily"),
    )
    return " / ".join(frame["reporting_currency"].drop_nulls().to_list())


# Ratios of platform_daily, each as (numerator, denominator) of additive columns.
DAILY_RATIOS = {
    "cost_per_live_minute": ("infra_cost", "live_minutes"),
    "cost_per_viewer_minute": ("infra_cost", "viewer_minutes"),
    "failure_rate": ("failed_transactions", "attempts"),
    "cost_per_transaction": ("transaction_cost", "transactions"),
    "contribution_margin": ("contribution", "platform_revenue"),
    "take_rate": ("platform_revenue", "gross_volume"),
}


def weekly_finance(daily: pl.DataFrame) -> pl.DataFrame:
    """platform_daily rolled up to weeks (Monday keys, in the `day` column): amounts and counts
    are summed, and each ratio is recomputed from the sums, never averaged across days."""
    ratios = set(DAILY_RATIOS)
    labels = ["cost_model_version", "reporting_currency"]
    additive = [c for c in daily.columns if c not in ratios | {"day", *labels}]
    weeks = (
        daily.with_columns(pl.col("day").dt.truncate("1w"))
        .group_by("day", maintain_order=True)
        .agg(*(pl.col(c).sum() for c in additive), *(pl.col(c).first() for c in labels))
        .with_columns(attempts=pl.col("transactions") + pl.col("failed_transactions"))
    )
    weeks = weeks.with_columns(
        (
            pl.col(top).cast(pl.Float64)
            / pl.when(pl.col(bottom) != 0).then(pl.col(bottom).cast(pl.Float64))
        ).alias(name)
        for name, (top, bottom) in DAILY_RATIOS.items()
    )
    return weeks.drop("attempts").select(daily.columns)


# Data health: tables the pipeline publishes into the `health/` folder of the marts folder.


def health_path(name: str) -> str:
    """Path of a published health table, or MartMissing with what to do about it."""
    folder = _published_folder() / HEALTH_DIR
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise MartMissing(
            f"No data health has been published in `{folder}` yet. Run `{RUN_HINT}` to "
            "ingest telemetry, run the data-quality checks and publish it."
        )
    return str(path)


@st.cache_data(ttl=TTL_SECONDS)
def ingest_log() -> pl.DataFrame:
    """What ingest did with each sealed file, newest first."""
    return _query(
        "SELECT * FROM read_parquet(?) ORDER BY ingested_at DESC, file", health_path("ingest_log")
    )


@st.cache_data(ttl=TTL_SECONDS)
def quarantine_reasons() -> pl.DataFrame:
    """Quarantined lines per reason, most frequent first."""
    return _query(
        "SELECT * FROM read_parquet(?) ORDER BY lines DESC, reason",
        health_path("quarantine_reasons"),
    )


@st.cache_data(ttl=TTL_SECONDS)
def quarantine_samples(reason: str) -> pl.DataFrame:
    """The sample lines kept for one quarantine reason, by file and line."""
    return _query(
        "SELECT * FROM read_parquet(?) WHERE reason = ? ORDER BY file, line",
        health_path("quarantine_samples"),
        reason,
    )


@st.cache_data(ttl=TTL_SECONDS)
def duplicates() -> pl.DataFrame:
    """Redelivered lines per telemetry source."""
    return _query("SELECT * FROM read_parquet(?) ORDER BY source", health_path("duplicates"))


@st.cache_data(ttl=TTL_SECONDS)
def freshness() -> dict | None:
    """The one row of freshness facts, or None when the file holds none."""
    rows = _query("SELECT * FROM read_parquet(?)", health_path("freshness")).to_dicts()
    return rows[0] if rows else None


@st.cache_data(ttl=TTL_SECONDS)
def check_results() -> pl.DataFrame:
    """The latest outcome of every data-quality check: failures first, errors before
    warnings."""
    return _query(
        "SELECT * FROM read_parquet(?) "
        "ORDER BY passed, severity = 'warn', suite, check_name, target",
        health_path("check_results"),
    )
