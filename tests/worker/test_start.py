"""A job's start reads what its run needs in one round trip (``worker/start.py``), counted by a
real Redis: ``total_reads_processed`` goes up by one per read event, i.e. per round trip of a
client, and ``commandstats`` says which commands came with it. What it reads is what the
separate reads would have read."""

from __future__ import annotations

import hashlib

import pytest

from shared import connect, keys, models
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.session_log import AssistantEntry, TurnEntry, UserEntry
from shared.stores.sessions import SessionStore
from shared.stores.tenancy import TenantStore
from worker import pipeline, start

pytestmark = pytest.mark.anyio


async def test_a_job_start_is_one_round_trip_on_a_long_session(redis_url: str) -> None:
    redis = connect.client(redis_url)
    settings = Settings()
    sessions, messages = SessionStore(redis, settings), MessageStore(redis, settings)
    try:
        ns_id, org_id = await TenantStore(redis).register_key(new_id("key"), "start")
        req = models.CreateSessionRequest(agent_config=models.AgentConfig(model=models.BUILTIN_MODEL))
        ses = (await sessions.create(ns_id, org_id, req, models.BUILTIN_MODEL))[b"session_id"].decode()
        for n in range(40):  # longer than one chunk of the log: the window still reads only the head
            mid = f"msg_{n:03}"
            await sessions.append_log(ses, UserEntry(message_id=mid, ts=n, content=f"q{n}"))
            await sessions.append_log(ses, AssistantEntry(message_id=mid, ts=n, content=f"a{n}"))
            await sessions.append_log(ses, TurnEntry(message_id=mid, ts=n, status="completed", latency_ms=1.0,
                                                     tokens=1, tool_calls=0))
        await sessions.remember(ses, "msg_001", "q1", "a1")
        msg = new_id("msg")
        await messages.accept(ses, ns_id, msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None,
                              hashlib.sha256(msg.encode()).hexdigest())
        await redis.ping()  # the connection is open: its hand-shake is not counted below
        await redis.config_resetstat()

        reads0 = (await redis.info("stats"))["total_reads_processed"]
        got = await start.read(redis, ses, msg)
        reads = (await redis.info("stats"))["total_reads_processed"] - reads0
        stats = await redis.info("commandstats")

        assert reads - 1 == 1, f"{reads - 1} round trips"  # minus the second INFO's own
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")}
        assert calls == {"hgetall": 2, "xrange": 1, "xrevrange": 1, "lrange": 1}

        assert got.record == await messages.record(ses, msg)
        assert got.session == await redis.hgetall(keys.session(ses))
        assert got.rows == []
        from_head = await sessions.exchanges_before(ses, msg, pipeline.HISTORY_TURNS, head=got.log_head)
        assert from_head == await sessions.exchanges_before(ses, msg, pipeline.HISTORY_TURNS)
        assert from_head[-2:] == [{"role": "user", "content": "q39"}, {"role": "assistant", "content": "a39"}]
        assert len(from_head) == 2 * pipeline.HISTORY_TURNS
        assert pipeline._memory(got.session, got.memory) == {
            "remembered": [{"message_id": "msg_001", "question": "q1", "answer": "a1"}]}
    finally:
        await redis.aclose()
