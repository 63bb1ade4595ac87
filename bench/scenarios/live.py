"""Live delivery and throughput over the same 1,000 open streams.

Live delivery: the producer (or, for the ceiling and the peer, the server's own pacer) offers each rate for
``live_s`` seconds, one event per append, round robin over the streams; then the load process
waits until every stream has every event. Gateway CPU per event comes from /proc utime+stime
over that whole window; latency is client receive time minus the producer's stamp.

Throughput: the same, in steps of ``ramp_factor`` from the highest sustained live rate, until a
step is not sustained (``bench.context``); the figure is the last sustained step's rate.

The peer (Vercel's resumable-stream, ``bench/peer``) holds one producer per stream and serves
each client by ``resumeExistingStream``: every event goes producer → PUBLISH → its subscriber
→ SSE, the library's path for a reader that is not the producer's own first reader.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from bench import context
from bench.context import Ctx
from bench.fixtures import events_path
from bench.procs import Child, CpuWindow, Proc


def _post(url: str, timeout_s: float) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


class _InProcess:
    """The ceiling's and the peer's own pacer (``POST /run``)."""

    def __init__(self, server: Proc) -> None:
        self.server = server

    async def __call__(self, rate: float, duration_s: float) -> dict[str, Any]:
        url = f"{self.server.url}/run?rate={rate}&duration_s={duration_s}"
        return await asyncio.to_thread(_post, url, duration_s + 60)


class _Producer:
    def __init__(self, child: Child) -> None:
        self.child = child

    async def __call__(self, rate: float, duration_s: float) -> dict[str, Any]:
        started = await self.child.ask({"cmd": "run", "rate": rate, "duration_s": duration_s})
        assert started["event"] == "started", started
        done = await self.child.read(duration_s + 120)
        if done["errors"]:
            raise RuntimeError(f"producer: {done['errors']} append errors, first: {done['first_error']}")
        return done


class Session:
    """Open streams plus whatever feeds them, for one server kind."""

    def __init__(self, ctx: Ctx, server: Proc, kind: str) -> None:
        self.ctx, self.server, self.kind = ctx, server, kind
        self.received = 0
        self.load: Child | None = None
        self.producer: Child | None = None
        self.drive: Any = None
        self.pids: dict[str, int] = {}

    async def open(self) -> dict[str, Any]:
        ctx, n = self.ctx, self.ctx.counts.streams
        streams: list[tuple[str, str]] | None = None
        if self.kind in ("ceiling", "peer"):
            paths = [f"/s/{i}" for i in range(n)]
            if self.kind == "peer":  # its producers exist before any reader resumes them
                await asyncio.to_thread(_post, f"{self.server.url}/live/setup?n={n}", 300)
        else:
            streams = await ctx.fx.new_messages(ctx.tenant, n)
            paths = [events_path(s, m) for s, m in streams]
        self.load = await Child.start(ctx.cluster, f"load-{self.kind}", "bench.load",
                                      {"mode": "streams", "host": "127.0.0.1", "port": self.server.port,
                                       "headers": ctx.tenant.headers, "paths": paths})
        ready = await self.load.read(600)
        if ready["open"] != n:
            raise RuntimeError(f"{self.kind}: opened {ready['open']} of {n} streams: {ready['failed']}")
        self.pids = {"gateway": self.server.pid, "load": self.load.pid}
        if streams is None:
            self.drive = _InProcess(self.server)
            if self.kind == "peer":
                self.pids["redis"] = ctx.cluster.redis_pid
        else:
            self.producer = await Child.start(ctx.cluster, f"producer-{self.kind}", "bench.producer",
                                              {"streams": streams})
            await self.producer.read(300)  # prepared: streams claimed, script loaded
            self.drive = _Producer(self.producer)
            self.pids.update(producer=self.producer.pid, redis=ctx.cluster.redis_pid)
        return ready

    async def step(self, rate: float, duration_s: float) -> dict[str, Any]:
        assert self.load is not None
        timeout = self.ctx.counts.drain_timeout_s
        q = await self.ctx.quiet()
        window = CpuWindow(self.pids).start()
        done = await self.drive(rate, duration_s)
        got = await self.load.ask({"cmd": "wait", "expected": done["per_stream"], "timeout_s": timeout},
                                  timeout + 120)
        cpu = window.stop()
        events = got["received"] - self.received
        self.received = got["received"]
        if not got["reached"]:
            # Let a backlog clear before the next step, outside any measured window.
            late = await self.load.ask({"cmd": "wait", "expected": done["per_stream"], "timeout_s": 120}, 300)
            self.received = late["received"]
        lat = got["lat_us"]
        lat_ms = {k: lat[k] / 1000 for k in ("p50", "p90", "p99", "p999", "max")} if lat.get("n") else {}
        gw_us = cpu["cpu_s"]["gateway"] / events * 1e6 if events else float("nan")
        sustained = (done["achieved"] >= context.SUSTAIN_ACHIEVED * rate and got["reached"]
                     and got["waited_s"] <= context.SUSTAIN_DRAIN_S and got["lost"] == 0
                     and lat_ms.get("p99", float("inf")) <= context.SUSTAIN_P99_MS)
        return {
            "offered": rate, "achieved": done["achieved"], "seconds": duration_s, "events": events,
            "lost": got["lost"], "dups": got["dups"], "gaps": got["gaps"],
            "dropped_connections": got["dropped_connections"], "drain_s": got["waited_s"],
            "lat_ms": lat_ms, "gateway_us_per_event": gw_us, "core_pct": cpu["core_pct"],
            "machine_pct": cpu["machine_pct"], "others_pct": cpu["others_pct"],
            "others_before_pct": q["others_core_pct"], "delivered_per_s": events / cpu["wall_s"],
            "append_rtt_ms": {k: v / 1000 for k, v in done.get("append_rtt_us", {}).items() if k != "n"},
            "sustained": sustained,
        }

    async def close(self) -> None:
        if self.load is not None:
            await self.load.ask({"cmd": "close"}, 120)
            await self.load.close()
        if self.producer is not None:
            await self.producer.close()


async def measure(ctx: Ctx, server: Proc, kind: str, ramp: bool = True) -> dict[str, Any]:
    c = ctx.counts
    s = Session(ctx, server, kind)
    ready = await s.open()
    try:
        live: dict[str, Any] = {}
        for rate in c.live_rates:
            live[str(rate)] = await s.step(rate, c.live_s)
            await asyncio.sleep(0.3)
        throughput = await _ramp(s, live) if ramp else {"events_per_s": float("nan"), "at": None,
                                                         "first_unsustained": None, "steps": []}
    finally:
        await s.close()
    return {"streams": c.streams, "open_s": ready["open_s"], "open_retried": ready["retried"], "live": live,
            "throughput": throughput}


async def _ramp(s: Session, live: dict[str, Any]) -> dict[str, Any]:
    c = s.ctx.counts
    kept = [r for r in live.values() if r["sustained"]]
    if kept:
        best: dict[str, Any] | None = max(kept, key=lambda r: r["offered"])
        rate = best["offered"] * c.ramp_factor if best else 0.0
    else:  # even the lowest live rate was too much: start below what it managed to deliver
        best = None
        rate = max(500.0, 0.7 * max(r["delivered_per_s"] for r in live.values()))
    steps: list[dict[str, Any]] = []
    failed: dict[str, Any] | None = None
    while rate <= c.ramp_max:
        step = await s.step(round(rate), c.ramp_step_s)
        steps.append(step)
        if not step["sustained"]:
            failed = step
            break
        best = step
        rate *= c.ramp_factor
        await asyncio.sleep(0.3)
    if best is None and failed is not None:  # the first step was too much already: step down
        rate = failed["offered"] / c.ramp_factor
        for _ in range(4):
            await asyncio.sleep(0.3)
            step = await s.step(round(rate), c.ramp_step_s)
            steps.append(step)
            if step["sustained"]:
                best = step
                break
            rate /= c.ramp_factor
    elif c.ramp_refine and best is not None and failed is not None:
        await asyncio.sleep(0.5)
        step = await s.step(round((best["offered"] + failed["offered"]) / 2), c.ramp_step_s)
        steps.append(step)
        if step["sustained"]:
            best = step
    return {
        "events_per_s": best["achieved"] if best else 0.0,
        "at": best, "first_unsustained": failed,
        "steps": [{k: st[k] for k in ("offered", "achieved", "delivered_per_s", "drain_s", "lost", "sustained",
                                      "gateway_us_per_event", "core_pct", "machine_pct", "others_pct")}
                  | {"p99_ms": st["lat_ms"].get("p99")} for st in steps],
    }
