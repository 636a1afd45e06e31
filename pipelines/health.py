"""The data health tables, published as Parquet beside the marts for the health page.

The dashboards never open the warehouse, so this asset copies what the health page shows (the
ingest log, the quarantine by reason with sample lines, duplicates, freshness and the latest
check outcomes) into `<marts>/health/`, each file replaced atomically.

It has no upstream asset on purpose: a failing blocking check skips everything downstream of
the checked tables, and a failing run is exactly when the health page matters most. Its low
step priority makes it the last step of a run instead, after the checks and (when they pass)
after the marts, so it publishes the outcomes that run recorded.
"""

from pathlib import Path

import dagster as dg
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from ingest.health import health_tables
from models.publish import publish_one
from pipelines.checks import freshness_hours
from pipelines.resources import PipelineSettings

HEALTH_DIR = "health"  # also named in dashboards/data.py, which must not import Dagster


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
        tables = publish_health(client, Path(settings.telemetry_dir), Path(settings.marts_dir))
    checks = tables["check_results"].to_pylist()
    failing = [c for c in checks if not c["passed"]]
    folder = Path(settings.marts_dir) / HEALTH_DIR
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


def publish_health(client: Client, telemetry_dir: Path, marts_dir: Path) -> dict[str, pa.Table]:
    """Read the health tables from the warehouse and replace their Parquet files; also callable
    at the end of a step that just recorded check outcomes, so the page shows them at once."""
    tables = health_tables(client, telemetry_dir, freshness_hours())
    folder = marts_dir / HEALTH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        publish_one(table, folder / f"{name}.parquet")
    return tables


HEALTH_ASSETS = [data_health]
