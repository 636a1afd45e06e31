"""Late events land in the right day and week, and only the partitions they touch recompute.

The planning rules are checked on hand-built facts. End to end, a few simulated days are
published by the real CLI; then sealed files of events several days late arrive: one is loaded
by `creator-econ run`, one through Dagster's own path (the `refresh` job, then the marts sensor
and the partition-range run it requests). Each time only the dirty partitions are rewritten,
and the published marts end byte-equal to a from-scratch run over the same files.

Run as a script (`python tests/test_late_events.py dagster DATA`), this module is that Dagster
path, in its own process (chDB holds one warehouse per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from handmade import event, gift, refund, seal, usage

from models.recompute import (
    DirtyFacts,
    Plan,
    SessionSpan,
    day_range,
    dirty_days,
    format_days,
    partition_keys,
    recompute_window,
    spill_days,
    week_of,
)
from models.sql import MARTS

D = date.fromisoformat
PROJECT = Path(__file__).resolve().parent.parent
SOURCE = "late"  # the source of the late files and their events


def facts(**overrides) -> DirtyFacts:
    base = {
        "touched": frozenset(),
        "spans": {},
        "touched_sessions": frozenset(),
        "egress_by_day": {},
        "tier_bounds": (),
    }
    return DirtyFacts(**(base | overrides))


# --- the planning rules, on hand-built facts ------------------------------------------------


def test_egress_spills_only_into_days_whose_tier_can_change():
    # 3 bytes a day; a tier ends at 10. Late bytes on Oct 3 shift every later day by up to 3:
    # Oct 4 spans (9 - 3, 12) and Oct 5 spans (12 - 3, 15), both holding 10; Oct 6 does not.
    egress = {D(f"2026-10-{d:02d}"): 3 for d in range(1, 11)}
    assert spill_days({D("2026-10-03")}, egress, (10,)) == {D("2026-10-04"), D("2026-10-05")}
    # Below every tier bound, later days keep their price: no spill.
    assert spill_days({D("2026-10-03")}, egress, (1000,)) == set()
    # A day with no egress costs nothing either way (and the crossing moves one day on).
    no_egress = egress | {D("2026-10-04"): 0}
    assert spill_days({D("2026-10-03")}, no_egress, (10,)) == {D("2026-10-05"), D("2026-10-06")}


def test_egress_tiers_restart_each_month():
    # October crosses its tier on Oct 31; November starts again from zero.
    egress = {D("2026-10-30"): 5, D("2026-10-31"): 10, D("2026-11-01"): 5, D("2026-11-02"): 5}
    assert spill_days({D("2026-10-30")}, egress, (10,)) == {D("2026-10-31")}
    touched = frozenset({D("2026-10-31")})
    assert dirty_days(facts(touched=touched, egress_by_day=egress, tier_bounds=(10,))) == touched


def test_a_session_across_midnight_dirties_both_days_and_both_weeks():
    # Sunday Oct 4, 23:00 to Monday Oct 5, 01:00: a late gift on Sunday can change Monday's live
    # time and fixed cost shares, and the creator's live hours in both weeks.
    spans = {"night": SessionSpan(D("2026-10-04"), D("2026-10-05"))}
    days = dirty_days(
        facts(touched=frozenset({D("2026-10-04")}), spans=spans, touched_sessions={"night"})
    )
    assert days == {D("2026-10-04"), D("2026-10-05")}
    keys = partition_keys(days, (D("2026-10-01"), D("2026-10-06")))
    assert keys["creator_weekly"] == [D("2026-09-28"), D("2026-10-05")]
    assert keys["session_economics"] == [D("2026-10-04"), D("2026-10-05")]


def test_a_session_across_a_month_boundary():
    spans = {"late": SessionSpan(D("2026-10-31"), D("2026-11-01"))}
    days = dirty_days(
        facts(touched=frozenset({D("2026-10-31")}), spans=spans, touched_sessions={"late"})
    )
    assert days == {D("2026-10-31"), D("2026-11-01")}


def test_sessions_sharing_a_changed_day_follow_it():
    # "a" changed on Oct 2; "b" started on Oct 1 and is still live on Oct 2, so its share of
    # Oct 2's fixed cost moves: its start day is dirty. "c" ended on Oct 1: untouched.
    spans = {
        "a": SessionSpan(D("2026-10-02"), D("2026-10-02")),
        "b": SessionSpan(D("2026-10-01"), D("2026-10-02")),
        "c": SessionSpan(D("2026-09-30"), D("2026-10-01")),
    }
    days = dirty_days(
        facts(touched=frozenset({D("2026-10-02")}), spans=spans, touched_sessions={"a"})
    )
    assert days == {D("2026-10-01"), D("2026-10-02")}


def test_days_without_a_stored_partition_are_dirty():
    got = dirty_days(
        facts(
            touched=frozenset({D("2026-10-02")}),
            data_days=(D("2026-10-01"), D("2026-10-12")),
            stored_days=frozenset(D(f"2026-10-{d:02d}") for d in range(1, 11)),
        )
    )
    # Oct 11 and 12: new days (with events or not) that have no partition yet.
    assert got == {D("2026-10-02"), D("2026-10-11"), D("2026-10-12")}


def test_window_reaches_a_session_before_the_week_and_two_session_lengths_past_it():
    data = tuple(D(f"2026-10-{d:02d}") for d in range(1, 32))
    plan = Plan(frozenset({D("2026-10-14"), D("2026-10-15")}), False, data, 1)
    start, end = recompute_window(plan)
    # Monday Oct 12 - 1 day = Oct 11 (the month's egress before it is one number per day,
    # kept by ingest: no need to start at Oct 1). Sunday Oct 18 + 2 days + 1 = Oct 21.
    assert (start.date(), end.date()) == (D("2026-10-11"), D("2026-10-21"))
    # With no session longer than a day, the week's own Monday: Sep 28, not September's first.
    plan = Plan(frozenset({D("2026-10-02")}), False, data, 0)
    assert recompute_window(plan)[0].date() == D("2026-09-28")


def test_days_far_apart_are_computed_in_separate_windows():
    # The refund of a July order in a September session: July's week and September's, not the
    # weeks between. Wed Jul 1 is in the week of Mon Jun 29: Jun 28 to Sun Jul 5 + 2 + 1 = Jul 8;
    # Sep 9 and 10 are in the week of Mon Sep 7: Sep 6 to Sun Sep 13 + 2 + 1 = Sep 16.
    data = tuple(day_range(D("2026-07-01"), D("2026-09-30")))
    plan = Plan(frozenset({D("2026-07-01"), D("2026-09-09"), D("2026-09-10")}), False, data, 1)
    groups = [(w[0].date(), w[1].date(), sorted(days)) for w, days in plan.windows()]
    assert groups == [
        (D("2026-06-28"), D("2026-07-08"), [D("2026-07-01")]),
        (D("2026-09-06"), D("2026-09-16"), [D("2026-09-09"), D("2026-09-10")]),
    ]


def test_a_full_recompute_is_read_a_week_at_a_time():
    # Thu Oct 1 to Tue Oct 13 fall in three weeks (Sep 28, Oct 5, Oct 12): three windows.
    data = tuple(day_range(D("2026-10-01"), D("2026-10-13")))
    plan = Plan(frozenset(data), True, data, 0)
    weeks = [sorted(days) for _, days in plan.windows()]
    assert [(w[0], w[-1]) for w in weeks] == [
        (D("2026-10-01"), D("2026-10-04")),
        (D("2026-10-05"), D("2026-10-11")),
        (D("2026-10-12"), D("2026-10-13")),
    ]


def test_format_days_reads_as_runs():
    days = [D("2026-10-01"), D("2026-10-02"), D("2026-10-03"), D("2026-10-09")]
    assert format_days(days) == "2026-10-01..2026-10-03, 2026-10-09"
    weeks = [week_of(d) for d in (D("2026-10-01"), D("2026-10-08"), D("2026-10-22"))]
    assert format_days(weeks, step=7) == "2026-09-28..2026-10-05, 2026-10-19"


# --- end to end: real CLI, real Dagster, real chDB --------------------------------------------

# 2026-10-01 is a Thursday: the simulated days Oct 1-6 hold weeks Sep 28 (Oct 1-4) and Oct 5.
START, DAYS = "2026-10-01", 6
LATE_DAY, REFUND_DAY = "2026-10-02", "2026-10-03"
UNTOUCHED_DAYS = {D("2026-10-05"), D("2026-10-06")}
UNTOUCHED_WEEK = D("2026-10-05")


def run_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "creator_econ.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def run(telemetry: Path, root: Path) -> str:
    return run_cli(
        "run", "--telemetry", str(telemetry), "--marts", str(root / "marts"), "--data", str(root)
    )


def snapshot(marts: Path) -> dict[str, tuple[int, int]]:
    """Each stored partition file's identity: a rewrite replaces the file (new inode)."""
    return {
        str(p.relative_to(marts / "_partitions")): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (marts / "_partitions").rglob("*.parquet")
    }


def rewritten(before: dict, after: dict) -> set[str]:
    return {name for name, ident in after.items() if before.get(name) != ident}


def keys_of(names: set[str], mart: str) -> set[date]:
    return {D(Path(n).stem) for n in names if n.startswith(f"{mart}/")}


def rows(marts: Path, name: str, sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.read_parquet(str(marts / f"{name}.parquet")).create_view("m")
    return con.execute(sql).fetchall()


def read_events(telemetry: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((telemetry / "sealed").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def late_gift_usage_and_refund(telemetry: Path) -> dict:
    """A gift and a media_usage interval in an Oct 2 session, and a refund on Oct 3 of an order
    paid before: four days late or more for a run that has already published Oct 6."""
    events = read_events(telemetry)
    starts = sorted(
        (e for e in events if e["event_type"] == "session_started"), key=lambda e: e["occurred_at"]
    )
    session = next(s for s in starts if s["occurred_at"].startswith(LATE_DAY))
    refunded = {e["order_id"] for e in events if e["event_type"] == "order_refunded"}
    orders = [
        e
        for e in events
        if e["event_type"] == "order_paid"
        and e["order_id"] not in refunded
        and e["occurred_at"] < REFUND_DAY
    ]
    order = next((o for o in orders if o["session_id"]), orders[0])
    at = session["occurred_at"]
    minute_later = at[:17] + "59.000000Z" if at[17:19] < "59" else at
    creator = session["creator_ids"][0]
    session_id = session["session_id"]
    seal(
        telemetry,
        SOURCE,
        [
            gift(
                1,
                minute_later,
                1000,
                {creator: 700},
                coins=100,
                gift_id="late-gift",
                session_id=session_id,
                sender_id="u_late",
                source=SOURCE,
            ),
            usage(
                2,
                at,
                minute_later,
                publisher_seconds=30,
                viewer_seconds=600,
                transcode_seconds=90,
                egress_bytes=50_000_000,
                session_id=session_id,
                source=SOURCE,
            ),
            refund(
                3,
                f"{REFUND_DAY}T12:00:00.000000Z",
                order["order_id"],
                order["gross_minor"],
                source=SOURCE,
            ),
            # The refund of an order not seen yet: it counts once the order arrives.
            refund(
                4,
                f"{REFUND_DAY}T13:00:00.000000Z",
                "late-order",
                order["gross_minor"],
                source=SOURCE,
            ),
        ],
    )
    return {"creator": creator, "order": order, "session": session["session_id"]}


def late_purchase_and_order(telemetry: Path, order: dict) -> None:
    """A week late for Oct 1: a coin purchase, and the order refunded on Oct 3 that was missing."""
    purchase = next(e for e in read_events(telemetry) if e["event_type"] == "coins_purchased")
    paid = "2026-10-01T08:30:00.000000Z"
    seal(
        telemetry,
        SOURCE,
        [
            {**purchase, **event(5, "coins_purchased", "2026-10-01T08:00:00.000000Z", SOURCE),
             "purchase_id": "late-purchase"},
            {**order, **event(6, "order_paid", paid, SOURCE), "order_id": "late-order",
             "session_id": None},
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def late_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("late")
    telemetry, state = root / "telemetry", root / "state"
    run_cli("simulate", "--out", str(telemetry), "--creators", "12", "--days", str(DAYS),
            "--start", START, "--seed", "3")  # fmt: skip
    marts = state / "marts"
    first = run(telemetry, state)
    before = {n: rows(marts, n, "SELECT * FROM m ORDER BY ALL") for n in MARTS}
    parts_before = snapshot(marts)

    late = late_gift_usage_and_refund(telemetry)
    second = run(telemetry, state)
    parts_after_cli = snapshot(marts)
    after = {n: rows(marts, n, "SELECT * FROM m ORDER BY ALL") for n in MARTS}

    # Through Dagster's sensor path.
    late_purchase_and_order(telemetry, late["order"])
    done = subprocess.run(
        [sys.executable, __file__, "dagster", str(telemetry), str(state)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    dagster = json.loads(done.stdout.strip().splitlines()[-1])

    fresh = root / "fresh"
    run(telemetry, fresh)
    return {
        "marts": marts,
        "fresh": fresh / "marts",
        "first": first,
        "second": second,
        "before": before,
        "after": after,
        "late": late,
        "cli_rewrote": rewritten(parts_before, parts_after_cli),
        "parts_before": parts_before,
        "dagster": dagster,
    }


def test_first_run_publishes_every_day(late_runs):
    assert "every day (first publish" in late_runs["first"]


def printed_days(out: str) -> set[date]:
    """The days of the run's `marts: recomputed days a..b, c` line."""
    line = next(x for x in out.splitlines() if x.startswith("marts: recomputed days "))
    days: set[date] = set()
    for run_ in line.removeprefix("marts: recomputed days ").split(", "):
        first, _, last = run_.partition("..")
        days |= set(day_range(D(first), D(last or first)))
    return days


def test_cli_recomputes_only_the_dirty_partitions(late_runs):
    printed = printed_days(late_runs["second"])
    assert {D(LATE_DAY), D(REFUND_DAY)} <= printed <= {D(f"2026-10-0{d}") for d in range(1, 5)}
    changed = late_runs["cli_rewrote"]
    # Exactly the printed days' partitions were rewritten, and their week's.
    assert keys_of(changed, "platform_daily") == printed
    assert keys_of(changed, "session_economics") == printed
    assert keys_of(changed, "creator_weekly") == {D("2026-09-28")}
    assert keys_of(changed, "platform_weekly") == {D("2026-09-28")}
    # Later days and their week were published before and left alone.
    stored = set(late_runs["parts_before"])
    assert keys_of(stored, "platform_daily") >= UNTOUCHED_DAYS
    assert keys_of(stored, "creator_weekly") >= {UNTOUCHED_WEEK}


def test_late_events_land_in_their_day_and_week(late_runs):
    before, after = late_runs["before"], late_runs["after"]
    order, creator = late_runs["late"]["order"], late_runs["late"]["creator"]
    daily_before = {r[0]: r for r in before["platform_daily"]}
    daily_after = {r[0]: r for r in after["platform_daily"]}
    cols = rows(late_runs["marts"], "platform_daily", "DESCRIBE m")
    col = {c[0]: i for i, c in enumerate(cols)}

    def delta(day: str, name: str):
        return daily_after[D(day)][col[name]] - daily_before[D(day)][col[name]]

    assert delta(LATE_DAY, "gross_volume") == Decimal("10.00")
    assert delta(LATE_DAY, "infra_cost") > 0
    commission = Decimal(order["commission_minor"]) / 100
    net = Decimal(order["creator_net_minor"]) / 100
    assert delta(REFUND_DAY, "platform_revenue") == -commission
    assert delta(REFUND_DAY, "creator_earnings") == -net
    for day in UNTOUCHED_DAYS:
        assert daily_after[day] == daily_before[day]

    weekly = rows(
        late_runs["marts"],
        "creator_weekly",
        f"SELECT earnings FROM m WHERE creator_id = '{creator}' AND week = DATE '2026-09-28'",
    )
    old = [r for r in before["creator_weekly"] if r[0] == D("2026-09-28") and r[1] == creator]
    cw_cols = {
        c[0]: i for i, c in enumerate(rows(late_runs["marts"], "creator_weekly", "DESCRIBE m"))
    }
    expected = old[0][cw_cols["earnings"]] + Decimal("7.00")
    if order["creator_id"] == creator:
        expected -= net
    assert weekly == [(expected,)]
    unchanged = [r for r in before["creator_weekly"] if r[0] == UNTOUCHED_WEEK]
    assert unchanged == [r for r in after["creator_weekly"] if r[0] == UNTOUCHED_WEEK]
    assert [r for r in before["platform_weekly"] if r[0] == UNTOUCHED_WEEK] == [
        r for r in after["platform_weekly"] if r[0] == UNTOUCHED_WEEK
    ]


def test_dagster_sensor_requests_a_run_over_the_dirty_days(late_runs):
    dagster = late_runs["dagster"]
    tags = dagster["request"]["tags"]
    # Oct 1 and what it reaches: its sessions' days, and the refund days of orders paid on it.
    assert tags["dagster/asset_partition_range_start"] == "2026-10-01"
    assert D(tags["dagster/asset_partition_range_end"]) <= D("2026-10-04")
    assert dagster["request"]["run_config"] == {
        "ops": {"publish_marts": {"config": {"dirty_only": True}}}
    }
    # Dagster records the run's range as materialized partitions.
    first, last = (
        tags["dagster/asset_partition_range_start"],
        tags["dagster/asset_partition_range_end"],
    )
    assert dagster["materialized"] == [d.isoformat() for d in day_range(D(first), D(last))]
    changed = set(dagster["sensor_run_rewrote"])
    # Oct 3 too: the refund noted there counts now that its order is known.
    assert {D("2026-10-01"), D(REFUND_DAY)} <= keys_of(changed, "platform_daily")
    assert not keys_of(changed, "platform_daily") & UNTOUCHED_DAYS
    assert keys_of(changed, "creator_weekly") == {D("2026-09-28")}
    # A partition chosen by hand (as in the UI) rewrites that day and its week, nothing else.
    assert dagster["partition_run_rewrote"] == [
        "creator_weekly/2026-10-05.parquet",
        "platform_daily/2026-10-06.parquet",
        "platform_weekly/2026-10-05.parquet",
        "session_economics/2026-10-06.parquet",
    ]
    assert dagster["second_sensor"] == "skip"


def test_partial_recomputes_equal_a_run_from_scratch(late_runs):
    for name in MARTS:
        ours = (late_runs["marts"] / f"{name}.parquet").read_bytes()
        scratch = (late_runs["fresh"] / f"{name}.parquet").read_bytes()
        assert ours == scratch, name


# --- the Dagster path, run as a script ---------------------------------------------------------


def _dagster_path(telemetry: Path, state: Path) -> dict:
    """Ingest with the `refresh` job, let the marts sensor request its run, run it; then
    materialize one partition by hand. Reports what each step rewrote."""
    os.environ["CREATOR_ECON_TELEMETRY"] = str(telemetry)
    os.environ["CREATOR_ECON_MARTS"] = str(state / "marts")
    os.environ["CREATOR_ECON_DATA"] = str(state)
    import dagster as dg

    from creator_econ.settings import embedded_dsn

    os.environ["CREATOR_ECON_WAREHOUSE"] = embedded_dsn(state)  # as `creator-econ run` names it

    from pipelines.definitions import defs
    from pipelines.sensors import dirty_marts_sensor

    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("refresh").execute_in_process(instance=instance).success
    with dg.build_sensor_context(instance=instance) as context:
        request = dirty_marts_sensor(context)
        cursor = context.cursor
    assert isinstance(request, dg.RunRequest), request
    marts = state / "marts"
    job = defs.resolve_job_def("recompute_marts")
    before = snapshot(marts)
    result = job.execute_in_process(
        instance=instance, tags=request.tags, run_config=request.run_config
    )
    assert result.success
    after = snapshot(marts)
    materialized = sorted(
        {m.partition for m in result.get_asset_materialization_events() if m.partition}
    )
    by_hand = job.execute_in_process(instance=instance, partition_key="2026-10-06")
    assert by_hand.success
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        again = dirty_marts_sensor(context)
    return {
        "request": {"tags": dict(request.tags), "run_config": request.run_config},
        "materialized": materialized,
        "sensor_run_rewrote": sorted(rewritten(before, after)),
        "partition_run_rewrote": sorted(rewritten(after, snapshot(marts))),
        "second_sensor": "skip" if isinstance(again, dg.SkipReason) else "run",
    }


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT))
    if sys.argv[1] == "dagster":
        print(json.dumps(_dagster_path(Path(sys.argv[2]), Path(sys.argv[3]))), flush=True)
