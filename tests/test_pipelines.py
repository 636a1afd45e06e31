"""The Dagster definitions load, and the sensors ask for runs only when there is work.

The marts sensor's full path (ingest, request, partition-range run) is in test_late_events.py.
"""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs
from pipelines.resources import PipelineSettings
from pipelines.sensors import dirty_marts_sensor, sealed_files_sensor
from telemetry.files import TelemetryWriter


def test_definitions_load_with_every_raw_table_and_mart():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_gift_sent", "raw_media_usage", "ingest_log", "quarantine"} <= keys
    assert {"platform_daily", "creator_weekly", "platform_weekly", "session_economics"} <= keys
    assert defs.resolve_job_def("refresh") is not None


def test_marts_are_daily_partitions_backfilled_in_one_run():
    graph = defs.resolve_asset_graph()
    for name in ("platform_daily", "creator_weekly", "platform_weekly", "session_economics"):
        node = graph.get(dg.AssetKey(name))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
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
