"""A local stand-in for Anthropic's streaming Messages API (POST /v1/messages), for tests and demos.

Scripted: ``fake.script(Reply(...), ...)`` queues responses (text, tool calls whose input comes
in several ``input_json_delta`` chunks, a refusal, an ``error`` event mid-stream); with the
queue empty, ``responder`` answers (by default ``plausible``: call one offered read tool, then
answer from its results). Every request body and its headers are recorded in ``requests``.

It checks what the real API checks and a bad client would get wrong (a credential header,
sampling parameters under API version 2026-10-21, empty text, tool_use / tool_result pairing),
answering 401 / 400 the same way.

Standalone, for pointing a worker at it::

    python -m tests.fakes.anthropic_server --port 8765
    AGENTSTREAM_ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=sk-fake agentstream dev
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import string
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SseEvent = tuple[str, dict[str, Any]]
# From this API version on, sampling parameters are refused on every model, even at defaults.
SAMPLING_REMOVED_IN = "2026-10-21"


class Text:
    """A text block, streamed as one ``text_delta`` per chunk."""

    def __init__(self, *chunks: str) -> None:
        self.chunks = chunks


@dataclass(frozen=True)
class ToolCall:
    """A tool_use block; its JSON input is streamed in ``chunks`` pieces."""

    name: str
    inputs: dict[str, Any]
    chunks: int = 3
    id: str | None = None  # default: a fresh ``toolu_01…`` id on every response, as the real API issues


@dataclass(frozen=True)
class Reply:
    blocks: list[Text | ToolCall] = field(default_factory=list)
    input_tokens: int = 12
    output_tokens: int = 8
    stop_reason: str | None = None  # default: tool_use if a ToolCall is present, else end_turn
    status: int = 200  # other than 200: refuse with an error body of type ``error``, no stream
    error: str = "overloaded_error"
    error_after: int | None = None  # send an ``error`` event after this many events, then end
    cut_after: int | None = None  # end the stream silently after this many events
    delay_s: float = 0.0  # pause between events, to interrupt an answer in the middle


@dataclass(frozen=True)
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]


def plausible(body: dict[str, Any]) -> Reply:
    """A stand-in model: search (or list) with an offered tool first, then answer from results."""
    last = body["messages"][-1]
    results = [b for b in _blocks(last) if b.get("type") == "tool_result"]
    if results:
        return Reply([Text("From ", f"{len(results)} tool result(s): ", "here is what I found.")])
    offered = {t["name"] for t in body.get("tools", [])}
    question = last["content"] if isinstance(last["content"], str) else ""
    if "smart_search" in offered:
        return Reply([Text("Let me search. "), ToolCall("smart_search", {"query": question, "limit": 5})])
    if "list_collections" in offered:
        return Reply([ToolCall("list_collections", {})])
    return Reply([Text("Hello ", "from ", "the fake.")])


def events_for(reply: Reply, model: str, message_id: str, tool_ids: list[str]) -> list[SseEvent]:
    """The SSE events of one streamed reply, in protocol order (pure)."""
    message: dict[str, Any] = {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    out: list[SseEvent] = [("message_start", {"type": "message_start", "message": message}),
                           ("ping", {"type": "ping"})]
    ids = iter(tool_ids)
    for i, block in enumerate(reply.blocks):
        if isinstance(block, Text):
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in block.chunks]
        else:
            start = {"type": "tool_use", "id": next(ids), "name": block.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p}
                      for p in _split(json.dumps(block.inputs), block.chunks)]
        out.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        out += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    stop = reply.stop_reason or ("tool_use" if any(isinstance(b, ToolCall) for b in reply.blocks) else "end_turn")
    out.append(("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": reply.output_tokens}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


def fresh_tool_id() -> str:
    """A new id per tool_use block, never repeated: a model asked the same question twice
    answers with other ids, so nothing may key recorded state on them."""
    return "toolu_01" + "".join(secrets.choice(_ID_CHARS) for _ in range(22))


_ID_CHARS = string.ascii_letters + string.digits


def sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def problem(body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str, str] | None:
    """What the real API would refuse: (status, error type, message), or None."""
    if not headers.get("x-api-key") and not headers.get("authorization", "").startswith("Bearer "):
        return 401, "authentication_error", "x-api-key or Authorization: Bearer header is required"
    version = headers.get("anthropic-version", "")
    if not version:
        return 400, "invalid_request_error", "anthropic-version header is required"
    if version >= SAMPLING_REMOVED_IN:
        for key in ("temperature", "top_p", "top_k"):
            if key in body:
                return 400, "invalid_request_error", f"{key}: Extra inputs are not permitted"
    if body.get("stream") is not True:
        return 400, "invalid_request_error", "this fake only streams: send stream=true"
    for key, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(key), kind):
            return 400, "invalid_request_error", f"{key}: Field required"
    messages = body["messages"]
    if not messages or messages[0].get("role") != "user":
        return 400, "invalid_request_error", "messages: first message must use the \"user\" role"
    defined = {t["name"] for t in body.get("tools", [])}
    for n, m in enumerate(messages):
        blocks = _blocks(m)
        if any(b.get("type") == "text" and not b.get("text", "").strip() for b in blocks):
            return 400, "invalid_request_error", f"messages.{n}: text content blocks must be non-empty"
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        if (uses or results) and not defined:
            return 400, "invalid_request_error", "Requests which include `tool_use` or `tool_result` blocks must define tools."
        if uses:
            after = _blocks(messages[n + 1]) if n + 1 < len(messages) else []
            answered = {b.get("tool_use_id") for b in after if b.get("type") == "tool_result"}
            if missing := [u["id"] for u in uses if u["id"] not in answered]:
                return 400, "invalid_request_error", (f"messages.{n}: `tool_use` ids were found without "
                                                      f"`tool_result` blocks immediately after: {', '.join(missing)}")
        if results:
            before = _blocks(messages[n - 1]) if n else []
            asked = {b.get("id") for b in before if b.get("type") == "tool_use"}
            if stray := [r["tool_use_id"] for r in results if r["tool_use_id"] not in asked]:
                return 400, "invalid_request_error", (f"messages.{n}: unexpected `tool_use_id` found in "
                                                      f"`tool_result` blocks: {', '.join(stray)}")
    return None


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else [{"type": "text", "text": content or ""}]


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


class FakeAnthropic:
    """The server, on 127.0.0.1 and a free port, in a thread: usable from sync and async tests."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = plausible) -> None:
        self.responder = responder
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.url = ""
        self._served = 0
        self._tools_made = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    async def _messages(self, request: Request) -> Response:
        body = json.loads(await request.body())
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(body, headers))
        if (refused := problem(body, headers)) is not None:
            status, kind, message = refused
            return JSONResponse(_error_body(kind, message), status_code=status)
        with self._lock:
            reply = self.replies.popleft() if self.replies else None
            self._served += 1
            message_id = f"msg_fake{self._served:04d}"
        if reply is None:
            if self.responder is None:
                return JSONResponse(_error_body("invalid_request_error", "fake: no scripted reply left"),
                                    status_code=400)
            reply = self.responder(body)
        if reply.status != 200:
            # retry-after-ms keeps the SDK's retries of a refusal fast in tests.
            return JSONResponse(_error_body(reply.error, f"fake refusal ({reply.status})"),
                                status_code=reply.status, headers={"retry-after-ms": "1"})
        with self._lock:
            ids = []
            for b in reply.blocks:
                if isinstance(b, ToolCall):
                    self._tools_made += 1
                    ids.append(b.id or fresh_tool_id())
        events = events_for(reply, body["model"], message_id, ids)
        return StreamingResponse(self._stream(reply, events), media_type="text/event-stream")

    async def _stream(self, reply: Reply, events: list[SseEvent]) -> AsyncIterator[bytes]:
        for n, (name, data) in enumerate(events):
            if n == reply.error_after:
                yield sse("error", _error_body(reply.error, "fake mid-stream failure"))
                return
            if n == reply.cut_after:
                return
            if reply.delay_s and n:
                await asyncio.sleep(reply.delay_s)
            yield sse(name, data)

    def start(self, port: int = 0) -> FakeAnthropic:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(self.app(), log_config=None, log_level="warning", access_log=False,
                                lifespan="off", loop="asyncio", http="h11", ws="none",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("fake Anthropic server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Anthropic Messages API (plausible replies).")
    parser.add_argument("--port", type=int, default=8765)
    fake = FakeAnthropic().start(parser.parse_args().port)
    print(f"fake Anthropic API at {fake.url} (AGENTSTREAM_ANTHROPIC_BASE_URL={fake.url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
