"""Putting a message on the queue: the arq job (id = message id), then the wake-up entry that
idle workers block on. Used by the gateway (accept) and the reaper (reconcile)."""

from __future__ import annotations

import redis.asyncio as aioredis
from arq.connections import ArqRedis

from shared import keys
from shared.settings import Settings


async def enqueue(arq: ArqRedis, redis: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str,
                  job_id: str | None = None) -> None:
    await arq.enqueue_job(keys.JOB_FUNCTION, ses_id, msg_id, _job_id=job_id or msg_id, _queue_name=keys.QUEUE,
                          _expires=settings.message_deadline_s)
    await wake(redis, settings, ses_id, msg_id)


async def wake(redis: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str) -> None:
    await redis.xadd(keys.INBOUND, {"s": ses_id, "m": msg_id}, maxlen=settings.inbound_maxlen, approximate=True)
