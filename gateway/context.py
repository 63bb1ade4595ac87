"""The per-process services the routes use, created by the app's lifespan."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from arq.connections import ArqRedis
from starlette.requests import Request

from gateway.hub import Hub
from gateway.keywatch import KeyWatch
from gateway.limits import Leases, OpenStreams
from shared import keys
from shared.errors import Unavailable
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore
from shared.stores.tenancy import TenantStore


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    arq: ArqRedis
    hub: Hub
    messages: MessageStore
    sessions: SessionStore
    tenants: TenantStore
    streams: OpenStreams
    leases: Leases
    keywatch: KeyWatch | None = None
    draining: bool = False
    token_secret: bytes = b""  # from the settings, or loaded from Redis on first use

    def refuse_when_draining(self) -> None:
        """After SIGTERM: new sends and new streams go to another gateway (gateway/main.py)."""
        if self.draining:
            raise Unavailable("This gateway is shutting down; retry", code="draining",
                              headers={"Retry-After": "1"}, details={"retryable": True, "retry_after_seconds": 1})

    async def stream_token_secret(self) -> bytes:
        """The HMAC secret of stream tokens: the setting, or one shared through Redis (made
        once, by whichever gateway asks first)."""
        if not self.token_secret:
            if self.settings.stream_token_secret:
                self.token_secret = self.settings.stream_token_secret.reveal().encode()
            else:
                await self.redis.set(keys.STREAM_TOKEN_SECRET, secrets.token_hex(32), nx=True)
                self.token_secret = await self.redis.get(keys.STREAM_TOKEN_SECRET)
        return self.token_secret


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
