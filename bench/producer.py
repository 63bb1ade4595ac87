"""The producer process: appends token events to many message streams the way the worker does.

Each stream is claimed once (``MessageStore.claim``, so the fenced APPEND script accepts the
attempt), then every event is one call of the worker's APPEND Lua script (XADD + PUBLISH in one
step) for ONE event on ONE stream, with exactly the keys and arguments ``MessageStore.append_raw``
builds: they are captured from it once per stream, not rebuilt here. What differs from a worker
is only the client side: one raw RESP connection that pipelines the calls due in each 1 ms tick
(many workers' worth of appends), so the producer costs a few µs per event instead of redis-py's
~50 and stays out of the gateway's way on a 2-core machine.

Payloads are token events with two extra fields the client reads: ``seq`` (per stream, from 1)
and ``ts`` (CLOCK_MONOTONIC µs, taken just before the batch is written).

Commands on stdin: ``{"cmd": "run", "rate": R, "duration_s": D}`` answers ``started`` and then
``done`` with the per-stream counts so far; EOF ends the process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis
import uvloop

from bench.pacing import paced
from bench.stats import summary
from shared import connect, scripts
from shared.settings import Settings
from shared.stores.messages import MessageStore

_MARK = b"\x00payload\x00"


def _bulk(v: Any) -> bytes:
    b = v if isinstance(v, bytes) else (repr(v) if isinstance(v, float) else str(v)).encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


class _Replies(asyncio.Protocol):
    """Counts replies, and times each batch's round trip (written to last reply read): how long
    Redis itself, and the scheduling of this process, held the appends."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.acked = 0
        self.errors = 0
        self.first_error = ""
        self.transport: asyncio.Transport | None = None
        self.batches: deque[tuple[int, int]] = deque()  # (written at µs, reply count that ends it)
        self.rtt_us: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.acked += 1
            if isinstance(reply, hiredis.ReplyError):
                self.errors += 1
                self.first_error = self.first_error or str(reply)
        if self.batches and self.batches[0][1] <= self.acked:
            now = time.monotonic_ns() // 1000
            while self.batches and self.batches[0][1] <= self.acked:
                self.rtt_us.append(now - self.batches.popleft()[0])


async def _capture_args(store: MessageStore, ses_id: str, msg_id: str, attempt: int) -> tuple[list[Any], list[Any]]:
    """The keys and args append_raw sends for one token event (the payload left as a mark)."""
    seen: dict[str, Any] = {}

    async def record(keys: list[Any], args: list[Any]) -> list[bytes]:
        seen.update(keys=keys, args=args)
        return []

    real = store._append
    store._append = record  # type: ignore[assignment]
    try:
        await store.append_raw(ses_id, msg_id, attempt, [("token", _MARK)])
    finally:
        store._append = real
    if seen["args"][-1] is not _MARK:
        raise RuntimeError("append_raw no longer ends its args with the payload; update bench.producer")
    return seen["keys"], seen["args"]


async def main(spec: dict[str, Any]) -> None:
    settings = Settings.from_env()
    url = settings.redis_url or ""
    redis = connect.client(url)
    store = MessageStore(redis, settings)
    sha = (await redis.script_load(scripts.APPEND))
    sha_b = sha.encode() if isinstance(sha, str) else sha
    streams = [tuple(s) for s in spec["streams"]]
    sem = asyncio.Semaphore(32)

    async def prepare(ses_id: str, msg_id: str) -> bytes:
        async with sem:
            attempt, status = await store.claim(ses_id, msg_id, "bench-producer")
            if attempt == 0:
                raise RuntimeError(f"cannot claim {msg_id}: {status}")
            keys, args = await _capture_args(store, ses_id, msg_id, attempt)
        parts = [b"EVALSHA", sha_b, str(len(keys)).encode(), *keys, *args[:-1]]
        return b"*%d\r\n" % (len(parts) + 1) + b"".join(_bulk(p) for p in parts)

    prefixes = await asyncio.gather(*(prepare(s, m) for s, m in streams))
    await redis.aclose()

    u = urlparse(url)
    loop = asyncio.get_running_loop()
    replies = _Replies()
    if u.scheme == "unix":
        await loop.create_unix_connection(lambda: replies, unquote(u.path))
    else:
        await loop.create_connection(lambda: replies, u.hostname or "127.0.0.1", u.port or 6379)
    assert replies.transport is not None
    transport = replies.transport
    n_streams = len(prefixes)
    seqs = [0] * n_streams
    rr = 0
    written = 0

    def emit_batch(n: int) -> None:
        nonlocal rr, written
        ts = time.monotonic_ns() // 1000
        out = []
        for _ in range(n):
            i = rr
            rr = i + 1 if i + 1 < n_streams else 0
            seq = seqs[i] = seqs[i] + 1
            payload = b'{"content":"tok","seq":%d,"ts":%d}' % (seq, ts)
            out.append(prefixes[i])
            out.append(b"$%d\r\n%s\r\n" % (len(payload), payload))
        transport.write(b"".join(out))
        written += n
        replies.batches.append((ts, written))

    say({"event": "prepared", "streams": n_streams})
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    sent_total = 0
    while line := await stdin.readline():
        cmd = json.loads(line)
        if cmd["cmd"] != "run":
            continue
        say({"event": "started"})
        replies.rtt_us.clear()
        sent, elapsed = await paced(cmd["rate"], cmd["duration_s"], emit_batch)
        sent_total += sent
        t_end = time.monotonic()
        while replies.acked < sent_total and time.monotonic() - t_end < 30:  # noqa: ASYNC110 (cheap poll)
            await asyncio.sleep(0.001)
        say({"event": "done", "sent": sent, "elapsed_s": elapsed, "achieved": sent / elapsed,
             "ack_lag_s": time.monotonic() - t_end, "acked": replies.acked, "errors": replies.errors,
             "first_error": replies.first_error, "per_stream": seqs, "append_rtt_us": summary(replies.rtt_us)})
    transport.close()


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        uvloop.run(main(json.load(f)))
