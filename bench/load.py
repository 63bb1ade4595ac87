"""The load process: SSE clients driven by JSON lines on stdin, answering on stdout.

``python -m bench.load SPEC.json`` where the spec's ``mode`` is

* ``streams``: open every path (bounded concurrency), say ``ready``, then answer commands:
  ``snap`` (received so far, latencies since the last snap), ``wait`` (until the per-stream
  expected counts arrive or a timeout), ``close``;
* ``ttfe``: POST messages (``samples`` one after another, or ``concurrency`` senders for
  ``duration_s``) and report POST-to-``intent`` times;
* ``replay``: read a stored stream ``repeats`` times and report the time to its last event.

Runs on uvloop, like the servers.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import uvloop

from bench.client import LiveStream, OneShot, request
from bench.procs import raise_nofile
from bench.stats import summary

OPEN_ATTEMPTS = 3  # a stream open refused (503 from an overloaded pool, a reset) is tried again


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def streams(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    host, port, headers = spec["host"], spec["port"], spec["headers"]
    latencies: list[int] = []
    paths: list[str] = spec["paths"]
    conns: list[LiveStream | None] = [None] * len(paths)  # in path order, like the expected counts
    sem = asyncio.Semaphore(spec.get("open_concurrency", 256))
    failed: dict[str, int] = {}
    retried: dict[str, int] = {}  # opens that failed once and were tried again (a busy machine)

    async def open_one(i: int) -> None:
        for attempt in range(OPEN_ATTEMPTS):
            why = await _open(i)
            if why is None:
                return
            counts = failed if attempt == OPEN_ATTEMPTS - 1 else retried
            counts[why] = counts.get(why, 0) + 1
            await asyncio.sleep(0.5)

    async def _open(i: int) -> str | None:
        async with sem:
            c = LiveStream(latencies)
            try:
                await loop.create_connection(lambda: c, host, port)
                c.send(request("GET", host, port, paths[i], headers))
                status = await asyncio.wait_for(c.opened, spec.get("open_timeout_s", 60))
            except (OSError, TimeoutError, ConnectionError) as exc:
                return type(exc).__name__
            if status != 200:
                if c.transport is not None:
                    c.transport.close()
                return str(status)
            conns[i] = c
            return None

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(len(paths))))
    live = [c for c in conns if c is not None]
    emit({"event": "ready", "open": len(live), "failed": failed, "retried": retried, "open_s": time.monotonic() - t0})
    stdin = await _lines()
    while line := await stdin.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "snap":
            emit({"received": sum(c.count for c in live), "lat_us": summary(latencies)})
            latencies.clear()
        elif cmd["cmd"] == "wait":
            emit(await _wait(conns, latencies, cmd["expected"], cmd["timeout_s"]))
            latencies.clear()
        elif cmd["cmd"] == "close":
            break
    for c in live:
        if c.transport is not None:
            c.transport.close()
    emit({"closed": len(live)})


async def _wait(conns: list[LiveStream | None], latencies: list[int], expected: list[int],
                timeout_s: float) -> dict[str, Any]:
    t0 = time.monotonic()
    total = sum(expected)
    while True:
        got = sum(c.count for c in conns if c is not None)
        if got >= total or time.monotonic() - t0 >= timeout_s:
            break
        await asyncio.sleep(0.002)
    waited = time.monotonic() - t0
    lost = sum(max(0, e - (c.count if c is not None else 0)) for c, e in zip(conns, expected, strict=True))
    live = [c for c in conns if c is not None]
    return {
        "received": got, "expected": total, "waited_s": waited, "reached": got >= total, "lost": lost,
        "dups": sum(c.dups for c in live), "gaps": sum(c.gaps for c in live),
        "dropped_connections": sum(1 for c in live if c.lost_connection),
        "lat_us": summary(latencies),
    }


async def ttfe(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    host, port, headers = spec["host"], spec["port"], spec["headers"]
    body = json.dumps({"content": spec.get("content", "Hello there, how are you today?")}).encode()
    times_ms: list[float] = []
    head_ms: list[float] = []  # POST written to response headers: the gateway's own part
    errors: dict[str, int] = {}

    async def one(ses_id: str) -> None:
        c = OneShot(b"event: intent", (b"event: done", b"event: error"))
        try:
            await loop.create_connection(lambda: c, host, port)
            t0 = time.monotonic_ns()
            c.send(request("POST", host, port, f"/v1/agents/sessions/{ses_id}/messages", headers, body))
            await asyncio.wait_for(c.finished, 60)
        except (OSError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        finally:
            if c.transport is not None:
                c.transport.close()
        if c.status != 200 or not c.t_marker:
            errors[str(c.status)] = errors.get(str(c.status), 0) + 1
            return
        times_ms.append((c.t_marker - t0) / 1e6)
        head_ms.append((c.t_status - t0) / 1e6)

    t0 = time.monotonic()
    sessions = spec["sessions"]
    if "samples" in spec:
        lo, hi = spec.get("gap_s", (0.02, 0.1))
        for i in range(spec["samples"]):
            await one(sessions[i % len(sessions)])
            await asyncio.sleep(random.uniform(lo, hi))
    else:
        deadline = time.monotonic() + spec["duration_s"]

        async def sender(ses_id: str) -> None:
            while time.monotonic() < deadline:
                await one(ses_id)

        await asyncio.gather(*(sender(sessions[i % len(sessions)]) for i in range(spec["concurrency"])))
    emit({"ttfe_ms": summary(times_ms, scale=1.0), "headers_ms": summary(head_ms), "errors": errors,
          "messages": len(times_ms),
          "elapsed_s": time.monotonic() - t0})


async def replay(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    host, port, headers = spec["host"], spec["port"], spec["headers"]
    runs: list[dict[str, Any]] = []
    for _ in range(spec["repeats"]):
        c = OneShot(b"\nevent: ", (b"event: done",))
        await loop.create_connection(lambda c=c: c, host, port)  # type: ignore[misc]
        t0 = time.monotonic_ns()
        c.send(request("GET", host, port, spec["path"], headers))
        await asyncio.wait_for(c.finished, 60)
        t1 = time.monotonic_ns()
        if c.transport is not None:
            c.transport.close()
        runs.append({"ms": (t1 - t0) / 1e6, "events": c.events, "status": c.status})
        await asyncio.sleep(0.2)
    emit({"runs": runs})


def main() -> None:
    raise_nofile()
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    mode = {"streams": streams, "ttfe": ttfe, "replay": replay}[spec["mode"]]
    uvloop.run(mode(spec))


if __name__ == "__main__":
    main()
