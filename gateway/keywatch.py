"""Open streams end when the key that opened them is revoked or expires.

A request is authorised once, when it arrives; an event stream can stay open for many minutes
after. ``KeyWatch`` (one per gateway process) knows which keys have streams open here and
re-checks them every ``AGENTSTREAM_KEY_CHECK_S`` seconds (one pipelined read for all of them,
and none when no stream is open). ``StreamGuard`` is the ASGI middleware that registers each
streaming response when it starts and, when its key goes bad, cancels the request and ends the
body itself: a final ``: closing: key_revoked ...`` comment and the end of the response, with no
``retry:`` hint. A client that reconnects (an ``EventSource`` does) gets 401 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway import sse
from gateway.periodic import Periodic
from shared.ids import now_ms
from shared.stores.apikeys import KeyStore
from shared.stores.tenancy import Principal

log = logging.getLogger("agentstream.gateway")

_STREAM_TYPES = (b"text/event-stream", b"application/x-ndjson")
_REASONS = {
    "key_revoked": "the API key of this stream was revoked",
    "key_expired": "the API key of this stream has expired",
    "invalid_api_key": "the API key of this stream no longer exists",
}


class Watched:
    __slots__ = ("principal", "task", "reason")

    def __init__(self, principal: Principal, task: asyncio.Task[Any]) -> None:
        self.principal = principal
        self.task = task
        self.reason: str | None = None

    def cut(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.task.cancel()


class KeyWatch(Periodic):
    def __init__(self, store: KeyStore, interval_s: float) -> None:
        super().__init__("key check", interval_s, self.check)
        self.store = store
        self._open: dict[str, set[Watched]] = {}  # key hash -> its open streams here

    def watch(self, principal: Principal, task: asyncio.Task[Any]) -> Watched:
        w = Watched(principal, task)
        self._open.setdefault(principal.key_hash, set()).add(w)
        return w

    def release(self, w: Watched) -> None:
        streams = self._open.get(w.principal.key_hash)
        if streams is not None:
            streams.discard(w)
            if not streams:
                del self._open[w.principal.key_hash]

    async def check(self) -> None:
        if not self._open:
            return
        hashes = list(self._open)
        verdicts = await self.store.validity(hashes, now_ms())
        for h in hashes:
            reason = verdicts.get(h)  # the record in Redis is the truth (a rotation shortens expiry)
            if reason is not None:
                for w in list(self._open.get(h, ())):
                    w.cut(reason)


class StreamGuard:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched: Watched | None = None
        watch: KeyWatch | None = None
        event_stream = False

        async def guarded_send(message: Any) -> None:
            nonlocal watched, watch, event_stream
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or ()).get(b"content-type", b"")
                principal = scope.get("state", {}).get("principal")
                if principal is not None and ctype.startswith(_STREAM_TYPES):
                    services = getattr(scope["app"].state, "services", None)
                    watch = getattr(services, "keywatch", None)
                    task = asyncio.current_task()
                    if watch is not None and task is not None:
                        watched = watch.watch(principal, task)
                        event_stream = ctype.startswith(b"text/event-stream")
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except asyncio.CancelledError:
            if watched is None or watched.reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            reason = watched.reason
            tail = sse.comment(f"closing: {reason}: {_REASONS.get(reason, reason)}; "
                               "a reconnect is refused") if event_stream else b""
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            if watched is not None and watch is not None:
                watch.release(watched)
