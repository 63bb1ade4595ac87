"""The naive worker of the end-to-end scenario: what a first implementation of this pipeline
would do. The project's worker (same jobs, same pipeline and model) run by arq's own loop
(``bench.baselines.poll_worker``: ``poll_delay`` 0.5 s, no inbound wake-up), appending every
event with one plain ``XADD`` round trip of its own: no Lua, no fencing, no live publish, no
batching.

Only the last step of a message (the terminal event with the session log and stats) goes
through the checkout's own emitter, so the message record, the session and whatever the
gateway and worker of this checkout do at the end of a message end the same way. The naive
gateway (``bench.baselines.naive_gateway``) reads the stream with one ``XREAD BLOCK`` per client.

Run: ``python -m bench.baselines.naive_worker`` with the worker's ``AGENTSTREAM_*`` settings.
"""

from __future__ import annotations

from typing import Any

from bench.baselines.poll_worker import DefaultPollWorker
from shared import keys
from shared.events import Event, encode_payload, type_of
from shared.settings import Settings
from worker import emitter
from worker import main as worker_main

_TERMINAL = frozenset({"done", "error"})
_checkout_emit = emitter.Emitter.emit


async def naive_emit(self: Any, *events: Event, **kwargs: Any) -> Any:
    if kwargs.get("log") or kwargs.get("stats") or any(type_of(e) in _TERMINAL for e in events):
        return await _checkout_emit(self, *events, **kwargs)
    try:
        redis, key = self.store.redis, keys.events(self.ses_id, self.msg_id)
    except AttributeError as exc:  # the checkout's Emitter changed shape
        raise RuntimeError(f"bench.baselines.naive_worker needs Emitter.store/.ses_id/.msg_id: {exc}") from None
    for ev in events:
        await redis.xadd(key, {"t": type_of(ev), "d": encode_payload(ev)})
    return None


if __name__ == "__main__":
    emitter.Emitter.emit = naive_emit  # type: ignore[method-assign]
    worker_main.Worker = DefaultPollWorker  # type: ignore[misc,assignment]
    worker_main.run(Settings.from_env())
