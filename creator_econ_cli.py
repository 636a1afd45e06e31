"""The `creator-econ` command: simulate telemetry, run the pipeline, serve the dashboards.

Commands and flags are a public contract that scripts call; add flags, never rename them.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import NoReturn

DEFAULT_DATA = Path("data")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


class UserFacingError(Exception):
    """A problem the user can fix, reported in one line without a traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="creator-econ",
        description="Creator economics and cost control for live platforms.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    sim = commands.add_parser("simulate", help="write a simulated platform's telemetry")
    sim.add_argument("--out", type=Path, required=True, help="telemetry directory to write")
    sim.add_argument("--creators", type=int, default=2000, help="creators (default 2000)")
    sim.add_argument("--days", type=int, default=30, help="days to simulate (default 30)")
    sim.add_argument(
        "--start", type=date.fromisoformat, default=date(2026, 10, 1), help="first day, YYYY-MM-DD"
    )
    sim.add_argument("--seed", type=int, default=7, help="random seed (same seed, same events)")
    sim.set_defaults(handler=_simulate)

    run = commands.add_parser("run", help="ingest new telemetry and publish the marts")
    run.add_argument("--telemetry", type=Path, required=True, help="telemetry directory")
    run.add_argument("--marts", type=Path, required=True, help="where to publish the marts")
    run.add_argument(
        "--warehouse",
        help="warehouse DSN: chdb:///path (embedded, default DATA/warehouse) or http(s)://host:8123",
    )
    run.add_argument("--cost-model", type=Path, help="cost model TOML (default: shipped prices)")
    run.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data folder (default ./data)")
    run.add_argument(
        "--ledger",
        type=Path,
        help="runtime ledger database: the run reconciles the warehouse with it and stops "
        "before publishing the marts when they differ",
    )
    run.add_argument(
        "--batch-mb",
        type=int,
        default=512,
        help="telemetry megabytes loaded per ingest batch (default 512; less uses less memory)",
    )
    run.set_defaults(handler=_run)

    dash = commands.add_parser("dashboard", help="serve the dashboards over published marts")
    dash.add_argument("--marts", type=Path, required=True, help="published marts directory")
    dash.add_argument("--port", type=int, help="port (default 8501)")
    dash.add_argument("--host", help="address to listen on (default all interfaces)")
    dash.set_defaults(handler=_dashboard)

    runtime = commands.add_parser("runtime", help="the live and gifting runtime server")
    runtime_commands = runtime.add_subparsers(required=True, metavar="ACTION")
    serve = runtime_commands.add_parser("serve", help="serve the HTTP and WebSocket API")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument(
        "--telemetry",
        type=Path,
        default=DEFAULT_DATA / "runtime" / "telemetry",
        help="telemetry directory to write (default ./data/runtime/telemetry)",
    )
    serve.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DATA / "runtime" / "ledger.db",
        help="ledger database (default ./data/runtime/ledger.db)",
    )
    serve.add_argument("--policy", type=Path, help="policy TOML (default: shipped policy)")
    serve.add_argument("--source", default="runtime", help="telemetry source name of this instance")
    serve.add_argument(
        "--no-group-commit",
        action="store_true",
        help="commit every operation on its own (slower; the benchmark's baseline)",
    )
    serve.set_defaults(handler=_serve)

    load = runtime_commands.add_parser("load", help="drive a running runtime with simulated users")
    load.add_argument("--url", required=True, help="runtime base URL, e.g. http://127.0.0.1:8080")
    load.add_argument("--users", type=int, default=50, help="concurrent users (default 50)")
    load.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    load.set_defaults(handler=_load)

    rec = commands.add_parser(
        "reconcile", help="compare the runtime ledger's daily totals with the warehouse"
    )
    rec.add_argument("--db", type=Path, required=True, help="runtime ledger database")
    rec.add_argument("--warehouse", required=True, help="warehouse DSN the pipeline loaded")
    rec.set_defaults(handler=_reconcile)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from live_runtime.simulator import simulate

    started = time.perf_counter()
    try:
        summary = simulate(
            args.out,
            creators=args.creators,
            days=args.days,
            start=args.start,
            seed=args.seed,
            progress=lambda line: print(line, flush=True),
        )
    except ValueError as exc:
        raise UserFacingError(str(exc)) from exc
    seconds = time.perf_counter() - started
    print(
        f"simulated {summary.events:,} events from {summary.creators:,} creators "
        f"({summary.sessions:,} sessions) into {summary.files} sealed files under {args.out} "
        f"in {seconds:.1f}s ({summary.events / max(seconds, 1e-9):,.0f} events/s)"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from ingest.warehouse import default_dsn
    from pipelines.definitions import ASSETS, CHECKS
    from pipelines.partitions import marts_run_after, recomputed
    from pipelines.resources import PipelineSettings

    if not (args.telemetry / "sealed").is_dir():
        raise UserFacingError(
            f"{args.telemetry} has no sealed/ folder: point --telemetry at a telemetry directory "
            "(for example one written by `creator-econ simulate --out DIR`)"
        )
    if args.ledger and not args.ledger.is_file():
        raise UserFacingError(f"--ledger {args.ledger}: no runtime ledger database there")
    settings = PipelineSettings(
        telemetry_dir=str(args.telemetry),
        marts_dir=str(args.marts),
        warehouse=args.warehouse or default_dsn(args.data),
        cost_model=str(args.cost_model or ""),
        ledger=str(args.ledger or ""),
        batch_mb=args.batch_mb,
    )
    _check_settings(settings)
    started = time.perf_counter()
    definitions = [*ASSETS, *CHECKS]
    # Show the pipeline's own progress lines, not Dagster's per-event debug log.
    logs = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    # Two runs: ingest (with its checks), then the marts over the days it left dirty. The
    # second's partition range is only known once the first has loaded the new events.
    loaded = dg.materialize(
        definitions,
        selection=dg.AssetSelection.groups("warehouse"),
        resources={"settings": settings},
        run_config=logs,
        raise_on_error=False,
    )
    if not loaded.success:
        _publish_health(definitions, settings, logs)
        raise UserFacingError(_failure_message(loaded))
    request = marts_run_after(loaded)
    if request is None:
        print("marts: no dirty day (no new or late events since the last publish); unchanged")
    else:
        print(f"marts: recomputing {request.describe()}", flush=True)
        published = dg.materialize(
            definitions,
            selection=dg.AssetSelection.groups("marts"),
            resources={"settings": settings},
            run_config={**logs, **request.run_config()},
            tags=request.tags(),
            raise_on_error=False,
        )
        if not published.success:
            _publish_health(definitions, settings, logs)
            raise UserFacingError(_failure_message(published))
        print(f"marts: recomputed days {recomputed(published)}")
    _publish_health(definitions, settings, logs)
    _warn_of_conflicts(loaded)
    print(f"run complete in {time.perf_counter() - started:.1f}s; marts in {args.marts}")
    return 0


def _publish_health(definitions: list, settings, logs: dict) -> None:
    """The data health page, after every run, a failed one included: that is when it matters."""
    import dagster as dg

    dg.materialize(
        definitions,
        selection=dg.AssetSelection.assets("data_health"),
        resources={"settings": settings},
        run_config=logs,
        raise_on_error=False,
    )


def _warn_of_conflicts(loaded) -> None:
    from ingest.schema import QUARANTINE

    for materialization in loaded.asset_materializations_for_node("ingest_telemetry"):
        conflicting = materialization.metadata.get("conflicting_duplicates")
        if conflicting is not None and conflicting.value:
            print(
                f"warning: {conflicting.value:,} lines reused a loaded event_id with a different "
                f"payload; they are in the {QUARANTINE} table (conflicting_duplicate)",
                file=sys.stderr,
            )
            return


def _check_settings(settings) -> None:
    """Fail fast, in one line, on what the user can fix: the cost model and the warehouse."""
    from ingest.warehouse import WarehouseError
    from models.cost_model import CostModelError, load_cost_model

    try:
        load_cost_model(Path(settings.cost_model) if settings.cost_model else None)
        with settings.client() as client:
            client.command("SELECT 1")
    except (CostModelError, WarehouseError) as exc:
        raise UserFacingError(str(exc)) from exc


def _failure_message(result) -> str:
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
            return f"step {event.step_key} failed: {error.message.strip()}"
    return "the run failed; see the log above"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from live_runtime.policy import PolicyError, load_policy
    from live_runtime.server.app import RuntimeConfig, create_app

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise UserFacingError(str(exc)) from exc
    args.db.parent.mkdir(parents=True, exist_ok=True)
    config = RuntimeConfig(
        db=args.db,
        telemetry=args.telemetry,
        source=args.source,
        policy=policy,
        group_commit=not args.no_group_commit,
    )
    _check_port_free(args.host, args.port)
    try:
        app = create_app(config)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from exc
    print(
        f"runtime on http://{args.host}:{args.port} (API description at /openapi.json); "
        f"ledger {args.db}, telemetry {args.telemetry}, policy {policy.version}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserFacingError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port"
            ) from exc


def _load(args: argparse.Namespace) -> int:
    from live_runtime.load import LoadError, run_load

    try:
        report = run_load(
            args.url,
            users=args.users,
            duration=args.duration,
            progress=lambda line: print(line, flush=True),
        )
    except LoadError as exc:
        raise UserFacingError(str(exc)) from exc
    print(report.table())
    return 0 if report.ok else 1


def _reconcile(args: argparse.Namespace) -> int:
    from ingest.reconcile import ReconcileError, reconcile
    from ingest.warehouse import WarehouseError, connect

    try:
        client = connect(args.warehouse)
        try:
            result = reconcile(args.db, client)
        finally:
            client.close()
    except (ReconcileError, WarehouseError) as exc:
        raise UserFacingError(str(exc)) from exc
    print(result.table())
    return 0 if result.ok else 1


def _dashboard(args: argparse.Namespace) -> NoReturn:
    from dashboards.launch import run

    if not args.marts.is_dir():
        print(
            f"note: {args.marts} does not exist yet; the dashboard will say so until "
            "`creator-econ run` publishes marts there",
            file=sys.stderr,
        )
    run(args.marts, port=args.port, host=args.host)


if __name__ == "__main__":
    sys.exit(main())
