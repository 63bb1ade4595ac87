"""API keys and namespaces.

A key (``sk_...``) is stored only as its SHA-256 (keys are 190-bit random, so a fast hash is
enough) and belongs to an organization with one or more namespaces. A namespace is named by
name or by ``ns_`` id; both resolve to the same id.

Each key also has a public id (``key_...``), the first characters of the secret as a prefix an
operator can recognise, a name, a scope (``full``, or ``read``: list, get and stream only), an
optional expiry and a revocation time. Keys made before those fields existed are adopted on
first use (or by ``keys list``): they get an id and keep full scope and no expiry. Managing keys
(list, revoke, rotate) is ``shared/stores/apikeys.py``; this module answers "who is calling".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import backends, keys
from shared.errors import NotFound, Unauthorized
from shared.ids import iso, new_id, now_ms

FULL, READ = "full", "read"
SCOPES = (FULL, READ)
PREFIX_CHARS = 7  # "sk_" + 4 characters of the secret: enough to tell keys apart in a list
LAST_USED_EVERY_MS = 60_000  # ``last_used`` is written at most this often per key per process


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
    key_id: str = ""
    scope: str = FULL
    expires_ms: int = 0  # 0: never
    # (namespace name, its id or "" if unknown), read with the key when the request named its
    # namespace: resolving it then costs no round trip of its own
    named: tuple[str, str] | None = None


def _int(record: dict[bytes, bytes], name: str) -> int:
    raw = record.get(name.encode())
    return int(raw) if raw else 0


def check_record(record: dict[bytes, bytes], now: int) -> None:
    """Refuse a revoked or expired key (the record exists)."""
    if revoked := _int(record, "revoked_ms"):
        raise Unauthorized("This API key was revoked", code="key_revoked", details={"revoked_at": iso(revoked)})
    expires = _int(record, "expires_ms")
    if expires and expires <= now:
        raise Unauthorized("This API key has expired", code="key_expired", details={"expired_at": iso(expires)})


class TenantStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._touched: dict[str, int] = {}  # key hash -> when this process last wrote last_used_ms

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

    async def register_key(self, api_key: str, namespace: str, org_id: str | None = None, *,
                           name: str = "", scope: str = FULL, expires_ms: int = 0,
                           origin: str = "") -> tuple[str, str]:
        """Grant ``api_key`` access to ``namespace`` (created if new). Returns (ns_id, org_id).

        A new key gets its id, name, scope and expiry here; granting a known key another
        namespace leaves those as they are."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        h = hash_key(api_key)
        prior = await self.redis.hmget(keys.api_key(h), ["org_id", "id"])
        org = prior[0].decode() if prior[0] else (org_id or new_id("org"))
        ns_id = await self.ensure_namespace(namespace, org)
        await self.redis.hset(keys.api_key(h), mapping={"org_id": org, "hash": h})
        await self.redis.sadd(keys.api_key(h) + ":ns", ns_id)
        if prior[1] is None:
            now = now_ms()
            key_id = new_id("key")
            fields = {"id": key_id, "name": name, "scope": scope, "created_ms": now,
                      "expires_ms": expires_ms, "revoked_ms": 0, "prefix": api_key[:PREFIX_CHARS],
                      "origin": origin}
            async with backends.pipeline(self.redis) as pipe:  # three slots on a cluster: in order
                pipe.hset(keys.api_key(h), mapping=fields)
                pipe.set(keys.api_key_id(key_id), h)
                pipe.zadd(keys.API_KEYS, {key_id: now})
                await pipe.execute()
        return ns_id, org

    async def authenticate(self, api_key: str | None, namespace: str | None = None) -> Principal:
        """``namespace``: the name (or id) the request gave, looked up in the same round trip."""
        if not api_key:
            raise Unauthorized("Missing API key: send Authorization: Bearer <key>", code="missing_api_key",
                               details={"header": "Authorization", "scheme": "Bearer"})
        return await self._principal(hash_key(api_key), namespace)

    async def authenticate_id(self, key_id: str) -> Principal:
        """The principal of a key named by its public id (a stream token names its key so)."""
        h = await self.redis.get(keys.api_key_id(key_id)) if key_id.startswith("key_") else None
        if h is None:
            raise Unauthorized("The API key behind this token no longer exists", code="invalid_api_key",
                               details={"parameter": "access_token"})
        return await self._principal(h.decode())

    async def _principal(self, h: str, namespace: str | None = None) -> Principal:
        name = namespace if namespace and not namespace.startswith("ns_") else None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.api_key(h))
            pipe.smembers(keys.api_key(h) + ":ns")
            if name is not None:
                pipe.get(keys.namespace_by_name(name))
            record, namespaces, *found = await pipe.execute()
        stored = record.get(b"hash", b"").decode()
        # The lookup is by hash already; the constant-time compare keeps it that way if the
        # lookup ever changes to a prefix index.
        if not record or not hmac.compare_digest(stored, h):
            raise Unauthorized("Invalid API key", code="invalid_api_key", details={"header": "Authorization"})
        now = now_ms()
        check_record(record, now)
        key_id = record[b"id"].decode() if b"id" in record else await self.adopt(h)
        await self._touch(h, now)
        scope = record.get(b"scope", FULL.encode()).decode()
        named = (name, found[0].decode() if found[0] else "") if name is not None else None
        return Principal(h, record[b"org_id"].decode(), frozenset(n.decode() for n in namespaces),
                         key_id, scope if scope in SCOPES else READ, _int(record, "expires_ms"), named)

    async def _touch(self, h: str, now: int) -> None:
        # One write per key per minute per process, not one per request.
        if now - self._touched.get(h, 0) < LAST_USED_EVERY_MS:
            return
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[h] = now
        await self.redis.hset(keys.api_key(h), "last_used_ms", str(now))

    async def adopt(self, h: str) -> str:
        """Give a key made before key ids existed its id (idempotent, race-safe); full scope and
        no expiry, as it had."""
        key_id = new_id("key")
        if await self.redis.hsetnx(keys.api_key(h), "id", key_id):
            async with backends.pipeline(self.redis) as pipe:  # three slots on a cluster: in order
                pipe.hsetnx(keys.api_key(h), "scope", FULL)
                pipe.set(keys.api_key_id(key_id), h)
                pipe.zadd(keys.API_KEYS, {key_id: 0})
                await pipe.execute()
            return key_id
        return (await self.redis.hget(keys.api_key(h), "id")).decode()

    async def resolve_namespace(self, principal: Principal, given: str | None) -> str:
        if not given:
            if len(principal.namespaces) == 1:
                return next(iter(principal.namespaces))
            raise NotFound("Namespace required: send X-Namespace or ?namespace=", code="namespace_required")
        ns_id = given
        if not given.startswith("ns_"):
            if principal.named is not None and principal.named[0] == given:
                ns_id = principal.named[1]  # read with the key
            else:
                found = await self.redis.get(keys.namespace_by_name(given))
                ns_id = found.decode() if found else ""
        if ns_id not in principal.namespaces:
            # Unknown and not-yours answer the same: no probing for other tenants' names.
            raise NotFound("Namespace not found", code="namespace_not_found", details={"namespace": given})
        return ns_id
