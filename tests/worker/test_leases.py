"""Lease renewal on its own schedule: one pipelined round trip renews every lease a worker holds,
even while the same process appends events for hundreds of messages; a superseded lease stops
its message's task; and a worker never runs more jobs than AGENTSTREAM_MAX_JOBS."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from shared import connect, keys, scripts
from shared.ids import new_id, now_ms
from shared.settings import Settings
from tests.stack import Stack
from worker.appender import Appender
from worker.leases import Leases
from worker.resp import RespConnection

SETTINGS = Settings(lease_s=1.0)



async def _records(redis, n: int, lease_until: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    out = []
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(n):
            ses, msg = new_id("ses"), new_id("msg")
            pipe.hset(keys.message(ses, msg), mapping={"message_id": msg, "attempt": 1, "status": "running",
                                                       "lease_until_ms": lease_until})
            out.append((ses, msg))
        await pipe.execute()
    return out


@pytest.mark.anyio
async def test_a_thousand_leases_renew_in_one_round_trip_while_events_flow(redis_url):
    redis = connect.client(redis_url, max_connections=4)
    lease_conn = RespConnection(redis_url, "test-leases", (scripts.RENEW,))
    append_conn = RespConnection(redis_url, "test-append", (scripts.APPEND,))
    leases = Leases(lease_conn, SETTINGS.lease_s)
    appender = Appender(append_conn, SETTINGS, lambda s, m: asyncio.sleep(0))
    try:
        start = now_ms()
        held = await _records(redis, 1000, start + 1000)
        sleepers = [asyncio.create_task(asyncio.sleep(60)) for _ in held]
        for (ses, msg), task in zip(held, sleepers, strict=True):
            leases.hold(ses, msg, 1, task)
        # Event traffic on the same process: 300 messages appending as fast as they can.
        await redis.hset(keys.session("ses_load"), mapping={"namespace_id": "ns_x"})
        busy = []
        for i in range(300):
            msg = f"msg_load{i}"
            await redis.hset(keys.message("ses_load", msg), mapping={"message_id": msg, "attempt": 1})
            busy.append(appender.outbox("ses_load", msg, 1))
        stop = asyncio.Event()

        async def traffic() -> int:
            sent = 0
            while not stop.is_set():
                for ob in busy:
                    ob.buf.append(("token", b'{"content":"x"}'))
                    appender.submit(ob)
                    sent += 1
                await asyncio.sleep(0)
            return sent

        async def renewals() -> None:
            for _ in range(5):
                await asyncio.sleep(SETTINGS.lease_s / 3)
                await leases.renew_all()
            stop.set()

        sent, _ = await asyncio.gather(traffic(), renewals())
        assert sent > 0 and sum(ob.appends for ob in busy) > 0  # events flowed the whole time
        assert leases.rounds == 5 and leases.lapsed == 0
        async with redis.pipeline(transaction=False) as pipe:
            for ses, msg in held:
                pipe.hget(keys.message(ses, msg), "lease_until_ms")
            until = [int(x) for x in await pipe.execute()]
        assert min(until) > start + 1000  # every lease moved past the original expiry: none lapsed
        # A lease whose message was taken over (attempt bumped) stops that message's task.
        ses, msg = held[0]
        await redis.hset(keys.message(ses, msg), "attempt", 2)
        await leases.renew_all()
        await asyncio.sleep(0)
        assert sleepers[0].cancelled() and leases.lapsed == 1 and len(leases.held) == 999
        for t in sleepers:
            t.cancel()
    finally:
        await lease_conn.aclose()
        await append_conn.aclose()
        await redis.aclose()


@pytest.mark.integration
def test_a_worker_runs_at_most_max_jobs_messages_at_once_and_the_rest_wait():
    stack = Stack(env={"AGENTSTREAM_BUILTIN_TOKEN_DELAY_MS": "30", "AGENTSTREAM_MAX_JOBS": "3"})
    stack.start_redis()
    try:
        stack.start_worker()
        gw = stack.start_gateway()
        stack.wait_ready(gw)
        key, ns, _ = stack.new_tenant()
        h = {"Authorization": f"Bearer {key}", "X-Namespace": ns}
        sids = [httpx.post(gw.url + "/v1/agents/sessions", json={"agent_config": {}}, headers=h).json()["session_id"]
                for _ in range(8)]
        def send(s: str) -> str:
            with httpx.Client(timeout=60) as c, c.stream("POST", gw.url + f"/v1/agents/sessions/{s}/messages",
                                                         headers=h, json={"content": "hello there, tell me something"}) as r:
                mid = r.headers["x-message-id"]
                for _ in r.iter_bytes():
                    pass
                return mid

        from concurrent.futures import ThreadPoolExecutor

        async def statuses(redis, pairs):  # type: ignore[no-untyped-def]
            async with redis.pipeline(transaction=False) as pipe:
                for s, m in pairs:
                    pipe.hget(keys.message(s, m), "status")
                return [x.decode() if x else "" for x in await pipe.execute()]

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(send, s) for s in sids]
            peak = 0
            pairs: list[tuple[str, str]] = []
            deadline = time.monotonic() + 60
            while not all(f.done() for f in futures) and time.monotonic() < deadline:
                active = stack.redis_call(lambda r: r.zrange(keys.ACTIVE, 0, -1))
                pairs = [tuple(m.decode().split("/")) for m in active]  # type: ignore[misc]
                running = stack.redis_call(lambda r, pairs=pairs: statuses(r, pairs)).count("running")
                peak = max(peak, running)
                time.sleep(0.02)
            done = [f.result() for f in futures]
        assert len(set(done)) == 8
        assert peak == 3  # the bound held and was used; every message still finished
    finally:
        stack.stop()
