"""Applies ``reset`` events for the application: pure, no I/O.

The application sees each kept event once, in order, and is told explicitly which events it
already holds must be discarded (a ``Delivery`` of type ``reset`` with ``retracted`` ids). After
every step, the events it holds equal what a reader of the message's events URL from the start
would keep (its resets applied).

- ``reset`` with ``reason: retry``: a new attempt diverged from a dead one; the events delivered
  after ``discard_after`` are retracted at once, and the new attempt's events follow.
- any other reason (``cursor_expired``, ``cursor_ahead``, ``stream_lost``): what follows is the
  message's stream as the server now holds it. The reconciler walks it against what it
  delivered: events it already holds (same id, same type) are not delivered again; at the first
  difference, everything it held from there on is retracted and delivery goes on.
- ``stream_expired`` on a resumed connection names only what follows the cursor, so the caller
  reconnects from the start (``restart``) and the same walk applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

TERMINAL = frozenset({"done", "error"})
PAUSE = frozenset({"confirmation_required"})  # the answer waits for the user; the response ends
_decode = msgspec.json.Decoder(dict[str, object]).decode


def parse_id(raw: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``, or ``<message_id>/<ms>-<seq>`` in a session log)."""
    ms, _, seq = raw.rpartition("/")[2].partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    type: str
    payload: bytes
    retracted: tuple[str, ...] = ()


@dataclass
class Reconciler:
    held: list[tuple[str, str]] = field(default_factory=list)  # (id, type) of kept events
    _replay: int | None = None  # position in ``held`` while walking a replayed stream
    _pending: Delivery | None = None  # the reset being resolved by that walk
    _last: tuple[int, int] | None = None  # newest id delivered outside a walk
    ended: str | None = None  # type of the terminal (or pause) event, once seen

    def feed(self, eid: str, etype: str, payload: bytes, from_start: bool) -> tuple[list[Delivery], bool]:
        """One event off the wire: what to hand the application, and whether the caller must
        reconnect from the start of the stream (without a cursor)."""
        if etype == "reset":
            return self._reset(Delivery(eid, etype, payload), from_start)
        out: list[Delivery] = []
        if self._replay is not None:
            if self._replay < len(self.held) and self.held[self._replay] == (eid, etype):
                self._replay += 1
                if etype in TERMINAL or etype in PAUSE:
                    out.append(self._resolve())
                    self.ended = etype
                return out, False
            out.append(self._resolve())
        pid = parse_id(eid)
        if self._last is not None and pid <= self._last:
            return out, False  # already delivered (a server never repeats one; a proxy might)
        self._last = pid
        self.held.append((eid, etype))
        out.append(Delivery(eid, etype, payload))
        if etype in TERMINAL or etype in PAUSE:
            self.ended = etype
        return out, False

    def _reset(self, reset: Delivery, from_start: bool) -> tuple[list[Delivery], bool]:
        body = _decode(reset.payload)
        if body.get("reason") == "retry":
            keep = body.get("discard_after")
            cut = parse_id(keep) if isinstance(keep, str) else (0, 0)
            kept = [h for h in self.held if parse_id(h[0]) <= cut]
            retracted = tuple(h[0] for h in self.held[len(kept):])
            self.held = kept
            self._last = parse_id(reset.id)
            if self._replay is not None:
                self._replay = min(self._replay, len(kept))
            return [Delivery(reset.id, "reset", reset.payload, retracted)], False
        self._replay, self._pending, self._last = 0, reset, None
        return [], body.get("reason") == "stream_expired" and not from_start

    def _resolve(self) -> Delivery:
        """End a walk: retract what was held past the matching prefix."""
        assert self._replay is not None and self._pending is not None
        retracted = tuple(h[0] for h in self.held[self._replay:])
        self.held = self.held[:self._replay]
        if self.held:
            self._last = parse_id(self.held[-1][0])
        pending = self._pending
        self._replay = self._pending = None
        return Delivery(pending.id, "reset", pending.payload, retracted)
