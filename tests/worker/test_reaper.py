"""The reaper against a real Redis, in process: its decisions when the record moves under it."""

from __future__ import annotations

import msgspec
import pytest
from arq.connections import ArqRedis

from shared import connect, keys
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore, Record
from shared.stores.session_log import UserEntry
from shared.stores.sessions import SessionStore
from worker.deps import Deps
from worker.reaper import reap_once

pytestmark = pytest.mark.anyio



class Snapshot(MessageStore):
    """Answers the record as it was when the reaper read it, whatever happened since."""

    seen: dict[str, Record] = {}

    async def record(self, ses_id: str, msg_id: str) -> Record | None:
        return self.seen.get(msg_id) or await super().record(ses_id, msg_id)


async def _started_long_ago(store: MessageStore, redis) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A queued message whose arq job was started (in-progress key) a minute ago."""
    ses, msg = new_id("ses"), new_id("msg")
    await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
    await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
    # Accepted (and so given its session's turn) a minute ago.
    await redis.hset(keys.message(ses, msg), mapping={"created_at_ms": now_ms() - 60_000,
                                                      "turn_ms": now_ms() - 60_000})
    await redis.set(keys.ARQ_JOB + msg, b"job")
    await redis.set(keys.ARQ_IN_PROGRESS + msg, b"1")
    await redis.zadd(keys.ACTIVE, {f"{ses}/{msg}": 0})
    return ses, msg


async def test_regression_18_7_the_unclaimed_restart_rechecks_the_claim_in_one_step(redis_url):
    settings = Settings()
    redis = connect.client(redis_url)
    store = Snapshot(redis, settings)
    deps = Deps(settings=settings, redis=redis,
                arq=ArqRedis(connection_pool=redis.connection_pool, job_serializer=msgspec.json.encode,
                             job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE),
                messages=store, sessions=SessionStore(redis, settings), tools={}, worker_id="reaper")
    try:
        # The reaper read the record (queued, never claimed); then a worker claimed it.
        ses, msg = await _started_long_ago(store, redis)
        Snapshot.seen[msg] = await store.record(ses, msg)  # type: ignore[assignment]
        attempt, status = await store.claim(ses, msg, "live-worker")
        assert (attempt, status) == (1, "running")
        await reap_once(deps)
        assert await redis.exists(keys.ARQ_IN_PROGRESS + msg) == 1  # the live job keeps its key

        # Truly unclaimed: the same pass restarts it.
        ses2, msg2 = await _started_long_ago(store, redis)
        assert await reap_once(deps) >= 1
        assert await redis.exists(keys.ARQ_IN_PROGRESS + msg2) == 0
    finally:
        Snapshot.seen.clear()
        await redis.aclose()
