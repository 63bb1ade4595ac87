"""Where Redis is and how to reach it: one small interface, one module per topology.

The stores never know which topology they run on: they get a client with the ``Redis`` command
API (redis-py's ``RedisCluster`` keeps it). What differs is how to connect, where arq's queue
lives, which address the gateway's hub subscribes at, and whether live entries travel by sharded
pub/sub. ``from_settings`` is called once per process, in a lifecycle hook.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from shared import connect
from shared.settings import Settings


class Backend(Protocol):
    name: str  # "standalone" | "cluster" | "sentinel"
    # Live entries go by SPUBLISH and the hub holds one SSUBSCRIBE connection per shard.
    sharded: bool
    # arq's queue lives in the data Redis: a script may touch the queue and session keys in one
    # step. False on Cluster (the queue is on its own Redis): accept, then enqueue, in two steps.
    queue_shared: bool

    def client(self, max_connections: int | None = None) -> aioredis.Redis:
        """The command client for every data key (sessions, messages, streams, indexes)."""

    def queue_client(self, max_connections: int | None = None) -> aioredis.Redis:
        """A client for arq's keys and the inbound stream (the data Redis unless on a cluster)."""

    async def primary_url(self) -> str:
        """The URL of the primary to subscribe at now (unsharded hubs; asked at each connect)."""

    async def check(self, client: aioredis.Redis) -> None:
        """Fail fast, naming the setting, when the servers cannot serve this topology."""


def from_settings(settings: Settings, redis_url: str | None = None) -> Backend:
    """``redis_url`` (already resolved, e.g. the embedded server's socket) wins for standalone."""
    if settings.redis_cluster_nodes:
        from shared.backends.cluster import ClusterBackend

        return ClusterBackend(settings)
    if settings.redis_sentinels:
        from shared.backends.sentinel import SentinelBackend

        return SentinelBackend(settings)
    from shared.backends.standalone import StandaloneBackend

    return StandaloneBackend(redis_url or connect.resolve_url(settings.redis_url, settings.data_dir))


def parse_addresses(addresses: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    for a in addresses:
        host, _, port = a.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def is_cluster(client: Any) -> bool:
    """A cluster client: live entries go by SPUBLISH, transactions must stay in one slot."""
    return isinstance(client, RedisCluster)


def retries_writes(client: Any) -> bool:
    """The client retries a command after a failover or a slot move (Cluster, Sentinel), so a
    write whose reply was lost may run twice: appends then carry a batch token."""
    return bool(getattr(client, "retries_writes", False))


def pipeline(client: Any) -> Any:
    """A MULTI/EXEC pipeline, except on a cluster, where its keys may span slots: there the
    commands run one after the other, in order. For the few writes across global keys (a new
    API key and its indexes, a session and its namespace's index): each caller writes the
    record before the index that names it, so a crash in between leaves a record no index
    lists yet, never an index entry without its record."""
    if is_cluster(client):
        from shared.backends.transactions import Sequential  # noqa: PLC0415 - cluster only

        return Sequential(client)
    return client.pipeline(transaction=True)
