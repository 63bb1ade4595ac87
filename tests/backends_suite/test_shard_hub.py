"""The sharded hub against a real cluster: one connection per shard with subscribers, a slot
migration followed by resubscribing (``sunsubscribe`` push), a stale slot map corrected by the
``MOVED`` answer to SSUBSCRIBE, and subscribers told to catch up after each move."""

from __future__ import annotations

import asyncio

import pytest

from gateway.shard_hub import ShardedHub
from shared import backends, keys
from shared.settings import Settings
from tests.backends_suite.servers import Cluster
from tests.backends_suite.test_topology_changes import move_slot


async def until(pred, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_one_connection_per_shard_with_subscribers(redis_cluster: Cluster):
    client = backends.from_settings(Settings.from_env(redis_cluster.env)).client()
    hub = ShardedHub(client, idle_unsubscribe_s=0.2)
    await hub.start()
    try:
        subs = [await hub.subscribe(keys.live_channel(f"ses_c{i}", "msg_x")) for i in range(30)]
        assert hub.shard_connections() == 3  # 30 sessions spread over the 3 primaries
        for sub in subs:
            sub.unsubscribe()
        await until(lambda: hub.shard_connections() == 0)  # no subscriber left: no connection
    finally:
        await hub.stop()
        await client.aclose()


@pytest.mark.anyio
async def test_slot_move_and_stale_map_resubscribe_and_catch_up(redis_cluster: Cluster):
    client = backends.from_settings(Settings.from_env(redis_cluster.env)).client()
    hub = ShardedHub(client)
    await hub.start()
    try:
        first = keys.live_channel("ses_move", "msg_a")
        second = keys.live_channel("ses_move", "msg_b")  # same session: same slot
        sub_a = await hub.subscribe(first)
        src = redis_cluster.owner(first)
        dst = next(p for p in redis_cluster.nodes if p in redis_cluster.procs and p != src
                   and redis_cluster.role(p) == "master")
        slot = redis_cluster.node(src).cluster("keyslot", first)
        move_slot(redis_cluster, slot, src, dst)
        # Redis pushes sunsubscribe for the moved channel; the hub resubscribes at dst and
        # tells the subscriber to catch up from its stream.
        await until(lambda: sub_a.lagging)
        assert hub.moves >= 1
        # The hub's slot map is still the one it read before the move only if nothing refreshed
        # it; force the stale case: point the map at src again, then subscribe.
        node_src = client.nodes_manager.get_node("127.0.0.1", src)
        client.nodes_manager.slots_cache[slot] = [node_src]
        moves = hub.moves
        sub_b = await hub.subscribe(second)  # SSUBSCRIBE at src -> MOVED -> resubscribed at dst
        assert hub.moves == moves + 1
        sub_a.lagging = False
        await client.execute_command("SPUBLISH", first, b"1-0\ntoken\n{}")
        await client.execute_command("SPUBLISH", second, b"2-0\ntoken\n{}")
        await until(lambda: bool(sub_a.queue) and bool(sub_b.queue))
        assert sub_a.drain() == [(b"1-0", b"token", b"{}")] and sub_b.drain() == [(b"2-0", b"token", b"{}")]
    finally:
        await hub.stop()
        await client.aclose()
