"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio, a LiteLLM proxy)
through the Chat Completions API, streamed, behind the same ``step`` as the built-in model.

Every step is one streamed request rebuilt from the turn alone, as for Claude: system prompt,
history, the user's message, then each recorded step (``base.recorded_steps``): its text and
tool calls, and their results.

Tool calls arrive as deltas keyed by ``index`` (id and name first, then the JSON arguments in
fragments, parallel calls one after another or interleaved): they are assembled here and handed
to the pipeline once the step's stream has finished. Their ids are not the provider's: a call's
id is derived from its position in the message, its name and its canonical inputs, so a retry
on another worker (a model that samples differently, the provider's fresh random ids) finds the
recorded result of the same call and never runs it twice. The ids only have to pair each call
with its result inside one request, which any id does.

The SDK retries refusals (429 honouring ``retry-after``, 408/409, 5xx) and connection failures
before the stream starts, ``max_retries`` times; once chunks flow, a failure is raised as
``ProviderError`` and not retried here, because the pipeline has already emitted what came
before it. ``timeout_s`` bounds connecting and every read, so a stalled stream fails the step.
Closing the stream (a cancel, a fenced attempt, a shutdown) closes the HTTP connection, so the
server stops generating.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2  # the SDK's transport: a connection dropped mid-stream surfaces as its error
import msgspec
import openai
from openai.types.chat import ChatCompletionChunk

from dataplane import catalogue
from worker.models.base import StepEvent, TextDelta, ToolReport, ToolUse, Turn, Usage, recorded_steps
from worker.models.errors import ProviderError
from worker.models.prompt import add_text, system_for

PROVIDER = "openai"
# Local servers take no key, but the SDK refuses to start without one: this is sent instead.
NO_KEY = "not-needed"

_encode = msgspec.json.Encoder()
_canonical = msgspec.json.Encoder(order="sorted")
_decode_inputs = msgspec.json.Decoder(dict[str, Any])


class OpenAIModel:
    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 max_retries: int = 2, max_tokens_field: str = "max_tokens",
                 client: openai.AsyncOpenAI | None = None) -> None:
        # The key lives only inside the client; this object never stores or shows it. Everything
        # is passed explicitly so the SDK does not read OPENAI_API_KEY / OPENAI_BASE_URL itself.
        self._owns_client = client is None
        self._max_tokens_field = max_tokens_field
        self._client = client or openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, max_retries=max_retries,
            timeout=httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0)))

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={str(self._client.base_url)!r})"

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> OpenAIModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def step(self, turn: Turn) -> AsyncIterator[StepEvent]:
        try:
            stream = await self._client.chat.completions.create(
                **request_for(turn, self._max_tokens_field), stream=True,
                stream_options={"include_usage": True})
        except openai.OpenAIError as exc:
            raise provider_error(exc, mid_stream=False) from exc
        reader = StreamReader(first_position=len(turn.reports))
        yielded = False
        async with stream:  # closes the connection however the step ends, a cancel included
            try:
                async for chunk in stream:
                    for out in reader.feed(chunk):
                        yielded = True
                        yield out
            except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
                # ValueError: a chunk that is not JSON. ProviderError (ours) passes through.
                raise provider_error(exc, mid_stream=yielded) from exc
        if not reader.finished:
            raise ProviderError("the OpenAI-compatible stream ended before a finish_reason",
                                kind="incomplete_stream", retryable=True, mid_stream=yielded, provider=PROVIDER)
        for use in reader.tool_uses():
            yield use
        yield reader.usage()


def request_for(turn: Turn, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The Chat Completions request for the turn's next step (without the streaming options)."""
    request: dict[str, Any] = {"model": turn.model, "messages": messages_for(turn),
                               max_tokens_field: turn.max_tokens, "temperature": turn.temperature}
    if tools := tools_for(turn.tools):
        request["tools"] = tools
    return request


def tools_for(names: list[str]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters or {"type": "object", "properties": {}}}}
            for name in names if (t := catalogue.BY_NAME.get(name)) is not None]


def messages_for(turn: Turn) -> list[dict[str, Any]]:
    """The turn as Chat Completions messages, mapped as anthropic.py maps it to Claude's."""
    out: list[dict[str, Any]] = []
    if system := system_for(turn):
        out.append({"role": "system", "content": system})
    dialogue: list[dict[str, Any]] = []
    for entry in turn.history:
        add_text(dialogue, entry.get("role", ""), entry.get("content", ""))
    add_text(dialogue, "user", turn.content)
    out += dialogue
    # As for Claude: each recorded step goes back as the assistant message that asked for its
    # calls (with the text it said first), then one tool message answering each call.
    for step in recorded_steps(turn):
        out.append({"role": "assistant", "content": step.text if step.text.strip() else None,
                    "tool_calls": [_tool_call(r) for r in step.calls]})
        out += [_tool_message(r) for r in step.calls]
    return out


def _tool_call(r: ToolReport) -> dict[str, Any]:
    return {"id": r.tool_call_id, "type": "function",
            "function": {"name": r.name, "arguments": _encode.encode(r.inputs).decode()}}


def _tool_message(r: ToolReport) -> dict[str, Any]:
    # Chat Completions has no error flag on a tool result: a failed call's output says so itself.
    return {"role": "tool", "tool_call_id": r.tool_call_id, "content": _encode.encode(r.output).decode()}


def stable_call_id(position: int, name: str, inputs: dict[str, Any]) -> str:
    """The same call (same place in the message, name and inputs) gets the same id on every attempt."""
    digest = hashlib.sha256(_canonical.encode([position, name, inputs])).hexdigest()
    return f"call_{digest[:24]}"


@dataclass(slots=True)
class _Call:
    provider_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def finish(self, position: int) -> ToolUse:
        raw = "".join(self.parts).strip() or "{}"
        try:
            inputs = _decode_inputs.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProviderError(f"the OpenAI-compatible server sent invalid JSON arguments for tool "
                                f"{self.name!r}: {exc}", kind="invalid_tool_input", mid_stream=True,
                                provider=PROVIDER) from exc
        return ToolUse(tool_call_id=stable_call_id(position, self.name, inputs), name=self.name, inputs=inputs)


class StreamReader:
    """Folds chunks into step events. Pure: the socket is the caller's."""

    def __init__(self, first_position: int = 0) -> None:
        self.first_position = first_position  # tool calls of earlier steps in this message
        self.calls: dict[int, _Call] = {}  # in the order they opened
        self._slots: dict[int, int] = {}  # the server's index -> its current call in ``calls``
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finished = False

    def feed(self, chunk: ChatCompletionChunk) -> list[StepEvent]:
        out: list[StepEvent] = []
        if getattr(chunk, "usage", None) is not None:
            # The usage chunk (empty choices) comes last; some servers put it on the final choice.
            self.prompt_tokens = getattr(chunk.usage, "prompt_tokens", 0) or 0
            self.completion_tokens = getattr(chunk.usage, "completion_tokens", 0) or 0
        for choice in chunk.choices or ():
            # getattr: the SDK builds chunks without validation, and some servers leave keys out.
            if getattr(choice, "index", 0) not in (0, None):
                continue  # n > 1 is never asked for
            delta = getattr(choice, "delta", None)
            if delta is not None:
                if content := getattr(delta, "content", None):
                    out.append(TextDelta(content))
                if refusal := getattr(delta, "refusal", None):
                    out.append(TextDelta(refusal))
                for part in getattr(delta, "tool_calls", None) or ():
                    self._add(part)
            if getattr(choice, "finish_reason", None) is not None:
                self.finished = True
        return out

    def _add(self, part: Any) -> None:
        index = part.index if isinstance(getattr(part, "index", None), int) else len(self._slots)
        part_id = getattr(part, "id", None)
        slot = self._slots.get(index)
        if slot is not None and part_id and self.calls[slot].provider_id not in ("", part_id):
            # A server that numbers every call 0 (seen with some local servers): a new id is a
            # new call, and the fragments after it are its own.
            slot = None
        if slot is None:
            slot = self._slots[index] = len(self.calls)
            self.calls[slot] = _Call()
        call = self.calls[slot]
        if part_id and not call.provider_id:
            call.provider_id = part_id
        fn = getattr(part, "function", None)
        if fn is not None:
            if getattr(fn, "name", None) and not call.name:
                call.name = fn.name
            if getattr(fn, "arguments", None):
                call.parts.append(fn.arguments)

    def tool_uses(self) -> list[ToolUse]:
        calls = [self.calls[i] for i in sorted(self.calls)]
        return [c.finish(self.first_position + n) for n, c in enumerate(calls) if c.name]

    def usage(self) -> Usage:
        return Usage(input_tokens=self.prompt_tokens, output_tokens=self.completion_tokens)


def provider_error(exc: Exception, *, mid_stream: bool) -> ProviderError:
    """One message per failure, with the server's status and error type; never the request or the key."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        kind = exc.type or exc.code or "api_error"
        retryable = status in (408, 409, 429) or status >= 500
        return ProviderError(f"OpenAI-compatible server refused the request (HTTP {status}, {kind}): "
                             f"{_detail(exc)}", kind=kind, retryable=retryable, mid_stream=mid_stream,
                             status=status, provider=PROVIDER)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("OpenAI-compatible server timed out (no data within the request timeout)",
                             kind="timeout_error", retryable=True, mid_stream=mid_stream, provider=PROVIDER)
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        return ProviderError(f"OpenAI-compatible server connection failed: {exc}", kind="connection_error",
                             retryable=True, mid_stream=mid_stream, provider=PROVIDER)
    if isinstance(exc, openai.APIError):
        # An error sent as a chunk of a stream that had started (HTTP 200). OpenAI names a type
        # (server_error, ...); vLLM and others put an HTTP-like status in ``code``.
        code = exc.code
        sent_status = int(code) if code is not None and code.isdigit() else None
        kind = exc.type or (f"error_{code}" if code else "api_error")
        retryable = kind in ("server_error", "rate_limit_exceeded") or sent_status == 429 \
            or (sent_status is not None and sent_status >= 500)
        return ProviderError(f"OpenAI-compatible server failed mid-stream ({kind}): {exc.message}", kind=kind,
                             retryable=retryable, mid_stream=mid_stream, status=sent_status, provider=PROVIDER)
    if isinstance(exc, ValueError):
        return ProviderError(f"OpenAI-compatible server sent a malformed chunk: {exc}", kind="malformed_event",
                             mid_stream=mid_stream, provider=PROVIDER)
    return ProviderError(f"OpenAI client error: {exc}", kind=type(exc).__name__, mid_stream=mid_stream,
                         provider=PROVIDER)


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return exc.message
