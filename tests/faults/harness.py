"""Fault-suite helpers: a background SSE listener and lookups into the message record."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from shared import keys
from tests import sse
from tests.stack import Proc, Stack


class Listener(threading.Thread):
    """Reads one SSE response in the background, keeping every event and the raw text."""

    def __init__(self, method: str, url: str, headers: dict[str, str], json: Any = None) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.headers, self.json = method, url, headers, json
        self.events: list[sse.Ev] = []
        self.raw = ""
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=60) as client, \
                    client.stream(self.method, self.url, headers=self.headers, json=self.json) as r:
                self.status = r.status_code
                self.response_headers = dict(r.headers)
                buf = ""
                for chunk in r.iter_text():
                    self.raw += chunk
                    buf += chunk
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        self.events.extend(sse.parse(block + "\n\n"))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def wait_for(self, pred, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred(self.events):
                return
            time.sleep(0.01)
        raise TimeoutError(f"condition not met; got {[e.type for e in self.events]}")

    def last_id(self) -> str | None:
        ids = [e.id for e in self.events if e.id and e.type != "reset"]
        return ids[-1] if ids else None


def record(stack: Stack, sid: str, mid: str) -> dict[str, str]:
    h = stack.redis_call(lambda r: r.hgetall(keys.message(sid, mid)))
    return {k.decode(): v.decode() for k, v in h.items()}


def stored(stack: Stack, sid: str, mid: str) -> list[sse.Ev]:
    import json

    rows = stack.redis_call(lambda r: r.xrange(keys.events(sid, mid)))
    return [sse.Ev(i.decode(), f[b"t"].decode(), json.loads(f[b"d"])) for i, f in rows]


def worker_running(stack: Stack, sid: str, mid: str, timeout_s: float = 10) -> Proc:
    """The worker process that holds the message's current attempt."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = record(stack, sid, mid)
        if rec.get("worker"):
            pid = int(rec["worker"].split(":")[1])
            for p in stack.procs:
                if p.kind == "worker" and p.popen.pid == pid:
                    return p
        time.sleep(0.01)
    raise TimeoutError("no worker picked the message up")


def check_log(events: list[sse.Ev]) -> dict[str, int]:
    """Counts for one message's stored log: terminal events, duplicate tool results, resets."""
    terminals = sum(1 for e in events if e.type in ("done", "error"))
    results: dict[str, int] = {}
    for e in events:
        if e.type == "tool_result":
            results[e.data["tool_call_id"]] = results.get(e.data["tool_call_id"], 0) + 1
    return {"terminal": terminals, "tool_reruns": sum(n - 1 for n in results.values()),
            "resets": sum(1 for e in events if e.type == "reset")}


def effective_tokens(events: list[sse.Ev]) -> str:
    """The answer a client that honours resets shows."""
    out: list[sse.Ev] = []
    for e in events:
        if e.type == "reset" and e.data.get("reason") == "retry":
            keep = e.data.get("discard_after")
            while out and keep not in (None, "0-0") and out[-1].id != keep:
                out.pop()
            if keep in (None, "0-0"):
                out.clear()
            continue
        out.append(e)
    return "".join(e.data["content"] for e in out if e.type == "token")
