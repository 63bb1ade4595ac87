"""Server-Sent Events framing: pure functions, no sockets.

Safe by construction against forged events: ``id`` and ``event`` may not hold CR, LF or NUL
(they would end the field and start another), and ``data`` is split on every line break the
SSE grammar knows (CRLF, CR, LF) into separate ``data:`` lines, with NUL removed.

No block on the wire is field-less: ``retry:`` and comments (heartbeats, closing notes) are lines
that do not end a block, so they join the block of the event that follows (``retry:`` travels
inside the first event's block). A blank line after them would dispatch an empty block, which
real clients mishandle: ``requests-sse`` copies the id of an event cut in half into its last
event id and skips that event on the next reconnect; ``httpx-sse`` hands the application an
event with empty data (issue 15, finding 10). At the end of a response an unfinished block is
discarded by every parser, while a ``retry:`` in it has already taken effect.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(rb"[\r\n\x00]")

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer this response
    "Connection": "keep-alive",
}

HEARTBEAT = b": keep-alive\n"  # a comment line: never ends a block


class FramingError(ValueError):
    """A field value that would break the SSE framing."""


def _field(name: bytes, value: bytes) -> bytes:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise FramingError(f"{name.decode()} contains CR, LF or NUL")
    return name + b": " + value + b"\n"


def frame(event_id: bytes | str | None, event: bytes | str, data: bytes | str) -> bytes:
    """One SSE event. ``data`` is sent as is (JSON from our encoder has no raw line breaks),
    except that any line break becomes a new ``data:`` line and NUL is dropped."""
    eid = event_id.encode() if isinstance(event_id, str) else event_id
    ev = event.encode() if isinstance(event, str) else event
    body = data.encode() if isinstance(data, str) else data
    out = _field(b"id", eid) if eid is not None else b""
    out += _field(b"event", ev)
    if b"\n" in body or b"\r" in body or b"\x00" in body:
        body = body.replace(b"\x00", b"")
        out += b"".join(b"data: " + line + b"\n" for line in _LINE_BREAK.split(body))
    else:
        out += b"data: " + body + b"\n"
    return out + b"\n"


def frame_entry(event_id: bytes, event: bytes, data: bytes) -> bytes:
    """Hot path for entries we wrote ourselves (validated types, ids and JSON): one concat."""
    if b"\n" in data or b"\r" in data or b"\x00" in data:
        return frame(event_id, event, data)
    return b"id: " + event_id + b"\nevent: " + event + b"\ndata: " + data + b"\n\n"


def retry(ms: int) -> bytes:
    """The reconnection hint as a field line of the next event's block (no blank line)."""
    return b"retry: " + str(int(ms)).encode() + b"\n"


def comment(text: str) -> bytes:
    """A comment line; like ``retry``, it does not end a block."""
    clean = _LINE_BREAK.sub(b" ", text.encode()).replace(b"\x00", b"")
    return b": " + clean + b"\n"
