"""``python -m bench.run [--quick]`` (what ``make bench`` and ``agentstream bench`` run).

One embedded Redis in a temporary directory; then, per server kind, its processes on loopback
and the scenarios against them, driven from separate load and producer processes:

1. idle: a fresh gateway, worker, naive gateway, default-poll worker and ceiling, side by side;
2. project: gateway + worker (TTFE), gateway alone (live, throughput, replay);
3. naive: the naive gateway + arq's default-poll worker (TTFE), the naive gateway alone (rest);
4. ceiling: the in-memory SSE server (same scenarios);
5. peer: Vercel's resumable-stream in one Node process (live delivery and throughput only);
6. capacity: a fresh process of each kind;
7. end to end (``bench.scenarios.e2e``): C paced conversations against a gateway + worker, the
   naive pair, the peer and the ceiling, each on a fresh Redis;
8. scaling out (``bench.scenarios.scaling``): the project's end-to-end point on 1 and 3 Redis
   Cluster primaries (+ the queue Redis), beside its standalone row from step 7.

Prints the table and writes ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import memory, report, report_e2e
from bench.context import FULL, QUICK, Ctx
from bench.fixtures import Fixtures, events_path
from bench.procs import ROOT, Cluster, Proc, ensure_peer, raise_nofile, worker_up
from bench.scenarios import capacity, e2e, idle, live, replay, scaling, ttfe
from shared import connect
from shared.settings import Settings

RESULTS = ROOT / "bench" / "results" / "latest.json"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def _kind(ctx: Ctx, kind: str, server: Proc, worker: Proc | None, sessions: list[str],
                replay_path: str) -> dict[str, Any]:
    cl, c = ctx.cluster, ctx.counts
    out: dict[str, Any] = {}
    samples = c.ttfe_poll_samples if kind == "naive" else c.ttfe_samples
    try:
        log(f"{kind}: TTFE")
        out["ttfe"] = await ttfe.measure(ctx, server, sessions, samples, worker)
    finally:
        if worker is not None:
            cl.stop(worker)  # live scenarios append themselves; no job may run meanwhile
    log(f"{kind}: live delivery and throughput")
    out["live"] = await live.measure(ctx, server, kind)
    log(f"{kind}: replay")
    out["replay"] = await replay.measure(ctx, server, replay_path if kind != "ceiling"
                                         else f"/replay?n={c.replay_events}")
    return out


async def bench(quick: bool, quiet_wait_s: float | None = None) -> dict[str, Any]:
    counts = QUICK if quick else FULL
    plan = e2e.QUICK if quick else e2e.FULL
    scale = scaling.QUICK if quick else scaling.FULL
    if quiet_wait_s is not None:  # a machine that is never quiet: do not wait a minute per window
        counts = dataclasses.replace(counts, quiet_wait_s=quiet_wait_s)
        plan = dataclasses.replace(plan, quiet_wait_s=quiet_wait_s)
        scale = dataclasses.replace(scale, quiet_wait_s=quiet_wait_s)
    nofile = raise_nofile()
    ensure_peer()
    tmp = Path(tempfile.mkdtemp(prefix="agentstream-bench-"))
    cluster = Cluster(tmp)
    started = time.monotonic()
    ok = False
    try:
        cluster.start_redis()
        settings = Settings.from_env({"AGENTSTREAM_REDIS_URL": cluster.redis_url})
        redis = connect.client(cluster.redis_url)
        fx = Fixtures(redis, settings)
        ctx = Ctx(cluster, redis, settings, fx, await fx.tenant(), counts, quick)
        log(f"redis at {cluster.redis_url}; RLIMIT_NOFILE {nofile}; {'quick' if quick else 'full'} run")
        sessions = await fx.new_sessions(ctx.tenant, counts.ttfe_senders)
        replay_path = events_path(*await fx.stored_stream(ctx.tenant, counts.replay_events))

        # Every server kind at once: first measured idle, side by side, then used one kind at a time.
        gateway, naive, ceiling = await asyncio.gather(cluster.gateway(), cluster.naive_gateway(), cluster.ceiling())
        worker, poll_worker = cluster.worker(), cluster.poll_worker()
        await asyncio.gather(worker_up(cluster, worker), worker_up(cluster, poll_worker))
        log("idle cost")
        idle_cost = await idle.measure(ctx, gateway, worker, naive, poll_worker, ceiling)
        cluster.stop(poll_worker)

        per_kind = {"project": await _kind(ctx, "project", gateway, worker, sessions, replay_path)}
        cluster.stop(gateway)
        poll_worker = cluster.poll_worker()
        await worker_up(cluster, poll_worker)
        per_kind["naive"] = await _kind(ctx, "naive", naive, poll_worker, sessions, replay_path)
        cluster.stop(naive)
        per_kind["ceiling"] = await _kind(ctx, "ceiling", ceiling, None, sessions, replay_path)
        cluster.stop(ceiling)
        log("peer: live delivery and throughput")
        peer = await cluster.peer()
        per_kind["peer"] = {"live": await live.measure(ctx, peer, "peer", ramp=not quick)}  # QUICK: no ramp
        cluster.stop(peer)

        log(f"capacity ({counts.capacity_streams:,} idle streams on a fresh process of each kind)")
        cap = await capacity.measure_all(ctx)
        info = await redis.info("server")
        await redis.aclose()
        cluster.stop_all()
        end_to_end = await e2e.measure(tmp, plan, log)
        scaled = await scaling.measure(tmp, scale, scaling.TOPOLOGIES, log, end_to_end)
        log("Redis memory per finished message (bench.memory)")
        mem = await memory.measure(*((4, 10) if quick else (20, 25)))
        ok = True
        return {
            "quick": quick, "counts": counts.__dict__, "seconds": time.monotonic() - started,
            "machine": report.machine(nofile, str(info.get("redis_version"))),
            "command": "make bench" + (" QUICK=1" if quick else "")
                       + (f" (python -m bench.run --quiet-wait {quiet_wait_s:g})" if quiet_wait_s is not None else ""),
            "raw": {**per_kind, "capacity": cap, "idle": idle_cost, "e2e": end_to_end, "scaling": scaled, "memory": mem},
        }
    finally:
        cluster.stop_all()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs kept in {tmp}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="agentstream bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller counts; finishes in under two minutes")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--quiet-wait", type=float, help="seconds to wait at most before each window for other "
                                                    "load to stop (default: the counts' own, 60 s in full)")
    args = p.parse_args(argv)
    result = asyncio.run(bench(args.quick, args.quiet_wait))
    result = report.assemble(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(report.table(result))
    print()
    print(report_e2e.table(result["raw"]["e2e"]))
    print()
    print(scaling.table(result["raw"]["scaling"]))
    print()
    print(memory.table(result["raw"]["memory"]))
    print(f"\nwritten: {args.output}  ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
