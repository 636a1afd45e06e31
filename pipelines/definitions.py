"""The Dagster definitions that `dagster dev` loads and `creator-econ run` materializes."""

import dagster as dg

from pipelines.assets import ingest_telemetry, publish_marts
from pipelines.checks import matches_runtime_ledger
from pipelines.jobs import refresh_job
from pipelines.resources import settings_from_env
from pipelines.sensors import sealed_files_sensor

ASSETS = [ingest_telemetry, publish_marts]
# Blocking: a failing check stops the marts from being republished in the same run.
CHECKS = [matches_runtime_ledger]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[refresh_job],
    sensors=[sealed_files_sensor],
    resources={"settings": settings_from_env()},
    # The embedded warehouse admits one process: run every step in the run's own process.
    executor=dg.in_process_executor,
)
