"""Start the dashboards on a marts folder: what `creator-econ dashboard --marts DIR` runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from creator_econ.settings import ENV

APP = Path(__file__).with_name("app.py")


def command(port: int | None = None, host: str | None = None) -> list[str]:
    """The `streamlit run` command line, with the port and address only when asked for."""
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        # No usage statistics leave the machine, and readers get no deploy menu.
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    if port is not None:
        argv += ["--server.port", str(port)]
    if host is not None:
        argv += ["--server.address", host]
    return argv


def run(marts_dir: Path, port: int | None = None, host: str | None = None) -> NoReturn:
    """Replace this process with the Streamlit server, so signals (Ctrl-C, a service manager's
    stop) reach the server itself and no orphan is left behind.

    The marts folder is passed as an absolute path, so the app reads the same folder whatever
    its working directory.
    """
    env = {**os.environ, ENV["marts_dir"]: str(Path(marts_dir).resolve())}
    argv = command(port, host)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
