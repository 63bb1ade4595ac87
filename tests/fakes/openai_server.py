"""A local stand-in for an OpenAI-compatible Chat Completions server (POST /v1/chat/completions).

It streams exactly as OpenAI does with ``stream: true``: ``data: {chunk}`` lines of
``chat.completion.chunk`` objects (the first delta carries the role, text comes as ``content``
deltas, each tool call opens with its index, id and name and then sends its JSON arguments in
fragments, the last choice chunk carries ``finish_reason``), then, when the request asked for
``stream_options.include_usage``, one chunk with empty ``choices`` and the ``usage``, and finally
``data: [DONE]``. Errors are OpenAI's ``{"error": {...}}`` bodies: as the HTTP answer (with
``retry-after`` on 429 when scripted) or as a ``data:`` line in the middle of a stream.

Scripted: ``fake.script(Reply(...), ...)`` queues answers; with the queue empty ``responder``
answers (by default ``plausible``: call one offered read tool, then answer from its result).
Every request is recorded in ``served`` with its body, headers and what became of its
connection: ``disconnected`` is set when the client closed it before the answer ended (a cancel
that reached the provider), which the server sees because it listens for ``http.disconnect``
while it streams.

It refuses what the real API refuses and a careless client gets wrong (no bearer key when one
is required, tool messages that do not answer the preceding ``tool_calls``, arguments that are
not a JSON string, an empty ``messages``), with OpenAI's status and error shape.

Standalone, for pointing a worker at it::

    python -m tests.fakes.openai_server --port 8766
    AGENTSTREAM_MODELS='{"models": {"fake-gpt": {"provider": "openai", "base_url": "http://127.0.0.1:8766/v1"}}}' \\
        agentstream dev
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Text:
    """Assistant text, streamed as one ``content`` delta per chunk."""

    def __init__(self, *chunks: str) -> None:
        self.chunks = chunks


@dataclass(frozen=True)
class ToolCall:
    """A function tool call; its JSON arguments are streamed in ``chunks`` fragments."""

    name: str
    inputs: dict[str, Any]
    chunks: int = 3
    id: str | None = None  # default: a fresh random id per call, as OpenAI's are
    raw_arguments: str | None = None  # sent instead of json.dumps(inputs) (a broken model)


@dataclass(frozen=True)
class Reply:
    blocks: list[Text | ToolCall] = field(default_factory=list)
    prompt_tokens: int = 12
    completion_tokens: int = 8
    finish_reason: str | None = None  # default: tool_calls if a ToolCall is present, else stop
    status: int = 200  # other than 200: refuse with OpenAI's error body, no stream
    error_type: str = "server_error"
    error_code: str | None = None
    retry_after: str | None = None  # the refusal's retry-after header (seconds)
    error_after: int | None = None  # send an error chunk instead of chunk n, then end (no [DONE])
    cut_after: int | None = None  # close the stream silently after n chunks (no finish, no [DONE])
    stall_after: int | None = None  # after n chunks send nothing more until the client goes away
    delay_s: float = 0.0  # pause before every chunk after the first
    interleave: bool = False  # parallel calls' fragments alternate (some servers do), not in turn


@dataclass
class Served:
    """One request as the server saw it, and what became of its connection."""

    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0
    chunks_sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)  # the answer ended, either way
    disconnected: threading.Event = field(default_factory=threading.Event)  # the client left first


def plausible(body: dict[str, Any]) -> Reply:
    """A stand-in model: search (or list) with an offered tool first, then answer from results."""
    messages = body["messages"]
    if messages[-1].get("role") == "tool":
        results = 0
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            results += 1
        return Reply([Text("From ", f"{results} tool result(s): ", "here is what I found.")])
    offered = {t["function"]["name"] for t in body.get("tools", [])}
    question = messages[-1].get("content") if isinstance(messages[-1].get("content"), str) else ""
    if "smart_search" in offered:
        return Reply([Text("Let me search. "), ToolCall("smart_search", {"query": question, "limit": 5})])
    if "list_collections" in offered:
        return Reply([ToolCall("list_collections", {})])
    return Reply([Text("Hello ", "from ", "the fake.")])


def call_id() -> str:
    return "call_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")[:24]


def chunks_for(reply: Reply, model: str, completion_id: str, tool_ids: list[str],
               include_usage: bool) -> list[dict[str, Any]]:
    """The chunk objects of one streamed answer, in protocol order (pure)."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                               "model": model, "service_tier": "default", "system_fingerprint": "fp_fake0001",
                               "choices": choices}
        if include_usage:
            out["usage"] = usage  # null on every chunk but the last
        out["obfuscation"] = secrets.token_hex(3)  # OpenAI pads chunks; clients must ignore it
        return out

    def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

    out = [chunk(delta({"role": "assistant", "content": "", "refusal": None}))]
    for block in reply.blocks:
        if isinstance(block, Text):
            out += [chunk(delta({"content": c})) for c in block.chunks]
    calls = [b for b in reply.blocks if isinstance(b, ToolCall)]
    streams: list[list[dict[str, Any]]] = []
    for k, (call, cid) in enumerate(zip(calls, tool_ids, strict=True)):
        opening = {"index": k, "id": cid, "type": "function", "function": {"name": call.name, "arguments": ""}}
        raw = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.inputs)
        fragments = [{"index": k, "function": {"arguments": p}} for p in _split(raw, call.chunks)]
        streams.append([opening, *fragments])
    if reply.interleave:
        order = [s[i] for i in range(max(map(len, streams), default=0)) for s in streams if i < len(s)]
    else:
        order = [part for s in streams for part in s]
    out += [chunk(delta({"tool_calls": [part]})) for part in order]
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    out.append(chunk(delta({}, finish)))
    if include_usage:
        out.append(chunk([], {
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}))
    return out


def data_line(obj: dict[str, Any] | str) -> bytes:
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def problem(body: Any, headers: dict[str, str], api_key: str | None) -> tuple[int, dict[str, Any]] | None:
    """What the real API would refuse: (status, error body), or None."""
    if api_key is not None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 401, error_body("You didn't provide an API key. You need to provide your API key in an "
                                   "Authorization header using Bearer auth.", "invalid_request_error")
        if auth[len("Bearer "):] != api_key:
            return 401, error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    if not isinstance(body, dict):
        return 400, error_body("We could not parse the JSON body of your request.", "invalid_request_error")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return 400, error_body("you must provide a model parameter", "invalid_request_error")
    if body.get("stream") is not True:
        return 400, error_body("this fake only streams: send stream=true", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, error_body("[] is too short - 'messages'", "invalid_request_error", param="messages")
    if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        return 400, error_body("Invalid 'max_tokens': integer below minimum value.", "invalid_request_error",
                               "integer_below_min_value", "max_tokens")
    if "temperature" in body and not (isinstance(body["temperature"], int | float) and 0 <= body["temperature"] <= 2):
        return 400, error_body("Invalid 'temperature'.", "invalid_request_error", param="temperature")
    for n, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return 400, error_body(f"Invalid 'tools[{n}]'.", "invalid_request_error", param=f"tools[{n}]")
    for n, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return 400, error_body(f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                                   "'user', 'function', 'tool', and 'developer'.", "invalid_request_error",
                                   "invalid_value", f"messages[{n}].role")
        calls = (m.get("tool_calls") or []) if role == "assistant" else []
        for c in calls:
            fn = c.get("function") or {}
            if c.get("type") != "function" or not c.get("id") or not isinstance(fn.get("arguments"), str):
                return 400, error_body(f"Invalid 'messages[{n}].tool_calls'.", "invalid_request_error",
                                       param=f"messages[{n}].tool_calls")
        if calls:
            answered = set()
            for after in messages[n + 1:]:
                if after.get("role") != "tool":
                    break
                answered.add(after.get("tool_call_id"))
            if missing := [c["id"] for c in calls if c["id"] not in answered]:
                return 400, error_body("An assistant message with 'tool_calls' must be followed by tool messages "
                                       "responding to each 'tool_call_id'. The following tool_call_ids did not "
                                       f"have response messages: {', '.join(missing)}", "invalid_request_error",
                                       param=f"messages.[{n}].role")
        if role == "tool":
            k = n - 1
            while k >= 0 and messages[k].get("role") == "tool":
                k -= 1
            asked = {c.get("id") for c in (messages[k].get("tool_calls") or [])} if k >= 0 else set()
            if messages[k].get("role") != "assistant" or m.get("tool_call_id") not in asked:
                return 400, error_body("Invalid parameter: messages with role 'tool' must be a response to a "
                                       "preceeding message with 'tool_calls'.", "invalid_request_error",
                                       param=f"messages.[{n}].role")
            if not isinstance(m.get("content"), str):
                return 400, error_body(f"Invalid 'messages[{n}].content'.", "invalid_request_error",
                                       param=f"messages[{n}].content")
        elif role in ("system", "developer", "user") and not isinstance(m.get("content"), str | list):
            return 400, error_body(f"Invalid 'messages[{n}].content'.", "invalid_request_error",
                                   param=f"messages[{n}].content")
    return None


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class FakeOpenAI:
    """The server, on 127.0.0.1 and a free port, in a thread: usable from sync and async tests."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = plausible,
                 api_key: str | None = None) -> None:
        self.responder = responder
        self.api_key = api_key  # None: any key (or none) is accepted, as local servers do
        self.replies: deque[Reply] = deque()
        self.served: list[Served] = []
        self.url = ""
        self._count = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [s.body for s in self.served]

    def wait_for_requests(self, n: int, timeout_s: float = 20) -> list[Served]:
        """Block until ``n`` requests have arrived in total (a deadline against hangs, not a measure)."""
        deadline = time.monotonic() + timeout_s
        while len(self.served) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake OpenAI: {len(self.served)} of {n} requests arrived")
            time.sleep(0.01)
        return self.served[:n]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await self._json(send, 404, error_body(f"Invalid URL ({scope['method']} {scope['path']})",
                                                   "invalid_request_error"))
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        served = Served(body if isinstance(body, dict) else {}, headers)
        with self._lock:
            self.served.append(served)
        try:
            await self._answer(served, body, receive, send)
        finally:
            served.finished.set()

    async def _answer(self, served: Served, body: Any, receive: Receive, send: Send) -> None:
        if (refused := problem(body, served.headers, self.api_key)) is not None:
            served.status = refused[0]
            await self._json(send, *refused)
            return
        with self._lock:
            reply = self.replies.popleft() if self.replies else None
            self._count += 1
            completion_id = f"chatcmpl-fake{self._count:04d}"
        if reply is None:
            if self.responder is None:
                served.status = 400
                await self._json(send, 400, error_body("fake: no scripted reply left", "invalid_request_error"))
                return
            reply = self.responder(body)
        served.status = reply.status
        if reply.status != 200:
            extra = {"retry-after": reply.retry_after} if reply.retry_after is not None else {}
            await self._json(send, reply.status,
                             error_body(f"fake refusal ({reply.status})", reply.error_type, reply.error_code),
                             extra)
            return
        ids = [b.id or call_id() for b in reply.blocks if isinstance(b, ToolCall)]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = chunks_for(reply, body["model"], completion_id, ids, include_usage)
        await self._stream(served, reply, chunks, receive, send)

    async def _stream(self, served: Served, reply: Reply, chunks: list[dict[str, Any]], receive: Receive,
                      send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            # With the body read, the next message the server hands over is the disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-request-id", f"req_fake{self._count:04d}".encode())]})
            for n, chunk in enumerate(chunks):
                if n == reply.stall_after:
                    await gone.wait()
                if n and reply.delay_s:
                    await _first(gone.wait(), asyncio.sleep(reply.delay_s))
                if gone.is_set():
                    served.disconnected.set()
                    return
                if n == reply.error_after:
                    await send({"type": "http.response.body", "more_body": False, "body": data_line(
                        error_body("The server had an error while processing your request. Sorry about that!",
                                   reply.error_type, reply.error_code))})
                    return
                if n == reply.cut_after:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send({"type": "http.response.body", "body": data_line(chunk), "more_body": True})
                served.chunks_sent += 1
            await send({"type": "http.response.body", "body": data_line("[DONE]"), "more_body": False})
        finally:
            watcher.cancel()
            if gone.is_set():
                served.disconnected.set()

    @staticmethod
    async def _json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
            *[(k.encode(), v.encode()) for k, v in (headers or {}).items()]]})
        await send({"type": "http.response.body", "body": raw, "more_body": False})

    def start(self, port: int = 0) -> FakeOpenAI:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(self, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                loop="asyncio", http="h11", ws="none", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("fake OpenAI server did not start")
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

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _first(*aws: Awaitable[Any]) -> None:
    """Wait for whichever finishes first and cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible Chat Completions API (plausible replies).")
    parser.add_argument("--port", type=int, default=8766)
    fake = FakeOpenAI().start(parser.parse_args().port)
    print(f"fake OpenAI-compatible API at {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
