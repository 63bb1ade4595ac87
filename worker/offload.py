"""Where the worker's CPU-bound work over a message's content runs: on the event loop when the
content is short, in a thread when it is long.

Intent classification and the built-in model's planning are regexes over the whole content (up
to 32,000 characters): tens of milliseconds for the longest, enough to starve every other job's
events and the lease renewal (issue 15.1). But a thread hop costs ~100 µs of CPU and two loop
wake-ups, paid by every message, while classifying a typical message takes well under that:
measured on this machine, classification costs ~1.5 µs per character (0.15 ms at 100, ~0.8 ms
at 500, 3.5 ms at 1,000), planning less. Below INLINE_MAX_CHARS the work stays inline, where it
costs at most about a millisecond of loop time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
INLINE_MAX_CHARS = 512  # characters of content; above this the work goes to a thread (> ~1 ms inline)


async def by_length(content: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, which scans ``content``: inline if it is short, else off the event loop."""
    if len(content) > INLINE_MAX_CHARS:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
