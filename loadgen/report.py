"""What a load run measured: latencies and statuses per kind of request, and the printed table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# A purchase or an order asks for a pending payment; `payment` is the payer confirming it at
# the sandbox provider (which answers once the runtime has applied the notification).
KINDS = ("gift", "purchase", "order", "payment", "other")


@dataclass
class KindStats:
    """Latencies (seconds) and statuses of one kind of request."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def add(self, status: int | str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] += 1


@dataclass
class KindReport:
    kind: str
    requests: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    refused: int  # expected business refusals (402 insufficient balance)
    unexpected: int

    @classmethod
    def of(cls, kind: str, stats: KindStats, seconds: float, refused: int, unexpected: int):
        ordered = sorted(stats.latencies)

        def pct(q: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

        return cls(
            kind,
            len(ordered),
            len(ordered) / seconds if seconds > 0 else 0.0,
            pct(0.50),
            pct(0.95),
            pct(0.99),
            ordered[-1] * 1000 if ordered else 0.0,
            refused,
            unexpected,
        )


@dataclass
class LoadReport:
    """What one load run measured; `ok` is False on any outcome the server should not give."""

    url: str
    users: int
    creators: int
    sessions: int
    seconds: float  # the closed-loop window, start to the last user's last answer
    kinds: dict[str, KindReport]
    unexpected: dict[str, int]  # label (status, transport error, check) -> count
    refused: dict[str, int]  # expected refusals by label
    ws_messages: int
    ws_connections: int
    replays: int
    setup_requests: int
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected

    @property
    def gifts_per_second(self) -> float:
        return self.kinds["gift"].per_second

    @property
    def total(self) -> KindReport:
        return self.kinds["all"]

    def table(self) -> str:
        head = (
            f"runtime load: {self.users} users, {self.creators} creators, {self.sessions} live "
            f"sessions, {self.seconds:.1f}s closed loop against {self.url}"
        )
        columns = ("kind", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms")
        columns += ("402s", "unexpected")
        rows = [columns]
        for r in self.kinds.values():
            rows.append(
                (
                    r.kind,
                    f"{r.requests:,}",
                    f"{r.per_second:,.1f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p95_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.max_ms:.1f}",
                    f"{r.refused:,}",
                    f"{r.unexpected:,}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines = [head, ""]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells))
        rate = self.ws_messages / self.seconds if self.seconds > 0 else 0.0
        lines += [
            "",
            f"WebSocket messages received: {self.ws_messages:,} ({rate:,.0f}/s) on "
            f"{self.ws_connections} viewer connections",
            f"idempotent retries checked: {self.replays:,}",
            f"setup and teardown requests: {self.setup_requests:,}",
            f"expected refusals: {_labels(self.refused)}",
            f"unexpected: {_labels(self.unexpected)}",
            *self.notes,
            f"result: {'OK' if self.ok else 'FAILED'}",
        ]
        return "\n".join(lines)


def _labels(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "none"


class Recorder:
    """Collects every answer; the closed-loop window and setup/teardown are kept apart."""

    def __init__(self) -> None:
        self.kinds = {k: KindStats() for k in KINDS}
        self.setup = KindStats()
        self.in_window = False
        self.refused: Counter = Counter()
        self.unexpected: Counter = Counter()
        self.refused_by_kind: Counter = Counter()
        self.unexpected_by_kind: Counter = Counter()
        self.replays = 0
        self.examples: dict[str, str] = {}
        self.last_problem = ""

    def answer(self, kind: str, status: int | str, seconds: float) -> None:
        (self.kinds[kind] if self.in_window else self.setup).add(status, seconds)

    def refusal(self, kind: str, label: str) -> None:
        self.refused[label] += 1
        self.refused_by_kind[kind] += 1

    def problem(self, kind: str, label: str, detail: str = "") -> None:
        self.unexpected[label] += 1
        self.unexpected_by_kind[kind] += 1
        self.last_problem = f"{label}: {detail}" if detail else label
        if detail and label not in self.examples:
            self.examples[label] = detail[:200]
