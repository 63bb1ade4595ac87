"""Capacity: many idle open streams on one fresh server process.

Redis connections are counted with CLIENT LIST: the connections that appeared after the
snapshot taken before the server started (nothing else connects meanwhile; the load processes
never talk to Redis). RSS per stream is the growth between a warm-up of ``WARM`` streams and
all of them, divided by the streams added; Redis memory per stream likewise from INFO.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import Ctx
from bench.fixtures import events_path
from bench.procs import Child, Proc
from shared import connect

WARM = 100


async def measure_all(ctx: Ctx) -> dict[str, Any]:
    n = ctx.counts.capacity_streams
    # Idle streams see no writes, so the project and the naive gateway can hold the same ones.
    paths = [events_path(s, m) for s, m in await ctx.fx.new_messages(ctx.tenant, n + WARM)]
    cl = ctx.cluster
    return {
        "project": await measure(ctx, "project", cl.gateway, paths),
        "naive": await measure(ctx, "naive", cl.naive_gateway, paths),
        "ceiling": await measure(ctx, "ceiling", cl.ceiling, [f"/s/{i}" for i in range(n + WARM)]),
    }


async def measure(ctx: Ctx, kind: str, start: Callable[[], Awaitable[Proc]], paths: list[str]) -> dict[str, Any]:
    n = len(paths) - WARM
    probe = connect.client(ctx.cluster.redis_url, max_connections=1)
    loads: list[Child] = []
    server: Proc | None = None
    try:
        before = {c["id"] for c in await probe.client_list()}
        server = await start()
        base = {"mode": "streams", "host": "127.0.0.1", "port": server.port, "headers": ctx.tenant.headers}
        loads.append(await Child.start(ctx.cluster, f"cap-warm-{kind}", "bench.load", {**base, "paths": paths[:WARM]}))
        warm = await loads[0].read(300)
        await asyncio.sleep(0.5)
        rss0, mem0 = server.rss_kb(), await _used_memory(probe)
        loads.append(await Child.start(ctx.cluster, f"cap-{kind}", "bench.load",
                                       {**base, "paths": paths[WARM:], "open_concurrency": 256,
                                        "open_timeout_s": 20}))
        ready = await loads[1].read(900)
        await asyncio.sleep(1.0)
        rss1, mem1 = server.rss_kb(), await _used_memory(probe)
        new = [c for c in await probe.client_list() if c["id"] not in before]
        opened = warm["open"] + ready["open"]
        return {
            "streams": n + WARM, "open": opened, "failed": ready["failed"], "retried": ready["retried"],
            "open_s": ready["open_s"],
            "opens_per_s": ready["open"] / ready["open_s"] if ready["open_s"] else 0.0,
            "redis_connections": len(new),
            "redis_connection_names": sorted({c.get("name") or "-" for c in new}),
            "rss_mb": rss1 / 1024, "rss_kb_per_stream": (rss1 - rss0) / max(1, ready["open"]),
            "redis_kb_per_stream": (mem1 - mem0) / 1024 / max(1, ready["open"]),
        }
    finally:
        for load in loads:
            await load.ask({"cmd": "close"}, 300)
            await load.close()
        if server is not None:
            ctx.cluster.stop(server)
        await probe.aclose()


async def _used_memory(client: Any) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])
