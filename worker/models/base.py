"""The agent's brain, pluggable: the built-in model and real providers share this interface.

A turn is a loop: the model streams text and asks for tools; the pipeline runs the tools and
calls the model again with their results, until a step asks for no tool. This is the shape of
Anthropic's Messages API, so the built-in model is written to it as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    tool_call_id: str
    name: str
    inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


StepEvent = TextDelta | ToolUse | Usage


@dataclass(frozen=True, slots=True)
class ToolReport:
    tool_call_id: str
    name: str
    inputs: dict[str, Any]
    success: bool
    output: Any


@dataclass(slots=True)
class Turn:
    """Everything a model sees for one user message."""

    message_id: str
    content: str
    intent: str  # the SSE intent vocabulary (retriever_search, data_browse, ...)
    system_prompt: str
    history: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}], oldest first
    memory: dict[str, Any] | None
    tools: list[str]  # names this session may call
    model: str
    max_tokens: int
    temperature: float
    reports: list[ToolReport] = field(default_factory=list)  # results of earlier steps


class Model(Protocol):
    def step(self, turn: Turn) -> AsyncIterator[StepEvent]: ...
