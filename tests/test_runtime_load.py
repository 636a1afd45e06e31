"""The load generator through the real CLI against a real server, and the ledger after it.

The load's purchases and orders are pending payments its users confirm at the sandbox
provider. The test starts its own server (`--port 0`), so it depends on no other test.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from runtime_server import RuntimeProcess

from creator_econ.cli import main


def test_runtime_load_leaves_a_balanced_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = RuntimeProcess(tmp_path / "runtime").start()
    try:
        code = main(["runtime", "load", "--url", server.url, "--users", "8", "--duration", "3"])
        out = capsys.readouterr().out
    finally:
        server.stop()

    assert code == 0, out
    assert "result: OK" in out
    sent = re.search(r"^gift\s+([\d,]+)", out, re.MULTILINE)
    assert sent is not None, out
    assert int(sent[1].replace(",", "")) > 0

    conn = sqlite3.connect(server.db)
    try:
        (gifts,) = conn.execute("SELECT count(*) FROM movements WHERE kind = 'gift'").fetchone()
        # Coins and orders come only from payments the provider confirmed, one movement each.
        paid = dict(
            conn.execute(
                "SELECT kind, count(*) FROM payments "
                "WHERE status IN ('succeeded', 'refunded', 'disputed') GROUP BY kind"
            )
        )
        moved = dict(
            conn.execute(
                "SELECT m.kind, count(*) FROM movements m JOIN payments p ON p.reference = m.id "
                "AND p.kind = m.kind WHERE p.status IN ('succeeded', 'refunded', 'disputed') "
                "GROUP BY m.kind"
            )
        )
        every = dict(
            conn.execute(
                "SELECT kind, count(*) FROM movements WHERE kind IN ('purchase', 'order') "
                "GROUP BY kind"
            )
        )
        per_unit = dict(conn.execute("SELECT unit, sum(balance) FROM accounts GROUP BY unit"))
        (overdrawn,) = conn.execute(
            "SELECT count(*) FROM accounts WHERE may_go_negative = 0 AND balance < 0"
        ).fetchone()
    finally:
        conn.close()
    assert gifts > 0
    assert paid.get("purchase", 0) > 0 and paid == moved == every, (paid, moved, every)
    assert per_unit and all(total == 0 for total in per_unit.values()), per_unit
    assert overdrawn == 0
