"""The model's history is a bounded window of the session log, read backwards (issue 16: a long
session costs what a short one costs), in acceptance order with each exchange whole (issue 20:
a message accepted while another ran has its user entry before the other's answer)."""

from __future__ import annotations

import pytest

from shared import connect
from shared.ids import new_id
from shared.settings import Settings
from shared.stores.session_log import AssistantEntry, ToolEntry, TurnEntry, UserEntry, history_rows
from shared.stores.sessions import SessionStore

pytestmark = pytest.mark.anyio



def _turn(mid: str, status: str = "completed") -> TurnEntry:
    return TurnEntry(message_id=mid, ts=1, status=status, latency_ms=1.0, tokens=1, tool_calls=0)


async def test_history_is_every_earlier_exchange_in_acceptance_order_and_nothing_later(redis_url):
    redis = connect.client(redis_url)
    store = SessionStore(redis, Settings())
    ses = new_id("ses")
    try:
        log = [
            UserEntry(message_id="msg_1", ts=1, content="q1"),
            UserEntry(message_id="msg_2", ts=2, content="q2"),  # sent while msg_1 ran
            UserEntry(message_id="msg_r", ts=2, content="rolled"),
            ToolEntry(message_id="msg_1", ts=3, tool_name="t", tool_call_id="c", inputs="{}", outputs="{}",
                      status="success"),
            AssistantEntry(message_id="msg_1", ts=3, content="a1"), _turn("msg_1"),
            AssistantEntry(message_id="msg_2", ts=4, content="a2"), _turn("msg_2"),
            _turn("msg_r", "rolled_back"),
            UserEntry(message_id="msg_3", ts=5, content="q3"),
            UserEntry(message_id="msg_4", ts=6, content="q4"),  # accepted after msg_3: not its past
        ]
        for e in log:
            await store.append_log(ses, e)
        assert await store.exchanges_before(ses, "msg_3", 10, chunk=3) == [
            {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
        assert await store.exchanges_before(ses, "msg_3", 1, chunk=3) == [
            {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
        rows = history_rows(await store.log(ses))  # the history API: grouped, rolled back left out
        assert [(r["message_id"], r["role"]) for r in rows] == [
            ("msg_1", "user"), ("msg_1", "tool"), ("msg_1", "assistant"), ("msg_2", "user"), ("msg_2", "assistant"),
            ("msg_3", "user"), ("msg_4", "user")]
    finally:
        await redis.aclose()


async def test_the_history_read_does_not_grow_with_the_session(redis_url):
    redis = connect.client(redis_url)
    store = SessionStore(redis, Settings())
    read: list[int] = []
    real = redis.xrevrange

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = await real(*args, **kwargs)
        read.append(len(rows))
        return rows

    redis.xrevrange = counting  # type: ignore[method-assign]
    try:
        costs = []
        for exchanges in (100, 400):
            ses = new_id("ses")
            for i in range(exchanges):
                for e in (UserEntry(message_id=f"msg_{i}", ts=i, content=f"q{i}"),
                          AssistantEntry(message_id=f"msg_{i}", ts=i, content=f"a{i}"), _turn(f"msg_{i}")):
                    await store.append_log(ses, e)
            await store.append_log(ses, UserEntry(message_id="msg_now", ts=9999, content="now"))
            read.clear()
            history = await store.exchanges_before(ses, "msg_now", 10)
            assert len(history) == 20 and history[-1] == {"role": "assistant", "content": f"a{exchanges - 1}"}
            costs.append(sum(read))
        assert costs[0] == costs[1]  # the same entries read for a session 4x longer
    finally:
        await redis.aclose()
