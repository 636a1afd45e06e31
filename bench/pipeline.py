"""End-to-end pipeline benchmark: simulate telemetry, run the pipeline, compare with a bare load.

    .venv/bin/python bench/pipeline.py --events 10000000 --out /tmp/bench [--profile] [--keep]

Steps, all on the same files in one invocation:

1. simulate the telemetry in-process (`simulator.run.simulate`), picking the creators
   count for the target events from short calibration runs unless --creators is given;
2. baseline: the bare ClickHouse bulk load of docs/architecture.md ("Parse JSON in bulk"):
   `INSERT INTO t SELECT ... FROM file(path, JSONEachRow, 'schema')` of the envelope columns of
   every sealed file into a fresh MergeTree table, no validation, no dedup; in a subprocess
   with its own fresh chDB path;
3. `creator-econ run` as a subprocess with a fresh embedded warehouse under --out: wall
   seconds, peak RSS (wait4 rusage of that process alone) and the ingest rate from its
   "ingest done in X s" line;
4. the baseline again, so drift on a shared machine shows as the gap between the two;
5. with --profile, one more ingest into a fresh warehouse with every SQL statement timed
   (the project code is untouched: the client's methods are wrapped), to show where ingest
   time goes.

It prints a table and writes results.json and the child logs under --out. Big data
(telemetry, warehouses, marts) is deleted at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
INGEST_TARGET = 500_000  # events/s
RUN_TARGET = 60.0  # seconds on 10M events
RSS_TARGET = 4 * GIB
CALIBRATION_EVENTS_PER_CREATOR = 1800  # first guess; calibration corrects it
BASELINE_SCHEMA = "event_id String, event_type String, occurred_at DateTime64(6, 'UTC')"
RESULT_PREFIX = "BENCH-RESULT "
_STARTED = time.perf_counter()


def say(line: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {line}", flush=True)


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    """A finished subprocess: its output lines, wall seconds and peak RSS in bytes."""

    lines: list[str]
    seconds: float
    peak_rss: int
    returncode: int
    timed_out: bool
    peak_phase: str = ""
    rss_timeline: list[tuple[float, int]] = field(default_factory=list)

    def result(self) -> dict:
        for line in reversed(self.lines):
            if line.startswith(RESULT_PREFIX):
                return json.loads(line.removeprefix(RESULT_PREFIX))
        raise RuntimeError("the child printed no result line")


class RssSampler(threading.Thread):
    """Samples a process's resident set every `every` seconds and notes the phase (set by
    the caller from the child's progress lines) it was in at the peak."""

    def __init__(self, pid: int, phase: str, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.phase = pid, every, phase
        self.peak, self.peak_phase = 0, ""
        self.timeline: list[tuple[float, int]] = []  # about once a second
        self._halt = threading.Event()

    def run(self) -> None:
        started, last = time.perf_counter(), -1.0
        while not self._halt.wait(self.every):
            rss = _rss(self.pid)
            if rss is None:  # exited
                return
            now = time.perf_counter() - started
            if rss > self.peak:
                self.peak, self.peak_phase = rss, self.phase
            if now - last >= 1.0:
                self.timeline.append((round(now, 1), rss))
                last = now

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_child(
    cmd: list[str],
    log_path: Path,
    show: Callable[[str], str | None],
    timeout: float,
    phase: Callable[[str], str | None] = lambda _line: None,
    first_phase: str = "",
) -> Child:
    """Runs `cmd`, streaming chosen lines as progress; wait4 gives this child's own rusage,
    a sampler of /proc tells in which phase (from `phase` of its lines) the peak came."""
    started = time.perf_counter()
    timed_out = threading.Event()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env()
        )

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        sampler = RssSampler(proc.pid, first_phase)
        sampler.start()
        lines = []
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                shown = show(line)
                if shown:
                    say(shown)
                sampler.phase = phase(line) or sampler.phase
            sampler.stop()
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        lines=lines,
        seconds=time.perf_counter() - started,
        peak_rss=usage.ru_maxrss * 1024,  # KiB on Linux
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        peak_phase=sampler.peak_phase,
        rss_timeline=sampler.timeline,
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _check(child: Child, what: str, log_path: Path) -> None:
    if child.timed_out:
        raise SystemExit(f"error: {what} exceeded --timeout and was stopped; see {log_path}")
    if child.returncode != 0:
        tail = "\n".join(child.lines[-15:])
        raise SystemExit(f"error: {what} exited with {child.returncode}; see {log_path}\n{tail}")


_DAGSTER_LINE = re.compile(r"^\S+ \S+ \S+ - dagster - (\w+) - [^ ]+ - [0-9a-f-]{36} - (.*)$")


def _show_run_line(line: str) -> str | None:
    match = _DAGSTER_LINE.match(line)
    if match:
        level, rest = match.groups()
        return f"run: {rest}" if level == "INFO" else f"run {level}: {rest}"
    return f"run: {line}" if line.strip() else None


def _show_child_line(prefix: str) -> Callable[[str], str | None]:
    return lambda line: None if line.startswith(RESULT_PREFIX) else f"{prefix}: {line}"


# --------------------------------------------------------------------------- steps


@dataclass
class Telemetry:
    creators: int
    days: int
    events: int
    bytes: int
    files: int
    duplicates: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def pick_creators(target: int, days: int, seed: int, work: Path) -> int:
    """Creators for about `target` events: short simulations of the same population, scaled
    to `days` (events grow about linearly with days; per creator they vary with the draw of
    heavy-tailed audiences, hence calibrating rather than a fixed ratio)."""
    from simulator.run import simulate

    cal_days = min(days, max(3, days // 6))
    creators = max(1, round(target / CALIBRATION_EVENTS_PER_CREATOR))
    for attempt in range(1, 3):
        folder = work / f"calibrate-{attempt}"
        summary = simulate(folder, creators=creators, days=cal_days, seed=seed)
        shutil.rmtree(folder)
        projected = summary.events * days / cal_days
        say(
            f"calibrate {attempt}: {creators:,} creators x {cal_days} days -> "
            f"{summary.events:,} events, ~{projected:,.0f} projected over {days} days"
        )
        better = max(1, round(creators * target / max(projected, 1)))
        if abs(better - creators) <= 0.03 * creators:
            break
        creators = better
    return creators


def simulate_telemetry(out: Path, creators: int, days: int, seed: int) -> Telemetry:
    from simulator.run import simulate

    started = time.perf_counter()
    summary = simulate(
        out, creators=creators, days=days, seed=seed, progress=lambda line: say(f"simulate: {line}")
    )
    return Telemetry(
        creators=creators,
        days=days,
        events=summary.events,
        bytes=summary.bytes,
        files=summary.files,
        duplicates=summary.duplicates,
        seconds=time.perf_counter() - started,
    )


def baseline(
    telemetry: Path, warehouse: Path, log: Path, timeout: float, mode: str = "_baseline"
) -> dict:
    """The bare load in a child: envelope columns (`_baseline`) or every field typed
    (`_baseline_typed`)."""
    cmd = [sys.executable, __file__, mode, str(telemetry), str(warehouse)]
    child = run_child(cmd, log, _show_child_line("baseline"), timeout)
    _check(child, "the baseline load", log)
    shutil.rmtree(warehouse, ignore_errors=True)
    return child.result() | {"peak_rss": child.peak_rss}


_INGEST_DONE = re.compile(r"ingest done in ([0-9.]+)s: (\d+) files, ([0-9,]+) lines")
_RUN_DONE = re.compile(r"run complete in ([0-9.]+)s")


def _run_phase(line: str) -> str | None:
    """The phase of `creator-econ run` that starts after this log line."""
    if "published" in line:
        return "teardown"
    if "models: week" in line:
        return "models: build + publish"
    if "ingest done" in line:
        return "models: extract from the warehouse"
    if "ingest:" in line:
        return "ingest"
    return None


def pipeline_run(telemetry: Path, work: Path, log: Path, timeout: float) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "creator_econ.cli",
        "run",
        "--telemetry",
        str(telemetry),
        "--marts",
        str(work / "marts"),
        "--warehouse",
        f"chdb://{work / 'warehouse'}",
        "--data",
        str(work / "data"),
    ]
    child = run_child(cmd, log, _show_run_line, timeout, _run_phase, "startup + first ingest batch")
    _check(child, "creator-econ run", log)
    text = "\n".join(child.lines)
    ingest = _INGEST_DONE.search(text)
    done = _RUN_DONE.search(text)
    if not ingest or not done:
        raise SystemExit(f"error: no 'ingest done' / 'run complete' line in {log}")
    return {
        "wall_seconds": child.seconds,
        "materialize_seconds": float(done[1]),
        "peak_rss": child.peak_rss,
        "peak_rss_phase": child.peak_phase,
        "rss_timeline": child.rss_timeline,
        "ingest_seconds": float(ingest[1]),
        "ingest_files": int(ingest[2]),
        "ingest_lines": int(ingest[3].replace(",", "")),
    }


def profile_ingest(telemetry: Path, warehouse: Path, log: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "_profile", str(telemetry), str(warehouse)]
    child = run_child(cmd, log, _show_child_line("profile"), timeout)
    _check(child, "the ingest profile", log)
    shutil.rmtree(warehouse, ignore_errors=True)
    return child.result() | {"peak_rss": child.peak_rss}


# --------------------------------------------------------------------------- child modes


def typed_schema() -> str:
    """Every field of every event type as one wide typed row, for the bare typed load."""
    from telemetry.events import ENVELOPE, EVENT_FIELDS

    types = {
        "string": "String", "nullable_string": "Nullable(String)", "int": "Int64",
        "number": "Float64", "time": "DateTime64(6, 'UTC')", "date": "Date32",
        "strings": "Array(String)",
        "splits": "Array(Tuple(creator_id String, share_minor Int64))",
    }  # fmt: skip
    fields = {f.name: f for f in ENVELOPE}
    for type_fields in EVENT_FIELDS.values():
        fields.update({f.name: f for f in type_fields if f.name not in fields})
    return ", ".join(f"{name} {types[f.kind]}" for name, f in fields.items())


def child_baseline(telemetry: Path, warehouse: Path, typed: bool = False) -> None:
    """The bare bulk load, one INSERT per sealed file: the envelope columns, or with `typed`
    every field of every type into one wide typed table."""
    from telemetry.files import list_sealed
    from warehouse.connection import connect

    client = connect(f"chdb://{warehouse}")
    schema = typed_schema() if typed else BASELINE_SCHEMA
    client.command(f"CREATE TABLE t ({schema}) ENGINE = MergeTree ORDER BY tuple()")
    files = list_sealed(telemetry)
    seconds = 0.0
    for number, path in enumerate(files, 1):
        started = time.perf_counter()
        client.command(
            "INSERT INTO t SELECT * FROM file({path:String}, JSONEachRow, {schema:String})",
            parameters={"path": str(path.resolve()), "schema": schema},
            settings={"date_time_input_format": "best_effort"},
        )
        seconds += time.perf_counter() - started
        if number % 10 == 0 or number == len(files):
            print(f"{number}/{len(files)} files in {seconds:.1f}s", flush=True)
    events = int(client.command("SELECT count() FROM t"))
    client.close()
    print(RESULT_PREFIX + json.dumps({"events": events, "files": len(files), "seconds": seconds}))


_STATEMENT = re.compile(
    r"^\s*(INSERT INTO|TRUNCATE TABLE|CREATE TABLE(?: IF NOT EXISTS)?|DROP TABLE(?: IF EXISTS)?"
    r"|DELETE FROM)\s+(\w+)"
)
_FROM = re.compile(r"\bFROM\s+(\w+)")


def _statement_label(method: str, args: tuple) -> str:
    if method in ("insert", "insert_arrow"):
        return f"{method}() {args[0]}"
    sql = str(args[0]) if args else ""
    match = _STATEMENT.match(sql)
    if match:
        verb, table = match.groups()
        table = "raw_* (one per event type)" if table.startswith("raw_") else table
        verb = " ".join(verb.split()[:2])
        return f"{verb} {table}"
    found = _FROM.search(sql)
    return f"SELECT ... FROM {found[1]}" if found else " ".join(sql.split())[:50]


def time_statements(client) -> dict[str, list[float]]:
    """Wraps the client's calls so each statement's calls and seconds add up by label."""
    totals: dict[str, list[float]] = {}

    def timed(method: str) -> Callable:
        original = getattr(client, method)

        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                entry = totals.setdefault(_statement_label(method, args), [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        return call

    for method in ("command", "query", "insert", "insert_arrow"):
        setattr(client, method, timed(method))
    return totals


def child_profile(telemetry: Path, warehouse: Path) -> None:
    """`ingest.loader.ingest` into a fresh warehouse with each client call timed by label."""
    from ingest.loader import ingest
    from warehouse.connection import connect

    client = connect(f"chdb://{warehouse}")
    totals = time_statements(client)
    report = ingest(client, telemetry, read_files_in_warehouse=True, progress=print)
    client.close()
    statements = sorted(
        ({"statement": k, "calls": int(v[0]), "seconds": v[1]} for k, v in totals.items()),
        key=lambda s: -s["seconds"],
    )
    for s in statements:
        share = s["seconds"] / report.seconds
        print(f"{s['seconds']:8.2f}s {share:6.1%} {s['calls']:5d}x  {s['statement']}")
    result = {
        "seconds": report.seconds,
        "lines": report.lines_read,
        "files": len(report.files),
        "statements": statements,
    }
    print(RESULT_PREFIX + json.dumps(result))


# --------------------------------------------------------------------------- report


def table(results: dict) -> list[tuple[str, str, str, str, str]]:
    """Rows: metric, value, target, ratio to baseline, verdict."""
    tel, run, base = results["telemetry"], results["run"], results["baseline"]
    base_rate = base["events_per_s"]
    ingest_rate = run["ingest_events_per_s"]
    rows = [
        ("events (lines, redeliveries included)", f"{tel['events']:,}", "~target", "", ""),
        ("bytes of sealed JSON Lines", f"{tel['bytes'] / 1e9:.2f} GB", "", "", ""),
        ("sealed files", f"{tel['files']:,}", "", "", ""),
        ("simulate events/s", f"{tel['events_per_s']:,.0f}", "", "", ""),
        (
            "baseline bulk-load events/s",
            f"{base_rate:,.0f}",
            "",
            "1.00",
            "before {:,.0f}, after {:,.0f}".format(*base["runs_events_per_s"]),
        ),
        (
            "ingest events/s",
            f"{ingest_rate:,.0f}",
            f">= {INGEST_TARGET:,}",
            f"{ingest_rate / base_rate:.2f}",
            _verdict(ingest_rate >= INGEST_TARGET, ingest_rate / INGEST_TARGET, "of target"),
        ),
        ("ingest seconds", f"{run['ingest_seconds']:.1f}", "", "", ""),
        (
            "ingest / baseline ratio",
            f"{ingest_rate / base_rate:.2f}",
            "",
            "",
            f"ingest takes {base_rate / ingest_rate:.1f}x the bare load's time",
        ),
        (
            "full run seconds (process wall)",
            f"{run['wall_seconds']:.1f}",
            f"< {RUN_TARGET:.0f}",
            "",
            _verdict(run["wall_seconds"] < RUN_TARGET, run["wall_seconds"] / RUN_TARGET, "target"),
        ),
        ("  of which materialize (CLI's own)", f"{run['materialize_seconds']:.1f}", "", "", ""),
        (
            "peak RSS of the run",
            f"{run['peak_rss'] / GIB:.2f} GiB",
            "< 4 GiB",
            "",
            _verdict(run["peak_rss"] < RSS_TARGET, run["peak_rss"] / RSS_TARGET, "target"),
        ),
        ("  phase of the run at the peak", run["peak_rss_phase"], "", "", "sampled /proc"),
    ]
    if results.get("profile"):
        prof = results["profile"]
        rows.append(
            (
                "ingest events/s (profiled rerun)",
                f"{prof['lines'] / prof['seconds']:,.0f}",
                "",
                f"{prof['lines'] / prof['seconds'] / base_rate:.2f}",
                "same ingest, each SQL statement timed",
            )
        )
    return rows


def _verdict(met: bool, ratio: float, what: str) -> str:
    return f"met ({ratio:.2f}x {what})" if met else f"MISSED ({ratio:.2f}x {what})"


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> None:
    """Aligned columns; the first row is the header unless one is given."""
    if header is None:
        header = ("metric", "value", "target", "ratio to baseline", "against target / note")
    else:
        header, rows = rows[0], rows[1:]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


CODE_DIRS = (
    "creator_econ", "telemetry", "simulator", "warehouse", "ingest", "models", "quality",
    "pipelines",
)  # fmt: skip


def code_version() -> dict:
    """The project commit and hashes of the source the children import, so a run can tell
    whether the code changed under it (a shared checkout can move while a benchmark runs)."""
    files = sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    hashes = {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    source = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    return {"commit": commit, "source_sha256": source, "files": hashes}


def changed_files(before: dict, after: dict) -> list[str]:
    names = set(before["files"]) | set(after["files"])
    return sorted(n for n in names if before["files"].get(n) != after["files"].get(n))


def machine() -> dict:
    import chdb
    import clickhouse_connect

    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "chdb": chdb.__version__,
        "clickhouse_connect": clickhouse_connect.__version__,
        "load_average_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="target events (~)")
    parser.add_argument("--creators", type=int, help="creators (skips the calibration)")
    parser.add_argument("--days", type=int, default=30, help="days to simulate (default 30)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--out", type=Path, required=True, help="work folder (created)")
    parser.add_argument("--profile", action="store_true", help="also time ingest per statement")
    parser.add_argument("--keep", action="store_true", help="keep telemetry and warehouses")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="stop a step after this many seconds"
    )
    return parser


def _baseline_step(telemetry: Path, out: Path, n: int, when: str, timeout: float) -> dict:
    say(f"baseline bulk load ({when} the run, fresh chDB path)")
    base = baseline(telemetry, out / f"baseline-{n}", out / f"baseline-{n}.log", timeout)
    say(f"baseline: {base['events']:,} events in {base['seconds']:.1f}s")
    return base


BIG = ("telemetry", "warehouse", "marts", "data", "baseline-1", "baseline-2", "profile-warehouse")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_baseline"]:
        child_baseline(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["_baseline_typed"]:
        child_baseline(Path(argv[1]), Path(argv[2]), typed=True)
        return 0
    if argv[:1] == ["_profile"]:
        child_profile(Path(argv[1]), Path(argv[2]))
        return 0
    args = _parser().parse_args(argv)
    out: Path = args.out.resolve()
    taken = [name for name in BIG if (out / name).exists()]
    if taken:
        print(f"error: {out} already holds {', '.join(taken)}; remove them or pick another --out")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    telemetry = out / "telemetry"
    results: dict = {
        "command": " ".join([Path(sys.executable).name, "bench/pipeline.py", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code_at_start": code_version(),
    }
    code = results["code_at_start"]
    say(
        f"benchmark in {out}; commit {code['commit']} (source {code['source_sha256']}); "
        f"load average {results['machine']['load_average_at_start']}"
    )
    try:
        creators = args.creators or pick_creators(args.events, args.days, args.seed, out)
        say(f"simulating {creators:,} creators x {args.days} days (seed {args.seed})")
        tel = simulate_telemetry(telemetry, creators, args.days, args.seed)
        results["telemetry"] = asdict(tel) | {"events_per_s": tel.events_per_s}
        say(f"simulated {tel.events:,} events, {tel.bytes / 1e9:.2f} GB in {tel.seconds:.1f}s")

        runs = [_baseline_step(telemetry, out, 1, "before", args.timeout)]
        say("creator-econ run (fresh embedded warehouse)")
        run = pipeline_run(telemetry, out, out / "run.log", args.timeout)
        run["ingest_events_per_s"] = run["ingest_lines"] / run["ingest_seconds"]
        results["run"] = run
        say(
            f"run: {run['wall_seconds']:.1f}s wall, peak RSS {run['peak_rss'] / GIB:.2f} GiB, "
            f"ingest {run['ingest_events_per_s']:,.0f} events/s"
        )
        runs.append(_baseline_step(telemetry, out, 2, "after", args.timeout))
        rates = [b["events"] / b["seconds"] for b in runs]
        results["baseline"] = {
            "runs": runs,
            "runs_events_per_s": rates,
            "events_per_s": sum(rates) / len(rates),
        }
        if args.profile:
            say("profiling ingest per statement (fresh warehouse)")
            results["profile"] = profile_ingest(
                telemetry, out / "profile-warehouse", out / "profile.log", args.timeout
            )
        results["machine"]["load_average_at_end"] = os.getloadavg()
        results["code_at_end"] = code_version()
        results["code_changed_during_run"] = changed_files(code, results["code_at_end"])
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print()
        print_table(table(results))
        if results.get("profile"):
            print("\ningest time by statement (profiled rerun):")
            prof = results["profile"]
            for s in prof["statements"][:12]:
                share = s["seconds"] / prof["seconds"]
                print(f"  {s['seconds']:8.2f}s {share:6.1%} {s['calls']:5d}x  {s['statement']}")
        print(f"\nload average at end {results['machine']['load_average_at_end']}")
        if results["code_changed_during_run"]:
            end = results["code_at_end"]
            print(
                f"WARNING: the project source changed during the benchmark ({code['commit']} "
                f"{code['source_sha256']} -> {end['commit']} {end['source_sha256']}): "
                f"{', '.join(results['code_changed_during_run'])}; the figures may mix versions"
            )
        else:
            print(f"code: commit {code['commit']}, source {code['source_sha256']} (unchanged)")
        print(f"results: {out / 'results.json'}; logs: {out}/*.log")
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if not args.keep:
            for name in BIG:
                shutil.rmtree(out / name, ignore_errors=True)
            for calibration in out.glob("calibrate-*"):
                shutil.rmtree(calibration, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
