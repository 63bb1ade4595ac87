"""A deliberately cheap HTTP/1.1 SSE client: asyncio protocols over raw sockets.

The load generator shares two cores with everything it measures, so it parses only what the
figures need: the status line, then, in the (chunked) body, each event's ``"seq":N,"ts":T``
(payloads written by ``bench.producer`` and the ceiling) or the ``event:`` lines. Each body
message of the servers is one whole chunk of whole frames, so chunk-size lines never split a
frame and can be ignored; only TCP splits matter, which the tail after the last blank line
handles.
"""

from __future__ import annotations

import asyncio
import re
import time

_SEQ_TS = re.compile(rb'"seq":(\d+),"ts":(\d+)')
_END = b"\r\n0\r\n\r\n"  # last chunk of a chunked body


def now_us() -> int:
    return time.monotonic_ns() // 1000  # CLOCK_MONOTONIC: one clock for every process


def request(method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Http(asyncio.Protocol):
    """Status line and headers, then every body byte to ``body()``."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.status = 0
        self.t_status = 0  # monotonic ns when the status line and headers were in
        self.connected: asyncio.Future[None] = loop.create_future()
        self.opened: asyncio.Future[int] = loop.create_future()  # status code
        self.finished: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connected.set_result(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            self.status = int(self.head[9:12])
            self.t_status = time.monotonic_ns()
            data, self.head = self.head[i + 4:], b""
            if not self.opened.done():
                self.opened.set_result(self.status)
            if self.status != 200:
                self.finish()
                return
            if not data:
                return
        self.body(data)

    def body(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the response: {exc}"))
        if not self.finished.done():
            self.finished.set_result(None)


class LiveStream(_Http):
    """One open event stream: counts events by ``seq`` (gaps, duplicates) and records each
    event's latency from the ``ts`` its producer stamped just before the XADD."""

    def __init__(self, latencies: list[int]) -> None:
        super().__init__()
        self.latencies = latencies
        self.tail = b""
        self.next_seq = 1
        self.count = 0  # distinct events received
        self.dups = 0
        self.gaps = 0
        self.lost_connection = False

    def body(self, data: bytes) -> None:
        buf = self.tail + data if self.tail else data
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.tail = buf
            return
        self.tail = buf[end + 2:]
        now = now_us()
        nxt = self.next_seq
        lat = self.latencies
        n = 0
        for s, ts in _SEQ_TS.findall(buf, 0, end):
            seq = int(s)
            if seq < nxt:
                self.dups += 1
                continue
            if seq > nxt:
                self.gaps += seq - nxt
            nxt = seq + 1
            n += 1
            lat.append(now - int(ts))
        self.next_seq = nxt
        self.count += n

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_connection = True
        super().connection_lost(exc)


class OneShot(_Http):
    """A request whose answer ends: notes when a marker first arrives and when it ends."""

    def __init__(self, marker: bytes, ends: tuple[bytes, ...]) -> None:
        super().__init__()
        self.marker = marker
        self.ends = ends
        self.t_marker = 0
        self.buf = b""
        self.events = 0
        self.tail = b""

    def body(self, data: bytes) -> None:
        scan = self.tail + data
        if not self.t_marker and self.marker in scan:
            self.t_marker = time.monotonic_ns()
        self.events += scan.count(b"\nevent: ") - self.tail.count(b"\nevent: ")
        self.tail = scan[-32:]
        if any(e in scan for e in self.ends) or scan.endswith(_END):
            self.finish()
