"""From a catalogue entry to the model object that runs it (one client per entry, kept by the worker)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from shared.model_catalogue import Resolved
from shared.settings import Settings
from worker.models.base import Model, StepEvent, Turn
from worker.models.builtin import BuiltinModel


def cache_key(resolved: Resolved) -> str:
    return f"{resolved.provider}:{resolved.entry.pattern}" if resolved.entry else resolved.provider


def build(resolved: Resolved, settings: Settings) -> Model:
    entry = resolved.entry
    if entry is None:
        return BuiltinModel(settings.builtin_token_delay_ms, settings.builtin_first_token_delay_ms)
    key = entry.api_key.reveal() if entry.api_key else None
    model: Model
    if entry.provider == "anthropic":
        from worker.models.anthropic import AnthropicModel  # noqa: PLC0415 - optional provider

        model = AnthropicModel(api_key=key or "", base_url=entry.base_url)
    else:
        from worker.models.openai import OpenAIModel  # noqa: PLC0415 - optional provider

        assert entry.base_url is not None  # the catalogue fills OpenAI's own in
        model = OpenAIModel(base_url=entry.base_url, api_key=key, timeout_s=entry.timeout_s,
                            max_retries=entry.max_retries, max_tokens_field=entry.max_tokens_field)
    return Aliased(model, entry.upstream) if entry.upstream else model


class Aliased:
    """A catalogue name that the provider knows by another (``"model"`` in the entry)."""

    def __init__(self, model: Model, upstream: str) -> None:
        self.model = model
        self.upstream = upstream

    async def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        # The copy shares ``reports`` with the pipeline's turn, which is all the model reads back.
        steps = self.model.step(dataclasses.replace(turn, model=self.upstream))
        async with contextlib.aclosing(steps) as events:  # type: ignore[type-var]
            async for ev in events:
                yield ev

    async def aclose(self) -> None:
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()
