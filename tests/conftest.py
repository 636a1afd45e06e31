"""Shared fixtures: real files, a real embedded warehouse, a real pipeline run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from creator_econ.cli import main as cli
from warehouse.connection import connect


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Client]:
    """A fresh embedded warehouse; closed after the test (chDB holds one path per process)."""
    client = connect(f"chdb://{tmp_path / 'warehouse'}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated platform run through the real CLI: simulate, then run."""
    root = tmp_path_factory.mktemp("pipeline")
    assert (
        cli(
            [
                "simulate",
                "--out",
                str(root / "telemetry"),
                "--creators",
                "40",
                "--days",
                "9",
                "--seed",
                "11",
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "run",
                "--telemetry",
                str(root / "telemetry"),
                "--marts",
                str(root / "marts"),
                "--data",
                str(root),
            ]
        )
        == 0
    )
    return root


@pytest.fixture(scope="session")
def published_marts(pipeline_run: Path) -> Path:
    return pipeline_run / "marts"
