"""One Redis at a URL (the embedded server by default): today's topology."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared import connect


class StandaloneBackend:
    name = "standalone"
    sharded = False
    queue_shared = True

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, max_connections: int | None = None) -> aioredis.Redis:
        return connect.client(self.url, max_connections=max_connections)

    def queue_client(self, max_connections: int | None = None) -> aioredis.Redis:
        return self.client(max_connections)

    async def primary_url(self) -> str:
        return self.url

    async def check(self, client: aioredis.Redis) -> None:
        return None
