"""Putting a message on the queue: the arq job (id = message id) and the wake-up entry that idle
workers block on, in one script (one round trip). Used by the gateway (accept), by whoever hands
a session's turn on, and by the reaper (reconcile). Both live where arq's queue lives (the
inbound stream goes with the queue so that this stays one script on a cluster too)."""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis

from shared import keys, scripts
from shared.ids import now_ms
from shared.settings import Settings


def job_payload(ses_id: str, msg_id: str, enqueued_ms: int) -> bytes:
    """Exactly what arq's ``serialize_job`` writes with our JSON serializer."""
    return msgspec.json.encode({"t": None, "f": keys.JOB_FUNCTION, "a": [ses_id, msg_id], "k": {},
                                "et": enqueued_ms})


def enqueue_args(settings: Settings, ses_id: str, msg_id: str, job_id: str | None = None) -> tuple[list[str], list[Any]]:
    job_id = job_id or msg_id
    now = now_ms()
    return ([keys.ARQ_JOB + job_id, keys.ARQ_RESULT + job_id, keys.QUEUE, keys.INBOUND],
            [job_id, job_payload(ses_id, msg_id, now), settings.message_deadline_s * 1000, now,
             settings.inbound_maxlen, ses_id, msg_id])


async def enqueue(queue: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str,
                  job_id: str | None = None) -> bool:
    """Enqueue the job (unless it exists) and wake the workers. ``queue`` holds arq's keys and
    the inbound stream: the data Redis on standalone and Sentinel, the queue Redis
    (``AGENTSTREAM_QUEUE_URL``) on a cluster. True if the job was created."""
    k, a = enqueue_args(settings, ses_id, msg_id, job_id)
    return bool(await queue.register_script(scripts.ENQUEUE)(keys=k, args=a))


async def wake(queue: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str) -> None:
    await queue.xadd(keys.INBOUND, {"s": ses_id, "m": msg_id}, maxlen=settings.inbound_maxlen, approximate=True)
