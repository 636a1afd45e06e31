"""Sensors: a run when new sealed telemetry files appear, then a marts run for the days it dirtied.

Neither opens the warehouse, which an embedded warehouse allows to one process at a time: the
first only lists the sealed folder (ingest itself decides which files are new, so a run
requested twice loads nothing twice); the second reads the ingest materialization that Dagster
recorded, which names the dirty days.
"""

import dagster as dg

from pipelines.jobs import marts_job, refresh_job
from pipelines.partitions import RECOMPUTE_TAG, marts_run
from pipelines.resources import PipelineSettings
from telemetry.files import list_sealed
from warehouse.bookkeeping import INGEST_LOG


@dg.sensor(job=refresh_job, minimum_interval_seconds=30)
def sealed_files_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    files = list_sealed(settings.resolved.telemetry)
    if not files:
        return dg.SkipReason("no sealed telemetry files yet")
    signature = f"{len(files)}:{max(p.name for p in files)}"
    if signature == context.cursor:
        return dg.SkipReason("no new sealed files")
    context.update_cursor(signature)
    return dg.RunRequest(run_key=signature)


@dg.sensor(job=marts_job, minimum_interval_seconds=30)
def dirty_marts_sensor(context: dg.SensorEvaluationContext):
    """After each successful ingest, one run over the span of the days it left dirty."""
    records = context.instance.fetch_materializations(dg.AssetKey(INGEST_LOG), limit=1).records
    if not records:
        return dg.SkipReason("nothing ingested yet")
    record = records[0]
    if context.cursor and int(context.cursor) >= record.storage_id:
        return dg.SkipReason("no ingest since the last marts run")
    run = context.instance.get_run_by_id(record.run_id)
    if run is not None and not run.is_finished:
        return dg.SkipReason("the ingest run is still going")
    context.update_cursor(str(record.storage_id))
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        return dg.SkipReason("the ingest run did not succeed; its dirty days wait for the next")
    request = marts_run(record.asset_materialization.metadata)
    if request is None:
        return dg.SkipReason("the last ingest left no dirty day")
    return dg.RunRequest(
        run_key=f"marts-after-{record.storage_id}",
        tags={**request.tags(), RECOMPUTE_TAG: request.describe()},
        run_config=request.run_config(),
    )
