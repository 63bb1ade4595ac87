"""One message at a time per session (issue 20): the strategies a send may ask for, and how
``interrupt`` and ``rollback`` end the message that holds the session's turn.

The order itself lives in Redis (ACCEPT and APPEND in ``shared/scripts.py``): the session hash's
``turn`` names the message that may run, later ones wait in the session's pending list, and the
terminal append of the holder hands the turn to the next waiter atomically.
"""

from __future__ import annotations

import msgspec

from shared.errors import Fenced
from shared.events import Error, Reset, decode_event
from shared.ids import now_ms
from shared.settings import MULTITASK_STRATEGIES
from shared.stores.messages import MessageStore
from shared.stores.session_log import AssistantEntry, Entry, ToolEntry, TurnEntry

STRATEGIES = MULTITASK_STRATEGIES  # the X-Agentstream-Multitask values
_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


def effective(rows: list[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """The entries a client keeps after honouring every ``reset`` of a retried attempt."""
    out: list[tuple[bytes, bytes, bytes]] = []
    for eid, t, d in rows:
        if t == b"reset":
            r = decode_event(t, d)
            keep = r.discard_after if isinstance(r, Reset) else None
            while out and keep is not None and out[-1][0].decode() != keep:
                out.pop()
            if keep in (None, "0-0"):
                out.clear()
            continue
        out.append((eid, t, d))
    return out


def recorded_work(msg_id: str, rows: list[tuple[bytes, bytes, bytes]]) -> tuple[str, list[ToolEntry]]:
    """The text and the tool calls with results that a message had recorded so far."""
    text: list[str] = []
    calls: dict[str, dict[str, object]] = {}
    tools: list[ToolEntry] = []
    for eid, t, d in effective(rows):
        if t == b"token":
            text.append(_dec.decode(d).get("content", ""))
        elif t == b"tool_call":
            call = _dec.decode(d)
            calls[call.get("tool_call_id", "")] = call
        elif t == b"tool_result":
            res = _dec.decode(d)
            call = calls.get(res.get("tool_call_id", ""), {})
            tools.append(ToolEntry(message_id=msg_id, ts=int(eid.split(b"-")[0]), tool_name=res.get("tool_name", ""),
                                   tool_call_id=res.get("tool_call_id", ""),
                                   inputs=_enc.encode(call.get("inputs", {})).decode(),
                                   outputs=_enc.encode(res.get("output")).decode(),
                                   status="success" if res.get("success") else "error"))
    return "".join(text), tools


async def end_holder(store: MessageStore, ses_id: str, holder: str, by: str, keep_work: bool) -> bool:
    """End the message holding the turn so ``by`` can run: ``interrupt`` keeps what it recorded
    in the history (tools, partial answer), ``rollback`` leaves the exchange out. One fenced
    append (the holder's worker is fenced and stops at once); False if it had already ended."""
    record = await store.record(ses_id, holder)
    if record is None or record.ended:
        return False
    now = now_ms()
    latency = float(max(0, now - record.created_at_ms))
    log: list[Entry]
    if keep_work:
        text, tools = recorded_work(holder, await store.read(ses_id, holder, "0-0", 100_000))
        code, what = "interrupted", "interrupted; its work so far stays in the history"
        log = [*tools, *([AssistantEntry(message_id=holder, ts=now, content=text)] if text else []),
               TurnEntry(message_id=holder, ts=now, status="interrupted", latency_ms=latency, tokens=0,
                         tool_calls=len(tools))]
        stats: dict[str, int | float] = {"assistant_messages": 1 if text else 0, "total_tool_calls": len(tools),
                                         "total_latency_ms": latency, "turns": 1}
    else:
        code, what = "rolled_back", "rolled back: it is left out of the history"
        log = [TurnEntry(message_id=holder, ts=now, status="rolled_back", latency_ms=0.0, tokens=0, tool_calls=0)]
        stats = {}
    err = Error(message=f"The message was {what} (a newer message, {by}, asked to run now)",
                recoverable=False, code=code, message_id=holder)
    try:
        await store.append(ses_id, holder, "*", [err], status="cancelled", log=log, stats=stats)
    except Fenced:
        return False
    return True
