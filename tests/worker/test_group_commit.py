"""Group commit over a real Redis: events produced while an append is in flight go together in
the next one, one live publish per batch, and a batch is atomic (fenced, terminal, cut off)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hub import Hub
from shared import connect, keys, scripts
from shared.errors import Fenced
from shared.events import Done, RetrieverSummary, Token
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.session_log import UserEntry
from worker.appender import Appender
from worker.emitter import Emitter
from worker.resp import RespConnection

pytestmark = pytest.mark.anyio
SETTINGS = Settings()



def _done(msg: str) -> Done:
    return Done(latency_ms=1.0, tool_calls_made=0, message_id=msg, retriever_summary=RetrieverSummary(),
                data_accessed_via_retriever=False)


class Rig:
    def __init__(self, url: str) -> None:
        self.redis = connect.client(url, max_connections=4)
        self.store = MessageStore(self.redis, SETTINGS)
        self.conn = RespConnection(url, "test-append", (scripts.APPEND,))
        self.handed: list[str] = []

        async def hand_over(ses: str, msg: str) -> None:
            self.handed.append(msg)

        self.appender = Appender(self.conn, SETTINGS, hand_over)

    async def message(self) -> tuple[str, str, int]:
        ses, msg = new_id("ses"), new_id("msg")
        await self.redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
        await self.store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
        attempt, _ = await self.store.claim(ses, msg, "test")
        return ses, msg, attempt

    async def stored(self, ses: str, msg: str) -> list[tuple[str, bytes]]:
        rows = await self.redis.xrange(keys.events(ses, msg))
        return [(f[b"t"].decode(), f[b"d"]) for _, f in rows]

    async def close(self) -> None:
        await self.conn.aclose()
        await self.redis.aclose()


@pytest.fixture
async def rig(redis_url: str):  # type: ignore[no-untyped-def]
    r = Rig(redis_url)
    yield r
    await r.close()


async def test_events_emitted_while_an_append_is_in_flight_go_in_one_batch_with_one_publish(rig, redis_url):
    ses, msg, attempt = await rig.message()
    hub = Hub(redis_url)
    await hub.start()
    try:
        sub = await hub.subscribe(keys.live_channel(ses, msg))
        em = Emitter(rig.store, ses, msg, attempt, [], rig.appender)
        await em.emit(Token(content="t0 "))
        await asyncio.sleep(0)  # one loop iteration: a quiet stream's first event is on its way
        ob = rig.appender._open[msg]
        assert ob.inflight and ob.appends == 1
        for i in range(1, 200):
            await em.emit(Token(content=f"t{i} "))  # returns at once: nothing waits for Redis
        await em.emit(_done(msg), log=[], stats={"turns": 1})  # the terminal event waits
        ob = rig.appender._open[msg]
        stored = await rig.stored(ses, msg)
        assert [t for t, _ in stored] == ["token"] * 200 + ["done"]
        assert [d for _, d in stored[:3]] == [b'{"content":"t0 "}', b'{"content":"t1 "}', b'{"content":"t2 "}']
        # The first token went alone; everything emitted while it was in flight went in one append.
        assert ob.appends == 2
        deadline = asyncio.get_running_loop().time() + 30  # against a hang: Redis publishes as it appends
        while len(sub.queue) < 201:
            assert asyncio.get_running_loop().time() < deadline, f"{len(sub.queue)} of 201 entries published"
            await asyncio.sleep(0.01)
        live = sub.drain()
        assert [e[1] for e in live] == [b"token"] * 200 + [b"done"]  # the hub split every batch
        assert [e[0].decode() for e in live] == [eid.decode() for eid, _ in await rig.redis.xrange(keys.events(ses, msg))]
        sub.unsubscribe()
    finally:
        await hub.stop()


async def test_a_fenced_batch_writes_nothing_and_the_next_emit_raises(rig):
    ses, msg, attempt = await rig.message()
    em = Emitter(rig.store, ses, msg, attempt, [], rig.appender)
    await em.emit(Token(content="kept "))
    await rig.appender.flushed(rig.appender._open[msg])
    await rig.store.claim(ses, msg, "another-worker")  # taken over: attempt 2 fences attempt 1
    await em.emit(Token(content="a "))
    await em.emit(Token(content="b "))
    with pytest.raises(Fenced):
        await rig.appender.flushed(rig.appender._open[msg])
    with pytest.raises(Fenced):
        await em.emit(Token(content="c "))
    assert await rig.stored(ses, msg) == [("token", b'{"content":"kept "}')]


async def test_a_terminal_event_inside_a_batch_ends_it_and_nothing_after_it_is_written(rig):
    ses, msg, attempt = await rig.message()
    ob = rig.appender.outbox(ses, msg, attempt)
    ob.buf.extend([("token", b'{"content":"a"}'), ("done", b'{"latency_ms":1.0}'), ("token", b'{"content":"late"}')])
    rig.appender.submit(ob)
    await rig.appender.flushed(ob)
    assert [t for t, _ in await rig.stored(ses, msg)] == ["token", "done"]
    record = await rig.store.record(ses, msg)
    assert record is not None and record.terminal_type == "done" and record.count == 2
    ob.buf.append(("token", b'{"content":"after"}'))
    rig.appender.submit(ob)
    with pytest.raises(Fenced):  # TERMINAL: the script refuses anything after the end
        await rig.appender.flushed(ob)


async def test_a_connection_killed_between_two_batches_leaves_whole_batches_only(rig):
    ses, msg, attempt = await rig.message()
    em = Emitter(rig.store, ses, msg, attempt, [], rig.appender)
    for i in range(50):
        await em.emit(Token(content=f"{i} "))
    await rig.appender.flushed(rig.appender._open[msg])
    first = len(await rig.stored(ses, msg))
    assert first == 50
    for i in range(50, 120):
        await em.emit(Token(content=f"{i} "))
    for _ in range(100):  # a few loop iterations: the second batch is written and awaits its reply
        if rig.conn._waiting:
            break
        await asyncio.sleep(0)
    assert rig.conn._waiting
    proto = rig.conn._proto
    assert proto is not None and proto.transport is not None
    proto.transport.abort()  # the worker's link dies with a batch written or not yet
    with pytest.raises(Exception, match="connection"):
        await rig.appender.flushed(rig.appender._open[msg])
    stored = await rig.stored(ses, msg)
    assert [d for _, d in stored] == [b'{"content":"%d "}' % i for i in range(len(stored))]  # a prefix, in order
    assert len(stored) in (50, 120)  # the second batch whole or not at all


async def test_ending_the_turn_holder_hands_the_turn_to_the_next_waiter(rig):
    ses, msg, attempt = await rig.message()
    second = new_id("msg")
    acc = await rig.store.submit(ses, "ns_x", second, UserEntry(message_id=second, ts=now_ms(), content="next"),
                                 "next", None, "h")
    assert acc.created and not acc.runs_now and acc.holder == msg
    em = Emitter(rig.store, ses, msg, attempt, [], rig.appender)
    await em.emit(Token(content="x"), _done(msg), log=[], stats={"turns": 1})
    assert rig.handed == [second]
    assert await rig.redis.hget(keys.session(ses), "turn") == second.encode()
