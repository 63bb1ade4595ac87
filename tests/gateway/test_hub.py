"""The hub over a real Redis: one connection for every stream, no loss, no duplicates, order,
slow readers fall back to reading the stream, and a closed connection ends its readers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hub import Hub
from gateway.streaming import Closed, open_reader
from shared import connect, cursor, keys
from shared.events import Done, RetrieverSummary, Token
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore
from shared.stores.session_log import UserEntry

pytestmark = pytest.mark.anyio



async def _message(store: MessageStore, redis) -> tuple[str, str, int]:
    ses, msg = new_id("ses"), new_id("msg")
    await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
    await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
    attempt, _ = await store.claim(ses, msg, "test")
    return ses, msg, attempt


def _done(msg: str) -> Done:
    return Done(latency_ms=1.0, tool_calls_made=0, message_id=msg, retriever_summary=RetrieverSummary(),
                data_accessed_via_retriever=False)


async def _collect(reader) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    async for batch in reader:
        out.extend(batch or ())
    return out


async def test_many_readers_share_one_connection_and_get_everything_in_order(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url, max_connections=3)
    hub = Hub(redis_url, buffer=1024)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        messages = [await _message(store, redis) for _ in range(50)]
        readers = [await open_reader(store, hub, settings, ses, msg, None) for ses, msg, _ in messages]
        tasks = [asyncio.create_task(_collect(r)) for r in readers]

        async def produce(ses: str, msg: str, attempt: int) -> None:
            for i in range(40):
                await store.append(ses, msg, attempt, [Token(content=f"t{i} ")])
            await store.append(ses, msg, attempt, [_done(msg)])

        await asyncio.gather(*(produce(*m) for m in messages))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
        clients = await redis.client_list()
        hub_conns = [c for c in clients if c.get("name") == "agentstream-hub"]
        assert len(hub_conns) == 1  # one live connection for 50 streams
        for (ses, msg, _), got in zip(messages, results, strict=True):
            stored = await redis.xrange(keys.events(ses, msg))
            assert [(i, f[b"t"], f[b"d"]) for i, f in stored] == got
            ids = [cursor.parse(i) for i, _, _ in got]
            assert ids == sorted(set(ids))
            assert got[-1][1] == b"done"
    finally:
        await hub.stop()
        await redis.aclose()


async def test_a_slow_reader_falls_back_to_the_stream_and_misses_nothing(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url, max_connections=3)
    hub = Hub(redis_url, buffer=8)  # tiny buffer: overflow is certain
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, attempt = await _message(store, redis)
        reader = await open_reader(store, hub, settings, ses, msg, None)
        for i in range(300):
            await store.append(ses, msg, attempt, [Token(content=f"t{i}")])
        await store.append(ses, msg, attempt, [_done(msg)])
        got = await asyncio.wait_for(_collect(reader), 20)  # the reader only starts now
        assert len(got) == 301
        assert [d for _, t, d in got if t == b"token"] == [f'{{"content":"t{i}"}}'.encode() for i in range(300)]
    finally:
        await hub.stop()
        await redis.aclose()


async def test_a_fast_reader_is_not_slowed_by_a_slow_one(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url, max_connections=3)
    hub = Hub(redis_url, buffer=16)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, attempt = await _message(store, redis)
        slow = await open_reader(store, hub, settings, ses, msg, None)
        fast = await open_reader(store, hub, settings, ses, msg, None)
        fast_task = asyncio.create_task(_collect(fast))
        for i in range(100):
            await store.append(ses, msg, attempt, [Token(content=f"t{i}")])
        await store.append(ses, msg, attempt, [_done(msg)])
        fast_got = await asyncio.wait_for(fast_task, 10)  # finishes while `slow` has read nothing
        assert len(fast_got) == 101
        slow_got = await asyncio.wait_for(_collect(slow), 10)
        assert slow_got == fast_got
    finally:
        await hub.stop()
        await redis.aclose()


async def test_losing_the_connection_ends_readers_with_a_reason(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url, max_connections=3)
    hub = Hub(redis_url)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, _ = await _message(store, redis)
        reader = await open_reader(store, hub, settings, ses, msg, None)
        task = asyncio.create_task(_collect(reader))
        await asyncio.sleep(0.05)
        await redis.client_kill_filter(_type="pubsub")
        with pytest.raises(Closed) as info:
            await asyncio.wait_for(task, 30)  # a deadline against hangs: the hub sees the close at once
        assert info.value.reason == "redis_connection_lost"
        deadline = asyncio.get_running_loop().time() + 30
        while not hub.connected:  # the hub reconnects by itself
            assert asyncio.get_running_loop().time() < deadline, "the hub did not reconnect"
            await asyncio.sleep(0.05)
        again = await open_reader(store, hub, settings, ses, msg, None)
        await again.aclose()
    finally:
        await hub.stop()
        await redis.aclose()


async def test_resubscribing_right_after_unsubscribe_still_gets_live_entries(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url, max_connections=3)
    # The hub's safety-net re-read comes only every 600 s, past the wait below: entries that
    # arrive in time came through the subscription, however slow the machine.
    hub = Hub(redis_url, idle_unsubscribe_s=0.02, heartbeat_s=600)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, attempt = await _message(store, redis)
        for _ in range(20):
            r = await open_reader(store, hub, settings, ses, msg, None)
            await r.aclose()
            await asyncio.sleep(0.015)
        reader = await open_reader(store, hub, settings, ses, msg, None)
        task = asyncio.create_task(_collect(reader))
        await asyncio.sleep(0.1)  # let any sweep UNSUBSCRIBE race with us
        await store.append(ses, msg, attempt, [Token(content="late"), _done(msg)])
        got = await asyncio.wait_for(task, 60)
        assert [t for _, t, _ in got] == [b"token", b"done"]
    finally:
        await hub.stop()
        await redis.aclose()


async def test_idle_readers_get_heartbeats_from_one_hub_timer(redis_url):
    settings = Settings(heartbeat_s=0.2)
    redis = connect.client(redis_url, max_connections=3)
    hub = Hub(redis_url, heartbeat_s=0.2)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, attempt = await _message(store, redis)
        reader = await open_reader(store, hub, settings, ses, msg, None)
        it = reader.__aiter__()
        beats = 0
        async with asyncio.timeout(30):  # against a hang: three 0.2 s ticks
            while beats < 3:
                batch = await it.__anext__()
                assert batch is None  # nothing was appended: only heartbeats
                beats += 1
        await store.append(ses, msg, attempt, [_done(msg)])
        async with asyncio.timeout(30):
            while (batch := await it.__anext__()) is None:
                pass
        assert [t for _, t, _ in batch] == [b"done"]
        await reader.aclose()
    finally:
        await hub.stop()
        await redis.aclose()
