"""Shared by the client fault tests: the stacks, the fault controller and the exactness counts."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared import cursor, keys
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text
from tests.proxy import CuttingProxy
from tests.stack import Proc, Stack

CLAUDE = "claude-haiku-4-5-20251001"
FAKE_KEY = "sk-ant-clients-not-a-real-key"
# Chat answers have only small events: cut within a few hundred body bytes, they still make
# progress on every connection, so they give many cycles. Search answers carry tool results of
# a few KB: the body cut range must reach past them.
CHAT = ["hello there, what can you do?", "hi! how are you today?", "thanks, that helps a lot",
        "good morning, who are you?"]
CHAT_CUTS = (1, 600)
SEARCH = ["find documents about redis streams and consumer groups",
          "search for notes on server-sent events behind a proxy"]
SEARCH_CUTS = (1, 3500)
QUESTIONS = ["find documents about redis streams and consumer groups",
             "search for notes on server-sent events behind a proxy",
             "hello there, what can you do?",
             "find runbooks about incident response and on-call"]
# Fast tokens and a short `retry:`, so hundreds of cut/resume cycles fit in seconds; a short
# lease and reaper interval, so a SIGKILLed worker's message moves on quickly.
FAULT_ENV = {"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "3", "AGENTSTREAM_SSE_RETRY_MS": "5",
             "AGENTSTREAM_HEARTBEAT_S": "1", "AGENTSTREAM_LEASE_S": "2", "AGENTSTREAM_REAPER_INTERVAL_S": "0.5",
             "AGENTSTREAM_WORKER_DRAIN_S": "1", "ANTHROPIC_API_KEY": FAKE_KEY}
# A per-message stream capped at a few entries (MAXLEN ~, with Redis trimming in nodes of 2),
# and tokens slow enough that a resumed cursor has been trimmed away.
TRIM_ENV = {"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "10", "AGENTSTREAM_SSE_RETRY_MS": "20",
            "AGENTSTREAM_HEARTBEAT_S": "1", "AGENTSTREAM_STREAM_MAXLEN": "6"}


def diverging(counter: itertools.count[int]) -> Any:
    """A paced Claude whose every answer differs: a retried attempt diverges (``reset retry``)."""
    def reply(body: dict[str, Any]) -> Reply:
        n = next(counter)
        return Reply([Text(*[f"a{n}w{i} " for i in range(40)])], delay_s=0.015)
    return reply


@dataclass
class Faulty:
    """A stack of two gateways and two workers behind a cutting proxy, and a paced fake Claude."""

    stack: Stack
    proxy: CuttingProxy
    fake: FakeAnthropic
    env: dict[str, str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gateways(self) -> list[Proc]:
        return [p for p in self.stack.procs if p.kind == "gateway"]

    def workers(self) -> list[Proc]:
        return [p for p in self.stack.procs if p.kind == "worker"]

    @property
    def direct(self) -> str:
        return self.gateways()[0].url

    def kill_gateway(self, port: int | None = None) -> int:
        """SIGKILL the gateway on ``port`` (default: the one serving the newest message stream
        through the proxy), start another."""
        with self.lock:
            port = port or self.proxy.last_stream_upstream
            victim = next(p for p in self.gateways() if p.port == port)
            self.stack.stop_proc(victim, signal.SIGKILL)
            fresh = self.stack.start_gateway(**self.env)
            self.proxy.set_upstreams([p.port for p in self.gateways() if p.port is not None])
            return fresh.port or 0

    def kill_worker_of(self, sid: str, mid: str) -> int:
        """SIGKILL the worker that runs this message's attempt, and start a spare."""
        with self.lock:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rec = self.stack.redis_call(lambda r: r.hget(keys.message(sid, mid), "worker"))
                pid = int(rec.decode().split(":")[1]) if rec else None
                victim = next((p for p in self.workers() if p.popen.pid == pid), None)
                if victim is not None:
                    self.stack.stop_proc(victim, signal.SIGKILL)
                    self.stack.start_worker(**self.env)
                    return pid or 0
                time.sleep(0.01)
            raise TimeoutError("no worker holds the message")


def stored(stack: Stack, sid: str, mid: str) -> list[tuple[str, str, Any]]:
    rows = stack.redis_call(lambda r: r.xrange(keys.events(sid, mid)))
    return [(i.decode(), f[b"t"].decode(), json.loads(f[b"d"])) for i, f in rows]


def effective(log: list[tuple[str, str, Any]]) -> list[tuple[str, str]]:
    """What an application keeps from a stored log: each ``reset retry`` applied."""
    out: list[tuple[str, str]] = []
    for eid, t, d in log:
        if t == "reset":
            keep = cursor.parse(d.get("discard_after") or "0-0")
            out = [e for e in out if cursor.parse(e[0]) <= keep]
            continue
        out.append((eid, t))
    return out


@dataclass
class Tally:
    """Exactness over many messages: what the application kept against the stored log."""

    messages: int = 0
    cycles: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    bad_retractions: int = 0
    resets: dict[str, int] = field(default_factory=dict)

    def check(self, delivered: list[tuple[str, str, tuple[str, ...], str]], want: list[tuple[str, str]],
              cycles: int) -> list[tuple[str, str]]:
        """``delivered``: (id, type, retracted, reset reason) in the order the app saw them."""
        kept: list[tuple[str, str]] = []
        seen: set[str] = set()
        for eid, t, retracted, reason in delivered:
            if t == "reset":
                self.resets[reason] = self.resets.get(reason, 0) + 1
                ids = {e[0] for e in kept}
                self.bad_retractions += sum(1 for r in retracted if r not in ids)
                kept = [e for e in kept if e[0] not in set(retracted)]
                seen -= set(retracted)
                continue
            if eid in seen:
                self.duplicated += 1
            seen.add(eid)
            if kept and cursor.parse(eid) <= cursor.parse(kept[-1][0]):
                self.out_of_order += 1
            kept.append((eid, t))
        self.messages += 1
        self.cycles += cycles
        self.lost += len(set(want) - set(kept))
        self.duplicated += len(set(kept) - set(want))  # kept but not in the log: shown twice or stale
        return kept

    def exact(self) -> tuple[int, int, int, int]:
        return (self.lost, self.duplicated, self.out_of_order, self.bad_retractions)

    def line(self, who: str) -> str:
        return (f"{who}: {self.cycles} cut/resume cycles over {self.messages} messages; lost={self.lost} "
                f"duplicated={self.duplicated} out_of_order={self.out_of_order} "
                f"bad_retractions={self.bad_retractions} resets={self.resets}")


class FaultController:
    """A small HTTP server in the test process that lets a client test in another process (node)
    fire the same faults and read the same stored logs as the Python tests."""

    def __init__(self, faulty: Faulty, trim: Stack) -> None:
        self.faulty, self.trim = faulty, trim
        ctl = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                try:
                    body = ctl.answer(url.path, q)
                    status = 200
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    body, status = {"error": repr(exc)}, 500
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, q: dict[str, str]) -> Any:
        if path == "/stored":
            stack = self.trim if q.get("stack") == "trim" else self.faulty.stack
            return [{"id": i, "type": t, "data": d} for i, t, d in stored(stack, q["sid"], q["mid"])]
        if path == "/kill_worker":
            return {"pid": self.faulty.kill_worker_of(q["sid"], q["mid"])}
        if path == "/kill_gateway":
            return {"port": self.faulty.kill_gateway()}
        raise LookupError(path)

    def __enter__(self) -> FaultController:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
