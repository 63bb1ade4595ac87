"""The session store: the session record, its log, and the projections folded from the log."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from shared import backends, keys
from shared.errors import NotFound
from shared.ids import iso, new_id, now_ms
from shared.models import (
    BUILTIN_MODEL,
    CreateSessionRequest,
    GetSessionResponse,
    MessageHistoryItem,
    SessionStats,
)
from shared.settings import Settings
from shared.stores import compaction, session_log

_json = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()
HISTORY_CHUNK = 64  # session log entries per backward read: ~21 plain exchanges (user, assistant, turn)

MEMORY_CAP = 50  # remembered exchanges per session; the oldest go first
QUOTA_FIELDS = {
    "max_messages": "quota_max_messages",
    "max_tokens_total": "quota_max_tokens",
    "max_tool_calls": "quota_max_tool_calls",
    "rate_limit_messages_per_minute": "quota_rate_per_minute",
}


def _s(h: dict[bytes, bytes], name: str) -> str | None:
    v = h.get(name.encode())
    return v.decode() if v is not None else None


def _num(h: dict[bytes, bytes], name: str) -> float:
    v = h.get(name.encode())
    return float(v) if v else 0.0


def _obj(h: dict[bytes, bytes], name: str) -> Any:
    v = h.get(name.encode())
    return _dec.decode(v) if v else None


class SessionStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    async def create(self, ns_id: str, org_id: str, req: CreateSessionRequest, effective_model: str,
                     model_provider: str = "builtin") -> dict[bytes, bytes]:
        ses_id = new_id("ses")
        now = now_ms()
        expires = now + self.settings.session_ttl_s * 1000
        record: dict[str, Any] = {
            "session_id": ses_id,
            "namespace_id": ns_id,
            "internal_id": org_id,
            "agent_config": _json.encode(req.agent_config),
            "effective_model": effective_model,
            "model_provider": model_provider,
            "enable_memory": "1" if req.enable_memory is not False else "0",
            "status": "active",
            "created_ms": now,
            "updated_ms": now,
            "last_activity_ms": now,
            "expires_ms": expires,
        }
        if req.user_id is not None:
            record["user_id"] = req.user_id
        if req.user_memory is not None:
            record["user_memory"] = _json.encode(req.user_memory)
        if req.metadata is not None:
            record["metadata"] = _json.encode(req.metadata)
        if req.quotas is not None:
            record["quotas"] = _json.encode(req.quotas)
            for name, field in QUOTA_FIELDS.items():
                value = getattr(req.quotas, name)
                if value is not None:
                    record[field] = value
            if req.quotas.max_session_duration_minutes:
                record["quota_deadline_ms"] = now + req.quotas.max_session_duration_minutes * 60_000
        for f in session_log.STAT_FIELDS:
            record[f] = 0
        ttl_ms = expires - now + 60_000
        async with backends.pipeline(self.redis) as pipe:  # two slots on a cluster: record, then index
            pipe.hset(keys.session(ses_id), mapping=record)
            pipe.pexpire(keys.session(ses_id), ttl_ms)
            pipe.zadd(keys.namespace_sessions(ns_id), {ses_id: now})
            await pipe.execute()
        return {k.encode(): (v if isinstance(v, bytes) else str(v).encode()) for k, v in record.items()}

    async def load(self, ns_id: str, ses_id: str) -> dict[bytes, bytes]:
        """The session record; another namespace's session answers exactly like a missing one."""
        h = await self.redis.hgetall(keys.session(ses_id)) if ses_id.startswith("ses_") else {}
        if not h or _s(h, "namespace_id") != ns_id:
            raise NotFound("Session not found", code="session_not_found", details={"session_id": ses_id})
        return h

    async def patch_memory(self, ses_id: str, memory: dict[str, Any]) -> int:
        """Replace user_memory (documented: PATCH replaces, it does not merge)."""
        now = now_ms()
        await self.redis.hset(keys.session(ses_id), mapping={"user_memory": _json.encode(memory), "updated_ms": now})
        return now

    async def terminate(self, ses_id: str) -> int:
        """Idempotent: the first call's time is kept."""
        now = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.session(ses_id), "terminated_ms", now)
            pipe.hset(keys.session(ses_id), mapping={"status": "terminated"})
            pipe.hget(keys.session(ses_id), "terminated_ms")
            pipe.hmget(keys.session(ses_id), ["namespace_id", "created_ms"])
            _, _, when, (ns_id, created) = await pipe.execute()
        if ns_id is not None:
            await self.redis.zadd(keys.namespace_terminated_sessions(ns_id.decode()), {ses_id: int(created or 0)})
        return int(when)

    async def rename(self, ses_id: str, name: str) -> int:
        """A name the user chose: replaces the generated one (which never overwrites it)."""
        now = now_ms()
        await self.redis.hset(keys.session(ses_id), mapping={"session_name": name, "updated_ms": now})
        return now

    async def list_ids(self, ns_id: str) -> list[str]:
        ids = await self.redis.zrange(keys.namespace_sessions(ns_id), 0, -1)
        return [i.decode() for i in ids]

    async def page(self, ns_id: str, offset: int, limit: int, newest_first: bool = True
                   ) -> tuple[list[dict[bytes, bytes]], int]:
        """One page of the namespace's sessions by creation time, and how many it has, straight
        from the index every session is added to when it is created (``namespace_sessions``, a
        sorted set scored by creation time): the work is the page's, not the namespace's
        (issue 15.8). Expired sessions leave the index as a page meets them."""
        return await self._page(keys.namespace_sessions(ns_id), ns_id, offset, limit, newest_first)

    async def page_by_status(self, ns_id: str, status: str, offset: int, limit: int, newest_first: bool = True
                             ) -> tuple[list[dict[bytes, bytes]], int]:
        """``page`` for one status. Terminated sessions have their own index; active ones are the
        creation index without them (walked past the terminated ones, never loading them).
        Sessions are only ever active or terminated."""
        await self._index_terminated(ns_id)
        terminated = keys.namespace_terminated_sessions(ns_id)
        if status == "terminated":
            return await self._page(terminated, ns_id, offset, limit, newest_first)
        if status != "active":
            return [], 0
        everything = keys.namespace_sessions(ns_id)
        rows: list[dict[bytes, bytes]] = []
        start, skipped = 0, 0
        while len(rows) < limit:
            chunk = max(limit, 100)
            read = self.redis.zrevrange if newest_first else self.redis.zrange
            ids = [i.decode() for i in await read(everything, start, start + chunk - 1)]
            if not ids:
                break
            start += len(ids)
            active = [i for i, score in zip(ids, await self.redis.zmscore(terminated, ids), strict=True)
                      if score is None]
            if skipped < offset:
                n = min(offset - skipped, len(active))
                skipped, active = skipped + n, active[n:]
            wanted = active[: limit - len(rows)]
            found = await self.load_many(ns_id, wanted)
            rows.extend(found)
            start -= len(wanted) - len(found)  # expired ones just left the index, behind ``start``
        total = int(await self.redis.zcard(everything)) - int(await self.redis.zcard(terminated))
        return rows, max(total, len(rows))

    async def _index_terminated(self, ns_id: str) -> None:
        """Sessions terminated before the terminated index existed are added to it, once per
        namespace, on the first listing by status that needs it (a lazy backfill: one read of
        every session's status, in chunks). Termination adds to it since."""
        marker = keys.namespace_terminated_indexed(ns_id)
        if await self.redis.exists(marker):
            return
        ids = await self.list_ids(ns_id)
        for n in range(0, len(ids), 500):
            chunk = ids[n: n + 500]
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in chunk:
                    pipe.hmget(keys.session(i), ["status", "created_ms"])
                rows = await pipe.execute()
            ended = {i: int(created or 0) for i, (status, created) in zip(chunk, rows, strict=True)
                     if status == b"terminated"}
            if ended:
                await self.redis.zadd(keys.namespace_terminated_sessions(ns_id), ended)
        await self.redis.set(marker, 1)

    async def _page(self, name: str, ns_id: str, offset: int, limit: int, newest_first: bool
                    ) -> tuple[list[dict[bytes, bytes]], int]:
        rows: list[dict[bytes, bytes]] = []
        start = offset
        while len(rows) < limit:
            want = limit - len(rows)
            if newest_first:
                ids = await self.redis.zrevrange(name, start, start + want - 1)
            else:
                ids = await self.redis.zrange(name, start, start + want - 1)
            if not ids:
                break
            found = await self.load_many(ns_id, [i.decode() for i in ids])
            rows.extend(found)
            start += len(found)  # the expired ones just left the index: the ranks after them moved up
        return rows, int(await self.redis.zcard(name))

    async def load_many(self, ns_id: str, ids: list[str]) -> list[dict[bytes, bytes]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(keys.session(i))
            rows = await pipe.execute()
        gone = [i for i, h in zip(ids, rows, strict=True) if not h]
        if gone:  # expired sessions leave the indexes lazily
            await self.redis.zrem(keys.namespace_sessions(ns_id), *gone)
            await self.redis.zrem(keys.namespace_terminated_sessions(ns_id), *gone)
        return [h for h in rows if h and _s(h, "namespace_id") == ns_id]

    async def remember(self, ses_id: str, message_id: str, question: str, answer: str) -> None:
        """Keep a positively rated exchange; later turns see it. Idempotent per message."""
        item = _json.encode({"message_id": message_id, "question": question, "answer": answer})
        key = keys.session_memory(ses_id)
        if await self.redis.lpos(key, item) is not None:
            return
        expires = await self.redis.hget(keys.session(ses_id), "expires_ms")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(key, item)
            pipe.ltrim(key, 0, MEMORY_CAP - 1)
            if expires:
                pipe.pexpireat(key, int(expires) + 60_000)
            await pipe.execute()

    async def log(self, ses_id: str) -> list[session_log.AnyEntry]:
        rows = await self.redis.xrange(keys.session_log(ses_id))
        return [session_log.decode(f[b"d"]) for _, f in rows]

    async def exchanges_before(self, ses_id: str, msg_id: str, limit: int, chunk: int = HISTORY_CHUNK,
                               head: list[Any] | None = None) -> list[dict[str, str]]:
        """The last ``limit`` exchanges accepted before ``msg_id`` as model history (user and
        assistant texts, oldest first, each exchange whole). The log is read backwards in
        chunks and only as far as needed, so a long session costs what a short one costs.
        Messages accepted after ``msg_id`` (waiting their turn) and rolled-back ones are left out.
        ``head``: the log's newest ``chunk`` entries (``XREVRANGE + - COUNT chunk``) when the
        caller already read them in a round trip of its own (the worker's job start)."""
        later: list[tuple[str, str]] = []
        skip: set[str] = set()
        users: list[tuple[str, str]] = []  # (message id, content), newest first
        answers: dict[str, str] = {}
        seen_self = False
        upper = "+"
        while len(users) < limit:
            if head is not None:
                rows, head = head, None
            else:
                rows = await self.redis.xrevrange(keys.session_log(ses_id), max=upper, min="-", count=chunk)
            for _, f in rows:
                e = session_log.decode(f[b"d"])
                if isinstance(e, session_log.TurnEntry) and e.status == session_log.ROLLED_BACK:
                    skip.add(e.message_id)
                if e.message_id == msg_id:
                    seen_self = seen_self or isinstance(e, session_log.UserEntry)
                    continue
                if isinstance(e, session_log.UserEntry):
                    if not seen_self:
                        later.append((e.message_id, e.content))  # accepted after this one: not its past
                    elif e.message_id not in skip:
                        users.append((e.message_id, e.content))
                        if len(users) >= limit:
                            break
                elif isinstance(e, session_log.AssistantEntry):
                    answers.setdefault(e.message_id, e.content)
            if len(rows) < chunk:
                break
            upper = "(" + rows[-1][0].decode()
        if not seen_self:  # a message without a user entry (not accepted through the API)
            users = [u for u in later if u[0] not in skip][:limit]
        out: list[dict[str, str]] = []
        for mid, content in reversed(users):
            out.append({"role": "user", "content": content})
            if mid in answers:
                out.append({"role": "assistant", "content": answers[mid]})
        return out

    async def history(self, ses_id: str, limit: int, offset: int) -> tuple[list[MessageHistoryItem], int]:
        rows = session_log.history_rows(await self.log(ses_id))
        page = rows[offset: offset + limit]
        await self._whole_tool_outputs(ses_id, page)
        items = [
            MessageHistoryItem(
                message_id=r["message_id"], role=r["role"], content=r["content"],
                content_type=r["content_type"], tool_name=r.get("tool_name"),
                tool_inputs=r.get("tool_inputs"), tool_outputs=r.get("tool_outputs"),
                tool_status=r.get("tool_status"), timestamp=iso(r["ts"]),
            )
            for r in page
        ]
        return items, len(rows)

    async def append_log(self, ses_id: str, entry: session_log.Entry) -> str:
        eid = await self.redis.xadd(keys.session_log(ses_id), {"t": session_log.kind_of(entry),
                                                               "d": session_log.encode(entry)})
        return eid.decode()

    async def _whole_tool_outputs(self, ses_id: str, rows: list[dict[str, Any]]) -> None:
        """The log keeps only the start of a long tool output; the whole is the ``output`` of
        the message's ``tool_result`` event, read back while the message is retained."""
        wanted = {(r["message_id"], r["tool_call_id"]) for r in rows if r.get("outputs_truncated")}
        found: dict[tuple[str, str], str] = {}
        for msg_id in {m for m, _ in wanted}:
            for _, type_, payload in await compaction.read_all(self.redis, ses_id, msg_id):
                if type_ != "tool_result":
                    continue
                ev = msgspec.json.decode(payload)
                found[(msg_id, ev.get("tool_call_id", ""))] = msgspec.json.encode(ev.get("output")).decode()
        for r in rows:
            whole = found.get((r["message_id"], r.get("tool_call_id", "")))
            if r.get("outputs_truncated") and whole is not None:
                r["tool_outputs"] = whole

    async def rebuild(self, ses_id: str, write: bool) -> dict[str, tuple[float, float]]:
        """Fold the log into stats; return {field: (stored, recomputed)} where they differ."""
        h = await self.redis.hgetall(keys.session(ses_id))
        if not h:
            raise NotFound("Session not found", code="session_not_found", details={"session_id": ses_id})
        folded = session_log.stats(await self.log(ses_id))
        diff = {f: (_num(h, f), v) for f, v in folded.items() if abs(_num(h, f) - v) > 1e-6}
        if write and diff:
            await self.redis.hset(keys.session(ses_id), mapping={f: v for f, (_, v) in diff.items()})
        return diff


def to_response(h: dict[bytes, bytes]) -> GetSessionResponse:
    turns = _num(h, "turns")
    messages = int(_num(h, "user_messages") + _num(h, "assistant_messages"))
    stats = SessionStats(
        total_messages=messages,
        total_tokens=int(_num(h, "total_tokens")),
        total_tool_calls=int(_num(h, "total_tool_calls")),
        avg_latency_ms=round(_num(h, "total_latency_ms") / turns, 3) if turns else 0.0,
    )
    return GetSessionResponse(
        session_id=_s(h, "session_id") or "",
        namespace_id=_s(h, "namespace_id") or "",
        internal_id=_s(h, "internal_id") or "",
        user_id=_s(h, "user_id"),
        session_name=_s(h, "session_name"),
        agent_config=_obj(h, "agent_config") or {},
        user_memory=_obj(h, "user_memory"),
        status=_s(h, "status") or "active",  # type: ignore[arg-type]
        message_count=messages,
        stats=stats,
        created_at=iso(_num(h, "created_ms")),
        updated_at=iso(_num(h, "updated_ms")),
        last_activity_at=iso(_num(h, "last_activity_ms")),
        expires_at=iso(_num(h, "expires_ms")),
        effective_model=_s(h, "effective_model") or BUILTIN_MODEL,
        # Sessions from before the catalogue ran Claude or the built-in model.
        model_provider=_s(h, "model_provider") or ("anthropic" if (_s(h, "effective_model") or "")
                                                   .startswith("claude") else "builtin"),
        quotas=_obj(h, "quotas"),
        metadata=_obj(h, "metadata"),
    )
