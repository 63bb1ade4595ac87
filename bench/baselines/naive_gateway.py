"""The naive baseline: the project's own gateway, with the hub's live path replaced by one
blocking ``XREAD`` per open stream.

Everything else is the project's code (routes, auth, resume plan, SSE framing in
``gateway.streaming.sse_body``, uvicorn with uvloop + httptools), so a difference in the figures
is the difference between the two live paths. Each SSE client loops ``XREAD BLOCK`` on its own
message stream through redis-py's default async pool, which therefore holds one connection per
open stream (redis-py 5's default pool is unbounded).

Run: ``python -m bench.baselines.naive_gateway`` with the gateway's ``AGENTSTREAM_*`` settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from gateway import main as gateway_main
from gateway.resume import Plan, plan
from gateway.routes import messages as message_routes
from gateway.streaming import _ENDS, Entry
from shared import connect, keys
from shared import cursor as cur
from shared.errors import NotFound
from shared.settings import Settings
from shared.stores.messages import MessageStore


def naive_open_reader(readers: aioredis.Redis) -> Any:
    async def open_reader(store: MessageStore, hub: Any, settings: Settings, ses_id: str, msg_id: str,
                          after: tuple[int, int] | None) -> AsyncIterator[list[Entry] | None]:
        record = await store.record(ses_id, msg_id)
        if record is None:
            raise NotFound("Message not found", code="message_not_found", details={"message_id": msg_id})
        info = await store.stream_info(ses_id, msg_id)
        return _read(readers, settings, ses_id, msg_id, plan(after, record, info))

    return open_reader


async def _read(readers: aioredis.Redis, settings: Settings, ses_id: str, msg_id: str,
                p: Plan) -> AsyncIterator[list[Entry] | None]:
    if p.reset is not None:
        from shared.events import encode_payload

        yield [(p.reset.replay_from.encode(), b"reset", encode_payload(p.reset))]
    if p.from_record is not None:
        if p.from_record:
            yield list(p.from_record)
        return
    key = keys.events(ses_id, msg_id)
    last = cur.fmt(p.start)
    block_ms = int(settings.heartbeat_s * 1000)
    while True:
        rows = await readers.xread({key: last}, count=settings.catchup_batch, block=block_ms)
        if not rows:
            yield None  # heartbeat
            continue
        out: list[Entry] = []
        for eid, fields in rows[0][1]:
            t = fields[b"t"]
            out.append((eid, t, fields[b"d"]))
            last = eid.decode()
            if t in _ENDS:
                yield out
                return
        yield out


def naive_reader_for_new(readers: aioredis.Redis) -> Any:
    """For a send path that subscribes to the live channel before it accepts the message
    (``reader_for_new``): drop that subscription and XREAD the new stream from its start."""

    def reader_for_new(store: MessageStore, sub: Any, settings: Settings, ses_id: str,
                       msg_id: str) -> AsyncIterator[list[Entry] | None]:
        sub.unsubscribe()
        return _read(readers, settings, ses_id, msg_id, Plan(cur.START))

    return reader_for_new


def run(settings: Settings) -> None:
    url = connect.resolve_url(settings.redis_url, settings.data_dir)
    readers = aioredis.Redis.from_url(url)  # the default pool: a connection per blocked XREAD
    # Every way the message routes open a reader, or the naive worker's events (plain XADD, no
    # publish) would never reach a hub reader: the bench's lost-event count shows a miss here.
    message_routes.open_reader = naive_open_reader(readers)  # type: ignore[assignment]
    if hasattr(message_routes, "reader_for_new"):
        message_routes.reader_for_new = naive_reader_for_new(readers)
    gateway_main.run(settings, url)


if __name__ == "__main__":
    run(Settings.from_env())
