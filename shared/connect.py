"""Redis clients, built from settings in lifecycle hooks (never at import time)."""

from __future__ import annotations

import redis.asyncio as aioredis

SOCKET_TIMEOUT_S = 5.0  # silent network loss is noticed within this


def client(url: str, max_connections: int | None = None, blocking: bool = True) -> aioredis.Redis:
    """A client whose pool is bounded. With ``blocking`` a caller beyond the bound waits for a
    connection instead of opening another: Redis connections per process stay a constant."""
    kwargs = dict(
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        retry_on_timeout=False,
    )
    pool: aioredis.ConnectionPool
    if max_connections and blocking:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=10, **kwargs)
    else:
        pool = aioredis.ConnectionPool.from_url(url, max_connections=max_connections, **kwargs)
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
