"""The agent's brain, pluggable: the built-in model and real providers share this interface.

A turn is a loop: the model streams text and asks for tools; the pipeline runs the tools and
calls the model again with their results, until a step asks for no tool. This is the shape of
Anthropic's Messages API, so the built-in model is written to it as well.

The message's event stream is the agent's state. ``turn.reports`` and ``turn.texts`` hold every
step already recorded for this message (rebuilt from the stream on a continuation after a
confirmation or a retry after a worker died), and a model is asked only for the step that comes
next: never again for one already recorded, whatever ids its provider would issue this time.
The ``tool_call_id`` of a ``ToolUse`` a model yields is the provider's; the pipeline replaces it
with a stable id (the call's position in the message, its name and canonical inputs), and that
stable id is what ``ToolReport.tool_call_id`` carries back. A provider that pairs calls with
results by id sends those stable ids.
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
    """One recorded tool call of this turn, with its result."""

    tool_call_id: str  # stable (pipeline-issued), never a provider's id
    name: str
    inputs: dict[str, Any]
    success: bool
    output: Any
    step: int = 0  # index of the model step that asked for it (steps are 0, 1, 2, ...)
    decision: str | None = None  # "approved" | "denied" for a call that needed confirmation


@dataclass(frozen=True, slots=True)
class Step:
    """One recorded model step: the text it streamed, then the tool calls it asked for."""

    text: str
    calls: list[ToolReport]


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
    # The steps already recorded for this message, oldest first: every tool call with its
    # result (``step`` says which step asked for it) ...
    reports: list[ToolReport] = field(default_factory=list)
    # ... and the text each of those steps streamed before its calls (``texts[i]`` for step i;
    # missing entries are "").
    texts: list[str] = field(default_factory=list)


def recorded_steps(turn: Turn) -> list[Step]:
    """The recorded steps of a turn, in order: what a provider sends back as the assistant's
    earlier turns (text and tool calls) and the user's tool results."""
    count = max([r.step + 1 for r in turn.reports] + [len(turn.texts)], default=0)
    steps = [Step(turn.texts[i] if i < len(turn.texts) else "", []) for i in range(count)]
    for r in turn.reports:
        steps[r.step].calls.append(r)
    return [s for s in steps if s.calls]


class Model(Protocol):
    def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        """Stream the next step only: text, then the tools it asks for (none ends the turn)."""
        ...
