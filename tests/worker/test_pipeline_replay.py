"""A retry whose stream lost its head to MAXLEN (issue 18.5, the worker's replay read): the
worker cannot rebuild the conversation from what is left, so it says so and starts over."""

from __future__ import annotations

import msgspec
import pytest
from arq.connections import ArqRedis

from shared import connect, keys
from shared.events import Intent, Thinking, Token
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.session_log import UserEntry
from shared.stores.sessions import SessionStore
from tests.faults.harness import effective_tokens
from tests.sse import Ev
from worker import pipeline
from worker.deps import Deps, tool_registry

pytestmark = pytest.mark.anyio



async def test_regression_18_5_a_retry_over_a_trimmed_stream_resets_instead_of_replaying_a_gap(redis_url):
    settings = Settings()
    redis = connect.client(redis_url)
    store = MessageStore(redis, settings)
    deps = Deps(settings=settings, redis=redis,
                arq=ArqRedis(connection_pool=redis.connection_pool, job_serializer=msgspec.json.encode,
                             job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE),
                messages=store, sessions=SessionStore(redis, settings), tools=tool_registry(), worker_id="w")
    try:
        ses, msg = new_id("ses"), new_id("msg")
        await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x",
                                                     "agent_config": "{}"})
        await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hello"), "hello",
                           None, "h")
        dead, _ = await store.claim(ses, msg, "dead-worker")
        await store.append(ses, msg, dead, [
            Intent(intent="conversation", confidence=0.3, category="general", reasoning="r",
                   context_scope="session"),
            Thinking(step="processing", message="Analyzing your request..."),
            *[Token(content=f"old{i} ") for i in range(20)]])
        await redis.xtrim(keys.events(ses, msg), maxlen=5, approximate=False)
        attempt, _ = await store.claim(ses, msg, "w")
        await pipeline.run(deps, ses, msg, attempt)
        rows = await redis.xrange(keys.events(ses, msg))
        events = [Ev(i.decode(), f[b"t"].decode(), msgspec.json.decode(f[b"d"])) for i, f in rows]
        types = [e.type for e in events]
        assert types[:5] == ["token"] * 5 and types[5] == "reset", types
        assert events[5].data["reason"] == "retry" and events[5].data["discard_after"] == "0-0"
        assert types[6:8] == ["intent", "thinking"] and types[-1] == "done"
        assert "old" not in effective_tokens(events)
        assert effective_tokens(events) == next(e for e in events if e.type == "message").data["content"]
    finally:
        await redis.aclose()
