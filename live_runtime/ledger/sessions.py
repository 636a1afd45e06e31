"""Live sessions: start, co-hosts, split weights, media metering and the end of a live."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from live_runtime.ledger.books import Refused, Result, Tx, new_id
from live_runtime.policy import Policy
from telemetry.events import TIME_FORMAT


def owned_session(tx: Tx, session_id: str, creator_id: str, live: bool = True) -> tuple:
    row = tx.one("SELECT owner_id, status FROM sessions WHERE id = ?", (session_id,))
    if row is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    if row[0] != creator_id:
        raise Refused(403, "forbidden", f"session {session_id} belongs to another creator")
    if live and row[1] != "live":
        raise Refused(409, "session_closed", f"session {session_id} has ended")
    return row


def hosts_present(tx: Tx, session_id: str) -> list[str]:
    rows = tx.conn.execute(
        "SELECT creator_id FROM session_hosts WHERE session_id = ? AND present = 1 "
        "ORDER BY position",
        (session_id,),
    )
    return [r[0] for r in rows]


def start_session(
    tx: Tx, policy: Policy, creator_id: str, region: str, quality: str, record: bool
) -> Result:
    if quality not in policy.qualities:
        raise Refused(422, "invalid", f"quality must be one of {sorted(policy.qualities)}")
    session_id = new_id("s")
    tx.conn.execute(
        "INSERT INTO sessions (id, owner_id, region, quality, record, status, started_at, "
        "metered_from, advanced_at) VALUES (?, ?, ?, ?, ?, 'live', ?, ?, ?)",
        (session_id, creator_id, region, quality, int(record), tx.occurred_at, tx.epoch, tx.epoch),
    )
    tx.conn.execute(
        "INSERT INTO session_hosts (session_id, creator_id, present, weight, position) "
        "VALUES (?, ?, 1, 1, 0)",
        (session_id, creator_id),
    )
    tx.emit(
        "session_started",
        session_id=session_id,
        creator_ids=[creator_id],
        region=region,
        quality=quality,
    )
    return 201, session_view(tx, session_id)


def session_view(tx: Tx, session_id: str) -> dict[str, Any]:
    row = tx.one(
        "SELECT owner_id, region, quality, record, status, started_at, ended_at, "
        "pinned_product_id FROM sessions WHERE id = ?",
        (session_id,),
    )
    if row is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    hosts = tx.conn.execute(
        "SELECT creator_id, present, weight FROM session_hosts WHERE session_id = ? "
        "ORDER BY position",
        (session_id,),
    ).fetchall()
    owner, region, quality, record, status, started_at, ended_at, pinned = row
    return {
        "session_id": session_id,
        "owner_id": owner,
        "region": region,
        "quality": quality,
        "record": bool(record),
        "status": status,
        "started_at": started_at,
        "ended_at": ended_at,
        "pinned_product_id": pinned,
        "hosts": [{"creator_id": c, "present": bool(p), "weight": w} for c, p, w in hosts],
        "split": split_id([(c, w) for c, _, w in hosts]),
    }


def split_id(weights: list[tuple[str, int]]) -> str:
    """Names a split (the hosts and their weights): a co-host joins by accepting this name, so
    a split changed after they looked is not the one they agree to."""
    text = ";".join(f"{creator}={weight}" for creator, weight in weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def get_session(tx: Tx, session_id: str) -> Result:
    return 200, session_view(tx, session_id)


def invite_cohost(
    tx: Tx, policy: Policy, owner_id: str, session_id: str, creator_id: str, weight: int
) -> Result:
    """Invites a co-host at `weight`; the answer (and the session) shows the split they would
    join, with the policy's floor for every present host."""
    owned_session(tx, session_id, owner_id)
    kind = tx.one("SELECT kind FROM principals WHERE id = ?", (creator_id,))
    if kind is None or kind[0] != "creator":
        raise Refused(422, "unknown_creator", f"no creator {creator_id}")  # a body's id
    (position,) = tx.one("SELECT count(*) FROM session_hosts WHERE session_id = ?", (session_id,))
    if position >= policy.max_hosts:
        raise Refused(409, "too_many_hosts", f"a session has at most {policy.max_hosts} hosts")
    tx.conn.execute(
        "INSERT INTO session_hosts (session_id, creator_id, present, weight, position) "
        "VALUES (?, ?, 0, ?, ?) ON CONFLICT (session_id, creator_id) DO NOTHING",
        (session_id, creator_id, weight, position),
    )
    _push_split(tx, session_id)
    return 201, session_view(tx, session_id) | {"host_floor_bps": policy.host_floor_bps}


def _host_row(tx: Tx, session_id: str, creator_id: str) -> tuple:
    session = tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,))
    if session is None:
        raise Refused(404, "not_found", f"no session {session_id}")
    host = tx.one(
        "SELECT present, position FROM session_hosts WHERE session_id = ? AND creator_id = ?",
        (session_id, creator_id),
    )
    if host is None:
        raise Refused(403, "forbidden", f"{creator_id} is not invited to session {session_id}")
    if session[0] != "live":
        raise Refused(409, "session_closed", f"session {session_id} has ended")
    return host


def advance_hosts(tx: Tx, policy: Policy, session_id: str) -> None:
    """Counts host and relay seconds up to now, before the set of hosts changes."""
    (advanced_at,) = tx.one("SELECT advanced_at FROM sessions WHERE id = ?", (session_id,))
    hosts = len(hosts_present(tx, session_id))
    elapsed = max(0.0, tx.epoch - advanced_at)
    relayed = hosts * elapsed if hosts >= policy.relay_when_hosts_at_least else 0.0
    tx.conn.execute(
        "UPDATE sessions SET advanced_at = ?, publisher_pending = publisher_pending + ?, "
        "relay_pending = relay_pending + ? WHERE id = ?",
        (tx.epoch, hosts * elapsed, relayed, session_id),
    )


def _set_presence(tx: Tx, policy: Policy, session_id: str, creator_id: str, present: int):
    advance_hosts(tx, policy, session_id)
    tx.conn.execute(
        "UPDATE session_hosts SET present = ? WHERE session_id = ? AND creator_id = ?",
        (present, session_id, creator_id),
    )
    tx.emit("host_joined" if present else "host_left", session_id=session_id, creator_id=creator_id)
    tx.push(session_id, {"type": "hosts", "creator_ids": hosts_present(tx, session_id)})


def join_session(
    tx: Tx, policy: Policy, creator_id: str, session_id: str, accept_split: str | None = None
) -> Result:
    """A host goes live. A co-host names the split they accept (`split` of the session view):
    a split changed since they looked is refused with the current one."""
    present, position = _host_row(tx, session_id, creator_id)
    if present:
        raise Refused(409, "already_present", f"{creator_id} is already live in {session_id}")
    current = session_view(tx, session_id)
    if position != 0 and accept_split != current["split"]:
        raise Refused(
            409,
            "split_not_accepted",
            f"join by accepting the session's split {current['split']}: "
            + ", ".join(f"{h['creator_id']} weight {h['weight']}" for h in current["hosts"]),
        )
    _set_presence(tx, policy, session_id, creator_id, 1)
    return 200, session_view(tx, session_id)


def leave_session(tx: Tx, policy: Policy, creator_id: str, session_id: str) -> Result:
    present, position = _host_row(tx, session_id, creator_id)
    if position == 0:
        raise Refused(409, "owner_cannot_leave", "the owner ends the session instead of leaving")
    if not present:
        raise Refused(409, "not_present", f"{creator_id} is not live in {session_id}")
    _set_presence(tx, policy, session_id, creator_id, 0)
    return 200, session_view(tx, session_id)


def set_split(tx: Tx, owner_id: str, session_id: str, weights: dict[str, int]) -> Result:
    owned_session(tx, session_id, owner_id)
    hosts = {
        r[0]
        for r in tx.conn.execute(
            "SELECT creator_id FROM session_hosts WHERE session_id = ?", (session_id,)
        )
    }
    if set(weights) != hosts:
        raise Refused(422, "invalid", f"weights must name exactly the hosts {sorted(hosts)}")
    tx.conn.executemany(
        "UPDATE session_hosts SET weight = ? WHERE session_id = ? AND creator_id = ?",
        [(w, session_id, c) for c, w in weights.items()],
    )
    _push_split(tx, session_id)  # it applies to the gifts after this one commits
    return 200, session_view(tx, session_id)


def _push_split(tx: Tx, session_id: str) -> None:
    """Tells everyone watching the session, hosts included, the split now in force."""
    view = session_view(tx, session_id)
    tx.push(session_id, {"type": "split", "split": view["split"], "hosts": view["hosts"]})


def meter_session(tx: Tx, policy: Policy, session_id: str, viewer_seconds: float) -> Result:
    """Emits the session's `media_usage` since the last report and starts a new interval."""
    if tx.one("SELECT status FROM sessions WHERE id = ?", (session_id,)) != ("live",):
        return 200, {"metered": False}
    advance_hosts(tx, policy, session_id)
    metered_from, publisher, relay, quality, record = tx.one(
        "SELECT metered_from, publisher_pending, relay_pending, quality, record "
        "FROM sessions WHERE id = ?",
        (session_id,),
    )
    seconds = max(0.0, tx.epoch - metered_from)
    viewer_seconds = round(viewer_seconds, 3)  # bytes follow the seconds as reported
    ladder = policy.qualities[quality]
    byte_rate = ladder.bitrate_bps // 8
    tx.emit(
        "media_usage",
        session_id=session_id,
        interval_start=_time(metered_from),
        interval_end=tx.occurred_at,
        publisher_seconds=round(publisher, 3),
        viewer_seconds=viewer_seconds,
        transcode_seconds=round(seconds * ladder.renditions, 3),
        relay_seconds=round(relay, 3),
        egress_bytes=round(viewer_seconds * byte_rate),
        recording_bytes=round(seconds * byte_rate) if record else 0,
    )
    tx.conn.execute(
        "UPDATE sessions SET metered_from = ?, publisher_pending = 0, relay_pending = 0 "
        "WHERE id = ?",
        (tx.epoch, session_id),
    )
    return 200, {"metered": True}


def end_session(
    tx: Tx,
    policy: Policy,
    creator_id: str | None,
    session_id: str,
    viewer_seconds: float,
    reason: str = "host_ended",
    meter: bool = True,
) -> Result:
    """Ends a live: a last usage report, then `session_ended`. No creator: the runtime ends it.

    After a crash the runtime ends what was left live with `meter=False`: when the usage
    stopped is unknown, so the seconds since the last report are not billed.
    """
    if creator_id is not None:
        owned_session(tx, session_id, creator_id)
    if meter:
        meter_session(tx, policy, session_id, viewer_seconds)
    tx.conn.execute(
        "UPDATE sessions SET status = 'ended', ended_at = ? WHERE id = ?",
        (tx.occurred_at, session_id),
    )
    tx.conn.execute("UPDATE session_hosts SET present = 0 WHERE session_id = ?", (session_id,))
    tx.emit("session_ended", session_id=session_id, reason=reason)
    tx.push(session_id, {"type": "ended", "reason": reason})
    return 200, session_view(tx, session_id)


def viewer_event(tx: Tx, event_type: str, session_id: str, user_id: str) -> Result:
    tx.emit(event_type, session_id=session_id, user_id=user_id)
    return 200, {}


def live_sessions(tx: Tx) -> list[str]:
    return [r[0] for r in tx.conn.execute("SELECT id FROM sessions WHERE status = 'live'")]


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(TIME_FORMAT)
