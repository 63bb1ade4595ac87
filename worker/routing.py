"""The worker's hot paths (group-commit appends, lease renewals) on a Cluster or behind Sentinel.

On standalone the appender and the lease loop each write to one ``RespConnection``; nothing here
runs. On a cluster a batch's APPEND must reach the primary that owns its session's slot, and a
RENEW the primary of its message record; behind Sentinel, whichever server is primary now. This
keeps the lean connection (one per primary: the slot map is redis-py's ``RedisCluster``'s) and
adds what a topology change needs:

* ``MOVED`` (the slot moved: resharding, or a promoted replica): the slot is sent where Redis
  says at once, and the whole map is re-read in the background;
* ``ASK`` (the slot is migrating and this key has left): ``ASKING`` + the command at the target;
* ``TRYAGAIN`` / ``CLUSTERDOWN`` / ``READONLY`` / ``LOADING`` / ``MASTERDOWN`` or a lost
  connection (a primary died, or was demoted under the connection): wait a moment, re-read the
  topology (the slot map, or ask the sentinels again), resend;

for up to ``FAILOVER_WINDOW_S``, after which the caller gets the error as before (the appender
fails the message's pending events; the lease loop logs and tries next round). A retried APPEND
whose first run did write (the reply was lost with the connection) is a no-op thanks to its
batch token (shared/scripts.py); RENEW is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import hiredis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from worker.resp import Callback, Reply, RespConnection, command

log = logging.getLogger("agentstream.worker")

FAILOVER_WINDOW_S = 15.0  # a dead primary is replaced within node-timeout / down-after + an election
RETRY_PAUSE_S = 0.2
_TRANSIENT = ("TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN")


def _kind(reply: Reply) -> str | None:
    """Why a reply asks for a retry elsewhere or later, if it does."""
    if isinstance(reply, hiredis.ReplyError):
        head = str(reply).split(" ", 1)[0]
        if head in ("MOVED", "ASK") or head in _TRANSIENT:
            return head
        return None
    if isinstance(reply, RedisConnectionError):
        return "LOST"
    return None


class _Router:
    """What Cluster and Sentinel share: resend a command until its answer is final."""

    retries = True  # appends carry a batch token (a retried batch must not be written twice)

    def __init__(self, name: str, scripts: tuple[str, ...]) -> None:
        self.name = name
        self.scripts = scripts
        self._refreshing: asyncio.Task[None] | None = None
        self.retried = 0  # resends after a topology change (tests read it)

    def send(self, cmd: bytes, cb: Callback, key: str = "") -> None:
        self._send(cmd, cb, key, None, None)

    async def call(self, *parts: bytes | str | int, key: str = "") -> Reply:
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def answer(reply: Reply) -> None:
            if not fut.done():
                fut.set_result(reply)

        self.send(command(*parts), answer, key)
        reply = await fut
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _send(self, cmd: bytes, cb: Callback, key: str, deadline: float | None, ask: str | None) -> None:
        try:
            conn = self._connection(key, ask)
        except (KeyError, IndexError, RedisError) as exc:  # no map yet, or the slot has no owner now
            loop = asyncio.get_running_loop()
            until = deadline if deadline is not None else loop.time() + FAILOVER_WINDOW_S
            if loop.time() > until:
                cb(RedisConnectionError(f"{self.name}: no primary serves {key!r}: {exc!r}"))
            else:
                self._after_refresh(lambda: self._send(cmd, cb, key, until, None), "UNCOVERED")
            return
        if ask is not None:
            conn.send(command(b"ASKING"), lambda _: None)  # same connection, same write: next to cmd

        def answer(reply: Reply) -> None:
            kind = _kind(reply)
            loop = asyncio.get_running_loop()
            until = deadline if deadline is not None else loop.time() + FAILOVER_WINDOW_S
            if kind is None or loop.time() > until:
                cb(reply)
                return
            self.retried += 1
            if kind == "ASK":
                self._send(cmd, cb, key, until, str(reply).split()[2])
            elif kind == "MOVED":
                self._moved(key, str(reply).split()[2])
                self._send(cmd, cb, key, until, None)
            else:
                self._after_refresh(lambda: self._send(cmd, cb, key, until, None), kind)

        conn.send(cmd, answer)

    def _after_refresh(self, resend: Callable[[], None], kind: str) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_soon(kind))
        self._refreshing.add_done_callback(lambda _: resend())

    async def _refresh_soon(self, kind: str) -> None:
        await asyncio.sleep(RETRY_PAUSE_S)
        try:
            await self._refresh(kind)
        except Exception as exc:  # noqa: BLE001 - mid-failover nobody may answer yet; the resend tells
            log.info("%s: topology not readable yet (%s)", self.name, exc)

    # per topology

    def _connection(self, key: str, node: str | None) -> RespConnection:
        raise NotImplementedError

    def _moved(self, key: str, node: str) -> None:
        raise NotImplementedError

    async def _refresh(self, kind: str) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class ClusterRouter(_Router):
    """One ``RespConnection`` per primary, chosen by the key's slot in ``RedisCluster``'s map."""

    def __init__(self, cluster: Any, name: str, scripts: tuple[str, ...] = ()) -> None:
        super().__init__(name, scripts)
        self.cluster = cluster  # shared.backends.cluster.ClusterClient
        self.conns: dict[str, RespConnection] = {}
        self._slots: dict[int, str] = {}  # slot -> "host:port", from MOVED, until the next refresh
        kw = cluster.nodes_manager.connection_kwargs
        self._auth = ""
        if kw.get("password"):
            user = quote(kw.get("username") or "", safe="")
            self._auth = f"{user}:{quote(kw['password'], safe='')}@"

    def _connection(self, key: str, node: str | None) -> RespConnection:
        if node is None:
            slot = key_slot(key.encode())
            node = self._slots.get(slot) or self.cluster.nodes_manager.get_node_from_slot(slot).name
        conn = self.conns.get(node)
        if conn is None:
            conn = self.conns[node] = RespConnection(f"redis://{self._auth}{node}", self.name, self.scripts)
        return conn

    def _moved(self, key: str, node: str) -> None:
        self._slots[key_slot(key.encode())] = node
        self._after_refresh(lambda: None, "MOVED")

    async def _refresh(self, kind: str) -> None:
        await self.cluster.nodes_manager.initialize()
        self._slots.clear()

    async def aclose(self) -> None:
        for conn in self.conns.values():
            await conn.aclose()


class SentinelRouter(_Router):
    """One ``RespConnection`` that asks the sentinels where the primary is at every connect."""

    def __init__(self, primary_url: Callable[[], Awaitable[str]], name: str, scripts: tuple[str, ...] = ()) -> None:
        super().__init__(name, scripts)
        self.conn = RespConnection(primary_url, name, scripts)

    def _connection(self, key: str, node: str | None) -> RespConnection:
        return self.conn

    def _moved(self, key: str, node: str) -> None:  # no slots behind Sentinel
        self._after_refresh(lambda: None, "MOVED")

    async def _refresh(self, kind: str) -> None:
        if kind != "LOST":
            self.conn.drop()  # READONLY: a demoted primary; reconnect asks the sentinels again

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.aclose()


def hot_connection(backend: Any, redis: Any, name: str, scripts: tuple[str, ...]) -> Any:
    """The appender's or the lease loop's connection for this topology: standalone keeps its
    one plain ``RespConnection`` (nothing added per command)."""
    if backend.sharded:
        return ClusterRouter(redis, name, scripts)
    if backend.name == "sentinel":
        return SentinelRouter(backend.primary_url, name, scripts)
    return RespConnection(backend.url, name, scripts)
