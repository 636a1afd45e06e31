"""Assets: the raw tables filled by ingest, and the published marts computed from them."""

from datetime import date

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client
from pydantic import Field

from ingest.dirty_days import clear_dirty_days
from ingest.loader import Progress as IngestProgress
from ingest.loader import ingest
from models.build import model_fingerprint, tier_bounds
from models.compute import compute_update
from models.cost_model import CostModel, load_cost_model
from models.planning import plan_refresh
from models.publish import PartitionStore, publish_update
from models.recompute import Plan, format_days
from models.sql import MARTS
from pipelines.partitions import DAILY, MARTS_OP, plan_metadata, range_days
from pipelines.reporting import advance, phase, result, step_log
from pipelines.resources import PipelineSettings
from quality.health_tables import publish_health
from quality.marts_suite import check_marts
from quality.outcomes import blocking_failures, record_outcomes
from telemetry.events import EVENT_FIELDS
from warehouse.bookkeeping import INGEST_LOG, QUARANTINE
from warehouse.raw_tables import raw_table

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
        description=f"Published mart {name}.parquet (docs/metrics.md), by UTC day.",
    )
    for name in MARTS
]


@dg.multi_asset(specs=RAW_SPECS, name="ingest_telemetry")
def ingest_telemetry(context: dg.AssetExecutionContext, settings: PipelineSettings):
    """Load every new sealed telemetry file exactly once; note the mart days it makes dirty."""
    cost_model = _cost_model(settings)
    with settings.client() as client:
        report = ingest(
            client,
            settings.resolved.telemetry,
            read_files_in_warehouse=settings.embedded,
            batch_bytes=settings.resolved.batch_bytes,
            progress=step_log(context),
            on_batch=_show_batch,
        )
        plan = _plan(client, settings, cost_model)
    result(context, f"ingest done in {report.seconds:.1f}s: {report.summary()}")
    context.log.info(f"marts: dirty: {plan.describe()}")
    conflicting = report.total("conflicting")
    if conflicting:
        result(
            context,
            f"{conflicting:,} {'line reuses' if conflicting == 1 else 'lines reuse'} a loaded "
            "event_id with a different payload; "
            f"they are in the {QUARANTINE} table (reason conflicting_duplicate)",
            warning=True,
        )
    meta = {
        "files": len(report.files),
        "lines_read": report.lines_read,
        "loaded": report.total("loaded"),
        "duplicates": report.total("duplicates"),
        "quarantined": report.total("quarantined"),
        "conflicting_duplicates": conflicting,
        "touched_days": format_days(report.touched_days) or "none",
    }
    for spec in RAW_SPECS:
        extra = plan_metadata(plan) if spec.key == dg.AssetKey(INGEST_LOG) else {}
        yield dg.MaterializeResult(asset_key=spec.key, metadata={**meta, **extra})


def _show_batch(done: IngestProgress) -> None:
    if done.files_done == 0:
        phase("ingest", total=done.bytes)
    advance(done.bytes_done, done.describe())


def _on_week(context: dg.AssetExecutionContext):
    log = step_log(context)

    def week(number: int, text: str) -> None:
        log(text)
        advance(number, text)

    return week


class MartsConfig(dg.Config):
    """Which days a marts run rewrites."""

    dirty_only: bool = Field(
        default=False,
        description="Rewrite the days the warehouse notes as dirty (the run's partition range is "
        "their span), as `creator-econ run` and the marts sensor do. Off: rewrite every day of "
        "the run's partition range, as when days are chosen in the UI.",
    )


@dg.multi_asset(
    specs=MART_SPECS,
    name=MARTS_OP,
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def publish_marts(
    context: dg.AssetExecutionContext, settings: PipelineSettings, config: MartsConfig
):
    """Recompute the marts' dirty (or chosen) day partitions and republish every mart."""
    cost_model = _cost_model(settings)
    store = PartitionStore(settings.resolved.marts)
    fingerprint = model_fingerprint(cost_model, settings.resolved.warehouse_dsn)
    requested = None if config.dirty_only else range_days(context.partition_key_range)
    with settings.client() as client:
        plan = _plan(client, settings, cost_model, requested)
        step_log(context)(f"marts: recomputing {plan.describe()}")
        if plan.empty:
            yield from _results(plan, {}, cost_model, settings)
            return
        phase("models", total=len(plan.windows()))
        update = compute_update(client, plan, cost_model, _on_week(context))
        # The recomputed rows, exactly as they are about to be published; nothing is written
        # before this point.
        marts = update.tables()
        recomputed = None if plan.full else plan.keys()["platform_daily"]
        _check_before_publishing(context, client, marts, cost_model, settings, recomputed)
        paths = publish_update(store, update, fingerprint, settings.resolved.marts)
        if plan.settles is not None:
            clear_dirty_days(client, plan.settles)
    result(
        context,
        f"published {len(paths)} marts to {settings.resolved.marts} "
        f"({update.rows():,} rows recomputed)",
    )
    yield from _results(plan, marts, cost_model, settings)


def _check_before_publishing(
    context: dg.AssetExecutionContext,
    client: Client,
    marts: dict[str, pa.Table],
    cost_model: CostModel,
    settings: PipelineSettings,
    recomputed_days: list[date] | None,
) -> None:
    """The marts suite on exactly what is about to be published; an error-level failure stops
    the publish (nothing is written, and the dirty days stay for the next run)."""
    outcomes = check_marts(marts, client, cost_model, recomputed_days)
    record_outcomes(client, outcomes, run_id=context.run.run_id)
    failed = [o for o in outcomes if not o.passed]
    for outcome in failed:
        log = context.log.error if outcome.severity == "error" else context.log.warning
        log(f"{outcome.check} on {outcome.target} failed ({outcome.severity}): {outcome.observed}")
    result(context, f"mart data quality: {len(outcomes) - len(failed)}/{len(outcomes)} passed")
    if blocked := blocking_failures(outcomes):
        publish_health(client, settings.resolved)
        raise dg.Failure(
            "marts not published, error-level checks failed: "
            + "; ".join(f"{o.check} on {o.target}: {o.observed}" for o in blocked)
        )


def _results(
    plan: Plan, marts: dict[str, pa.Table], cost_model: CostModel, settings: PipelineSettings
):
    keys = plan.keys()
    for name in MARTS:
        meta = {
            "path": dg.MetadataValue.path(str(settings.resolved.marts / f"{name}.parquet")),
            "recomputed_days": format_days(plan.days) or "none",
            "partitions_rewritten": len(keys[name]),
            "full_recompute": plan.full,
            "cost_model_version": cost_model.version,
        }
        if name in marts:
            meta["rows_recomputed"] = marts[name].num_rows
            meta["rows"] = pq.ParquetFile(
                settings.resolved.marts / f"{name}.parquet"
            ).metadata.num_rows
        yield dg.MaterializeResult(asset_key=name, metadata=meta)


def _cost_model(settings: PipelineSettings) -> CostModel:
    return load_cost_model(settings.resolved.cost_model)


def _plan(
    client: Client,
    settings: PipelineSettings,
    cost_model: CostModel,
    requested: list[date] | None = None,
) -> Plan:
    store = PartitionStore(settings.resolved.marts)
    stored = store.stored_days(model_fingerprint(cost_model, settings.resolved.warehouse_dsn))
    return plan_refresh(client, stored, tier_bounds(cost_model), requested)
