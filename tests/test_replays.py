"""Replays count once (docs/ingest.md): a file sealed again under new names, a file mixing seen
and unseen events, and an event redelivered months later, after the warehouse merged the
partition it was loaded into. A redelivery with another payload is quarantined, and the run says
so: in the command's output and in the Dagster materialization."""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import handmade
import pytest
from clickhouse_connect.driver.client import Client
from handmade import line, seal

from ingest.loader import IngestReport, ingest
from pipelines.assets import ingest_telemetry
from pipelines.resources import PipelineSettings
from telemetry.events import EVENT_FIELDS
from telemetry.files import sealed_file_name
from warehouse.bookkeeping import EVENT_INDEX
from warehouse.raw_tables import raw_table

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "runtime"


def gift(n: int, at: datetime, value: int = 100) -> dict[str, Any]:
    """A gift worth `value`, split 70/30 between two creators after a 10% platform fee."""
    fee = value // 10
    first = (value - fee) * 7 // 10
    return handmade.gift(n, at, value, {"c1": first, "c2": value - fee - first}, source=SOURCE)


def order(n: int, at: datetime, gross: int = 1000) -> dict[str, Any]:
    """An order of `gross` with a 3% payment fee and a 10% commission."""
    return handmade.order(n, at, gross, source=SOURCE)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def counts(report: IngestReport) -> list[tuple[str, int, int, int, int]]:
    return [(f.file, f.loaded, f.duplicates, f.quarantined, f.conflicting) for f in report.files]


def rows_per_event(client: Client) -> dict[str, int]:
    """How many rows each event_id has across every raw table (once is right)."""
    union = " UNION ALL ".join(
        f"SELECT toString(event_id) AS id FROM {raw_table(t)}" for t in EVENT_FIELDS
    )
    rows = client.query(f"SELECT id, count() FROM ({union}) GROUP BY id").result_rows
    return dict(rows)


def index_size(client: Client) -> int:
    return client.query(f"SELECT count() FROM {EVENT_INDEX}").result_rows[0][0]


def money(client: Client) -> dict[str, int]:
    """Gift value, creator shares, platform fees and order gross as loaded."""
    gifts = client.query(
        "SELECT sum(value_minor), sum(arraySum(s -> s.2, splits)), sum(platform_fee_minor) "
        f"FROM {raw_table('gift_sent')}"
    ).result_rows[0]
    gross = client.query(f"SELECT sum(gross_minor) FROM {raw_table('order_paid')}").result_rows
    return {
        "value": int(gifts[0]),
        "shares": int(gifts[1]),
        "fees": int(gifts[2]),
        "gross": int(gross[0][0]),
    }


def money_of(events: list[dict[str, Any]]) -> dict[str, int]:
    gifts = [e for e in events if e["event_type"] == "gift_sent"]
    return {
        "value": sum(g["value_minor"] for g in gifts),
        "shares": sum(s["share_minor"] for g in gifts for s in g["splits"]),
        "fees": sum(g["platform_fee_minor"] for g in gifts),
        "gross": sum(e["gross_minor"] for e in events if e["event_type"] == "order_paid"),
    }


# --- (a) a whole file sealed again under new names -------------------------------------------


@pytest.mark.parametrize("in_warehouse", [True, False], ids=["file-read", "bytes-sent"])
def test_a_file_sealed_again_under_new_names_loads_nothing_twice(tmp_path, warehouse, in_warehouse):
    telemetry = tmp_path / "telemetry"
    events = [gift(n, day("2026-10-01") + timedelta(minutes=n)) for n in range(1, 5)]
    events.append(order(5, day("2026-10-01T12:00:00")))
    first = seal(telemetry, SOURCE, events)
    assert counts(ingest(warehouse, telemetry, read_files_in_warehouse=in_warehouse)) == [
        (first.name, 5, 0, 0, 0)
    ]
    sealed = telemetry / "sealed"
    again = sealed / sealed_file_name(SOURCE, 2)  # the same source, a later sequence
    other = sealed / sealed_file_name("relay-b", 1)  # another source relaying the same file
    packed = sealed / (sealed_file_name(SOURCE, 3) + ".gz")  # the same bytes, compressed
    shutil.copyfile(first, again)
    shutil.copyfile(first, other)
    packed.write_bytes(gzip.compress(first.read_bytes()))
    report = ingest(warehouse, telemetry, read_files_in_warehouse=in_warehouse)
    assert sorted(counts(report)) == sorted((p.name, 0, 5, 0, 0) for p in (again, other, packed))
    assert set(rows_per_event(warehouse).values()) == {1}
    assert index_size(warehouse) == 5
    assert money(warehouse) == money_of(events)


# --- (b) a file mixing seen and unseen events ------------------------------------------------


def test_a_file_mixing_seen_and_unseen_events_loads_only_the_unseen(tmp_path, warehouse):
    telemetry = tmp_path / "telemetry"
    start = day("2026-10-02")
    seen = [gift(n, start + timedelta(minutes=n)) for n in range(1, 5)]
    first = seal(telemetry, SOURCE, seen)
    ingest(warehouse, telemetry, read_files_in_warehouse=True)
    unseen = [gift(5, start + timedelta(hours=2)), order(6, start + timedelta(hours=3))]
    mixed = seal(telemetry, SOURCE, [seen[2], unseen[0], seen[0], unseen[1], seen[2]])
    report = ingest(warehouse, telemetry, read_files_in_warehouse=True)
    assert counts(report) == [(mixed.name, 2, 3, 0, 0)]
    where = dict(
        warehouse.query(
            "SELECT toString(event_id), _file FROM raw_gift_sent "
            "UNION ALL SELECT toString(event_id), _file FROM raw_order_paid"
        ).result_rows
    )
    assert where == {
        **{e["event_id"]: first.name for e in seen},
        **{e["event_id"]: mixed.name for e in unseen},
    }
    assert money(warehouse) == money_of(seen + unseen)


# --- (c) redeliveries days and months apart: no deduplication window --------------------------


def test_an_event_redelivered_months_later_after_merges_counts_once(tmp_path, warehouse):
    """The event index keeps every loaded event_id forever, so there is no window to fall out
    of: a gift first delivered in October comes back in December and again in March, after
    its October partition was merged (OPTIMIZE ... FINAL), and is still counted once."""
    telemetry = tmp_path / "telemetry"
    october = day("2026-10-03T20:15:00")
    original = gift(1, october, value=250)
    in_october = [original, *(gift(n, october + timedelta(days=n)) for n in range(2, 6))]
    seal(telemetry, SOURCE, in_october)
    ingest(warehouse, telemetry, read_files_in_warehouse=True)

    december = day("2026-12-20T18:00:00")
    in_december = [gift(n, december + timedelta(hours=n)) for n in range(10, 13)]
    redelivered = seal(telemetry, SOURCE, [in_december[0], original, *in_december[1:]])
    report = ingest(warehouse, telemetry, read_files_in_warehouse=True)
    assert counts(report) == [(redelivered.name, 3, 1, 0, 0)]

    for table in [*(raw_table(t) for t in EVENT_FIELDS), EVENT_INDEX]:
        warehouse.command(f"OPTIMIZE TABLE {table} FINAL")
    merged = warehouse.query(
        "SELECT count() FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'raw_gift_sent' AND partition = '202610' AND active"
    ).result_rows
    assert merged == [(1,)]  # October is one merged part now

    march = day("2027-03-14T09:30:00")
    in_march = [order(20, march), gift(21, march)]
    much_later = seal(telemetry, "relay-b", [*in_march, original])
    report = ingest(warehouse, telemetry, read_files_in_warehouse=False, batch_bytes=1)
    assert counts(report) == [(much_later.name, 2, 1, 0, 0)]

    assert rows_per_event(warehouse)[original["event_id"]] == 1
    assert set(rows_per_event(warehouse).values()) == {1}
    assert index_size(warehouse) == len(in_october) + len(in_december) + len(in_march)
    loaded_from = warehouse.query(
        "SELECT _file, occurred_at FROM raw_gift_sent WHERE event_id = {id:UUID}",
        parameters={"id": original["event_id"]},
    ).result_rows
    assert loaded_from == [(sealed_file_name(SOURCE, 1), october.replace(tzinfo=None))]
    assert money(warehouse) == money_of(in_october + in_december + in_march)


# --- (d) conflicting duplicates: quarantined, first kept, and said out loud --------------------


def test_a_conflicting_redelivery_is_quarantined_and_the_first_stays(tmp_path, warehouse):
    telemetry = tmp_path / "telemetry"
    first = gift(1, day("2026-10-05T10:00:00"), value=100)
    seal(telemetry, SOURCE, [first])
    ingest(warehouse, telemetry, read_files_in_warehouse=True)
    changed = gift(1, day("2026-10-05T10:00:00"), value=500)
    reordered = json.dumps(dict(reversed(list(first.items()))), separators=(",", ":"))
    conflicts = seal(telemetry, SOURCE, [changed, reordered, first])
    report = ingest(warehouse, telemetry, read_files_in_warehouse=True)
    # A payload that is equal as JSON but not byte-identical is a conflict too: only the
    # producer's exact bytes prove a redelivery.
    assert counts(report) == [(conflicts.name, 0, 1, 2, 2)]
    assert warehouse.query("SELECT value_minor FROM raw_gift_sent").result_rows == [(100,)]
    quarantined = warehouse.query(
        "SELECT _file, _line, reason, event_id, event_type, raw_line FROM quarantine ORDER BY _line"
    ).result_rows
    assert quarantined == [
        (conflicts.name, 1, "conflicting_duplicate", first["event_id"], "gift_sent",
         line(changed)),
        (conflicts.name, 2, "conflicting_duplicate", first["event_id"], "gift_sent", reordered),
    ]  # fmt: skip
    log = warehouse.query(
        "SELECT lines_read, loaded, duplicates, quarantined, conflicting FROM ingest_log "
        "WHERE _file = {f:String}",
        parameters={"f": conflicts.name},
    ).result_rows
    assert log == [(3, 0, 1, 2, 2)]


def run_cli(telemetry: Path, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "creator_econ.cli", "run", "--telemetry", str(telemetry),
         "--marts", str(data / "marts"), "--data", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


WARNING = re.compile(
    r"WARNING.*?(\d[\d,]*) lines? reuses? a loaded event_id with a different payload; "
    r"they are in the quarantine table"
)


def test_the_run_command_warns_about_conflicting_duplicates(tmp_path):
    telemetry = tmp_path / "telemetry"
    first = [gift(n, day("2026-10-06T12:00:00") + timedelta(minutes=n)) for n in range(1, 4)]
    seal(telemetry, SOURCE, first)
    quiet = run_cli(telemetry, tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not WARNING.search(quiet.stdout + quiet.stderr)

    changed = [gift(1, day("2026-10-06T12:01:00"), value=999), gift(2, day("2026-10-07"))]
    seal(telemetry, SOURCE, [*changed, first[2], gift(4, day("2026-10-07T08:00:00"))])
    loud = run_cli(telemetry, tmp_path)
    output = loud.stdout + loud.stderr
    assert loud.returncode == 0, output[-3000:]
    warned = WARNING.search(output)
    assert warned, output[-3000:]
    assert warned.group(1) == "2"
    assert "(2 conflicting duplicates)" in output


def test_the_dagster_materialization_records_conflicting_duplicates(tmp_path):
    telemetry = tmp_path / "telemetry"
    settings = PipelineSettings(
        telemetry_dir=str(telemetry),
        marts_dir=str(tmp_path / "marts"),
        warehouse=f"chdb://{tmp_path / 'warehouse'}",
    )
    instance = dg.DagsterInstance.ephemeral()

    def materialize() -> tuple[dict[str, Any], list[str]]:
        result = dg.materialize(
            [ingest_telemetry], resources={"settings": settings}, instance=instance
        )
        assert result.success
        metas = {
            m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
            for m in result.asset_materializations_for_node("ingest_telemetry")
        }
        assert len(metas) == len(ingest_telemetry.keys)
        warnings = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.level == logging.WARNING
        ]
        return metas["quarantine"], warnings

    original = gift(1, day("2026-10-08T09:00:00"))
    seal(telemetry, SOURCE, [original, gift(2, day("2026-10-08T09:05:00"))])
    meta, warnings = materialize()
    assert (meta["loaded"], meta["conflicting_duplicates"]) == (2, 0)
    assert not any("different payload" in w for w in warnings)

    seal(telemetry, SOURCE, [gift(1, day("2026-10-08T09:00:00"), value=300), original])
    meta, warnings = materialize()
    assert (meta["loaded"], meta["duplicates"], meta["quarantined"]) == (0, 1, 1)
    assert meta["conflicting_duplicates"] == 1
    assert any("1 line reuses a loaded event_id" in w and "quarantine" in w for w in warnings)


# --- (e) money after every kind of replay ------------------------------------------------------


def test_money_after_replays_equals_the_distinct_events(tmp_path, warehouse):
    """Three months of runs, each sealing new events mixed with redeliveries of random earlier
    ones, plus a whole file sealed again: the loaded totals are those of the distinct events."""
    rng = random.Random(5)
    telemetry = tmp_path / "telemetry"
    distinct: list[dict[str, Any]] = []
    ids = iter(range(1, 10_000))
    month_starts = [day("2026-10-01"), day("2026-11-01"), day("2026-12-01")]
    for month, start in enumerate(month_starts):
        new = [
            gift(next(ids), start + timedelta(hours=rng.randrange(600)), rng.randrange(1, 10**6))
            if rng.random() < 0.7
            else order(
                next(ids), start + timedelta(hours=rng.randrange(600)), rng.randrange(1, 10**6)
            )
            for _ in range(60)
        ]
        again = rng.sample(distinct, min(len(distinct), 25))
        mixed = new + again
        rng.shuffle(mixed)
        path = seal(telemetry, SOURCE, mixed)
        distinct += new
        if month == 1:
            shutil.copyfile(path, telemetry / "sealed" / sealed_file_name("replayer", 1))
        report = ingest(warehouse, telemetry, read_files_in_warehouse=month % 2 == 0)
        assert report.total("loaded") == len(new)
        assert report.total("quarantined") == 0
    assert money(warehouse) == money_of(distinct)
    assert set(rows_per_event(warehouse).values()) == {1}
    assert len(rows_per_event(warehouse)) == index_size(warehouse) == len(distinct)
