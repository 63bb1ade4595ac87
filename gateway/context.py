"""The per-process services the routes use, created by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from arq.connections import ArqRedis
from starlette.requests import Request

from gateway.hub import Hub
from gateway.limits import OpenStreams
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
    draining: bool = False


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
