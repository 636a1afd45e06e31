"""Asset checks: the warehouse's money must match the runtime ledger before marts are published.

The check is blocking: published marts are read by finance and creators, so a warehouse that
disagrees with the book of record stops the run before it replaces them.
"""

from pathlib import Path

import dagster as dg

from ingest.reconcile import MONEY_EVENTS, ReconcileError, reconcile
from ingest.schema import raw_table
from pipelines.resources import PipelineSettings


@dg.asset_check(
    asset=raw_table("gift_sent"),
    name="matches_runtime_ledger",
    blocking=True,
    additional_deps=[raw_table(t) for t in MONEY_EVENTS if t != "gift_sent"],
    description=(
        "Daily purchases, gifts, orders, refunds, payouts, creator earnings and platform fees "
        "in the raw tables equal the runtime ledger's (when a ledger is configured)."
    ),
)
def matches_runtime_ledger(
    context: dg.AssetCheckExecutionContext, settings: PipelineSettings
) -> dg.AssetCheckResult:
    if not settings.ledger:
        context.log.info("no runtime ledger configured: reconciliation skipped")
        return dg.AssetCheckResult(
            passed=True,
            description="no runtime ledger configured: nothing to reconcile",
            metadata={"ledger": "none configured (set --ledger or CREATOR_ECON_LEDGER)"},
        )
    try:
        with settings.client() as client:
            result = reconcile(Path(settings.ledger), client)
    except ReconcileError as exc:
        context.log.error(f"reconciliation could not run: {exc}")
        return dg.AssetCheckResult(
            passed=False,
            description=str(exc),
            metadata={"ledger": settings.ledger, "error": str(exc)},
        )
    log = context.log.info if result.ok else context.log.error
    log(f"reconciliation with the runtime ledger:\n{result.table()}")
    return dg.AssetCheckResult(
        passed=result.ok,
        description=result.summary(),
        metadata={
            "ledger": settings.ledger,
            "sources": ", ".join(result.sources),
            "days_compared": len(result.days),
            "differences": len(result.differences),
            "differing_metrics": ", ".join(sorted({r.metric for r in result.differences})),
        },
    )
