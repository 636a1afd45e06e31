"""Jobs: load new telemetry; recompute the marts' dirty day partitions; publish data health."""

import dagster as dg

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

health_job = dg.define_asset_job(
    "publish_data_health",
    selection=dg.AssetSelection.groups("health"),
    description="Publish the data health tables (ingest log, quarantine, freshness, checks).",
)
