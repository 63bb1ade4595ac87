"""Every event a message's stream can carry: one msgspec Struct each, in one tagged union.

A copy of the server's ``shared/events.py`` (this package cannot import the server):
``tests/clients/test_union.py`` in the server's suite asserts that the two unions have the same
tags, fields, types and defaults, so a change to one without the other fails the build.

The wire names and payload keys are those of the agent-sessions API reference (§4). Keys the
reference names are required fields; fields the project adds have defaults. ``decode_event``
turns an SSE event's type and ``data:`` into the typed event.
"""

from __future__ import annotations

from typing import Any

import msgspec

TAG_FIELD = "event"


class Event(msgspec.Struct, frozen=True, omit_defaults=True, tag_field=TAG_FIELD):
    """Base of all events. Events do not forbid unknown fields (readers stay tolerant)."""


class RetrieverSummary(msgspec.Struct, frozen=True):
    used_retrievers: bool = False
    retriever_count: int = 0
    saved_retrievers: int = 0
    adhoc_retrievers: int = 0
    total_documents: int = 0
    executions: list[dict[str, Any]] = msgspec.field(default_factory=list)


class Intent(Event, tag="intent"):
    intent: str
    confidence: float
    category: str
    reasoning: str
    context_scope: str


class Thinking(Event, tag="thinking"):
    step: str
    message: str


class ToolCall(Event, tag="tool_call"):
    tool_name: str
    tool_call_id: str
    inputs: dict[str, Any]


class ToolResult(Event, tag="tool_result"):
    tool_name: str
    tool_call_id: str
    success: bool
    output: Any
    latency_ms: float
    error: str | None = None


class Token(Event, tag="token"):
    content: str


class Message(Event, tag="message"):
    content: str
    message_id: str
    is_final: bool


class SessionName(Event, tag="session_name"):
    session_name: str


class Done(Event, tag="done"):
    latency_ms: float
    tool_calls_made: int
    message_id: str
    retriever_summary: RetrieverSummary
    data_accessed_via_retriever: bool
    total_tokens: int = 0


class Error(Event, tag="error"):
    message: str
    recoverable: bool
    code: str | None = None  # stable machine-readable reason (cancelled, max_tries_exceeded, ...)
    message_id: str | None = None
    details: dict[str, Any] | None = None  # e.g. provider_error: provider, kind, status, retryable


class RetrieverExecution(Event, tag="retriever_execution"):
    tool_name: str
    execution_id: str
    retriever_id: str | None
    is_adhoc: bool
    documents_returned: int
    latency_ms: float
    message: str


class PipelineConfig(Event, tag="pipeline_config"):
    tool_name: str
    config: dict[str, Any]
    message: str


class ConfirmationRequired(Event, tag="confirmation_required"):
    confirmation_id: str
    tool_name: str
    inputs: dict[str, Any]
    expires_at: str
    message: str = ""


class Reset(Event, tag="reset"):
    """Not in the reference: what came before is not (or no longer) a clean prefix.

    ``reason`` is one of ``cursor_expired`` (the cursor is older than the first retained
    entry), ``cursor_ahead`` (newer than the stream's last entry, e.g. after a Redis failover),
    ``stream_expired`` (retention removed the stream; the outcome follows from the record),
    ``message_expired`` (the session log: the message's record is gone too),
    ``retry`` (a new attempt discards the tokens streamed after ``discard_after``) or
    ``compacted`` (the finished message's tokens after the cursor were folded into its final
    ``message``, which follows with the other kept events).
    ``replay_from`` is the cursor to resume from ("0" = the start).
    """

    reason: str
    status: str
    replay_from: str
    attempt: int = 0
    discard_after: str | None = None


AnyEvent = (
    Intent
    | Thinking
    | ToolCall
    | ToolResult
    | Token
    | Message
    | SessionName
    | Done
    | Error
    | RetrieverExecution
    | PipelineConfig
    | ConfirmationRequired
    | Reset
)

TERMINAL = frozenset({"done", "error"})
# A stream pauses (the response ends, the message is not over) on these.
PAUSE = frozenset({"confirmation_required"})
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in AnyEvent.__args__  # type: ignore[attr-defined]
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def type_of(event: Event) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


def encode_payload(event: Event) -> bytes:
    """The event's JSON without its tag: exactly the SSE ``data:`` of the reference.

    msgspec writes the tag first, so the tag is a fixed prefix we slice off.
    """
    raw = _encoder.encode(event)
    prefix_len = len(TAG_FIELD) + len(type_of(event)) + 7  # {"event":"<tag>"
    rest = raw[prefix_len:]
    return b"{" + (rest[1:] if rest[:1] == b"," else rest)


def decode_event(type_: str | bytes, payload: bytes) -> AnyEvent:
    """Inverse of ``encode_payload``: validates the payload against its event type."""
    tag = type_.encode() if isinstance(type_, str) else type_
    head = b'{"' + TAG_FIELD.encode() + b'":"' + tag + b'"'
    body = payload.strip()
    raw = head + (b"," + body[1:] if body != b"{}" else b"}")
    return _decoder.decode(raw)


def encode_json(value: Any) -> bytes:
    return _encoder.encode(value)
