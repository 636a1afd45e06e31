"""A fixed-seed simulation publishes exactly the marts recorded in tests/snapshots/marts/.

The snapshot was written by the pipeline as it was before the models moved their row-level
work into the warehouse; any change to a published value, however small (a float's last bit,
a decimal's ninth place, a row more or less), fails here. The marts are checked after a run
over the first files alone and a second run over the rest (the incremental path, with the
recompute planning), and after one run over all the files from scratch: both must equal the
snapshot.

Regenerate only on purpose: `CREATOR_ECON_UPDATE_SNAPSHOTS=1 pytest tests/test_golden_marts.py`
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from creator_econ.cli import main
from models.sql import MARTS
from simulator.run import simulate

SNAPSHOTS = Path(__file__).parent / "snapshots" / "marts"
UPDATE = os.environ.get("CREATOR_ECON_UPDATE_SNAPSHOTS") == "1"
KEYS = {
    "platform_daily": ("day",),
    "creator_weekly": ("week", "creator_id"),
    "platform_weekly": ("week",),
    "session_economics": ("session_id",),
}


def text(value: Any) -> Any:
    """A value as exact text: decimals as written, floats by their shortest round-trip repr."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [text(v) for v in value]
    return value


def canonical(path: Path, name: str) -> list[str]:
    """One JSON line per row, sorted by the mart's grain, every column with its type."""
    table = pq.read_table(path)
    schema = [f"{f.name}: {f.type}" for f in table.schema]
    rows = sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in KEYS[name]))
    return [json.dumps(schema)] + [
        json.dumps({k: text(v) for k, v in row.items()}, sort_keys=True) for row in rows
    ]


def run(telemetry: Path, root: Path) -> None:
    args = ["run", "--telemetry", str(telemetry), "--marts", str(root / "marts")]
    assert main([*args, "--data", str(root)]) == 0


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    simulate(root / "all", creators=60, days=12, seed=2026, max_file_bytes=400_000)
    return root


@pytest.fixture(scope="module")
def from_scratch(simulated: Path) -> Path:
    run(simulated / "all", simulated / "scratch")
    return simulated / "scratch" / "marts"


@pytest.fixture(scope="module")
def in_two_runs(simulated: Path) -> Path:
    """The first half of the sealed files, a run, then the rest and a second run."""
    files = sorted((simulated / "all" / "sealed").iterdir())
    assert len(files) >= 4, "the simulation should span several files"
    telemetry = simulated / "growing"
    (telemetry / "sealed").mkdir(parents=True)
    for path in files[: len(files) // 2]:
        shutil.copy(path, telemetry / "sealed" / path.name)
    run(telemetry, simulated / "two_runs")
    for path in files[len(files) // 2 :]:
        shutil.copy(path, telemetry / "sealed" / path.name)
    run(telemetry, simulated / "two_runs")
    return simulated / "two_runs" / "marts"


@pytest.mark.parametrize("name", MARTS)
def test_a_run_from_scratch_publishes_the_recorded_marts(from_scratch: Path, name: str) -> None:
    snapshot = SNAPSHOTS / f"{name}.jsonl"
    lines = canonical(from_scratch / f"{name}.parquet", name)
    if UPDATE:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text("\n".join(lines) + "\n")
    recorded = snapshot.read_text().splitlines()
    assert lines[0] == recorded[0], f"{name}: the columns or their types changed"
    assert len(lines) == len(recorded), (
        f"{name}: {len(lines) - 1} rows, recorded {len(recorded) - 1}"
    )
    differing = [(a, b) for a, b in zip(lines[1:], recorded[1:], strict=True) if a != b]
    assert not differing, f"{name}: {len(differing)} rows differ, first:\n{differing[0]}"


@pytest.mark.parametrize("name", MARTS)
def test_two_runs_publish_the_same_marts_as_one(
    in_two_runs: Path, from_scratch: Path, name: str
) -> None:
    assert canonical(in_two_runs / f"{name}.parquet", name) == canonical(
        from_scratch / f"{name}.parquet", name
    )
