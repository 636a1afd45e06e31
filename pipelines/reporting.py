"""Progress from inside Dagster steps: each line goes to Dagster's log and to the progress
display of the command that runs the pipeline (creator_econ/progress.py), if any."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from creator_econ import progress


def step_log(context: dg.OpExecutionContext) -> Callable[[str], None]:
    """Where a step's progress lines go: shown until the next one."""

    def log(text: str) -> None:
        context.log.info(text)
        progress.current().status(text)

    return log


def result(context: dg.OpExecutionContext, text: str, warning: bool = False) -> None:
    """A step's outcome: kept in the output."""
    (context.log.warning if warning else context.log.info)(text)
    progress.current().say(("warning: " if warning else "") + text)


def phase(name: str, total: float | None = None) -> None:
    progress.current().phase(name, total)


def advance(done: float, status: str) -> None:
    progress.current().advance(done, status)
