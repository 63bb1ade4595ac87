"""Managing API keys: list, create, revoke, rotate (the operator's side of ``tenancy``).

Revocation and expiry are fields of the key's record, checked on every request, so they take
effect at once for new requests on every gateway; each gateway also re-checks the keys of its
open streams every few seconds (``gateway/keywatch.py``) and ends those streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys
from shared.ids import now_ms
from shared.stores.tenancy import FULL, SCOPES, TenantStore, hash_key, new_api_key


class KeyNotFound(LookupError):
    """No key has this id."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    prefix: str  # the first characters of the secret ("" for keys made before prefixes)
    scope: str
    org_id: str
    namespaces: tuple[str, ...]  # names
    created_ms: int  # 0: made before key ids existed
    last_used_ms: int
    expires_ms: int
    revoked_ms: int
    origin: str

    def status(self, now: int) -> str:
        if self.revoked_ms:
            return "revoked"
        if self.expires_ms and self.expires_ms <= now:
            return "expired"
        return "active"


def _i(record: dict[bytes, bytes], name: str) -> int:
    raw = record.get(name.encode())
    return int(raw) if raw else 0


def _s(record: dict[bytes, bytes], name: str) -> str:
    return record.get(name.encode(), b"").decode()


class KeyStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.tenants = TenantStore(redis)

    async def create(self, namespace: str, *, name: str = "", scope: str = FULL, expires_ms: int = 0,
                     origin: str = "") -> tuple[str, KeyInfo]:
        """A new key for ``namespace``: (the secret, shown once; its info)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        secret = new_api_key()
        await self.tenants.register_key(secret, namespace, name=name, scope=scope, expires_ms=expires_ms,
                                        origin=origin)
        key_id = (await self.redis.hget(keys.api_key(hash_key(secret)), "id")).decode()
        return secret, await self.get(key_id)

    async def adopt_all(self) -> int:
        """Give every key made before key ids existed its id; returns how many were adopted."""
        adopted = 0
        async for name in self.redis.scan_iter(match=keys.api_key("*"), count=500):
            raw = name.decode()
            if raw.endswith(":ns"):
                continue
            h = raw[len(keys.api_key("")):]
            if not await self.redis.hexists(raw, "id"):
                await self.tenants.adopt(h)
                adopted += 1
        return adopted

    async def _hash_of(self, key_id: str) -> str:
        h = await self.redis.get(keys.api_key_id(key_id)) if key_id.startswith("key_") else None
        if h is None:
            raise KeyNotFound(key_id)
        return h.decode()

    async def get(self, key_id: str) -> KeyInfo:
        h = await self._hash_of(key_id)
        record = await self.redis.hgetall(keys.api_key(h))
        if not record:
            raise KeyNotFound(key_id)
        ns_ids = sorted(n.decode() for n in await self.redis.smembers(keys.api_key(h) + ":ns"))
        names = []
        for ns_id in ns_ids:
            name = await self.redis.hget(keys.namespace(ns_id), "name")
            names.append(name.decode() if name else ns_id)
        return KeyInfo(key_id=key_id, name=_s(record, "name"), prefix=_s(record, "prefix"),
                       scope=_s(record, "scope") or FULL, org_id=_s(record, "org_id"),
                       namespaces=tuple(names), created_ms=_i(record, "created_ms"),
                       last_used_ms=_i(record, "last_used_ms"), expires_ms=_i(record, "expires_ms"),
                       revoked_ms=_i(record, "revoked_ms"), origin=_s(record, "origin"))

    async def all(self) -> list[KeyInfo]:
        await self.adopt_all()
        out = []
        for raw in await self.redis.zrange(keys.API_KEYS, 0, -1):
            try:
                out.append(await self.get(raw.decode()))
            except KeyNotFound:
                continue
        return out

    async def revoke(self, key_id: str) -> KeyInfo:
        """Idempotent: a revoked key keeps its first revocation time."""
        h = await self._hash_of(key_id)
        if int(await self.redis.hget(keys.api_key(h), "revoked_ms") or 0) == 0:
            await self.redis.hset(keys.api_key(h), "revoked_ms", str(now_ms()))
        return await self.get(key_id)

    async def rotate(self, key_id: str, grace_ms: int) -> tuple[str, KeyInfo, KeyInfo]:
        """A new key with the old one's namespaces, scope, name and lifetime (a key made to expire
        after 30 days is replaced by one that expires 30 days from now: rotating must not turn an
        expiring key into a permanent one); the old one stays valid for ``grace_ms`` more (or
        less, if it expires sooner). Returns (secret, new, old)."""
        old = await self.get(key_id)
        if old.status(now_ms()) != "active":
            raise ValueError(f"key {key_id} is {old.status(now_ms())}: only an active key can be rotated")
        h = await self._hash_of(key_id)
        ns_ids = sorted(n.decode() for n in await self.redis.smembers(keys.api_key(h) + ":ns"))
        secret = new_api_key()
        now = now_ms()
        expires = now + (old.expires_ms - old.created_ms) if old.expires_ms else 0
        for ns_id in ns_ids:
            name = await self.redis.hget(keys.namespace(ns_id), "name")
            await self.tenants.register_key(secret, name.decode() if name else ns_id, old.org_id,
                                            name=old.name, scope=old.scope, origin=old.origin,
                                            expires_ms=expires)
        new_id = (await self.redis.hget(keys.api_key(hash_key(secret)), "id")).decode()
        until = now + grace_ms
        if not old.expires_ms or until < old.expires_ms:
            await self.redis.hset(keys.api_key(h), mapping={"expires_ms": max(until, 1), "rotated_to": new_id})
        return secret, await self.get(new_id), await self.get(key_id)

    async def validity(self, key_hashes: Sequence[str], now: int) -> dict[str, str | None]:
        """For each key hash: None if still valid, else the reason (``key_revoked``,
        ``key_expired``, ``invalid_api_key`` when deleted). One round trip for all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for h in key_hashes:
                pipe.hmget(keys.api_key(h), ["hash", "revoked_ms", "expires_ms"])
            rows = await pipe.execute()
        out: dict[str, str | None] = {}
        for h, (stored, revoked, expires) in zip(key_hashes, rows, strict=True):
            if stored is None:
                out[h] = "invalid_api_key"
            elif revoked and int(revoked):
                out[h] = "key_revoked"
            elif expires and 0 < int(expires) <= now:
                out[h] = "key_expired"
            else:
                out[h] = None
        return out
