"""The worker's hot paths on a real cluster (worker/routing.py): group-commit appends and lease
renewals reach the primary that owns their slot, and keep working when that slot moves (MOVED,
then a re-read slot map) - each batch appended once, each lease renewed.

The SIGKILL and Sentinel failover cases run end to end in test_topology_changes.py and
test_sentinel_failover.py, where a lease that could not be renewed would show as a takeover
(a ``reset`` or a rerun tool) and a lost append as a gap.
"""

from __future__ import annotations

import asyncio

import pytest

from shared import backends, keys, scripts
from shared.ids import new_id, now_ms
from shared.settings import Settings
from tests.backends_suite.servers import Cluster
from tests.backends_suite.test_topology_changes import move_slot
from worker.appender import Appender
from worker.leases import Leases
from worker.routing import ClusterRouter

SETTINGS = Settings(lease_s=5)


async def _append(appender: Appender, ses: str, msg: str, text: str) -> None:
    ob = appender._open.get(msg) or appender.outbox(ses, msg, 1)
    ob.buf.append(("token", b'{"content":"%s"}' % text.encode()))
    appender.submit(ob)
    await appender.flushed(ob)


@pytest.mark.anyio
async def test_appends_and_lease_renewals_follow_a_slot_move(redis_cluster: Cluster):
    client = backends.from_settings(Settings.from_env(redis_cluster.env)).client()
    appends = ClusterRouter(client, "test-append", (scripts.APPEND_SHARDED,))
    renewals = ClusterRouter(client, "test-leases", (scripts.RENEW,))
    appender = Appender(appends, SETTINGS, lambda s, m: asyncio.sleep(0), script=scripts.APPEND_SHARDED)
    leases = Leases(renewals, SETTINGS.lease_s)
    sleeper = asyncio.create_task(asyncio.sleep(60))
    try:
        ses, msg = new_id("ses"), new_id("msg")
        rec = keys.message(ses, msg)
        await client.hset(keys.session(ses), mapping={"namespace_id": "ns_x"})
        await client.hset(rec, mapping={"message_id": msg, "attempt": 1, "status": "running", "lease_until_ms": 0})
        held = leases.hold(ses, msg, 1, sleeper)

        await _append(appender, ses, msg, "before")
        await leases.renew_all()
        src = redis_cluster.owner(rec)
        assert appends.conns.keys() == renewals.conns.keys() == {f"127.0.0.1:{src}"}

        dst = next(p for p in redis_cluster.nodes if p in redis_cluster.procs and p != src
                   and redis_cluster.role(p) == "master")
        move_slot(redis_cluster, redis_cluster.node(src).cluster("keyslot", rec), src, dst)
        renewed_from = now_ms()
        await _append(appender, ses, msg, "after")
        await leases.renew_all()

        rows = await client.xrange(keys.events(ses, msg))
        assert [f[b"d"] for _, f in rows] == [b'{"content":"before"}', b'{"content":"after"}']  # once each
        assert int(await client.hget(rec, "lease_until_ms")) >= renewed_from + 4000
        assert not held.fenced.is_set() and leases.lapsed == 0
        assert appends.retried >= 1 and renewals.retried >= 1  # both met MOVED and followed it
        assert f"127.0.0.1:{dst}" in appends.conns and f"127.0.0.1:{dst}" in renewals.conns
    finally:
        sleeper.cancel()
        await appends.aclose()
        await renewals.aclose()
        await client.aclose()
