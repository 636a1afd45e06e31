"""Publishing marts: each Parquet file is replaced atomically, so readers never see half a file.

Behind the published files, each mart is kept per partition (`PartitionStore`): a recompute
rewrites only the partitions it recomputed, and the published file is written from all of
them, streamed partition by partition, so memory follows a partition and not the history. The
published contract stays one file per mart (docs/metrics.md, "Published marts").
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from telemetry.files import fsync_dir

ROW_GROUP_ROWS = 128_000  # partitions are gathered into row groups of about this many rows
PARTITIONS_DIR = "_partitions"  # inside the marts directory; dashboards read only <mart>.parquet
HEALTH_DIR = "health"  # the data health tables, beside the marts (quality/health_tables.py)
MANIFEST = "manifest.json"


def publish_one(table: pa.Table, target: Path) -> Path:
    temporary = target.with_name(f".{target.name}.tmp")
    _write_synced(table, temporary)
    os.replace(temporary, target)
    fsync_dir(target.parent)
    return target


@dataclass(frozen=True)
class MartsUpdate:
    """Recomputed partitions of every mart, keyed by day or week, and each mart's schema."""

    partitions: dict[str, dict[date, pa.Table]]
    schemas: dict[str, pa.Schema]
    full: bool  # replaces every stored partition rather than some

    def rows(self) -> int:
        return sum(t.num_rows for parts in self.partitions.values() for t in parts.values())

    def tables(self) -> dict[str, pa.Table]:
        """Each mart's recomputed rows, in key order (the whole mart for a full update)."""
        return {
            name: pa.concat_tables([parts[k] for k in sorted(parts)]).combine_chunks()
            if parts
            else self.schemas[name].empty_table()
            for name, parts in self.partitions.items()
        }

    @staticmethod
    def combine(updates: list[MartsUpdate]) -> MartsUpdate:
        """One update of the partitions of several (computed from separate windows)."""
        partitions: dict[str, dict[date, pa.Table]] = {}
        for update in updates:
            for name, parts in update.partitions.items():
                partitions.setdefault(name, {}).update(parts)
        return MartsUpdate(partitions, updates[0].schemas, any(u.full for u in updates))


def as_stored(marts: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The marts as Parquet gives them back: new partitions then concatenate with stored ones
    (same schema, nested field names included), and a fresh publish and an assembled one are
    the same table."""
    out = {}
    for name, table in marts.items():
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        out[name] = pq.read_table(io.BytesIO(buffer.getvalue()))
    return out


class PartitionStore:
    """Each mart's partitions as `<marts>/_partitions/<mart>/<key>.parquet`, with a manifest
    naming the model fingerprint they were computed with (stored partitions of another cost
    model or model SQL are never mixed with new ones)."""

    def __init__(self, marts_dir: Path) -> None:
        self.root = Path(marts_dir) / PARTITIONS_DIR

    def stored_days(self, fingerprint: str) -> frozenset[date] | None:
        """Days of the stored platform_daily partitions, or None when the store cannot be
        reused: nothing published yet, or computed with another fingerprint."""
        try:
            manifest = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if manifest.get("fingerprint") != fingerprint:
            return None
        return frozenset(self.keys("platform_daily"))

    def keys(self, mart: str) -> list[date]:
        folder = self.root / mart
        if not folder.is_dir():
            return []
        return sorted(date.fromisoformat(p.stem) for p in folder.glob("*.parquet"))

    def path(self, mart: str, key: date, root: Path | None = None) -> Path:
        return (root or self.root) / mart / f"{key.isoformat()}.parquet"

    def write_published(self, name: str, schema: pa.Schema, target: Path) -> Path:
        """Replace the published mart with every stored partition of it, in key order,
        streamed: at most about ROW_GROUP_ROWS rows are in memory at once."""
        temporary = target.with_name(f".{target.name}.tmp")
        with pq.ParquetWriter(temporary, schema) as writer:
            pending: list[pa.Table] = []
            for key in self.keys(name):
                pending.append(pq.read_table(self.path(name, key)))
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending))
                    pending = []
            if pending or not self.keys(name):
                writer.write_table(pa.concat_tables(pending) if pending else schema.empty_table())
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        fsync_dir(target.parent)
        return target

    def save(self, update: MartsUpdate, fingerprint: str) -> None:
        """Write the update's partitions. A full update builds a new store beside the old one
        and swaps it in; a crash midway leaves no manifest, so the next run starts over."""
        if not update.full:
            for name, parts in update.partitions.items():
                (self.root / name).mkdir(parents=True, exist_ok=True)
                for key, table in parts.items():
                    publish_one(table, self.path(name, key))
            return
        fresh, old = self.root.with_name(".partitions.new"), self.root.with_name(".partitions.old")
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        for name, parts in update.partitions.items():
            (fresh / name).mkdir(parents=True)
            for key, table in parts.items():
                _write_synced(table, self.path(name, key, fresh))
            fsync_dir(fresh / name)
        manifest = fresh / MANIFEST
        manifest.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
        with open(manifest, "rb") as handle:
            os.fsync(handle.fileno())
        fsync_dir(fresh)
        if self.root.exists():
            os.replace(self.root, old)
        os.replace(fresh, self.root)
        fsync_dir(self.root.parent)
        shutil.rmtree(old, ignore_errors=True)


def _write_synced(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def publish_update(
    store: PartitionStore, update: MartsUpdate, fingerprint: str, marts_dir: Path
) -> list[Path]:
    """Store the update's partitions, then replace each published mart with all its stored
    partitions. A crash between the two leaves the published marts as they were and the dirty
    days noted, so the next run recomputes and publishes them."""
    store.save(update, fingerprint)
    marts_dir = Path(marts_dir)
    marts_dir.mkdir(parents=True, exist_ok=True)
    return [
        store.write_published(name, update.schemas[name], marts_dir / f"{name}.parquet")
        for name in update.partitions
    ]
