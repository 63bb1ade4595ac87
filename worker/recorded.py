"""The conversation so far, rebuilt from a message's recorded events: the stream is the state.

A continuation (after a confirmation was answered) or a retry (after a worker died) does not
ask the model again for a step the stream already holds. ``rebuild`` folds the recorded events
(what a client holds after honouring every ``reset``) into the model's steps: the text each
step streamed, then its tool calls, each with its confirmation and result if recorded. The
pipeline replays those events unchanged and asks the model only for what comes next.

A step is recorded as: its tokens, ``thinking`` (tool selection), all its ``tool_call`` events
in one append, then per call an optional ``confirmation_required`` and its ``tool_result``
followed by that call's ``retriever_execution`` / ``pipeline_config`` events. So a token or a
``tool_call`` that comes after a call's outcome starts the next step. A trailing step that
recorded only text is not decided yet (the model had not finished it): it is left out, and the
model streams that step again (the emitter continues it exactly or writes a ``reset``).

Tool calls are identified by what is stable, ``call_id``: the message, the call's position in
it, its name and its canonical inputs; never by a provider's id, which changes every request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.events import (
    AnyEvent,
    ConfirmationRequired,
    Event,
    Intent,
    PipelineConfig,
    Reset,
    RetrieverExecution,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    decode_event,
)
from shared.stores.confirmations import confirmation_id

_canonical = msgspec.json.Encoder(order="sorted")


def call_id(message_id: str, position: int, name: str, inputs: dict[str, Any]) -> str:
    """The stable id of a tool call: the same call at the same place always gets the same id."""
    digest = hashlib.sha256(f"{message_id}:{position}:{name}:".encode() + _canonical.encode(inputs))
    return "run_" + digest.hexdigest()[:16]


@dataclass(slots=True)
class Call:
    event: ToolCall
    confirmation: ConfirmationRequired | None = None
    result: ToolResult | None = None
    follow: list[Event] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.result is not None or self.confirmation is not None


@dataclass(slots=True)
class Step:
    text: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


@dataclass(slots=True)
class Recorded:
    """The decided steps, and the recorded events to replay (everything up to the first event
    of an undecided trailing step)."""

    steps: list[Step] = field(default_factory=list)
    replay: list[AnyEvent] = field(default_factory=list)


def effective(rows: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
    """What a client holds after honouring every ``reset`` of a retry."""
    out: list[tuple[str, str, bytes]] = []
    for eid, t, d in rows:
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


def rebuild(rows: list[tuple[str, str, bytes]]) -> Recorded:
    """Fold the recorded events (``effective`` ones) into steps (pure)."""
    events = [decode_event(t, d) for _, t, d in rows]
    steps: list[Step] = []
    cur: Step | None = None
    starts: list[int] = []  # index of each step's first event

    def new_step(at: int) -> Step:
        step = Step()
        steps.append(step)
        starts.append(at)
        return step

    for i, ev in enumerate(events):
        match ev:
            case Token(content=piece):
                if cur is None or cur.calls:
                    cur = new_step(i)
                cur.text.append(piece)
            case Thinking(step="tool_selection"):
                if cur is None or cur.calls:
                    cur = new_step(i)
            case ToolCall():
                if cur is None or any(c.settled for c in cur.calls):
                    cur = new_step(i)
                cur.calls.append(Call(ev))
            case ConfirmationRequired(confirmation_id=conf_id) if cur is not None:
                for c in cur.calls:
                    if confirmation_id(c.event.tool_call_id) == conf_id:
                        c.confirmation = ev
            case ToolResult(tool_call_id=tid) if cur is not None:
                for c in cur.calls:
                    if c.event.tool_call_id == tid and c.result is None:
                        c.result = ev
                        break
            case RetrieverExecution() | PipelineConfig() if cur is not None:
                done = [c for c in cur.calls if c.result is not None]
                if done:
                    done[-1].follow.append(ev)
    cut = len(events)
    if steps and not steps[-1].calls:
        # The model had not finished this step: it streams it again.
        cut = starts[-1]
        steps.pop()
    head = 0  # intent and "processing" come before any step; the pipeline emits those itself
    while head < cut and _is_header(events[head]):
        head += 1
    return Recorded(steps, events[head:cut])


def _is_header(ev: AnyEvent) -> bool:
    return isinstance(ev, Intent) or (isinstance(ev, Thinking) and ev.step != "tool_selection")
