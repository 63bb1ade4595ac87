"""A TCP proxy on loopback that cuts connections at random byte offsets, for fault tests.

Runs its own asyncio loop on a thread. Each accepted connection goes to the next live upstream
(round robin; a refused connect moves on, so a SIGKILLed gateway drops out by itself). A
connection whose first request matches ``cut_when`` is cut (seeded): a share ``head_ratio`` of
cuts falls inside the response headers, the others after a number of body bytes drawn from
``cut_bytes`` (mid-event, between events, anywhere); a body cut is counted from the end of the
headers, so an answer always makes progress when a cut may land past its largest event.
``drop_next(n)`` forwards the next ``n`` matching requests and closes the connection as soon as
the server starts answering, without forwarding a byte (a response lost after the server
accepted). ``hold()`` parks new connections and freezes forwarding until ``release()``;
``cut_all()`` cuts every open connection now. Counters say what happened.

The same controls are reachable over HTTP on a port of their own, ``control_url`` (for tests in
other processes; a port apart, so a client's kept-alive connection can never carry them):
``POST /__proxy__/{hold,release,cut_all,drop_next,stats,config}``; ``config`` takes
``?lo=&hi=&ratio=&head=`` and sets the cut range and shares.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from urllib.parse import parse_qs, urlsplit

_CONTROL = b"/__proxy__/"
_METHODS = frozenset({b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"})


class _Conn:
    """How the response to the current request on one connection ends."""

    __slots__ = ("at", "cut", "drop", "match", "port", "seen", "sent")

    def __init__(self) -> None:
        self.port = 0  # the upstream this connection goes to
        self.match = False
        self.cut: tuple[bool, float | int] | None = None  # (inside the headers?, where)
        self.drop = False
        self.sent = 0
        self.seen = b""
        self.at: int | None = None  # the byte offset of the cut, once the headers' length is known


def messages_only(head: bytes) -> bool:
    """Cut message streams (send, resume, confirmations), never session or data calls."""
    line = head.split(b"\r\n", 1)[0]
    return b"/messages" in line or b"/confirmations/" in line


class CuttingProxy:
    def __init__(self, upstreams: list[int], *, seed: int = 0, cut_bytes: tuple[int, int] = (1, 4000),
                 cut_ratio: float = 1.0, head_ratio: float = 0.15,
                 cut_when: Callable[[bytes], bool] = messages_only) -> None:
        self.upstreams = list(upstreams)
        self.rng = random.Random(seed)
        self.cut_bytes = cut_bytes
        self.cut_ratio = cut_ratio
        self.head_ratio = head_ratio
        self.cut_when = cut_when
        self.counters: Counter[str] = Counter()
        self.port = 0
        self.control_port = 0
        self.last_upstream = 0  # the gateway the newest connection went to
        self.last_stream_upstream = 0  # the gateway serving the newest request that cut_when matched
        self._next = 0
        self._drops = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._released = asyncio.Event()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._control_server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="cutting-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> CuttingProxy:
        self._thread.start()
        self._call(self._start()).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None and self._control_server is not None
            self._server.close()
            self._control_server.close()
            for w in list(self._open):
                w.transport.abort()
        self._call(close()).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> CuttingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start(self) -> None:
        self._released.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._control_server = await asyncio.start_server(self._serve_control, "127.0.0.1", 0)
        self.control_port = self._control_server.sockets[0].getsockname()[1]

    # --- controls (thread-safe) -------------------------------------------------------------

    def hold(self) -> None:
        self._loop.call_soon_threadsafe(self._released.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)

    def cut_all(self) -> None:
        self._call(self._cut_all()).result(10)

    def drop_next(self, n: int = 1) -> None:
        self._loop.call_soon_threadsafe(self._add_drops, n)

    def set_upstreams(self, ports: list[int]) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "upstreams", list(ports))

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    def _add_drops(self, n: int) -> None:
        self._drops += n

    async def _cut_all(self) -> None:
        for w in list(self._open):
            self.counters["cut_all"] += 1
            w.close()

    # --- one connection ----------------------------------------------------------------------

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            head = await cr.read(65536)
            if not head:
                return
            self._open.add(cw)
            await self._released.wait()
            self.counters["connections"] += 1
            state = _Conn()
            self._arm(state, head)
            upstream = await self._connect()
            if upstream is None:
                self.counters["no_upstream"] += 1
                return
            ur, uw = upstream
            state.port = self.last_upstream
            if state.match:
                self.last_stream_upstream = state.port
            uw.write(head)
            pump = asyncio.create_task(self._pump_up(cr, uw, state))
            try:
                await self._pump_down(ur, cw, state)
            finally:
                pump.cancel()
                uw.close()
        except (ConnectionError, OSError):
            self.counters["errors"] += 1
        finally:
            self._open.discard(cw)
            cw.close()

    def _arm(self, state: _Conn, head: bytes) -> None:
        """A new request on the connection (a kept-alive one too): decide how its response ends."""
        self.counters["requests"] += 1
        match = state.match = self.cut_when(head)
        if match and state.port:
            self.last_stream_upstream = state.port  # a new request on a kept-alive connection
        state.drop = match and self._drops > 0
        if state.drop:
            self._drops -= 1
        state.cut, state.sent, state.seen, state.at = None, 0, b"", None
        if match and not state.drop and self.rng.random() < self.cut_ratio:
            in_head = self.rng.random() < self.head_ratio
            state.cut = (in_head, self.rng.random() if in_head else self.rng.randint(*self.cut_bytes))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.upstreams)):
            port = self.upstreams[self._next % len(self.upstreams)]
            self._next += 1
            try:
                conn = await asyncio.open_connection("127.0.0.1", port)
                self.last_upstream = port
                return conn
            except OSError:
                self.counters["failovers"] += 1
        return None

    async def _pump_up(self, cr: asyncio.StreamReader, uw: asyncio.StreamWriter, state: _Conn) -> None:
        try:
            while data := await cr.read(65536):
                if data.split(b" ", 1)[0] in _METHODS:
                    self._arm(state, data)  # clients here never pipeline: the last response is over
                uw.write(data)
                await uw.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            uw.close()

    async def _pump_down(self, ur: asyncio.StreamReader, cw: asyncio.StreamWriter, state: _Conn) -> None:
        cw.transport.set_write_buffer_limits(0)  # drain() waits for every byte: a cut is exact
        while data := await ur.read(65536):
            if state.drop:
                self.counters["dropped_responses"] += 1
                return
            await self._released.wait()
            if cw.is_closing():
                return
            if state.cut is not None and state.at is None:
                state.seen += data
                end = state.seen.find(b"\r\n\r\n")
                if end >= 0:
                    in_head, n = state.cut
                    state.at = max(1, int(n * (end + 4))) if in_head else end + 4 + int(n)
            if state.at is not None and state.sent + len(data) >= state.at:
                cw.write(data[:state.at - state.sent])
                await cw.drain()
                self.counters["cuts"] += 1
                if state.cut is not None and state.cut[0]:
                    self.counters["cuts_in_headers"] += 1
                return
            cw.write(data)
            await cw.drain()
            state.sent += len(data)

    async def _serve_control(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            head = await cr.readuntil(b"\r\n\r\n")
            await self._control(head, cw)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            cw.close()

    async def _control(self, head: bytes, cw: asyncio.StreamWriter) -> None:
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[1].startswith(_CONTROL):
            cw.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        target = urlsplit(parts[1].decode())
        action = target.path[len(_CONTROL):]
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        if action == "hold":
            self._released.clear()
        elif action == "release":
            self._released.set()
        elif action == "cut_all":
            await self._cut_all()
        elif action == "drop_next":
            self._add_drops(int(query.get("n", "1")))
        elif action == "config":
            lo, hi = int(query.get("lo", self.cut_bytes[0])), int(query.get("hi", self.cut_bytes[1]))
            self.cut_bytes = (lo, hi)
            self.cut_ratio = float(query.get("ratio", self.cut_ratio))
            self.head_ratio = float(query.get("head", self.head_ratio))
        elif action != "stats":
            cw.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        body = json.dumps(self.stats()).encode()
        cw.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await cw.drain()
