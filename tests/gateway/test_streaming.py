"""The message reader over a real Redis and hub: what it does when things go wrong under it
(issue 18.5: a trimmed gap on a re-read; 18.8: a failing record read)."""

from __future__ import annotations

import contextlib

import pytest
from redis.exceptions import ResponseError

from gateway.hub import Hub
from gateway.streaming import open_reader, reader_for_new
from shared import connect, keys
from shared.events import Error, Token, encode_payload
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores.messages import MessageStore, Record
from shared.stores.session_log import UserEntry

pytestmark = pytest.mark.anyio



async def _running(store: MessageStore, redis) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    ses, msg = new_id("ses"), new_id("msg")
    await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
    await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
    attempt, _ = await store.claim(ses, msg, "test")
    return ses, msg, attempt


class CountingReads(MessageStore):
    reads = 0

    async def read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return await super().read(*args, **kwargs)


class FailingRecords(MessageStore):
    async def record(self, ses_id: str, msg_id: str) -> Record | None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


async def test_regression_18_8_a_failing_record_read_releases_the_subscription(redis_url):
    redis = connect.client(redis_url)
    hub = Hub(redis_url)
    await hub.start()
    try:
        store = FailingRecords(redis, Settings())
        with pytest.raises(ResponseError):
            await open_reader(store, hub, Settings(), new_id("ses"), new_id("msg"), None)
        assert hub.subscriber_count() == 0  # it was subscribed before the read; now released
    finally:
        await hub.stop()
        await redis.aclose()


async def test_regression_18_5_a_live_reader_that_falls_behind_the_cap_gets_cursor_expired(redis_url):
    settings = Settings(heartbeat_s=5)
    redis = connect.client(redis_url)
    hub = Hub(redis_url, heartbeat_s=0.2)
    await hub.start()
    store = MessageStore(redis, settings)
    try:
        ses, msg, attempt = await _running(store, redis)
        sent = await store.append(ses, msg, attempt, [Token(content=f"t{i} ") for i in range(3)])
        reader = await open_reader(store, hub, settings, ses, msg, None)
        batches = aiter(reader)
        first = await anext(batches)
        assert first is not None and [e[0].decode() for e in first] == sent
        # While the reader is behind (its live entries lost, as a slow reader's overflow drops
        # them), twenty entries land and MAXLEN trims the stream to its last five.
        key = keys.events(ses, msg)
        for i in range(20):
            await redis.xadd(key, {"t": "token", "d": encode_payload(Token(content=f"late{i} "))})
        await redis.hincrby(keys.message(ses, msg), "count", 20)
        await redis.xtrim(key, maxlen=5, approximate=False)
        kept = [eid for eid, _ in await redis.xrange(key)]
        got = []
        while len([e for e in got if e[1] != b"reset"]) < 5:
            batch = await anext(batches)  # the hub's heartbeat tick makes the reader re-read
            got += batch or []
        assert got[0][1] == b"reset", got  # explicit: what it never saw is gone
        reset = got[0][2]
        assert b'"reason":"cursor_expired"' in reset and f'"replay_from":"{sent[-1]}"'.encode() in reset
        assert [e[0] for e in got[1:]] == kept
        await reader.aclose()
    finally:
        await hub.stop()
        await redis.aclose()


@contextlib.asynccontextmanager
async def _send_path(redis_url: str, buffer: int | None = None):  # type: ignore[no-untyped-def]
    """What a send's reader stands on: a hub, a store that counts its stream reads, an active session."""
    settings = Settings()
    redis = connect.client(redis_url)
    hub = Hub(redis_url) if buffer is None else Hub(redis_url, buffer=buffer)
    await hub.start()
    try:
        ses = new_id("ses")
        await redis.hset(keys.session(ses), mapping={"status": "active", "namespace_id": "ns_x"})
        yield settings, redis, hub, CountingReads(redis, settings), ses
    finally:
        await hub.stop()
        await redis.aclose()


async def _accepted(store: MessageStore, redis, hub: Hub, ses: str):  # type: ignore[no-untyped-def]
    """A send's order: subscribe to a message that does not exist yet, then accept it."""
    msg = new_id("msg")
    sub = await hub.subscribe(keys.live_channel(ses, msg))
    await store.accept(ses, "ns_x", msg, UserEntry(message_id=msg, ts=now_ms(), content="hi"), "hi", None, "h")
    return msg, sub


async def test_a_just_accepted_message_is_read_from_the_live_path_alone(redis_url):
    """The send path's reader does no stream read of its own: every entry, the ACCEPT script's
    queued note included, reaches it published, in order, up to the terminal event."""
    async with _send_path(redis_url) as (settings, redis, hub, store, ses):
        first, sub1 = await _accepted(store, redis, hub, ses)
        second, sub2 = await _accepted(store, redis, hub, ses)  # queued behind the first
        readers = [reader_for_new(store, sub1, settings, ses, first), reader_for_new(store, sub2, settings, ses, second)]
        attempt, _ = await store.claim(ses, first, "test")
        sent = await store.append(ses, first, attempt, [Token(content=f"t{i} ") for i in range(5)])
        sent += await store.append(ses, first, attempt, [Error(message="stop", recoverable=False)], status="failed")
        got = [e async for batch in readers[0] for e in batch or ()]
        assert [e[0].decode() for e in got] == sent and got[-1][1] == b"error"
        queued = await anext(aiter(readers[1]))
        assert queued is not None and queued[0][1] == b"thinking" and b'"step":"queued"' in queued[0][2]
        assert queued[0][0] == (await redis.xrange(keys.events(ses, second)))[0][0]
        assert store.reads == 0
        for r in readers:
            await r.aclose()
        assert hub.subscriber_count() == 0


async def test_a_just_accepted_message_whose_reader_falls_behind_reads_the_stream(redis_url):
    """Without the opening read, a reader that overflows its buffer still misses nothing."""
    async with _send_path(redis_url, buffer=2) as (settings, redis, hub, store, ses):  # tiny buffer: overflow is certain
        msg, sub = await _accepted(store, redis, hub, ses)
        reader = reader_for_new(store, sub, settings, ses, msg)
        attempt, _ = await store.claim(ses, msg, "test")
        sent = []
        for i in range(10):  # ten publishes before the reader takes any
            sent += await store.append(ses, msg, attempt, [Token(content=f"t{i} ")])
        sent += await store.append(ses, msg, attempt, [Error(message="stop", recoverable=False)], status="failed")
        got = [e async for batch in reader for e in batch or ()]
        assert [e[0].decode() for e in got] == sent
        assert store.reads >= 1  # the overflow was caught up from the stream
        await reader.aclose()
