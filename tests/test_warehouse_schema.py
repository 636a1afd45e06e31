"""The warehouse schema, table by table: its DDL is the reviewed snapshot, and it runs.

Every table of `warehouse.registry.TABLES` has its DDL in `tests/snapshots/ddl/<table>.sql`,
read and checked by hand (column types, a COMMENT on every column of every lasting table,
MergeTree engines ordered by their lookup or time key). A change to the schema fails here until
the snapshot is regenerated on purpose and reviewed in the diff:

    CREATOR_ECON_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_warehouse_schema.py

Each DDL is also run on a real embedded warehouse, and the warehouse's own catalogue
(`system.tables`, `system.columns`) must show the table with the columns the snapshot names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from telemetry.events import EVENT_FIELDS
from warehouse.connection import connect
from warehouse.registry import TABLES, Table, all_ddl, ensure_warehouse_schema

SNAPSHOTS = Path(__file__).parent / "snapshots" / "ddl"
UPDATE = os.environ.get("CREATOR_ECON_UPDATE_SNAPSHOTS") == "1"
BY_NAME = {t.name: t for t in TABLES}
LASTING = [t.name for t in TABLES if t.kind != "staging"]
STAGING = [t.name for t in TABLES if t.kind == "staging"]


def snapshot_path(name: str) -> Path:
    return SNAPSHOTS / f"{name}.sql"


def snapshot(table: Table) -> str:
    """The reviewed DDL; rewritten from the code only when CREATOR_ECON_UPDATE_SNAPSHOTS=1."""
    path = snapshot_path(table.name)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table.ddl() + "\n", encoding="utf-8")
    assert path.is_file(), (
        f"no snapshot for {table.name}: run with CREATOR_ECON_UPDATE_SNAPSHOTS=1, then review "
        f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )
    return path.read_text(encoding="utf-8").removesuffix("\n")


# --- parsing a snapshot, independently of the code that wrote it -------------------------------


def split_top_level(text: str) -> list[str]:
    """`text` split at commas outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == "'" and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def columns_of(ddl: str) -> list[tuple[str, str, str | None, str | None]]:
    """(name, type, comment, default) of each column, read from the DDL text."""
    opening = ddl.index("(")
    depth = 0
    for closing in range(opening, len(ddl)):
        depth += {"(": 1, ")": -1}.get(ddl[closing], 0)
        if depth == 0:
            break
    columns = []
    for definition in split_top_level(ddl[opening + 1 : closing]):
        if definition.startswith("INDEX "):  # a data-skipping index, not a column
            continue
        comment = re.search(r" COMMENT '((?:[^'\\]|\\.)*)'$", definition)
        if comment:
            definition = definition[: comment.start()]
        name, rest = definition.split(" ", 1)
        column_type, _, default = rest.partition(" DEFAULT ")
        columns.append(
            (name, column_type.strip(), comment and comment.group(1), default.strip() or None)
        )
    return columns


def clause(ddl: str, keyword: str) -> str | None:
    """The text of a table clause on its own line (ENGINE, PARTITION BY, ORDER BY)."""
    found = re.search(rf"^{keyword} (?:= )?(.+)$", ddl, re.MULTILINE)
    return found.group(1) if found else None


def table_comment(ddl: str) -> str | None:
    found = re.search(r"\nCOMMENT '((?:[^'\\]|\\.)*)'$", ddl)
    return found.group(1) if found else None


# --- the snapshot ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BY_NAME))
def test_ddl_equals_its_reviewed_snapshot(name: str) -> None:
    table = BY_NAME[name]
    assert table.ddl() == snapshot(table), (
        f"the DDL of {name} changed: review it, then regenerate tests/snapshots/ddl/ with "
        "CREATOR_ECON_UPDATE_SNAPSHOTS=1"
    )


def test_every_snapshot_is_a_registered_table() -> None:
    on_disk = {p.stem for p in SNAPSHOTS.glob("*.sql")}
    if UPDATE:
        for stale in on_disk - set(BY_NAME):
            snapshot_path(stale).unlink()
        on_disk &= set(BY_NAME)
    assert on_disk == set(BY_NAME)


def test_the_registry_has_every_raw_table_and_the_bookkeeping() -> None:
    raw = {t.name for t in TABLES if t.kind == "raw"}
    assert raw == {f"raw_{event_type}" for event_type in EVENT_FIELDS}
    assert {t.name for t in TABLES if t.kind == "bookkeeping"} == {
        "event_index",
        "quarantine",
        "ingest_log",
        "ingest_attempts",
        "marts_dirty_days",
        "check_results",
        "schema_migrations",
    }
    assert {t.name for t in TABLES if t.kind == "aggregate"} == {
        "egress_by_day",
        "session_usage_end",
        "event_days",
    }
    assert set(STAGING) == {
        "_stage_lines",
        "_stage_verdicts",
        "_stage_outcomes",
        "_stage_loaded",
        "_stage_unknown_type",
        *(f"_stage_{event_type}" for event_type in EVENT_FIELDS),
    }
    assert len(BY_NAME) == len(TABLES), "two tables share a name"
    # Creating the schema creates exactly the lasting tables, each once and idempotently.
    assert len(all_ddl()) == len(LASTING)
    assert all(ddl.startswith("CREATE TABLE IF NOT EXISTS ") for ddl in all_ddl())


@pytest.mark.parametrize("name", [*LASTING, *STAGING])
def test_every_column_has_a_comment(name: str) -> None:
    missing = [c[0] for c in columns_of(snapshot(BY_NAME[name])) if not c[2]]
    assert not missing, f"{name}: columns without a COMMENT: {missing}"


@pytest.mark.parametrize("name", LASTING)
def test_lasting_tables_are_merge_trees_with_a_sort_key_and_a_comment(name: str) -> None:
    ddl = snapshot(BY_NAME[name])
    assert clause(ddl, "ENGINE") == "MergeTree"  # never Replacing: dedup is done by ingest
    order_by = clause(ddl, "ORDER BY")
    assert order_by, name
    names = {c[0] for c in columns_of(ddl)}
    keys = [k.strip() for k in order_by.strip("()").split(",")]
    assert set(keys) <= names, f"{name} is ordered by columns it does not have: {keys}"
    assert table_comment(ddl), f"{name} has no table comment"


@pytest.mark.parametrize("name", [t.name for t in TABLES if t.kind == "raw"])
def test_raw_tables_hold_the_event_model_by_month_and_time(name: str) -> None:
    """Envelope, every field of the event type in the model's order, then where it came from;
    partitioned by month and ordered by time, the models' access path."""
    event_type = name.removeprefix("raw_")
    ddl = snapshot(BY_NAME[name])
    expected = [
        "event_id",
        "occurred_at",
        "source",
        *(f.name for f in EVENT_FIELDS[event_type]),
        "_file",
        "_line",
    ]
    assert [c[0] for c in columns_of(ddl)] == expected
    assert clause(ddl, "PARTITION BY") == "toYYYYMM(occurred_at)"
    assert clause(ddl, "ORDER BY") == "(occurred_at, event_id)"
    types = {c[0]: c[1] for c in columns_of(ddl)}
    assert types["event_id"] == "UUID"
    assert types["occurred_at"] == "DateTime64(6, 'UTC')"
    money = [f.name for f in EVENT_FIELDS[event_type] if f.name.endswith("_minor")]
    assert all(types[m] == "Int64" for m in money), money


def test_staging_tables_live_in_memory() -> None:
    """Memory tables, and a Set (always in memory) for the positions to load."""
    for name in STAGING:
        engine = "Set" if name == "_stage_loaded" else "Memory"
        assert snapshot(BY_NAME[name]).endswith(f" ENGINE = {engine}"), name


# --- the DDL runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One embedded warehouse for the module's DDL runs (chDB opens one path at a time)."""
    client = connect(f"chdb://{tmp_path_factory.mktemp('schema') / 'warehouse'}")
    yield client
    client.close()


def normalized(column_type: str) -> str:
    """A type as the catalogue spells it: without the line breaks it may put in tuples."""
    return re.sub(r"\s+", " ", column_type).replace("( ", "(").replace(" )", ")")


@pytest.mark.parametrize("name", list(BY_NAME))
def test_the_ddl_creates_the_table_with_its_columns(schema_warehouse: Client, name: str) -> None:
    table = BY_NAME[name]
    client = schema_warehouse
    client.command(f"DROP TABLE IF EXISTS {name}")
    client.command(table.ddl())
    (engine, sorting_key, partition_key, comment), *more = client.query(
        "SELECT engine, sorting_key, partition_key, comment FROM system.tables "
        "WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": name},
    ).result_rows
    assert not more
    ddl = snapshot(table)
    assert engine == (clause(ddl, "ENGINE") or ddl.rsplit("ENGINE = ", 1)[1])
    if order_by := clause(ddl, "ORDER BY"):
        assert sorting_key == order_by.strip("()")
    assert partition_key == (clause(ddl, "PARTITION BY") or "")
    assert comment == (table_comment(ddl) or "")
    stored = client.query(
        "SELECT name, type, comment, default_expression FROM system.columns "
        "WHERE database = currentDatabase() AND table = {name:String} ORDER BY position",
        parameters={"name": name},
    ).result_rows
    expected = [
        (column, normalized(kind), comment or "", default or "")
        for column, kind, comment, default in columns_of(ddl)
    ]
    assert [(n, normalized(t), c, d) for n, t, c, d in stored] == expected


def test_creating_the_schema_twice_creates_each_lasting_table_once(
    schema_warehouse: Client,
) -> None:
    client = schema_warehouse
    for (table,) in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
    ).result_rows:
        client.command(f"DROP TABLE {table}")
    ensure_warehouse_schema(client)
    ensure_warehouse_schema(client)  # IF NOT EXISTS: a second call changes nothing
    tables = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
    ).result_rows
    assert sorted(n for (n,) in tables) == sorted(LASTING)
