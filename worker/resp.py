"""A lean pipelined Redis connection for the worker's hot paths (event appends, lease renewals).

redis-py pays, per command, a retry wrapper, a pool checkout, its packer and a coroutine per
reply; a worker appending tens of thousands of events a second spends most of its CPU there
(py-spy, issue 16). This is the hub's approach on the write side: one asyncio Protocol, commands
packed with ``b"".join`` and written together once per loop iteration, replies parsed by hiredis
in ``data_received`` and handed to callbacks in order. No coroutine per command.

Failures look like redis-py's: a lost or silent connection (no reply within the socket timeout)
fails every command in flight with ``redis.exceptions.ConnectionError``; the next command
reconnects. Error replies come back as ``hiredis.ReplyError`` values for the caller to map.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from shared.connect import SOCKET_TIMEOUT_S

log = logging.getLogger("agentstream.worker")

Reply = Any  # a decoded reply, a hiredis.ReplyError, or a ConnectionError when the link failed
Callback = Callable[[Reply], None]


def command(*parts: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Sender(Protocol):
    """What the appender and the lease loop write to: a ``RespConnection`` (standalone) or a
    router over one per primary (worker/routing.py)."""

    retries: bool  # resends after a failover: appends then carry a batch token

    def send(self, cmd: bytes, cb: Callback, key: str = "") -> None: ...

    async def aclose(self) -> None: ...


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: RespConnection) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.owner._waiting
        while (reply := self.reader.gets()) is not False:
            if not waiting:
                continue  # cannot happen: Redis answers only what was asked
            _, cb = waiting.popleft()
            try:
                cb(reply)
            except Exception:  # a callback's bug must not kill the connection
                log.exception("resp: reply callback failed")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.owner._lost(self, exc)


class RespConnection:
    """One connection; ``send`` queues commands, written together at the end of the iteration."""

    retries = False  # a command is sent once (worker/routing.py resends on Cluster and Sentinel)

    def __init__(self, url: str | Callable[[], Awaitable[str]], name: str, scripts: tuple[str, ...] = ()) -> None:
        self.url = url
        self.name = name
        self.scripts = scripts  # loaded at every (re)connect, so EVALSHA finds them
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        self._out_cbs: list[Callback] = []
        self._flush_scheduled = False
        self._waiting: deque[tuple[float, Callback]] = deque()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    # public

    def send(self, cmd: bytes, cb: Callback, key: str = "") -> None:
        """Queue ``cmd``; ``cb`` gets its reply. ``key`` routes it on a cluster (unused here)."""
        self._out.append(cmd)
        self._out_cbs.append(cb)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def call(self, *parts: bytes | str | int) -> Reply:
        """One command, awaited (for the rare paths); errors are raised, not returned."""
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def answer(reply: Reply) -> None:
            if not fut.done():
                fut.set_result(reply)

        self.send(command(*parts), answer)
        reply = await fut
        if isinstance(reply, Exception):
            raise reply
        return reply

    def drop(self) -> None:
        """Close the connection; the next command reconnects (behind Sentinel: to whichever
        server is primary then)."""
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.abort()

    async def aclose(self) -> None:
        self._closed = True  # nothing reconnects from here on (a flush scheduled earlier included)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        proto = self._proto
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proto.closed), SOCKET_TIMEOUT_S)

    # internals

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            self._fail_queued(RedisConnectionError(f"{self.name}: closed"))
            return
        proto = self._proto
        if proto is None or proto.transport is None or proto.transport.is_closing():
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        if not self._out:
            return
        data, cbs = b"".join(self._out), self._out_cbs
        self._out, self._out_cbs = [], []
        now = asyncio.get_running_loop().time()
        self._waiting.extend((now, cb) for cb in cbs)
        proto.transport.write(data)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            u = urlparse(self.url if isinstance(self.url, str) else await self.url())
            proto = _Protocol(self)
            async with asyncio.timeout(SOCKET_TIMEOUT_S):
                if u.scheme == "unix":
                    await loop.create_unix_connection(lambda: proto, unquote(u.path))
                else:
                    await loop.create_connection(lambda: proto, u.hostname or "127.0.0.1", u.port or 6379,
                                                 ssl=u.scheme == "rediss" or None)
            assert proto.transport is not None
            if self._closed:
                proto.transport.close()
                return
            db = (parse_qs(u.query).get("db") or [""])[0] if u.scheme == "unix" else u.path.strip("/")
            hello: list[bytes] = []
            if u.password:
                hello.append(command(b"AUTH", *([unquote(u.username)] if u.username else []), unquote(u.password)))
            if db and db != "0":
                hello.append(command(b"SELECT", db))
            hello.append(command(b"CLIENT", b"SETNAME", self.name))
            hello += [command(b"SCRIPT", b"LOAD", s) for s in self.scripts]
            now = loop.time()
            self._waiting.extend((now, _check_handshake) for _ in hello)
            self._proto = proto
            proto.transport.write(b"".join(hello))
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = loop.create_task(self._watch())
        except (OSError, TimeoutError, RedisError) as exc:  # RedisError: no sentinel knows a primary
            self._fail_queued(RedisConnectionError(f"{self.name}: cannot connect to Redis: {exc}"))
        finally:
            self._connecting = None
        if self._out:
            self._flush()

    def _fail_queued(self, exc: Exception) -> None:
        cbs, self._out, self._out_cbs = self._out_cbs, [], []
        for cb in cbs:
            cb(exc)

    def _lost(self, proto: _Protocol, exc: Exception | None) -> None:
        if self._proto is proto:
            self._proto = None
        err = RedisConnectionError(f"{self.name}: connection to Redis lost ({exc or 'closed'})")
        waiting, self._waiting = self._waiting, deque()
        for _, cb in waiting:
            cb(err)

    async def _watch(self) -> None:
        """A silent Redis (no replies, connection open) is noticed within the socket timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            proto = self._proto
            if self._waiting and proto is not None and proto.transport is not None:
                if loop.time() - self._waiting[0][0] > SOCKET_TIMEOUT_S:
                    log.warning("%s: no reply from Redis within %.0fs; reconnecting", self.name, SOCKET_TIMEOUT_S)
                    with contextlib.suppress(Exception):
                        proto.transport.abort()


def _check_handshake(reply: Reply) -> None:
    if isinstance(reply, Exception):
        log.error("resp: Redis refused the handshake: %s", reply)
