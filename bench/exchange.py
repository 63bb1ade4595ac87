"""One conversation's keep-alive HTTP/1.1 connection for ``bench.conversations``: send a
message, read its SSE answer to the end (chunked encoding decoded by hand, one regex pass per
read over whole frames), and note what the end-to-end figures need in the shared ``Stats``.

Cheap on purpose: the load process shares two cores with what it measures.
"""

from __future__ import annotations

import asyncio
import re
import time

_EVENT = re.compile(rb"id: ([^\n]*)\nevent: ([^\n]*)\n")
_TERMINAL = (b"done", b"error")


def _id_key(eid: bytes) -> tuple[int, int]:
    ms, _, seq = eid.partition(b"-")
    return int(ms), int(seq or 0)


class Stats:
    """What every conversation adds to; the window decides what counts in the summaries."""

    def __init__(self, token_ms: float) -> None:
        self.token_us = token_ms * 1000
        self.t_from = float("inf")  # monotonic s: the measured window
        self.t_to = float("inf")
        self.events = 0  # distinct events received in the window
        self.finished = 0  # messages whose response ended in the window
        self.ttfe_ms: list[float] = []
        self.ttft_ms: list[float] = []
        self.gap_ms: list[float] = []  # gap between consecutive tokens minus the pacing
        self.message_ms: list[float] = []  # POST written to the end of its response, per ended message
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
            st.message_ms.append((time.monotonic() - self.t_sent) * 1000)
            if st.in_window(time.monotonic()):
                st.finished += 1
        if not ok or not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


def request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()),
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
