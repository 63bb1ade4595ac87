"""The arq worker, configured on purpose.

* Jobs are JSON (msgspec), never pickle.
* Prompt pickup without hot polling: the gateway XADDs every accepted message to the inbound
  stream; each worker blocks on it (``XREAD BLOCK``) and polls arq's queue the moment an entry
  arrives. arq's own poll stays as a slow fallback (``AGENTSTREAM_FALLBACK_POLL_S``).
* ``job_timeout`` = ``AGENTSTREAM_JOB_TIMEOUT_S``; arq's ``max_tries`` is well above ours so our
  reaper, which knows the message, is the one that gives up (with a clear ``error``): arq counts
  every start of a job, hand-overs included, which our reaper does not count as crashes.
* Graceful shutdown: SIGTERM lets running messages finish for ``AGENTSTREAM_WORKER_DRAIN_S``;
  what is still running then is released (its lease ends now) and arq re-queues it, so another
  worker continues it at once (the retry replays the stream exactly).
* No results are kept: a job id (= message id) never blocks, and outcomes live in the message
  record.
* Built for thousands of concurrent jobs (issue 16): a job mostly waits on a model, so
  ``AGENTSTREAM_MAX_JOBS`` is large; events are group-committed through one pipelined
  connection (``worker/appender.py``); leases are renewed for all jobs in one round trip on
  a connection of their own (``worker/leases.py``); the event loop is uvloop. On a cluster
  each of the two is one connection per primary, and behind Sentinel one that follows the
  primary (``worker/routing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import msgspec
import uvloop
from arq.connections import ArqRedis
from arq.worker import Worker as ArqWorker
from arq.worker import func
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import backends, keys, logs, scripts, tracing
from shared.errors import Fenced
from shared.events import Error
from shared.ids import new_id, now_ms
from shared.settings import Settings
from shared.stores import jobs
from shared.stores.messages import EventTooLarge, MessageStore
from shared.stores.sessions import SessionStore
from worker import compactor, observe, pipeline, reaper
from worker.appender import Appender
from worker.deps import Deps, tool_registry
from worker.leases import Leases
from worker.models.errors import ProviderError
from worker.routing import hot_connection

log = logging.getLogger("agentstream.worker")
HEARTBEAT_S = 2.0
HANDOVER_ROOM = 10  # arq's cap on starts per job, in crash retries: room for hand-overs


def _encode_job(obj: Any) -> bytes:
    # arq stores exceptions in failed results; JSON has no exceptions, so they become text.
    return msgspec.json.encode(obj, enc_hook=repr)


async def run_message(ctx: dict[str, Any], ses_id: str, msg_id: str) -> str:
    deps: Deps = ctx["deps"]
    attempt, status = await deps.messages.claim(ses_id, msg_id, deps.worker_id)
    if attempt == 0:
        return status  # already ended (cancelled before start), expired, or not its turn yet
    logs.bind(attempt=attempt)
    task = asyncio.current_task()
    assert task is not None and deps.leases is not None and deps.appender is not None
    held = deps.leases.hold(ses_id, msg_id, attempt, task)
    try:
        await pipeline.run(deps, ses_id, msg_id, attempt)
        return "completed"
    except pipeline.Paused as exc:
        log.info("message %s paused for confirmation %s", msg_id, exc)
        return "paused"
    except Fenced as exc:
        log.info("message %s attempt %d stopped: %s", msg_id, attempt, exc)
        return await _fenced(ctx, ses_id, msg_id)
    except asyncio.CancelledError:
        if held.fenced.is_set():
            return await _fenced(ctx, ses_id, msg_id)  # cancelled or superseded: nothing more to write
        # Shutdown: hand the message over at once instead of waiting for the lease to lapse.
        with contextlib.suppress(Exception):
            await asyncio.shield(deps.messages.release(ses_id, msg_id, attempt))
        raise
    except ProviderError as exc:
        log.warning("message %s attempt %d: model provider failed: %s", msg_id, attempt, exc)
        await _fail(deps, ses_id, msg_id, attempt, "provider_error", f"The model provider failed: {exc}",
                    recoverable=exc.retryable, details=exc.details())
        return "failed"
    except EventTooLarge as exc:
        await _fail(deps, ses_id, msg_id, attempt, "event_too_large", str(exc))
        return "failed"
    except Exception as exc:
        log.exception("message %s attempt %d crashed", msg_id, attempt)
        await _fail(deps, ses_id, msg_id, attempt, "internal_error", f"The agent failed: {type(exc).__name__}")
        return "failed"
    finally:
        deps.leases.drop(held)
        deps.appender.discard(msg_id)


async def _fenced(ctx: dict[str, Any], ses_id: str, msg_id: str) -> str:
    """A newer attempt took this message over. If it is still running, it runs under the same
    arq job id: arq's clean-up after this return must not delete that job's keys, or the reaper
    would find no job if the new attempt died (``Worker.finish_job``)."""
    deps: Deps = ctx["deps"]
    with contextlib.suppress(Exception):
        record = await deps.messages.record(ses_id, msg_id)
        if record is not None and not record.ended and record.job_id == ctx.get("job_id"):
            ctx["superseded"].add(ctx["job_id"])
    return "fenced"


async def _fail(deps: Deps, ses_id: str, msg_id: str, attempt: int, code: str, message: str,
                recoverable: bool = False, details: dict[str, Any] | None = None) -> None:
    if deps.appender is not None:
        await deps.appender.settle(msg_id)  # the error goes after whatever the run still had in flight
    with contextlib.suppress(Fenced):
        await deps.messages.append(ses_id, msg_id, attempt,
                                   [Error(message=message, recoverable=recoverable, code=code, message_id=msg_id,
                                          details=details)],
                                   status="failed")


class Worker(ArqWorker):
    """arq's worker, woken by the inbound stream instead of a fast poll."""

    def __init__(self, *args: Any, fallback_poll_s: float = 1.0, backend: backends.Backend, **kwargs: Any) -> None:
        super().__init__(*args, poll_delay=fallback_poll_s, **kwargs)
        self._wake = asyncio.Event()
        self._backend = backend
        self._start: AsyncScript | None = None

    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        waker = asyncio.create_task(self._listen_inbound(), name="inbound-waker")
        try:
            while True:
                self._wake.clear()
                try:
                    await self._poll_iteration()
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    # Redis restarting or unreachable: keep the process, retry on the next tick.
                    log.warning("worker: Redis unavailable (%s); retrying", exc)
                    await asyncio.sleep(min(self.poll_delay_s, 1.0))
                    continue
                if self.burst and not await self.pool.zcard(self.queue_name):
                    await asyncio.gather(*self.tasks.values())
                    return
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # SIGTERM's cancel landed inside the poll and a library swallowed it (seen
                    # when it arrives just after start-up): stop anyway, or the worker never exits.
                    raise asyncio.CancelledError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_delay_s)
        finally:
            waker.cancel()

    async def finish_job(self, job_id: str, *args: Any) -> None:
        superseded: set[str] = self.ctx["superseded"]
        if job_id in superseded:
            superseded.discard(job_id)
            return  # a newer attempt of this message runs this job now: its keys are not ours
        await super().finish_job(job_id, *args)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()  # a slot freed: look at the queue again now

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs in one round trip (START_JOBS in shared/scripts.py): same keys, same
        rules, same accounting, but a thousand queued or running jobs cost one script call per
        poll, not four sequential commands each."""
        free = self.max_jobs - self.job_counter
        candidates = [j.decode() for j in job_ids]
        candidates = [j for j in candidates if j not in self.tasks]
        if free <= 0 or not candidates:
            return
        if self._start is None:
            self._start = self.pool.register_script(scripts.START_JOBS)
        taken = await self._start(keys=[keys.QUEUE, *(keys.ARQ_IN_PROGRESS + j for j in candidates)],
                                  args=[now_ms(), int(self.in_progress_timeout_s * 1000), free, *candidates])
        for i in range(0, len(taken), 2):
            job_id, score = taken[i].decode(), int(float(taken[i + 1]))
            await self.sem.acquire()
            self.job_counter += 1
            t = self.loop.create_task(self.run_job(job_id, score))
            t.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = t

    async def _listen_inbound(self) -> None:
        # A dedicated connection: XREAD BLOCK would hold a pooled one hostage. The inbound
        # stream lives with arq's queue (the queue Redis on a cluster).
        client = self._backend.queue_client(max_connections=1)
        last = "$"
        try:
            while True:
                try:
                    rows = await client.xread({keys.INBOUND: last}, block=int(self.poll_delay_s * 1000) or 1000,
                                              count=100)
                except Exception:
                    await asyncio.sleep(0.5)
                    continue
                if rows:
                    last = rows[0][1][-1][0]
                    self._wake.set()
        finally:
            await client.aclose()


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    if settings.anthropic_api_key:
        # Import the provider before taking jobs: imported by the first Claude message, its
        # seconds of import block the event loop and starve every running message's lease.
        import worker.models.anthropic  # noqa: F401, PLC0415
    backend: backends.Backend = ctx["backend"]
    redis = backend.client(max_connections=20)
    await backend.check(redis)
    # arq's keys: the data Redis, or on a cluster the queue Redis (the worker's own arq pool)
    queue = redis if backend.queue_shared else ctx["redis"]
    arq = ArqRedis(connection_pool=queue.connection_pool, job_serializer=_encode_job,
                   job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE)
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id('w', 6)}"

    async def hand_over(ses_id: str, msg_id: str) -> None:
        await jobs.enqueue(arq, settings, ses_id, msg_id)

    # Dedicated connections for the hot paths: appends (group commit) and lease renewals; on a
    # cluster one per primary, routed by slot (worker/routing.py).
    append_script = scripts.APPEND_SHARDED if backend.sharded else scripts.APPEND
    append_conn = hot_connection(backend, redis, "agentstream-append", (append_script,))
    lease_conn = hot_connection(backend, redis, "agentstream-leases", (scripts.RENEW,))
    leases = Leases(lease_conn, settings.lease_s)
    deps = Deps(settings=settings, redis=redis, arq=arq, messages=MessageStore(redis, settings, queue=arq),
                sessions=SessionStore(redis, settings), tools=tool_registry(), worker_id=worker_id,
                appender=Appender(append_conn, settings, hand_over, max_batch=settings.append_batch_max,
                                  script=append_script),
                leases=leases)
    ctx["deps"] = deps
    ctx["conns"] = [append_conn, lease_conn]
    ctx["background"] = [asyncio.create_task(_heartbeat(deps), name="heartbeat"),
                         asyncio.create_task(_reap(deps), name="reaper"),
                         asyncio.create_task(_compact(deps), name="compactor"),
                         asyncio.create_task(leases.run(), name="leases")]
    log.info("worker %s ready", worker_id)


async def _shutdown(ctx: dict[str, Any]) -> None:
    for t in ctx.get("background", []):
        t.cancel()
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        for model in deps.models.values():
            close = getattr(model, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        with contextlib.suppress(Exception):
            await deps.redis.zrem(keys.WORKERS, deps.worker_id)
        await deps.redis.aclose()
    for conn in ctx.get("conns", []):
        await conn.aclose()


async def _heartbeat(deps: Deps) -> None:
    while True:
        with contextlib.suppress(Exception):
            now = now_ms()
            await deps.redis.zadd(keys.WORKERS, {deps.worker_id: now})
            await deps.redis.zremrangebyscore(keys.WORKERS, "-inf", now - 60_000)
        await asyncio.sleep(HEARTBEAT_S)


async def _reap(deps: Deps) -> None:
    while True:
        try:
            await reaper.reap_once(deps)
        except Exception:
            log.warning("reaper pass failed", exc_info=True)
        await asyncio.sleep(deps.settings.reaper_interval_s)


async def _compact(deps: Deps) -> None:
    while True:
        try:
            await compactor.compact_due(deps)
        except Exception:
            log.warning("compaction pass failed", exc_info=True)
        await asyncio.sleep(deps.settings.reaper_interval_s)


def build(settings: Settings, redis_url: str | None = None, burst: bool = False) -> Worker:
    backend = backends.from_settings(settings, redis_url)
    pool = backend.queue_client(max_connections=10)
    arq_pool = ArqRedis(connection_pool=pool.connection_pool, job_serializer=_encode_job,
                        job_deserializer=msgspec.json.decode, default_queue_name=keys.QUEUE)
    return Worker(
        functions=[func(observe.job(run_message), name=keys.JOB_FUNCTION,  # type: ignore[arg-type]
                        max_tries=HANDOVER_ROOM * settings.max_tries + 1)],
        queue_name=keys.QUEUE,
        redis_pool=arq_pool,
        on_startup=observe.on_startup(_startup),
        on_shutdown=observe.on_shutdown(_shutdown),
        ctx={"settings": settings, "backend": backend, "superseded": set()},
        job_timeout=settings.job_timeout_s,
        max_jobs=settings.max_jobs,
        keep_result=0,
        job_serializer=_encode_job,
        job_deserializer=msgspec.json.decode,
        job_completion_wait=settings.worker_drain_s,
        fallback_poll_s=settings.fallback_poll_s,
        backend=backend,
        burst=burst,
        health_check_interval=60,
    )


def run(settings: Settings, redis_url: str | None = None) -> None:
    logs.configure(settings.log_level, settings.log_format)
    tracing.setup(settings.otel_endpoint, "agentstream-worker")
    # arq's Worker takes the current event loop when built: make it uvloop's.
    asyncio.set_event_loop(uvloop.new_event_loop())
    try:
        build(settings, redis_url).run()
    finally:
        tracing.shutdown()
