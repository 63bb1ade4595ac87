"""Lease renewal for every message a worker runs, on its own schedule (issue 16).

One loop per worker renews all of its leases every ``lease_s / 3`` in one pipelined round trip
on a connection of its own, so neither event traffic nor a thousand in-flight messages can
starve it (one task and one redis-py call per message per period did, under load). A lease that
cannot be renewed because this attempt was superseded or the message ended (cancel, interrupt,
takeover) stops the message's task at once, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import hiredis

from shared import keys, metrics, scripts
from shared.ids import now_ms
from worker.resp import Reply, Sender, command

log = logging.getLogger("agentstream.worker")


@dataclass(eq=False)
class Held:
    ses_id: str
    msg_id: str
    attempt: int
    task: asyncio.Task[Any]
    fenced: asyncio.Event = field(default_factory=asyncio.Event)


class Leases:
    def __init__(self, conn: Sender, lease_s: float) -> None:
        self.conn = conn
        self.lease_s = lease_s
        self.held: set[Held] = set()
        self.rounds = 0  # renewal round trips so far (tests read it)
        self.lapsed = 0  # leases found superseded or ended
        self._sha = hashlib.sha1(scripts.RENEW.encode()).hexdigest()

    def hold(self, ses_id: str, msg_id: str, attempt: int, task: asyncio.Task[Any]) -> Held:
        h = Held(ses_id, msg_id, attempt, task)
        self.held.add(h)
        return h

    def drop(self, h: Held) -> None:
        self.held.discard(h)

    async def run(self) -> None:
        clock = metrics.LeaseClock(self.lease_s)  # counts rounds that came later than a lease
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew_all()
            except Exception:  # Redis away: leases may lapse; the append fencing keeps us honest
                log.warning("lease renewal round failed", exc_info=True)
                continue
            clock.renewed()

    async def renew_all(self) -> None:
        held = list(self.held)
        if not held:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        left = len(held)
        lease_ms, now = int(self.lease_s * 1000), now_ms()
        failures: list[str] = []

        def answer(h: Held, reply: Reply) -> None:
            nonlocal left
            if isinstance(reply, BaseException):
                failures.append(str(reply))
                if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
                    self.conn.send(command(b"SCRIPT", b"LOAD", scripts.RENEW), lambda _: None,
                                   keys.message(h.ses_id, h.msg_id))
            elif reply == 0 and h in self.held:
                self.lapsed += 1
                self.held.discard(h)
                h.fenced.set()
                h.task.cancel()  # cancelled or taken over: stop promptly
            left -= 1
            if left == 0 and not done.done():
                done.set_result(None)

        for h in held:
            rec = keys.message(h.ses_id, h.msg_id)
            self.conn.send(command(b"EVALSHA", self._sha, 1, rec, h.attempt, lease_ms, now),
                           lambda reply, h=h: answer(h, reply), rec)
        await done
        self.rounds += 1
        if failures:
            log.warning("lease renewal: %d of %d failed (%s)", len(failures), len(held), failures[0])
