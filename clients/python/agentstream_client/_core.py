"""What the sync and async clients share: request shapes, the resume state of one message
stream, retry and backoff decisions. Pure apart from the clock and randomness of the backoff."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from agentstream_client.errors import ApiError, ConnectionLost
from agentstream_client.events import AnyEvent, decode_event
from agentstream_client.reconcile import PAUSE, TERMINAL, Delivery, Reconciler
from agentstream_client.sse import Parser

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
DEFAULT_RETRY_MS = 2000  # until the server's ``retry:`` says otherwise
MAX_DELAY_S = 30.0
SESSIONS = "/v1/agents/sessions"


class StreamEvent(msgspec.Struct, frozen=True):
    """One event as the application sees it. ``event`` is the typed event (``None`` for a type
    this client does not know; ``raw`` always holds the JSON). A ``reset`` carries
    ``retracted``: ids of events delivered earlier that the application must discard."""

    id: str
    type: str
    event: AnyEvent | None
    raw: bytes
    received_at: float
    retracted: tuple[str, ...] = ()


def events_path(session_id: str, message_id: str) -> str:
    return f"{SESSIONS}/{session_id}/messages/{message_id}/events"


def headers_for(api_key: str | None, namespace: str | None) -> dict[str, str]:
    h = {"User-Agent": "agentstream-client-python/0.1"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    if namespace:
        h["X-Namespace"] = namespace
    return h


def retry_after_s(headers: Any) -> float | None:
    raw = headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def decode_json(status: int, body: bytes, headers: Any) -> Any:
    if status >= 400:
        raise ApiError.from_response(status, body, dict(headers))
    return msgspec.json.decode(body) if body else None


@dataclass
class Request:
    method: str
    path: str
    json: Any | None
    headers: dict[str, str]


class StreamState:
    """The resume state of one message's stream, shared by both transports.

    The first request is given (a POST that sends, a confirmation, or a GET that follows);
    every reconnect is a GET on the message's events URL with ``Last-Event-ID``. Before the
    first response names the message, a retry repeats the first request (a send carries its
    ``Idempotency-Key``, so the server returns the same message instead of a second one).
    """

    def __init__(self, session_id: str, first: Request, message_id: str | None, last_event_id: str | None,
                 max_retries: int, on_reset: Callable[[StreamEvent], None] | None,
                 on_connection: Callable[[str, int], None] | None) -> None:
        self.session_id = session_id
        self.first = first
        self.message_id = message_id
        self.last_event_id = last_event_id  # the cursor: the last id that came over the wire
        self.max_retries = max_retries
        self.on_reset = on_reset
        self.on_connection = on_connection
        self.reconcile = Reconciler()
        self.retry_ms = DEFAULT_RETRY_MS
        self.failures = 0  # consecutive attempts that did not open a stream
        self.connections = 0
        self.result: AnyEvent | None = None
        self.finished = False
        self._from_start = False
        self._parser = Parser()

    def request(self) -> Request:
        self._from_start = not self.last_event_id or self.last_event_id == "0-0"
        if self.message_id is None:
            req = self.first
            if self.last_event_id:
                req = Request(req.method, req.path, req.json, {**req.headers, "Last-Event-ID": self.last_event_id})
            return req
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return Request("GET", events_path(self.session_id, self.message_id), None, headers)

    def opened(self, status: int, headers: Any) -> bool:
        """Called with a response's head; True if its body is the event stream to read."""
        self.connections += 1
        self._parser = Parser()
        if self.message_id is None and headers.get("x-message-id"):
            self.message_id = headers["x-message-id"]
        if status == 204:
            self.finished = True  # the cursor is the terminal event: nothing is left
            return False
        if status == 200:
            # An open stream is progress, as for an EventSource: the backoff starts again. A
            # stream cut before its first event then retries at the server's pace, not ever slower.
            self.failures = 0
            if self.on_connection is not None:
                self.on_connection("open", self.connections)
            return True
        return False

    def failed_status(self, status: int, body: bytes, headers: Any) -> float:
        """A non-200 answer: the delay before retrying, or raise the API's error."""
        err = ApiError.from_response(status, body, dict(headers))
        if status not in RETRYABLE_STATUS:
            raise err
        return self._next_delay(err, retry_after_s(headers))

    def lost(self, exc: BaseException | None) -> float:
        """The connection broke (or ended early): the delay before reconnecting."""
        return self._next_delay(exc, None)

    def _next_delay(self, cause: BaseException | None, retry_after: float | None) -> float:
        self.failures += 1
        if self.failures > self.max_retries:
            raise ConnectionLost(f"gave up after {self.max_retries} attempts in a row") from cause
        if self.on_connection is not None:
            self.on_connection("reconnecting", self.failures)
        delay: float = self.retry_ms / 1000 * (2 ** (self.failures - 1))
        if self.failures > 1:
            delay *= random.uniform(1.0, 1.5)  # spread a crowd that lost one gateway at once
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, max(MAX_DELAY_S, retry_after or 0.0))

    def chunk(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for frame in self._parser.feed(data):
            if self._parser.retry_ms is not None:
                self.retry_ms = self._parser.retry_ms
            if frame.id is None:
                continue  # every event of a message stream has an id; anything else is not ours
            self.last_event_id = frame.id
            deliveries, restart = self.reconcile.feed(frame.id, frame.event, frame.data.encode(), self._from_start)
            self.failures = 0
            for d in deliveries:
                ev = self._typed(d)
                if ev.type == "reset" and self.on_reset is not None:
                    self.on_reset(ev)
                out.append(ev)
                if ev.type in TERMINAL or ev.type in PAUSE:
                    self.result = ev.event
            if self.reconcile.ended is not None:
                self.finished = True
                if self.result is None:
                    self.result = self._held_result(frame)
                return out
            if restart:
                self.last_event_id = None  # read the whole stream again; the walk skips what we hold
                raise _Restart(out)
        if self._parser.retry_ms is not None:
            self.retry_ms = self._parser.retry_ms
        return out

    @staticmethod
    def _held_result(frame: Any) -> AnyEvent | None:
        try:
            return decode_event(frame.event, frame.data.encode())
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None

    @staticmethod
    def _typed(d: Delivery) -> StreamEvent:
        try:
            event: AnyEvent | None = decode_event(d.type, d.payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            event = None  # an event type or field this client does not know yet
        return StreamEvent(d.id, d.type, event, d.payload, time.time(), d.retracted)


class _Restart(Exception):  # noqa: N818 - control flow inside the transports, never raised to callers
    def __init__(self, events: list[StreamEvent]) -> None:
        super().__init__()
        self.events = events


def send_request(content: str, idempotency_key: str | None, stream: bool = True,
                 metadata: dict[str, Any] | None = None, session_id: str = "") -> Request:
    body: dict[str, Any] = {"content": content}
    if metadata is not None:
        body["metadata"] = metadata
    if not stream:
        body["stream"] = False
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex,
               "Accept": "text/event-stream" if stream else "application/json"}
    return Request("POST", f"{SESSIONS}/{session_id}/messages", body, headers)


class SessionLogState:
    """The resume state of a session's log (``GET .../events``: every event of every message,
    ids ``<message_id>/<entry id>``): one reconciler per message. The log ends once every
    message was delivered; a break before that is resumed with ``Last-Event-ID``."""

    def __init__(self, session_id: str, last_event_id: str | None, max_retries: int,
                 on_reset: Callable[[StreamEvent], None] | None) -> None:
        self.path = f"{SESSIONS}/{session_id}/events"
        self.last_event_id = last_event_id
        self.max_retries = max_retries
        self.on_reset = on_reset
        self.retry_ms = DEFAULT_RETRY_MS
        self.failures = 0
        self._messages: dict[str, Reconciler] = {}
        self._parser = Parser()

    def headers(self) -> dict[str, str]:
        h = {"Accept": "text/event-stream"}
        if self.last_event_id:
            h["Last-Event-ID"] = self.last_event_id
        return h

    def opened(self) -> None:
        self.failures = 0
        self._parser = Parser()

    def next_delay(self, cause: BaseException | None, retry_after: float | None) -> float:
        self.failures += 1
        if self.failures > self.max_retries:
            raise ConnectionLost(f"gave up after {self.max_retries} attempts in a row") from cause
        delay: float = self.retry_ms / 1000 * (2 ** (self.failures - 1))
        return min(max(delay, retry_after or 0.0), max(MAX_DELAY_S, retry_after or 0.0))

    def chunk(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for frame in self._parser.feed(data):
            if frame.id is None:
                continue
            self.last_event_id = frame.id
            rec = self._messages.setdefault(frame.id.partition("/")[0], Reconciler())
            deliveries, _ = rec.feed(frame.id, frame.event, frame.data.encode(), False)
            for d in deliveries:
                ev = StreamState._typed(d)
                if ev.type == "reset" and self.on_reset is not None:
                    self.on_reset(ev)
                out.append(ev)
        if self._parser.retry_ms is not None:
            self.retry_ms = self._parser.retry_ms
        return out
