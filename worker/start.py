"""What a job reads before it runs, in one round trip on the session's slot.

A message's run needs its record, the events an earlier attempt recorded, the session (agent
config, model, memory switch), the newest chunk of the session log (the history window) and
the session's remembered exchanges. Read one after another they were four or five redis-py
round trips per message, each a pool checkout, a send and a wait (issue 16); pipelined they
are one. Every key carries the session's hash tag, so on Redis Cluster they share a slot; arq's
keys (which may live on a queue Redis of their own) are never among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.stores.messages import Record
from shared.stores.sessions import HISTORY_CHUNK


@dataclass(frozen=True)
class Start:
    record: Record | None
    rows: list[tuple[str, str, bytes]]  # (id, type, payload) the stream holds already (a retry's)
    session: dict[bytes, bytes]
    log_head: list[Any]  # the session log's newest HISTORY_CHUNK entries, newest first
    memory: list[bytes]  # the session's remembered exchanges, raw (read whether enabled or not: one round trip either way)


async def read(redis: aioredis.Redis, ses_id: str, msg_id: str) -> Start:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.message(ses_id, msg_id))
        pipe.xrange(keys.events(ses_id, msg_id))
        pipe.hgetall(keys.session(ses_id))
        pipe.xrevrange(keys.session_log(ses_id), count=HISTORY_CHUNK)
        pipe.lrange(keys.session_memory(ses_id), 0, -1)
        record, events, session, log_head, memory = await pipe.execute()
    return Start(record=Record.from_hash(record) if record else None,
                 rows=[(i.decode(), f[b"t"].decode(), f[b"d"]) for i, f in events],
                 session=session, log_head=log_head, memory=memory)
