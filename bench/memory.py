"""``python -m bench.memory [--quick]``: Redis bytes per finished message, before and after the
compaction window, per open session, and archive bytes per message (part of ``make bench``).

The demo workload: S sessions x M messages of the agent over the seeded demo collection (tool
calls, a retriever, tokens), sent through a real gateway and worker with the archive on. Bytes
come from ``MEMORY USAGE`` of every key (``SAMPLES 0``: exact), grouped by what the key is.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fixtures import Fixtures
from bench.procs import Cluster
from cli.demo_data import seed_demo
from dataplane.service import DataPlane
from shared import connect, keys
from shared.settings import Settings

ASKS = ["find documents about redis streams", "what is consumer group lag?", "search for retention policies",
        "hello", "summarise what you found about sentinel"]
KINDS = {"ev": "message events (stream)", "evz": "message events (compacted)", "msg": "message record",
         "log": "session log", "session": "session record", "msgses": "message -> session index"}


async def _bytes_by_kind(redis: Any) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    async for k in redis.scan_iter(match=keys.PREFIX + "*", count=1000):
        name = k.decode()
        kind = name.split(":")[2] if "}" in name else name.split(":")[1]
        if kind in KINDS:
            out[kind] += await redis.memory_usage(k, samples=0) or 0
    return dict(out)


async def _drained(redis: Any, key: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while await redis.zcard(key):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} still holds entries after {timeout_s}s")
        await asyncio.sleep(0.5)  # noqa: ASYNC110 (polling another process's progress in Redis)


async def measure(sessions: int, per_session: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="agentstream-bench-mem-"))
    archive_dir = tmp / "archive"
    cluster = Cluster(tmp)
    try:
        cluster.start_redis()
        redis = connect.client(cluster.redis_url)
        fx = Fixtures(redis, Settings())
        tenant = await fx.tenant()
        await seed_demo(DataPlane(redis), tenant.ns_id)
        # A window longer than the run, so "in the window" is measured with nothing compacted;
        # then the window is made to pass by moving every scheduled compaction to now.
        gateway = await cluster.gateway()
        cluster.worker(AGENTSTREAM_COMPACT_AFTER_S="3600", AGENTSTREAM_ARCHIVE_DIR=str(archive_dir),
                       AGENTSTREAM_REAPER_INTERVAL_S="0.5")
        headers = {"Authorization": f"Bearer {tenant.key}", "X-Namespace": tenant.namespace}
        events = 0
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as api:
            async def conversation(_: int) -> int:
                sid = (await api.post("/v1/agents/sessions", json={"agent_config": {}})).json()["session_id"]
                n = 0
                for m in range(per_session):
                    r = await api.post(f"/v1/agents/sessions/{sid}/messages",
                                       json={"content": ASKS[m % len(ASKS)], "stream": True})
                    n += r.text.count("\nevent: ") + r.text.startswith("event: ")
                return n

            events = sum(await asyncio.gather(*(conversation(i) for i in range(sessions))))
        messages = sessions * per_session
        before = await _bytes_by_kind(redis)
        await _drained(redis, keys.ACTIVE)  # every finished message scheduled for compaction
        scheduled = await redis.zrange(keys.COMPACT, 0, -1)
        if scheduled:
            await redis.zadd(keys.COMPACT, dict.fromkeys(scheduled, 0), xx=True)
        await _drained(redis, keys.COMPACT)
        after = await _bytes_by_kind(redis)
        await redis.aclose()
        archived = sum(p.stat().st_size for p in archive_dir.rglob("*.jsonl.gz"))
        return {
            "sessions": sessions, "messages": messages, "events_per_message": events / messages,
            "before": {k: v / messages for k, v in before.items()},
            "after": {k: v / messages for k, v in after.items()},
            "per_message_before": sum(before.values()) / messages,
            "per_message_after": sum(after.values()) / messages,
            "per_session": (before.get("session", 0)) / sessions,
            "archive_per_message": archived / messages,
        }
    finally:
        cluster.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def table(r: dict[str, Any]) -> str:
    lines = [f"Redis memory per finished message: {r['sessions']} sessions x "
             f"{r['messages'] // r['sessions']} messages, {r['events_per_message']:.0f} events each",
             f"  {'what':34s} {'in the window':>14s} {'after it':>10s}"]
    for kind, label in KINDS.items():
        b, a = r["before"].get(kind, 0), r["after"].get(kind, 0)
        if b or a:
            lines.append(f"  {label:34s} {b:12,.0f} B {a:8,.0f} B")
    lines.append(f"  {'total':34s} {r['per_message_before']:12,.0f} B {r['per_message_after']:8,.0f} B")
    lines.append(f"  session record per session {r['per_session']:,.0f} B; "
                 f"archive {r['archive_per_message']:,.0f} B per message (gzip JSON lines)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 sessions x 10 messages instead of 20 x 25")
    args = p.parse_args(argv)
    result = asyncio.run(measure(*((4, 10) if args.quick else (20, 25))))
    print(table(result))
    print(json.dumps(result, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
