"""Scaling out (issue 10): the live path on 1 vs 3 Redis Cluster primaries, and the cost of
arq's queue on its own Redis.

Per topology, on Debian's ``redis-server`` (>= 7, no replicas, loopback ports):

* **live path**: ``PRODUCERS`` processes append token events the way a worker does (its
  group-commit ``Appender`` over ``worker/routing.py``'s ``ClusterRouter``: one lean connection
  per primary, the APPEND script with SPUBLISH), every one of ``SESSIONS`` messages streaming at
  once (one event per append, each message waiting for its previous append, as paced model
  tokens do), for ``SECONDS``; the gateway's ``ShardedHub`` (one SSUBSCRIBE
  connection per shard) holds a subscription to every message. Reported: events/s appended,
  events/s delivered by the hub, and Redis CPU per event (utime+stime of all primaries from
  ``INFO cpu``, divided by the events appended).
* **queue**: ``MESSAGES`` jobs enqueued one at a time exactly as the gateway does
  (``shared.stores.jobs.enqueue``: arq on the queue Redis, then the wake-up XADD on the
  cluster), reported as enqueues/s, latency and queue-Redis CPU per message; and the same on
  the standalone layout (queue and wake-up in one Redis) as the baseline.

Run: ``make bench-cluster`` (``QUICK=1`` for a short run), i.e. ``python -m bench.cluster
[--quick]``. Writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import msgspec
from arq.connections import ArqRedis

from bench.topology import Topology
from gateway.shard_hub import ShardedHub
from shared import backends, keys, scripts
from shared.settings import Settings
from shared.stores import jobs
from worker.appender import Appender
from worker.routing import hot_connection

PAYLOAD = b'{"content":"token "}'


def _records(ses_id: str, msg_id: str) -> dict[str, Any]:
    return {"message_id": msg_id, "session_id": ses_id, "status": "running", "attempt": 1, "count": 0}


def _produce(env: dict[str, str], pairs: list[tuple[str, str]], seconds: float, out: Any) -> None:
    async def go() -> int:
        settings = Settings.from_env(env)
        backend = backends.from_settings(settings)
        client = backend.client()
        conn = hot_connection(backend, client, "bench-append", (scripts.APPEND_SHARDED,))
        appender = Appender(conn, settings, lambda s, m: asyncio.sleep(0), script=scripts.APPEND_SHARDED)
        deadline = time.monotonic() + seconds

        async def stream(ses_id: str, msg_id: str) -> int:
            ob = appender.outbox(ses_id, msg_id, 1)
            done = 0
            while time.monotonic() < deadline:
                ob.buf.append(("token", PAYLOAD))
                appender.submit(ob)
                await appender.flushed(ob)
                done += 1
            return done

        n = sum(await asyncio.gather(*(stream(s, m) for s, m in pairs)))
        await conn.aclose()
        await client.aclose()
        return n

    out.put(asyncio.run(go()))


async def live(topo: Topology, sessions: int, producers: int, seconds: float) -> dict[str, Any]:
    settings = Settings.from_env(topo.env)
    client = backends.from_settings(settings).client()
    pairs = [(f"ses_bench{i:05d}", f"msg_bench{i:05d}") for i in range(sessions)]
    for ses_id, msg_id in pairs:
        await client.hset(keys.message(ses_id, msg_id), mapping=_records(ses_id, msg_id))
    hub = ShardedHub(client, buffer=1 << 20, heartbeat_s=3600)
    await hub.start()
    subs = [await hub.subscribe(keys.live_channel(s, m)) for s, m in pairs]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    cpu0 = topo.cpu_s(topo.ports)
    t0 = time.monotonic()
    procs = [ctx.Process(target=_produce, args=(topo.env, pairs[i::producers], seconds, queue))
             for i in range(producers)]
    for p in procs:
        p.start()
    loop = asyncio.get_running_loop()
    appended = 0
    for _ in procs:
        appended += await loop.run_in_executor(None, queue.get)
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    await asyncio.sleep(0.5)  # the last replies reach the hub
    cpu = topo.cpu_s(topo.ports) - cpu0
    delivered = hub.delivered
    shards = hub.shard_connections()
    for sub in subs:
        sub.unsubscribe()
    await hub.stop()
    await client.aclose()
    return {"appended": appended, "seconds": round(elapsed, 2), "events_per_s": round(appended / elapsed),
            "delivered": delivered, "delivered_all": delivered == appended, "hub_shard_connections": shards,
            "redis_cpu_us_per_event": round(cpu / appended * 1e6, 2) if appended else None,
            "redis_cpu_s": round(cpu, 2)}


async def queue_cost(topo: Topology, messages: int, same_redis: bool = False) -> dict[str, Any]:
    """``same_redis``: the standalone layout (queue and wake-up in one Redis) as the baseline."""
    env = {"AGENTSTREAM_REDIS_URL": f"redis://127.0.0.1:{topo.queue_port}/0"} if same_redis else topo.env
    settings = Settings.from_env(env)
    backend = backends.from_settings(settings)
    client = backend.client()
    queue = client if backend.queue_shared else backend.queue_client()
    arq = ArqRedis(connection_pool=queue.connection_pool, job_serializer=msgspec.json.encode,
                   job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE)
    cpu0 = topo.cpu_s([topo.queue_port])
    lat = []
    t0 = time.monotonic()
    for i in range(messages):
        s = time.perf_counter()
        await jobs.enqueue(arq, settings, f"ses_q{i}", f"msg_q{i}")
        lat.append(time.perf_counter() - s)
    elapsed = time.monotonic() - t0
    cpu = topo.cpu_s([topo.queue_port]) - cpu0
    if queue is not client:
        await queue.aclose()
    await client.aclose()
    lat.sort()
    return {"messages": messages, "enqueues_per_s": round(messages / elapsed),
            "enqueue_p50_ms": round(lat[len(lat) // 2] * 1000, 3), "enqueue_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
            "queue_redis_cpu_us_per_message": round(cpu / messages * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds, sessions, messages = (4.0, 200, 500) if args.quick else (10.0, 1000, 2000)
    producers = 2
    results: dict[str, Any] = {"seconds": seconds, "sessions": sessions, "producers": producers}
    for primaries in (1, 3):
        topo = Topology(primaries)
        try:
            results[f"{primaries}_primaries"] = {"live": asyncio.run(live(topo, sessions, producers, seconds)),
                                                 "queue": asyncio.run(queue_cost(topo, messages))}
            if primaries == 1:
                results["standalone_queue"] = asyncio.run(queue_cost(topo, messages, same_redis=True))
        finally:
            topo.stop()
    one, three = results["1_primaries"]["live"], results["3_primaries"]["live"]
    results["ratio_events_per_s_3_vs_1"] = round(three["events_per_s"] / one["events_per_s"], 2)
    out = Path(__file__).resolve().parent / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'primaries':>10} {'events/s':>10} {'delivered':>10} {'Redis µs/ev':>12} {'hub conns':>10} "
          f"{'enq/s':>8} {'enq p50 ms':>11} {'queue µs/msg':>13}")
    for primaries in (1, 3):
        r = results[f"{primaries}_primaries"]
        lv, q = r["live"], r["queue"]
        print(f"{primaries:>10} {lv['events_per_s']:>10,} {lv['delivered']:>10,} {lv['redis_cpu_us_per_event']:>12} "
              f"{lv['hub_shard_connections']:>10} {q['enqueues_per_s']:>8,} {q['enqueue_p50_ms']:>11} "
              f"{q['queue_redis_cpu_us_per_message']:>13}")
    sq = results["standalone_queue"]
    print(f"standalone layout (queue + wake-up in one Redis): {sq['enqueues_per_s']:,} enq/s, "
          f"p50 {sq['enqueue_p50_ms']} ms, {sq['queue_redis_cpu_us_per_message']} µs Redis CPU per message")
    print(f"3 vs 1 primaries: {results['ratio_events_per_s_3_vs_1']}x events/s; written to {out}")


if __name__ == "__main__":
    main()
