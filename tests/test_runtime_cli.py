"""`creator-econ runtime serve` refuses clearly what it cannot do safely."""

from __future__ import annotations

import subprocess
import sys

from runtime_server import RuntimeProcess, free_port


def _serve(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "creator_econ.cli", "runtime", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_second_runtime_on_the_same_ledger_is_refused(tmp_path):
    first = RuntimeProcess(tmp_path / "one").start()
    try:
        second = _serve(
            "--port", str(free_port()), "--db", str(first.db), "--telemetry", str(first.telemetry)
        )
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
    assert busy_port.returncode == 2
    assert f"cannot listen on 127.0.0.1:{first.port}" in busy_port.stderr
