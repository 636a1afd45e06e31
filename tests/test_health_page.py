"""The data health page over health tables published by a real Dagster run, and its messages
when telemetry went stale, an error-level check fails, or nothing was published yet."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from creator_econ.settings import ENV
from dashboards import data
from models.publish import HEALTH_DIR
from pipelines.assets import ingest_telemetry
from pipelines.checks import QUALITY_CHECKS
from pipelines.data_health import HEALTH_ASSETS
from pipelines.resources import PipelineSettings
from simulator.run import simulate

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGE = "views/data_health.py"
TIMEOUT = 60
NOT_JSON = "this line is not json"


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
    edge = telemetry / "sealed" / "edge-000000000001.jsonl"
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


def test_page_shows_the_ingest_log_quarantine_and_checks(published, monkeypatch):
    app = open_health(published, monkeypatch)
    metrics = {m.label: m.value for m in app.metric}
    log = health(published, "ingest_log")
    read, loaded = log["lines_read"].sum(), log["loaded"].sum()
    duplicates, quarantined = log["duplicates"].sum(), log["quarantined"].sum()
    assert read == loaded + duplicates + quarantined and quarantined == 4
    assert metrics["Files"] == "2" and metrics["Lines read"] == f"{read:,}"
    assert metrics["Quarantined"] == "4" and metrics["Duplicates dropped"] == f"{duplicates:,}"
    assert any(
        f"{read:,} = {loaded:,} + {duplicates:,} + {quarantined:,}" in s.value for s in app.success
    )

    reasons = health(published, "quarantine_reasons")["reason"].to_list()
    assert {"conflicting_duplicate", "not_json", "unknown_event_type"} <= set(reasons)
    assert [e.label.rsplit(": ", 1)[0] for e in app.expander] == reasons
    samples = [c.value for c in app.code]
    assert NOT_JSON in samples and any('"value_minor": -5' in s for s in samples)
    assert any(c.value == "`edge-000000000001.jsonl` line 3" for c in app.caption)

    checks = health(published, "check_results")
    assert app.dataframe[0].value.shape[0] == checks.height
    assert metrics["Errors failing"] == "0" and metrics["Warnings failing"] == "1"
    assert metrics["Telemetry"] == "Arriving"
    assert not app.error and not app.warning


def rewritten(published: Path, target: Path, name: str, frame: pl.DataFrame) -> None:
    shutil.copytree(published, target)
    frame.write_parquet(target / HEALTH_DIR / f"{name}.parquet")


def test_page_flags_telemetry_that_stopped_arriving(published, tmp_path, monkeypatch):
    old = datetime.now(UTC) - timedelta(days=3)
    stale = health(published, "freshness").with_columns(
        pl.lit(old).dt.cast_time_unit("us").alias("newest_file_at")
    )
    rewritten(published, tmp_path / "marts", "freshness", stale)
    app = open_health(tmp_path / "marts", monkeypatch)
    assert {m.label: m.value for m in app.metric}["Telemetry"] == "Stopped"
    assert any("No new sealed telemetry file for 3 days" in w.value for w in app.warning)


def test_page_says_when_an_error_level_check_blocks_the_marts(published, tmp_path, monkeypatch):
    checks = health(published, "check_results")
    broken = checks.with_columns(
        pl.when(pl.col("check_name") == "amounts_within_bounds")
        .then(False)
        .otherwise(pl.col("passed"))
        .alias("passed")
    )
    rewritten(published, tmp_path / "marts", "check_results", broken)
    app = open_health(tmp_path / "marts", monkeypatch)
    failing = broken.filter(~pl.col("passed") & (pl.col("severity") == "error")).height
    assert {m.label: m.value for m in app.metric}["Errors failing"] == str(failing)
    assert any("amounts_within_bounds on raw_" in e.value for e in app.error)
    shown = app.dataframe[0].value
    assert list(shown["result"][:failing]) == ["FAIL"] * failing


@pytest.mark.parametrize("folder", ["no health folder", "absent"])
def test_page_explains_missing_health_tables(folder, tmp_path, monkeypatch):
    marts = tmp_path / "marts"
    if folder == "no health folder":
        marts.mkdir()
    app = open_health(marts, monkeypatch)
    messages = [m.value for m in app.info]
    assert any(data.RUN_HINT in m for m in messages)
    if folder == "no health folder":
        assert any("No data health has been published" in m for m in messages)
    assert not app.metric and not app.dataframe


def test_quarantine_loader_binds_the_reason(published, monkeypatch):
    monkeypatch.setenv(ENV["marts_dir"], str(published))
    assert data.quarantine_samples("x' OR '1'='1").is_empty()
    assert data.quarantine_samples("not_json")["raw_line"].to_list() == [NOT_JSON]
