"""Runtime benchmark: gifts per second with group commit, against one commit per operation.

    .venv/bin/python bench/runtime.py --users 64 --duration 20 [--rounds N] [--profile]
        [--without-viewers]

For each round, and in each round first with group commit (the default) and then with
`--no-group-commit`, both with durable commits (the default, an fsync per commit):

1. start `python -m creator_econ.cli runtime serve --port 0` in a subprocess (it picks a free
   loopback port and prints it; tests/runtime_server.py's launcher reads it), with a fresh
   ledger database and telemetry folder under --out;
2. drive it with `loadgen.scenario.run_load` (the code `creator-econ runtime load` runs) in
   this process: setup, then `--users` viewers in a closed loop for `--duration` seconds;
3. stop the server gracefully (SIGTERM: the relay drains and seals its file), then count the
   telemetry events in sealed files against the ledger's money movements (coin refunds
   included), check that each payment the sandbox provider confirmed moved money once and
   no other did, and check the ledger's invariants.

The load's purchases and orders are pending payments that its users confirm at the sandbox
provider (`POST /sandbox/v1/payment_intents/{id}/confirm`), as `runtime load` does.

The load runs in this process rather than as a `runtime load` subprocess: this process does
nothing else during the window, so the measurement is the same, and it gets the report's
figures as numbers instead of parsing a printed table. The CPU each side used is measured
(this process with getrusage, the server from /proc, the rest of the machine from /proc/stat)
because the generator, the server and anything else running share the same two cores.

With --profile, one more group-commit run with py-spy sampling the server (not part of the
table: the sampler takes CPU too) shows where the server's time goes. With --without-viewers,
one more group-commit run whose users send gifts without watching over WebSocket shows what
the fan-out of each gift to the session's viewers costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from pipeline import changed_files, code_version  # bench/ is this script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # the tests' server launcher, shared rather than copied

from runtime_server import RuntimeProcess, ServerFailed, wait_for  # noqa: E402

from loadgen.report import LoadReport  # noqa: E402
from loadgen.scenario import run_load  # noqa: E402

GIFTS_TARGET = 2_000  # gifts/s with group commit
P99_TARGET_MS = 50.0
MONEY_EVENTS = {
    "coins_purchased": "purchase",
    "coins_refunded": "coin_refund",
    "gift_sent": "gift",
    "order_paid": "order",
    "order_refunded": "refund",
    "payout_issued": "payout",
}
# Movements without a telemetry event: earnings leaving their hold for the available balance.
SILENT_MOVEMENTS = ("release",)
MODES = {"group commit": [], "one commit per operation": ["--no-group-commit"]}
TICKS = os.sysconf("SC_CLK_TCK")
_STARTED = time.perf_counter()


def say(line: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {line}", flush=True)


# --------------------------------------------------------------------------- the server


class Server(RuntimeProcess):
    """`creator-econ runtime serve` in a subprocess with its own ledger and telemetry."""

    def __init__(self, root: Path, flags: list[str]) -> None:
        super().__init__(root, flags, cwd=ROOT)

    def start(self, timeout: float = 60.0) -> Server:
        """Starts the server on a port it picks, and returns once /v1/health answers."""
        self.root.mkdir(parents=True)
        began = time.monotonic()
        try:
            super().start(timeout)
        except ServerFailed as exc:
            if self.process is not None and self.process.poll() not in (None, -signal.SIGKILL):
                raise SystemExit(f"error: the server exited; see {self.log}") from exc
            raise SystemExit(
                f"error: the server did not print its address in {timeout:.0f}s; see {self.log}"
            ) from exc

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise SystemExit(f"error: the server exited; see {self.log}")
            try:
                return bool(self.health())
            except OSError:
                return False

        try:
            wait_for(answers, "/v1/health", max(0.0, timeout - (time.monotonic() - began)), 0.1)
        except AssertionError:
            message = f"error: the server did not answer /v1/health in {timeout:.0f}s"
            raise SystemExit(message) from None
        return self

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/v1/health", timeout=5) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return _proc_cpu(f"/proc/{self.process.pid}/stat")

    def thread_cpu(self) -> dict[int, float]:
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        return {int(t.name): _proc_cpu(str(t / "stat")) for t in tasks.iterdir()}

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: uvicorn's graceful stop ends the sessions, drains the relay, seals."""
        try:
            super().stop(timeout)
        except ServerFailed:
            raise SystemExit(
                f"error: the server did not stop within {timeout:.0f}s of SIGTERM"
            ) from None


def _proc_cpu(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS, sum(values[:8]) / TICKS


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- one run


def measure(
    mode: str,
    flags: list[str],
    n: int,
    args: argparse.Namespace,
    root: Path,
    watch: bool = True,
) -> dict:
    """One server, one load, one graceful stop; the figures of the run."""
    server = Server(root, flags).start()
    try:
        before, threads_before = server.health(), server.thread_cpu()
        cpu = (server.cpu_seconds(), _own_cpu(), *_machine_busy())
        wall = time.perf_counter()
        report = run_load(
            server.url,
            users=args.users,
            duration=args.duration,
            progress=lambda line: say(f"  {line}"),
            watch=watch,
        )
        wall = time.perf_counter() - wall
        after, threads_after = server.health(), server.thread_cpu()
        server_cpu = server.cpu_seconds() - cpu[0]
        own_cpu = _own_cpu() - cpu[1]
        busy, total = _machine_busy()
        cores = os.cpu_count() or 1
        machine_cpu = (busy - cpu[2]) * cores * wall / max(total - cpu[3], 1e-9)
    finally:
        server.stop()
    commits = after["commits"] - before["commits"]
    per_thread = sorted(
        (threads_after[t] - threads_before.get(t, 0.0) for t in threads_after), reverse=True
    )
    return _run(mode, n, report, commits, after["operations"] - before["operations"], wall) | {
        "server_cores": server_cpu / wall,
        "load_cores": own_cpu / wall,
        "other_cores": max(0.0, machine_cpu - server_cpu - own_cpu) / wall,
        "thread_cores": [round(c / wall, 3) for c in per_thread[:4]],
        "ledger": ledger_check(root),
    }


def _run(mode: str, n: int, report: LoadReport, commits: int, ops: int, wall: float) -> dict:
    gift = report.kinds["gift"]
    return {
        "mode": mode,
        "round": n,
        "gifts_per_s": gift.per_second,
        "gift_p50_ms": gift.p50_ms,
        "gift_p99_ms": gift.p99_ms,
        "requests_per_s": report.total.per_second,
        "ws_messages_per_s": report.ws_messages / report.seconds,
        "ok": report.ok,
        "unexpected": report.unexpected,
        "seconds": report.seconds,
        "ops_per_commit": ops / max(commits, 1),
        "commits_per_s": commits / wall,
        "table": report.table(),
    }


def ledger_check(root: Path) -> dict:
    """Telemetry events in sealed files against the ledger's movements, and the invariants."""
    events: Counter = Counter()
    files = sorted((root / "telemetry" / "sealed").glob("*.jsonl"))
    for path in files:
        with open(path, "rb") as f:
            for line in f:
                events[json.loads(line)["event_type"]] += 1
    left_open = list((root / "telemetry" / "open").glob("*"))
    conn = sqlite3.connect(root / "ledger.db")
    try:
        movements = dict(conn.execute("SELECT kind, count(*) FROM movements GROUP BY kind"))
        paid = dict(
            conn.execute(
                "SELECT kind, count(*) FROM payments "
                "WHERE status IN ('succeeded', 'refunded', 'disputed') GROUP BY kind"
            )
        )
        outbox = conn.execute("SELECT count(*), sum(relayed) FROM outbox").fetchone()
        unbalanced_units = conn.execute(
            "SELECT count(*) FROM "
            "(SELECT unit FROM accounts GROUP BY unit HAVING sum(balance) != 0)"
        ).fetchone()[0]
        overdrawn = conn.execute(
            "SELECT count(*) FROM accounts WHERE may_go_negative = 0 AND balance < 0"
        ).fetchone()[0]
    finally:
        conn.close()
    money = Counter({kind: events[event] for event, kind in MONEY_EVENTS.items()})
    told = Counter({k: n for k, n in movements.items() if k not in SILENT_MOVEMENTS})
    return {
        "sealed_files": len(files),
        "files_left_open": len(left_open),
        "telemetry_events": sum(events.values()),
        "money_events": sum(money.values()),
        "movements": sum(told.values()),
        "outbox_rows": outbox[0],
        "outbox_relayed": outbox[1] or 0,
        "money_events_match": +money == +told and not left_open,
        # each confirmed payment (later reversed or not) is one purchase or order movement
        "payments_match": all(paid.get(k, 0) == movements.get(k, 0) for k in ("purchase", "order")),
        "invariants_hold": unbalanced_units == 0 and overdrawn == 0,
        "events_by_type": dict(events),
    }


# --------------------------------------------------------------------------- profile


PROFILE_RATE = 200  # samples per second

# Where the GIL's time goes, by the first pattern found in the sampled stack.
BUCKETS = (
    ("outbox relay thread", ("OutboxRelay",)),
    ("ledger writer thread (Python around SQLite)", ("LedgerWriter",)),
    ("WebSocket fan-out (push + send per viewer)", ("send_loop", "Room.push", "Rooms.push")),
    ("HTTP requests (uvicorn + Starlette + handlers)", ("run_asgi",)),
    ("WebSocket connections (accept, receive, close)", ("websockets", "live (")),
)


def profile(args: argparse.Namespace, root: Path) -> dict:
    """One more group-commit run with py-spy sampling whichever server thread holds the GIL:
    the server is one Python process, so its Python work is bounded by one core."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("error: --profile needs py-spy: .venv/bin/pip install py-spy")
    server = Server(root, []).start()
    raw = root / "py-spy.txt"
    try:
        assert server.process is not None
        sampler = subprocess.Popen(
            [spy, "record", "--pid", str(server.process.pid), "--threads", "--gil",
             "--nonblocking", "--rate", str(PROFILE_RATE), "--format", "raw",
             "--output", str(raw), "--duration", str(int(args.duration) + 60)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)
        started = time.perf_counter()
        report = run_load(server.url, users=args.users, duration=args.duration)
        sampled = time.perf_counter() - started + 1.0
        sampler.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        sampler.wait(timeout=60)
    finally:
        server.stop()
    summary = summarize_profile(raw)
    return summary | {
        "gifts_per_s": report.gifts_per_second,
        "gil_busy": summary["samples"] / (PROFILE_RATE * sampled),
    }


def summarize_profile(raw: Path, top: int = 15) -> dict:
    """Shares of GIL-holding samples by thread, by bucket and by innermost function."""
    threads: Counter = Counter()
    buckets: Counter = Counter()
    leaves: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, text = line.rpartition(" ")
        count, frames = int(text), stack.split(";")
        threads[frames[0].partition(": ")[2] or frames[0]] += count
        buckets[_bucket(stack)] += count
        leaves[_short(frames[-1])] += count
    total = max(sum(threads.values()), 1)
    return {
        "samples": sum(threads.values()),
        "threads": {t: n / total for t, n in threads.most_common()},
        "buckets": {b: n / total for b, n in buckets.most_common()},
        "functions": [(f, n / total) for f, n in leaves.most_common(top)],
    }


def _bucket(stack: str) -> str:
    for name, patterns in BUCKETS:
        if any(p in stack for p in patterns):
            return name
    return "event loop and the rest"


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` without the site-packages prefix of the path."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


# --------------------------------------------------------------------------- report


def side_by_side(runs: list[dict]) -> list[tuple[str, ...]]:
    """Rows: metric, group commit, one commit per operation, ratio (medians over rounds)."""
    group = [r for r in runs if r["mode"] == "group commit"]
    base = [r for r in runs if r["mode"] != "group commit"]

    def med(rs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    def row(label: str, key: str, fmt: str, ratio: bool = True) -> tuple[str, ...]:
        g, b = med(group, key), med(base, key)
        share = f"{g / b:.2f}x" if ratio and b else ""
        return (label, format(g, fmt), format(b, fmt), share)

    return [
        row("gifts/s", "gifts_per_s", ",.0f"),
        row("gift p50 ms", "gift_p50_ms", ".1f"),
        row("gift p99 ms", "gift_p99_ms", ".1f"),
        row("all requests/s", "requests_per_s", ",.0f"),
        row("WebSocket messages/s", "ws_messages_per_s", ",.0f"),
        row("commits/s", "commits_per_s", ",.0f"),
        row("operations per commit", "ops_per_commit", ".1f"),
        row("server CPU (cores)", "server_cores", ".2f", ratio=False),
        row("load generator CPU (cores)", "load_cores", ".2f", ratio=False),
        row("other processes CPU (cores)", "other_cores", ".2f", ratio=False),
    ]


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("metric", "group commit", "one commit per operation", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


def verdict(runs: list[dict]) -> str:
    group = [r for r in runs if r["mode"] == "group commit"]
    gifts = statistics.median(r["gifts_per_s"] for r in group)
    p99 = statistics.median(r["gift_p99_ms"] for r in group)
    met = gifts >= GIFTS_TARGET and p99 < P99_TARGET_MS
    return (
        f"target (group commit): >= {GIFTS_TARGET:,} gifts/s with p99 < {P99_TARGET_MS:.0f} ms: "
        f"{'MET' if met else 'MISSED'} ({gifts:,.0f} gifts/s = {gifts / GIFTS_TARGET:.2f}x the "
        f"target, p99 {p99:.1f} ms = {p99 / P99_TARGET_MS:.2f}x the bound)"
    )


def sanity_line(run: dict) -> str:
    led = run["ledger"]
    return (
        f"{run['mode']} (round {run['round']}): {led['telemetry_events']:,} telemetry events in "
        f"{led['sealed_files']} sealed files, {led['money_events']:,} of them money events; "
        f"ledger movements {led['movements']:,} "
        f"({'match' if led['money_events_match'] else 'MISMATCH'}); confirmed payments "
        f"{'match' if led['payments_match'] else 'MISMATCH'} purchases and orders; invariants "
        f"{'hold' if led['invariants_hold'] else 'BROKEN'}; load "
        f"{'ok' if run['ok'] else 'UNEXPECTED ' + json.dumps(run['unexpected'])}"
    )


def print_profile(prof: dict) -> None:
    print(
        f"\nserver profile (py-spy --gil, {prof['samples']:,} samples; the GIL was held "
        f"{prof['gil_busy']:.0%} of the time; {prof['gifts_per_s']:,.0f} gifts/s while sampled):"
    )
    for thread, share in prof["threads"].items():
        print(f"  {share:6.1%}  thread {thread}")
    print("  by part of the server:")
    for bucket, share in prof["buckets"].items():
        print(f"  {share:6.1%}  {bucket}")
    print("  innermost functions:")
    for name, share in prof["functions"]:
        print(f"  {share:6.1%}  {name}")


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=64, help="closed-loop viewers (default 64)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each mode (medians shown)")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/creator-econ-runtime-bench"), help="work folder"
    )
    parser.add_argument("--profile", action="store_true", help="one more run under py-spy")
    parser.add_argument(
        "--without-viewers",
        action="store_true",
        help="one more group-commit run with no WebSocket viewers: the cost of the fan-out",
    )
    parser.add_argument("--keep", action="store_true", help="keep ledgers and telemetry")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    out: Path = args.out.resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = out / f"run-{stamp}"
    work.mkdir(parents=True)
    code = code_version()
    results: dict = {
        "command": " ".join([Path(sys.executable).name, "bench/runtime.py", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "code_at_start": code,
        "runs": [],
    }
    say(
        f"runtime benchmark in {work}; commit {code['commit']} (source "
        f"{code['source_sha256']}); load average {results['load_average_at_start']}"
    )
    try:
        for n in range(1, args.rounds + 1):
            for mode, flags in MODES.items():
                say(f"round {n}: {mode}, {args.users} users for {args.duration:g}s")
                root = work / f"{n}-{'group' if not flags else 'single'}"
                run = measure(mode, flags, n, args, root)
                results["runs"].append(run)
                say(
                    f"  {run['gifts_per_s']:,.0f} gifts/s, p99 {run['gift_p99_ms']:.1f} ms; "
                    f"server {run['server_cores']:.2f} cores, load {run['load_cores']:.2f}, "
                    f"others {run['other_cores']:.2f}"
                )
        if args.without_viewers:
            say(f"group commit without viewers, {args.users} users for {args.duration:g}s")
            root = work / "no-viewers"
            results["without_viewers"] = measure(
                "group commit, no viewers", [], 1, args, root, watch=False
            )
        if args.profile:
            say("profile: one more group-commit run with py-spy sampling the server")
            results["profile"] = profile(args, work / "profile")
        results["load_average_at_end"] = os.getloadavg()
        results["code_at_end"] = code_version()
        changed = changed_files(code, results["code_at_end"])
        (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        for run in results["runs"]:
            print(f"\n{run['mode']}, round {run['round']}:\n{run['table']}")
        print()
        print_table(side_by_side(results["runs"]))
        print(verdict(results["runs"]))
        if results.get("without_viewers"):
            alone = results["without_viewers"]
            print(
                f"group commit without WebSocket viewers (no fan-out): "
                f"{alone['gifts_per_s']:,.0f} gifts/s, p50 {alone['gift_p50_ms']:.1f} ms, "
                f"p99 {alone['gift_p99_ms']:.1f} ms; server {alone['server_cores']:.2f} cores, "
                f"load {alone['load_cores']:.2f}, others {alone['other_cores']:.2f}"
            )
        print("\nsanity:")
        checked = results["runs"] + [results[k] for k in ("without_viewers",) if k in results]
        for run in checked:
            print("  " + sanity_line(run))
        if results.get("profile"):
            print_profile(results["profile"])
        print(f"\nload average at end {results['load_average_at_end']}")
        if changed:
            print(f"WARNING: the source changed during the benchmark: {', '.join(changed)}")
        else:
            print(f"code: commit {code['commit']}, source {code['source_sha256']} (unchanged)")
        print(f"results: {work / 'results.json'}")
        healthy = all(r["ok"] and _sane(r) for r in checked)
        return 0 if healthy else 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if not args.keep:
            for folder in work.iterdir():
                if folder.is_dir():
                    shutil.rmtree(folder / "telemetry", ignore_errors=True)
                    for db in folder.glob("ledger.db*"):
                        db.unlink()


def _sane(run: dict) -> bool:
    led = run["ledger"]
    return led["money_events_match"] and led["payments_match"] and led["invariants_hold"]


if __name__ == "__main__":
    sys.exit(main())
