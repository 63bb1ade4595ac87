"""A request that names its namespace gets it resolved in the key's own round trip (issue 16:
the send path's round trips), counted by a real Redis's ``total_reads_processed``; what it
resolves to, and what it refuses, is what the separate lookup gave."""

from __future__ import annotations

import os

import pytest

from shared import connect
from shared.errors import NotFound
from shared.stores.tenancy import TenantStore

pytestmark = pytest.mark.anyio


async def _round_trips(redis, fn):  # type: ignore[no-untyped-def]
    before = (await redis.info("stats"))["total_reads_processed"]
    out = await fn()
    return out, (await redis.info("stats"))["total_reads_processed"] - before - 1  # minus the INFO's own


async def test_a_named_namespace_resolves_with_the_key_in_one_round_trip(redis_url: str) -> None:
    redis = connect.client(redis_url)
    tenants = TenantStore(redis)
    mine, theirs = f"mine-{os.urandom(3).hex()}", f"theirs-{os.urandom(3).hex()}"
    try:
        key = "sk_" + os.urandom(16).hex()
        ns_id, _ = await tenants.register_key(key, mine)
        await tenants.register_key("sk_" + os.urandom(16).hex(), theirs)
        await tenants.authenticate(key, mine)  # its once-a-minute last-used write is behind us

        async def by_name() -> str:
            return await tenants.resolve_namespace(await tenants.authenticate(key, mine), mine)

        resolved, trips = await _round_trips(redis, by_name)
        assert (resolved, trips) == (ns_id, 1)

        # the id itself, and no namespace at all with one granted: no lookup either
        assert await _round_trips(redis, lambda: _resolve(tenants, key, ns_id)) == (ns_id, 1)
        assert await _round_trips(redis, lambda: _resolve(tenants, key, None)) == (ns_id, 1)
        # a principal read without the name still resolves it, with a lookup of its own
        principal = await tenants.authenticate(key)
        assert await _round_trips(redis, lambda: tenants.resolve_namespace(principal, mine)) == (ns_id, 1)

        # another tenant's name and an unknown one answer the same, as before
        for name in (theirs, "no-such-namespace"):
            with pytest.raises(NotFound) as err:
                await _resolve(tenants, key, name)
            assert err.value.code == "namespace_not_found"
        # a name read with the key is used only for that name
        with pytest.raises(NotFound):
            await tenants.resolve_namespace(await tenants.authenticate(key, mine), theirs)
    finally:
        await redis.aclose()


async def _resolve(tenants: TenantStore, key: str, given: str | None) -> str:
    return await tenants.resolve_namespace(await tenants.authenticate(key, given), given)
