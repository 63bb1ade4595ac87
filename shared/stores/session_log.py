"""The session log: the facts a session's projections (history, stats) are folded from.

Entries are appended by the gateway (``user``, ``feedback``) and by the worker in the same
atomic step as a message's terminal event (``tool``, ``assistant``, ``turn``). Everything the API
shows about a session's past is a pure fold of this log (``history``, ``stats``), which is also
what ``agentstream sessions rebuild`` recomputes and compares.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Entry(msgspec.Struct, frozen=True, tag_field="kind"):
    message_id: str
    ts: int  # ms


class UserEntry(Entry, tag="user"):
    content: str


class ToolEntry(Entry, tag="tool"):
    tool_name: str
    tool_call_id: str
    inputs: str  # JSON text: the history API's tool_inputs is a string
    outputs: str
    status: str  # success | error
    # The output is stored once, in the message's tool_result event; the log keeps only its
    # first characters when it is longer (history reads the whole from the message).
    outputs_truncated: bool = False


class AssistantEntry(Entry, tag="assistant"):
    content: str


class TurnEntry(Entry, tag="turn"):
    # completed | failed | cancelled | interrupted (its work stays in the history) | rolled_back
    # (a newer message ended it and asked to leave the exchange out: history and stats skip it)
    status: str
    latency_ms: float
    tokens: int
    tool_calls: int


class FeedbackEntry(Entry, tag="feedback"):
    rating: str
    feedback_text: str | None
    stored: bool


AnyEntry = UserEntry | ToolEntry | AssistantEntry | TurnEntry | FeedbackEntry

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEntry)


def for_storage(entry: Entry, max_output_chars: int) -> Entry:
    """What the log keeps of an entry: a tool's output cut to ``max_output_chars``."""
    if isinstance(entry, ToolEntry) and len(entry.outputs) > max_output_chars:
        return msgspec.structs.replace(entry, outputs=entry.outputs[:max_output_chars], outputs_truncated=True)
    return entry


def kind_of(entry: Entry) -> str:
    return entry.__struct_config__.tag  # type: ignore[return-value]


def encode(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode(raw: bytes) -> AnyEntry:
    return _decoder.decode(raw)


# Session-record stat fields the worker increments, and the fold that recomputes them.
STAT_FIELDS = ("user_messages", "assistant_messages", "total_tool_calls", "total_tokens",
               "total_latency_ms", "turns")


ROLLED_BACK = "rolled_back"


def rolled_back(entries: list[AnyEntry]) -> set[str]:
    """Messages ended by a ``rollback``: left out of the history (their user entry too)."""
    return {e.message_id for e in entries if isinstance(e, TurnEntry) and e.status == ROLLED_BACK}


def stats(entries: list[AnyEntry]) -> dict[str, float]:
    out: dict[str, float] = dict.fromkeys(STAT_FIELDS, 0)
    for e in entries:
        match e:
            case TurnEntry(status="rolled_back"):
                pass
            case UserEntry():
                out["user_messages"] += 1
            case AssistantEntry():
                out["assistant_messages"] += 1
            case TurnEntry(tokens=tokens, tool_calls=calls, latency_ms=latency):
                out["total_tokens"] += tokens
                out["total_tool_calls"] += calls
                out["total_latency_ms"] += latency
                out["turns"] += 1
            case _:
                pass
    return out


def history_rows(entries: list[AnyEntry]) -> list[dict[str, Any]]:
    """MessageHistoryItem fields, one exchange after another in acceptance order (user, tools,
    assistant). The log interleaves exchanges when a message was accepted while another ran
    (its user entry comes before the earlier one's answer), so rows are grouped by message."""
    groups: dict[str, list[dict[str, Any]]] = {}
    dropped = rolled_back(entries)
    for e in entries:
        if e.message_id in dropped:
            continue
        rows = groups.setdefault(e.message_id, [])
        match e:
            case UserEntry(content=content):
                rows.append({"message_id": e.message_id, "role": "user", "content": content,
                             "content_type": "text", "ts": e.ts})
            case ToolEntry():
                rows.append({"message_id": e.message_id, "role": "tool",
                             "content": f"{e.tool_name} ({e.status})",
                             "content_type": "tool_result", "tool_name": e.tool_name,
                             "tool_inputs": e.inputs, "tool_outputs": e.outputs,
                             "tool_status": e.status, "ts": e.ts,
                             "tool_call_id": e.tool_call_id, "outputs_truncated": e.outputs_truncated})
            case AssistantEntry(content=content):
                rows.append({"message_id": e.message_id, "role": "assistant", "content": content,
                             "content_type": "text", "ts": e.ts})
            case _:
                pass
    return [row for rows in groups.values() for row in rows]
