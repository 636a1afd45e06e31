"""The data health tables, published as Parquet beside the marts for the health page.

The dashboards never open the warehouse, so this asset copies what the health page shows (the
ingest log, the quarantine by reason with sample lines, duplicates, freshness and the latest
check outcomes) into `<marts>/health/`, each file replaced atomically.

It has no upstream asset on purpose: a failing blocking check skips everything downstream of
the checked tables, and a failing run is exactly when the health page matters most. Its low
step priority makes it the last step of a run instead, after the checks and (when they pass)
after the marts, so it publishes the outcomes that run recorded.
"""

import dagster as dg

from models.publish import HEALTH_DIR
from pipelines.resources import PipelineSettings
from quality.health_tables import publish_health


@dg.asset(
    name="data_health",
    group_name="health",
    op_tags={"dagster/priority": "-1"},  # after every other step that is ready at the same time
    description="Ingest log, quarantine, duplicates, freshness and check outcomes for the "
    "data health page (<marts>/health/*.parquet).",
)
def data_health(
    context: dg.AssetExecutionContext, settings: PipelineSettings
) -> dg.MaterializeResult:
    with settings.client() as client:
        tables = publish_health(client, settings.resolved)
    checks = tables["check_results"].to_pylist()
    failing = [c for c in checks if not c["passed"]]
    folder = settings.resolved.marts / HEALTH_DIR
    context.log.info(
        f"published data health to {folder}: {len(checks) - len(failing)}/{len(checks)} checks "
        "passing"
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "files": len(tables),
            "checks": len(checks),
            "checks_failing": len(failing),
            "errors_failing": sum(c["severity"] == "error" for c in failing),
            "quarantined_lines": sum(r["lines"] for r in tables["quarantine_reasons"].to_pylist()),
            "telemetry_stale": bool(tables["freshness"]["stale"][0].as_py()),
        }
    )


HEALTH_ASSETS = [data_health]
