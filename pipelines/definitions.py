"""The Dagster definitions that `dagster dev` loads and `creator-econ run` executes."""

import dagster as dg

from pipelines.assets import ingest_telemetry, publish_marts
from pipelines.checks import CHECKS
from pipelines.health_assets import HEALTH_ASSETS
from pipelines.jobs import (
    full_checks_job,
    full_checks_schedule,
    health_job,
    marts_job,
    refresh_job,
)
from pipelines.resources import PipelineSettings, settings_from_env
from pipelines.sensors import dirty_marts_sensor, sealed_files_sensor

ASSETS = [ingest_telemetry, publish_marts, *HEALTH_ASSETS]


def build_definitions(settings: PipelineSettings) -> dg.Definitions:
    """Every asset, check, job and sensor, bound to one `settings` resource."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[refresh_job, marts_job, health_job, full_checks_job],
        schedules=[full_checks_schedule],
        sensors=[sealed_files_sensor, dirty_marts_sensor],
        resources={"settings": settings},
        # The embedded warehouse admits one process: run every step in the run's own process.
        executor=dg.in_process_executor,
    )


defs = build_definitions(settings_from_env())
