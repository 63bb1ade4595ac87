"""A client for agentstream's agent-sessions API that resumes by itself.

Every send carries an ``Idempotency-Key``; a stream that breaks is resumed at the message's
events URL with ``Last-Event-ID`` (honouring ``retry:`` and ``Retry-After``); ``reset`` events are
applied for the application, which sees every kept event exactly once, in order, and is told
explicitly which events to discard.

    from agentstream_client import AgentStream

    with AgentStream("http://127.0.0.1:8000", api_key, "demo") as client:
        sid = client.create_session()["session_id"]
        stream = client.send(sid, "find documents about redis streams")
        for ev in stream:
            ...
        print(stream.result)
"""

from agentstream_client._core import StreamEvent
from agentstream_client.aio import AsyncAgentStream, AsyncMessageStream
from agentstream_client.client import AgentStream, MessageStream
from agentstream_client.errors import AgentStreamError, ApiError, ConnectionLost, StreamNotEnded
from agentstream_client.events import AnyEvent, decode_event

__all__ = [
    "AgentStream",
    "AgentStreamError",
    "AnyEvent",
    "ApiError",
    "AsyncAgentStream",
    "AsyncMessageStream",
    "ConnectionLost",
    "MessageStream",
    "StreamEvent",
    "StreamNotEnded",
    "decode_event",
]
