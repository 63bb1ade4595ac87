"""Per-key limits kept in Redis, so they hold across every gateway replica.

* ``AGENTSTREAM_RATE_LIMIT_PER_MINUTE``: requests per API key per fixed one-minute window.
* ``AGENTSTREAM_MAX_STREAMS_PER_KEY``: open SSE streams per API key. Each open stream holds a
  lease in a sorted set that its gateway renews every heartbeat (``Leases``, one task per
  process), so a gateway that dies without closing its streams frees their slots within a few
  heartbeats.
* ``AGENTSTREAM_MAX_OPEN_STREAMS``: long-lived streams per gateway process (kept in the process,
  derived from its file-descriptor limit by default): past it, new streams get 503.

Every long-lived stream takes a ``StreamSlot``: message events, the session log, and any later
stream route (issue 15.5: the session log took none, so the per-key limit could be walked around).
"""

from __future__ import annotations

import contextlib
import resource
import time
from typing import Any

import anyio
import redis.asyncio as aioredis

from gateway.periodic import Periodic
from shared import keys
from shared.errors import RateLimited, Unavailable
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


class OpenStreams:
    """The long-lived streams this gateway process holds, against a ceiling below its file
    descriptor limit: past it a new stream gets 503 + Retry-After, so streams alone can never
    exhaust the descriptors every tenant's requests need (issue 15.5)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def take(self) -> None:
        if self.count >= self.limit:
            raise Unavailable("This gateway holds as many event streams as it can; retry shortly",
                              code="too_many_open_streams",
                              details={"retryable": True, "retry_after_seconds": 1, "limit": self.limit},
                              headers={"Retry-After": "1"})
        self.count += 1

    def give_back(self) -> None:
        self.count -= 1


def stream_ceiling(settings: Settings) -> int:
    """``AGENTSTREAM_MAX_OPEN_STREAMS``, or derived from the soft RLIMIT_NOFILE: a quarter of the
    descriptors (at least 128) stays for Redis, ordinary requests and the process itself."""
    if settings.max_open_streams:
        return settings.max_open_streams
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - max(128, soft // 4))


def raise_fd_limit() -> None:
    """Raise the soft descriptor limit to the hard one: the soft one (often 1024) is a shell
    default, not a budget. Called once at gateway start, before the ceiling is derived."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class HoldingSlot:
    """An ASGI response that holds a stream slot until it has finished, however it ends."""

    def __init__(self, response: Any, slot: StreamSlot) -> None:
        self.response = response
        self.slot = slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            await self.slot.release()


class Leases(Periodic):
    """The per-key stream slots this process holds, renewed together by one task: each
    heartbeat, one ``ZADD XX`` and one ``PEXPIRE`` per key in one pipeline, where each stream had
    its own renewal task and two writes (and most streams end before their first renewal, so the
    task was created and cancelled for nothing). ``XX`` never brings back a slot released since
    the snapshot; a slot taken since has a fresh lease of its own. A gateway that dies renews
    nothing, so its slots lapse within ``lease_ms``."""

    def __init__(self, redis: aioredis.Redis, heartbeat_s: float) -> None:
        super().__init__("stream-leases", heartbeat_s, self.renew)
        self.redis = redis
        self.heartbeat_s = heartbeat_s
        self.lease_ms = int(heartbeat_s * 3 * 1000)
        self._held: dict[str, set[str]] = {}  # sorted set name -> its members held here

    def hold(self, name: str, member: str) -> None:
        self._held.setdefault(name, set()).add(member)

    def drop(self, name: str, member: str) -> None:
        members = self._held.get(name)
        if members is not None:
            members.discard(member)
            if not members:
                del self._held[name]

    async def renew(self) -> None:
        if not self._held:
            return
        until = now_ms() + self.lease_ms
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, members in self._held.items():
                pipe.zadd(name, dict.fromkeys(members, until), xx=True)
                pipe.pexpire(name, self.lease_ms)
            await pipe.execute()


class StreamSlot:
    """A stream slot, held while a body streams: one of the process's (503 if none is free)
    and, when the per-key limit is on, one of the key's (429 if none is free), whose lease
    the process's ``Leases`` renews."""

    def __init__(self, leases: Leases, settings: Settings, key_hash: str,
                 streams: OpenStreams | None = None) -> None:
        self.redis = leases.redis
        self.settings = settings
        self.name = keys.open_streams(key_hash)
        self.member = new_id("st", 10)
        self.lease_ms = leases.lease_ms
        self._leases = leases
        self._streams = streams
        self._held = False
        self._keyed = False

    async def acquire(self) -> None:
        if self._streams is not None:
            self._streams.take()
            self._held = True
        try:
            await self._acquire_for_key()
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        if self._held and self._streams is not None:
            self._held = False
            self._streams.give_back()

    async def _acquire_for_key(self) -> None:
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
        self._keyed = True
        self._leases.hold(self.name, self.member)

    async def release(self) -> None:
        self._give_back()
        if not self._keyed:
            return
        self._keyed = False
        self._leases.drop(self.name, self.member)
        # Runs in the finally of a body whose client left: Starlette has cancelled the task, and
        # anyio cancellation re-fires on every await, so the release must be shielded.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self.redis.zrem(self.name, self.member)
