"""A real runtime server in a subprocess on loopback, started through the real CLI.

The server is started with `--port 0`: it binds a free port itself and prints its URL as the
first line of its stdout, which is read here. (Picking a free port here, closing it and
passing it to the server would let another process take the port in between.) Everything
else the server writes, stdout and stderr, goes to `server.log` under its root.

`bench/runtime.py` starts its servers with this launcher too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import httpx

# The first line `creator-econ runtime serve` prints (creator_econ/cli.py, `_serve`).
ADDRESS_LINE = re.compile(r"^runtime on (http://\S+) \(API description at /openapi\.json\)")
T = TypeVar("T")
# Every test creates its accounts from 127.0.0.1, many a minute, so test servers lift the
# per-address limits (live_runtime/server/auth.py); None in `env` removes a variable, so
# `env=SHIPPED_LIMITS` runs a server with the shipped limits.
SIGNUPS_ENV = "CREATOR_ECON_SIGNUPS_PER_MINUTE"
FAILED_SIGN_INS_ENV = "CREATOR_ECON_FAILED_SIGN_INS_PER_MINUTE"
TEST_LIMITS: dict[str, str | None] = {SIGNUPS_ENV: "1000000", FAILED_SIGN_INS_ENV: "1000000"}
SHIPPED_LIMITS: dict[str, str | None] = {SIGNUPS_ENV: None, FAILED_SIGN_INS_ENV: None}
# Test servers run the shipped policy with earnings payable at once (payout_hold_days = 0), so a
# test can pay out what it just earned; `hold_days=None` runs the shipped policy as it is.
SHIPPED_POLICY = Path(__file__).parents[1] / "live_runtime" / "policy_default.toml"
SHIPPED_HOLD = "payout_hold_days = 7 "


class ServerFailed(RuntimeError):
    """The server exited, or did not print its address, or did not stop; the log says why."""


def wait_for(condition: Callable[[], T], what: str, timeout: float = 10.0, every=0.02) -> T:
    """Polls `condition` until it returns something truthy, and returns that.

    Fails with `what` in the message when `timeout` seconds pass first: a wait on a condition,
    never a fixed sleep that hopes the condition holds by then.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@dataclass
class RuntimeProcess:
    """`creator-econ runtime serve --port 0`, with its ledger and telemetry under `root`."""

    root: Path
    extra_args: list[str] = field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str | None] = field(default_factory=lambda: dict(TEST_LIMITS))
    hold_days: int | None = 0
    url: str = ""  # known once start() has read the server's first line
    process: subprocess.Popen | None = None
    _copier: threading.Thread | None = None

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None, "the server is not started"
        return port

    @property
    def db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def telemetry(self) -> Path:
        return self.root / "telemetry"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def start(self, timeout: float = 30.0) -> RuntimeProcess:
        """Starts the server and waits (at most `timeout` s) for the address it prints."""
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "creator_econ.cli", "runtime", "serve",
            "--port", "0", "--db", str(self.db), "--telemetry", str(self.telemetry),
            *self._policy_args(), *self.extra_args,
        ]  # fmt: skip
        with open(self.log, "ab") as log:  # the child keeps its own descriptor for stderr
            env = {**os.environ, **self.env}
            self.process = subprocess.Popen(
                command,
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=log,
                env={k: v for k, v in env.items() if v is not None},
            )
        first: queue.Queue[bytes | None] = queue.Queue()
        self._copier = threading.Thread(
            target=_copy_stdout, args=(self.process.stdout, self.log, first), daemon=True
        )
        self._copier.start()
        try:
            line = first.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise ServerFailed(
                f"the runtime printed no address in {timeout:g}s; {self.log}:\n{self.log_text()}"
            ) from None
        if line is None:
            self.process.wait(timeout=30)
            self._join_copier()
            raise ServerFailed(
                f"the runtime exited with {self.process.returncode} before printing its "
                f"address; {self.log}:\n{self.log_text()}"
            )
        found = ADDRESS_LINE.match(line.decode(errors="replace"))
        if found is None:
            self.kill()
            raise ServerFailed(f"unexpected first line from the runtime: {line!r}")
        self.url = found[1]
        return self

    def _policy_args(self) -> list[str]:
        """`--policy` with the test hold, unless the test names a policy or the shipped hold."""
        if self.hold_days is None or "--policy" in self.extra_args:
            return []
        shipped = SHIPPED_POLICY.read_text()
        assert SHIPPED_HOLD in shipped, "the shipped policy's hold changed: update SHIPPED_HOLD"
        path = self.root / "test-policy.toml"
        path.write_text(shipped.replace(SHIPPED_HOLD, f"payout_hold_days = {self.hold_days} "))
        return ["--policy", str(path)]

    def stop(self, timeout: float = 30.0) -> None:
        """A graceful stop (SIGTERM): the relay drains and seals its file.

        Kills the server and raises `ServerFailed` if it is still running after `timeout` s.
        """
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerFailed(
                    f"the runtime did not stop within {timeout:g}s of SIGTERM; {self.log}"
                ) from None
        self._join_copier()

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._join_copier()

    def _join_copier(self) -> None:
        """Once the server is gone, its last output is in the log."""
        if (
            self._copier is not None
            and self.process is not None
            and self.process.poll() is not None
        ):
            self._copier.join(timeout=10)


def _copy_stdout(stdout: IO[bytes], log: Path, first: queue.Queue[bytes | None]) -> None:
    """Hands the first line to `start`, and appends every line to the log until EOF.

    Reading to the end also keeps the pipe from filling up and blocking the server.
    """
    told = False
    with open(log, "ab") as out:
        for line in stdout:
            out.write(line)
            out.flush()
            if not told:
                first.put(line)
                told = True
    stdout.close()
    if not told:
        first.put(None)  # the server exited without a line


class Api:
    """A small client: accounts with tokens, and requests made as them."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def account(self, kind: str) -> dict:
        """A new account, with its `login` and `password` beside what the server answered."""
        credentials = new_credentials(kind)
        response = self.http.post("/v1/accounts", json={"kind": kind, **credentials})
        assert response.status_code == 201, response.text
        return {**response.json(), **credentials}

    def call(
        self, method: str, path: str, who: dict | None = None, key: str | None = None, **kw
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if who is not None:
            headers["Authorization"] = f"Bearer {who['token']}"
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.http.request(method, path, headers=headers, **kw)

    def pay(self, pending: dict, action: str = "confirm") -> httpx.Response:
        """What a payer does at the sandbox provider with a pending payment's client secret:
        `confirm` (or `decline`, `refund`, `dispute`); it answers once the runtime has applied
        the provider's signed notification."""
        return self.http.post(
            f"/sandbox/v1/payment_intents/{pending['payment_id']}/{action}",
            json={"client_secret": pending["client_secret"]},
        )

    def buy(self, user: dict, coins: int, channel: str = "web", key: str | None = None) -> dict:
        """A coin purchase, paid: asked for (a pending payment), then confirmed."""
        pending = self.call(
            "POST", "/v1/wallet/purchases", user, key or f"buy-{uuid.uuid4().hex}",
            json={"coins": coins, "channel": channel},
        )  # fmt: skip
        assert pending.status_code == 202, pending.text
        paid = self.pay(pending.json())
        assert paid.status_code == 200 and paid.json()["notification"]["outcome"] == "applied", (
            paid.text
        )
        return pending.json()


def signed(event: dict, secret: str, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A payment notification as the provider sends it: Stripe's HMAC-SHA256 of "<t>.<body>"
    under `secret`, computed here rather than with the code under test."""
    body = json.dumps(event).encode()
    t = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={digest}", "content-type": "application/json"}


def new_credentials(kind: str) -> dict[str, str]:
    """A login no other account has, and a password of the allowed length (12 to 128)."""
    return {"login": f"{kind}-{uuid.uuid4().hex[:20]}", "password": uuid.uuid4().hex}


def unrelayed(db: Path) -> int:
    """Committed telemetry events the relay has not yet written to a file."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE relayed = 0").fetchone()[0]


def events_so_far(server: RuntimeProcess, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every event of a running server's files, once the relay has caught up with the ledger.

    Reads the whole lines of `open/` and `sealed/`; a file the relay seals meanwhile (same
    name, moved from one to the other) is read once, from where it is when read.
    """
    wait_for(lambda: unrelayed(server.db) == 0, "the relay to write every event", timeout)
    for _ in range(100):
        found: dict[str, Path] = {}
        for folder in ("open", "sealed"):  # sealed last: a file in both is read from sealed/
            directory = server.telemetry / folder
            if directory.is_dir():
                found.update((p.name, p) for p in directory.iterdir())
        try:
            data = [found[name].read_bytes() for name in sorted(found)]
        except FileNotFoundError:
            continue  # sealed between the listing and the read: list again
        lines = [line for raw in data for line in raw[: raw.rfind(b"\n") + 1].splitlines()]
        return [json.loads(line) for line in lines]
    raise AssertionError(f"the files under {server.telemetry} kept moving while being read")
