"""A reader of one message's events: catch-up from the stream, then live from the hub.

Yields batches of entries ``(id, type, payload)``; ``None`` stands for "idle, send a heartbeat".
The SSE and JSON answers are thin wrappers over this one loop, so resume, heartbeats, slow-client
fallback and shutdown behave the same everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from gateway import sse
from gateway.hub import Hub, HubClosed, Subscription
from gateway.resume import plan
from shared import cursor as cur
from shared import keys
from shared.errors import NotFound, Unavailable
from shared.events import PAUSE, TERMINAL, encode_payload
from shared.messages import MessageStore
from shared.settings import Settings

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
    after: tuple[int, int] | None,
) -> Reader:
    """Subscribe first, then read: nothing published in between can be missed."""
    try:
        sub = await hub.subscribe(keys.live_channel(ses_id, msg_id))
    except (HubClosed, TimeoutError):
        raise Unavailable("The live event path is reconnecting; retry shortly", code="hub_unavailable",
                          details={"retryable": True, "retry_after_seconds": 1},
                          headers={"Retry-After": "1"}) from None
    record = await store.record(ses_id, msg_id)
    if record is None:
        sub.unsubscribe()
        raise NotFound("Message not found", code="message_not_found", details={"message_id": msg_id})
    try:
        info = await store.stream_info(ses_id, msg_id)
    except BaseException:
        sub.unsubscribe()
        raise
    return Reader(_read(store, sub, settings, ses_id, msg_id, plan(after, record, info)), sub)


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


async def _read(store, sub, settings, ses_id, msg_id, p) -> AsyncIterator[list[Entry] | None]:  # type: ignore[no-untyped-def]
    try:
        if p.reset is not None:
            yield [(p.reset.replay_from.encode(), b"reset", encode_payload(p.reset))]
        if p.from_record is not None:
            if p.from_record:
                yield list(p.from_record)
            return
        last = p.start
        batch = settings.catchup_batch

        async def catch_up() -> tuple[list[Entry], bool]:
            nonlocal last
            out: list[Entry] = []
            last_type = b""
            while True:
                rows = await store.read(ses_id, msg_id, cur.fmt(last), batch)
                for eid, t, d in rows:
                    out.append((eid, t, d))
                    last, last_type = cur.of_entry(eid), t
                    if t in _TERMINAL:
                        return out, True
                if len(rows) < batch:
                    # A pause ends the answer only while it is the stream's last word: once a
                    # confirmation was answered, the stream goes on past it.
                    return out, last_type in _PAUSE

        out, ended = await catch_up()
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
            for eid, t, d in sub.drain():
                pid = cur.of_entry(eid)
                if pid <= last:
                    continue  # already sent by a catch-up read
                out.append((eid, t, d))
                last = pid
                if t in _ENDS:
                    yield out
                    return
            if out:
                yield out
    finally:
        sub.unsubscribe()


async def sse_body(reader: Reader, retry_ms: int) -> AsyncIterator[bytes]:
    """Frames a reader as SSE. On a closed live path the client is told to come back soon."""
    try:
        yield sse.retry(retry_ms)
        async for batch in reader:
            if batch is None:
                yield sse.HEARTBEAT
                continue
            yield b"".join(sse.frame_entry(eid, t, d) if eid is not None else sse.frame(None, t, d)
                           for eid, t, d in batch)
    except Closed as closed:
        yield sse.comment(f"closing: {closed.reason}; reconnect with Last-Event-ID") + sse.retry(250)
    except (RedisError, OSError) as exc:
        yield sse.comment(f"closing: storage error ({type(exc).__name__}); reconnect with Last-Event-ID")
    finally:
        await reader.aclose()
