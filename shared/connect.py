"""Redis clients, built from settings in lifecycle hooks (never at import time), and where the
embedded server (``cli/embedded.py``) answers for a data dir."""

from __future__ import annotations

import os
from pathlib import Path

import redis
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


def socket_path(data_dir: str | Path) -> Path:
    return Path(data_dir).resolve() / "redis.sock"


def url_for(data_dir: str | Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def is_running(data_dir: str | Path) -> bool:
    sock = socket_path(data_dir)
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def resolve_url(redis_url: str | None, data_dir: str) -> str:
    """The Redis the CLI should talk to: the configured URL, else the embedded one."""
    if redis_url:
        return redis_url
    if not is_running(data_dir):
        raise ConnectionError(
            f"no Redis: AGENTSTREAM_REDIS_URL is unset and no embedded server answers under "
            f"{os.path.abspath(data_dir)} (start one with `make run` or set AGENTSTREAM_DATA_DIR)"
        )
    return url_for(data_dir)
