"""The scale curve: full runs at growing sizes, a day added on top of each, and the engine's bare
load of the same files, side by side in one invocation.

    .venv/bin/python bench/scale.py --out /tmp/scale [--sizes 1M,10M,30M,100M] [--chart PATH]

For each size: simulate 31 days of a population sized for about that many events, set the
files holding the last day aside, run `creator-econ run` on the first 30 days (a fresh
embedded warehouse), then again with the last day's files added; then the engine's bare
`INSERT ... SELECT FROM file(..., JSONEachRow)` of the same files, envelope columns only and
every field typed, each into a fresh warehouse. It records wall seconds, peak RSS (wait4 of
each child), ingest events/s and its ratio to the bare loads, prints a table, draws one chart
(PNG, time and peak RSS against events) and writes results.json. Each size's data is deleted
before the next (100M events is about 33 GB of JSON Lines: free disk is checked first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline import (
    GIB,
    baseline,
    code_version,
    machine,
    pick_creators,
    pipeline_run,
    print_table,
    say,
    simulate_telemetry,
)

BYTES_PER_EVENT = 340  # JSON Lines, from the simulator's mix
DISK_FACTOR = 1.6  # telemetry, warehouse and marts together, against the telemetry alone
DAYS = 30
SUFFIX = {"K": 1_000, "M": 1_000_000}


def size(text: str) -> int:
    text = text.strip().upper()
    return int(float(text[:-1]) * SUFFIX[text[-1]]) if text[-1] in SUFFIX else int(text)


def split_last_day(telemetry: Path, last_day: str, extra: Path) -> int:
    """Move the sealed files that hold events of `last_day` (files are in time order, so
    those after the first file whose last line reaches it) into `extra`/sealed."""
    sealed = sorted((telemetry / "sealed").iterdir())
    (extra / "sealed").mkdir(parents=True, exist_ok=True)
    moved = 0
    for path in sealed:
        if moved or _last_time(path) >= last_day:
            path.rename(extra / "sealed" / path.name)
            moved += 1
    return moved


def _last_time(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return json.loads(last)["occurred_at"]


def one_size(target: int, out: Path, seed: int, timeout: float) -> dict:
    work = out / f"{target}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        creators = pick_creators(target * (DAYS + 1) // DAYS, DAYS + 1, seed, work)
        say(f"{target:,}: simulating {creators:,} creators x {DAYS + 1} days")
        tel = simulate_telemetry(work / "telemetry", creators, DAYS + 1, seed)
        last_day = datetime(2026, 10, 1, tzinfo=UTC).date().toordinal() + DAYS
        last = datetime.fromordinal(last_day).strftime("%Y-%m-%d")
        moved = split_last_day(work / "telemetry", last, work / "last_day")
        say(f"{target:,}: {tel.events:,} events; {moved} files of {last} set aside")
        try:
            full = pipeline_run(work / "telemetry", work / "state", work / "full.log", timeout)
        except SystemExit as failed:  # recorded, and the curve goes on without this point
            reason = str(failed).splitlines()[-1].removeprefix("error: ")
            say(f"{target:,}: full run failed: {reason}")
            return {"target": target, "events": tel.events, "bytes": tel.bytes, "error": reason}
        say(f"{target:,}: full run {full['wall_seconds']:.1f}s, {full['peak_rss'] / GIB:.2f} GiB")
        for path in (work / "last_day" / "sealed").iterdir():
            path.rename(work / "telemetry" / "sealed" / path.name)
        day = pipeline_run(work / "telemetry", work / "state", work / "day.log", timeout)
        say(f"{target:,}: one more day {day['wall_seconds']:.1f}s, {day['peak_rss'] / GIB:.2f} GiB")
        bare = baseline(work / "telemetry", work / "bare", work / "bare.log", timeout)
        typed = baseline(
            work / "telemetry", work / "bare", work / "bare-typed.log", timeout, "_baseline_typed"
        )
        events = full["ingest_lines"] + day["ingest_lines"]
        seconds = full["ingest_seconds"] + day["ingest_seconds"]
        return {
            "target": target,
            "events": tel.events,
            "bytes": tel.bytes,
            "full": full,
            "day": day,
            "ingest_events_per_s": events / seconds,
            "bare_events_per_s": bare["events"] / bare["seconds"],
            "typed_events_per_s": typed["events"] / typed["seconds"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rows(results: list[dict]) -> list[tuple[str, ...]]:
    head = (
        "events", "full run s", "peak RSS GiB", "+1 day s", "+1 day RSS GiB", "ingest ev/s",
        "bare (envelope) ev/s", "ratio", "bare (typed) ev/s", "ratio",
    )  # fmt: skip
    out = [head]
    for r in results:
        if "error" in r:
            out.append((f"{r['events']:,}", "failed", *[""] * 8))
            continue
        out.append(
            (
                f"{r['events']:,}",
                f"{r['full']['wall_seconds']:.1f}",
                f"{r['full']['peak_rss'] / GIB:.2f}",
                f"{r['day']['wall_seconds']:.1f}",
                f"{r['day']['peak_rss'] / GIB:.2f}",
                f"{r['ingest_events_per_s']:,.0f}",
                f"{r['bare_events_per_s']:,.0f}",
                f"{r['ingest_events_per_s'] / r['bare_events_per_s']:.2f}",
                f"{r['typed_events_per_s']:,.0f}",
                f"{r['ingest_events_per_s'] / r['typed_events_per_s']:.2f}",
            )
        )
    return out


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if "error" not in r]
    events = [r["events"] / 1e6 for r in results]
    fig, (time_ax, rss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    time_ax.plot(events, [r["full"]["wall_seconds"] for r in results], "o-", label="full run")
    time_ax.plot(events, [r["day"]["wall_seconds"] for r in results], "s-", label="+1 day")
    time_ax.set(xlabel="events (millions)", ylabel="wall seconds", title="Time")
    rss_ax.plot(events, [r["full"]["peak_rss"] / GIB for r in results], "o-", label="full run")
    rss_ax.plot(events, [r["day"]["peak_rss"] / GIB for r in results], "s-", label="+1 day")
    rss_ax.axhline(2.0, color="grey", linestyle="--", label="2 GiB budget")
    rss_ax.set(xlabel="events (millions)", ylabel="peak RSS (GiB)", title="Memory", ylim=(0, None))
    for ax in (time_ax, rss_ax):
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (created)")
    parser.add_argument("--sizes", default="1M,10M,30M,100M", help="target events per size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chart", type=Path, help="PNG to draw (default OUT/scale.png)")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per step at most")
    parser.add_argument(
        "--redraw", action="store_true", help="print the table and chart of OUT/results.json only"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.redraw:
        results = json.loads((out / "results.json").read_text())["sizes"]
        print_table(rows(results), header=())
        for r in results:
            if "error" in r:
                print(f"{r['events']:,} events: {r['error']}")
        chart(results, args.chart or out / "scale.png")
        return 0
    targets = [size(s) for s in args.sizes.split(",")]
    need = max(targets) * BYTES_PER_EVENT * DISK_FACTOR
    free = shutil.disk_usage(out).free
    if free < need:
        print(
            f"error: the largest size needs about {need / 1e9:.0f} GB of disk in {out}, "
            f"{free / 1e9:.0f} GB are free; give smaller --sizes or another --out"
        )
        return 2
    meta = {
        "command": " ".join(["python", "bench/scale.py", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
    }
    say(f"scale curve {args.sizes} in {out}; {free / 1e9:.0f} GB free")
    results = []
    started = time.perf_counter()
    for target in targets:
        results.append(one_size(target, out, args.seed, args.timeout))
        (out / "results.json").write_text(json.dumps({**meta, "sizes": results}, indent=2))
    print()
    print_table(rows(results), header=())
    for r in results:
        if "error" in r:
            print(f"{r['events']:,} events: {r['error']}")
    chart(results, args.chart or out / "scale.png")
    print(f"\n{time.perf_counter() - started:.0f}s in all; results {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
