"""What a worker process holds, created in arq's on_startup (never at import time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from arq.connections import ArqRedis

from shared.models import BUILTIN_MODEL
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.sessions import SessionStore
from worker.models.base import Model
from worker.models.builtin import BuiltinModel
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

    def model_for(self, name: str) -> Model:
        if name == BUILTIN_MODEL or not self.settings.anthropic_api_key:
            return self.models.setdefault(BUILTIN_MODEL, BuiltinModel(self.settings.builtin_token_delay_ms,
                                                                       self.settings.builtin_first_token_delay_ms))
        if name not in self.models:
            from worker.models.anthropic import AnthropicModel  # noqa: PLC0415 - optional provider

            key = self.settings.anthropic_api_key
            self.models[name] = AnthropicModel(api_key=key.reveal() if key else "",
                                               base_url=self.settings.anthropic_base_url)
        return self.models[name]


def tool_registry() -> dict[str, Any]:
    from worker.tools.data import TOOLS  # noqa: PLC0415

    return dict(TOOLS)
