"""New prices reprice history: `creator-econ run --cost-model FILE` recomputes every partition.

README ("Cost model"): copy the shipped cost model, change `version` and the prices, and run with
`--cost-model`: every mart is recomputed and stamped with the new version. docs/models.md: under
another fingerprint (`--cost-model` with other prices) every partition is recomputed and the
store replaced whole.

Three hand-written live sessions (Oct 2, 4 and 6, 2026, in two ISO weeks) are run once with the
shipped prices, then again with a copy whose `transcode_minute` is doubled and whose
`fixed_monthly` is $6,200 (October has 31 days: $200 a day). Expected costs are worked out by
hand from the usage written below.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from handmade import gift, seal, session_ended, session_started, usage

from creator_econ.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "cost_model_default.toml"
MARTS = ("platform_daily", "creator_weekly", "platform_weekly", "session_economics")
SOURCE = "prices"
OLD_VERSION, NEW_VERSION = "list-prices-2026-11", "test-doubled-transcode"

# (day, session start, minutes live and transcoded): transcode is priced per minute, $0.05
# shipped and $0.10 in the copy.
SESSIONS = [("2026-10-02", "10:00", 2), ("2026-10-04", "20:00", 5), ("2026-10-06", "08:00", 1)]
TRANSCODE_OLD = {
    "2026-10-02": Decimal("0.10"),
    "2026-10-03": Decimal(0),
    "2026-10-04": Decimal("0.25"),
    "2026-10-05": Decimal(0),
    "2026-10-06": Decimal("0.05"),
}
# 60 publisher seconds a minute at $0.002 a minute, unchanged by the copy.
PUBLISH = {"2026-10-02": Decimal("0.004"), "2026-10-04": Decimal("0.010")}


def session_lines(number: int, day: str, start: str, minutes: int) -> list[dict[str, Any]]:
    session, base = f"s{number}", number * 10
    hour, minute = (int(x) for x in start.split(":"))
    begin = f"{day}T{hour:02d}:{minute:02d}:00.000000Z"
    end = f"{day}T{hour:02d}:{minute + minutes:02d}:00.000000Z"
    gift_at = f"{day}T{hour:02d}:{minute:02d}:30.000000Z"
    seconds = 60 * minutes
    common = {"session_id": session, "source": SOURCE}
    return [
        session_started(base + 1, begin, ["c1"], **common),
        usage(
            base + 2,
            begin,
            end,
            publisher_seconds=seconds,
            viewer_seconds=5 * seconds,
            transcode_seconds=seconds,
            egress_bytes=1_000_000,
            **common,
        ),
        gift(base + 3, gift_at, 100, share=70, gift_id=f"g{number}", **common),
        session_ended(base + 4, end, **common),
    ]


def write_telemetry(telemetry: Path) -> None:
    seal(telemetry, SOURCE, [e for n, s in enumerate(SESSIONS, 1) for e in session_lines(n, *s)])


def new_prices(path: Path) -> Path:
    """The shipped file with a new version, transcode doubled and $6,200 of fixed cost."""
    text = SHIPPED.read_text(encoding="utf-8")
    changes = {
        f'version = "{OLD_VERSION}"': f'version = "{NEW_VERSION}"',
        "transcode_minute = 0.05\n": "transcode_minute = 0.10\n",
        "fixed_monthly = 3000.0\n": "fixed_monthly = 6200.0\n",
    }
    for old, new in changes.items():
        assert text.count(old) == 1, f"the shipped cost model no longer has {old!r}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path


def partition_files(marts: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(marts / "_partitions")): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (marts / "_partitions").rglob("*.parquet")
    }


def read_marts(marts: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: pq.read_table(marts / f"{name}.parquet").to_pylist() for name in MARTS}


def daily(marts: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {r["day"].isoformat(): r for r in marts["platform_daily"]}


@pytest.fixture(scope="module")
def reruns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("prices")
    telemetry, marts = root / "telemetry", root / "marts"
    write_telemetry(telemetry)
    args = ["run", "--telemetry", str(telemetry), "--marts", str(marts), "--data", str(root)]
    assert main(args) == 0
    out: dict[str, Any] = {"before": read_marts(marts), "parts_before": partition_files(marts)}
    partitions = {
        str(p.relative_to(marts / "_partitions"))
        for p in (marts / "_partitions").rglob("*.parquet")
    }
    out["partition_versions_before"] = {
        name: set(pq.read_table(marts / "_partitions" / name)["cost_model_version"].to_pylist())
        for name in partitions
    }
    assert main([*args, "--cost-model", str(new_prices(root / "my-prices.toml"))]) == 0
    out["after"] = read_marts(marts)
    out["parts_after"] = partition_files(marts)
    out["partition_versions_after"] = {
        name: set(pq.read_table(marts / "_partitions" / name)["cost_model_version"].to_pylist())
        for name in partitions
    }
    return out


def test_every_partition_file_is_rewritten(reruns):
    before, after = reruns["parts_before"], reruns["parts_after"]
    # Oct 2..6 by day, the weeks of Sep 28 and Oct 5, and the session start days.
    assert {n for n in before if n.startswith("platform_daily/")} == {
        f"platform_daily/2026-10-0{d}.parquet" for d in range(2, 7)
    }
    assert {n for n in before if n.startswith("creator_weekly/")} == {
        "creator_weekly/2026-09-28.parquet",
        "creator_weekly/2026-10-05.parquet",
    }
    assert set(after) == set(before)
    unchanged = [name for name in before if before[name] == after[name]]
    assert not unchanged, f"partitions left as they were: {unchanged}"


def test_every_published_row_carries_the_new_version(reruns):
    for when, version in (("before", OLD_VERSION), ("after", NEW_VERSION)):
        for name, rows in reruns[when].items():
            assert rows, name
            assert {r["cost_model_version"] for r in rows} == {version}, (when, name)
    # Stored partitions too (a day without a session start has an empty session partition).
    after = reruns["partition_versions_after"]
    assert {name for name, versions in after.items() if not versions} == {
        "session_economics/2026-10-03.parquet",
        "session_economics/2026-10-05.parquet",
    }
    assert all(v == {NEW_VERSION} for v in after.values() if v)
    assert all(v == {OLD_VERSION} for v in reruns["partition_versions_before"].values() if v)


def test_doubling_the_transcode_price_doubles_transcode_cost_per_day(reruns):
    before, after = daily(reruns["before"]), daily(reruns["after"])
    assert sorted(before) == sorted(after) == sorted(TRANSCODE_OLD)
    for day, cost in TRANSCODE_OLD.items():
        assert before[day]["transcode_cost"] == cost, day
        assert after[day]["transcode_cost"] == 2 * cost, day
    # An unchanged price gives the same cost; fixed cost is $6,200 / 31 days = $200 a day.
    for day, cost in PUBLISH.items():
        assert before[day]["publish_cost"] == after[day]["publish_cost"] == cost, day
    assert {r["fixed_cost"] for r in after.values()} == {Decimal(200)}
    # Revenue does not depend on prices: 3 gifts of $1.00 with a $0.30 fee.
    assert sum(r["platform_revenue"] for r in after.values()) == Decimal("0.90")
    assert [r["platform_revenue"] for r in before.values()] == [
        r["platform_revenue"] for r in after.values()
    ]
