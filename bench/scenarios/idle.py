"""Idle cost: CPU of freshly started, idle processes over the same window: the project's
gateway and worker, the naive gateway and arq's default-poll worker, the ceiling."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.context import Ctx
from bench.procs import CpuWindow

SETTLE_S = 3.0


async def measure(ctx: Ctx) -> dict[str, Any]:
    cl = ctx.cluster
    gateway, naive, ceiling = await asyncio.gather(cl.gateway(), cl.naive_gateway(), cl.ceiling())
    worker, poll_worker = cl.worker(), cl.poll_worker()
    procs = [gateway, naive, ceiling, worker, poll_worker]
    try:
        await asyncio.sleep(SETTLE_S)
        q = await ctx.quiet()
        window = CpuWindow({"gateway": gateway.pid, "naive_gateway": naive.pid, "ceiling": ceiling.pid,
                            "worker": worker.pid, "poll_worker": poll_worker.pid}).start()
        await asyncio.sleep(ctx.counts.idle_s)
        cpu = window.stop()
    finally:
        for p in procs:
            cl.stop(p)
    pct = cpu["core_pct"]
    return {
        "seconds": cpu["wall_s"], "others_pct": cpu["others_pct"], "others_before_pct": q["others_core_pct"],
        "project": {"gateway_pct": pct["gateway"], "worker_pct": pct["worker"]},
        "naive": {"gateway_pct": pct["naive_gateway"], "worker_pct": pct["poll_worker"]},
        "ceiling": {"gateway_pct": pct["ceiling"]},
    }
