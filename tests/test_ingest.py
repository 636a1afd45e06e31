"""Ingest of hand-written telemetry: loads, duplicates, conflicts, every quarantine reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.loader import ingest, pending_files
from warehouse.bookkeeping import INGEST_ATTEMPTS
from warehouse.raw_tables import raw_table

GIFT = {
    "event_id": "00000000-0000-4000-8000-000000000001",
    "event_type": "gift_sent",
    "schema_version": 1,
    "occurred_at": "2026-10-01T10:05:00.000000Z",
    "source": "t",
    "gift_id": "g1",
    "session_id": "s1",
    "sender_id": "u1",
    "coins": 10,
    "value_minor": 10,
    "currency": "USD",
    "splits": [{"creator_id": "c1", "share_minor": 3}, {"creator_id": "c2", "share_minor": 2}],
    "platform_fee_minor": 5,
}
ORDER = {
    "event_id": "00000000-0000-4000-8000-000000000002",
    "event_type": "order_paid",
    "schema_version": 1,
    "occurred_at": "2026-10-01T11:00:00.000000Z",
    "source": "t",
    "order_id": "o1",
    "session_id": None,
    "creator_id": "c1",
    "product_id": "p1",
    "quantity": 1,
    "gross_minor": 1000,
    "currency": "USD",
    "payment_fee_minor": 59,
    "commission_minor": 80,
    "creator_net_minor": 861,
}


def line(event: dict, **changes) -> str:
    body = {**event, **changes}
    for key in [k for k, v in changes.items() if v is ...]:
        del body[key]
    return json.dumps(body, separators=(",", ":"))


def event_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def write(root: Path, name: str, lines: list[str | bytes]) -> Path:
    sealed = root / "sealed"
    sealed.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path = sealed / name
    path.write_bytes(data)
    return path


def outcomes(client) -> dict[int, str]:
    rows = client.query("SELECT _line, reason FROM quarantine ORDER BY _line").result_rows
    return dict(rows)


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
def test_loads_valid_lines_and_counts_every_line(tmp_path, warehouse, in_warehouse):
    write(tmp_path, "t-000000000001.jsonl", [line(GIFT), line(ORDER)])
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=in_warehouse)
    assert [(f.lines_read, f.loaded, f.duplicates, f.quarantined) for f in report.files] == [
        (2, 2, 0, 0)
    ]
    gift = warehouse.query(
        "SELECT gift_id, coins, splits, _file, _line FROM raw_gift_sent"
    ).result_rows
    assert gift == [
        (
            "g1",
            10,
            [{"creator_id": "c1", "share_minor": 3}, {"creator_id": "c2", "share_minor": 2}],
            "t-000000000001.jsonl",
            1,
        )
    ]
    assert warehouse.query("SELECT session_id FROM raw_order_paid").result_rows == [(None,)]


def test_duplicates_within_and_across_files_are_counted_once(tmp_path, warehouse):
    write(tmp_path, "t-000000000001.jsonl", [line(GIFT), line(GIFT)])
    write(tmp_path, "t-000000000002.jsonl", [line(GIFT), line(ORDER)])
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert [(f.loaded, f.duplicates, f.quarantined) for f in report.files] == [
        (1, 1, 0),
        (1, 1, 0),
    ]
    assert warehouse.query("SELECT count() FROM raw_gift_sent").result_rows == [(1,)]


def test_conflicting_duplicate_is_quarantined_and_the_first_stays(tmp_path, warehouse):
    write(tmp_path, "t-000000000001.jsonl", [line(GIFT)])
    ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    changed = line(GIFT, coins=11, value_minor=11, platform_fee_minor=6)
    write(tmp_path, "t-000000000002.jsonl", [changed, changed])
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert [(f.loaded, f.duplicates, f.quarantined, f.conflicting) for f in report.files] == [
        (0, 0, 2, 2)
    ]
    assert warehouse.query("SELECT coins FROM raw_gift_sent").result_rows == [(10,)]
    assert warehouse.query(
        "SELECT reason, raw_line, _file, _line FROM quarantine ORDER BY _line"
    ).result_rows == [
        ("conflicting_duplicate", changed, "t-000000000002.jsonl", 1),
        ("conflicting_duplicate", changed, "t-000000000002.jsonl", 2),
    ]


BAD_LINES: list[tuple[str | bytes, str]] = [
    ("not json", "not_json"),
    (b'{"event_id":"\xff"}', "not_utf8"),
    ("[1, 2]", "not_json_object"),
    (line(GIFT, event_id=...), "missing_field:event_id"),
    (line(GIFT, event_id="not-a-uuid"), "invalid_field:event_id"),
    (line(GIFT, event_type="gift_exploded"), "unknown_event_type"),
    (line(GIFT).replace("{", '{"event_type":"viewer_joined",', 1), "duplicate_key"),
    (line(GIFT, schema_version=2), "unknown_schema_version"),
    (line(GIFT, occurred_at="yesterday"), "invalid_field:occurred_at"),
    (line(GIFT, occurred_at="2026-02-30T00:00:00.000000Z"), "invalid_field:occurred_at"),
    (line(GIFT, coins="10"), "invalid_field:coins"),
    (line(GIFT, coins=10.5), "invalid_field:coins"),
    (line(GIFT, gift_id=7), "invalid_field:gift_id"),
    (line(GIFT, splits=...), "missing_field:splits"),
    (line(GIFT, splits=[{"creator_id": "c1"}]), "invalid_field:splits"),
    (line(GIFT, currency="XXX"), "unknown_currency"),
    (line(GIFT, platform_fee_minor=4), "invariant:gift_split_sum"),
    (
        line(GIFT, splits=[{"creator_id": "c1", "share_minor": -1}], platform_fee_minor=11),
        "invariant:negative_share",
    ),
    (line(GIFT, coins=0), "invariant:coins_not_positive"),
    (line(ORDER, creator_net_minor=860), "invariant:order_net"),
    (line(ORDER, session_id=5), "invalid_field:session_id"),
    (
        line(ORDER, gross_minor=-1, payment_fee_minor=0, commission_minor=0, creator_net_minor=-1),
        "invariant:negative_gross_minor",
    ),
]


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
def test_every_quarantine_reason_keeps_line_file_and_number(tmp_path, warehouse, in_warehouse):
    lines = [bad for bad, _ in BAD_LINES]
    lines = [
        raw
        if isinstance(raw, bytes) or not raw.startswith("{")
        else raw.replace(GIFT["event_id"], event_id(100 + i)).replace(
            ORDER["event_id"], event_id(200 + i)
        )
        for i, raw in enumerate(lines)
    ]
    write(tmp_path, "t-000000000001.jsonl", lines)
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=in_warehouse)
    expected = {i + 1: reason for i, (_, reason) in enumerate(BAD_LINES)}
    assert outcomes(warehouse) == expected
    (file,) = report.files
    assert (file.lines_read, file.loaded, file.quarantined) == (len(BAD_LINES), 0, len(BAD_LINES))
    stored = warehouse.query("SELECT raw_line FROM quarantine WHERE _line = 1").result_rows
    assert stored == [("not json",)]


def test_rerun_loads_nothing_and_log_adds_up(tmp_path, warehouse):
    write(tmp_path, "t-000000000001.jsonl", [line(GIFT), line(GIFT), "oops", line(ORDER)])
    ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert pending_files(warehouse, tmp_path) == []
    again = ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert again.files == []
    log = warehouse.query(
        "SELECT lines_read, loaded, duplicates, quarantined FROM ingest_log"
    ).result_rows
    assert log == [(4, 2, 1, 1)]


def test_interrupted_load_is_rolled_back_before_reloading(tmp_path, warehouse):
    path = write(tmp_path, "t-000000000001.jsonl", [line(GIFT)])
    ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    # Simulate a crash after the inserts but before the ingest log: drop the log row only.
    warehouse.command(
        "DELETE FROM ingest_log WHERE _file = {f:String}", parameters={"f": path.name}
    )
    assert warehouse.query(f"SELECT count() FROM {INGEST_ATTEMPTS}").result_rows == [(1,)]
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert [(f.loaded, f.duplicates) for f in report.files] == [(1, 0)]
    assert warehouse.query(f"SELECT count() FROM {raw_table('gift_sent')}").result_rows == [(1,)]
    assert warehouse.query("SELECT count() FROM event_index").result_rows == [(1,)]


def test_valid_lines_in_any_json_layout_load_alike(tmp_path, warehouse):
    """Spacing, key order, extra keys and escapes do not change what a valid line loads."""
    canonical = line(GIFT)
    relaid = json.dumps(
        {"extra": {"nested": [1]}, **dict(reversed(list(GIFT.items()))), "gift_id": "g\u00e9/1"},
        indent=1,
    ).replace("\n", " ")
    relaid = relaid.replace(GIFT["event_id"], event_id(7))
    write(tmp_path, "t-000000000001.jsonl", [canonical, relaid])
    report = ingest(warehouse, tmp_path, read_files_in_warehouse=True)
    assert [(f.loaded, f.quarantined) for f in report.files] == [(2, 0)]
    rows = warehouse.query(
        "SELECT gift_id, coins, value_minor, splits, occurred_at FROM raw_gift_sent ORDER BY _line"
    ).result_rows
    assert rows[0][1:] == rows[1][1:]
    assert [r[0] for r in rows] == ["g1", "g\u00e9/1"]


def test_a_relative_embedded_dsn_is_a_folder_here(tmp_path, monkeypatch):
    from warehouse.connection import connect

    monkeypatch.chdir(tmp_path)
    client = connect("chdb://data/warehouse")  # not a host named "data"
    try:
        assert client.command("SELECT 1") == 1
    finally:
        client.close()
    assert (tmp_path / "data" / "warehouse").is_dir()
