"""kill -9 of `creator-econ run` at any point, then a rerun: no event lost or doubled, no torn mart.

Every trial starts from the same state, a warehouse and marts published from the first few
sealed files, with more files waiting. It starts the real CLI as a subprocess, SIGKILLs it at a
seeded random point (while a batch is read, between the raw inserts and the ingest log, during
the marts publish, or at any time), checks that each published mart is still a whole Parquet
file of the previous or the complete new version, reruns the CLI to completion, and compares
the warehouse with the files and the marts with those of an uninterrupted run.

CI runs a few trials; the full proof is `CREATOR_ECON_INGEST_CRASH_TRIALS=24 .venv/bin/pytest
tests/test_ingest_crash.py -q -s`. `CREATOR_ECON_INGEST_CRASH_SEED` replays a printed seed.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from crash_harness import (
    FOLDER_CHANGED,
    Expected,
    KillPlan,
    RunRecord,
    expected_from_files,
    probe,
    published_marts,
    read_mart,
    run_cli,
)

from simulator.run import simulate

TRIALS = int(os.environ.get("CREATOR_ECON_INGEST_CRASH_TRIALS", "4"))
SEED = int(os.environ.get("CREATOR_ECON_INGEST_CRASH_SEED") or random.randrange(1_000_000))
KINDS = ("reading", "before_log", "publish", "anytime")
BASE_FILES = 3  # sealed files already loaded and published before each trial
BATCH_MB = 1  # several ingest batches per run, so kills land between and inside them

BATCH_LINE = r"ingest: batch {number}/\d+"
LOG_LINE = r"ingest: batch {number}/\d+: .*ingest log"
# Publish kills count from one of these (the last is the first write into the marts folder).
PUBLISH_STARTS = (r"ingest done", r"models: week", FOLDER_CHANGED)
PUBLISHED_LINE = r"published"


@dataclass(frozen=True)
class Timing:
    """How long the steps of an uninterrupted run take, to spread kill points over them."""

    batches: int
    batch_seconds: float
    publish_windows: tuple[tuple[str, float], ...]  # (start, seconds from it to "published")
    published_at: float  # seconds from the start to the "published" line


@dataclass(frozen=True)
class Scenario:
    telemetry: Path
    base: Path  # warehouse/ and marts/ after loading the first BASE_FILES files
    reference: Path  # the state after an uninterrupted run over all the files
    expected: Expected
    base_marts: dict[str, bytes]
    reference_marts: dict[str, bytes]
    timing: Timing


def run_args(telemetry: Path, state: Path) -> list[str]:
    return [
        "run",
        "--telemetry",
        str(telemetry),
        "--marts",
        str(state / "marts"),
        "--data",
        str(state),
        "--batch-mb",
        str(BATCH_MB),
    ]


def dsn(state: Path) -> str:
    return f"chdb://{state / 'warehouse'}"


def copy_sealed(source: Path, target: Path, names: list[str]) -> Path:
    (target / "sealed").mkdir(parents=True)
    for name in names:
        shutil.copyfile(source / "sealed" / name, target / "sealed" / name)
    return target


def fresh_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def compact(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


def first_line(sealed: Path, names: list[str], event_type: str) -> tuple[str, dict]:
    """The first line of `event_type` in the named files, as text and parsed."""
    for name in names:
        for text in (sealed / name).read_text().splitlines():
            event = json.loads(text)
            if event["event_type"] == event_type:
                return text, event
    raise AssertionError(f"no {event_type} in {names}")


def extra_file(sealed: Path, base: list[str], new: list[str]) -> tuple[list[str], set[int]]:
    """Lines of a last file that exercises every outcome, and which of them are invalid:
    rejected lines, conflicting and exact duplicates of loaded events (some loaded by an
    earlier run, some by this one), and new valid events, a refund among them."""
    rng = random.Random(7)
    gift_text, gift = first_line(sealed, base, "gift_sent")
    new_gift_text, new_gift = first_line(sealed, new[::-1], "gift_sent")  # a late one
    media_text, media = first_line(sealed, new[:1], "media_usage")
    _, order = first_line(sealed, base + new, "order_paid")
    _, purchase = first_line(sealed, base, "coins_purchased")
    invalid = [
        "{not json",
        compact({k: v for k, v in {**gift, "event_id": fresh_id(rng)}.items() if k != "coins"}),
        compact({**gift, "event_id": fresh_id(rng), "platform_fee_minor": gift["value_minor"] + 1}),
        compact({**gift, "event_id": fresh_id(rng), "event_type": "gift_sent_twice"}),
    ]
    bump = {
        "value_minor": gift["value_minor"] + 1,
        "platform_fee_minor": gift["platform_fee_minor"] + 1,
    }
    valid = [
        compact({**gift, **bump}),  # conflicts with an event of an earlier run
        compact({**new_gift, "sender_id": new_gift["sender_id"] + "-other"}),  # same run
        compact({**media, "egress_bytes": media["egress_bytes"] + 1}),  # same run
        gift_text,  # exact redeliveries
        new_gift_text,
        media_text,
        compact(
            {
                "event_id": fresh_id(rng),
                "event_type": "order_refunded",
                "schema_version": 1,
                "occurred_at": order["occurred_at"],
                "source": order["source"],
                "order_id": order["order_id"],
                "refund_minor": order["gross_minor"],
                "reason": "customer_request",
            }
        ),
        compact({**purchase, "event_id": fresh_id(rng), "purchase_id": "extra-purchase"}),
    ]
    return invalid + valid, set(range(1, len(invalid) + 1))


def timing_of(record: RunRecord) -> Timing:
    """Step durations read from an uninterrupted run: its progress lines' arrival times and
    the first write into its marts folder."""
    totals = [
        int(m[1])
        for m in map(
            re.compile(r"ingest: batch \d+/(\d+)").search, record.matching(r"ingest: batch")
        )
        if m
    ]
    assert totals, f"no ingest batch lines in the run's output:\n{record.last_lines(30)}"
    batches = max(totals)
    ingest_start = record.first(r"ingest: batch 1/") or 0.0
    ingest_end = record.first(r"ingest done") or record.seconds
    publish_end = record.first(PUBLISHED_LINE) or record.seconds
    windows = tuple(
        (start, max(publish_end - at, 0.002))
        for start in PUBLISH_STARTS
        if (at := record.first(start)) is not None
    )
    assert len(windows) == len(PUBLISH_STARTS), f"publish steps not seen: {record.last_lines(30)}"
    return Timing(
        batches=batches,
        batch_seconds=(ingest_end - ingest_start) / batches,
        publish_windows=windows,
        published_at=publish_end,
    )


def kill_plan(trial: int, timing: Timing) -> KillPlan:
    """The trial's kill point: its kind cycles, the batch and the delay are drawn at random.
    A publish kill counts from the end of ingest, the models step or the first marts write."""
    rng = random.Random(f"{SEED}:{trial}")
    kind = KINDS[trial % len(KINDS)]
    number = rng.randint(1, timing.batches)
    if kind == "reading":
        delay = rng.uniform(0, timing.batch_seconds)
        return KillPlan(kind, BATCH_LINE.format(number=number), delay)
    if kind == "before_log":
        return KillPlan(kind, LOG_LINE.format(number=number), 0.0)
    if kind == "publish":
        start, window = rng.choice(timing.publish_windows)
        return KillPlan(kind, start, rng.uniform(0, window))
    return KillPlan(kind, None, rng.uniform(0, timing.published_at))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Telemetry with more files waiting than loaded, the state after loading the first
    files, and the marts of an uninterrupted run over all of them."""
    root = tmp_path_factory.mktemp("ingest_crash")
    simulate(
        root / "simulated",
        creators=20,
        days=12,
        seed=5,
        duplicate_rate=0.02,
        max_file_bytes=300_000,
    )
    names = sorted(p.name for p in (root / "simulated" / "sealed").glob("*.jsonl"))
    base_names, new_names = names[:BASE_FILES], names[BASE_FILES:]
    lines, invalid_lines = extra_file(root / "simulated" / "sealed", base_names, new_names)
    extra = re.sub(r"\d{12}", lambda m: f"{int(m[0]) + 1:012d}", names[-1])
    (root / "simulated" / "sealed" / extra).write_text("".join(f"{line}\n" for line in lines))

    telemetry = copy_sealed(root / "simulated", root / "telemetry", [*names, extra])
    base_telemetry = copy_sealed(root / "simulated", root / "telemetry_base", base_names)
    base = root / "base"
    first = run_cli(run_args(base_telemetry, base))
    assert first.returncode == 0, first.last_lines(30)

    reference = root / "reference"
    shutil.copytree(base, reference, symlinks=True)
    record = run_cli(run_args(telemetry, reference), watch=reference / "marts")
    assert record.returncode == 0, record.last_lines(30)
    expected = expected_from_files(telemetry / "sealed", {(extra, n) for n in invalid_lines})
    return Scenario(
        telemetry=telemetry,
        base=base,
        reference=reference,
        expected=expected,
        base_marts=published_marts(base / "marts"),
        reference_marts=published_marts(reference / "marts"),
        timing=timing_of(record),
    )


def assert_exactly_once(facts: dict, expected: Expected, context: str) -> None:
    """Each raw table and all of them hold one row per distinct valid event of the files, the
    money adds up to the files' own sums, and the ingest log accounts for every line."""
    tables = facts["tables"]
    for table, (rows, distinct) in tables.items():
        want = expected.by_type.get(table.removeprefix("raw_"), 0)
        assert rows == distinct == want, (
            f"{context}: {table} has {rows} rows, {distinct} ids, want {want}"
        )
    missing = {f"raw_{t}" for t in expected.by_type} - set(tables)
    assert not missing, f"{context}: no table for {missing}"
    assert facts["total"] == [expected.events, expected.events], (
        f"{context}: total {facts['total']}"
    )
    assert facts["uncommitted_rows"] == 0, f"{context}: rows of files the ingest log lacks"
    assert facts["money"] == expected.money, f"{context}: money differs from the files"
    log = facts["ingest_log"]
    for name, lines_read, loaded, duplicates, quarantined in log:
        assert lines_read == loaded + duplicates + quarantined, f"{context}: ingest_log {name}"
    want_log = [
        [name, c.lines, c.loaded, c.duplicates, c.quarantined]
        for name, c in sorted(expected.files.items())
    ]
    assert log == want_log, f"{context}: ingest log\n{log}\nwant\n{want_log}"


def same_mart(data: bytes, other: bytes | None) -> bool:
    """The same file, or the same table (schema, metadata and rows in order) in other bytes."""
    if other is None:
        return False
    return data == other or read_mart(data).equals(read_mart(other), check_metadata=True)


def mart_versions(marts: dict[str, bytes], scenario: Scenario, context: str) -> dict[str, str]:
    """Which version each published mart is ('previous' or 'new'); fails on anything else."""
    before, after = scenario.base_marts, scenario.reference_marts
    assert set(before) <= set(marts) <= set(before) | set(after), (
        f"{context}: published marts {sorted(marts)}, before {sorted(before)}"
    )
    versions = {}
    for name, data in marts.items():
        try:
            read_mart(data)
        except Exception as exc:  # any reader error means a torn or foreign file
            raise AssertionError(f"{context}: {name} is not a whole Parquet file: {exc}") from exc
        if same_mart(data, before.get(name)):
            versions[name] = "previous"
        elif same_mart(data, after.get(name)):
            versions[name] = "new"
        else:
            raise AssertionError(f"{context}: {name} is neither the previous nor the new mart")
    return versions


def test_uninterrupted_run_matches_the_files(scenario: Scenario) -> None:
    """The baseline: without a crash, the run loads exactly the files' distinct valid events,
    and the files exercise every outcome (quarantine, conflicts, refunds, payouts)."""
    assert_exactly_once(probe(dsn(scenario.reference)), scenario.expected, "uninterrupted run")
    assert sum(c.quarantined for c in scenario.expected.files.values()) == 7
    assert sum(c.duplicates for c in scenario.expected.files.values()) > 10
    assert scenario.expected.money["refunds"] > 0 and scenario.expected.money["payouts"] > 0
    assert scenario.timing.batches >= 3
    print(f"\nseed {SEED}, {TRIALS} trials; uninterrupted run: {scenario.timing}")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_then_rerun_loses_and_doubles_nothing(
    scenario: Scenario, tmp_path: Path, trial: int
) -> None:
    plan = kill_plan(trial, scenario.timing)
    context = f"trial {trial} (seed {SEED}, {plan.describe()})"
    state = tmp_path / "state"
    shutil.copytree(scenario.base, state, symlinks=True)

    killed = run_cli(run_args(scenario.telemetry, state), plan, watch=state / "marts")
    if plan.after is not None:
        assert killed.first(plan.after) is not None, (
            f"{context}: the kill point never printed:\n{killed.last_lines(30)}"
        )
    if plan.kind in ("reading", "before_log"):
        assert killed.killed, f"{context}: the run ended before the kill:\n{killed.last_lines()}"
    versions = mart_versions(published_marts(state / "marts"), scenario, context)
    last = killed.lines[-1][1].rsplit(" - ", 1)[-1] if killed.lines else "(no output)"
    state_at_kill = f"marts {sorted(set(versions.values()))}"
    if killed.first(r"ingest done") is None:  # killed during ingest: what did it leave?
        state_at_kill += f", uncommitted raw rows {probe(dsn(state))['uncommitted_rows']}"
    print(
        f"\n{context}: {'killed' if killed.killed else 'finished'} at {killed.seconds:.2f}s, "
        f"last line {last!r}; {state_at_kill}"
    )

    rerun = run_cli(run_args(scenario.telemetry, state))
    assert rerun.returncode == 0, f"{context}: rerun failed:\n{rerun.last_lines(30)}"
    assert_exactly_once(probe(dsn(state)), scenario.expected, context)
    marts = published_marts(state / "marts")
    assert sorted(marts) == sorted(scenario.reference_marts), context
    differ = [n for n, data in marts.items() if not same_mart(data, scenario.reference_marts[n])]
    assert not differ, f"{context}: {differ} differ from the uninterrupted run's marts"
    other_bytes = [n for n, data in marts.items() if data != scenario.reference_marts[n]]
    if other_bytes:
        print(f"{context}: {other_bytes} hold the same tables in other bytes")
