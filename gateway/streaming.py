"""A reader of one message's events: catch-up from the stream, then live from the hub.

Yields batches of entries ``(id, type, payload)``; ``None`` stands for "idle, send a heartbeat".
The SSE and JSON answers are thin wrappers over this one loop, so resume, heartbeats, slow-client
fallback and shutdown behave the same everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway import sse
from gateway.hub import Hub, HubClosed, Subscription
from gateway.resume import Plan, plan
from shared import cursor as cur
from shared import keys
from shared.errors import NotFound, Unavailable
from shared.events import PAUSE, TERMINAL, encode_payload
from shared.settings import Settings
from shared.stores.messages import MessageStore

Entry = tuple[bytes | None, bytes, bytes]
_TERMINAL = frozenset(t.encode() for t in TERMINAL)
_PAUSE = frozenset(t.encode() for t in PAUSE)
_ENDS = _TERMINAL | _PAUSE


class Closed(Exception):
    """The live path ended under the reader (shutdown, lost Redis): the client should resume."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def open_reader(
    store: MessageStore, hub: Hub, settings: Settings, ses_id: str, msg_id: str,
    after: tuple[int, int] | None, *, through_pauses: bool = False,
) -> Reader:
    """Subscribe first, then read: nothing published in between can be missed.

    A message's answer ends at its terminal event or at a pause (``confirmation_required``);
    ``through_pauses`` follows a paused message on to its terminal event (the session log)."""
    try:
        sub = await hub.subscribe(keys.live_channel(ses_id, msg_id))
    except (HubClosed, TimeoutError):
        raise Unavailable("The live event path is reconnecting; retry shortly", code="hub_unavailable",
                          details={"retryable": True, "retry_after_seconds": 1},
                          headers={"Retry-After": "1"}) from None
    try:  # whatever fails from here on, the subscription goes with it
        record = await store.record(ses_id, msg_id)
        if record is None:
            raise NotFound("Message not found", code="message_not_found", details={"message_id": msg_id})
        info = await store.stream_info(ses_id, msg_id)
    except BaseException:
        sub.unsubscribe()
        raise
    ends = _TERMINAL if through_pauses else _ENDS
    return Reader(_read(store, sub, settings, ses_id, msg_id, plan(after, record, info), ends, True), sub)


def reader_for_new(store: MessageStore, sub: Subscription, settings: Settings, ses_id: str, msg_id: str) -> Reader:
    """A message this request has just accepted, subscribed to before it existed: nothing can
    precede the subscription, so the live path carries every entry it will ever have (the
    ACCEPT script's ``queued`` note too) and there is no record, stream or first read to do
    (three round trips fewer). A reader that falls behind, or a quiet heartbeat, reads as any
    other does."""
    return Reader(_read(store, sub, settings, ses_id, msg_id, Plan(cur.START), _ENDS, False), sub)


class Reader:
    """The batches of one reader. Closing it always releases the subscription, even if it was
    never iterated (an async generator that never started runs no ``finally``)."""

    def __init__(self, batches: AsyncIterator[list[Entry] | None], sub: Subscription) -> None:
        self._batches = batches
        self._sub = sub

    def __aiter__(self) -> AsyncIterator[list[Entry] | None]:
        return self._batches

    async def aclose(self) -> None:
        await self._batches.aclose()  # type: ignore[attr-defined]
        self._sub.unsubscribe()


async def _read(store, sub, settings, ses_id, msg_id, p, ends, opening_read) -> AsyncIterator[list[Entry] | None]:  # type: ignore[no-untyped-def]
    try:
        if p.reset is not None:
            yield [(p.reset.replay_from.encode(), b"reset", encode_payload(p.reset))]
        if p.from_record is not None:
            if p.from_record:
                yield list(p.from_record)
            return
        last = p.start
        batch = settings.catchup_batch

        async def catch_up(reread: bool = True) -> tuple[list[Entry], bool]:
            nonlocal last
            out: list[Entry] = []
            last_type = b""
            # A reader that reads on after it opened may have fallen behind the stream cap since
            # (the opening plan checked until then): the first read says so, never a gap.
            check_trim = reread and last > cur.START
            while True:
                rows = await store.read(ses_id, msg_id, cur.fmt(last), batch, check_trim)
                check_trim = False
                for eid, t, d in rows:
                    out.append((eid, t, d))
                    last, last_type = cur.of_entry(eid), t
                    if t in _TERMINAL:
                        return out, True
                if len(rows) < batch:
                    # A pause ends the answer only while it is the stream's last word: once a
                    # confirmation was answered, the stream goes on past it.
                    return out, last_type in ends

        if opening_read:
            out, ended = await catch_up(reread=False)
            if out:
                yield out
            if ended:
                return
        while True:
            await sub.wake.wait()
            if not sub.queue and not sub.lagging and sub.closed is None:
                sub.wake.clear()
                # The hub's heartbeat tick: nothing arrived for a period. A notification can be
                # lost only with the connection (which closes us), but a cheap read per
                # heartbeat makes even that impossible to turn into a hang.
                yield None
                out, ended = await catch_up()
                if out:
                    yield out
                if ended:
                    return
                continue
            sub.wake.clear()
            if sub.closed:
                raise Closed(sub.closed)
            if sub.lagging:
                sub.lagging = False
                out, ended = await catch_up()
                if out:
                    yield out
                if ended:
                    return
            out = []
            for entry in sub.drain():
                pid = cur.of_entry(entry[0])
                if pid <= last:
                    continue  # already sent by a catch-up read
                out.append(entry)  # type: ignore[arg-type]
                last = pid
                if entry[1] in ends:
                    yield out
                    return
            if out:
                yield out
    finally:
        sub.unsubscribe()


def frames(batch: list[Entry] | None, id_prefix: bytes = b"") -> bytes:
    """A reader's batch as SSE; ``None`` is a heartbeat. ``id_prefix`` scopes ids (the session
    log prefixes each with its message id)."""
    if batch is None:
        return sse.HEARTBEAT
    if len(batch) == 1 and batch[0][0] is not None and not id_prefix:  # the common live case
        eid, t, d = batch[0]
        return sse.frame_entry(eid, t, d)  # type: ignore[arg-type]
    return b"".join(sse.frame_entry(id_prefix + eid, t, d) if eid is not None else sse.frame(None, t, d)
                    for eid, t, d in batch)


class EventStreamResponse:
    """An ASGI response that writes a reader's batches as SSE frames.

    Written by hand rather than with StreamingResponse because this is the per-event hot path:
    it sends each batch straight to the server, with no task group, no extra generator layer
    and no anyio hop per chunk. A watcher on ``receive`` notices the client leaving (which
    never cancels the message, only this response). ``on_close`` runs last, always.
    """

    def __init__(self, reader: Reader, retry_ms: int, headers: dict[str, str],
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.reader = reader
        self.retry_ms = retry_ms
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": sse.retry(self.retry_ms), "more_body": True})
            try:
                async for batch in self.reader:
                    await send({"type": "http.response.body", "body": frames(batch), "more_body": True})
            except Closed as closed:
                await send({"type": "http.response.body", "more_body": True, "body": sse.comment(
                    f"closing: {closed.reason}; reconnect with Last-Event-ID") + sse.retry(250)})
            except (RedisError, OSError) as exc:
                await send({"type": "http.response.body", "more_body": True, "body": sse.comment(
                    f"closing: storage error ({type(exc).__name__}); reconnect with Last-Event-ID")})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # the client left: end quietly (the message runs on)
        finally:
            watcher.cancel()
            await self.reader.aclose()
            if self.on_close is not None:
                await self.on_close()
