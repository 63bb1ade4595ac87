"""One message's run: intent → thinking → tools / retrievers → tokens → message →
session_name (first message only) → done. Every step is one event appended, fenced on the
attempt, through the emitter (which also makes a retry continue or explicitly reset).

The stream is the agent's state: a continuation or a retry rebuilds the steps already recorded
(``worker/recorded.py``), replays them, settles what they left open (a confirmation answered, a
call without its result) and asks the model only for the steps after them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import msgspec

from dataplane import catalogue
from intent import classify
from shared import tracing
from shared.events import (
    ConfirmationRequired,
    Done,
    Event,
    Intent,
    Message,
    PipelineConfig,
    Reset,
    RetrieverExecution,
    RetrieverSummary,
    SessionName,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
)
from shared.ids import iso, now_ms
from shared.models import DEFAULT_SYSTEM_PROMPT
from shared.stores.confirmations import ConfirmationStore
from shared.stores.session_log import AssistantEntry, ToolEntry, TurnEntry
from worker import observe, offload
from worker.deps import Deps
from worker.emitter import Emitter
from worker.models.base import TextDelta, ToolReport, ToolUse, Turn, Usage
from worker.recorded import Call, Recorded, call_id, effective, rebuild
from worker.start import read as read_start
from worker.tools import budget
from worker.tools.base import ToolContext, ToolError

log = logging.getLogger("agentstream.worker")
_json = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()
MAX_STEPS = 6
HISTORY_TURNS = 10


def session_name_for(content: str) -> str:
    words = content.strip().split()
    name = " ".join(words[:6]).strip(" ?!.,;:")
    name = name[:60] or "New conversation"
    return name[0].upper() + name[1:]


async def run(deps: Deps, ses_id: str, msg_id: str, attempt: int) -> None:
    # Everything the run reads before its first event, in one round trip (worker/start.py).
    start = await read_start(deps.redis, ses_id, msg_id)
    record = start.record
    if record is None or record.ended:
        return
    marker = deps.settings.fault_crash_marker
    if marker and marker in record.content:
        log.error("message %s holds the fault-injection marker: exiting now", msg_id)
        os._exit(70)
    rows = start.rows
    state = Recorded()
    if len(rows) < record.count:
        # MAXLEN trimmed the head of the stream: what is left cannot be replayed as the
        # conversation so far. Start over, saying so the way every retry does (clients discard
        # everything up to ``discard_after`` 0-0), never continuing past a silent gap.
        log.warning("message %s: %d of %d events were trimmed; starting over", msg_id,
                    record.count - len(rows), record.count)
        em = Emitter(deps.messages, ses_id, msg_id, attempt, [], deps.appender)
        await em.emit(Reset(reason="retry", status="running", replay_from="0-0", attempt=attempt,
                            discard_after="0-0"))
    else:
        em = Emitter(deps.messages, ses_id, msg_id, attempt, rows, deps.appender)
        state = rebuild(effective(rows))
    if attempt > 1:
        log.info("message %s attempt %d: %d recorded events, %d recorded steps", msg_id, attempt, len(rows),
                 len(state.steps))

    # CPU-bound on up to 32,000 characters: a long content goes off the event loop, so the lease
    # renewal and every other job on this worker keep running meanwhile (issue 15.1)
    with tracing.span("intent"):
        c = await offload.by_length(record.content, classify, record.content)
    await em.emit(Intent(intent=c.event_intent, confidence=c.confidence, category=c.event_category,
                         reasoning=c.reasoning, context_scope="namespace" if c.event_intent != "conversation"
                         else "session"))
    await em.emit(Thinking(step="processing", message="Analyzing your request..."))
    # The recorded steps, unchanged: the emitter finds each one already in the stream and
    # writes nothing. The model is asked only for what comes after them.
    await em.emit(*state.replay)

    session = start.session
    config = _dec.decode(session.get(b"agent_config") or b"{}")
    model_name = (session.get(b"effective_model") or b"agentstream-builtin").decode()
    turn = Turn(
        message_id=msg_id, content=record.content, intent=c.event_intent,
        system_prompt=config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT,
        history=await _history(deps, ses_id, msg_id, start.log_head),
        memory=_memory(session, start.memory),
        tools=sorted(catalogue.allowed(config.get("available_tools"))),
        model=model_name, max_tokens=int(config.get("max_tokens") or 4096),
        temperature=float(config.get("temperature") if config.get("temperature") is not None else 0.7),
    )
    model = observe.model(deps.model_for(model_name))
    ctx = ToolContext(deps.redis, record.namespace_id, ses_id, msg_id)
    text: list[str] = []
    follows: list[Event] = []
    tokens = 0
    for step in state.steps:  # recorded: settle what is left of them (a confirmation, a result)
        text += step.text
        turn.texts.append("".join(step.text))
        for call in step.calls:
            follows += await _settle(deps, em, ctx, turn, call)
    for _ in range(MAX_STEPS - len(state.steps)):
        pieces: list[str] = []
        uses: list[ToolUse] = []
        # Closed however the loop ends (a fenced append, a cancel): the provider's stream with it.
        async with contextlib.aclosing(model.step(turn)) as steps:  # type: ignore[type-var]
            async for ev in steps:
                match ev:
                    case TextDelta(text=piece):
                        pieces.append(piece)
                        await em.emit(Token(content=piece))
                    case ToolUse():
                        uses.append(ev)
                    case Usage(input_tokens=i, output_tokens=o):
                        tokens += i + o
        text += pieces
        if not uses:
            break
        # The provider's ids are not kept: a call is known by its place, name and inputs.
        first = len(turn.reports)
        calls = [Call(ToolCall(tool_name=u.name, tool_call_id=call_id(msg_id, first + n, u.name, u.inputs),
                               inputs=u.inputs)) for n, u in enumerate(uses)]
        head: list[Event] = []
        if len(uses) > 1 or not turn.reports:
            head.append(Thinking(step="tool_selection", message=f"Using {', '.join(u.name for u in uses)}"))
        # The step's calls in one append: a retry finds the whole step recorded, or none of it.
        await em.emit(*head, *[c.event for c in calls])
        turn.texts.append("".join(pieces))
        for call in calls:
            follows += await _settle(deps, em, ctx, turn, call)
    content = "".join(text)
    latency = float(now_ms() - record.created_at_ms)
    retriever_events = [e for e in follows if isinstance(e, RetrieverExecution)]
    summary = RetrieverSummary(
        used_retrievers=bool(retriever_events), retriever_count=len(retriever_events),
        saved_retrievers=sum(1 for e in retriever_events if not e.is_adhoc),
        adhoc_retrievers=sum(1 for e in retriever_events if e.is_adhoc),
        total_documents=sum(e.documents_returned for e in retriever_events),
        executions=[msgspec.structs.asdict(e) for e in retriever_events],
    )
    final: list[Event] = [Message(content=content, message_id=msg_id, is_final=True)]
    if record.first:
        # The append script names the session from this event (fenced, never recreating it).
        final.append(SessionName(session_name=session_name_for(record.content)))
    final.append(Done(latency_ms=latency, tool_calls_made=len(turn.reports), message_id=msg_id,
                      retriever_summary=summary, data_accessed_via_retriever=bool(retriever_events),
                      total_tokens=tokens))
    now = now_ms()
    entries = [*[ToolEntry(message_id=msg_id, ts=now, tool_name=r.name, tool_call_id=r.tool_call_id,
                           inputs=_json.encode(r.inputs).decode(), outputs=_json.encode(r.output).decode(),
                           status="success" if r.success else "error") for r in turn.reports],
               AssistantEntry(message_id=msg_id, ts=now, content=content),
               TurnEntry(message_id=msg_id, ts=now, status="completed", latency_ms=latency, tokens=tokens,
                         tool_calls=len(turn.reports))]
    await em.emit(*final, status="completed", log=entries,  # type: ignore[arg-type]
                  stats={"assistant_messages": 1, "total_tool_calls": len(turn.reports),
                         "total_tokens": tokens, "total_latency_ms": latency, "turns": 1})


async def _settle(deps: Deps, em: Emitter, ctx: ToolContext, turn: Turn, call: Call) -> list[Event]:
    """Give a call its result: the recorded one, or run it now (asking first if it writes).
    Appends its report to the turn; returns the retriever/pipeline events that followed it."""
    use = call.event
    decision: str | None = None
    if call.result is not None:
        # Recorded (by this message's earlier attempt or continuation): never run it twice.
        result, follow = call.result, list(call.follow)
        if call.confirmation is not None:
            decision = "denied" if result.error == "denied" else "approved"
    else:
        if catalogue.BY_NAME[use.tool_name].requires_confirmation and use.tool_name in turn.tools:
            decision = await _confirm(deps, em, ctx, call)
        if decision == "denied":
            follow = []
            result = ToolResult(tool_name=use.tool_name, tool_call_id=use.tool_call_id, success=False,
                                output={"approved": False, "message": "The user denied this action; it was not run"},
                                latency_ms=0.0, error="denied")
        else:
            result, follow = await _run_tool(deps, ctx, turn, use)
        await em.emit(result, *follow)
    turn.reports.append(ToolReport(use.tool_call_id, use.tool_name, use.inputs, result.success, result.output,
                                   step=len(turn.texts) - 1, decision=decision))
    return follow


async def _run_tool(deps: Deps, ctx: ToolContext, turn: Turn, use: ToolCall) -> tuple[ToolResult, list[Event]]:
    started = time.perf_counter()
    follow: list[Event] = []
    try:
        tool = deps.tools.get(use.tool_name)
        if use.tool_name not in turn.tools or tool is None:
            raise ToolError(f"tool {use.tool_name!r} is not available in this session")
        outcome = await tool(ctx, use.inputs)
        ms = round((time.perf_counter() - started) * 1000, 3)
        # cut to fit the event cap (flagged ``truncated``) rather than fail the message (issue 15.9)
        output = await asyncio.to_thread(budget.fit, outcome.output, budget.for_event(deps.settings.max_event_bytes))
        result = ToolResult(tool_name=use.tool_name, tool_call_id=use.tool_call_id, success=True,
                            output=output, latency_ms=ms)
        for r in outcome.retriever_runs:
            follow.append(RetrieverExecution(tool_name=use.tool_name, execution_id=r.execution_id,
                                             retriever_id=r.retriever_id, is_adhoc=r.is_adhoc,
                                             documents_returned=r.documents_returned,
                                             latency_ms=r.latency_ms, message=r.message))
        if outcome.pipeline_config is not None:
            follow.append(PipelineConfig(tool_name=use.tool_name, config=outcome.pipeline_config,
                                         message="Save this pipeline as a retriever to run it again"))
    except ToolError as exc:
        ms = round((time.perf_counter() - started) * 1000, 3)
        result = ToolResult(tool_name=use.tool_name, tool_call_id=use.tool_call_id, success=False,
                            output={"error": str(exc)}, latency_ms=ms, error=str(exc))
    return result, follow


class Paused(Exception):
    """The run waits for the user's answer to a confirmation; the job ends here."""


async def _confirm(deps: Deps, em: Emitter, ctx: ToolContext, call: Call) -> str:
    """Ask once (the confirmation is keyed by the call's stable id) and return the decision."""
    use = call.event
    conf = await ConfirmationStore(deps.redis).open(ctx.session_id, ctx.message_id, em.attempt, use.tool_call_id,
                                                    use.tool_name, use.inputs)
    if call.confirmation is None:
        await em.emit(ConfirmationRequired(confirmation_id=conf.confirmation_id, tool_name=use.tool_name,
                                           inputs=use.inputs, expires_at=iso(conf.expires_ms),
                                           message=f"{use.tool_name} changes your data: approve or deny it"))
    if conf.state == "pending":
        raise Paused(conf.confirmation_id)
    return conf.state


def _memory(session: dict[bytes, bytes], remembered: list[bytes]) -> dict[str, Any] | None:
    """The user's memory (PATCH replaces it) plus the exchanges they rated positively."""
    memory = dict(_dec.decode(session[b"user_memory"])) if session.get(b"user_memory") else {}
    if session.get(b"enable_memory") == b"1" and remembered:
        memory["remembered"] = [_dec.decode(x) for x in remembered]
    return memory or None


async def _history(deps: Deps, ses_id: str, msg_id: str, head: list[Any]) -> list[dict[str, Any]]:
    # A bounded window read backwards, not the whole log: a long session costs what a short one
    # does. Its newest chunk came with the job start; a further read only if that is not enough.
    return list(await deps.sessions.exchanges_before(ses_id, msg_id, HISTORY_TURNS, head=head))
