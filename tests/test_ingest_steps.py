"""A crash before any step of an ingest batch, then a rerun: every event exactly once.

`ingest.batch.STEPS` is one batch as an ordered list of steps; `ingest(..., before_step=...)`
shows each step before it runs. Here two hand-written sealed files are loaded one batch each
(`batch_bytes=1`), and the second batch is stopped before each step in turn by raising from
`before_step`, as a crash would stop it. Ingest is then run again normally, and the warehouse
is compared with an independent reading of the files (the json module, and the line numbers of
the lines written to be rejected): each raw table holds each valid event id of its type once,
the ingest log counts each file's lines as they were written, and the quarantine holds exactly
the rejected lines.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from handmade import gift, line, order, session_ended, session_started, usage

from ingest.batch import STEPS, Step
from ingest.loader import IngestReport, ingest
from telemetry.events import EVENT_FIELDS

FIRST, SECOND = "steps-000000000001.jsonl", "steps-000000000002.jsonl"
SOURCE = "steps"
# Every gift is 100 = 60 + 20 in shares + 20 platform fee.
SHARES = {"c1": 60, "c2": 20}

GIFT_1 = line(gift(1, "2026-10-01T10:00:00.000000Z", 100, SHARES, source=SOURCE))
ORDER_2 = line(order(2, "2026-10-01T11:00:00.000000Z", 1000, session_id="s1", source=SOURCE))
# The same event_id as ORDER_2 with another payload: a conflicting duplicate.
ORDER_2_CHANGED = line(
    order(2, "2026-10-05T11:00:00.000000Z", 2000, session_id="s1", source=SOURCE)
)
BAD_COINS = line(gift(7, "2026-10-05T10:00:00.000000Z", 100, SHARES, coins="100", source=SOURCE))

FILES: dict[str, list[str]] = {
    FIRST: [
        GIFT_1,
        ORDER_2,
        line(session_started(3, "2026-10-01T09:00:00.000000Z", ["c1", "c2"], source=SOURCE)),
        GIFT_1,  # a redelivery in the same file
        "not json",
    ],
    SECOND: [
        line(gift(4, "2026-10-02T10:00:00.000000Z", 100, SHARES, source=SOURCE)),
        line(order(5, "2026-10-02T11:00:00.000000Z", 500, session_id="s1", source=SOURCE)),
        GIFT_1,  # a redelivery of the first file's line
        ORDER_2_CHANGED,
        line(
            usage(
                6,
                "2026-10-02T23:59:30.000000Z",
                "2026-10-03T00:00:30.000000Z",
                publisher_seconds=60,
                viewer_seconds=120,
                transcode_seconds=60,
                egress_bytes=1000,
                source=SOURCE,
            )
        ),
        BAD_COINS,
        line(session_ended(8, "2026-10-02T12:00:00.000000Z", source=SOURCE)),
    ],
}
# The lines written to be rejected, by (file, line number), with the reason docs/ingest.md
# gives them.
REJECTED = {
    (FIRST, 5): "not_json",
    (SECOND, 4): "conflicting_duplicate",
    (SECOND, 6): "invalid_field:coins",
}
# Counted by hand from FILES: (lines_read, loaded, duplicates, quarantined, conflicting).
LOG = {FIRST: (5, 3, 1, 1, 0), SECOND: (7, 4, 1, 2, 1)}
# The days the loaded events fall on (the usage interval starts on Oct 2 and ends on Oct 3);
# the rejected lines' Oct 5 is not one of them.
TOUCHED = {date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)}


def write_files(root: Path) -> None:
    sealed = root / "sealed"
    sealed.mkdir(parents=True)
    for name, lines in FILES.items():
        (sealed / name).write_text("".join(text + "\n" for text in lines), encoding="utf-8")


def valid_ids_by_type(root: Path) -> dict[str, set[str]]:
    """The distinct event ids of each type among the lines not written to be rejected, read
    back from the files with the json module."""
    ids: dict[str, set[str]] = defaultdict(set)
    for name in FILES:
        text = (root / "sealed" / name).read_text(encoding="utf-8")
        for number, written in enumerate(text.splitlines(), 1):
            if (name, number) not in REJECTED:
                body = json.loads(written)
                ids[body["event_type"]].add(body["event_id"])
    return ids


# Every row a batch writes that names its file: raw rows, index rows and quarantined lines.
RAW_FILES = " UNION ALL ".join(
    [f"SELECT _file FROM raw_{t}" for t in EVENT_FIELDS]
    + ["SELECT _file FROM event_index", "SELECT _file FROM quarantine"]
)


class Crash(Exception):
    """Raised from `before_step` where the test stops a batch."""


def crash_before(target: Step, batch: int):
    """A `before_step` that raises when `target` is reached in batch number `batch`."""
    seen = {"batches": 0}

    def before(step: Step) -> None:
        if step is STEPS[0]:
            seen["batches"] += 1
        if seen["batches"] == batch and step is target:
            raise Crash(step.name)

    return before


def load(client: Client, root: Path, in_warehouse: bool, **options: Any) -> IngestReport:
    return ingest(client, root, read_files_in_warehouse=in_warehouse, batch_bytes=1, **options)


def ingest_log(client: Client) -> dict[str, tuple[int, ...]]:
    rows = client.query(
        "SELECT _file, lines_read, loaded, duplicates, quarantined, conflicting FROM ingest_log"
    ).result_rows
    assert len(rows) == len({r[0] for r in rows}), f"a file logged twice: {rows}"
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


def check_exactly_once(client: Client, root: Path) -> None:
    ids = valid_ids_by_type(root)
    per_table = " UNION ALL ".join(
        f"SELECT '{t}', count(), uniqExact(event_id), groupArray(toString(event_id)) FROM raw_{t}"
        for t in EVENT_FIELDS
    )
    for event_type, count, distinct, stored in client.query(per_table).result_rows:
        assert (count, distinct) == (len(ids[event_type]),) * 2, event_type
        assert set(stored) == ids[event_type], event_type
    every_id = set().union(*ids.values())
    index = client.query("SELECT count(), uniqExact(event_id) FROM event_index").result_rows[0]
    assert index == (len(every_id), len(every_id))

    log = ingest_log(client)
    assert log == LOG
    for name, (read, loaded, duplicates, quarantined, _) in log.items():
        lines = (root / "sealed" / name).read_text(encoding="utf-8").splitlines()
        assert read == len(lines) == loaded + duplicates + quarantined, name

    quarantine = client.query(
        "SELECT _file, _line, reason, raw_line FROM quarantine ORDER BY _file, _line"
    ).result_rows
    assert quarantine == [
        (name, number, reason, FILES[name][number - 1])
        for (name, number), reason in sorted(REJECTED.items())
    ]
    # The first occurrence stays: the order of the conflict keeps its first payload and line.
    assert client.query(
        "SELECT _file, _line, gross_minor FROM raw_order_paid WHERE order_id = 'o2'"
    ).result_rows == [(FIRST, 2, 1000)]
    assert client.query(
        "SELECT _file, _line FROM raw_gift_sent WHERE gift_id = 'g1'"
    ).result_rows == [(FIRST, 1)]
    noted = {r[0] for r in client.query("SELECT DISTINCT day FROM marts_dirty_days").result_rows}
    assert noted == TOUCHED
    # No load is left half done: every started file has its ingest log row.
    unfinished = client.query(
        "SELECT DISTINCT _file FROM ingest_attempts "
        "WHERE _file NOT IN (SELECT _file FROM ingest_log)"
    ).result_rows
    assert unfinished == []


# Every step with the embedded warehouse reading the files; with the lines sent over the
# connection (as to a server), the steps around staging, the only ones that differ.
CASES = [
    pytest.param(i, True, id=f"{s.name}-file-read".replace(" ", "_")) for i, s in enumerate(STEPS)
]
CASES += [
    pytest.param(i, False, id=f"{s.name}-bytes-sent".replace(" ", "_"))
    for i, s in enumerate(STEPS)
    if s.name in ("stage the files", "parse and classify")
]


@pytest.mark.parametrize(("step", "in_warehouse"), CASES)
def test_a_crash_before_any_step_then_a_rerun_loads_every_event_once(
    tmp_path: Path, warehouse: Client, step: int, in_warehouse: bool
) -> None:
    write_files(tmp_path)
    with pytest.raises(Crash):
        load(warehouse, tmp_path, in_warehouse, before_step=crash_before(STEPS[step], batch=2))
    # The first batch committed; the second did not, whatever it had written.
    assert ingest_log(warehouse) == {FIRST: LOG[FIRST]}

    rerun = load(warehouse, tmp_path, in_warehouse)
    # Only the interrupted file is read again, and it is counted from scratch.
    assert [
        (f.file, f.lines_read, f.loaded, f.duplicates, f.quarantined, f.conflicting)
        for f in rerun.files
    ] == [(SECOND, *LOG[SECOND])]
    check_exactly_once(warehouse, tmp_path)
    # A third run finds nothing new.
    assert load(warehouse, tmp_path, in_warehouse).files == []
    check_exactly_once(warehouse, tmp_path)


def test_the_ingest_log_is_the_last_write_of_a_batch(tmp_path: Path, warehouse: Client) -> None:
    """The commit point is the last step: before every step of the second batch its file has
    no ingest log row, and before the last step every other row of the batch is written."""
    write_files(tmp_path)
    seen: list[tuple[str, bool, int]] = []
    batches = {"n": 0}

    def before(step: Step) -> None:
        if step is STEPS[0]:
            batches["n"] += 1
        if batches["n"] == 2:
            logged = SECOND in ingest_log(warehouse)
            rows = warehouse.query(
                f"SELECT count() FROM ({RAW_FILES}) WHERE _file = {{f:String}}",
                parameters={"f": SECOND},
            ).result_rows[0][0]
            seen.append((step.name, logged, int(rows)))

    load(warehouse, tmp_path, True, before_step=before)
    assert [name for name, _, _ in seen] == [s.name for s in STEPS]
    assert not any(logged for _, logged, _ in seen), seen
    # Nothing of the batch is written before its first step; before the last step the 4
    # loaded events are in the raw tables and the index and the 2 rejected lines are
    # quarantined: the ingest log row is all that is left to write.
    assert seen[0][2] == 0
    assert seen[-1][2] == 2 * LOG[SECOND][1] + LOG[SECOND][3]
    assert ingest_log(warehouse) == LOG
    assert STEPS[-1].name == "write the ingest log"
    assert len({s.name for s in STEPS}) == len(STEPS)
