"""Assets: the raw tables filled by ingest, and the published marts computed from them."""

from pathlib import Path

import dagster as dg

from ingest.load import ingest
from ingest.schema import INGEST_LOG, QUARANTINE, raw_table
from live_runtime.events import EVENT_FIELDS
from models.build import build_marts
from models.cost_model import load_cost_model
from models.extract import extract
from models.publish import publish
from models.sql import MARTS
from pipelines.resources import PipelineSettings

RAW_SPECS = [
    dg.AssetSpec(raw_table(t), group_name="warehouse", description=f"Telemetry {t} events.")
    for t in EVENT_FIELDS
] + [
    dg.AssetSpec(INGEST_LOG, group_name="warehouse", description="Lines per sealed file."),
    dg.AssetSpec(QUARANTINE, group_name="warehouse", description="Rejected lines with reasons."),
]

MART_SPECS = [
    dg.AssetSpec(
        name,
        group_name="marts",
        deps=[s.key for s in RAW_SPECS],
        description=f"Published mart {name}.parquet (shared/METRICS.md).",
    )
    for name in MARTS
]


@dg.multi_asset(specs=RAW_SPECS, name="ingest_telemetry")
def ingest_telemetry(context: dg.AssetExecutionContext, settings: PipelineSettings):
    """Load every new sealed telemetry file exactly once."""
    with settings.client() as client:
        report = ingest(
            client,
            Path(settings.telemetry_dir),
            read_files_in_warehouse=settings.embedded,
            batch_bytes=settings.batch_mb * 1024 * 1024,
            progress=context.log.info,
        )
    context.log.info(f"ingest done in {report.seconds:.1f}s: {report.summary()}")
    conflicting = report.total("conflicting")
    if conflicting:
        context.log.warning(
            f"{conflicting:,} lines reuse a loaded event_id with a different payload; "
            f"they are in the {QUARANTINE} table (reason conflicting_duplicate)"
        )
    meta = {
        "files": len(report.files),
        "lines_read": report.lines_read,
        "loaded": report.total("loaded"),
        "duplicates": report.total("duplicates"),
        "quarantined": report.total("quarantined"),
        "conflicting_duplicates": conflicting,
    }
    for spec in RAW_SPECS:
        yield dg.MaterializeResult(asset_key=spec.key, metadata=meta)


@dg.multi_asset(specs=MART_SPECS, name="publish_marts")
def publish_marts(context: dg.AssetExecutionContext, settings: PipelineSettings):
    """Compute every mart from the warehouse and replace the published Parquet files."""
    cost_model = load_cost_model(Path(settings.cost_model) if settings.cost_model else None)
    with settings.client() as client:
        tables = extract(client)
    context.log.info(f"models: read {sum(t.num_rows for t in tables.values()):,} rows")
    marts = build_marts(tables, cost_model)
    paths = publish(marts, Path(settings.marts_dir))
    context.log.info(f"published {len(paths)} marts to {settings.marts_dir}")
    for name, path in zip(marts, paths, strict=True):
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "rows": marts[name].num_rows,
                "path": dg.MetadataValue.path(str(path)),
                "cost_model_version": cost_model.version,
            },
        )
