"""One message's run: intent → thinking → tools / retrievers → tokens → message →
session_name (first message only) → done. Every step is one event appended, fenced on the
attempt, through the emitter (which also makes a retry continue or explicitly reset)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec

from dataplane import catalogue
from intent import classify
from shared import keys
from shared.events import (
    ConfirmationRequired,
    Done,
    Event,
    Intent,
    Message,
    PipelineConfig,
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
from worker.deps import Deps
from worker.emitter import Emitter
from worker.models.base import TextDelta, ToolReport, ToolUse, Turn, Usage
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
    record = await deps.messages.record(ses_id, msg_id)
    if record is None or record.ended:
        return
    marker = deps.settings.fault_crash_marker
    if marker and marker in record.content:
        log.error("message %s holds the fault-injection marker: exiting now", msg_id)
        os._exit(70)
    recorded: list[tuple[str, str, bytes]] = []
    if record.count:
        rows = await deps.redis.xrange(keys.events(ses_id, msg_id))
        recorded = [(i.decode(), f[b"t"].decode(), f[b"d"]) for i, f in rows]
    em = Emitter(deps.messages, ses_id, msg_id, attempt, recorded, deps.appender)
    if attempt > 1:
        log.info("message %s attempt %d: %d recorded events to replay", msg_id, attempt, len(recorded))

    c = classify(record.content)
    await em.emit(Intent(intent=c.event_intent, confidence=c.confidence, category=c.event_category,
                         reasoning=c.reasoning, context_scope="namespace" if c.event_intent != "conversation"
                         else "session"))
    await em.emit(Thinking(step="processing", message="Analyzing your request..."))

    # Read after the first events are on their way (group commit: emit did not wait), so the
    # session's read overlaps their append instead of delaying the first event.
    session = await deps.redis.hgetall(keys.session(ses_id))
    config = _dec.decode(session.get(b"agent_config") or b"{}")
    model_name = (session.get(b"effective_model") or b"agentstream-builtin").decode()
    turn = Turn(
        message_id=msg_id, content=record.content, intent=c.event_intent,
        system_prompt=config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT,
        history=await _history(deps, ses_id, msg_id),
        memory=await _memory(deps, ses_id, session),
        tools=sorted(catalogue.allowed(config.get("available_tools"))),
        model=model_name, max_tokens=int(config.get("max_tokens") or 4096),
        temperature=float(config.get("temperature") if config.get("temperature") is not None else 0.7),
    )
    model = deps.model_for(model_name)
    ctx = ToolContext(deps.redis, record.namespace_id, ses_id, msg_id)
    text: list[str] = []
    tool_rows: list[ToolEntry] = []
    retriever_events: list[RetrieverExecution] = []
    tokens = 0
    for _ in range(MAX_STEPS):
        uses: list[ToolUse] = []
        async for ev in model.step(turn):
            match ev:
                case TextDelta(text=piece):
                    text.append(piece)
                    await em.emit(Token(content=piece))
                case ToolUse():
                    uses.append(ev)
                case Usage(input_tokens=i, output_tokens=o):
                    tokens += i + o
        if not uses:
            break
        if len(uses) > 1 or not turn.reports:
            names = ", ".join(u.name for u in uses)
            await em.emit(Thinking(step="tool_selection", message=f"Using {names}"))
        for use in uses:
            report, follow = await _call_tool(deps, em, ctx, turn, use)
            turn.reports.append(report)
            retriever_events += [e for e in follow if isinstance(e, RetrieverExecution)]
            tool_rows.append(ToolEntry(message_id=msg_id, ts=now_ms(), tool_name=use.name,
                                       tool_call_id=use.tool_call_id, inputs=_json.encode(use.inputs).decode(),
                                       outputs=_json.encode(report.output).decode(),
                                       status="success" if report.success else "error"))
    content = "".join(text)
    latency = float(now_ms() - record.created_at_ms)
    summary = RetrieverSummary(
        used_retrievers=bool(retriever_events), retriever_count=len(retriever_events),
        saved_retrievers=sum(1 for e in retriever_events if not e.is_adhoc),
        adhoc_retrievers=sum(1 for e in retriever_events if e.is_adhoc),
        total_documents=sum(e.documents_returned for e in retriever_events),
        executions=[msgspec.structs.asdict(e) for e in retriever_events],
    )
    final: list[Event] = [Message(content=content, message_id=msg_id, is_final=True)]
    if record.first:
        name = session_name_for(record.content)
        await deps.sessions.set_name(ses_id, name)
        final.append(SessionName(session_name=name))
    final.append(Done(latency_ms=latency, tool_calls_made=len(turn.reports), message_id=msg_id,
                      retriever_summary=summary, data_accessed_via_retriever=bool(retriever_events),
                      total_tokens=tokens))
    now = now_ms()
    entries = [*tool_rows, AssistantEntry(message_id=msg_id, ts=now, content=content),
               TurnEntry(message_id=msg_id, ts=now, status="completed", latency_ms=latency, tokens=tokens,
                         tool_calls=len(turn.reports))]
    await em.emit(*final, status="completed", log=entries,  # type: ignore[arg-type]
                  stats={"assistant_messages": 1, "total_tool_calls": len(turn.reports),
                         "total_tokens": tokens, "total_latency_ms": latency, "turns": 1})


async def _call_tool(deps: Deps, em: Emitter, ctx: ToolContext, turn: Turn, use: ToolUse) -> tuple[ToolReport, list[Event]]:
    await em.emit(ToolCall(tool_name=use.name, tool_call_id=use.tool_call_id, inputs=use.inputs))
    recorded = em.recorded_tool(use.tool_call_id)
    decision = None
    if recorded is None and catalogue.BY_NAME[use.name].requires_confirmation and use.name in turn.tools:
        decision = await _confirm(deps, em, ctx, use)
    if recorded is not None:
        # A dead attempt ran this call and its result is in the stream: never run it twice.
        result, follow = recorded
    elif decision == "denied":
        follow = []
        result = ToolResult(tool_name=use.name, tool_call_id=use.tool_call_id, success=False,
                            output={"approved": False, "message": "The user denied this action; it was not run"},
                            latency_ms=0.0, error="denied")
    else:
        started = time.perf_counter()
        follow = []
        try:
            tool = deps.tools.get(use.name)
            if use.name not in turn.tools or tool is None:
                raise ToolError(f"tool {use.name!r} is not available in this session")
            outcome = await tool(ctx, use.inputs)
            ms = round((time.perf_counter() - started) * 1000, 3)
            result = ToolResult(tool_name=use.name, tool_call_id=use.tool_call_id, success=True,
                                output=outcome.output, latency_ms=ms)
            for r in outcome.retriever_runs:
                follow.append(RetrieverExecution(tool_name=use.name, execution_id=r.execution_id,
                                                 retriever_id=r.retriever_id, is_adhoc=r.is_adhoc,
                                                 documents_returned=r.documents_returned,
                                                 latency_ms=r.latency_ms, message=r.message))
            if outcome.pipeline_config is not None:
                follow.append(PipelineConfig(tool_name=use.name, config=outcome.pipeline_config,
                                             message="Save this pipeline as a retriever to run it again"))
        except ToolError as exc:
            ms = round((time.perf_counter() - started) * 1000, 3)
            result = ToolResult(tool_name=use.name, tool_call_id=use.tool_call_id, success=False,
                                output={"error": str(exc)}, latency_ms=ms, error=str(exc))
    await em.emit(result, *follow)
    return ToolReport(use.tool_call_id, use.name, use.inputs, result.success, result.output), follow


class Paused(Exception):
    """The run waits for the user's answer to a confirmation; the job ends here."""


async def _confirm(deps: Deps, em: Emitter, ctx: ToolContext, use: ToolUse) -> str:
    """Ask (or re-ask, on a continuation: the same event replays) and return the decision."""
    conf = await ConfirmationStore(deps.redis).open(ctx.session_id, ctx.message_id, use.tool_call_id, use.name,
                                                    use.inputs)
    await em.emit(ConfirmationRequired(confirmation_id=conf.confirmation_id, tool_name=use.name,
                                       inputs=use.inputs, expires_at=iso(conf.expires_ms),
                                       message=f"{use.name} changes your data: approve or deny it"))
    if conf.state == "pending":
        raise Paused(conf.confirmation_id)
    return conf.state


async def _memory(deps: Deps, ses_id: str, session: dict[bytes, bytes]) -> dict[str, Any] | None:
    """The user's memory (PATCH replaces it) plus the exchanges they rated positively."""
    memory = dict(_dec.decode(session[b"user_memory"])) if session.get(b"user_memory") else {}
    if session.get(b"enable_memory") == b"1":
        remembered = await deps.sessions.memories(ses_id)
        if remembered:
            memory["remembered"] = remembered
    return memory or None


async def _history(deps: Deps, ses_id: str, msg_id: str) -> list[dict[str, Any]]:
    # A bounded window read backwards, not the whole log: a long session costs what a short one does.
    return list(await deps.sessions.exchanges_before(ses_id, msg_id, HISTORY_TURNS))
