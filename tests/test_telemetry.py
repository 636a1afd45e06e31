"""Telemetry files: appended in open/, sealed atomically with increasing sequence numbers."""

from __future__ import annotations

import pytest

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
