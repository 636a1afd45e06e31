"""Jobs: load new telemetry; recompute the marts' dirty day partitions; publish data health;
rescan the raw tables (weekly)."""

import dagster as dg

from pipelines.checks import raw_quality

refresh_job = dg.define_asset_job(
    "refresh",
    selection=dg.AssetSelection.groups("warehouse", "health"),
    description="Load new sealed telemetry, check it and publish data health; the marts sensor "
    "then recomputes the days it dirtied.",
)

marts_job = dg.define_asset_job(
    "recompute_marts",
    selection=dg.AssetSelection.groups("marts"),  # daily partitions, from the marts assets
    description="Recompute the marts for a range of days and republish them.",
)

full_checks_job = dg.define_asset_job(
    "full_raw_checks",
    selection=dg.AssetSelection.checks(raw_quality),
    description="Every raw data-quality check over every row of the raw tables.",
    config={"ops": {"raw_quality": {"config": {"full": True}}}},
)

full_checks_schedule = dg.ScheduleDefinition(
    job=full_checks_job,
    cron_schedule="0 3 * * 0",  # Sundays 03:00 UTC, when nothing else runs
    execution_timezone="UTC",
    description="A weekly rescan of the raw tables; runs check only what each load added.",
)

health_job = dg.define_asset_job(
    "publish_data_health",
    selection=dg.AssetSelection.groups("health"),
    description="Publish the data health tables (ingest log, quarantine, freshness, checks).",
)
