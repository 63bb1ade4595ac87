"""Data a scenario needs, written through the project's own stores (never by hand)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from shared import models
from shared.events import Done, RetrieverSummary, encode_payload
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.session_log import UserEntry
from shared.stores.sessions import SessionStore
from shared.stores.tenancy import TenantStore, new_api_key

T = TypeVar("T")


@dataclass(frozen=True)
class Tenant:
    key: str
    namespace: str
    ns_id: str
    org_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Namespace": self.namespace,
                "Accept": "text/event-stream"}


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], limit: int = 32) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with sem:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


class Fixtures:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.sessions = SessionStore(redis, settings)
        self.messages = MessageStore(redis, settings)

    async def tenant(self) -> Tenant:
        key = new_api_key()
        name = f"bench-{os.urandom(3).hex()}"
        ns_id, org_id = await TenantStore(self.redis).register_key(key, name)
        return Tenant(key, name, ns_id, org_id)

    async def new_sessions(self, t: Tenant, n: int) -> list[str]:
        req = models.CreateSessionRequest(agent_config=models.AgentConfig(model=models.BUILTIN_MODEL))

        async def create(_: int) -> str:
            h = await self.sessions.create(t.ns_id, t.org_id, req, models.BUILTIN_MODEL)
            return h[b"session_id"].decode()

        return await bounded(range(n), create)

    async def new_messages(self, t: Tenant, n: int) -> list[tuple[str, str]]:
        """n accepted messages, one per session, with no job: nothing but the bench writes to them."""
        ses_ids = await self.new_sessions(t, n)

        async def accept(ses_id: str) -> tuple[str, str]:
            msg_id = new_id("msg")
            content = "bench"
            _, final = await self.messages.accept(
                ses_id, t.ns_id, msg_id, UserEntry(message_id=msg_id, ts=now_ms(), content=content), content,
                None, hashlib.sha256(msg_id.encode()).hexdigest())
            return ses_id, final

        return await bounded(ses_ids, accept)

    async def stored_stream(self, t: Tenant, n_events: int, batch: int = 500) -> tuple[str, str]:
        """A message whose stream holds n_events (tokens, then ``done``), appended through the
        worker's fenced APPEND script with a claimed attempt."""
        [(ses_id, msg_id)] = await self.new_messages(t, 1)
        attempt, _ = await self.messages.claim(ses_id, msg_id, "bench-fixture")
        payloads = [("token", b'{"content":"tok","seq":%d,"ts":0}' % i) for i in range(1, n_events)]
        payloads.append(("done", encode_payload(Done(latency_ms=0.0, tool_calls_made=0, message_id=msg_id,
                                                     retriever_summary=RetrieverSummary(),
                                                     data_accessed_via_retriever=False))))
        for i in range(0, len(payloads), batch):
            await self.messages.append_raw(ses_id, msg_id, attempt, payloads[i:i + batch])
        return ses_id, msg_id


def events_path(ses_id: str, msg_id: str) -> str:
    return f"/v1/agents/sessions/{ses_id}/messages/{msg_id}/events"
