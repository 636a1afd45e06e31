"""One pass of what the sensors do in `dagster dev`, run in this process: `creator-econ run`.

The `refresh` job loads new telemetry, checks it and publishes data health; `dirty_marts_sensor`
is then asked, exactly as the daemon would ask it, which `recompute_marts` run the load calls
for; that run is executed, and data health is published once more so the page shows the marts
checks. There is no second implementation of the chain: the CLI runs the same jobs and sensor.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

import dagster as dg

from pipelines.definitions import build_definitions
from pipelines.partitions import MARTS_OP, RECOMPUTE_TAG
from pipelines.resources import PipelineSettings
from pipelines.sensors import dirty_marts_sensor
from warehouse.bookkeeping import INGEST_LOG, QUARANTINE
from warehouse.memory import out_of_memory


def logs(level: str) -> dict:
    """Run config for Dagster's console log: INFO shows every step's lines (`--verbose`),
    WARNING only what went wrong, the progress display saying the rest."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


class RunFailed(Exception):
    """A step or a blocking check failed; the message names it in one line."""


@dataclass(frozen=True)
class RunSummary:
    recomputed: str | None  # the days the marts run rewrote, None when nothing was dirty
    conflicting_duplicates: int


def _import_quietly(module: str) -> None:
    """Warm an import; a failure is left for the real import to report in one line."""
    with contextlib.suppress(Exception):
        import_module(module)


def run_once(
    settings: PipelineSettings, say: Callable[[str], None], log_level: str = "WARNING"
) -> RunSummary:
    """Refresh, then the marts run the sensor requests, then data health; raises `RunFailed`."""
    # Great Expectations takes seconds to import; the checks need it only after ingest, whose
    # queries run in the engine with the interpreter free, so the import overlaps them.
    threading.Thread(target=_import_quietly, args=("great_expectations",), daemon=True).start()
    definitions = build_definitions(settings)
    instance = dg.DagsterInstance.ephemeral()

    def execute(job: str, **options) -> dg.ExecuteInProcessResult:
        options["run_config"] = {**logs(log_level), **options.get("run_config", {})}
        return definitions.resolve_job_def(job).execute_in_process(
            instance=instance, raise_on_error=False, **options
        )

    refreshed = execute("refresh")  # data health is its last step, whatever the checks say
    if not refreshed.success:
        raise RunFailed(failure_message(refreshed))
    with dg.build_sensor_context(instance=instance) as context:
        request = dirty_marts_sensor(context)
    recomputed = None
    if isinstance(request, dg.RunRequest):
        say(f"marts: recomputing {request.tags[RECOMPUTE_TAG]}")
        published = execute("recompute_marts", run_config=request.run_config, tags=request.tags)
        execute("publish_data_health")  # with the marts checks, passed or failed
        if not published.success:
            raise RunFailed(failure_message(published))
        recomputed = str(_metadata(published, MARTS_OP, "recomputed_days") or "none")
    else:
        say("marts: no dirty day (no new or late events since the last publish); unchanged")
    conflicting = _ingest_metadata(refreshed, "conflicting_duplicates") or 0
    return RunSummary(recomputed, int(conflicting))


def conflict_warning(count: int) -> str:
    return (
        f"{count:,} lines reused a loaded event_id with a different payload; they are in the "
        f"{QUARANTINE} table (conflicting_duplicate)"
    )


def _ingest_metadata(result: dg.ExecuteInProcessResult, key: str) -> object:
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key == dg.AssetKey(INGEST_LOG) and key in materialization.metadata:
            return materialization.metadata[key].value
    return None


def _metadata(result: dg.ExecuteInProcessResult, node: str, key: str) -> object:
    for materialization in result.asset_materializations_for_node(node):
        if key in materialization.metadata:
            return materialization.metadata[key].value
    return None


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The blocking check that failed, else the first failed step's own error, in one line."""
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.blocking:
            asset = evaluation.asset_key.to_user_string()
            return (
                f"blocking check {evaluation.check_name} on {asset} failed, the steps after it "
                f"did not run: {evaluation.description}"
            )
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and "dagster" in error.cls_name.lower():
                error = error.cause
            if out_of_memory(error.message):
                return (
                    f"step {event.step_key} needed more memory than the run's budget allows: "
                    "give more with --memory-gb, or load smaller batches with --batch-mb"
                )
            return f"step {event.step_key} failed: {error.message.strip()}"
    return "the run failed; see the log above"
