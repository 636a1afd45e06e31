"""The `creator-econ` command: simulate telemetry, run the pipeline, serve the dashboards.

Commands and flags are a public contract that scripts call; add flags, never rename them.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from datetime import date
from pathlib import Path
from typing import NoReturn

from creator_econ.settings import (
    BATCH_MB,
    DEFAULTS,
    RuntimeSettings,
    Settings,
    SettingsError,
    environment,
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (UserFacingError, SettingsError) as exc:
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
    run.add_argument("--data", type=Path, help=f"data folder (default ./{DEFAULTS.data_dir})")
    run.add_argument(
        "--ledger",
        type=Path,
        help="runtime ledger database: the run reconciles the warehouse with it and stops "
        "before publishing the marts when they differ",
    )
    run.add_argument(
        "--batch-mb",
        type=int,
        help="telemetry megabytes loaded per ingest batch (default: as much as --memory-gb "
        f"holds, at most {BATCH_MB}; less uses less memory)",
    )
    run.add_argument(
        "--memory-gb",
        type=float,
        help=f"memory the run may use, engines included (default {DEFAULTS.memory_gb:g}); "
        "a run that needs more stops with a message",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="show Dagster's full log instead of the progress display",
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
    serve.add_argument(
        "--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)"
    )
    serve.add_argument(
        "--telemetry",
        type=Path,
        help=f"telemetry directory to write (default ./{DEFAULTS.runtime_dir / 'telemetry'})",
    )
    serve.add_argument(
        "--db",
        type=Path,
        help=f"ledger database (default ./{DEFAULTS.runtime_dir / 'ledger.db'})",
    )
    serve.add_argument("--policy", type=Path, help="policy TOML (default: shipped policy)")
    serve.add_argument(
        "--allow-unprofitable-packs",
        action="store_true",
        help="run a policy whose packs net less per coin than creators are paid (experiments)",
    )
    serve.add_argument("--source", default="runtime", help="telemetry source name of this instance")
    serve.add_argument(
        "--no-group-commit",
        action="store_true",
        help="commit every operation on its own (slower; the benchmark's baseline)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=1000,
        help="open HTTP and WebSocket connections; past it a request or handshake is answered "
        "503 (default 1000)",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        help="seconds a request's headers, then its body, may take to arrive; past them the "
        "request is answered 408 (default 10)",
    )
    serve.set_defaults(handler=_serve)

    load = runtime_commands.add_parser("load", help="drive a running runtime with simulated users")
    load.add_argument("--url", required=True, help="runtime base URL, e.g. http://127.0.0.1:8080")
    load.add_argument("--users", type=int, default=50, help="concurrent users (default 50)")
    load.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    load.set_defaults(handler=_load)

    check = commands.add_parser(
        "check", help="run the raw data-quality suite on the warehouse, outside a run"
    )
    check.add_argument(
        "--full",
        action="store_true",
        help="read every row (default: the files loaded since the suite last ran)",
    )
    check.add_argument("--warehouse", help="warehouse DSN (default: DATA/warehouse)")
    check.add_argument("--data", type=Path, help=f"data folder (default ./{DEFAULTS.data_dir})")
    check.add_argument(
        "--marts", type=Path, help="also republish the data health page in this marts folder"
    )
    check.add_argument("--memory-gb", type=float, help="memory the check may use")
    check.set_defaults(handler=_check)

    rec = commands.add_parser(
        "reconcile", help="compare the runtime ledger's daily totals with the warehouse"
    )
    rec.add_argument("--db", type=Path, required=True, help="runtime ledger database")
    rec.add_argument("--warehouse", required=True, help="warehouse DSN the pipeline loaded")
    rec.set_defaults(handler=_reconcile)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from simulator.run import simulate

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


def settings_from(args: argparse.Namespace) -> Settings:
    """A flag wins over the environment, which wins over the default."""
    flags = {
        "data_dir": args.data,
        "telemetry_dir": args.telemetry,
        "marts_dir": args.marts,
        "warehouse": args.warehouse,
        "cost_model": args.cost_model,
        "ledger": args.ledger,
        "batch_mb": args.batch_mb,
        "memory_gb": args.memory_gb,
    }
    given = {name: str(value) for name, value in flags.items() if value is not None}
    return Settings.from_text({**environment(), **given})


def _run(args: argparse.Namespace) -> int:
    from creator_econ.progress import for_output, reporting
    from pipelines.resources import PipelineSettings
    from pipelines.run_once import RunFailed, conflict_warning, run_once

    settings = settings_from(args)
    settings.batch_bytes  # noqa: B018 - a batch the memory budget cannot hold stops here
    if not (settings.telemetry / "sealed").is_dir():
        raise UserFacingError(
            f"{settings.telemetry} has no sealed/ folder: point --telemetry at a telemetry "
            "directory (for example one written by `creator-econ simulate --out DIR`)"
        )
    if settings.ledger and not settings.ledger.is_file():
        raise UserFacingError(f"--ledger {settings.ledger}: no runtime ledger database there")
    _check_settings(settings)
    started = time.perf_counter()
    level = "INFO" if args.verbose else "WARNING"
    with reporting(for_output(args.verbose)) as shown:
        say = print if args.verbose else shown.say
        try:
            summary = run_once(PipelineSettings.of(settings), say, level)
        except RunFailed as exc:
            raise UserFacingError(str(exc)) from exc
    if summary.recomputed is not None:
        print(f"marts: recomputed days {summary.recomputed}")
    if summary.conflicting_duplicates:
        print(f"warning: {conflict_warning(summary.conflicting_duplicates)}", file=sys.stderr)
    print(f"run complete in {time.perf_counter() - started:.1f}s; marts in {settings.marts}")
    return 0


def _check_settings(settings: Settings) -> None:
    """Fail fast, in one line, on what the user can fix: the cost model and the warehouse."""
    from models.cost_model import CostModelError, load_cost_model
    from warehouse.connection import WarehouseError, connect

    try:
        load_cost_model(settings.cost_model)
        client = connect(settings.warehouse_dsn)
        try:
            client.command("SELECT 1")
        finally:
            client.close()
    except (CostModelError, WarehouseError) as exc:
        raise UserFacingError(str(exc)) from exc


def _check(args: argparse.Namespace) -> int:
    from quality.health_tables import publish_health
    from quality.outcomes import blocking_failures, record_outcomes
    from quality.raw_suite import check_raw
    from warehouse.connection import WarehouseError, connect

    flags = {
        "data_dir": args.data,
        "warehouse": args.warehouse,
        "marts_dir": args.marts,
        "memory_gb": args.memory_gb,
    }
    given = {name: str(value) for name, value in flags.items() if value is not None}
    settings = Settings.from_text({**environment(), **given})
    try:
        client = connect(settings.warehouse_dsn, settings.memory)
        try:
            outcomes = check_raw(client, full=args.full)
            record_outcomes(client, outcomes)
            if args.marts:
                publish_health(client, settings)
        finally:
            client.close()
    except WarehouseError as exc:
        raise UserFacingError(str(exc)) from exc
    failed = [o for o in outcomes if not o.passed]
    for outcome in failed:
        print(f"{outcome.severity}: {outcome.check} on {outcome.target}: {outcome.observed}")
    scope = "every row" if args.full else "the files loaded since the last check"
    print(f"raw data quality: {len(outcomes) - len(failed)}/{len(outcomes)} passed ({scope})")
    return 1 if blocking_failures(outcomes) else 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from live_runtime.policy import PolicyError, load_policy
    from live_runtime.server import limits
    from live_runtime.server.live_socket import MAX_MESSAGE_BYTES
    from live_runtime.server.routes import create_app
    from live_runtime.server.runtime import RuntimeConfig

    if not 0 < args.request_timeout <= 3600:
        raise UserFacingError("--request-timeout must be more than 0 and at most 3600 seconds")
    try:
        policy = load_policy(args.policy, args.allow_unprofitable_packs)
    except PolicyError as exc:
        raise UserFacingError(str(exc)) from exc
    settings = RuntimeSettings.from_env()
    runtime_dir = Settings.from_text(environment()).runtime_dir
    db = args.db or runtime_dir / "ledger.db"
    telemetry = args.telemetry or runtime_dir / "telemetry"
    db.parent.mkdir(parents=True, exist_ok=True)
    config = RuntimeConfig(
        db=db,
        telemetry=telemetry,
        source=args.source,
        policy=policy,
        group_commit=not args.no_group_commit,
        signups_per_minute=settings.signups_per_minute,
        failed_sign_ins_per_minute=settings.failed_sign_ins_per_minute,
        **({"webhook_secret": settings.webhook_secret} if settings.webhook_secret else {}),
    )
    listener = _listen(args.host, args.port)
    try:
        app = create_app(config, request_timeout=args.request_timeout)
    except ValueError as exc:
        listener.close()
        raise UserFacingError(str(exc)) from exc
    host, port = listener.getsockname()[:2]
    print(
        f"runtime on http://{host}:{port} (API description at /openapi.json); "
        f"ledger {db}, telemetry {telemetry}, policy {policy.version}",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            http=limits.bounded_http(args.request_timeout),  # bounds the request head
            h11_max_incomplete_event_size=limits.MAX_HEAD_BYTES,  # the same, were h11 used
            limit_concurrency=args.max_connections,
            timeout_keep_alive=limits.KEEP_ALIVE_SECONDS,
            ws_max_size=MAX_MESSAGE_BYTES,
            proxy_headers=False,  # X-Forwarded-For is not trusted: limits count real peers
        )
    )
    server.run(sockets=[listener])
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound here so a busy port is a one-line error and port 0
    is a free port known before the first request."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise UserFacingError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port"
        ) from exc


def _load(args: argparse.Namespace) -> int:
    from loadgen.scenario import LoadError, run_load

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
    from quality.reconcile import ReconcileError, reconcile
    from warehouse.connection import WarehouseError, connect

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
