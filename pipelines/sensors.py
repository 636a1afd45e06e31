"""A sensor that starts a run when new sealed telemetry files appear.

It only lists the sealed folder: it never opens the warehouse, which an embedded warehouse
allows to one process at a time. Ingest itself decides which files are new, so a run requested
twice loads nothing twice.
"""

from pathlib import Path

import dagster as dg

from live_runtime.telemetry import list_sealed
from pipelines.jobs import refresh_job
from pipelines.resources import settings_from_env


@dg.sensor(job=refresh_job, minimum_interval_seconds=30)
def sealed_files_sensor(context: dg.SensorEvaluationContext):
    files = list_sealed(Path(settings_from_env().telemetry_dir))
    if not files:
        return dg.SkipReason("no sealed telemetry files yet")
    signature = f"{len(files)}:{max(p.name for p in files)}"
    if signature == context.cursor:
        return dg.SkipReason("no new sealed files")
    context.update_cursor(signature)
    return dg.RunRequest(run_key=signature)
