"""The per-key stream slots' shared renewer (gateway/limits.py ``Leases``), against a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from gateway.limits import Leases, StreamSlot
from shared import connect
from shared.errors import RateLimited
from shared.ids import now_ms
from shared.settings import Settings

pytestmark = pytest.mark.anyio


async def _scores(redis, name: str) -> dict[bytes, float]:
    return dict(await redis.zrange(name, 0, -1, withscores=True))


async def _past(ms: float) -> None:
    """Until the wall clock (the leases' scores are wall-clock ms) is past ``ms``."""
    while now_ms() <= ms:  # noqa: ASYNC110 - the condition is the clock itself
        await asyncio.sleep(0.005)


async def test_a_slot_held_past_several_heartbeats_stays_held(redis_url):
    redis = connect.client(redis_url, max_connections=3)
    settings = Settings(max_streams_per_key=1, heartbeat_s=0.05)
    leases = Leases(redis, settings.heartbeat_s)
    leases.start()
    try:
        slot = StreamSlot(leases, settings, "held", None)
        await slot.acquire()
        name, member = slot.name, slot.member.encode()
        seen = [(await _scores(redis, name))[member]]
        while len(seen) < 5:  # four renewals: the lease (three heartbeats) was outlived
            score = (await _scores(redis, name)).get(member)
            assert score is not None, "the held slot lapsed"
            if score > seen[-1]:
                seen.append(score)
            await asyncio.sleep(0.01)
        assert await redis.pttl(name) > 0
        with pytest.raises(RateLimited):  # still counted: the key's one slot is taken
            await StreamSlot(leases, settings, "held", None).acquire()
        await slot.release()
        assert await _scores(redis, name) == {}
    finally:
        await leases.stop()
        await redis.aclose()


async def test_a_released_slot_is_gone_and_a_renewal_does_not_bring_it_back(redis_url):
    redis = connect.client(redis_url, max_connections=3)
    settings = Settings(max_streams_per_key=5)
    leases = Leases(redis, settings.heartbeat_s)  # not started: renewals are called here
    try:
        a = StreamSlot(leases, settings, "released", None)
        b = StreamSlot(leases, settings, "released", None)
        await a.acquire()
        await b.acquire()
        await a.release()
        assert set(await _scores(redis, a.name)) == {b.member.encode()}
        # A release that reaches Redis while a renewal is on its way (ZADD XX adds nothing)
        await redis.zrem(b.name, b.member)
        await leases.renew()
        assert await _scores(redis, b.name) == {}
        await b.release()
        await leases.renew()  # nothing held: no write
        assert not await redis.exists(b.name)
    finally:
        await redis.aclose()


async def test_one_renewal_moves_every_held_lease_of_every_key_forward(redis_url):
    redis = connect.client(redis_url, max_connections=3)
    settings = Settings(max_streams_per_key=5)
    leases = Leases(redis, settings.heartbeat_s)
    try:
        slots = [StreamSlot(leases, settings, h, None) for h in ("one", "one", "two")]
        for s in slots:
            await s.acquire()
        before = {s.member: (await _scores(redis, s.name))[s.member.encode()] for s in slots}
        await _past(max(before.values()) - leases.lease_ms)  # the clock moves on past the acquire
        await leases.renew()
        for s in slots:
            assert (await _scores(redis, s.name))[s.member.encode()] > before[s.member]
        for s in slots:
            await s.release()
    finally:
        await redis.aclose()


async def test_a_dead_gateways_slots_lapse(redis_url):
    redis = connect.client(redis_url, max_connections=3)
    settings = Settings(max_streams_per_key=1, heartbeat_s=0.05)
    dead = Leases(redis, settings.heartbeat_s)
    dead.start()
    alive = Leases(redis, settings.heartbeat_s)
    try:
        held = StreamSlot(dead, settings, "dead", None)
        await held.acquire()
        await dead.stop()  # the gateway dies: no release, no more renewals
        expiry = (await _scores(redis, held.name))[held.member.encode()]
        with pytest.raises(RateLimited):
            await StreamSlot(alive, settings, "dead", None).acquire()
        await _past(expiry)
        fresh = StreamSlot(alive, settings, "dead", None)
        await fresh.acquire()  # the lapsed slot no longer counts
        assert set(await _scores(redis, fresh.name)) == {fresh.member.encode()}
        await fresh.release()
    finally:
        await redis.aclose()


def test_the_lease_is_three_heartbeats():
    assert Leases(None, 15.0).lease_ms == 45_000  # type: ignore[arg-type]
