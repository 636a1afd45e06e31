"""What a long run shows while it works.

On a terminal each phase is one line that updates in place (rich): the files and events loaded
with their rate and time left, then the weeks recomputed, then the checks. Elsewhere (a log,
CI, a pipe) the same facts come as plain lines, one per step. The pipeline reports through
`current()`, which is silent unless the command line installed a reporter with `reporting()`;
Dagster's own log is the `--verbose` view.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO


class Reporter(Protocol):
    def phase(self, name: str, total: float | None = None) -> None:
        """A new phase; `total` units of work when known (bytes, weeks), else a spinner."""

    def advance(self, done: float, status: str) -> None:
        """Work done so far in the phase, and what it means in words."""

    def status(self, text: str) -> None:
        """The step the phase is at: shown until the next one."""

    def say(self, text: str) -> None:
        """A line worth keeping in the output: a phase's result, a decision, a warning."""


class Quiet:
    """Reports nothing: the default, and `--verbose` runs, where Dagster's log says it all."""

    def phase(self, name: str, total: float | None = None) -> None:
        pass

    def advance(self, done: float, status: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def say(self, text: str) -> None:
        pass


class Lines:
    """Plain lines, one per step and per result, for output that is not a terminal."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def phase(self, name: str, total: float | None = None) -> None:
        pass

    def advance(self, done: float, status: str) -> None:
        pass  # every step already printed its own line

    def status(self, text: str) -> None:
        self.say(text)

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class Bars:
    """One line per phase on a terminal: a bar with the work done, its rate and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[phase]:<8}"),
            BarColumn(bar_width=24),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left  {task.description}"),
            console=Console(stderr=False),
            transient=False,
        )
        self.task = None
        self.started = time.monotonic()

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        self.progress.stop()

    def phase(self, name: str, total: float | None = None) -> None:
        self._close()
        self.task = self.progress.add_task("", total=total, phase=name)

    def advance(self, done: float, status: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, description=status)

    def status(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=text)

    def say(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def _close(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(
                self.task, total=task.completed or 1, completed=task.completed or 1
            )
            self.task = None


_current: Reporter = Quiet()


def current() -> Reporter:
    return _current


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Installs `reporter` for the pipeline for the duration of a command."""
    global _current
    previous, _current = _current, reporter
    try:
        if isinstance(reporter, Bars):
            with reporter:
                yield reporter
        else:
            yield reporter
    finally:
        _current = previous


def for_output(verbose: bool, stream: TextIO = sys.stdout) -> Reporter:
    """Bars on a terminal, lines elsewhere, nothing when Dagster's log is shown instead."""
    if verbose:
        return Quiet()
    return Bars() if stream.isatty() else Lines(stream)
