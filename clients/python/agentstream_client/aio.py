"""The asynchronous client (httpx). ``AsyncAgentStream.send`` returns an ``AsyncMessageStream``:
``async for`` over it for the events as they arrive; ``result`` is the terminal event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from agentstream_client import _core
from agentstream_client._core import SESSIONS, Request, SessionLogState, StreamEvent, StreamState
from agentstream_client.errors import ApiError, ConnectionLost, StreamNotEnded
from agentstream_client.events import AnyEvent

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=60.0)  # read: above the server's heartbeat interval


class AsyncMessageStream:
    """The events of one message, resumed across connections until its terminal event.

    Iterating yields ``StreamEvent``s: kept events exactly once and in order, and a ``reset``
    (after ``on_reset`` was called with it) whose ``retracted`` ids the application discards.
    """

    def __init__(self, client: AsyncAgentStream, state: StreamState) -> None:
        self._client = client
        self._state = state
        self._iter: AsyncIterator[StreamEvent] | None = None
        self._closed = False

    @property
    def message_id(self) -> str | None:
        return self._state.message_id

    @property
    def last_event_id(self) -> str | None:
        return self._state.last_event_id

    @property
    def idempotency_key(self) -> str | None:
        return self._state.first.headers.get("Idempotency-Key")

    @property
    def connections(self) -> int:
        return self._state.connections

    @property
    def result(self) -> AnyEvent | None:
        """The terminal event (``Done`` / ``Error``), or the ``ConfirmationRequired`` the answer paused on."""
        if not self._state.finished:
            raise StreamNotEnded("the stream has not reached its terminal event yet")
        return self._state.result

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    async def wait(self) -> AnyEvent | None:
        """Read to the end (the events are dropped) and return ``result``."""
        async for _ in self:
            pass
        return self.result

    async def aclose(self) -> None:
        self._closed = True
        if self._iter is not None:
            await self._iter.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> AsyncMessageStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        st = self._state
        http = self._client.http
        while not st.finished and not self._closed:
            req = st.request()
            delay: float | None = None
            try:
                async with http.stream(req.method, req.path, json=req.json, headers=req.headers) as resp:
                    if not st.opened(resp.status_code, resp.headers):
                        if st.finished:
                            return
                        delay = st.failed_status(resp.status_code, await resp.aread(), resp.headers)
                    else:
                        async for data in resp.aiter_raw():
                            try:
                                events = st.chunk(data)
                            except _core._Restart as restart:
                                events, delay = restart.events, 0.0
                            for ev in events:
                                yield ev
                            if st.finished or delay is not None:
                                break
                        if st.finished:
                            return
                        if delay is None:
                            delay = st.lost(None)  # the body ended before the terminal event
            except httpx.TransportError as exc:
                delay = st.lost(exc)
            await asyncio.sleep(delay)


class AsyncAgentStream:
    """A client for one API key and namespace, on one asyncio loop."""

    def __init__(self, base_url: str, api_key: str | None = None, namespace: str | None = None, *,
                 max_retries: int = 8, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 http: httpx.AsyncClient | None = None) -> None:
        self.max_retries = max_retries
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.http.headers.update(_core.headers_for(api_key, namespace))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncAgentStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plain calls -------------------------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                retry: bool = False) -> Any:
        """One JSON call. ``retry``: also retry network errors (only for calls safe to repeat)."""
        failures = 0
        while True:
            try:
                r = await self.http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                failures += 1
                if not retry or failures > self.max_retries:
                    raise ConnectionLost(str(exc)) from exc
                await asyncio.sleep(min(0.2 * 2 ** failures, _core.MAX_DELAY_S))
                continue
            wait = _core.retry_after_s(r.headers)
            if r.status_code in (429, 503) and wait is not None and failures < self.max_retries:
                failures += 1
                await asyncio.sleep(wait)
                continue
            return _core.decode_json(r.status_code, r.content, r.headers)

    async def create_session(self, body: dict[str, Any] | None = None) -> Any:
        return await self.request("POST", SESSIONS, body if body is not None else {"agent_config": {}})

    async def get_session(self, session_id: str) -> Any:
        return await self.request("GET", f"{SESSIONS}/{session_id}", retry=True)

    async def list_sessions(self, body: dict[str, Any] | None = None) -> Any:
        return await self.request("POST", f"{SESSIONS}/list", body or {}, retry=True)

    async def update_session(self, session_id: str, body: dict[str, Any]) -> Any:
        return await self.request("PATCH", f"{SESSIONS}/{session_id}", body, retry=True)

    async def delete_session(self, session_id: str) -> Any:
        return await self.request("DELETE", f"{SESSIONS}/{session_id}", retry=True)

    async def get_history(self, session_id: str) -> Any:
        return await self.request("GET", f"{SESSIONS}/{session_id}/history", retry=True)

    async def submit_feedback(self, session_id: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", f"{SESSIONS}/{session_id}/feedback", body)

    async def cancel(self, session_id: str, message_id: str) -> Any:
        return await self.request("POST", f"{SESSIONS}/{session_id}/messages/{message_id}/cancel", retry=True)

    async def list_tools(self) -> Any:
        return await self.request("GET", f"{SESSIONS}/tools", retry=True)

    async def detect_intent(self, body: dict[str, Any]) -> Any:
        return await self.request("POST", f"{SESSIONS}/intent/detect", body, retry=True)

    # --- messages ----------------------------------------------------------------------------

    def send(self, session_id: str, content: str, *, idempotency_key: str | None = None,
             metadata: dict[str, Any] | None = None, on_reset: Callable[[StreamEvent], None] | None = None,
             on_connection: Callable[[str, int], None] | None = None) -> AsyncMessageStream:
        """Send a message and stream its events (nothing is sent until iteration starts)."""
        first = _core.send_request(content, idempotency_key, True, metadata, session_id)
        return AsyncMessageStream(self, StreamState(session_id, first, None, None, self.max_retries, on_reset,
                                               on_connection))

    async def send_and_wait(self, session_id: str, content: str, *, idempotency_key: str | None = None,
                      metadata: dict[str, Any] | None = None) -> Any:
        """``stream: false``: the final answer as one JSON object (retried with the same key)."""
        req = _core.send_request(content, idempotency_key, False, metadata, session_id)
        return await self.request(req.method, req.path, req.json, req.headers, retry=True)

    def follow(self, session_id: str, message_id: str, *, last_event_id: str | None = None,
               on_reset: Callable[[StreamEvent], None] | None = None,
               on_connection: Callable[[str, int], None] | None = None) -> AsyncMessageStream:
        """The events of a message already sent, from the start or after ``last_event_id``."""
        first = Request("GET", _core.events_path(session_id, message_id), None, {})
        return AsyncMessageStream(self, StreamState(session_id, first, message_id, last_event_id, self.max_retries,
                                               on_reset, on_connection))

    async def session_events(self, session_id: str, *, last_event_id: str | None = None,
                             on_reset: Callable[[StreamEvent], None] | None = None
                             ) -> AsyncIterator[StreamEvent]:
        """The session's log: every event of every message (ids ``<message_id>/<entry id>``),
        resumed across connections until every message was delivered."""
        st = SessionLogState(session_id, last_event_id, self.max_retries, on_reset)
        while True:
            try:
                async with self.http.stream("GET", st.path, headers=st.headers()) as resp:
                    if resp.status_code == 200:
                        st.opened()
                        async for data in resp.aiter_raw():
                            for ev in st.chunk(data):
                                yield ev
                        return  # the log ended: every message was delivered
                    err = ApiError.from_response(resp.status_code, await resp.aread(), dict(resp.headers))
                    if resp.status_code not in _core.RETRYABLE_STATUS:
                        raise err
                    delay = st.next_delay(err, _core.retry_after_s(resp.headers))
            except httpx.TransportError as exc:
                delay = st.next_delay(exc, None)
            await asyncio.sleep(delay)

    def respond_to_confirmation(self, session_id: str, confirmation_id: str, approved: bool, *,
                                paused_at: str | None = None, **body: Any) -> AsyncMessageStream:
        """Approve or reject a paused write; the message's continuation streams back.
        ``paused_at``: the id of the ``confirmation_required`` event, so a reconnect resumes
        after it instead of from the start of the message."""
        first = Request("POST", f"{SESSIONS}/{session_id}/confirmations/{confirmation_id}",
                        {"approved": approved, **body}, {"Accept": "text/event-stream"})
        return AsyncMessageStream(self, StreamState(session_id, first, None, paused_at, self.max_retries, None, None))


__all__ = ["AsyncAgentStream", "AsyncMessageStream"]
