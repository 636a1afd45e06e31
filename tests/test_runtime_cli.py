"""`creator-econ runtime serve` refuses clearly what it cannot do safely.

Each test starts its own server (`--port 0`), so nothing here depends on another test.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
from runtime_server import ADDRESS_LINE, RuntimeProcess


def _serve(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "creator_econ.cli", "runtime", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_port_0_prints_the_address_it_bound_first(tmp_path):
    server = RuntimeProcess(tmp_path / "one").start()
    try:
        first_line = server.log.read_text().splitlines()[0]
        health = httpx.get(f"{server.url}/v1/health", timeout=10)
    finally:
        server.stop()
    assert ADDRESS_LINE.match(first_line), first_line
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_a_second_runtime_on_the_same_ledger_is_refused(tmp_path):
    first = RuntimeProcess(tmp_path / "one").start()
    try:
        second = _serve("--port", "0", "--db", str(first.db), "--telemetry", str(first.telemetry))
        busy_port = _serve(
            "--port",
            str(first.port),
            "--db",
            str(tmp_path / "two.db"),
            "--telemetry",
            str(tmp_path / "two"),
        )
    finally:
        first.stop()
    assert second.returncode == 2
    assert "another runtime is serving the ledger" in second.stderr
    assert "Traceback" not in second.stderr
    assert second.stdout == ""  # refused before it printed an address
    assert busy_port.returncode == 2
    assert f"cannot listen on 127.0.0.1:{first.port}" in busy_port.stderr
    assert "Traceback" not in busy_port.stderr
