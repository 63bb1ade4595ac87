"""One live path per gateway process.

The worker's append script PUBLISHes every new stream entry (``id\\ntype\\npayload``) on the
message's channel in the same atomic step as the XADD. The hub holds ONE subscriber connection
for all of this process's open streams, parses replies with hiredis in batches, and hands each
entry to the subscriptions of its channel. Streams stay the record: a subscription that falls
behind (buffer full) or that lost the connection is told to catch up by reading the stream
itself, so no client can grow the gateway's memory or slow the others.

This is the hot path (one reply per delivered event), so the connection is a plain asyncio
Protocol: bytes go from ``data_received`` through hiredis to the subscriptions without a
coroutine, a task switch or redis-py's per-message dict in between. Heartbeats are driven from
here too (one timer for all streams, not one per stream per wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import RedisError

from shared import metrics

log = logging.getLogger("agentstream.hub")

LiveEntry = tuple[bytes, bytes, bytes]  # (id, type, payload)


class HubClosed(ConnectionError):
    """The hub's connection went away; subscribers must end and let clients reconnect."""


class Signal:
    """A one-waiter asyncio.Event: set() wakes the reader with no deque and no loop over waiters
    (it runs once per delivered event)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Subscription:
    __slots__ = ("channel", "queue", "limit", "lagging", "wake", "closed", "idle", "_hub")

    def __init__(self, hub: Hub, channel: bytes, limit: int) -> None:
        self._hub = hub
        self.channel = channel
        self.queue: deque[LiveEntry] = deque()
        self.limit = limit
        self.lagging = False  # the queue overflowed: read the stream to catch up
        self.wake = Signal()
        self.closed: str | None = None  # reason, when the hub can no longer feed us
        self.idle = True  # no entry since the hub's last heartbeat tick

    def push(self, entry: LiveEntry) -> None:
        if self.lagging:
            pass  # the catch-up read will find it in the stream
        elif len(self.queue) >= self.limit:
            self.queue.clear()
            self.lagging = True
            metrics.HUB_FALLBACKS.inc()
        else:
            self.queue.append(entry)
        self.idle = False
        self.wake.set()

    def close(self, reason: str) -> None:
        self.closed = reason
        self.wake.set()

    def drain(self) -> list[LiveEntry]:
        items = list(self.queue)
        self.queue.clear()
        return items

    def unsubscribe(self) -> None:
        self._hub.unsubscribe(self)


class _Channel:
    __slots__ = ("subs", "pending", "ready", "unsubscribing")

    def __init__(self) -> None:
        self.subs: set[Subscription] = set()
        self.pending = 0  # SUBSCRIBE commands sent whose confirmation has not arrived
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unsubscribing = False


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """Feeds every reply to the hub, synchronously, as bytes arrive."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        dispatch = self.hub._dispatch
        while (reply := self.reader.gets()) is not False:
            dispatch(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


def deliver(state: _Channel, payload: bytes) -> int:
    """Hand one published batch to a channel's subscribers; returns the entries delivered.
    One publish per appended batch (group commit): id, type, payload, repeated. Payloads are
    JSON, which never holds a raw newline."""
    parts = payload.split(b"\n")
    n = len(parts)
    if n < 3 or n % 3:
        return 0
    subs = state.subs
    for i in range(0, n, 3):
        entry = (parts[i], parts[i + 1], parts[i + 2])
        for sub in subs:
            sub.push(entry)
    return len(subs) * (n // 3)


class Hub:
    def __init__(self, url: str | Callable[[], Awaitable[str]], buffer: int = 1024, idle_unsubscribe_s: float = 5.0,
                 heartbeat_s: float = 15.0) -> None:
        self.url = url
        self.buffer = buffer
        self.idle_unsubscribe_s = idle_unsubscribe_s
        self.heartbeat_s = heartbeat_s
        self.channels: dict[bytes, _Channel] = {}
        self._idle: dict[bytes, float] = {}
        self._conn: _Connection | None = None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._auth_pending = 0  # replies to AUTH / CLIENT SETNAME still to come
        self.delivered = 0  # entries handed to subscriptions (for tests and the bench)

    # lifecycle

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="hub-connection"),
                       asyncio.create_task(self._sweep(), name="hub-sweep"),
                       asyncio.create_task(self._heartbeats(), name="hub-heartbeats")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 5)

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._close_all("shutdown")
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()

    def close_all(self, reason: str) -> None:
        """Tell every open stream to end (graceful shutdown: clients reconnect elsewhere)."""
        self._close_all(reason)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # subscriptions

    async def subscribe(self, channel: str, timeout_s: float = 5.0) -> Subscription:
        """Register for live entries and return once Redis confirms the subscription, so a
        stream read issued afterwards cannot miss an entry published in between."""
        if not self._connected.is_set():
            raise HubClosed("live path not connected")
        name = channel.encode()
        sub = Subscription(self, name, self.buffer)
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = _Channel()
        self._idle.pop(name, None)
        if state.unsubscribing or (state.pending == 0 and not state.ready.done()):
            state.unsubscribing = False
            if state.ready.done():
                state.ready = asyncio.get_running_loop().create_future()
            state.pending += 1
            self._send(_command(b"SUBSCRIBE", name))
        state.subs.add(sub)
        try:
            await asyncio.wait_for(asyncio.shield(state.ready), timeout_s)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        state = self.channels.get(sub.channel)
        if state is None:
            return
        state.subs.discard(sub)
        if not state.subs:
            # Lazily: a client that reconnects at once finds the channel still subscribed.
            self._idle[sub.channel] = asyncio.get_running_loop().time()

    def subscriber_count(self) -> int:
        return sum(len(s.subs) for s in self.channels.values())

    # internals

    def _send(self, data: bytes) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)

    def _close_all(self, reason: str) -> None:
        for state in self.channels.values():
            for sub in list(state.subs):
                sub.close(reason)

    def _dispatch(self, reply: object) -> None:
        if type(reply) is not list:
            if self._auth_pending:
                self._auth_pending -= 1
                if isinstance(reply, hiredis.ReplyError):
                    log.error("hub: Redis refused the handshake: %s", reply)
            return
        kind = reply[0]
        if kind == b"message":
            state = self.channels.get(reply[1])
            if state is None:
                return
            self.delivered += deliver(state, reply[2])
        elif kind == b"subscribe":
            state = self.channels.get(reply[1])
            if state is not None and state.pending > 0:
                state.pending -= 1
                if state.pending == 0 and not state.ready.done():
                    state.ready.set_result(None)
        elif kind == b"unsubscribe":
            state = self.channels.get(reply[1])
            if state is not None and state.unsubscribing and not state.subs:
                del self.channels[reply[1]]

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        # Sentinel: ask where the primary is at every connect, so a failover is followed.
        u = urlparse(self.url if isinstance(self.url, str) else await self.url())
        conn = _Connection(self)
        if u.scheme == "unix":
            await loop.create_unix_connection(lambda: conn, unquote(u.path))
        else:
            await loop.create_connection(lambda: conn, u.hostname or "127.0.0.1", u.port or 6379,
                                         ssl=u.scheme == "rediss" or None)
        assert conn.transport is not None
        handshake = []
        if u.password:
            handshake.append(_command(b"AUTH", *([unquote(u.username).encode()] if u.username else []),
                                      unquote(u.password).encode()))
        handshake.append(_command(b"CLIENT", b"SETNAME", b"agentstream-hub"))
        self._auth_pending = len(handshake)
        conn.transport.write(b"".join(handshake))
        return conn

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                conn = await self._open()
            except (OSError, ConnectionError, RedisError) as exc:  # RedisError: no sentinel answered
                log.warning("hub: cannot connect to Redis (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self._conn = conn
            # Subscriptions that survived a reconnect were told to end (their clients resume);
            # channels without subscribers are simply forgotten.
            self.channels = {n: s for n, s in self.channels.items() if s.subs and not s.unsubscribing}
            for name, state in self.channels.items():
                state.pending = 1
                state.ready = asyncio.get_running_loop().create_future()
                self._send(_command(b"SUBSCRIBE", name))
            self._connected.set()
            try:
                exc = await conn.lost
                log.warning("hub: lost Redis connection (%s)", exc or "closed by Redis")
            finally:
                self._connected.clear()
                self._conn = None
                if conn.transport is not None:
                    conn.transport.close()
                self._close_all("redis_connection_lost")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle_unsubscribe_s / 2)
            now = loop.time()
            stale = [n for n, t in self._idle.items() if now - t >= self.idle_unsubscribe_s]
            for name in stale:
                del self._idle[name]
                state = self.channels.get(name)
                if state is not None and not state.subs and not state.unsubscribing:
                    self._release(name, state)

    def _release(self, name: bytes, state: _Channel) -> None:
        """An idle channel (no subscriber for ``idle_unsubscribe_s``) is unsubscribed."""
        state.unsubscribing = True
        self._send(_command(b"UNSUBSCRIBE", name))

    async def _heartbeats(self) -> None:
        """Every heartbeat period, wake each subscription that had no entry since the last tick
        (its reader sends a heartbeat comment and re-reads the stream as a safety net)."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for state in list(self.channels.values()):
                for sub in state.subs:
                    if sub.idle:
                        sub.wake.set()
                    else:
                        sub.idle = True
