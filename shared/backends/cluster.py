"""Redis Cluster: redis-py's ``RedisCluster`` from seed nodes, sharded pub/sub for the live path,
and arq's queue, with the inbound wake-up stream, on its own Redis (``AGENTSTREAM_QUEUE_URL``;
arq does not speak Cluster).

Every session-scoped key carries the session id as a hash tag, so a session lives on one shard
and each Lua script stays single-slot; the other process-wide keys (active, workers, compact,
API keys, namespaces) are single keys, each on whichever shard owns its slot, touched by
single-key commands or by ``backends.pipeline``'s ordered steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import connect
from shared.backends import parse_addresses
from shared.backends.transactions import CrossSlotTransaction, SlotTransaction
from shared.settings import Settings, SettingsError

MIN_VERSION = (7, 0)  # SPUBLISH / SSUBSCRIBE
# A dead primary is replaced after cluster-node-timeout plus an election (seconds): commands
# wait for that rather than fail at once (redis-py retries 3 times without a pause).
FAILOVER_WINDOW_S = 15.0
RETRY_PAUSE_S = 0.25


class ClusterClient(RedisCluster):
    """``RedisCluster`` whose transactional pipelines run on the node of their one slot."""

    retries_writes = True  # commands ride out a failover window (execute_command below)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._node_clients: dict[str, aioredis.Redis] = {}

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction:
            return SlotTransaction(self.node_client_for, self.refresh)
        return super().pipeline(transaction, shard_hint)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        deadline = asyncio.get_running_loop().time() + FAILOVER_WINDOW_S
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError, ClusterDownError, SlotNotCoveredError):
                if kwargs.get("target_nodes") or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S)
                self._initialize = True  # re-read the slot map: a replica may own it now

    async def refresh(self) -> None:
        await self.nodes_manager.initialize()

    async def node_client_for(self, names: Iterable[Any]) -> aioredis.Redis:
        """A plain client to the primary that owns the one slot of ``names``."""
        await self.initialize()
        slots = {self.keyslot(n) for n in names}
        if len(slots) != 1:
            raise CrossSlotTransaction(f"transaction over {len(slots)} slots ({sorted(slots)}): keys must share a hash tag")
        node = self.nodes_manager.get_node_from_slot(slots.pop())
        client = self._node_clients.get(node.name)
        if client is None:
            kw = node.connection_kwargs
            client = self._node_clients[node.name] = aioredis.Redis(
                host=node.host, port=int(node.port), password=kw.get("password"), username=kw.get("username"),
                socket_timeout=connect.SOCKET_TIMEOUT_S, socket_connect_timeout=connect.SOCKET_TIMEOUT_S)
        return client

    async def aclose(self) -> None:  # type: ignore[override]
        for client in self._node_clients.values():
            await client.aclose()
        self._node_clients.clear()
        await super().aclose()


class ClusterBackend:
    name = "cluster"
    sharded = True
    queue_shared = False

    def __init__(self, settings: Settings) -> None:
        self.seeds = parse_addresses(settings.redis_cluster_nodes)
        self.password = settings.redis_password.reveal() if settings.redis_password else None
        assert settings.queue_url is not None  # settings validation requires it
        self.queue_url = settings.queue_url

    def client(self, max_connections: int | None = None) -> aioredis.Redis:
        # RedisCluster bounds connections per node and fails beyond the bound rather than wait;
        # its pool per node grows to the concurrency in flight instead.
        cluster = ClusterClient(startup_nodes=[ClusterNode(h, p) for h, p in self.seeds],  # type: ignore[abstract]
                                password=self.password,
                                socket_timeout=connect.SOCKET_TIMEOUT_S,
                                socket_connect_timeout=connect.SOCKET_TIMEOUT_S,
                                require_full_coverage=False, reinitialize_steps=5)
        return cast(aioredis.Redis, cluster)

    def queue_client(self, max_connections: int | None = None) -> aioredis.Redis:
        return connect.client(self.queue_url, max_connections=max_connections)

    async def primary_url(self) -> str:
        raise NotImplementedError("a cluster has one primary per shard: the sharded hub asks the slot map")

    async def check(self, client: aioredis.Redis) -> None:
        info = await client.info("server")
        version = info.get("redis_version", "0") if isinstance(info, dict) else "0"
        if isinstance(version, dict):  # RedisCluster answers per node when asked for all
            version = min(v.get("redis_version", "0") for v in version.values())
        parts = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())
        if parts < MIN_VERSION:
            raise SettingsError(f"AGENTSTREAM_REDIS_CLUSTER_NODES: Redis {version} has no sharded pub/sub "
                                "(SPUBLISH); cluster mode needs Redis >= 7.0")
