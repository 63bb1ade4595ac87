"""What a worker process holds, created in arq's on_startup (never at import time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from arq.connections import ArqRedis

from shared import model_catalogue
from shared.errors import Invalid
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore
from worker.appender import Appender
from worker.leases import Leases
from worker.models import registry
from worker.models.base import Model
from worker.models.errors import ProviderError
from worker.tools.base import Tool


@dataclass
class Deps:
    settings: Settings
    redis: aioredis.Redis
    arq: ArqRedis
    messages: MessageStore
    sessions: SessionStore
    tools: dict[str, Tool]
    worker_id: str
    models: dict[str, Model] = field(default_factory=dict)
    appender: Appender | None = None  # group commit of events (None: one append per emit)
    leases: Leases | None = None

    @property
    def queue_shared(self) -> bool:
        """arq's keys live in the data Redis (standalone, Sentinel), not on a queue Redis of
        their own (Cluster): one script may then touch both."""
        return getattr(self.redis, "connection_pool", None) is self.arq.connection_pool

    def model_for(self, name: str) -> Model:
        """The model object for a session's effective model: one per catalogue entry, kept."""
        try:
            resolved = model_catalogue.resolve(self.settings, name)
        except Invalid as exc:
            # The session was accepted by a gateway configured otherwise than this worker.
            raise ProviderError(f"this worker cannot run model {name!r}: {exc.message}", kind=exc.code or "",
                                provider="catalogue") from None
        key = registry.cache_key(resolved)
        if key not in self.models:
            self.models[key] = registry.build(resolved, self.settings)
        return self.models[key]


def tool_registry() -> dict[str, Any]:
    from worker.tools.data import TOOLS  # noqa: PLC0415

    return dict(TOOLS)
