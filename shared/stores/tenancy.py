"""API keys and namespaces.

A key (``sk_...``) is stored only as its SHA-256 (keys are 190-bit random, so a fast hash is
enough) and belongs to an organization with one or more namespaces. A namespace is named by
name or by ``ns_`` id; both resolve to the same id.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys
from shared.errors import NotFound, Unauthorized
from shared.ids import new_id, now_ms


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "sk_" + secrets.token_urlsafe(24)


def redact(api_key: str) -> str:
    return api_key[:6] + "…" + api_key[-2:] if len(api_key) > 10 else "sk_…"


@dataclass(frozen=True, slots=True)
class Principal:
    key_hash: str
    org_id: str
    namespaces: frozenset[str]  # ns ids


class TenantStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def ensure_namespace(self, name: str, org_id: str) -> str:
        existing = await self.redis.get(keys.namespace_by_name(name))
        if existing:
            return existing.decode()
        ns_id = new_id("ns")
        if await self.redis.set(keys.namespace_by_name(name), ns_id, nx=True):
            await self.redis.hset(keys.namespace(ns_id), mapping={"name": name, "org_id": org_id,
                                                                  "created_ms": now_ms()})
            return ns_id
        return (await self.redis.get(keys.namespace_by_name(name))).decode()

    async def register_key(self, api_key: str, namespace: str, org_id: str | None = None) -> tuple[str, str]:
        """Grant ``api_key`` access to ``namespace`` (created if new). Returns (ns_id, org_id)."""
        h = hash_key(api_key)
        prior = await self.redis.hget(keys.api_key(h), "org_id")
        org = prior.decode() if prior else (org_id or new_id("org"))
        ns_id = await self.ensure_namespace(namespace, org)
        await self.redis.hset(keys.api_key(h), mapping={"org_id": org, "hash": h})
        await self.redis.sadd(keys.api_key(h) + ":ns", ns_id)
        return ns_id, org

    async def authenticate(self, api_key: str | None) -> Principal:
        if not api_key:
            raise Unauthorized("Missing API key: send Authorization: Bearer <key>", code="missing_api_key")
        h = hash_key(api_key)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.api_key(h))
            pipe.smembers(keys.api_key(h) + ":ns")
            record, namespaces = await pipe.execute()
        stored = record.get(b"hash", b"").decode()
        # The lookup is by hash already; the constant-time compare keeps it that way if the
        # lookup ever changes to a prefix index.
        if not record or not hmac.compare_digest(stored, h):
            raise Unauthorized("Invalid API key", code="invalid_api_key")
        return Principal(h, record[b"org_id"].decode(), frozenset(n.decode() for n in namespaces))

    async def resolve_namespace(self, principal: Principal, given: str | None) -> str:
        if not given:
            if len(principal.namespaces) == 1:
                return next(iter(principal.namespaces))
            raise NotFound("Namespace required: send X-Namespace or ?namespace=", code="namespace_required")
        ns_id = given
        if not given.startswith("ns_"):
            found = await self.redis.get(keys.namespace_by_name(given))
            ns_id = found.decode() if found else ""
        if ns_id not in principal.namespaces:
            # Unknown and not-yours answer the same: no probing for other tenants' names.
            raise NotFound("Namespace not found", code="namespace_not_found", details={"namespace": given})
        return ns_id
