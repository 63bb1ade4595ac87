"""The reaper: every message that is not over is watched until it is.

arq calls none of our code when it gives up on a job (max tries, expiry, a job that cannot be
deserialised), and a SIGKILLed job would wait for arq's in-progress key to expire (minutes).
So each worker also runs this loop over the ``active`` index:

* queued, and no arq job exists (the gateway died between accepting, or answering a
  confirmation, and enqueueing): enqueue it; queued, and arq started the job but no worker
  claimed it within the grace (the worker died in between): restart it (one atomic script);
* running, and its lease expired (the worker died or stalled): if crash tries are left (a
  continuation after a confirmation, or a graceful hand-over, spends none), clear arq's
  in-progress key so the job starts again now (the new attempt fences the old one); otherwise,
  or if arq dropped the job, end the message with ``error`` (``max_tries_exceeded``, ``job_lost``);
* older than the message deadline: ``error`` ``deadline_exceeded``.

Several reapers may look at the same message; every action is idempotent or fenced.
"""

from __future__ import annotations

import logging

from shared import keys, metrics, scripts
from shared.errors import Fenced
from shared.events import Error
from shared.ids import now_ms
from shared.stores import jobs
from worker import compactor
from worker.deps import Deps

log = logging.getLogger("agentstream.reaper")
QUEUED_GRACE_MS = 5_000
CONFIRM_GRACE_MS = 2_000  # answers at the last moment still get to run
BATCH = 200


async def end_with_error(deps: Deps, ses_id: str, msg_id: str, code: str, message: str) -> bool:
    try:
        await deps.messages.append(ses_id, msg_id, "*", [Error(message=message, recoverable=code != "job_lost",
                                                               code=code, message_id=msg_id)],
                                   status="failed")
    except Fenced:
        return False
    log.warning("message %s ended by the reaper: %s", msg_id, code)
    metrics.REAPER_ACTIONS.labels(metrics.bounded("kind", code)).inc()
    return True


async def _restart_unclaimed(deps: Deps, ses_id: str, msg_id: str, job_id: str, now: int) -> bool:
    """Clear arq's in-progress key of a job no worker claimed, in one step with the check that
    the message is still unclaimed: a claim that lands meanwhile keeps its key.

    On a cluster arq's keys live on the queue Redis, so no script can hold both: the check runs
    on the record's slot (UNCLAIMED_PAST_GRACE), then the key is deleted on the queue Redis. A
    claim landing in between loses its in-progress key; at worst arq starts the job once more,
    and that start's CLAIM bumps the attempt, which fences the late claimer's next append or
    renewal: a visible retry (``reset``), never two writers. The one-step form only saved that
    wasted start."""
    record, in_progress = keys.message(ses_id, msg_id), keys.ARQ_IN_PROGRESS + job_id
    if deps.queue_shared:
        restart = deps.redis.register_script(scripts.RESTART_UNCLAIMED)
        return bool(await restart(keys=[record, in_progress], args=[now, QUEUED_GRACE_MS]))
    check = deps.redis.register_script(scripts.UNCLAIMED_PAST_GRACE)
    if not await check(keys=[record], args=[now, QUEUED_GRACE_MS]):
        return False
    return bool(await deps.arq.delete(in_progress))


async def reap_once(deps: Deps) -> int:
    """One pass; returns how many messages it acted on."""
    s = deps.settings
    now = now_ms()
    due = await deps.redis.zrangebyscore(keys.ACTIVE, "-inf", now, start=0, num=BATCH)
    acted = 0
    interval_ms = int(s.reaper_interval_s * 1000)
    for member in due:
        ses_id, _, msg_id = member.decode().partition("/")
        record = await deps.messages.record(ses_id, msg_id)
        if record is None or record.ended:
            if record is not None and not record.compacted and (s.compact_after_s or s.archive_dir):
                # Scheduled before it leaves the index, so a crash in between only repeats this.
                due_ms = compactor.schedule_due_ms(record.finished_at_ms or now, s.compact_after_s)
                await deps.redis.zadd(keys.COMPACT, {member: due_ms}, nx=True)
            await deps.redis.zrem(keys.ACTIVE, member)
            continue
        if now - record.created_at_ms > s.message_deadline_s * 1000:
            acted += await end_with_error(deps, ses_id, msg_id, "deadline_exceeded",
                                          f"The message did not finish within {s.message_deadline_s}s")
            await deps.redis.zrem(keys.ACTIVE, member)
            continue
        if deps.queue_shared:
            async with deps.redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.ARQ_JOB + record.job_id)
                pipe.exists(keys.ARQ_IN_PROGRESS + record.job_id)
                pipe.hget(keys.session(ses_id), "turn")
                job_exists, in_progress, turn = await pipe.execute()
        else:  # arq's keys on the queue Redis (Cluster)
            async with deps.arq.pipeline(transaction=False) as pipe:
                pipe.exists(keys.ARQ_JOB + record.job_id)
                pipe.exists(keys.ARQ_IN_PROGRESS + record.job_id)
                job_exists, in_progress = await pipe.execute()
            turn = await deps.redis.hget(keys.session(ses_id), "turn")
        next_check = now + interval_ms
        # Since when it may run: its acceptance, its answered confirmation, or the moment it was
        # handed its session's turn.
        queued_for = now - max(record.created_at_ms, record.queued_at_ms, record.turn_ms)
        if record.status == "queued" and turn is not None and turn.decode() != msg_id:
            next_check = now + QUEUED_GRACE_MS  # waiting for its session's turn; the holder is watched
        elif record.status == "queued":
            if in_progress and queued_for > QUEUED_GRACE_MS and await _restart_unclaimed(deps, ses_id, msg_id,
                                                                                          record.job_id, now):
                # arq marked the job started but our claim never came: the worker died in
                # between. Without this, the message would wait for arq's in-progress key to
                # expire (job timeout + 10 s). A live but late claimer is fenced by the attempt.
                await jobs.wake(deps.arq, s, ses_id, msg_id)
                log.info("message %s: started by a worker that never claimed it; restarting", msg_id)
                metrics.REAPER_ACTIONS.labels("restarted_unclaimed").inc()
                acted += 1
            elif not job_exists and not in_progress and queued_for > QUEUED_GRACE_MS:
                await jobs.enqueue(deps.arq, s, ses_id, msg_id, record.job_id)
                log.info("message %s had no job; enqueued", msg_id)
                metrics.REAPER_ACTIONS.labels("enqueued_missing_job").inc()
                acted += 1
            next_check = now + QUEUED_GRACE_MS
        elif record.status == "running" and record.lease_until_ms < now:
            if record.attempt - record.handed >= s.max_tries:  # hand-overs and continuations are free
                acted += await end_with_error(deps, ses_id, msg_id, "max_tries_exceeded",
                                              f"The message failed {record.attempt} attempts")
            elif not job_exists:
                acted += await end_with_error(deps, ses_id, msg_id, "job_lost",
                                              "The message's job was dropped by the queue")
            else:
                await deps.arq.delete(keys.ARQ_IN_PROGRESS + record.job_id)
                await jobs.wake(deps.arq, s, ses_id, msg_id)
                log.info("message %s: lease of attempt %d expired; restarting", msg_id, record.attempt)
                metrics.REAPER_ACTIONS.labels("restarted_expired_lease").inc()
                acted += 1
            next_check = now + int(s.lease_s * 1000)
        elif record.status == "running":
            next_check = max(record.lease_until_ms, now) + interval_ms
        elif record.status == "awaiting_confirmation":
            if record.confirm_expires_ms and now > record.confirm_expires_ms + CONFIRM_GRACE_MS:
                acted += await end_with_error(deps, ses_id, msg_id, "confirmation_expired",
                                              "Nobody answered the confirmation within 5 minutes")
            next_check = max(record.confirm_expires_ms + CONFIRM_GRACE_MS, now + interval_ms)
        else:
            next_check = now + interval_ms
        await deps.redis.zadd(keys.ACTIVE, {member: next_check}, xx=True)
    return acted
