"""Appends one attempt's events to the message's stream, replaying what a dead attempt wrote.

On attempt N > 1 the stream already holds what attempt N-1 wrote before it died. The run is
deterministic up to the model, so the emitter walks the recorded events in step with the new
run: an event equal to the recorded one at the same position is not written again (the client
already has it); the pipeline replays the recorded steps through it (``worker/recorded.py``), so
tool results are read back, never recomputed. At the
first event that differs, the emitter writes a ``reset`` (reason ``retry``, this attempt's
number, ``discard_after`` = the last event both attempts agree on) and from then on appends.
So a retry is either an exact continuation or an explicit discard, never a silent mix.
"""

from __future__ import annotations

from typing import Any

from shared.events import (
    Event,
    Reset,
    decode_event,
    encode_payload,
    type_of,
)
from shared.stores.messages import MessageStore
from shared.stores.session_log import Entry

# Fields that legitimately differ between attempts (timings, fresh ids): a recorded event of
# the same type at the same position counts as the same event.
_VOLATILE = frozenset({"tool_result", "retriever_execution", "pipeline_config"})


class Emitter:
    def __init__(self, store: MessageStore, ses_id: str, msg_id: str, attempt: int,
                 recorded: list[tuple[str, str, bytes]]) -> None:
        self.store = store
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
        if pending or log or stats:
            ids = await self.store.append(self.ses_id, self.msg_id, self.attempt, pending, status=status,
                                          log=log or [], stats=stats)
            if ids:
                self.last_id = ids[-1]

    def _matches(self, ev: Event) -> bool:
        if self._pos >= len(self._recorded):
            return False
        _, t, d = self._recorded[self._pos]
        kind = type_of(ev)
        if t != kind:
            return False
        return kind in _VOLATILE or d == encode_payload(ev)
