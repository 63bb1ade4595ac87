"""Per-key limits kept in Redis, so they hold across every gateway replica.

* ``AGENTSTREAM_RATE_LIMIT_PER_MINUTE``: requests per API key per fixed one-minute window.
* ``AGENTSTREAM_MAX_STREAMS_PER_KEY``: open SSE streams per API key. Each open stream holds a
  lease in a sorted set that its heartbeat renews, so a gateway that dies without closing its
  streams frees their slots within a few heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import anyio
import redis.asyncio as aioredis

from shared import keys
from shared.errors import RateLimited
from shared.ids import new_id, now_ms
from shared.settings import Settings


async def check_rate(redis: aioredis.Redis, settings: Settings, key_hash: str) -> None:
    limit = settings.rate_limit_per_minute
    if not limit:
        return
    window = int(time.time() // 60)
    name = keys.rate(key_hash, window)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(name)
        pipe.expire(name, 61)
        used, _ = await pipe.execute()
    if used > limit:
        retry = max(1, 60 - int(time.time()) % 60)
        raise RateLimited(f"Rate limit of {limit} requests per minute exceeded", code="rate_limited",
                          details={"retryable": True, "retry_after_seconds": retry, "limit": limit},
                          headers={"Retry-After": str(retry)})


class StreamSlot:
    """One of the key's open-stream slots (429 if none is free), held while a body streams."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, key_hash: str) -> None:
        self.redis = redis
        self.settings = settings
        self.name = keys.open_streams(key_hash)
        self.member = new_id("st", 10)
        self.lease_ms = int(settings.heartbeat_s * 3 * 1000)
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        limit = self.settings.max_streams_per_key
        if not limit:
            return
        now = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.name, "-inf", now)
            pipe.zadd(self.name, {self.member: now + self.lease_ms})
            pipe.zcard(self.name)
            pipe.pexpire(self.name, self.lease_ms)
            _, _, count, _ = await pipe.execute()
        if count > limit:
            await self.redis.zrem(self.name, self.member)
            raise RateLimited(f"At most {limit} concurrent event streams per API key", code="too_many_streams",
                              details={"retryable": True, "retry_after_seconds": 1, "limit": limit},
                              headers={"Retry-After": "1"})
        self._renewer = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            with contextlib.suppress(Exception):
                await self.redis.zadd(self.name, {self.member: now_ms() + self.lease_ms}, xx=True)
                await self.redis.pexpire(self.name, self.lease_ms)

    async def release(self) -> None:
        if self._renewer is None:
            return
        self._renewer.cancel()
        self._renewer = None
        # Runs in the finally of a body whose client left: Starlette has cancelled the task, and
        # anyio cancellation re-fires on every await, so the release must be shielded.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self.redis.zrem(self.name, self.member)
