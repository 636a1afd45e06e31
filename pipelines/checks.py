"""Asset checks on the raw tables, run after ingest and before the marts are published.

Published marts are read by finance and creators, so the checks that guard them are blocking:
a warehouse that disagrees with the runtime ledger, or raw data that fails an error-level
data-quality check (models/quality.py), stops the run before the marts are replaced. Warnings
(and the freshness check, which flags telemetry that stopped arriving) are reported and
recorded for the data health page but never block: republishing history must always work.
"""

import dagster as dg
from pydantic import Field

from creator_econ.settings import DEFAULTS, ENV
from pipelines.reporting import phase, result
from pipelines.resources import PipelineSettings
from quality.freshness import freshness_facts, freshness_outcome
from quality.outcomes import CheckOutcome, record_outcomes
from quality.raw_suite import check_raw, raw_check_targets
from quality.reconcile import MONEY_EVENTS, ReconcileError, reconcile
from warehouse.bookkeeping import INGEST_LOG
from warehouse.raw_tables import raw_table


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
    if not settings.resolved.ledger:
        context.log.info("no runtime ledger configured: reconciliation skipped")
        return dg.AssetCheckResult(
            passed=True,
            description="no runtime ledger configured: nothing to reconcile",
            metadata={"ledger": "none configured (set --ledger or CREATOR_ECON_LEDGER)"},
        )
    try:
        with settings.client() as client:
            result = reconcile(settings.resolved.ledger, client)
            outcome = CheckOutcome(
                "ledger",
                "matches_runtime_ledger",
                raw_table("gift_sent"),
                result.ok,
                "error",
                result.summary(),
                "Daily money totals equal the runtime ledger's.",
            )
            record_outcomes(client, [outcome], run_id=context.run.run_id)
    except ReconcileError as exc:
        context.log.error(f"reconciliation could not run: {exc}")
        return dg.AssetCheckResult(
            passed=False,
            description=str(exc),
            metadata={"ledger": str(settings.resolved.ledger), "error": str(exc)},
        )
    log = context.log.info if result.ok else context.log.error
    log(f"reconciliation with the runtime ledger:\n{result.table()}")
    return dg.AssetCheckResult(
        passed=result.ok,
        description=result.summary(),
        metadata={
            "ledger": str(settings.resolved.ledger),
            "sources": ", ".join(result.sources),
            "days_compared": len(result.days),
            "differences": len(result.differences),
            "differing_metrics": ", ".join(sorted({r.metric for r in result.differences})),
        },
    )


class RawChecksConfig(dg.Config):
    """How much of the raw tables the suite reads."""

    full: bool = Field(
        default=False,
        description="Read every row. Off: the rows of the files loaded since the suite last "
        "ran, their ids checked against the rest, and the totals kept anyway (what a run "
        "costs follows its new data); the `full_raw_checks` job and `creator-econ check "
        "--full` rescan.",
    )


RAW_QUALITY_SPECS = [
    dg.AssetCheckSpec(
        check.name,
        asset=target,
        blocking=check.severity == "error",
        description=f"{check.description} ({check.severity})",
    )
    for check, target in raw_check_targets()
]


@dg.multi_asset_check(
    specs=RAW_QUALITY_SPECS,
    name="raw_quality",
    description="The raw data-quality suite (models/quality.py) over every raw table.",
)
def raw_quality(
    context: dg.AssetCheckExecutionContext, settings: PipelineSettings, config: RawChecksConfig
):
    phase("checks")
    with settings.client() as client:
        outcomes = check_raw(client, full=config.full)
        record_outcomes(client, outcomes, run_id=context.run.run_id)
    failed = [o for o in outcomes if not o.passed]
    for outcome in failed:
        log = context.log.error if outcome.severity == "error" else context.log.warning
        log(f"{outcome.check} on {outcome.target} failed ({outcome.severity}): {outcome.observed}")
    result(context, f"raw data quality: {len(outcomes) - len(failed)}/{len(outcomes)} passed")
    for outcome in outcomes:
        yield check_result(outcome)


@dg.asset_check(
    asset=INGEST_LOG,
    name="telemetry_arriving",
    blocking=False,
    description=(
        f"A sealed telemetry file arrived within the last {ENV['freshness_hours']} hours "
        f"(default {DEFAULTS.freshness_hours:g}); a warning, never a block."
    ),
)
def telemetry_arriving(
    context: dg.AssetCheckExecutionContext, settings: PipelineSettings
) -> dg.AssetCheckResult:
    hours = settings.resolved.freshness_hours
    with settings.client() as client:
        facts = freshness_facts(client, settings.resolved.telemetry, hours)
        outcome = freshness_outcome(facts)
        record_outcomes(client, [outcome], run_id=context.run.run_id)
    (context.log.info if outcome.passed else context.log.warning)(f"freshness: {facts.summary()}")
    extra = {
        "newest_file": facts.newest_file or "none",
        "age_hours": facts.age_hours if facts.age_hours is not None else -1.0,
        "threshold_hours": hours,
    }
    return check_result(outcome, extra)


def check_result(outcome: CheckOutcome, metadata: dict | None = None) -> dg.AssetCheckResult:
    """A suite outcome as Dagster's result; a failed error-level one blocks what follows."""
    error = outcome.severity == "error"
    return dg.AssetCheckResult(
        asset_key=outcome.target,
        check_name=outcome.check,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=outcome.observed
        if outcome.passed
        else f"{outcome.observed}. Expected: {outcome.description}",
        metadata={
            "suite": outcome.suite,
            "severity": outcome.severity,
            "observed": outcome.observed,
            **(metadata or {}),
        },
    )


# The data-quality checks beside the ledger reconciliation, and every check of the raw tables.
QUALITY_CHECKS = [raw_quality, telemetry_arriving]
CHECKS = [matches_runtime_ledger, *QUALITY_CHECKS]
