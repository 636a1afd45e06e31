"""The docs stand on their own and match the code.

- Every relative link in README.md, docs/*.md and bench/README.md resolves to a file or folder
  of the repository, and every `#anchor` names a heading of its target (GitHub's slugs).
- Nothing in the repository points at a contract kept outside it.
- docs/telemetry.md documents every event type and field of the event model, read from
  `telemetry.events` (the doc is checked against the code), and docs/metrics.md every column of
  every mart the real pipeline publishes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest

from telemetry.events import CURRENCIES, ENVELOPE, EVENT_FIELDS, SCHEMA_VERSION, Field

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINKED_DOCS = sorted([ROOT / "README.md", *DOCS.glob("*.md"), ROOT / "bench" / "README.md"])
TELEMETRY_DOC = DOCS / "telemetry.md"
METRICS_DOC = DOCS / "metrics.md"

# Folders that are not the repository's own text (see .gitignore).
SKIPPED_DIRS = {
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".dagster_home",
    "build",
    "node_modules",
}
SKIPPED_TOP_DIRS = {"data"}
SKIPPED_PATHS = {ROOT / "bench" / "out"}

# --- markdown reading ---------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]*)>?(?:\s+[\"'(].*?[\"')])?\s*\)"
)
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*?\s)?(?:id|name)=[\"']([^\"']+)[\"']", re.I)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if match := _FENCE.match(line):
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def headings(text: str) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside code blocks."""
    found = []
    for _, line in prose_lines(text):
        if match := _HEADING.match(line):
            found.append((len(match.group(1)), match.group(2)))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text lowercased, punctuation other than
    hyphens and underscores removed, each space turned into a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text)  # so does inline HTML
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a markdown file: heading slugs (a repeated slug gets -1, -2, ... as on
    GitHub) and explicit HTML anchors."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set()
    for _, heading in headings(text):
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            found.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            found.add(slug)
    found |= {m.group(1) for m in _HTML_ANCHOR.finditer(text)}
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline and reference link outside code."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        if match := _REFERENCE_LINK.match(line):
            found.append((number, match.group(1)))
            continue
        # Code spans are not links, but a link's text may be code: blank the code's content.
        line = _INLINE_CODE.sub(lambda m: m.group(1) + "x" * len(m.group(2)) + m.group(1), line)
        found += [(number, m.group(1)) for m in _INLINE_LINK.finditer(line)]
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


def section(text: str, title: str) -> str:
    """The text under the heading `title` (exactly), up to the next heading of its level or
    higher; fails when there is not exactly one such heading."""
    lines = text.splitlines()
    numbered = [
        (number, len(m.group(1)), m.group(2))
        for number, line in prose_lines(text)
        if (m := _HEADING.match(line))
    ]
    matches = [(n, level) for n, level, heading in numbered if heading == title]
    assert len(matches) == 1, f"expected one heading {title!r}, found {len(matches)}"
    start, level = matches[0]
    end = next((n for n, lv, _ in numbered if n > start and lv <= level), len(lines) + 1)
    return "\n".join(lines[start : end - 1])


def table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row (header and separator rows excluded)."""
    rows = []
    for _, line in prose_lines(text):
        stripped = line.strip()
        if not stripped.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|?", stripped):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", stripped.strip("|"))]
        rows.append(cells)
    return rows


def first_column_names(text: str) -> list[str]:
    """The backticked names in the first cell of each table row (`name` or `name` (note))."""
    names = []
    for cells in table_rows(text):
        if match := re.match(r"^`([A-Za-z0-9_.]+)`", cells[0]):
            names.append(match.group(1))
    return names


# --- (a) links resolve ---------------------------------------------------------------------------


def test_the_linked_docs_exist():
    for path in LINKED_DOCS:
        assert path.is_file(), path
    assert TELEMETRY_DOC in LINKED_DOCS and METRICS_DOC in LINKED_DOCS


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for number, target in links(doc):
        if is_external(target):
            continue
        where = f"{doc.relative_to(ROOT)}:{number}: {target}"
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        resolved = (doc.parent / path_part).resolve() if path_part else doc
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{where} (points outside the repository)")
            continue
        if not resolved.exists():
            broken.append(f"{where} (no such file or folder)")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            broken.append(f"{where} (no heading with anchor #{anchor} in {resolved.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_slugs_follow_github():
    assert github_slug("Cost model file") == "cost-model-file"
    assert github_slug("What is quarantined, and why") == "what-is-quarantined-and-why"
    assert github_slug("`cost_per_live_minute`") == "cost_per_live_minute"
    assert github_slug("`sessions` and `sessions_with_earnings`") == (
        "sessions-and-sessions_with_earnings"
    )
    assert github_slug("Money: minor units (v1)") == "money-minor-units-v1"
    assert github_slug("[Link](x.md) text") == "link-text"


# --- (b) no contract outside the repository ----------------------------------------------------

# Built so that this file does not match itself.
_OUTSIDE = re.compile(
    r"\.\./shared\b|\bshared[/][A-Za-z0-9_.*-]+\.md|/work/share[d]\b|\b(?:TELEMETRY|METRICS)\.md\b"
)


def repository_files(suffixes: tuple[str, ...]) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not (here == ROOT and d in SKIPPED_TOP_DIRS)
            and here / d not in SKIPPED_PATHS
        ]
        found += [here / f for f in files if f.endswith(suffixes)]
    return sorted(found)


def test_nothing_refers_to_a_contract_outside_the_repository():
    files = repository_files((".md", ".py", ".toml"))
    assert ROOT / "README.md" in files and Path(__file__).resolve() in files
    offending = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not offending, "references to files outside the repository:\n" + "\n".join(offending)


def test_the_outside_pattern_catches_what_it_should():
    folder, contract = "shared", "METRICS" + ".md"  # spelled in pieces: this file is scanned too
    for bad in (f"[x](../{folder}/{contract})", f"see {folder}/{contract}", f"../{folder}/x"):
        assert _OUTSIDE.search(bad), bad
    for good in ("docs/metrics.md", "a shared folder", "telemetry.md#money"):
        assert not _OUTSIDE.search(good), good


# --- (c) the contract pages against the code -----------------------------------------------------


def _telemetry_text() -> str:
    return TELEMETRY_DOC.read_text(encoding="utf-8")


def _check_field_rows(text: str, fields: tuple[Field, ...], where: str) -> None:
    """The section's field table lists exactly these fields, in the model's order (the order
    ingest checks them in), each with its kind and, for a closed vocabulary, every allowed
    value."""
    rows = {
        m.group(1): cells
        for cells in table_rows(text)
        if (m := re.match(r"^`([A-Za-z0-9_]+)`", cells[0]))
    }
    assert list(rows) == [f.name for f in fields], (
        f"{where}: the table lists {list(rows)}, the model has {[f.name for f in fields]}"
    )
    for f in fields:
        cells = rows[f.name]
        assert len(cells) >= 3, f"{where}: row of {f.name} needs a kind and a meaning"
        assert f"`{f.kind}`" in cells[1], f"{where}: {f.name} is of kind `{f.kind}`, not {cells[1]}"
        for value in sorted(f.allowed or ()):
            assert f"`{value}`" in " | ".join(cells), f"{where}: {f.name} allows `{value}`"


def test_telemetry_doc_names_the_envelope():
    text = section(_telemetry_text(), "Envelope")
    _check_field_rows(text, ENVELOPE, "Envelope")
    assert f"`{SCHEMA_VERSION}`" in text


@pytest.mark.parametrize("event_type", list(EVENT_FIELDS))
def test_telemetry_doc_names_every_field_of_every_event_type(event_type: str):
    text = section(_telemetry_text(), f"`{event_type}`")
    _check_field_rows(text, EVENT_FIELDS[event_type], event_type)


def test_telemetry_doc_lists_exactly_the_event_types():
    text = _telemetry_text()
    documented = [
        m.group(1)
        for level, heading in headings(text)
        if level == 3 and (m := re.fullmatch(r"`([a-z_]+)`", heading))
    ]
    assert documented == list(EVENT_FIELDS), "one ### `type` heading per event type, in order"
    overview = first_column_names(section(text, "Event types"))
    assert set(EVENT_FIELDS) <= set(overview), "the overview table lists every event type"


def test_telemetry_doc_lists_every_field_kind_and_currency():
    text = _telemetry_text()
    kinds = {f.kind for fields in [ENVELOPE, *EVENT_FIELDS.values()] for f in fields}
    assert kinds <= set(first_column_names(section(text, "Field kinds")))
    money = section(text, "Money")
    missing = sorted(c for c in CURRENCIES if not re.search(rf"\b{c}\b", money))
    assert not missing, f"currencies of telemetry/events.py not in the Money section: {missing}"


@pytest.fixture(scope="module")
def mart_schemas(published_marts: Path) -> dict[str, list[str]]:
    """The columns of every mart the real pipeline published (one small simulation)."""
    return {
        path.stem: pq.read_schema(path).names for path in sorted(published_marts.glob("*.parquet"))
    }


def test_metrics_doc_names_every_published_mart_and_column(mart_schemas):
    text = METRICS_DOC.read_text(encoding="utf-8")
    published = section(text, "Published marts")
    documented = [
        m.group(1)
        for level, heading in headings(published)
        if (m := re.fullmatch(r"`(\w+)`", heading))
    ]
    assert sorted(documented) == sorted(mart_schemas), "one heading per published mart"
    for mart, columns in mart_schemas.items():
        listed = first_column_names(section(published, f"`{mart}`"))
        assert f"`{mart}.parquet`" in section(published, f"`{mart}`")
        assert set(listed) == set(columns), (
            f"{mart}: the doc lists {sorted(set(listed) - set(columns))} that are not published "
            f"and misses {sorted(set(columns) - set(listed))}"
        )
