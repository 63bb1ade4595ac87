"""Where a reader starts: pure decisions from the cursor, the message record and the stream.

Exact or explicit: either the entries after the cursor are all still there and are delivered
as they are, or the reader first gets a ``reset`` event saying why and from where it restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import cursor as cur
from shared.events import Reset
from shared.stores.messages import Record


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[int, int]  # deliver stream entries strictly after this
    reset: Reset | None = None
    # The stream is gone but the record kept the outcome: deliver these and stop.
    from_record: list[tuple[bytes, bytes, bytes]] | None = None


def plan(after: tuple[int, int] | None, record: Record, info: dict[str, Any] | None) -> Plan:
    start = after or cur.START
    if info is None or info["length"] == 0:
        if record.last_id is None:
            if start > cur.START:
                # Nothing was ever appended, yet the reader holds a cursor: it is ahead of the
                # stream (a failover lost it all, or a cursor from elsewhere). Every entry to
                # come would be at or below it and dropped: start over from the first instead.
                return Plan(cur.START, _reset("cursor_ahead", record, "0-0"))
            return Plan(start)  # nothing appended yet: wait for the first entry
        if record.ended:
            return Plan(cur.START, _reset("stream_expired", record, "0-0"), _outcome(start, record))
        return Plan(cur.START, _reset("stream_lost", record, "0-0"))
    last = cur.parse(info["last"])
    recorded_last = cur.parse(record.last_id) if record.last_id else last
    if start > max(last, recorded_last):
        # The reader saw entries this stream no longer has (a failover lost its tail).
        return Plan(cur.START, _reset("cursor_ahead", record, "0-0"))
    if record.terminal_id and start >= cur.parse(record.terminal_id):
        return Plan(start, None, [])  # the reader already has the terminal event: nothing to wait for
    first = cur.parse(info["first"])
    # Compaction removes the folded tokens on purpose (reads announce it); only a shorter
    # stream than that means MAXLEN trimmed it.
    trimmed = record.count > info["length"] + record.folded_count
    if trimmed and start < first:
        # Entries older than the first retained one were trimmed (MAXLEN): some of those the
        # reader has not seen may be gone. Deliver what is left, after saying so.
        return Plan(start, _reset("cursor_expired", record, cur.fmt(start)))
    return Plan(start)


def _reset(reason: str, record: Record, replay_from: str) -> Reset:
    return Reset(reason=reason, status=record.status, replay_from=replay_from)


def _outcome(after: tuple[int, int], record: Record) -> list[tuple[bytes, bytes, bytes]]:
    """The final message and the terminal event, from the record, if the reader lacks them."""
    out = []
    if record.final_id and record.final_payload is not None and cur.parse(record.final_id) > after:
        out.append((record.final_id.encode(), b"message", record.final_payload))
    if record.terminal_id and record.terminal_payload is not None and cur.parse(record.terminal_id) > after:
        out.append((record.terminal_id.encode(), (record.terminal_type or "error").encode(),
                    record.terminal_payload))
    return out
