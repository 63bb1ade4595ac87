"""Idle cost: CPU of freshly started, idle processes over the same window: the project's
gateway and worker, the naive gateway and arq's default-poll worker, the ceiling. They are
started by ``bench.run`` (all at once, then used by the other scenarios)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.context import Ctx
from bench.procs import CpuWindow, Proc

SETTLE_S = 1.0


async def measure(ctx: Ctx, gateway: Proc, worker: Proc, naive: Proc, poll_worker: Proc,
                  ceiling: Proc) -> dict[str, Any]:
    await asyncio.sleep(SETTLE_S)
    q = await ctx.quiet()
    window = CpuWindow({"gateway": gateway.pid, "naive_gateway": naive.pid, "ceiling": ceiling.pid,
                        "worker": worker.pid, "poll_worker": poll_worker.pid}).start()
    await asyncio.sleep(ctx.counts.idle_s)
    cpu = window.stop()
    pct = cpu["core_pct"]
    return {
        "seconds": cpu["wall_s"], "others_pct": cpu["others_pct"], "others_before_pct": q["others_core_pct"],
        "project": {"gateway_pct": pct["gateway"], "worker_pct": pct["worker"]},
        "naive": {"gateway_pct": pct["naive_gateway"], "worker_pct": pct["poll_worker"]},
        "ceiling": {"gateway_pct": pct["ceiling"]},
    }
