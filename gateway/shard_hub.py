"""The live path on a Redis Cluster: sharded pub/sub, one connection per shard with subscribers.

The append script SPUBLISHes each entry on the message's channel, which Redis delivers only on
the shard that owns the channel's slot (the session's hash tag). So this hub keeps, per primary
that serves a subscribed channel, one raw connection (the same asyncio Protocol + hiredis path
as ``gateway/hub.py``) and SSUBSCRIBEs each channel there.

The topology may change under a live stream: a slot migrates (Redis pushes ``sunsubscribe``
for its channels, or answers ``MOVED``), or a primary dies and a replica is promoted (the
connection drops). The hub then refreshes the slot map, SSUBSCRIBEs again at the new owner and,
once Redis confirms, tells every affected subscription to catch up from its stream
(``Subscription.lagging``): readers skip what they already sent by id, so a move loses and
repeats nothing. Entries a failover lost from the stream itself are the stream reader's
business (it answers a ``reset``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import RedisClusterException, RedisError

from gateway.hub import Hub, HubClosed, Subscription, _Channel, _command, deliver

log = logging.getLogger("agentstream.hub")
RETRY_S = 0.2  # between attempts to find a channel's new owner (a failover takes seconds)


class _ShardConnection(asyncio.Protocol):
    def __init__(self, hub: ShardedHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.channels: set[bytes] = set()
        self.inflight: deque[tuple[bytes, bytes]] = deque()  # (command, channel) awaiting a reply
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.handshake = 0  # replies to AUTH / CLIENT SETNAME still to come

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.hub._dispatch(self, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.hub._shard_lost(self)

    def send(self, command: bytes, channel: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.inflight.append((command, channel))
            self.transport.write(_command(command, channel))


class ShardedHub(Hub):
    """``Hub``'s surface (subscribe, unsubscribe, close_all, connected, delivered) over shards;
    it inherits the subscriptions, the channel bookkeeping, the idle sweep and the heartbeats,
    not the connection handling."""

    def __init__(self, cluster: Any, buffer: int = 1024, idle_unsubscribe_s: float = 5.0,  # noqa: PLW0231
                 heartbeat_s: float = 15.0) -> None:
        self.cluster = cluster  # shared.backends.cluster.ClusterClient: the slot map's source
        self.buffer = buffer
        self.idle_unsubscribe_s = idle_unsubscribe_s
        self.heartbeat_s = heartbeat_s
        self.channels: dict[bytes, _Channel] = {}
        self.shards: dict[str, _ShardConnection] = {}
        self._where: dict[bytes, str] = {}  # channel -> shard it is subscribed on
        self._idle: dict[bytes, float] = {}
        self._homeless: set[bytes] = set()  # channels waiting for a new owner
        self._rehome = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._stopping = False
        self.delivered = 0
        self.moves = 0  # resubscriptions after a topology change (tests, metrics)

    # lifecycle

    async def start(self) -> None:
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await self.cluster.initialize()
            self._ready = True
        self._tasks = [asyncio.create_task(self._rehomer(), name="hub-rehome"),
                       asyncio.create_task(self._sweep(), name="hub-sweep"),
                       asyncio.create_task(self._heartbeats(), name="hub-heartbeats")]

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.close_all("shutdown")
        for shard in list(self.shards.values()):
            if shard.transport is not None:
                shard.transport.close()

    @property
    def connected(self) -> bool:
        return self._ready

    def shard_connections(self) -> int:
        return len(self.shards)

    # subscriptions

    async def subscribe(self, channel: str, timeout_s: float = 5.0) -> Subscription:
        if not self._ready:
            try:
                await self.cluster.initialize()
                self._ready = True
            except (RedisError, RedisClusterException, OSError) as exc:
                raise HubClosed(f"live path not connected: {exc}") from None
        name = channel.encode()
        sub = Subscription(self, name, self.buffer)
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = _Channel()
        self._idle.pop(name, None)
        state.subs.add(sub)
        try:
            if state.unsubscribing or (state.pending == 0 and not state.ready.done()):
                state.unsubscribing = False
                if state.ready.done():
                    state.ready = asyncio.get_running_loop().create_future()
                await self._place(name, state)
            await asyncio.wait_for(asyncio.shield(state.ready), timeout_s)
        except (OSError, RedisError, RedisClusterException) as exc:  # no reachable owner yet (failing over)
            self.unsubscribe(sub)
            raise HubClosed(f"live path not connected: {exc}") from None
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    # placement

    async def _place(self, name: bytes, state: _Channel, node: str | None = None) -> None:
        """SSUBSCRIBE ``name`` at the primary that owns its slot (or at ``node``, from MOVED)."""
        if node is None:
            owner = self.cluster.nodes_manager.get_node_from_slot(self.cluster.keyslot(name))
            node = owner.name
        shard = await self._shard(node)
        state.pending += 1
        shard.channels.add(name)
        self._where[name] = node
        shard.send(b"SSUBSCRIBE", name)

    async def _shard(self, node: str) -> _ShardConnection:
        shard = self.shards.get(node)
        if shard is not None and shard.transport is not None and not shard.transport.is_closing():
            return shard
        host, _, port = node.rpartition(":")
        shard = _ShardConnection(self, node)
        await asyncio.get_running_loop().create_connection(lambda: shard, host, int(port))
        assert shard.transport is not None
        handshake = []
        password = self.cluster.nodes_manager.connection_kwargs.get("password")
        if password:
            handshake.append(_command(b"AUTH", password.encode()))
        handshake.append(_command(b"CLIENT", b"SETNAME", b"agentstream-hub"))
        shard.handshake = len(handshake)
        shard.transport.write(b"".join(handshake))
        self.shards[node] = shard
        return shard

    def _lose(self, name: bytes) -> None:
        """The channel's subscription is gone from its shard: find the new owner."""
        self._where.pop(name, None)
        state = self.channels.get(name)
        if state is None:
            return
        if not state.subs:
            del self.channels[name]
            return
        state.pending = 0
        self._homeless.add(name)
        self._rehome.set()

    def _shard_lost(self, shard: _ShardConnection) -> None:
        if self.shards.get(shard.name) is shard:
            del self.shards[shard.name]
        if self._stopping or not shard.channels:
            return
        log.warning("hub: lost shard %s (%d channels); resubscribing elsewhere", shard.name, len(shard.channels))
        for name in shard.channels:
            if self._where.get(name) == shard.name:
                self._lose(name)
        shard.channels.clear()

    async def _rehomer(self) -> None:
        while True:
            await self._rehome.wait()
            self._rehome.clear()
            try:
                await self.cluster.nodes_manager.initialize()
                for name in list(self._homeless):
                    state = self.channels.get(name)
                    if state is None or not state.subs:
                        self.channels.pop(name, None)
                    else:
                        state.unsubscribing = False
                        await self._place(name, state)
                        self.moves += 1
                    self._homeless.discard(name)
            except (RedisError, RedisClusterException, OSError) as exc:  # mid-failover: no owner yet
                log.warning("hub: cannot resubscribe yet (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)
                self._rehome.set()

    # replies

    def _dispatch(self, shard: _ShardConnection, reply: object) -> None:  # type: ignore[override]
        if type(reply) is not list:
            if shard.handshake:
                shard.handshake -= 1
                if isinstance(reply, hiredis.ReplyError):
                    log.error("hub: Redis refused the handshake: %s", reply)
                return
            if isinstance(reply, hiredis.ReplyError) and shard.inflight:
                _, name = shard.inflight.popleft()
                # MOVED <slot> <host:port>: the map was stale; go where Redis says.
                log.info("hub: %s for %r; resubscribing", reply, name)
                shard.channels.discard(name)
                self._lose(name)
            return
        kind = reply[0]
        if kind == b"smessage":
            state = self.channels.get(reply[1])
            if state is None:
                return
            self.delivered += deliver(state, reply[2])
        elif kind == b"ssubscribe":
            if shard.inflight:
                shard.inflight.popleft()
            state = self.channels.get(reply[1])
            if state is not None and state.pending > 0:
                state.pending -= 1
                if state.pending == 0:
                    if state.ready.done():
                        # A resubscription after a move: entries may have gone by meanwhile.
                        for sub in state.subs:
                            sub.queue.clear()
                            sub.lagging = True
                            sub.wake.set()
                    else:
                        state.ready.set_result(None)
        elif kind == b"sunsubscribe":
            name = reply[1]
            ours = bool(shard.inflight) and shard.inflight[0] == (b"SUNSUBSCRIBE", name)
            if ours:
                shard.inflight.popleft()
            shard.channels.discard(name)
            state = self.channels.get(name)
            if ours and state is not None and state.unsubscribing and not state.subs:
                del self.channels[name]
                self._where.pop(name, None)
            elif not ours and self._where.get(name) == shard.name:
                # Pushed by Redis: the channel's slot left this shard (resharding, failover).
                self._lose(name)
            if not shard.channels and not shard.inflight and shard.transport is not None:
                shard.transport.close()  # no subscriber left on this shard

    def _release(self, name: bytes, state: _Channel) -> None:
        """An idle channel leaves the shard it is subscribed on (``Hub._sweep`` finds them)."""
        node = self._where.get(name)
        shard = self.shards.get(node) if node else None
        if shard is None:
            del self.channels[name]
            self._where.pop(name, None)
            return
        state.unsubscribing = True
        shard.send(b"SUNSUBSCRIBE", name)
