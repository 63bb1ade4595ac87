"""A worker builds one model object per catalogue entry, and refuses a model it cannot run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.settings import Settings
from worker.deps import Deps
from worker.models.anthropic import AnthropicModel
from worker.models.builtin import BuiltinModel
from worker.models.errors import ProviderError
from worker.models.openai import OpenAIModel
from worker.models.registry import Aliased

pytestmark = pytest.mark.anyio

CATALOGUE = {"models": {
    "local/*": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1"},
    "house": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "Qwen/Qwen2.5-7B-Instruct"},
}}


def deps_for(**env: str) -> Deps:
    settings = Settings.from_env({"AGENTSTREAM_MODELS": json.dumps(CATALOGUE), **env})
    none: Any = None  # model_for needs none of the I/O handles
    return Deps(settings=settings, redis=none, arq=none, messages=none, sessions=none, tools={}, worker_id="w")


async def test_one_model_object_per_entry() -> None:
    deps = deps_for(ANTHROPIC_API_KEY="sk-ant")
    try:
        assert isinstance(deps.model_for("agentstream-builtin"), BuiltinModel)
        qwen = deps.model_for("local/qwen2.5")
        assert isinstance(qwen, OpenAIModel)
        assert deps.model_for("local/llama3.2") is qwen  # one client for the prefix's models
        house = deps.model_for("house")
        assert isinstance(house, Aliased) and house.upstream == "Qwen/Qwen2.5-7B-Instruct"
        assert isinstance(deps.model_for("claude-haiku-4-5"), AnthropicModel)
        assert len(deps.models) == 4
    finally:
        for model in deps.models.values():
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()


def test_a_model_this_worker_cannot_run_is_a_provider_error() -> None:
    deps = deps_for()
    with pytest.raises(ProviderError) as caught:
        deps.model_for("gpt-4o")
    assert caught.value.kind == "unsupported_model" and not caught.value.retryable
    with pytest.raises(ProviderError) as caught:
        deps.model_for("claude-haiku-4-5")  # no Anthropic key here, no fallback
    assert caught.value.kind == "model_not_configured"
    assert isinstance(deps_for(AGENTSTREAM_FALLBACK_TO_BUILTIN="true").model_for("claude-haiku-4-5"), BuiltinModel)
