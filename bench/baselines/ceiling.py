"""The in-memory ceiling: an SSE server that writes frames from memory, nothing else.

Same server stack as the gateway (uvicorn, uvloop, httptools, no access log), but a bare ASGI
callable with no Redis, no framework and no per-stream task wake-up: the pacer writes each
frame straight into the stream's ``send``. What it costs per event is the floor any gateway on
this stack pays: framing one chunk and one socket write.

* ``GET /s/<n>``: an open event stream (what the load clients hold);
* ``POST /run?rate=R&duration_s=D``: pace R events/s over the open streams, round robin, with
  the same pacer as ``bench.producer``; frames carry ``seq`` and ``ts`` like the producer's;
* ``POST .../messages``: an ``intent`` and a ``done`` frame at once (the TTFE floor); with
  ``?first_ms=F&token_ms=T&tokens=N``, a paced answer like the built-in model's (intent,
  thinking, F ms, N tokens T ms apart, message, done): the end-to-end floor;
* ``GET /replay?n=N``: N pre-built frames in one write (the replay floor);
* ``GET /healthz``.

Run: ``python -m bench.baselines.ceiling`` with ``AGENTSTREAM_HOST`` / ``AGENTSTREAM_PORT``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from bench.pacing import paced
from gateway.sse import HEADERS
from shared.settings import Settings

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

_HEADERS = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
_JSON = [(b"content-type", b"application/json")]
_INTENT_DATA = (b'{"intent":"conversation","confidence":0.9,"category":"general","reasoning":"ceiling",'
                b'"context_scope":"session"}')
_DONE_DATA = (b'{"latency_ms":0.0,"tool_calls_made":0,"message_id":"msg_x","retriever_summary":{},'
              b'"data_accessed_via_retriever":false}')
_INTENT = b"id: 1-0\nevent: intent\ndata: " + _INTENT_DATA + b"\n\n"
_DONE = b"id: 1-1\nevent: done\ndata: " + _DONE_DATA + b"\n\n"


class Ceiling:
    def __init__(self) -> None:
        self.streams: dict[int, list[Any]] = {}  # n of /s/<n> -> [send, seq]
        self.replays: dict[int, bytes] = {}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path.startswith("/s/"):
            await self.stream(int(path[3:]), receive, send)
        elif method == "POST" and path == "/run":
            q = parse_qs(scope["query_string"].decode())
            await self.run(float(q["rate"][0]), float(q["duration_s"][0]), send)
        elif method == "POST" and path.endswith("/messages") and b"token_ms=" in scope["query_string"]:
            await _drain_body(receive)
            q = parse_qs(scope["query_string"].decode())
            await self.answer(int(q["first_ms"][0]), int(q["token_ms"][0]), int(q["tokens"][0]), send)
        elif method == "POST" and path.endswith("/messages"):
            await _drain_body(receive)
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": _INTENT, "more_body": True})
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        elif method == "GET" and path == "/replay":
            n = int(parse_qs(scope["query_string"].decode()).get("n", ["10000"])[0])
            body = self.replays.get(n) or self.replays.setdefault(n, _replay_body(n))
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif path == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": _JSON})
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": _JSON})
            await send({"type": "http.response.body", "body": b"{}"})

    async def stream(self, sid: int, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        self.streams[sid] = [send, 0]
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            del self.streams[sid]

    async def answer(self, first_ms: int, token_ms: int, tokens: int, send: Send) -> None:
        n = 0

        async def write(event: bytes, data: bytes, more: bool = True) -> None:
            nonlocal n
            frame = b"id: %d-%d\nevent: %s\ndata: %s\n\n" % (time.time_ns() // 1_000_000, n, event, data)
            n += 1
            await send({"type": "http.response.body", "body": frame, "more_body": more})

        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_HEADERS, (b"x-message-id", b"msg_ceiling")]})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        await write(b"intent", _INTENT_DATA)
        await write(b"thinking", b'{"step":"processing","message":"Analyzing your request..."}')
        await asyncio.sleep(first_ms / 1000)
        for i in range(tokens):
            if i:
                await asyncio.sleep(token_ms / 1000)
            await write(b"token", b'{"content":"word%d "}' % i)
        await write(b"message", b'{"content":"...","message_id":"msg_ceiling","is_final":true}')
        await write(b"done", _DONE_DATA, more=False)

    async def run(self, rate: float, duration_s: float, send: Send) -> None:
        slots = [self.streams[k] for k in sorted(self.streams)]  # in path order, like the load's
        n_slots = len(slots)
        rr = 0

        async def emit(n: int) -> None:
            nonlocal rr
            ts = time.monotonic_ns() // 1000
            for _ in range(n):
                slot = slots[rr]
                rr = rr + 1 if rr + 1 < n_slots else 0
                seq = slot[1] = slot[1] + 1
                frame = b'id: %d-0\nevent: token\ndata: {"content":"tok","seq":%d,"ts":%d}\n\n' % (seq, seq, ts)
                await slot[0]({"type": "http.response.body", "body": frame, "more_body": True})

        sent, elapsed = await paced(rate, duration_s, emit) if n_slots else (0, 0.0)
        achieved = sent / elapsed if elapsed else 0.0
        per_stream = ",".join(str(s[1]) for s in slots)
        body = (f'{{"sent":{sent},"elapsed_s":{elapsed},"achieved":{achieved},"per_stream":[{per_stream}]}}').encode()
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": body})


def _replay_body(n: int) -> bytes:
    frames = [b'id: %d-0\nevent: token\ndata: {"content":"tok","seq":%d,"ts":0}\n\n' % (i, i) for i in range(1, n)]
    frames.append(_DONE.replace(b"id: 1-1", b"id: %d-0" % n))
    return b"".join(frames)


async def _drain_body(receive: Receive) -> None:
    while (await receive()).get("more_body"):
        pass


def main() -> None:
    settings = Settings.from_env()
    config = uvicorn.Config(Ceiling(), host=settings.host, port=settings.port, log_level="warning",
                            loop="uvloop", http="httptools", access_log=False, lifespan="off")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
