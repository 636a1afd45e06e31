"""The one job: ingest new telemetry, then republish the marts."""

import dagster as dg

refresh_job = dg.define_asset_job(
    "refresh", selection=dg.AssetSelection.groups("warehouse", "marts")
)
