"""Publishing marts: each Parquet file is replaced atomically, so readers never see half a file."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def publish(marts: dict[str, pa.Table], marts_dir: Path) -> list[Path]:
    marts_dir = Path(marts_dir)
    marts_dir.mkdir(parents=True, exist_ok=True)
    return [publish_one(table, marts_dir / f"{name}.parquet") for name, table in marts.items()]


def publish_one(table: pa.Table, target: Path) -> Path:
    temporary = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target
