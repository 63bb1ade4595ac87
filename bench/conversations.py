"""The conversations load process of the end-to-end scenario: ``python -m bench.conversations SPEC.json``.

C conversations, each on its own session and its own keep-alive connection: send a message
(``POST .../messages``, SSE), read its events to the end of the response, send the next, until
``duration_s``. Conversations start spread over ``ramp_s``; events, messages and token gaps
count only between ``warmup_s`` and ``duration_s`` (the measured window, where CPU is read).
After the window no message starts; those in flight get ``drain_s`` to end. TTFE and time to
first token count every message of the run, the first ones too (a server that queues shows it
there first); a message that got no event by the end of the drain counts with the time it
waited so far (a lower bound) and as unfinished.

Per message it notes the time to the first event (TTFE) and to the first token, the gaps between
consecutive tokens minus the pacing (``token_ms``), the distinct events (by ``id``, duplicates
counted apart), terminal events (``done``/``error``) and resets. Lines on stdout:

* ``ready`` after ``warm`` messages, one after another (their token counts included);
* ``measuring`` at ``warmup_s`` and ``window`` at ``duration_s`` (the orchestrator reads CPU
  between the two), with the events and messages delivered so far;
* ``done`` with the summaries and, per finished message, (message id, session, events).

Cheap on purpose (it shares two cores with what it measures): raw asyncio protocols on uvloop,
one regex pass per read over whole frames, chunked encoding decoded by hand.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

import uvloop

from bench.procs import raise_nofile
from bench.stats import summary

_EVENT = re.compile(rb"id: ([^\n]*)\nevent: ([^\n]*)\n")
_TERMINAL = (b"done", b"error")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _id_key(eid: bytes) -> tuple[int, int]:
    ms, _, seq = eid.partition(b"-")
    return int(ms), int(seq or 0)


class Stats:
    """What every conversation adds to; the window decides what counts in the summaries."""

    def __init__(self, token_ms: float) -> None:
        self.token_us = token_ms * 1000
        self.t_from = float("inf")  # monotonic s: the measured window
        self.t_to = float("inf")
        self.events = 0  # distinct events received, whole run
        self.finished = 0  # messages whose response ended, whole run
        self.ttfe_ms: list[float] = []
        self.ttft_ms: list[float] = []
        self.gap_ms: list[float] = []  # gap between consecutive tokens minus the pacing
        self.dups = 0
        self.resets = 0
        self.bad_terminal = 0  # responses that ended with other than exactly one terminal
        self.errors: dict[str, int] = {}
        self.messages: list[tuple[str, str, int]] = []  # (message id, session, distinct events) per ended one
        self.tokens: list[int] = []

    def in_window(self, t: float) -> bool:
        return self.t_from <= t < self.t_to

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Exchange(asyncio.Protocol):
    """One keep-alive connection carrying one conversation's messages, one at a time."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.done: asyncio.Future[None] | None = None
        self._reset_message()

    def _reset_message(self) -> None:
        self.head = b""
        self.status = 0
        self.ended = False  # this response is over; stray bytes (the last CRLF) are dropped
        self.chunked = False
        self.length = -1  # Content-Length of a non-streaming answer
        self.keep_alive = True
        self.raw = b""  # undecoded chunked bytes
        self.want = -1  # bytes left in the current chunk (-1: a size line comes next)
        self.tail = b""  # SSE bytes after the last whole frame
        self.msg_id = ""
        self.session = ""
        self.t_sent = 0.0
        self.first = False
        self.first_token = False
        self.last_token = 0.0
        self.last_key = (-1, -1)
        self.n_events = 0
        self.n_tokens = 0
        self.terminals = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.stats.error("connection_lost")
            self._end(ok=False)

    def send(self, request: bytes, session: str) -> asyncio.Future[None]:
        assert self.transport is not None
        self._reset_message()
        self.session = session
        self.done = asyncio.get_running_loop().create_future()
        self.t_sent = time.monotonic()
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        if not self.status:
            self.head = (self.head + data).lstrip(b"\r\n")  # the CRLF ending the last response
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head, data = self.head[:i].lower(), self.head[i + 4:]
            self.status = int(head[9:12])
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                value = value.strip()
                if name == b"transfer-encoding":
                    self.chunked = b"chunked" in value
                elif name == b"content-length":
                    self.length = int(value)
                elif name == b"connection":
                    self.keep_alive = value != b"close"
                elif name == b"x-message-id":
                    self.msg_id = value.decode()
            if self.status != 200:
                self.stats.error(f"http_{self.status}")
                self.keep_alive = False  # read nothing more: a fresh connection for the next
                self._end(ok=False)
                return
        if self.chunked:
            self._dechunk(data)
        else:  # an event stream without chunked encoding ends with the connection
            self.keep_alive = False
            self._sse(data)

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw + data if self.raw else data
        pos, n = 0, len(raw)
        out = []
        while pos < n:
            if self.want > 0:
                take = min(self.want, n - pos)
                out.append(raw[pos:pos + take])
                pos += take
                self.want -= take
                continue
            # after a chunk's data comes CRLF, then the next size line: both end with CRLF
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            line = raw[pos:eol]
            pos = eol + 2
            if self.want == 0:  # the CRLF that ends a chunk's data
                self.want = -1
                continue
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:  # last chunk; then (no trailers) one CRLF
                if out:
                    self._sse(b"".join(out))
                    out = []
                self.raw = b""
                self._end(ok=True)
                return
            self.want = size
        self.raw = raw[pos:]
        if out:
            self._sse(b"".join(out))

    def _sse(self, data: bytes) -> None:
        buf = self.tail + data if self.tail else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.tail = buf
            return
        self.tail = buf[end + 2:]
        now = time.monotonic()
        st = self.stats
        window = st.t_from <= now < st.t_to
        for eid, kind in _EVENT.findall(buf, 0, end + 1):
            key = _id_key(eid)
            if key <= self.last_key:
                st.dups += 1
                continue
            self.last_key = key
            self.n_events += 1
            if window:
                st.events += 1
            if not self.first:
                self.first = True
                st.ttfe_ms.append((now - self.t_sent) * 1000)
            if kind == b"token":
                self.n_tokens += 1
                if not self.first_token:
                    self.first_token = True
                    st.ttft_ms.append((now - self.t_sent) * 1000)
                elif window:
                    st.gap_ms.append((now - self.last_token) * 1000 - st.token_us / 1000)
                self.last_token = now
            elif kind in _TERMINAL:
                self.terminals += 1
            elif kind == b"reset":
                st.resets += 1

    def _end(self, ok: bool) -> None:
        self.ended = True
        st = self.stats
        if ok or self.n_events:
            if self.terminals != 1:
                st.bad_terminal += 1
            st.messages.append((self.msg_id, self.session, self.n_events))
            st.tokens.append(self.n_tokens)
            if st.in_window(time.monotonic()):
                st.finished += 1
        if not ok or not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


def _request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()),
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.stats = Stats(spec.get("token_ms", 0))
        body = json.dumps({"content": spec.get("content", "hello, how are you?")}).encode()
        host, port = spec["host"], spec["port"]
        self.sessions: list[str] = spec["sessions"]
        self.requests = [_request(host, port, spec["path"].format(session=s), spec["headers"], body)
                         for s in spec["sessions"]]
        self.stop_at = float("inf")
        self.in_flight: set[Exchange] = set()

    async def _connect(self) -> Exchange:
        loop = asyncio.get_running_loop()
        ex = Exchange(self.stats)
        await loop.create_connection(lambda: ex, self.spec["host"], self.spec["port"])
        return ex

    async def one(self, ex: Exchange | None, i: int, timeout_s: float) -> Exchange | None:
        """One message on conversation i; the connection to use next (None: open a new one)."""
        try:
            if ex is None or ex.closed:
                ex = await self._connect()
            self.in_flight.add(ex)
            try:
                await asyncio.wait_for(ex.send(self.requests[i], self.sessions[i]), timeout_s)
            finally:
                self.in_flight.discard(ex)
        except (OSError, TimeoutError) as exc:
            self.stats.error(type(exc).__name__)
            if ex is not None and ex.transport is not None:
                ex.transport.close()
            await asyncio.sleep(0.05)
            return None
        return None if ex.closed else ex

    async def conversation(self, i: int, start_s: float, timeout_s: float) -> None:
        await asyncio.sleep(start_s)
        ex: Exchange | None = None
        while time.monotonic() < self.stop_at:
            ex = await self.one(ex, i, timeout_s)
        if ex is not None and ex.transport is not None:
            ex.transport.close()

    async def warm(self, n: int) -> list[int]:
        for i in range(min(n, len(self.requests))):
            ex = await self.one(None, i, 60)
            if ex is not None and ex.transport is not None:
                ex.transport.close()
        tokens = list(self.stats.tokens)
        self.stats = Stats(self.spec.get("token_ms", 0))  # the warm-up counts for nothing
        return tokens

    async def run(self) -> dict[str, Any]:
        spec, st = self.spec, self.stats
        c = len(self.requests)
        t0 = time.monotonic()
        st.t_from, st.t_to = t0 + spec["warmup_s"], t0 + spec["duration_s"]
        self.stop_at = st.t_to
        drain_s = spec["drain_s"]
        tasks = [asyncio.create_task(self.conversation(i, spec["ramp_s"] * i / c, spec["duration_s"] + drain_s))
                 for i in range(c)]
        await asyncio.sleep(max(0.0, st.t_from - time.monotonic()))
        emit({"event": "measuring", "events": st.events, "finished": st.finished})
        await asyncio.sleep(max(0.0, st.t_to - time.monotonic()))
        window = {"event": "window", "events": st.events, "finished": st.finished,
                  "seconds": st.t_to - st.t_from, "in_flight": len(self.in_flight)}
        emit(window)
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        unfinished = len(self.in_flight)
        now = time.monotonic()
        st.ttfe_ms += [(now - ex.t_sent) * 1000 for ex in self.in_flight if not ex.first]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return {
            "event": "done", "conversations": c, "window": window, "unfinished": unfinished,
            "drain_s": time.monotonic() - st.t_to,
            "ttfe_ms": summary(st.ttfe_ms), "ttft_ms": summary(st.ttft_ms), "gap_ms": summary(st.gap_ms),
            "dups": st.dups, "resets": st.resets, "bad_terminal": st.bad_terminal, "errors": st.errors,
            "ended": len(st.messages), "tokens": summary(st.tokens), "messages": st.messages,
        }


async def main(spec: dict[str, Any]) -> None:
    load = Load(spec)
    tokens = await load.warm(spec.get("warm", 0))
    emit({"event": "ready", "warm_tokens": tokens})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if json.loads(line)["cmd"] == "run":
            emit(await load.run())
            break


if __name__ == "__main__":
    raise_nofile()
    with open(sys.argv[1]) as f:
        uvloop.run(main(json.load(f)))
