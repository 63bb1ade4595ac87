"""Group commit: how a worker's events reach Redis (issue 16).

Per message at most one append is in flight. Events produced while it is in flight wait in the
message's outbox and go together in the next append (one APPEND script call: each event its own
entry, one live PUBLISH for the batch). A quiet stream's first event goes at once, so the added
latency is at most one Redis round trip. Across messages, every append ready in one loop
iteration is written to one dedicated connection in one go (``worker/resp.py``): a thousand
streaming messages cost a few syscalls per iteration, not a thousand redis-py commands.

Nothing about the append itself changes: the script is the same fenced, atomic step (a batch is
all or nothing; after a terminal event nothing more is written), and the order within a message
is the order of ``emit`` calls because one batch waits for the previous one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import hiredis
from redis.exceptions import ResponseError

from shared import keys, metrics, scripts
from shared.errors import Fenced
from shared.ids import new_id
from shared.settings import Settings
from shared.stores.messages import append_args
from shared.stores.session_log import Entry
from worker.resp import Reply, Sender, command

log = logging.getLogger("agentstream.worker")

Meta = tuple[str, list[Entry], dict[str, int | float] | None]  # status, session-log entries, stats


class Outbox:
    """One message attempt's events not yet acknowledged by Redis."""

    __slots__ = ("ses_id", "msg_id", "attempt", "buf", "meta", "inflight", "ready", "error", "waiters",
                 "last_id", "appends")

    def __init__(self, ses_id: str, msg_id: str, attempt: int) -> None:
        self.ses_id = ses_id
        self.msg_id = msg_id
        self.attempt = attempt
        self.buf: deque[tuple[str, bytes]] = deque()
        self.meta: Meta | None = None  # goes with the batch that empties the buffer (the terminal one)
        self.inflight = False
        self.ready = False  # waiting for the next loop iteration's write
        self.error: BaseException | None = None
        self.waiters: list[asyncio.Future[None]] = []
        self.last_id: str | None = None
        self.appends = 0  # script calls so far (tests and the bench read it)

    @property
    def idle(self) -> bool:
        return not (self.inflight or self.ready or self.buf or self.meta is not None)


class Appender:
    def __init__(self, conn: Sender, settings: Settings,
                 hand_over: Callable[[str, str], Coroutine[Any, Any, Any]], max_batch: int = 256,
                 max_batch_bytes: int = 512 * 1024, script: str = scripts.APPEND) -> None:
        self.conn = conn
        self.settings = settings
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self._hand_over = hand_over
        self._script = script  # APPEND, or APPEND_SHARDED on a cluster
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._ready: list[Outbox] = []
        self._scheduled = False
        self._open: dict[str, Outbox] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # per message

    def outbox(self, ses_id: str, msg_id: str, attempt: int) -> Outbox:
        ob = self._open[msg_id] = Outbox(ses_id, msg_id, attempt)
        return ob

    def submit(self, ob: Outbox) -> None:
        if ob.inflight or ob.ready:
            return  # the reply of the append in flight submits it again
        ob.ready = True
        self._ready.append(ob)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._tick)

    async def flushed(self, ob: Outbox) -> None:
        """Return once everything emitted so far is in Redis; raise what refused it."""
        if not ob.idle and ob.error is None:
            fut = asyncio.get_running_loop().create_future()
            ob.waiters.append(fut)
            await fut
        if ob.error is not None:
            raise ob.error

    async def settle(self, msg_id: str) -> None:
        """Wait for a message's appends to finish, whatever their outcome (before another
        writer, such as the failure path, appends to the same stream)."""
        ob = self._open.get(msg_id)
        if ob is not None:
            try:
                await self.flushed(ob)
            except Exception:  # noqa: BLE001 - the caller writes its own outcome next
                pass

    def discard(self, msg_id: str) -> None:
        self._open.pop(msg_id, None)

    # the batcher

    def _tick(self) -> None:
        self._scheduled = False
        ready, self._ready = self._ready, []
        for ob in ready:
            ob.ready = False
            if ob.error is not None:
                self._wake(ob)
                continue
            batch: list[tuple[str, bytes]] = []
            size = 0
            while ob.buf and len(batch) < self.max_batch and (not batch or size + len(ob.buf[0][1]) <= self.max_batch_bytes):
                t, d = ob.buf.popleft()
                batch.append((t, d))
                size += len(d)
            meta: Meta | None = None
            if not ob.buf and ob.meta is not None:
                meta, ob.meta = ob.meta, None
            if not batch and meta is None:
                self._wake(ob)
                continue
            status, entries, stats = meta or ("completed", [], None)
            k, args = append_args(self.settings, ob.ses_id, ob.msg_id, ob.attempt, batch, status, entries, stats,
                                  token=new_id("b", 10) if self.conn.retries else None)
            ob.inflight = True
            ob.appends += 1
            started = time.perf_counter()
            self.conn.send(command(b"EVALSHA", self._sha, len(k), *k, *args),
                           lambda reply, ob=ob, batch=batch, meta=meta, started=started:
                           self._done(ob, batch, meta, reply, started), k[0])

    def _done(self, ob: Outbox, batch: list[tuple[str, bytes]], meta: Meta | None, reply: Reply,
              started: float = 0.0) -> None:
        ob.inflight = False
        _observe(batch, reply, started)
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.startswith("NOSCRIPT"):
                # Redis lost its scripts (SCRIPT FLUSH) on a live connection: load, then resend.
                ob.buf.extendleft(reversed(batch))
                if meta is not None:
                    ob.meta = meta
                self.conn.send(command(b"SCRIPT", b"LOAD", self._script), lambda _: None,
                               keys.message(ob.ses_id, ob.msg_id))
                self.submit(ob)
                return
            ob.error = Fenced(text) if text.startswith(("FENCED", "TERMINAL", "NOREC")) else ResponseError(text)
        elif isinstance(reply, BaseException):
            ob.error = reply
        else:
            ids, handed = reply
            if ids:
                ob.last_id = ids[-1].decode()
            if handed:
                task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
                    self._hand_over(ob.ses_id, handed.decode()))
                self._background.add(task)
                task.add_done_callback(self._handed)
            if ob.buf or ob.meta is not None:
                self.submit(ob)
                return
        if ob.error is not None:
            ob.buf.clear()
            ob.meta = None
        self._wake(ob)

    def _handed(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The reaper enqueues a turn holder without a job; this only costs it a few seconds.
            log.warning("handing the session's turn on failed: %s", task.exception())

    @staticmethod
    def _wake(ob: Outbox) -> None:
        waiters, ob.waiters = ob.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


def _observe(batch: list[tuple[str, bytes]], reply: Reply, started: float) -> None:
    """The append metrics (README "Operating"): latency per append, events by type, fenced."""
    if isinstance(reply, hiredis.ReplyError):
        if str(reply).startswith(("FENCED", "TERMINAL", "NOREC")):
            metrics.FENCED_APPENDS.inc()
        return
    if isinstance(reply, BaseException):
        return
    metrics.appended(batch, time.perf_counter() - started)
