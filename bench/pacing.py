"""Open-loop pacing shared by the producer and the in-memory ceiling, so both offer the same
schedule: every ~1 ms, emit what is due since the start at ``rate`` events/s."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

TICK_S = 0.001


async def paced(rate: float, duration_s: float, emit: Callable[[int], Awaitable[None] | None]) -> tuple[int, float]:
    """Returns (events emitted, seconds taken). A slow emitter is not skipped over: what is due
    is emitted late, in a bigger batch, and the achieved rate shows it."""
    t0 = time.monotonic()
    total = int(rate * duration_s)
    sent = 0
    last = 0.0
    while sent < total:
        elapsed = time.monotonic() - t0
        n = min(total, int(elapsed * rate)) - sent
        if n > 0:
            r = emit(n)
            if inspect.isawaitable(r):
                await r
            sent += n
            last = time.monotonic() - t0
        if sent < total:
            await asyncio.sleep(TICK_S)
    return sent, max(duration_s, last)
