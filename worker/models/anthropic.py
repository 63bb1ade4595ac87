"""Claude through Anthropic's Messages API, streamed, behind the same ``step`` as the built-in model.

Every step is one streamed request rebuilt from the turn alone: history, the user's message,
then each recorded step as the assistant's turn (its text and ``tool_use`` blocks) and the
user's ``tool_result`` blocks. Nothing is kept between steps, so a continuation or a retry on
another worker sends what the conversation recorded so far. The ``tool_use`` ids sent are the
pipeline's stable ids, not the ones Anthropic issued (those change on every response).

The SDK retries refusals and connection failures before the stream starts (``MAX_RETRIES``);
once events flow, a failure is raised as ``ProviderError`` and never retried here, because
the pipeline has already emitted the tokens that came before it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2  # the SDK's transport: a connection dropped mid-stream surfaces as its error
import msgspec
from anthropic import types as api

from dataplane import catalogue
from worker.models.base import StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage, recorded_steps
from worker.models.errors import ProviderError
from worker.models.prompt import add_text, system_for

MAX_RETRIES = 2
# Always passed explicitly: left None, the SDK would read ANTHROPIC_BASE_URL itself, and the
# settings are meant to be the one place configuration comes from.
DEFAULT_BASE_URL = "https://api.anthropic.com"
_RETRYABLE_KINDS = {"overloaded_error", "rate_limit_error", "api_error", "timeout_error"}

_encode = msgspec.json.Encoder()
_decode_inputs = msgspec.json.Decoder(dict[str, Any])


class AnthropicModel:
    def __init__(self, api_key: str, base_url: str | None = None,
                 client: anthropic.AsyncAnthropic | None = None) -> None:
        # The key lives only inside the client; this object never stores or shows it.
        self._owns_client = client is None
        self._client = client or anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url or DEFAULT_BASE_URL,
                                                          max_retries=MAX_RETRIES)

    def __repr__(self) -> str:
        return f"AnthropicModel(base_url={str(self._client.base_url)!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        try:
            stream = await self._client.messages.create(**request_for(turn), stream=True)
        except anthropic.AnthropicError as exc:
            raise provider_error(exc, mid_stream=False) from exc
        reader = StreamReader()
        yielded = False
        async with stream:
            try:
                async for event in stream:
                    for out in reader.feed(event):
                        yielded = True
                        yield out
            except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
                # ValueError: an event that is not JSON. ProviderError (ours) passes through.
                raise provider_error(exc, mid_stream=yielded) from exc
        if not reader.stopped:
            raise ProviderError("Anthropic stream ended before message_stop", kind="incomplete_stream",
                                retryable=True, mid_stream=yielded, provider="anthropic")
        yield reader.usage()


def request_for(turn: Turn) -> dict[str, Any]:
    """The Messages API request for the turn's next step."""
    # No ``temperature``: the SDK (2.x) sends API version 2026-10-21, which refuses sampling
    # parameters on every model, even at their defaults. ``turn.temperature`` stays part of the
    # agent config for the built-in model and older providers, and is deliberately not sent.
    request: dict[str, Any] = {"model": turn.model, "max_tokens": turn.max_tokens,
                               "messages": messages_for(turn)}
    if system := system_for(turn):
        request["system"] = system
    if tools := tools_for(turn.tools):
        request["tools"] = tools
    return request


def tools_for(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters or {"type": "object"}}
            for name in names if (t := catalogue.BY_NAME.get(name)) is not None]


def messages_for(turn: Turn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in turn.history:
        add_text(out, entry.get("role", ""), entry.get("content", ""))
    add_text(out, "user", turn.content)
    for step in recorded_steps(turn):
        said = [{"type": "text", "text": step.text}] if step.text.strip() else []
        out.append({"role": "assistant", "content": said + [_tool_use(r) for r in step.calls]})
        out.append({"role": "user", "content": [_tool_result(r) for r in step.calls]})
    return out


def _tool_use(r: ToolReport) -> dict[str, Any]:
    return {"type": "tool_use", "id": r.tool_call_id, "name": r.name, "input": r.inputs}


def _tool_result(r: ToolReport) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": r.tool_call_id,
            "content": _encode.encode(r.output).decode(), "is_error": not r.success}


@dataclass(slots=True)
class _ToolBlock:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)

    def finish(self) -> ToolUse:
        raw = "".join(self.parts) or "{}"
        try:
            inputs = _decode_inputs.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProviderError(f"Anthropic sent invalid JSON input for tool {self.name!r}: {exc}",
                                kind="invalid_tool_input", mid_stream=True, provider="anthropic") from exc
        return ToolUse(tool_call_id=self.id, name=self.name, inputs=inputs)


class StreamReader:
    """Folds raw stream events into step events. Pure: the socket is the caller's."""

    def __init__(self) -> None:
        self.open_tools: dict[int, _ToolBlock] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.stopped = False

    def feed(self, event: api.RawMessageStreamEvent) -> list[StepEvent]:
        match event:
            case api.RawMessageStartEvent(message=message):
                self.input_tokens = _input_tokens(message.usage)
                self.output_tokens = message.usage.output_tokens
            case api.RawContentBlockStartEvent(index=i, content_block=block):
                if isinstance(block, api.ToolUseBlock):
                    self.open_tools[i] = _ToolBlock(block.id, block.name)
                elif isinstance(block, api.TextBlock) and block.text:
                    return [TextDelta(block.text)]
            case api.RawContentBlockDeltaEvent(index=i, delta=delta):
                if isinstance(delta, api.TextDelta) and delta.text:
                    return [TextDelta(delta.text)]
                if isinstance(delta, api.InputJSONDelta) and i in self.open_tools:
                    self.open_tools[i].parts.append(delta.partial_json)
            case api.RawContentBlockStopEvent(index=i):
                if (tool := self.open_tools.pop(i, None)) is not None:
                    return [tool.finish()]
            case api.RawMessageDeltaEvent(usage=usage):
                # Counts here are cumulative for the message, so they replace the start's.
                self.output_tokens = usage.output_tokens
                if usage.input_tokens is not None:
                    self.input_tokens = _input_tokens(usage)
            case api.RawMessageStopEvent():
                self.stopped = True
        return []

    def usage(self) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens)


def _input_tokens(usage: api.Usage | api.MessageDeltaUsage) -> int:
    return ((usage.input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0))


def provider_error(exc: Exception, *, mid_stream: bool) -> ProviderError:
    """One message per failure, naming the provider's error type; never the request or the key."""
    if isinstance(exc, anthropic.APIStatusError):
        kind = exc.type or "api_error"
        status = exc.status_code
        where = "mid-stream" if status < 400 else f"HTTP {status}"
        detail = exc.api_message or exc.message
        retryable = kind in _RETRYABLE_KINDS or status in (408, 409, 429) or status >= 500
        return ProviderError(f"Anthropic {kind} ({where}): {detail}", kind=kind, retryable=retryable,
                             mid_stream=mid_stream, status=status if status >= 400 else None, provider="anthropic")
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("Anthropic request timed out", kind="timeout_error", retryable=True,
                             mid_stream=mid_stream, provider="anthropic")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
        return ProviderError(f"Anthropic connection failed: {exc}", kind="connection_error",
                             retryable=True, mid_stream=mid_stream, provider="anthropic")
    if isinstance(exc, ValueError):
        return ProviderError(f"Anthropic sent a malformed stream event: {exc}", kind="malformed_event",
                             mid_stream=mid_stream, provider="anthropic")
    return ProviderError(f"Anthropic client error: {exc}", kind=type(exc).__name__, mid_stream=mid_stream,
                         provider="anthropic")
