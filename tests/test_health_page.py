"""The data health page over health tables published by a real Dagster run, and its messages
when telemetry went stale, an error-level check fails, the line counts do not balance, or
nothing was published yet.

Every number the page shows is compared with the published health tables, read here with
Polars; times are formatted in UTC, as the page labels them.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from creator_econ.settings import ENV
from dashboards import data
from models.publish import HEALTH_DIR
from pipelines.assets import ingest_telemetry
from pipelines.checks import QUALITY_CHECKS
from pipelines.health_assets import HEALTH_ASSETS
from pipelines.resources import PipelineSettings
from simulator.run import simulate

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGE = "views/data_health.py"
TIMEOUT = 60
NOT_JSON = "this line is not json"
EDGE = "edge-000000000001.jsonl"
# What bad_lines() puts in the edge file: four lines quarantined, one reason each.
QUARANTINED = {
    "conflicting_duplicate": 2,
    "not_json": 3,
    "invariant:negative_value_minor": 4,
    "unknown_event_type": 5,
}


def bad_lines(sim_file: Path) -> list[str]:
    """A redelivered line, a conflicting one, and lines quarantined for three other reasons."""
    lines = sim_file.read_text().splitlines()
    first = json.loads(lines[0])
    gift = next(json.loads(line) for line in lines if '"gift_sent"' in line)
    return [
        lines[0],
        json.dumps({**first, "source": "edited"}),
        NOT_JSON,
        json.dumps({**gift, "event_id": "00000000-0000-4000-8000-0000000000a1", "value_minor": -5}),
        json.dumps(
            {**first, "event_id": "00000000-0000-4000-8000-0000000000a2", "event_type": "x"}
        ),
    ]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The marts folder of a real run whose health tables were published by the pipeline."""
    root = tmp_path_factory.mktemp("health")
    telemetry = root / "telemetry"
    simulate(telemetry, creators=12, days=2, seed=3)
    sim_file = next((telemetry / "sealed").iterdir())
    edge = telemetry / "sealed" / EDGE
    edge.write_text("\n".join(bad_lines(sim_file)) + "\n")
    settings = PipelineSettings(
        telemetry_dir=str(telemetry),
        marts_dir=str(root / "marts"),
        warehouse=f"chdb://{root / 'warehouse'}",
    )
    result = dg.materialize(
        [ingest_telemetry, *HEALTH_ASSETS, *QUALITY_CHECKS], resources={"settings": settings}
    )
    assert result.success
    return root / "marts"


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    st.cache_data.clear()


def open_health(marts: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv(ENV["marts_dir"], str(marts))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.switch_page(PAGE).run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def health(marts: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(marts / HEALTH_DIR / f"{name}.parquet")


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def table_with(app: AppTest, column: str) -> pd.DataFrame:
    """The one table on the page that has this column."""
    tables = [t.value for t in app.dataframe if column in t.value.columns]
    assert len(tables) == 1, f"expected one table with a {column!r} column"
    return tables[0]


def utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%d %b %Y %H:%M} UTC"


def test_page_counts_every_line_as_the_ingest_log_does(published, monkeypatch):
    app = open_health(published, monkeypatch)
    shown = metrics(app)
    log = health(published, "ingest_log")
    total = {c: log[c].sum() for c in ("lines_read", "loaded", "duplicates", "quarantined")}
    # The edge file adds four quarantined lines (one a conflicting duplicate) to the run.
    assert log.height == 2 and total["quarantined"] == 4 and log["conflicting"].sum() == 1
    assert shown["Files"] == "2"
    assert shown["Lines read"] == f"{total['lines_read']:,}"
    assert shown["Loaded"] == f"{total['loaded']:,}"
    assert shown["Duplicates dropped"] == f"{total['duplicates']:,}"
    assert shown["Quarantined"] == "4"
    help_text = {m.label: m.proto.help for m in app.metric}["Quarantined"]
    assert help_text.startswith("Of which 1 conflicting duplicate")
    assert [s.value for s in app.success if "accounted for" in s.value] == [
        "Every line is accounted for: lines read = loaded + duplicates + quarantined in all 2 "
        f"files ({total['lines_read']:,} = {total['loaded']:,} + {total['duplicates']:,} + 4)."
    ]
    rows = table_with(app, "ingested_at")
    columns = ["file", "lines_read", "loaded", "duplicates", "quarantined", "conflicting"]
    assert (
        rows[columns].to_dict("records")
        == log.sort(["ingested_at", "file"], descending=[True, False]).select(columns).to_dicts()
    )

    by_source = health(published, "duplicates")
    shown_by_source = table_with(app, "duplicate_share")
    assert shown_by_source.to_dict("records") == by_source.sort("source").to_dicts()
    assert not app.error


def test_page_lists_quarantine_reasons_with_their_samples(published, monkeypatch):
    app = open_health(published, monkeypatch)
    reasons = health(published, "quarantine_reasons").sort(
        ["lines", "reason"], descending=[True, False]
    )
    samples = health(published, "quarantine_samples")
    assert dict(zip(samples["reason"], samples["line"], strict=True)) == QUARANTINED

    shown = table_with(app, "reason")
    assert list(shown["reason"]) == reasons["reason"].to_list()
    assert list(shown["lines"]) == reasons["lines"].to_list() == [1, 1, 1, 1]
    assert [e.label for e in app.expander] == [
        f"{r}: 1 line, sample lines" for r in reasons["reason"]
    ]
    for expander, reason in zip(app.expander, reasons["reason"], strict=True):
        kept = samples.filter(pl.col("reason") == reason).sort(["file", "line"])
        assert [c.value for c in expander.code] == kept["raw_line"].to_list()
        assert [c.value for c in expander.caption] == [
            f"`{row['file']}` line {row['line']:,}" for row in kept.to_dicts()
        ]
    not_json = app.expander[reasons["reason"].to_list().index("not_json")]
    assert [c.value for c in not_json.code] == [NOT_JSON]
    assert [c.value for c in not_json.caption] == [f"`{EDGE}` line 3"]


def test_page_shows_freshness_and_checks_as_published(published, monkeypatch):
    app = open_health(published, monkeypatch)
    shown = metrics(app)
    fresh = health(published, "freshness").row(0, named=True)
    assert fresh["threshold_hours"] == 24.0  # the default CREATOR_ECON_FRESHNESS_HOURS
    assert shown["Telemetry"] == "Arriving" and shown["Threshold"] == "24 h"
    assert shown["Newest file arrived"].endswith(" min ago")  # sealed moments ago
    assert shown["Newest event"] == f"{fresh['newest_event_at'].astimezone(UTC):%d %b %Y}"
    caption = (
        f"Newest file `{EDGE}` in `{fresh['telemetry_dir']}` · last file ingested "
        f"{utc(fresh['newest_ingested_at'])} · health published {utc(fresh['checked_at'])}."
    )
    assert caption in [c.value for c in app.caption]

    checks = health(published, "check_results")
    failing = checks.filter(~pl.col("passed"))
    errors = failing.filter(pl.col("severity") == "error")
    assert errors.is_empty() and failing["check_name"].to_list() == ["no_conflicting_duplicates"]
    assert shown["Checks passing"] == f"{checks.height - 1} of {checks.height}"
    assert shown["Errors failing"] == "0" and shown["Warnings failing"] == "1"
    table = table_with(app, "result")
    assert list(table["result"]) == ["FAIL"] + ["pass"] * (checks.height - 1)
    assert table.iloc[0][["severity", "check", "target"]].to_list() == [
        "warn",
        "no_conflicting_duplicates",
        "quarantine",
    ]
    assert sorted(zip(table["check"], table["target"], strict=True)) == sorted(
        zip(checks["check_name"], checks["target"], strict=True)
    )
    assert [s.value for s in app.success if "error-level" in s.value] == [
        "Every error-level check passes."
    ]
    assert not app.error and not app.warning


def rewritten(published: Path, target: Path, name: str, frame: pl.DataFrame) -> Path:
    shutil.copytree(published, target)
    frame.write_parquet(target / HEALTH_DIR / f"{name}.parquet")
    return target


@pytest.mark.parametrize(
    ("threshold", "age", "telemetry", "shown_threshold", "shown_age"),
    [
        (0.5, timedelta(hours=2), "Stopped", "30 min", "2 h"),
        (1.5, timedelta(minutes=30), "Arriving", "1.5 h", "30 min"),
        (24.0, timedelta(days=3), "Stopped", "24 h", "3 days"),
        (72.0, timedelta(hours=50), "Arriving", "3 days", "2.08 days"),  # 50 / 24
    ],
)
def test_page_judges_freshness_against_the_threshold(
    threshold, age, telemetry, shown_threshold, shown_age, published, tmp_path, monkeypatch
):
    newest = (datetime.now(UTC) - age).replace(microsecond=0)
    fresh = health(published, "freshness").with_columns(
        pl.lit(newest).dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias("newest_file_at"),
        pl.lit(threshold).alias("threshold_hours"),
    )
    app = open_health(rewritten(published, tmp_path / "marts", "freshness", fresh), monkeypatch)
    shown = metrics(app)
    assert shown["Telemetry"] == telemetry
    assert shown["Threshold"] == shown_threshold
    assert shown["Newest file arrived"] == f"{shown_age} ago"
    warnings = [w.value for w in app.warning]
    if telemetry == "Stopped":
        assert warnings == [
            f"No new sealed telemetry file for {shown_age}, more than the {shown_threshold} "
            "threshold. Check that the runtime and its relay are running and sealing files, "
            "and that the pipeline is running."
        ]
    else:
        assert warnings == []


def test_page_says_when_no_telemetry_file_arrived(published, tmp_path, monkeypatch):
    fresh = health(published, "freshness").with_columns(
        pl.lit(None, pl.String).alias("newest_file")
    )
    app = open_health(rewritten(published, tmp_path / "marts", "freshness", fresh), monkeypatch)
    telemetry_dir = fresh["telemetry_dir"][0]
    assert [w.value for w in app.warning] == [
        f"No sealed telemetry file has arrived in `{telemetry_dir}` yet."
    ]
    assert "Telemetry" not in metrics(app)


def test_page_says_when_an_error_level_check_blocks_the_marts(published, tmp_path, monkeypatch):
    checks = health(published, "check_results")
    broken = checks.with_columns(
        pl.when(pl.col("check_name") == "amounts_within_bounds")
        .then(False)
        .otherwise(pl.col("passed"))
        .alias("passed")
    )
    app = open_health(
        rewritten(published, tmp_path / "marts", "check_results", broken), monkeypatch
    )
    errors = broken.filter(~pl.col("passed") & (pl.col("severity") == "error")).sort("target")
    assert errors.height >= 1 and set(errors["check_name"]) == {"amounts_within_bounds"}
    failing = errors.height + 1  # and the warning the run already had
    shown = metrics(app)
    assert shown["Errors failing"] == str(errors.height)
    assert shown["Warnings failing"] == "1"
    assert shown["Checks passing"] == f"{checks.height - failing} of {checks.height}"
    named = ", ".join(f"amounts_within_bounds on {t}" for t in errors["target"].head(5))
    noun = "error-level check" if errors.height == 1 else "error-level checks"
    assert [e.value for e in app.error] == [
        f"{errors.height} {noun} failing ({named}). A run stops before republishing the marts "
        "while any does, so the marts may be older than the telemetry."
    ]
    table = table_with(app, "result")
    assert list(table["result"]) == ["FAIL"] * failing + ["pass"] * (checks.height - failing)
    assert list(table["severity"][:failing]) == ["error"] * errors.height + ["warn"]
    assert list(table["check"][: errors.height]) == ["amounts_within_bounds"] * errors.height


def test_page_names_files_whose_lines_do_not_balance(published, tmp_path, monkeypatch):
    log = health(published, "ingest_log")
    off = log.with_columns(
        pl.when(pl.col("file") == EDGE)
        .then(pl.col("lines_read") + 1)
        .otherwise(pl.col("lines_read"))
        .alias("lines_read")
    )
    app = open_health(rewritten(published, tmp_path / "marts", "ingest_log", off), monkeypatch)
    assert [e.value for e in app.error] == [
        f"Lines read ≠ loaded + duplicates + quarantined in 1 file: {EDGE}"
    ]
    assert metrics(app)["Lines read"] == f"{off['lines_read'].sum():,}"
    assert not [s.value for s in app.success if "accounted for" in s.value]


def test_page_says_when_nothing_was_quarantined(published, tmp_path, monkeypatch):
    none = health(published, "quarantine_reasons").clear()
    app = open_health(
        rewritten(published, tmp_path / "marts", "quarantine_reasons", none), monkeypatch
    )
    assert "No line has been quarantined." in [s.value for s in app.success]
    assert not app.expander


@pytest.mark.parametrize("folder", ["no health folder", "absent"])
def test_page_explains_missing_health_tables(folder, tmp_path, monkeypatch):
    marts = tmp_path / "marts"
    if folder == "no health folder":
        marts.mkdir()
    app = open_health(marts, monkeypatch)
    messages = [m.value for m in app.info]
    assert len(messages) == 1 and data.RUN_HINT in messages[0]
    if folder == "no health folder":
        assert messages[0].startswith(
            f"No data health has been published in `{marts / HEALTH_DIR}` yet."
        )
    else:
        assert messages[0].startswith(f"The marts folder `{marts}` does not exist yet.")
    assert not app.metric and not app.dataframe


def test_quarantine_loader_binds_the_reason(published, monkeypatch):
    monkeypatch.setenv(ENV["marts_dir"], str(published))
    assert data.quarantine_samples("x' OR '1'='1").is_empty()
    assert data.quarantine_samples("not_json")["raw_line"].to_list() == [NOT_JSON]
