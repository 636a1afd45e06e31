"""The Dagster definitions: what each job selects, the sensors, and single assets materialized
on their own over a small hand-written telemetry folder.

The marts sensor's full path (ingest, request, partition-range run) is in test_late_events.py;
the whole chain through `creator-econ run` is in test_end_to_end.py. Here each asset runs alone
with `dg.materialize`, and what it records and writes is checked against counts and amounts
worked out by hand from the lines written below.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
from handmade import gift, line, order, seal

from pipelines.assets import ingest_telemetry, publish_marts
from pipelines.definitions import defs
from pipelines.health_assets import data_health
from pipelines.resources import PipelineSettings
from pipelines.sensors import dirty_marts_sensor, sealed_files_sensor
from quality.raw_suite import raw_check_targets
from telemetry.events import EVENT_FIELDS
from telemetry.files import TelemetryWriter

MARTS = {"platform_daily", "creator_weekly", "platform_weekly", "session_economics"}
RAW = {f"raw_{t}" for t in EVENT_FIELDS}


def test_definitions_load_with_every_raw_table_and_mart():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == RAW | {"ingest_log", "quarantine", "data_health"} | MARTS


def selection(job: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The asset keys a job materializes and the (asset, check) pairs it runs."""
    layer = defs.resolve_job_def(job).asset_layer
    assets = {k.to_user_string() for k in layer.selected_asset_keys}
    checks = {(c.asset_key.to_user_string(), c.name) for c in layer.asset_graph.asset_check_keys}
    return assets, checks


def test_refresh_loads_the_warehouse_runs_its_checks_and_publishes_data_health():
    assets, checks = selection("refresh")
    assert assets == RAW | {"ingest_log", "quarantine", "data_health"}
    # The ledger reconciliation, freshness, and every check of the raw data-quality suite.
    suite = {(target, check.name) for check, target in raw_check_targets()}
    assert (
        checks
        == {
            ("raw_gift_sent", "matches_runtime_ledger"),
            ("ingest_log", "telemetry_arriving"),
        }
        | suite
    )
    # The exactly-once checks are on every raw table, and the ingest log must add up.
    for table in RAW:
        assert {(table, "one_row_per_event_id"), (table, "rows_in_event_index")} <= checks
    assert ("ingest_log", "lines_accounted_for") in checks
    # Every check of the definitions runs in refresh: none is left to no job.
    every_check = {
        (c.asset_key.to_user_string(), c.name) for c in defs.resolve_asset_graph().asset_check_keys
    }
    assert checks == every_check


def test_the_ledger_reconciliation_blocks_and_freshness_does_not():
    graph = defs.resolve_asset_graph()
    ledger = graph.get_check_spec(
        dg.AssetCheckKey(dg.AssetKey("raw_gift_sent"), "matches_runtime_ledger")
    )
    fresh = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("ingest_log"), "telemetry_arriving"))
    assert ledger.blocking and not fresh.blocking


def test_recompute_marts_selects_the_four_marts_and_health_only_data_health():
    assert selection("recompute_marts") == (MARTS, set())
    assert selection("publish_data_health") == ({"data_health"}, set())
    assert {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")} == {
        "refresh",
        "recompute_marts",
        "publish_data_health",
        "full_raw_checks",
    }


def test_the_weekly_job_rescans_every_row_with_the_raw_suite_alone():
    assets, checks = selection("full_raw_checks")
    assert assets == set()
    assert checks == {(target, check.name) for check, target in raw_check_targets()}
    job = defs.resolve_job_def("full_raw_checks")
    assert job.run_config == {"ops": {"raw_quality": {"config": {"full": True}}}}
    [schedule] = defs.schedules
    assert (schedule.job_name, schedule.cron_schedule) == ("full_raw_checks", "0 3 * * 0")


def test_marts_are_daily_partitions_backfilled_in_one_run():
    graph = defs.resolve_asset_graph()
    for name in MARTS:
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert node.partitions_def.get_first_partition_key() == "2000-01-01"
    assert graph.get(dg.AssetKey("ingest_log")).partitions_def is None
    assert defs.resolve_job_def("recompute_marts").partitions_def is not None


def test_marts_sensor_waits_for_an_ingest():
    with (
        dg.DagsterInstance.ephemeral() as instance,
        dg.build_sensor_context(instance=instance) as context,
    ):
        assert isinstance(dirty_marts_sensor(context), dg.SkipReason)


def test_sensor_requests_a_run_for_new_sealed_files(tmp_path):
    resources = {"settings": PipelineSettings(telemetry_dir=str(tmp_path))}
    with dg.build_sensor_context(resources=resources) as context:
        assert isinstance(sealed_files_sensor(context), dg.SkipReason)
    with TelemetryWriter(tmp_path, "t") as writer:
        writer.write(b"{}\n")
    with dg.build_sensor_context(resources=resources) as context:
        request = sealed_files_sensor(context)
        assert isinstance(request, dg.RunRequest)
        cursor = context.cursor
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        assert isinstance(sealed_files_sensor(context), dg.SkipReason)


# --- single assets, materialized alone over hand-written telemetry -----------------------------


# Oct 1: a $1.00 gift (fee $0.20) and a $10.00 order (fee $0.30, commission $1.00); Oct 3: a
# $2.00 gift (fee $0.50). The first gift is delivered twice, and one line is not JSON.
GIFT_OCT_1 = line(gift(1, "2026-10-01T10:00:00.000000Z", 100, {"c1": 60, "c2": 20}))
FIRST_FILE = [
    GIFT_OCT_1,
    line(order(2, "2026-10-01T11:00:00.000000Z", 1000, fee=30, commission=100)),
    line(gift(3, "2026-10-03T09:00:00.000000Z", 200, {"c1": 150})),
    GIFT_OCT_1,
    "{not json",
]
# Later: a $3.00 gift on Oct 1 (fee $0.60), arriving after the marts were published; then
# another $5.00 one (fee $1.00).
LATE_FILE = [line(gift(4, "2026-10-01T12:00:00.000000Z", 300, {"c1": 240}))]
LATE_OCT_1_AGAIN = line(gift(5, "2026-10-01T13:00:00.000000Z", 500, {"c1": 400}))


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict[str, Any]]:
    return {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
    }


def partition_files(marts: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(marts / "_partitions")): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (marts / "_partitions").rglob("*.parquet")
    }


def daily(marts: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(marts / "platform_daily.parquet").to_pylist()
    return {r["day"].isoformat(): r for r in rows}


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each asset materialized alone, in turn, on one warehouse: ingest, data health, one
    marts partition (the first publish), a late file, then two single partitions."""
    root = tmp_path_factory.mktemp("hand")
    telemetry, marts = root / "telemetry", root / "marts"
    settings = PipelineSettings(
        telemetry_dir=str(telemetry),
        marts_dir=str(marts),
        warehouse=f"chdb://{root / 'warehouse'}",
    )
    resources = {"settings": settings}
    instance = dg.DagsterInstance.ephemeral()

    def materialize(asset: Any, **options: Any) -> dg.ExecuteInProcessResult:
        result = dg.materialize([asset], resources=resources, instance=instance, **options)
        assert result.success
        return result

    def publish_day(day: str) -> tuple[bool, set[str], dict[str, dict[str, Any]]]:
        """Whether materializing one day's partition succeeded, the partition files it
        rewrote, and platform_daily afterwards."""
        before = partition_files(marts)
        result = dg.materialize(
            [publish_marts],
            resources=resources,
            instance=instance,
            partition_key=day,
            raise_on_error=False,
        )
        after = partition_files(marts)
        return result.success, {n for n, i in after.items() if before.get(n) != i}, daily(marts)

    out: dict[str, Any] = {"marts": marts}
    out["first_file"] = seal(telemetry, "hand", FIRST_FILE)
    out["ingest"] = metadata(materialize(ingest_telemetry), "ingest_telemetry")
    health = materialize(data_health)
    out["health_meta"] = metadata(health, "data_health")["data_health"]
    out["health"] = {
        p.stem: pq.read_table(p).to_pylist() for p in (marts / "health").glob("*.parquet")
    }
    first = materialize(publish_marts, partition_key="2026-10-01")
    out["first_publish"] = metadata(first, "publish_marts")
    out["daily_first"] = daily(marts)
    out["versions"] = {
        name: set(pq.read_table(marts / f"{name}.parquet")["cost_model_version"].to_pylist())
        for name in MARTS
    }

    seal(telemetry, "hand", LATE_FILE)
    out["late_ingest"] = metadata(materialize(ingest_telemetry), "ingest_telemetry")
    out["oct_1_run"] = publish_day("2026-10-01")  # the day the late gift dirtied
    seal(telemetry, "hand", [LATE_OCT_1_AGAIN])
    materialize(ingest_telemetry)
    out["oct_3_run"] = publish_day("2026-10-03")  # another day than the dirty one
    return out


def test_ingest_alone_records_what_it_did_with_every_line(hand_run):
    meta = hand_run["ingest"]
    assert set(meta) == RAW | {"ingest_log", "quarantine"}  # one materialization per table
    # 5 lines: 3 events loaded, the repeated gift dropped, "{not json" quarantined; the loaded
    # events fall on Oct 1 and Oct 3.
    expected = {
        "files": 1,
        "lines_read": 5,
        "loaded": 3,
        "duplicates": 1,
        "quarantined": 1,
        "conflicting_duplicates": 0,
        "touched_days": "2026-10-01, 2026-10-03",
    }
    for name, values in meta.items():
        assert {k: values[k] for k in expected} == expected, name
    # Nothing is published yet: the ingest log asks for every day from the first to the last.
    log = meta["ingest_log"]
    assert (log["marts_full_recompute"], log["marts_dirty_days"]) == (True, 3)
    assert (log["marts_dirty_first"], log["marts_dirty_last"]) == ("2026-10-01", "2026-10-03")
    late = hand_run["late_ingest"]["ingest_log"]
    assert (late["files"], late["loaded"], late["touched_days"]) == (1, 1, "2026-10-01")
    assert (late["marts_full_recompute"], late["marts_dirty_first"]) == (False, "2026-10-01")


def test_data_health_alone_writes_the_health_tables(hand_run):
    health = hand_run["health"]
    assert set(health) == {
        "ingest_log",
        "quarantine_reasons",
        "quarantine_samples",
        "duplicates",
        "freshness",
        "check_results",
    }
    name = hand_run["first_file"].name
    (log,) = health["ingest_log"]
    assert (log["file"], log["source"]) == (name, "hand")
    assert (log["lines_read"], log["loaded"], log["duplicates"], log["quarantined"]) == (5, 3, 1, 1)
    assert log["balanced"]
    written = "".join(line + "\n" for line in FIRST_FILE).encode()
    assert log["bytes"] == len(written)
    assert [(r["reason"], r["lines"], r["files"]) for r in health["quarantine_reasons"]] == [
        ("not_json", 1, 1)
    ]
    (sample,) = health["quarantine_samples"]
    assert (sample["file"], sample["line"], sample["raw_line"]) == (name, 5, "{not json")
    (dupes,) = health["duplicates"]
    assert (dupes["source"], dupes["lines_read"], dupes["duplicates"]) == ("hand", 5, 1)
    assert dupes["duplicate_share"] == pytest.approx(1 / 5)
    (fresh,) = health["freshness"]
    assert (fresh["newest_file"], fresh["stale"]) == (name, False)
    assert health["check_results"] == []  # no check has run on this warehouse
    meta = hand_run["health_meta"]
    assert (meta["files"], meta["checks"], meta["quarantined_lines"]) == (6, 0, 1)
    assert meta["telemetry_stale"] is False


def test_publish_marts_for_one_partition(hand_run):
    # The first publish computes every day whichever partition was asked for.
    meta = hand_run["first_publish"]
    assert set(meta) == MARTS
    assert meta["platform_daily"]["full_recompute"] is True
    assert meta["platform_daily"]["recomputed_days"] == "2026-10-01..2026-10-03"
    # Every row names the shipped cost model; without a live session the session and
    # weekly-platform marts have no row.
    assert hand_run["versions"] == {
        "platform_daily": {"list-prices-2026-11"},
        "creator_weekly": {"list-prices-2026-11"},
        "platform_weekly": set(),
        "session_economics": set(),
    }
    days = hand_run["daily_first"]
    assert sorted(days) == ["2026-10-01", "2026-10-02", "2026-10-03"]
    oct_1 = days["2026-10-01"]
    # $1.00 gift + $10.00 order; revenue $0.20 gift fee + $1.00 commission; creators get
    # $0.80 of the gift and $10.00 - $0.30 - $1.00 = $8.70 of the order.
    assert oct_1["gross_volume"] == Decimal("11.000000000")
    assert oct_1["transactions"] == 2
    assert oct_1["platform_revenue"] == Decimal("1.200000000")
    assert oct_1["creator_earnings"] == Decimal("9.500000000")
    assert (days["2026-10-02"]["transactions"], days["2026-10-02"]["gross_volume"]) == (0, 0)
    assert days["2026-10-03"]["gross_volume"] == Decimal("2.000000000")


def test_a_chosen_partition_rewrites_that_day_and_its_week_only(hand_run):
    # The late $3.00 gift is on Oct 1: materializing Oct 1 rewrites that day and its week,
    # not Oct 2 or Oct 3, and adds the gift: $11.00 + $3.00, one more transaction, $0.60 more
    # revenue.
    success, rewrote, days = hand_run["oct_1_run"]
    assert success
    assert rewrote == {
        "platform_daily/2026-10-01.parquet",
        "session_economics/2026-10-01.parquet",
        "creator_weekly/2026-09-28.parquet",
        "platform_weekly/2026-09-28.parquet",
    } & set(partition_files(hand_run["marts"]))
    assert "platform_daily/2026-10-01.parquet" in rewrote
    oct_1 = days["2026-10-01"]
    assert oct_1["gross_volume"] == Decimal("14.000000000")
    assert oct_1["transactions"] == 3
    assert oct_1["platform_revenue"] == Decimal("1.800000000")
    assert days["2026-10-03"] == hand_run["daily_first"]["2026-10-03"]


def test_a_partition_other_than_the_dirty_day_can_be_materialized(hand_run):
    """Oct 1 stays stale (its late gift waits for its own recompute) and is not reconciled."""
    success, rewrote, days = hand_run["oct_3_run"]
    assert success
    assert "platform_daily/2026-10-03.parquet" in rewrote
    assert "platform_daily/2026-10-01.parquet" not in rewrote
