"""Compaction (and archiving) of finished messages once their window has passed.

The reaper schedules every message it sees ended in ``keys.COMPACT`` (due = finished + the
window); each worker runs this loop over the due ones. At-least-once and idempotent: an entry
leaves the schedule only after its message is compacted, so a worker killed at any point leaves
it to the next pass, which archives it again (the same file with the same lines) and compacts it
(the script refuses a second compaction and any stream that changed since it was read). The
schedule is bounded by retention: a message whose record expired is dropped from it.
"""

from __future__ import annotations

import asyncio
import logging

from shared import keys
from shared.ids import now_ms
from shared.stores import archive, compaction
from worker.deps import Deps

log = logging.getLogger("agentstream.compactor")
BATCH = 100
# While one worker handles an entry it is pushed this far into the future, out of the others'
# way; if that worker dies, the entry comes due again then.
CLAIM_MS = 60_000


async def compact_one(deps: Deps, ses_id: str, msg_id: str) -> str:
    s = deps.settings
    record = await deps.messages.record(ses_id, msg_id)
    if record is None:
        return "missing"
    if record.compacted:
        return "compacted"
    if not record.ended:
        return "running"
    rows = await compaction.read_all(deps.redis, ses_id, msg_id)
    if s.archive_dir and rows:
        path = await asyncio.to_thread(archive.write, s.archive_dir, record.namespace_id, ses_id, msg_id,
                                       record.finished_at_ms or now_ms(), rows)
        log.debug("message %s archived to %s", msg_id, path)
    if s.compact_after_s == 0:
        return "archived"
    return await compaction.compact(deps.redis, ses_id, msg_id, rows)


async def compact_due(deps: Deps) -> int:
    """One pass; returns how many messages left the schedule."""
    now = now_ms()
    due = await deps.redis.zrangebyscore(keys.COMPACT, "-inf", now, start=0, num=BATCH)
    if not due:
        return 0
    await deps.redis.zadd(keys.COMPACT, dict.fromkeys(due, now + CLAIM_MS), xx=True)
    finished = 0
    for member in due:
        ses_id, _, msg_id = member.decode().partition("/")
        try:
            verdict = await compact_one(deps, ses_id, msg_id)
        except Exception:
            log.warning("compaction of %s failed; it stays scheduled", msg_id, exc_info=True)
            continue
        if verdict == "changed":  # read again on the next pass
            await deps.redis.zadd(keys.COMPACT, {member: now}, xx=True)
            continue
        await deps.redis.zrem(keys.COMPACT, member)
        finished += 1
    return finished


def schedule_due_ms(finished_at_ms: int, compact_after_s: int) -> int:
    return finished_at_ms + compact_after_s * 1000
