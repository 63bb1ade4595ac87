"""Load with faults: 200 concurrent conversations for 60 s (FAULTS_LOAD_SECONDS) with random
client disconnects, one worker SIGKILLed and one gateway SIGKILLed during the run.

Every message is then checked against its stored log: events lost, duplicated, out of order,
and terminal events (exactly one). The counts are printed for the issue's note.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from shared import connect, cursor, keys
from tests.gateway.seed import seed_demo_for
from tests.stack import Stack

pytestmark = pytest.mark.faults
CONVERSATIONS = int(os.environ.get("FAULTS_LOAD_CONVERSATIONS", "200"))
SECONDS = float(os.environ.get("FAULTS_LOAD_SECONDS", "60"))
QUESTIONS = ["find documents about redis streams", "hello there", "list the collections",
             "search for notes about server-sent events and proxies", "find runbooks about on-call"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "15", "AGENTSTREAM_LEASE_S": "2",
                   "AGENTSTREAM_REAPER_INTERVAL_S": "0.5", "AGENTSTREAM_HEARTBEAT_S": "2"})
    s.start_redis()
    s.start_worker()
    s.start_worker()
    a = s.start_gateway()
    s.start_gateway()
    s.wait_ready(a)
    yield s
    s.stop()


@dataclass
class Tally:
    messages: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (sid, mid, ids received)
    disconnects: int = 0
    reconnects: int = 0
    failed_connects: int = 0


async def conversation(n: int, urls: list[str], headers: dict[str, str], tally: Tally, stop_at: float) -> None:
    rng = random.Random(n)
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, connect=5)) as client:
        sid = None
        while sid is None:
            try:
                r = await client.post(rng.choice(urls) + "/v1/agents/sessions", json={"agent_config": {}})
                sid = r.json()["session_id"] if r.status_code == 200 else None
            except httpx.HTTPError:
                tally.failed_connects += 1
                await asyncio.sleep(0.2)
        while time.monotonic() < stop_at:
            ids: list[str] = []
            mid = None
            last = None
            done = False
            while not done:
                url = rng.choice(urls)
                h = {"Last-Event-ID": last} if last else {}
                cut_after = rng.randint(3, 40) if rng.random() < 0.3 else None
                try:
                    if mid is None:
                        req = client.stream("POST", url + f"/v1/agents/sessions/{sid}/messages",
                                            json={"content": rng.choice(QUESTIONS)})
                    else:
                        req = client.stream("GET", url + f"/v1/agents/sessions/{sid}/messages/{mid}/events",
                                            headers=h)
                    async with req as r:
                        if r.status_code == 204:
                            break
                        if r.status_code != 200:
                            tally.failed_connects += 1
                            await asyncio.sleep(0.2)
                            continue
                        mid = mid or r.headers["x-message-id"]
                        seen = 0
                        buf = ""
                        async for chunk in r.aiter_text():
                            buf += chunk
                            while "\n\n" in buf:
                                block, buf = buf.split("\n\n", 1)
                                eid = typ = None
                                for line in block.split("\n"):
                                    if line.startswith("id: "):
                                        eid = line[4:]
                                    elif line.startswith("event: "):
                                        typ = line[7:]
                                if typ is None or typ == "reset":
                                    continue
                                ids.append(eid)
                                last = eid
                                seen += 1
                                if typ in ("done", "error"):
                                    done = True
                                    break
                                if typ == "confirmation_required":
                                    done = True
                                    break
                            if done or (cut_after and seen >= cut_after):
                                break
                        if not done:
                            tally.disconnects += 1
                except (httpx.HTTPError, KeyError):
                    tally.failed_connects += 1
                    await asyncio.sleep(0.2)
                if not done:
                    tally.reconnects += 1
            if mid is not None:
                tally.messages.append((sid, mid, ids))


@pytest.mark.timeout(SECONDS * 3 + 180)
def test_200_conversations_with_disconnects_a_killed_worker_and_a_killed_gateway(stack):
    tenant = stack.new_tenant()
    seed_demo_for(stack, tenant)
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
    gws = [p for p in stack.procs if p.kind == "gateway"]
    urls = [g.url for g in gws]
    tally = Tally()

    async def run() -> None:
        t0 = time.monotonic()
        stop_at = t0 + SECONDS
        tasks = [asyncio.create_task(conversation(i, urls, headers, tally, stop_at)) for i in range(CONVERSATIONS)]
        await asyncio.sleep(SECONDS * 0.3)
        victim = next(p for p in stack.procs if p.kind == "worker")
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        stack.procs.remove(victim)
        await asyncio.sleep(1)
        stack.start_worker()
        await asyncio.sleep(SECONDS * 0.3)
        gws[0].popen.send_signal(signal.SIGKILL)
        gws[0].popen.wait()
        stack.procs.remove(gws[0])
        urls.remove(gws[0].url)  # clients keep trying the dead one until they learn (connect errors)
        await asyncio.wait_for(asyncio.gather(*tasks), SECONDS + 120)

    asyncio.run(run())

    async def check() -> dict[str, int]:
        redis = connect.client(stack.redis_url)
        counts = {"messages": len(tally.messages), "lost": 0, "duplicated": 0, "out_of_order": 0,
                  "bad_terminal": 0, "events": 0}
        try:
            for sid, mid, got in tally.messages:
                rows = await redis.xrange(keys.events(sid, mid))
                want = [i.decode() for i, _ in rows]
                types = [f[b"t"] for _, f in rows]
                counts["events"] += len(got)
                counts["lost"] += len(set(want) - set(got))
                counts["duplicated"] += len(got) - len(set(got))
                parsed = [cursor.parse(i) for i in got]
                counts["out_of_order"] += sum(1 for a, b in zip(parsed, parsed[1:], strict=False) if b <= a)
                terminals = sum(1 for t in types if t in (b"done", b"error"))
                paused = types and types[-1] == b"confirmation_required"
                if terminals != 1 and not paused:
                    counts["bad_terminal"] += 1
        finally:
            await redis.aclose()
        return counts

    counts = asyncio.run(check())
    report = {**counts, "conversations": CONVERSATIONS, "seconds": SECONDS, "disconnects": tally.disconnects,
              "reconnects": tally.reconnects, "failed_connects": tally.failed_connects}
    print("\nload with faults: " + json.dumps(report))
    assert counts["messages"] >= CONVERSATIONS
    assert (counts["lost"], counts["duplicated"], counts["out_of_order"], counts["bad_terminal"]) == (0, 0, 0, 0)
