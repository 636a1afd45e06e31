"""The raw checks hold to the per-query memory limit at any scope size (quality/raw_frames.py).

A history of 2.8 million raw rows (2 million gifts, orders and refunds) is built inside the
embedded engine and checked under a per-query limit far below what the ids of a large scope take
in an IN set or a uniqExact state: the statements as they were fail with a memory error, the new
ones pass with the counts planted, and their two forms (ids looked up by set, or grouped over the
whole table) agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from quality.raw_frames import (
    BUSINESS_ID_SET_BYTES,
    EVENT_ID_SET_BYTES,
    REFUND_SET_BYTES,
    ScopeSize,
    business_id_sql,
    raw_frames,
    refunds_match_orders_sql,
    scope_size,
    table_stats_sql,
)
from warehouse.connection import connect
from warehouse.memory import GIB, MIB, MemoryBudget, out_of_memory
from warehouse.registry import ensure_warehouse_schema

QUERY_LIMIT = 128 * MIB  # spilling GROUP BYs need about 60-120 MiB here (two threads)
SPILL = 16 * MIB
NOW = datetime(2026, 6, 1, tzinfo=UTC)
FILE_ROWS = 50_000
GIFTS, ORDERS, REFUNDS = 2_000_000, 400_001, 400_000


class TightBudget(MemoryBudget):
    """A run's budget with each query held to QUERY_LIMIT and spilling at SPILL: under it the
    ids of a large scope do not fit a set, and a GROUP BY over them must spill."""

    def query_settings(self) -> dict[str, int]:
        settings = super().query_settings()
        settings["max_memory_usage"] = QUERY_LIMIT
        for what in ("group_by", "sort", "join"):
            settings[f"max_bytes_before_external_{what}"] = SPILL
        return settings


def files(kind: str, first: int, last: int) -> list[str]:
    return [f"{kind}-{k:03d}" for k in range(first, last + 1)]


# A first run loads all but the newest files (gifts-038, in neither scope, stands for what
# another run loaded); a small run loads the newest gift and refund files alone.
LARGE = files("gifts", 0, 37) + files("orders", 0, 8) + files("refunds", 0, 6)
SMALL = files("gifts", 39, 39) + files("refunds", 7, 7)
MEDIUM = files("gifts", 0, 9) + files("refunds", 0, 3)  # the oldest files, to compare forms on


def _file(kind: str) -> str:
    return f"concat('{kind}-', leftPad(toString(intDiv(number, {FILE_ROWS})), 3, '0'))"


def _uuid(number: str) -> str:
    return f"toUUID(concat('00000000-0000-4000-8000-', leftPad(lower(hex({number})), 12, '0')))"


def _id(kind: str, number: str) -> str:  # 36 characters, as the simulator's uuid4 strings
    return f"concat('{kind}-', leftPad(toString({number}), {35 - len(kind)}, '0'))"


# Gifts n = 0..1_999_999 in files gifts-000..039 of 50_000 rows (gifts-038 is in neither scope);
# event id n and gift id n, but:
EVENT_NUMBER = (
    "multiIf(number = 1000001, 1000000,"  # a repeat inside the large scope (gifts-020)
    " number = 20, 1930000,"  # gifts-000 takes an id gifts-038 holds
    " number = 1950001, 10,"  # gifts-039 takes an id gifts-000 holds
    " number = 1960001, 1960000,"  # a repeat inside the small scope (gifts-039)
    " number)"
)
# and the event index holds event id 30 (gifts-000) a second time, as a gift_failed of
# other-000: out of both scopes.
GIFT_NUMBER = (
    "multiIf(number = 500001, 500000,"  # a repeat inside the large scope (gifts-010)
    " number = 1910000, 5,"  # gifts-038 reuses gift 5 of gifts-000
    " number = 1970000, 1970001,"  # a repeat inside the small scope (gifts-039)
    " number = 1980000, 7,"  # gifts-039 reuses gift 7 of gifts-000
    " number = 1990000, 5,"  # and gift 5 as well
    " number)"
)
# Orders n = 0..400_000 with gross 100 + n % 7, but the last is a second, later event of order 3
# with another gross (the first event's gross is the one refunded). Refunds r = 0..399_999
# refund order r with its gross in full, but:
ORDER_NUMBER = "if(number = 400000, 3, number)"
REFUND_ORDER = (
    "multiIf(number = 12, 'missing-1',"  # without order (large scope)
    " number = 13, '',"  # without order (large scope)
    f" number = 14, {_id('order', '15')},"  # order 15 refunded twice, here not in full
    " number = 399991, 'missing-2',"  # without order (small scope)
    f" {_id('order', 'number')})"
)
REFUND_MINOR = (
    "multiIf(number = 11, 1,"  # not in full (large scope)
    " number = 399990, 0,"  # not in full (small scope)
    " 100 + number % 7)"
)

# (rows, distinct event ids less those also held out of scope) of raw_gift_sent,
# (rows, distinct gift ids less those also held out of scope),
# (refunds, without order, not in full), per scope
EXPECTED = {
    "large": ((1_900_000, 1_899_996), (1_900_000, 1_899_997), (350_000, 2, 2)),
    "small": ((50_000, 49_998), (50_000, 49_997), (50_000, 1, 1)),
    "full": ((2_000_000, 1_999_996), (2_000_000, 1_999_995), (400_000, 3, 3)),
    "medium": ((500_000, 499_997), (500_000, 499_998), (200_000, 2, 2)),
}
SCOPES = {"large": LARGE, "small": SMALL, "full": None}

# The statements as they were: uniqExact and an IN set over the ids of the scope.
OLD_TABLE_STATS = (
    "SELECT 'raw_gift_sent', count(), uniqExact(event_id) - (SELECT uniqExact(event_id) "
    "FROM event_index WHERE event_id IN (SELECT event_id FROM raw_gift_sent WHERE _file IN "
    "{files:Array(String)}) AND NOT _file IN {files:Array(String)}), minOrNull(occurred_at), "
    "maxOrNull(occurred_at), countIf(occurred_at > {limit:DateTime64(6, 'UTC')}), "
    "(SELECT count() FROM raw_gift_sent) FROM raw_gift_sent WHERE _file IN {files:Array(String)}"
)
OLD_BUSINESS_IDS = (
    "SELECT 'raw_gift_sent', 'gift_id', count(), uniqExact(gift_id) - (SELECT "
    "uniqExact(gift_id) FROM raw_gift_sent WHERE gift_id IN (SELECT gift_id FROM raw_gift_sent "
    "WHERE _file IN {files:Array(String)}) AND NOT _file IN {files:Array(String)}) "
    "FROM raw_gift_sent WHERE _file IN {files:Array(String)}"
)


def build_history(client: Client) -> None:
    """The rows, their event index entries and ingest log, written by the engine itself."""
    ensure_warehouse_schema(client)
    start = "toDateTime64('2026-01-01 00:00:00', 6, 'UTC') + toIntervalSecond(number)"
    unlimited = {"max_memory_usage": 0}
    client.command(
        "INSERT INTO raw_gift_sent (event_id, occurred_at, source, gift_id, session_id, "
        "sender_id, coins, value_minor, currency, platform_fee_minor, _file, _line) "
        f"SELECT {_uuid(EVENT_NUMBER)}, {start}, 'synthetic', {_id('gift', GIFT_NUMBER)}, "
        f"'s', 'u', 1, 10, 'USD', 10, {_file('gifts')}, number % {FILE_ROWS} + 1 "
        f"FROM numbers({GIFTS})",
        settings=unlimited,
    )
    client.command(
        "INSERT INTO raw_order_paid (event_id, occurred_at, source, order_id, creator_id, "
        "product_id, quantity, gross_minor, _file, _line) "
        f"SELECT generateUUIDv4(number), {start}, 'synthetic', {_id('order', ORDER_NUMBER)}, "
        f"'c', 'p', 1, 100 + number % 7, {_file('orders')}, number % {FILE_ROWS} + 1 "
        f"FROM numbers({ORDERS})",
        settings=unlimited,
    )
    client.command(
        "INSERT INTO raw_order_refunded (event_id, occurred_at, source, order_id, refund_minor, "
        "reason, _file, _line) "
        f"SELECT generateUUIDv4(number), {start}, 'synthetic', {REFUND_ORDER}, {REFUND_MINOR}, "
        f"'r', {_file('refunds')}, number % {FILE_ROWS} + 1 FROM numbers({REFUNDS})",
        settings=unlimited,
    )
    client.command(
        "INSERT INTO event_index (event_id, payload_hash, event_type, _file) "
        "SELECT event_id, 0, 'gift_sent', _file FROM raw_gift_sent "
        "UNION ALL SELECT event_id, 0, 'order_paid', _file FROM raw_order_paid "
        "UNION ALL SELECT event_id, 0, 'order_refunded', _file FROM raw_order_refunded "
        f"UNION ALL SELECT {_uuid('30')}, 0, 'gift_failed', 'other-000'",
        settings=unlimited,
    )
    client.command(
        "INSERT INTO ingest_log SELECT _file, count(), count(), 0, 0, 0, 0, now64(6) "
        "FROM event_index GROUP BY _file",
        settings=unlimited,
    )


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The history in an embedded warehouse opened the way a run opens it, on a tight budget."""
    path: Path = tmp_path_factory.mktemp("raw_memory") / "warehouse"
    client = connect(f"chdb://{path}", TightBudget(2 * GIB))
    build_history(client)
    yield client
    client.close()


def one(client: Client, sql: str, files: list[str] | None, **settings) -> tuple:
    params = {"files": files or [], "limit": NOW}
    result = client.query(sql, parameters=params, settings=settings or None)
    return tuple(result.result_rows[0])


def test_the_limit_is_the_one_the_run_sets(tight):
    assert one(tight, "SELECT getSetting('max_memory_usage')", None) == (QUERY_LIMIT,)
    tables = ("raw_gift_sent", "raw_order_paid", "raw_order_refunded")
    history = one(tight, "SELECT " + ", ".join(f"(SELECT count() FROM {t})" for t in tables), None)
    assert history == (GIFTS, ORDERS, REFUNDS)


@pytest.mark.parametrize(
    "sql",
    [OLD_TABLE_STATS, OLD_BUSINESS_IDS, refunds_match_orders_sql(True, by_set=True)],
    ids=["table_stats", "business_ids", "refunds"],
)
def test_the_set_statements_run_out_of_memory_on_a_large_scope(tight, sql):
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the driver's error types vary
        one(tight, sql, LARGE)
    assert out_of_memory(str(failure.value)), str(failure.value)[:300]


def by_set(size: ScopeSize) -> tuple[bool, bool, bool]:
    return (
        size.by_set("gift_sent", EVENT_ID_SET_BYTES),
        size.by_set("gift_sent", BUSINESS_ID_SET_BYTES),
        size.by_set("order_refunded", REFUND_SET_BYTES),
    )


def test_the_form_follows_the_rows_in_scope_and_the_budget(tight):
    large, small, full = (scope_size(tight, SCOPES[s]) for s in ("large", "small", "full"))
    assert large.query_bytes == QUERY_LIMIT
    assert large.rows["gift_sent"] == 1_900_000 and large.rows["order_refunded"] == 350_000
    assert full.rows["gift_sent"] == GIFTS and full.rows["order_refunded"] == REFUNDS
    assert by_set(large) == by_set(full) == (False, False, False)
    assert by_set(small) == (True, True, True)  # a small run reads little beyond its files
    # The ingest log's 100_000 lines settle every statement of a small run but the refunds'
    # (640 bytes a row over a quarter of 128 MiB): only the refunds in scope are counted.
    assert small.rows["gift_sent"] == 100_000 and small.rows["order_refunded"] == 50_000
    # The default 2 GiB budget groups the large scope too; an 8 GiB one holds it in sets.
    assert not any(by_set(replace(large, query_bytes=MemoryBudget.of_gib(2).query_bytes)))
    assert all(by_set(replace(large, query_bytes=MemoryBudget.of_gib(8).query_bytes)))


@pytest.mark.parametrize("scope", ["large", "small", "full"])
def test_the_raw_frames_hold_to_the_limit_and_count_what_was_planted(tight, scope):
    frames = raw_frames(tight, NOW, SCOPES[scope])
    stats, ids, refunds = EXPECTED[scope]
    table = frames["raw_tables"].set_index("table").loc["raw_gift_sent"]
    assert (table["rows"], table["distinct_event_ids"]) == stats
    assert table["future_rows"] == 0 and table["all_rows"] == GIFTS
    gift_ids = frames["raw_ids"].set_index("table").loc["raw_gift_sent"]
    assert (gift_ids["rows"], gift_ids["distinct_ids"]) == ids
    refund = frames["raw_refunds"].iloc[0]
    assert (refund["refunds"], refund["without_order"], refund["not_full"]) == refunds


# statement in its form, the counts it returns, what they should be in the medium scope
FORMS = {
    "table_stats": (
        lambda by_set: table_stats_sql("gift_sent", True, by_set),
        slice(1, 3),
        EXPECTED["medium"][0],
    ),
    "business_ids": (
        lambda by_set: business_id_sql("gift_sent", "gift_id", True, by_set),
        slice(2, 4),
        EXPECTED["medium"][1],
    ),
    "refunds": (
        lambda by_set: refunds_match_orders_sql(True, by_set),
        slice(1, 4),
        EXPECTED["medium"][2],
    ),
}


@pytest.mark.parametrize("statement", FORMS)
def test_both_forms_count_the_same(tight, statement):
    sql, counts, expected = FORMS[statement]
    # The by-set form gets room to run where its set would not fit the tight limit.
    by_set = one(tight, sql(True), MEDIUM, max_memory_usage=GIB)
    grouped = one(tight, sql(False), MEDIUM)
    assert by_set == grouped
    assert grouped[counts] == expected
