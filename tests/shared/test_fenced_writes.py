"""Issue 18.9: writes that could outlive their key are fenced, or never recreate it without a
TTL: the confirmation a worker opens, and the session name of a first answer."""

from __future__ import annotations

import pytest

from shared import connect, keys
from shared.errors import Fenced
from shared.events import Done, Message, RetrieverSummary, SessionName
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.confirmations import ConfirmationStore, confirmation_id
from shared.stores.messages import MessageStore
from shared.stores.session_log import UserEntry

pytestmark = pytest.mark.anyio



async def _claimed(store: MessageStore, redis) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    ses, msg = new_id("ses"), new_id("msg")
    await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
    await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
    attempt, _ = await store.claim(ses, msg, "w")
    return ses, msg, attempt


async def test_regression_18_9_opening_a_confirmation_is_fenced_and_never_recreates_the_record(redis_url):
    redis = connect.client(redis_url)
    store = MessageStore(redis, Settings())
    confs = ConfirmationStore(redis)
    try:
        ses, msg, attempt = await _claimed(store, redis)
        conf = await confs.open(ses, msg, attempt, "run_a", "create_collection", {"collection_name": "x"})
        assert conf.state == "pending" and 0 < await redis.ttl(keys.confirmation(ses, conf.confirmation_id))
        again = await confs.open(ses, msg, attempt, "run_a", "create_collection", {"collection_name": "x"})
        assert again == conf  # a retry finds the same one
        with pytest.raises(Fenced):  # a superseded attempt may not open one
            await confs.open(ses, msg, attempt - 1, "run_b", "create_collection", {})
        await redis.delete(keys.message(ses, msg))  # the record expired under a stalled worker
        with pytest.raises(Fenced):
            await confs.open(ses, msg, attempt, "run_c", "create_collection", {})
        assert await redis.exists(keys.message(ses, msg)) == 0
        assert await redis.exists(keys.confirmation(ses, confirmation_id("run_c"))) == 0
    finally:
        await redis.aclose()


async def test_regression_18_9_the_session_name_never_recreates_an_expired_session(redis_url):
    redis = connect.client(redis_url)
    store = MessageStore(redis, Settings())
    done = Done(latency_ms=1.0, tool_calls_made=0, message_id="m", retriever_summary=RetrieverSummary(),
                data_accessed_via_retriever=False)
    try:
        ses, msg, attempt = await _claimed(store, redis)
        await store.append(ses, msg, attempt, [Message(content="hi", message_id=msg, is_final=True),
                                               SessionName(session_name="Hi there"), done])
        assert await redis.hget(keys.session(ses), "session_name") == b"Hi there"

        gone, msg2, attempt2 = await _claimed(store, redis)
        await redis.delete(keys.session(gone))  # expired while the answer ran
        await store.append(gone, msg2, attempt2, [Message(content="hi", message_id=msg2, is_final=True),
                                                  SessionName(session_name="Hi there"), done])
        assert await redis.exists(keys.session(gone)) == 0
    finally:
        await redis.aclose()
