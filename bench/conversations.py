"""The conversations load process of the end-to-end scenario: ``python -m bench.conversations SPEC.json``.

C conversations, each on its own session and its own keep-alive connection: send a message
(``POST .../messages``, SSE), read its events to the end of the response, send the next, until
``duration_s``. Conversations start spread over ``ramp_s``; events, messages and token gaps
count only between ``warmup_s`` and ``duration_s`` (the measured window, where CPU is read).
After the window no message starts; those in flight get ``drain_s`` to end. TTFE and time to
first token count every message of the run, the first ones too (a server that queues shows it
there first); a message that got no event by the end of the drain counts with the time it
waited so far (a lower bound) and as unfinished.

Per message it notes the time to the first event (TTFE) and to the first token, the gaps between
consecutive tokens minus the pacing (``token_ms``), the distinct events (by ``id``, duplicates
counted apart), terminal events (``done``/``error``) and resets. Lines on stdout:

* ``ready`` after ``warm`` messages, one after another (their token counts included);
* ``measuring`` at ``warmup_s`` and ``window`` at ``duration_s`` (the orchestrator reads CPU
  between the two), with the events and messages delivered so far;
* with ``tick_s`` (the soak), a ``tick`` every ``tick_s`` inside the window: events and
  messages so far, TTFE and per-message time of the messages since the previous tick, and
  messages sent per conversation so far (how long the sessions have grown);
* ``done`` with the summaries and, per finished message, (message id, session, events).

Cheap on purpose (it shares two cores with what it measures): uvloop, and one raw asyncio
protocol per connection (``bench.exchange``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop

from bench.exchange import Exchange, Stats, request
from bench.procs import raise_nofile
from bench.stats import summary


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.stats = Stats(spec.get("token_ms", 0))
        body = json.dumps({"content": spec.get("content", "hello, how are you?")}).encode()
        host, port = spec["host"], spec["port"]
        self.sessions: list[str] = spec["sessions"]
        self.requests = [request(host, port, spec["path"].format(session=s), spec["headers"], body)
                         for s in spec["sessions"]]
        self.stop_at = float("inf")
        self.in_flight: set[Exchange] = set()
        self.sent = 0  # messages sent, every conversation together

    async def _connect(self) -> Exchange:
        loop = asyncio.get_running_loop()
        ex = Exchange(self.stats)
        await loop.create_connection(lambda: ex, self.spec["host"], self.spec["port"])
        return ex

    async def one(self, ex: Exchange | None, i: int, timeout_s: float) -> Exchange | None:
        """One message on conversation i; the connection to use next (None: open a new one)."""
        try:
            if ex is None or ex.closed:
                ex = await self._connect()
            self.in_flight.add(ex)
            self.sent += 1
            try:
                await asyncio.wait_for(ex.send(self.requests[i], self.sessions[i]), timeout_s)
            finally:
                self.in_flight.discard(ex)
        except (OSError, TimeoutError) as exc:
            self.stats.error(type(exc).__name__)
            if ex is not None and ex.transport is not None:
                ex.transport.close()
            await asyncio.sleep(0.05)
            return None
        return None if ex.closed else ex

    async def conversation(self, i: int, start_s: float, timeout_s: float) -> None:
        await asyncio.sleep(start_s)
        ex: Exchange | None = None
        while time.monotonic() < self.stop_at:
            ex = await self.one(ex, i, timeout_s)
        if ex is not None and ex.transport is not None:
            ex.transport.close()

    async def warm(self, n: int) -> list[int]:
        for i in range(min(n, len(self.requests))):
            ex = await self.one(None, i, 60)
            if ex is not None and ex.transport is not None:
                ex.transport.close()
        tokens = list(self.stats.tokens)
        self.stats = Stats(self.spec.get("token_ms", 0))  # the warm-up counts for nothing
        return tokens

    async def ticks(self, tick_s: float, c: int) -> None:
        st = self.stats
        n_ttfe, n_msg, k = len(st.ttfe_ms), len(st.message_ms), 1
        while st.t_from + k * tick_s <= st.t_to + 1e-6:
            await asyncio.sleep(max(0.0, st.t_from + k * tick_s - time.monotonic()))
            emit({"event": "tick", "t_s": time.monotonic() - st.t_from, "events": st.events,
                  "finished": st.finished, "ttfe_ms": summary(st.ttfe_ms[n_ttfe:]),
                  "message_ms": summary(st.message_ms[n_msg:]), "messages_per_session": self.sent / c})
            n_ttfe, n_msg, k = len(st.ttfe_ms), len(st.message_ms), k + 1

    async def run(self) -> dict[str, Any]:
        spec, st = self.spec, self.stats
        c = len(self.requests)
        t0 = time.monotonic()
        st.t_from, st.t_to = t0 + spec["warmup_s"], t0 + spec["duration_s"]
        self.stop_at = st.t_to
        drain_s = spec["drain_s"]
        tasks = [asyncio.create_task(self.conversation(i, spec["ramp_s"] * i / c, spec["duration_s"] + drain_s))
                 for i in range(c)]
        await asyncio.sleep(max(0.0, st.t_from - time.monotonic()))
        emit({"event": "measuring", "events": st.events, "finished": st.finished})
        if spec.get("tick_s"):
            await self.ticks(spec["tick_s"], c)
        await asyncio.sleep(max(0.0, st.t_to - time.monotonic()))
        window = {"event": "window", "events": st.events, "finished": st.finished,
                  "seconds": st.t_to - st.t_from, "in_flight": len(self.in_flight)}
        emit(window)
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        unfinished = len(self.in_flight)
        now = time.monotonic()
        st.ttfe_ms += [(now - ex.t_sent) * 1000 for ex in self.in_flight if not ex.first]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return {
            "event": "done", "conversations": c, "window": window, "unfinished": unfinished,
            "drain_s": time.monotonic() - st.t_to,
            "ttfe_ms": summary(st.ttfe_ms), "ttft_ms": summary(st.ttft_ms), "gap_ms": summary(st.gap_ms),
            "dups": st.dups, "resets": st.resets, "bad_terminal": st.bad_terminal, "errors": st.errors,
            "ended": len(st.messages), "tokens": summary(st.tokens), "messages": st.messages,
        }


async def main(spec: dict[str, Any]) -> None:
    load = Load(spec)
    tokens = await load.warm(spec.get("warm", 0))
    emit({"event": "ready", "warm_tokens": tokens})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if json.loads(line)["cmd"] == "run":
            emit(await load.run())
            break


if __name__ == "__main__":
    raise_nofile()
    with open(sys.argv[1]) as f:
        uvloop.run(main(json.load(f)))
