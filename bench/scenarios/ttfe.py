"""TTFE: from writing the POST to the first byte of the ``intent`` event (built-in model),
idle (one message at a time, random gaps) and with concurrent senders (each sends its next
message once the previous one is done)."""

from __future__ import annotations

from typing import Any

from bench.context import Ctx
from bench.procs import Child, CpuWindow, Proc


async def measure(ctx: Ctx, server: Proc, sessions: list[str], samples: int, worker: Proc | None) -> dict[str, Any]:
    base = {"mode": "ttfe", "host": "127.0.0.1", "port": server.port, "headers": ctx.tenant.headers}
    warm = await Child.start(ctx.cluster, "ttfe-warm", "bench.load", {**base, "sessions": sessions,
                                                                      "samples": ctx.counts.ttfe_warmup,
                                                                      "gap_s": [0.0, 0.01]})
    await warm.read(120)
    await warm.close()

    q_idle = await ctx.quiet()
    idle_load = await Child.start(ctx.cluster, "ttfe-idle", "bench.load", {**base, "sessions": sessions,
                                                                          "samples": samples,
                                                                          "gap_s": list(ctx.counts.ttfe_gap_s)})
    idle = await idle_load.read(600)
    await idle_load.close()

    c = ctx.counts
    q_loaded = await ctx.quiet()
    loaded_load = await Child.start(ctx.cluster, "ttfe-loaded", "bench.load",
                                    {**base, "sessions": sessions, "concurrency": c.ttfe_senders,
                                     "duration_s": c.ttfe_loaded_s})
    pids = {"gateway": server.pid, "load": loaded_load.pid, "redis": ctx.cluster.redis_pid}
    if worker is not None:
        pids["worker"] = worker.pid
    window = CpuWindow(pids).start()
    loaded = await loaded_load.read(c.ttfe_loaded_s + 120)
    cpu = window.stop()
    await loaded_load.close()
    return {
        "idle": {**idle["ttfe_ms"], "errors": idle["errors"], "others_before_pct": q_idle["others_core_pct"],
                 "headers_ms": idle["headers_ms"]},
        "loaded": {**loaded["ttfe_ms"], "errors": loaded["errors"], "senders": c.ttfe_senders,
                   "messages_per_s": loaded["messages"] / loaded["elapsed_s"], "core_pct": cpu["core_pct"],
                   "machine_pct": cpu["machine_pct"], "others_pct": cpu["others_pct"],
                   "others_before_pct": q_loaded["others_core_pct"]},
    }
