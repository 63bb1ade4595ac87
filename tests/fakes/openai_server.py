"""A local stand-in for an OpenAI-compatible Chat Completions server (POST /v1/chat/completions).

It streams exactly as OpenAI does with ``stream: true`` (the chunks, the usage chunk and
``data: [DONE]``, built in ``openai_protocol``). Errors are OpenAI's ``{"error": {...}}``
bodies: as the HTTP answer (with ``retry-after`` on 429 when scripted) or as a ``data:`` line in
the middle of a stream.

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
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.fakes.openai_protocol import (
    Reply,
    Text,
    ToolCall,
    call_id,
    chunks_for,
    data_line,
    error_body,
    plausible,
    problem,
)

__all__ = ["FakeOpenAI", "Reply", "Served", "Text", "ToolCall", "plausible"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Served:
    """One request as the server saw it, and what became of its connection."""

    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0
    chunks_sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)  # the answer ended, either way
    disconnected: threading.Event = field(default_factory=threading.Event)  # the client left first


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
            extra = {name: value for name, value in (("retry-after", reply.retry_after),
                                                     ("retry-after-ms", reply.retry_after_ms)) if value is not None}
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
