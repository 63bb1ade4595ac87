"""The shape every tool has: async callable over the namespace's data, returning an outcome.

Tools are registered by name (``dataplane/catalogue.py`` lists them for the API). A tool raises
``ToolError`` for a failure the agent should see (``tool_result`` with ``success: false``; the
run goes on); anything else is a bug and ends the message with ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis


class ToolError(Exception):
    """The tool ran and failed in a way the agent can report (bad input, missing data)."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    redis: aioredis.Redis
    namespace_id: str
    session_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class RetrieverRun:
    """What a retriever-backed tool ran: becomes a ``retriever_execution`` event."""

    execution_id: str
    retriever_id: str | None
    is_adhoc: bool
    documents_returned: int
    latency_ms: float
    message: str


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    output: Any
    retriever_runs: list[RetrieverRun] = field(default_factory=list)
    # ad-hoc pipelines: the exact config that, saved as a retriever, reproduces the documents
    pipeline_config: dict[str, Any] | None = None


class Tool(Protocol):
    async def __call__(self, ctx: ToolContext, inputs: dict[str, Any]) -> ToolOutcome: ...
