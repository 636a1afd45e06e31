"""Telemetry files: appended in open/, sealed atomically (by size or by age) with increasing
sequence numbers."""

from __future__ import annotations

import time

import pytest

import telemetry.files
from telemetry.files import TelemetryWriter, list_sealed, parse_sealed_name


def test_seals_by_size_without_splitting_lines(tmp_path):
    with TelemetryWriter(tmp_path, "rt-1", max_bytes=10) as writer:
        writer.write_lines([b"aaaa\n", b"bbbb\n", b"cccc\n"])
        assert list(writer.root.joinpath("open").iterdir())  # the last file is still open
    names = [p.name for p in list_sealed(tmp_path)]
    assert names == ["rt-1-000000000001.jsonl", "rt-1-000000000002.jsonl"]
    assert [p.read_bytes() for p in list_sealed(tmp_path)] == [b"aaaa\nbbbb\n", b"cccc\n"]
    assert not list((tmp_path / "open").iterdir())


def test_a_new_writer_continues_the_sequence(tmp_path):
    with TelemetryWriter(tmp_path, "rt") as writer:
        writer.write(b"x\n")
    with TelemetryWriter(tmp_path, "rt") as writer:
        writer.write(b"y\n")
    assert [parse_sealed_name(p.name) for p in list_sealed(tmp_path)] == [("rt", 1), ("rt", 2)]


def test_rejects_partial_lines_and_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="whole lines"):
        TelemetryWriter(tmp_path, "rt").write(b"no newline")
    with pytest.raises(ValueError, match="source"):
        TelemetryWriter(tmp_path, "bad/source")


class Clock:
    """A monotonic clock the test moves by hand, in place of `time` in telemetry.files."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(telemetry.files, "time", fake)
    return fake


def open_files(root) -> list[str]:
    return sorted(p.name for p in (root / "open").iterdir())


def test_seal_if_due_seals_a_file_older_than_the_age_limit(tmp_path, clock):
    writer = TelemetryWriter(tmp_path, "rt", max_age_seconds=10)
    assert writer.seal_if_due() is None  # no open file: nothing to seal
    writer.write(b"a\n")
    clock.now += 6
    writer.write(b"b\n")  # a write does not make the file younger
    clock.now += 4  # exactly 10 s old: not older than the limit yet
    assert writer.seal_if_due() is None
    assert list_sealed(tmp_path) == []
    assert open_files(tmp_path) == ["rt-000000000001.jsonl"]
    clock.now += 0.5
    sealed = writer.seal_if_due()
    assert sealed == tmp_path / "sealed" / "rt-000000000001.jsonl"
    assert list_sealed(tmp_path) == [sealed]
    assert sealed.read_bytes() == b"a\nb\n"
    assert open_files(tmp_path) == []
    clock.now += 100
    assert writer.seal_if_due() is None  # nothing open, nothing more sealed
    assert list_sealed(tmp_path) == [sealed]


def test_a_write_after_the_age_limit_seals_the_old_file_first(tmp_path, clock):
    with TelemetryWriter(tmp_path, "rt", max_age_seconds=10) as writer:
        writer.write(b"a\n")
        clock.now += 11
        writer.write(b"b\n")
        # The old file is sealed with only the line written before the limit; the new line
        # starts the next file, which is open and of age 0.
        assert [p.name for p in list_sealed(tmp_path)] == ["rt-000000000001.jsonl"]
        assert list_sealed(tmp_path)[0].read_bytes() == b"a\n"
        assert open_files(tmp_path) == ["rt-000000000002.jsonl"]
        clock.now += 10
        assert writer.seal_if_due() is None
        clock.now += 1
        assert writer.seal_if_due() == tmp_path / "sealed" / "rt-000000000002.jsonl"
    assert [p.read_bytes() for p in list_sealed(tmp_path)] == [b"a\n", b"b\n"]


def test_a_file_is_sealed_by_age_on_the_real_clock(tmp_path):
    """No fake clock: wait, with a deadline, until the writer finds its file due."""
    writer = TelemetryWriter(tmp_path, "rt", max_age_seconds=0.05)
    writer.write(b"a\n")
    deadline = time.monotonic() + 10
    sealed = None
    while sealed is None and time.monotonic() < deadline:
        sealed = writer.seal_if_due()
    assert sealed == tmp_path / "sealed" / "rt-000000000001.jsonl"
    assert sealed.read_bytes() == b"a\n"
    assert open_files(tmp_path) == []
