"""Replay: one client reads a stored stream of ``replay_events`` events (tokens then ``done``)
from its start; the figure is request-written to last-event-received, over a few repeats."""

from __future__ import annotations

from typing import Any

from bench.context import Ctx
from bench.procs import Child, Proc


async def measure(ctx: Ctx, server: Proc, path: str) -> dict[str, Any]:
    q = await ctx.quiet()
    load = await Child.start(ctx.cluster, "replay", "bench.load",
                             {"mode": "replay", "host": "127.0.0.1", "port": server.port,
                              "headers": ctx.tenant.headers, "path": path,
                              "repeats": ctx.counts.replay_repeats + 1})
    out = await load.read(600)
    await load.close()
    runs = out["runs"][1:]  # the first read warms the server's caches and code paths
    ms = sorted(r["ms"] for r in runs)
    return {"events": ctx.counts.replay_events, "ms_p50": ms[len(ms) // 2], "ms_min": ms[0], "ms_max": ms[-1],
            "received": [r["events"] for r in runs], "status": sorted({r["status"] for r in runs}),
            "others_before_pct": q["others_core_pct"]}
