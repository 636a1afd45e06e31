"""Putting a batch's files into the lines staging table, one row per line with its position.

An embedded warehouse reads each file itself (`file(..., LineAsString)`); a server cannot see
the files, so their lines are sent as Arrow, built without a Python loop over lines.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.batch_sql import FILE_SHIFT, STAGE_FILE
from warehouse.staging_tables import LINES


def stage_file(client: Client, index: int, path: Path, read_in_warehouse: bool) -> None:
    base = index << FILE_SHIFT
    if read_in_warehouse:
        client.command(STAGE_FILE, parameters={"base": base, "path": str(path.resolve())})
    else:
        client.insert_arrow(LINES, lines_table(path, base))


def lines_table(path: Path, base: int) -> pa.Table:
    """The file's lines as Arrow, for a warehouse that cannot read the file itself.

    Built with array operations only: the newline bytes are dropped from the buffer and the
    line boundaries become the Arrow offsets, so millions of lines cost no Python loop.
    """
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buffer = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    offsets = np.concatenate([[0], newlines - np.arange(len(newlines))]).astype(np.int64)
    content = np.delete(buffer, newlines)
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(newlines), [None, pa.py_buffer(offsets), pa.py_buffer(content)]
    )
    positions = pa.array(np.arange(1, len(newlines) + 1, dtype=np.uint64) + np.uint64(base))
    return pa.table({"pos": positions, "line": lines})


def unreadable(path: Path) -> str | None:
    """Why a sealed file cannot be read at all (a cut-off .gz, an I/O error), or None.

    Such a file must not stop every later run: it is logged as one quarantined line."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 24):
                    pass
        else:
            with open(path, "rb"):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"unreadable file: {type(exc).__name__}: {exc}"
    return None
