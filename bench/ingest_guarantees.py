"""Ingest benchmark: what exactly-once costs, with deduplication on against the same ingest off.

    .venv/bin/python bench/ingest_guarantees.py --events 10000000 [--rounds 2] [--keep]

Steps, all on the same files in one invocation:

1. simulate the telemetry once, in-process (`simulator.run.simulate`), picking the
   creators count for the target events from short calibration runs (as bench/pipeline.py does)
   unless --creators is given;
2. for each round, `ingest.loader.ingest` twice, each in its own subprocess with a fresh embedded
   warehouse (chDB allows one warehouse path per process): first with the guarantees on
   (`deduplicate=True`, what `creator-econ run` does), then off (`deduplicate=False`: every
   valid line is loaded, no event_index lookup, no in-batch first-occurrence join, no
   event_index insert; validation, quarantine and the per-file ingest log stay). The modes
   alternate (on, off, on, off, ...) so that noise from other work on the machine hits both;
3. each child times every client call by statement (the client's methods are wrapped; the
   project code is untouched), so the table also shows where the difference goes, and after
   the timed ingest counts the raw rows against the distinct event_ids, to show that the
   baseline really kept the redeliveries.

It prints the side-by-side table, the ratio and the verdict against the target (the guarantees
cost under 15% of throughput), and writes results.json and the child logs under --out. The
telemetry and the warehouses are deleted at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from pipeline import (  # bench/ is this script's folder
    GIB,
    RESULT_PREFIX,
    _check,
    _show_child_line,
    changed_files,
    code_version,
    machine,
    pick_creators,
    run_child,
    say,
    simulate_telemetry,
    time_statements,
)

COST_TARGET = 0.15  # the guarantees may cost under this share of throughput
MODES = {"on": True, "off": False}  # mode -> deduplicate
MIB = 1024**2


# --------------------------------------------------------------------------- the child


def child_ingest(mode: str, telemetry: Path, warehouse: Path, batch_bytes: int) -> None:
    """One timed `ingest()` into a fresh warehouse, then counts that show what it kept."""
    from ingest.loader import ingest
    from warehouse.connection import connect

    client = connect(f"chdb://{warehouse}")
    statements = time_statements(client)
    cpu_before = _cpu_seconds()
    report = ingest(
        client,
        telemetry,
        read_files_in_warehouse=True,
        batch_bytes=batch_bytes,
        progress=print,
        deduplicate=MODES[mode],
    )
    cpu = _cpu_seconds() - cpu_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # before the counts below
    threads = _thread_cpu()
    timed = sorted(
        ({"statement": k, "calls": int(v[0]), "seconds": v[1]} for k, v in statements.items()),
        key=lambda s: -s["seconds"],
    )
    result = {
        "mode": mode,
        "seconds": report.seconds,
        "cpu_seconds": cpu,
        "lines": report.lines_read,
        "files": len(report.files),
        "loaded": report.total("loaded"),
        "duplicates": report.total("duplicates"),
        "quarantined": report.total("quarantined"),
        "conflicting": report.total("conflicting"),
        "peak_rss_ingest": peak,
        "statements": timed,
        "thread_cpu_seconds": threads,
        "kept": _kept(client),
    }
    client.close()
    print(RESULT_PREFIX + json.dumps(result))


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads by name (chDB names its pools, so
    background merges show apart from the queries)."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _cpu_seconds() -> float:
    """CPU of this process, chDB's threads included: less sensitive to other work than wall."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kept(client) -> dict[str, int]:
    """Raw rows against distinct event_ids over all raw tables: equal when deduplicated."""
    from telemetry.events import EVENT_FIELDS
    from warehouse.bookkeeping import EVENT_INDEX, QUARANTINE
    from warehouse.raw_tables import raw_table

    ids = " UNION ALL ".join(f"SELECT event_id FROM {raw_table(t)}" for t in EVENT_FIELDS)
    rows, distinct = client.query(f"SELECT count(), uniqExact(event_id) FROM ({ids})").first_row
    return {
        "raw_rows": int(rows),
        "raw_distinct_event_ids": int(distinct),
        "event_index_rows": int(client.command(f"SELECT count() FROM {EVENT_INDEX}")),
        "quarantine_rows": int(client.command(f"SELECT count() FROM {QUARANTINE}")),
    }


# --------------------------------------------------------------------------- the parent


def ingest_run(
    mode: str,
    n: int,
    telemetry: Path,
    out: Path,
    batch_bytes: int,
    timeout: float,
) -> dict:
    """One child ingest; its warehouse is deleted once the child has reported."""
    name = f"{n}-{mode}"
    warehouse, log = out / f"warehouse-{name}", out / f"ingest-{name}.log"
    cmd = [sys.executable, __file__, "_ingest", mode, str(telemetry), str(warehouse)]
    cmd += [str(batch_bytes)]
    child = run_child(cmd, log, _show_child_line(name), timeout)
    _check(child, f"the ingest with the guarantees {mode}", log)
    shutil.rmtree(warehouse, ignore_errors=True)
    result = child.result()
    return result | {
        "round": n,
        "events_per_s": result["lines"] / result["seconds"],
        "wall_seconds": child.seconds,
        "peak_rss": child.peak_rss,
    }


def by_mode(runs: list[dict], mode: str) -> list[dict]:
    return [r for r in runs if r["mode"] == mode]


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def side_by_side(runs: list[dict]) -> list[tuple[str, ...]]:
    """Rows: metric, guarantees on, off, ratio on/off (medians over the rounds)."""
    on, off = by_mode(runs, "on"), by_mode(runs, "off")

    def row(label: str, value: Callable[[dict], float], fmt: str) -> tuple[str, ...]:
        a, b = statistics.median(map(value, on)), statistics.median(map(value, off))
        return (label, format(a, fmt), format(b, fmt), f"{a / b:.2f}" if b else "")

    rows = [
        (
            f"events/s, round {a['round']}",
            f"{a['events_per_s']:,.0f}",
            f"{b['events_per_s']:,.0f}",
            f"{a['events_per_s'] / b['events_per_s']:.2f}",
        )
        for a, b in zip(on, off, strict=True)
    ]
    rows += [
        row("events/s (median)", lambda r: r["events_per_s"], ",.0f"),
        row("ingest seconds (median)", lambda r: r["seconds"], ".1f"),
        row("CPU seconds (median)", lambda r: r["cpu_seconds"], ".1f"),
        row("CPU µs per event (median)", lambda r: 1e6 * r["cpu_seconds"] / r["lines"], ".2f"),
        row("peak RSS GiB (median)", lambda r: r["peak_rss_ingest"] / GIB, ".2f"),
        row("lines read", lambda r: r["lines"], ",.0f"),
        row("loaded", lambda r: r["loaded"], ",.0f"),
        row("duplicates dropped", lambda r: r["duplicates"], ",.0f"),
        row("quarantined", lambda r: r["quarantined"], ",.0f"),
    ]
    return rows


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


def cost(runs: list[dict]) -> dict:
    """The cost of the guarantees, from the medians and from each round's own pair."""
    on = median(by_mode(runs, "on"), "events_per_s")
    off = median(by_mode(runs, "off"), "events_per_s")
    pairs = [
        1 - a["events_per_s"] / b["events_per_s"]
        for a, b in zip(by_mode(runs, "on"), by_mode(runs, "off"), strict=True)
    ]
    cpu_on = median(by_mode(runs, "on"), "cpu_seconds")
    cpu_off = median(by_mode(runs, "off"), "cpu_seconds")
    return {
        "on_events_per_s": on,
        "off_events_per_s": off,
        "ratio_off_on": off / on,
        "cost": 1 - on / off,
        "cost_per_round": pairs,
        "cpu_cost": 1 - cpu_off / cpu_on,
        "met": 1 - on / off < COST_TARGET,
    }


def verdict(c: dict) -> str:
    rounds = ", ".join(f"{p:.1%}" for p in c["cost_per_round"])
    return (
        f"ratio off/on {c['ratio_off_on']:.2f}; guarantees cost = 1 - on/off = {c['cost']:.1%} "
        f"of throughput (per round: {rounds}); target < {COST_TARGET:.0%}: "
        f"{'MET' if c['met'] else 'MISSED'}; share of the CPU time with them on that they "
        f"take: {c['cpu_cost']:.1%}"
    )


def statement_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    """Median seconds per statement label in each mode, biggest difference first."""
    seconds: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for s in run["statements"]:
            seconds.setdefault(s["statement"], {}).setdefault(run["mode"], []).append(s["seconds"])
    rounds = {mode: len(by_mode(runs, mode)) for mode in MODES}

    def med(label: str, mode: str) -> float:
        found = seconds[label].get(mode, [])
        return statistics.median(found + [0.0] * (rounds[mode] - len(found)))

    diffs = {label: (med(label, "on"), med(label, "off")) for label in seconds}
    ordered = sorted(diffs.items(), key=lambda kv: (-(kv[1][0] - kv[1][1]), -kv[1][0]))
    rows = [
        (label, f"{a:.2f}", f"{b:.2f}", f"{a - b:+.2f}")
        for label, (a, b) in ordered
        if max(a, b) >= 0.01
    ]
    total_on = median(by_mode(runs, "on"), "seconds")
    total_off = median(by_mode(runs, "off"), "seconds")
    rows.append(
        ("whole ingest", f"{total_on:.2f}", f"{total_off:.2f}", f"{total_on - total_off:+.2f}")
    )
    return rows


def thread_rows(runs: list[dict], top: int = 6) -> list[tuple[str, ...]]:
    """CPU seconds by thread name, median per mode: shows background merges apart."""
    names: list[str] = []
    for run in runs:
        names += [n for n in run["thread_cpu_seconds"] if n not in names]

    def med(name: str, mode: str) -> float:
        return statistics.median(
            r["thread_cpu_seconds"].get(name, 0.0) for r in by_mode(runs, mode)
        )

    rows = [(n, med(n, "on"), med(n, "off")) for n in names]
    rows.sort(key=lambda r: -r[1])
    return [(n, f"{a:.1f}", f"{b:.1f}", f"{a - b:+.1f}") for n, a, b in rows[:top]]


def sanity_line(run: dict, redeliveries: int) -> str:
    kept = run["kept"]
    extra = kept["raw_rows"] - kept["raw_distinct_event_ids"]
    return (
        f"guarantees {run['mode']} (round {run['round']}): raw tables hold "
        f"{kept['raw_rows']:,} rows, {kept['raw_distinct_event_ids']:,} distinct event_ids "
        f"({extra:,} repeated; the simulator redelivered {redeliveries:,}); event_index "
        f"{kept['event_index_rows']:,} rows; quarantine {kept['quarantine_rows']:,}; "
        f"{run['duplicates']:,} dropped as duplicates"
    )


def sane(run: dict, redeliveries: int) -> bool:
    """On: no id twice and every redelivery dropped; off: every redelivery kept, no index."""
    kept = run["kept"]
    extra = kept["raw_rows"] - kept["raw_distinct_event_ids"]
    if run["mode"] == "on":
        return extra == 0 and kept["event_index_rows"] == run["loaded"]
    return extra >= redeliveries - run["quarantined"] and kept["event_index_rows"] == 0


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="target events (~)")
    parser.add_argument("--creators", type=int, help="creators (skips the calibration)")
    parser.add_argument("--days", type=int, default=30, help="days to simulate (default 30)")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--rounds", type=int, default=1, help="ingests of each mode, alternating")
    parser.add_argument(
        "--batch-mb", type=int, default=512, help="ingest batch size in MiB (default 512)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/creator-econ-ingest-bench"),
        help="work folder (created)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the telemetry")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="stop an ingest after this many seconds"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_ingest"]:
        child_ingest(argv[1], Path(argv[2]), Path(argv[3]), int(argv[4]))
        return 0
    args = _parser().parse_args(argv)
    out: Path = args.out.resolve()
    if (out / "telemetry").exists() or list(out.glob("warehouse-*")):
        print(f"error: {out} already holds telemetry or warehouses; remove them or pick another")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    telemetry = out / "telemetry"
    code = code_version()
    results: dict = {
        "command": " ".join([Path(sys.executable).name, "bench/ingest_guarantees.py", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code_at_start": code,
        "batch_bytes": args.batch_mb * MIB,
        "runs": [],
    }
    say(
        f"ingest guarantees benchmark in {out}; commit {code['commit']} (source "
        f"{code['source_sha256']}); load average {results['machine']['load_average_at_start']}"
    )
    try:
        creators = args.creators or pick_creators(args.events, args.days, args.seed, out)
        say(f"simulating {creators:,} creators x {args.days} days (seed {args.seed})")
        tel = simulate_telemetry(telemetry, creators, args.days, args.seed)
        results["telemetry"] = asdict(tel) | {"events_per_s": tel.events_per_s}
        say(
            f"simulated {tel.events:,} events ({tel.duplicates:,} redeliveries), "
            f"{tel.bytes / 1e9:.2f} GB in {tel.files} files, {tel.seconds:.1f}s"
        )
        for n in range(1, args.rounds + 1):
            for mode in MODES:
                say(f"round {n}: ingest with the guarantees {mode} (fresh warehouse)")
                run = ingest_run(mode, n, telemetry, out, args.batch_mb * MIB, args.timeout)
                results["runs"].append(run)
                say(
                    f"  {run['events_per_s']:,.0f} events/s ({run['seconds']:.1f}s, "
                    f"{run['cpu_seconds']:.1f} CPU s); load average {os.getloadavg()[0]:.2f}"
                )
        runs = results["runs"]
        results["cost"] = cost(runs)
        results["machine"]["load_average_at_end"] = os.getloadavg()
        results["code_at_end"] = code_version()
        changed = changed_files(code, results["code_at_end"])
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print()
        print_table(side_by_side(runs), ("metric", "guarantees on", "off", "ratio on/off"))
        print(verdict(results["cost"]))
        print("\ningest seconds by statement (median per mode; on minus off):")
        print_table(statement_rows(runs), ("statement", "on", "off", "difference"))
        print("\nCPU seconds by thread name (median per mode, threads alive at the end):")
        print_table(thread_rows(runs), ("thread", "on", "off", "difference"))
        print("\nsanity (counted after each timed ingest):")
        for run in runs:
            print("  " + sanity_line(run, tel.duplicates))
        start, end = results["machine"]["load_average_at_start"], os.getloadavg()
        print(f"\nload average at start {start}, at end {end}")
        if changed:
            print(f"WARNING: the source changed during the benchmark: {', '.join(changed)}")
        else:
            print(f"code: commit {code['commit']}, source {code['source_sha256']} (unchanged)")
        print(f"results: {out / 'results.json'}; logs: {out}/ingest-*.log")
        return 0 if all(sane(r, tel.duplicates) for r in runs) else 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for warehouse in out.glob("warehouse-*"):
            shutil.rmtree(warehouse, ignore_errors=True)
        for calibration in out.glob("calibrate-*"):
            shutil.rmtree(calibration, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(telemetry, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
