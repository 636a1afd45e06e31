"""A real runtime server in a subprocess on loopback, started through the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RuntimeProcess:
    """`creator-econ runtime serve` on a free port, with its ledger and telemetry under `root`."""

    root: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def telemetry(self) -> Path:
        return self.root / "telemetry"

    def start(self, timeout: float = 30.0) -> RuntimeProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "creator_econ.cli", "runtime", "serve",
            "--port", str(self.port), "--db", str(self.db), "--telemetry", str(self.telemetry),
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runtime exited: {(self.root / 'server.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError("runtime did not answer /v1/health")

    def stop(self) -> None:
        """A graceful stop (SIGTERM): the relay drains and seals its file."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class Api:
    """A small client: accounts with tokens, and requests made as them."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def account(self, kind: str) -> dict:
        response = self.http.post("/v1/accounts", json={"kind": kind})
        assert response.status_code == 201, response.text
        return response.json()

    def call(
        self, method: str, path: str, who: dict | None = None, key: str | None = None, **kw
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {who['token']}"
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, path, headers=headers, **kw)
