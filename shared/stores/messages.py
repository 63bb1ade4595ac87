"""The message store: accept, claim, append (fenced), cancel, and read a message's stream.

Thin I/O over the Lua scripts of ``shared/scripts.py``; every write that matters is one script
call, so it is atomic and, under Cluster, single-slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from shared import backends, cursor, keys, metrics, scripts, tracing
from shared.errors import BadRequest, Conflict, Fenced, Forbidden, NotFound, RateLimited
from shared.events import Error, Event, Reset, encode_payload, type_of
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores import compaction, jobs
from shared.stores.session_log import Entry, for_storage, kind_of
from shared.stores.session_log import encode as encode_entry

QUOTA_MESSAGES = {
    "max_messages": "The session reached its max_messages quota",
    "max_tokens_total": "The session reached its max_tokens_total quota",
    "max_tool_calls": "The session reached its max_tool_calls quota",
    "max_session_duration": "The session exceeded max_session_duration_minutes",
    "session_expired": "The session has expired",
}


@dataclass(frozen=True, slots=True)
class Record:
    """The message record (hash) decoded: status, attempt and the outcome."""

    message_id: str
    session_id: str
    namespace_id: str
    status: str
    attempt: int
    count: int
    created_at_ms: int
    content: str
    first: bool
    last_id: str | None
    final_id: str | None
    final_payload: bytes | None
    terminal_id: str | None
    terminal_type: str | None
    terminal_payload: bytes | None
    lease_until_ms: int
    finished_at_ms: int | None
    job_id: str = ""  # the arq job that runs it now (a continuation gets its own)
    confirm_expires_ms: int = 0
    # Set once the stream is compacted (shared/stores/compaction.py): runs of tokens
    # ("first/last,...") folded into the final message, and how many entries that removed.
    compacted: bool = False
    folded: str = ""
    folded_count: int = 0
    traceparent: str | None = None  # W3C, of the request that sent it (traces on only)
    handed: int = 0  # attempts that ended without a crash (paused, released): not crash retries
    queued_at_ms: int = 0  # when an answered confirmation queued it again
    turn_ms: int = 0  # when it was given the session's turn (0: still waiting, or accepted before turns)

    @property
    def ended(self) -> bool:
        return self.terminal_type is not None

    @classmethod
    def from_hash(cls, h: dict[bytes, bytes]) -> Record:
        def s(name: str) -> str | None:
            v = h.get(name.encode())
            return v.decode() if v is not None else None

        def i(name: str) -> int:
            v = h.get(name.encode())
            return int(v) if v else 0

        return cls(
            message_id=s("message_id") or "",
            session_id=s("session_id") or "",
            namespace_id=s("namespace_id") or "",
            status=s("status") or "queued",
            attempt=i("attempt"),
            count=i("count"),
            created_at_ms=i("created_at_ms"),
            content=s("content") or "",
            first=s("first") == "1",
            last_id=s("last_id"),
            final_id=s("final_id"),
            final_payload=h.get(b"final_payload"),
            terminal_id=s("terminal_id"),
            terminal_type=s("terminal_type"),
            terminal_payload=h.get(b"terminal_payload"),
            lease_until_ms=i("lease_until_ms"),
            finished_at_ms=i("finished_at_ms") or None,
            job_id=s("job") or s("message_id") or "",
            confirm_expires_ms=i("confirm_expires_ms"),
            compacted=s("compacted") == "1",
            folded=s("folded") or "",
            folded_count=i("folded_count"),
            traceparent=s("traceparent"),
            handed=i("handed"),
            queued_at_ms=i("queued_ms"),
            turn_ms=i("turn_ms"),
        )


class Accepted(NamedTuple):
    """What accepting a message decided (see ACCEPT in shared/scripts.py)."""

    created: bool
    message_id: str
    runs_now: bool = False  # it holds the session's turn: enqueue it
    holder: str = ""  # else the message it waits behind
    holder_status: str = ""
    revived: str = ""  # a waiter handed a turn its dead holder never passed on: enqueue it too


class MessageStore:
    def __init__(self, redis: aioredis.Redis, settings: Settings, queue: aioredis.Redis | None = None) -> None:
        self.redis = redis
        self.settings = settings
        # Where arq's queue lives (shared/stores/jobs.py): the data Redis, except on a cluster,
        # where a store that may hand a session's turn on must be given the queue's client.
        self.queue: aioredis.Redis | None = queue if queue is not None else (
            None if backends.is_cluster(redis) else redis)
        # A cluster client publishes live entries on the session's shard (SPUBLISH); a client
        # that retries a write after a failover sends a batch token so the retry is a no-op.
        self._sharded = sharded = backends.is_cluster(redis)
        self._retries = backends.retries_writes(redis)
        self._append = redis.register_script(scripts.APPEND_SHARDED if sharded else scripts.APPEND)
        self._claim = redis.register_script(scripts.CLAIM)
        self._renew = redis.register_script(scripts.RENEW)
        self._release = redis.register_script(scripts.RELEASE)
        self._accept = redis.register_script(scripts.ACCEPT_SHARDED if sharded else scripts.ACCEPT)

    # gateway side

    async def accept(
        self,
        ses_id: str,
        ns_id: str,
        msg_id: str,
        user_entry: Entry,
        content: str,
        idem_key_hash: str | None,
        body_hash: str,
    ) -> tuple[bool, str]:
        """Record a user message. Returns (created, message_id); an existing message for the
        same idempotency key comes back with created=False. (``submit`` says more.)"""
        a = await self.submit(ses_id, ns_id, msg_id, user_entry, content, idem_key_hash, body_hash)
        return a.created, a.message_id

    async def submit(self, ses_id: str, ns_id: str, msg_id: str, user_entry: Entry, content: str,
                     idem_key_hash: str | None, body_hash: str, strategy: str = "enqueue") -> Accepted:
        """Record a user message and its place in the session's order, in one round trip: the
        reaper's index entry and msg_id -> session (global keys, another Cluster slot, so outside
        the script) go in the same pipeline, first, so a gateway dying after the accept leaves a
        message the reaper finds. Raises SessionBusy for ``reject`` while another message runs."""
        idem = keys.idempotency(ses_id, idem_key_hash) if idem_key_hash else keys.idempotency(ses_id, "-")
        member = f"{ses_id}/{msg_id}"
        now = now_ms()
        k = [keys.session(ses_id), keys.session_log(ses_id), keys.message(ses_id, msg_id), idem,
             keys.session_rate(ses_id), keys.session_pending(ses_id), keys.events(ses_id, msg_id)]
        a: list[Any] = [msg_id, encode_entry(user_entry), now, body_hash if idem_key_hash else "",
             self.settings.idempotency_ttl_s, self.settings.message_record_ttl_s, content, ns_id, strategy,
             self.settings.stream_maxlen, keys.live_channel(ses_id, msg_id)]
        if self._sharded:
            # A cluster pipeline takes no scripts: the index entries first (each its own slot),
            # then the script on the session's slot; a gateway dying in between is the same case.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.ACTIVE, {member: now + 5_000})
                pipe.set(keys.message_session(msg_id), ses_id, ex=self.settings.message_record_ttl_s)
                await pipe.execute()
            try:
                reply = await self._accept(keys=k, args=a)
            except ResponseError as exc:
                reply = exc
        for _ in range(0 if self._sharded else 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.ACTIVE, {member: now + 5_000})
                pipe.set(keys.message_session(msg_id), ses_id, ex=self.settings.message_record_ttl_s)
                pipe.evalsha(self._accept.sha, len(k), *k, *a)  # type: ignore[arg-type]
                _, _, reply = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, NoScriptError):
                break
            await self.redis.script_load(scripts.ACCEPT)
        if isinstance(reply, BaseException) or reply[0] != b"new":
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(keys.ACTIVE, member)
                pipe.delete(keys.message_session(msg_id))
                await pipe.execute()
            if isinstance(reply, ResponseError):
                raise _accept_error(str(reply), ses_id) from None
            if isinstance(reply, BaseException):
                raise reply
            return Accepted(False, reply[1].decode())
        if tp := tracing.traceparent():  # before the enqueue: the worker's spans join this trace
            await self.redis.hset(keys.message(ses_id, msg_id), "traceparent", tp)
        _, mid, state, holder, hstatus, revived = (x.decode() for x in reply)
        return Accepted(True, mid, state == "run", holder, hstatus, revived)

    async def record(self, ses_id: str, msg_id: str) -> Record | None:
        h = await self.redis.hgetall(keys.message(ses_id, msg_id))
        return Record.from_hash(h) if h else None

    async def read(self, ses_id: str, msg_id: str, after: str, count: int,
                   check_trim: bool = False) -> list[tuple[bytes, bytes, bytes]]:
        """Entries strictly after ``after`` as (id, type, payload), from the stream or, once the
        message is compacted, from its packed events.

        Gaps are announced, never silent, in the same round trip as the read:
        * ``check_trim`` (a reader reading on after it opened): if MAXLEN trimmed entries after
          ``after`` since (the stream lost entries and its first retained one is newer than the
          cursor, as conservative as ``resume.plan``), the rows start with ``reset {reason:
          "cursor_expired"}``;
        * if the range read holds folded tokens, they start with ``reset {reason: "compacted"}``:
          the tokens the reader has not seen are now only in the final message (also for a
          reader part-way through the stream when it was compacted).
        Both resets carry ``after`` as their id."""
        key = keys.events(ses_id, msg_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(key, min="(" + after, max="+", count=count)
            pipe.hmget(keys.message(ses_id, msg_id), ["folded", "status", "compacted", "count"])
            if check_trim:
                pipe.xrange(key, count=1)
                pipe.xlen(key)
            rows, (folded, status, compacted, recorded), *trim = await pipe.execute()
        if compacted and not rows:
            blob = await self.redis.get(keys.events_packed(ses_id, msg_id))
            packed = compaction.after(compaction.unpack(blob), after, count) if blob else []
            out = [(i.encode(), t.encode(), d) for i, t, d in packed]
        else:
            out = [(eid, f[b"t"], f[b"d"]) for eid, f in rows]
        gone = (status or b"completed").decode()
        if folded:
            # The range this read covers: up to its last row, or to the end if it got them all.
            upto = cursor.of_entry(out[-1][0]) if len(out) >= count else None
            if compaction.skips_folded(compaction.parse_runs(folded.decode()), cursor.parse(after), upto):
                reset = Reset(reason="compacted", status=gone, replay_from=after)
                out.insert(0, (after.encode(), b"reset", encode_payload(reset)))
        if trim:
            first, length = trim
            if first and int(recorded or 0) > length and cursor.of_entry(first[0][0]) > cursor.parse(after):
                reset = Reset(reason="cursor_expired", status=(status or b"running").decode(), replay_from=after)
                out.insert(0, (after.encode(), b"reset", encode_payload(reset)))
        return out

    async def final_payload(self, record: Record) -> bytes | None:
        """The final ``message`` payload: from the record, or from the packed events once
        compaction has dropped the record's copy."""
        if record.final_payload is not None or not record.final_id:
            return record.final_payload
        rows = await compaction.read_all(self.redis, record.session_id, record.message_id)
        return next((d for i, _, d in rows if i == record.final_id), None)

    async def stream_info(self, ses_id: str, msg_id: str) -> dict[str, Any] | None:
        """First retained id, last generated id and length, or None if the stream is gone."""
        key = keys.events(ses_id, msg_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(key, count=1)
            pipe.xlen(key)
            pipe.exists(key)
            pipe.xrevrange(key, count=1)
            first, length, exists, last = await pipe.execute()
        if not exists:
            blob = await self.redis.get(keys.events_packed(ses_id, msg_id))
            if not blob:
                return None
            rows = compaction.unpack(blob)
            return {"first": rows[0][0] if rows else None, "last": rows[-1][0] if rows else None,
                    "length": len(rows)}
        return {
            "first": first[0][0].decode() if first else None,
            "last": last[0][0].decode() if last else None,
            "length": length,
        }

    async def cancel(self, ses_id: str, msg_id: str) -> bool:
        """End the message with a cancelled error. False if it had already ended."""
        err = Error(message="The message was cancelled", recoverable=False, code="cancelled",
                    message_id=msg_id)
        try:
            await self.append(ses_id, msg_id, "*", [err], status="cancelled")
        except Fenced:
            return False
        return True

    # worker side

    async def claim(self, ses_id: str, msg_id: str, worker_id: str) -> tuple[int, str]:
        attempt, status = await self._claim(
            keys=[keys.message(ses_id, msg_id), keys.session(ses_id)],
            args=[worker_id, int(self.settings.lease_s * 1000), now_ms(), msg_id],
        )
        if int(attempt) > 0:
            metrics.ATTEMPTS.labels("first" if int(attempt) == 1 else "retry").inc()
            if int(attempt) > 1:
                metrics.TAKEOVERS.inc()
        return int(attempt), status.decode()

    async def renew(self, ses_id: str, msg_id: str, attempt: int) -> bool:
        ok = await self._renew(
            keys=[keys.message(ses_id, msg_id)],
            args=[attempt, int(self.settings.lease_s * 1000), now_ms()],
        )
        return bool(ok)

    async def release(self, ses_id: str, msg_id: str, attempt: int) -> None:
        await self._release(keys=[keys.message(ses_id, msg_id)], args=[attempt])

    async def append(
        self,
        ses_id: str,
        msg_id: str,
        attempt: int | str,
        events: list[Event],
        *,
        status: str = "completed",
        log: list[Entry] = (),  # type: ignore[assignment]
        stats: dict[str, int | float] | None = None,
    ) -> list[str]:
        """Append events as one fenced step. Raises Fenced when this attempt may not write."""
        payloads = [(type_of(e), encode_payload(e)) for e in events]
        limit = self.settings.max_event_bytes
        for t, d in payloads:
            if len(d) > limit:
                raise EventTooLarge(f"{t} event of {len(d)} bytes exceeds {limit} bytes")
        return await self.append_raw(ses_id, msg_id, attempt, payloads, status=status, log=log, stats=stats)

    async def append_raw(
        self,
        ses_id: str,
        msg_id: str,
        attempt: int | str,
        payloads: list[tuple[str, bytes]],
        *,
        status: str = "completed",
        log: list[Entry] = (),  # type: ignore[assignment]
        stats: dict[str, int | float] | None = None,
    ) -> list[str]:
        k, args = append_args(self.settings, ses_id, msg_id, attempt, payloads, status, log, stats,
                              token=new_id("b", 10) if self._retries else None)
        started = time.perf_counter()
        try:
            reply = await self._append(keys=k, args=args)
        except ResponseError as exc:
            text = str(exc)
            if text.startswith(("FENCED", "TERMINAL", "NOREC")):
                metrics.FENCED_APPENDS.inc()
                raise Fenced(text) from None
            raise
        metrics.appended(payloads, time.perf_counter() - started)
        # {ids, handed}; an empty reply is what bench.producer's argument-capturing stub returns.
        ids, handed = (reply[0], reply[1]) if reply else ([], b"")
        if handed:
            if self.queue is None:
                raise RuntimeError("MessageStore on a cluster was built without its queue client")
            await jobs.enqueue(self.queue, self.settings, ses_id, handed.decode())
        return [i.decode() for i in ids]


def append_args(settings: Settings, ses_id: str, msg_id: str, attempt: int | str,
                payloads: list[tuple[str, bytes]], status: str = "completed", log: list[Entry] | tuple[()] = (),
                stats: dict[str, int | float] | None = None, token: str | None = None) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the APPEND script (shared with the worker's group-commit appender).
    ``token``: a batch token, for a client that may retry this very batch (Cluster, Sentinel)."""
    stats = stats or {}
    args: list[Any] = [
        attempt, settings.stream_maxlen, settings.message_stream_ttl_s,
        settings.message_record_ttl_s, keys.live_channel(ses_id, msg_id), status, now_ms(),
        len(payloads), len(log), len(stats),
    ]
    for t, d in payloads:
        args += [t, d]
    for entry in log:
        entry = for_storage(entry, settings.log_tool_output_chars)
        args += [kind_of(entry), encode_entry(entry)]
    for field, amount in stats.items():
        args += [field, repr(float(amount)) if isinstance(amount, float) else str(amount)]
    if token is not None:
        args.append(token)
    return ([keys.message(ses_id, msg_id), keys.events(ses_id, msg_id), keys.session(ses_id),
             keys.session_log(ses_id), keys.session_pending(ses_id)], args)


class EventTooLarge(ValueError):
    """An event payload over AGENTSTREAM_MAX_EVENT_BYTES; the worker ends the message instead."""


def _accept_error(text: str, ses_id: str) -> Exception:
    if text.startswith("NOSESSION"):
        return NotFound("Session not found", code="session_not_found", details={"session_id": ses_id})
    if text.startswith("TERMINATED"):
        return BadRequest("The session is terminated and accepts no more messages",
                          code="session_terminated", details={"session_id": ses_id})
    if text.startswith("IDEMPOTENCY_MISMATCH"):
        return Conflict("Idempotency-Key was already used with a different request body",
                        code="idempotency_key_reused", details={"session_id": ses_id, "header": "Idempotency-Key"})
    if text.startswith("QUOTA"):
        code = text.split()[1]
        return Forbidden(QUOTA_MESSAGES.get(code, "Session quota exceeded"), code=f"quota_{code}",
                         details={"session_id": ses_id, "quota": code})
    if text.startswith("BUSY"):
        _, holder, status = (text.split() + ["", ""])[:3]
        return Conflict(f"Message {holder} of this session is still {status or 'running'}; this request "
                           "asked not to wait (X-Agentstream-Multitask: reject)", code="session_busy",
                           details={"session_id": ses_id, "running_message_id": holder,
                                    "running_status": status or "running"})
    if text.startswith("RATE"):
        retry = text.split()[1]
        return RateLimited("The session's rate_limit_messages_per_minute was exceeded",
                           code="session_rate_limited",
                           details={"retryable": True, "retry_after_seconds": int(retry)},
                           headers={"Retry-After": retry})
    return RuntimeError(text)
