"""Appends one attempt's events to the message's stream, replaying what a dead attempt wrote.

On attempt N > 1 the stream already holds what attempt N-1 wrote before it died. The run is
deterministic up to the model, so the emitter walks the recorded events in step with the new
run: an event equal to the recorded one at the same position is not written again (the client
already has it); the pipeline replays the recorded steps through it (``worker/recorded.py``), so
tool results are read back, never recomputed. At the
first event that differs, the emitter writes a ``reset`` (reason ``retry``, this attempt's
number, ``discard_after`` = the last event both attempts agree on) and from then on appends.
So a retry is either an exact continuation or an explicit discard, never a silent mix.

Appends are group-committed (``worker/appender.py``): ``emit`` hands the events to the
message's outbox and returns, so the model keeps producing while an append is in flight. It
waits for Redis only where durability is the point: a tool result (a dead attempt must find
it), a pause, the terminal event, or an outbox over its high-water mark (backpressure). A
refusal (fenced, ended) is raised by the next ``emit``.
"""

from __future__ import annotations

from typing import Any

from shared.events import (
    PAUSE,
    TERMINAL,
    Event,
    Reset,
    decode_event,
    encode_payload,
    type_of,
)
from shared.stores.messages import EventTooLarge, MessageStore
from shared.stores.session_log import Entry
from worker.appender import Appender

# Fields that legitimately differ between attempts (timings, fresh ids): a recorded event of
# the same type at the same position counts as the same event.
_VOLATILE = frozenset({"tool_result", "retriever_execution", "pipeline_config"})
# Events whose append the run waits for before going on (see the module docstring).
_DURABLE = TERMINAL | PAUSE | {"tool_result"}
HIGH_WATER = 1024  # events buffered per message before emit waits for Redis


class Emitter:
    def __init__(self, store: MessageStore, ses_id: str, msg_id: str, attempt: int,
                 recorded: list[tuple[str, str, bytes]], appender: Appender | None = None) -> None:
        self.store = store
        self._appender = appender
        self._outbox = appender.outbox(ses_id, msg_id, attempt) if appender is not None else None
        self.ses_id = ses_id
        self.msg_id = msg_id
        self.attempt = attempt
        # (id, type, payload) of earlier attempts, resets excluded: the replay script
        self._recorded = self._effective(recorded)
        self._pos = 0
        self._diverged = not self._recorded
        self.last_id: str | None = None
        self.replayed = 0

    @staticmethod
    def _effective(recorded: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        """What a client holds after honouring every earlier reset."""
        out: list[tuple[str, str, bytes]] = []
        for eid, t, d in recorded:
            if t == "thinking" and d.startswith(b'{"step":"queued"'):
                continue  # the gateway's "queued behind" notice: written before any attempt ran
            if t == "reset":
                r = decode_event(t, d)
                assert isinstance(r, Reset)
                keep = r.discard_after
                while out and keep is not None and out[-1][0] != keep:
                    out.pop()
                if keep in (None, "0-0"):
                    out.clear()
                continue
            out.append((eid, t, d))
        return out

    async def emit(self, *events: Event, status: str = "completed", log: list[Entry] | None = None,
                   stats: dict[str, Any] | None = None) -> None:
        pending: list[Event] = []
        for ev in events:
            if not self._diverged and self._matches(ev):
                self._pos += 1
                self.replayed += 1
                continue
            if not self._diverged:
                self._diverged = True
                if self._pos < len(self._recorded):
                    keep = self._recorded[self._pos - 1][0] if self._pos else "0-0"
                    pending.append(Reset(reason="retry", status="running", replay_from=keep,
                                         attempt=self.attempt, discard_after=keep))
            pending.append(ev)
        if self._appender is None or self._outbox is None:
            if pending or log or stats:
                ids = await self.store.append(self.ses_id, self.msg_id, self.attempt, pending, status=status,
                                              log=log or [], stats=stats)
                if ids:
                    self.last_id = ids[-1]
            return
        ob = self._outbox
        if ob.error is not None:
            raise ob.error
        limit = self.store.settings.max_event_bytes
        durable = bool(log or stats)
        for ev in pending:
            t, d = type_of(ev), encode_payload(ev)
            if len(d) > limit:
                raise EventTooLarge(f"{t} event of {len(d)} bytes exceeds {limit} bytes")
            ob.buf.append((t, d))
            durable = durable or t in _DURABLE
        if log or stats or any(type_of(ev) in TERMINAL for ev in pending):
            ob.meta = (status, list(log or []), stats)
        if ob.buf or ob.meta is not None:
            self._appender.submit(ob)
        if durable or len(ob.buf) >= HIGH_WATER:
            await self._appender.flushed(ob)
        self.last_id = ob.last_id

    def _matches(self, ev: Event) -> bool:
        if self._pos >= len(self._recorded):
            return False
        _, t, d = self._recorded[self._pos]
        kind = type_of(ev)
        if t != kind:
            return False
        return kind in _VOLATILE or d == encode_payload(ev)
