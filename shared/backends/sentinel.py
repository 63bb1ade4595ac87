"""A primary watched by Sentinel: clients ask the sentinels where it is at every connect.

After a failover the old primary's connections fail (or it answers READONLY) and the pool
reconnects to the promoted replica. arq supports Sentinel, so the queue shares the primary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import connect
from shared.backends import parse_addresses
from shared.settings import Settings

FAILOVER_RETRIES = 40  # ~18 s of capped backoff: down-after + election, with room to spare


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):  # type: ignore[misc]
    """A caller beyond the bound waits for a connection (as on standalone) instead of failing."""


class _SentinelRedis(aioredis.Redis):
    """Closing the client also drops its connections to the sentinels (they reopen on demand)."""

    sentinels: Sentinel | None = None
    retries_writes = True  # reconnects to the promoted replica and retries (SentinelBackend)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for s in self.sentinels.sentinels if self.sentinels else ():
            await s.aclose()


class SentinelBackend:
    name = "sentinel"
    sharded = False
    queue_shared = True

    def __init__(self, settings: Settings) -> None:
        self.service = settings.redis_sentinel_service
        password = settings.redis_password.reveal() if settings.redis_password else None
        # A command that meets a dead or demoted primary reconnects (asking the sentinels again)
        # and retries for about the time a failover takes, instead of failing the message.
        self._kwargs: dict[str, Any] = dict(
            socket_timeout=connect.SOCKET_TIMEOUT_S, socket_connect_timeout=connect.SOCKET_TIMEOUT_S,
            health_check_interval=30, password=password,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), FAILOVER_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])
        self.sentinel = Sentinel(parse_addresses(settings.redis_sentinels),
                                 sentinel_kwargs={"socket_timeout": connect.SOCKET_TIMEOUT_S,
                                                  "socket_connect_timeout": connect.SOCKET_TIMEOUT_S},
                                 **self._kwargs)
        self._password = password

    def client(self, max_connections: int | None = None) -> aioredis.Redis:
        if max_connections:
            pool = _BlockingSentinelPool(self.service, self.sentinel, max_connections=max_connections, timeout=10,
                                         **self._kwargs)
            client = _SentinelRedis.from_pool(pool)  # type: ignore[assignment]
        else:
            client = self.sentinel.master_for(self.service, redis_class=_SentinelRedis, **self._kwargs)  # type: ignore[arg-type]
        client.sentinels = self.sentinel  # type: ignore[attr-defined]
        return client

    def queue_client(self, max_connections: int | None = None) -> aioredis.Redis:
        return self.client(max_connections)

    async def primary_url(self) -> str:
        host, port = await self.sentinel.discover_master(self.service)
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}{host}:{port}"

    async def check(self, client: aioredis.Redis) -> None:
        return None
