"""Where the data plane's CPU-bound work runs: off the event loop once it is big enough to matter.

Decoding, tokenising, indexing, scoring, filtering and sorting a whole collection are plain
Python over every document. On the event loop, a 5,000-document collection held every other
request of the process (``/healthz`` included) for seconds (issue 15.2). Small inputs stay on
the loop, where a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
OFF_LOOP_ABOVE = 200  # documents (or hits); below this the work takes well under a millisecond


async def run(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, in a worker thread when ``size`` (its input's document count) is large."""
    if size > OFF_LOOP_ABOVE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
