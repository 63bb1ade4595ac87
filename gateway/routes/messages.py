"""Message routes: send (SSE or JSON), resume a message's events, cancel, confirmations."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import sse
from gateway.auth import authenticate
from gateway.bodies import parse, read_body
from gateway.context import Services, services
from gateway.hub import HubClosed, Subscription
from gateway.limits import StreamSlot
from gateway.routes.sessions import json
from gateway.routes.tokens import mint
from gateway.streaming import EventStreamResponse, Reader, open_reader, reader_for_new
from shared import cursor as cur
from shared import keys, models
from shared.errors import ApiError, BadRequest, Invalid, NotFound, Unavailable
from shared.ids import new_id, now_ms
from shared.stores import jobs, turns
from shared.stores.messages import Accepted
from shared.stores.session_log import UserEntry

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class AgentFailed(ApiError):
    """``stream: false`` and the message ended with ``error``."""

    status = 500
    type = "AgentError"


def events_url(ses_id: str, msg_id: str) -> str:
    return f"/v1/agents/sessions/{ses_id}/messages/{msg_id}/events"


def _cursor(request: Request) -> tuple[int, int] | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    try:
        return cur.parse(raw)
    except cur.CursorError as exc:
        raise BadRequest(str(exc), code="invalid_last_event_id", details={"last_event_id": raw[:64]}) from None


MULTITASK_HEADER = "x-agentstream-multitask"
# Error codes that end a message because someone asked it to stop (the JSON answer's "cancelled").
_STOPPED = frozenset({"cancelled", "interrupted", "rolled_back"})


def _strategy(request: Request, default: str) -> str:
    """What this message does if another message of its session is running (issue 20)."""
    raw = request.headers.get(MULTITASK_HEADER)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in turns.STRATEGIES:
        raise Invalid(f"X-Agentstream-Multitask must be one of {', '.join(turns.STRATEGIES)}",
                      code="invalid_multitask", details={"accepted": list(turns.STRATEGIES), "got": raw[:32]})
    return value


async def send_message(request: Request) -> Response:
    """Round trips to Redis on the happy path: key lookup, subscribe (hub), one pipeline that
    records the message (reaper index, msg -> session, ACCEPT script), one ENQUEUE script, and
    the first stream read (see the README's note on the send path)."""
    caller = await authenticate(request)
    svc = services(request)
    svc.refuse_when_draining()
    ses_id = request.path_params["session_id"]
    try:
        if not ses_id.startswith("ses_"):
            raise NotFound("Session not found", code="session_not_found", details={"session_id": ses_id})
        raw = await read_body(request, svc.settings.max_body_bytes)
        req = parse(raw, models.SendMessageRequest)
        if len(req.content) > svc.settings.max_content_chars:
            raise Invalid(f"content is longer than {svc.settings.max_content_chars} characters",
                          code="content_too_long", details={"limit_chars": svc.settings.max_content_chars})
        after = _cursor(request)
        strategy = _strategy(request, svc.settings.multitask_default)
    except ApiError:
        # An unknown session answers 404 before any complaint about the request, as always; on
        # the happy path the ACCEPT script checks the session itself (one round trip fewer).
        await svc.sessions.load(caller.namespace_id, ses_id)
        raise
    idem = request.headers.get("idempotency-key")
    idem_hash = hashlib.sha256(idem.encode()).hexdigest() if idem else None
    body_hash = hashlib.sha256(_encoder.encode(req)).hexdigest()
    msg_id = new_id("msg")
    # A refusal must record nothing (429 too_many_streams used to come after the accept, so the
    # refused message ran anyway): the stream slot is taken first and given back on any failure.
    slot = stream_slot(request) if req.stream is not False else None
    if slot is not None:
        await slot.acquire()
    try:
        reader, acc = await _accept(svc, caller.namespace_id, ses_id, msg_id, req.content, idem_hash, body_hash,
                                    strategy, after)
    except BaseException:
        if slot is not None:
            await slot.release()
        raise
    msg_id = acc.message_id
    headers = {"X-Message-Id": msg_id, "Content-Location": events_url(ses_id, msg_id),
               "X-Stream-Token": (await mint(svc, caller, ses_id, msg_id))[0]}  # for browsers (contract A)
    if idem:
        headers["Idempotent-Replayed"] = "false" if acc.created else "true"
    if req.stream is False:
        return await _json_answer(svc, reader, ses_id, msg_id, headers)
    return EventStreamResponse(reader, svc.settings.sse_retry_ms, {**sse.HEADERS, **headers},  # type: ignore[return-value]
                               on_close=slot.release if slot is not None else None)


async def _accept(svc: Services, ns_id: str, ses_id: str, msg_id: str, content: str, idem_hash: str | None,
                  body_hash: str, strategy: str, after: tuple[int, int] | None) -> tuple[Reader, Accepted]:
    """Record the message, start it (or queue it behind the running one) and open its reader."""
    # Subscribed before the message exists, the live path carries every entry it will ever
    # have: no record or stream probe is needed to start reading.
    sub = await _subscribe(svc, ses_id, msg_id)
    try:
        acc = await svc.messages.submit(ses_id, ns_id, msg_id, UserEntry(message_id=msg_id, ts=now_ms(), content=content),
                                        content, idem_hash, body_hash, strategy)
    except BaseException:
        sub.unsubscribe()
        raise
    if acc.created:
        if acc.runs_now:
            await jobs.enqueue(svc.arq, svc.settings, ses_id, msg_id)
        if acc.revived:
            await jobs.enqueue(svc.arq, svc.settings, ses_id, acc.revived)
        if acc.holder and strategy in ("interrupt", "rollback"):
            await turns.end_holder(svc.messages, ses_id, acc.holder, msg_id, keep_work=strategy == "interrupt")
    if acc.created and after is None:
        return reader_for_new(svc.messages, sub, svc.settings, ses_id, msg_id), acc
    sub.unsubscribe()  # an idempotent replay names another message; a cursor needs the full plan
    return await open_reader(svc.messages, svc.hub, svc.settings, ses_id, acc.message_id, after), acc


async def _subscribe(svc: Services, ses_id: str, msg_id: str) -> Subscription:
    try:
        return await svc.hub.subscribe(keys.live_channel(ses_id, msg_id))
    except (HubClosed, TimeoutError):
        raise Unavailable("The live event path is reconnecting; retry shortly", code="hub_unavailable",
                          details={"retryable": True, "retry_after_seconds": 1},
                          headers={"Retry-After": "1"}) from None


def stream_slot(request: Request) -> StreamSlot:
    svc = services(request)
    return StreamSlot(svc.leases, svc.settings, request.state.key_hash, svc.streams)


async def sse_answer(request: Request, ses_id: str, msg_id: str, after: tuple[int, int] | None,
                     headers: dict[str, str], slot: StreamSlot | None = None) -> Response:
    """``slot``: already acquired by a caller that must refuse before it records anything."""
    svc = services(request)
    if slot is None:
        svc.refuse_when_draining()
        slot = stream_slot(request)
        await slot.acquire()
    try:
        reader = await open_reader(svc.messages, svc.hub, svc.settings, ses_id, msg_id, after)
    except BaseException:
        await slot.release()
        raise
    return EventStreamResponse(reader, svc.settings.sse_retry_ms, {**sse.HEADERS, **headers},  # type: ignore[return-value]
                               on_close=slot.release)


async def _json_answer(svc: Services, reader: Reader, ses_id: str, msg_id: str, headers: dict[str, str]) -> Response:
    seen: dict[str, Any] = {}
    try:
        async with asyncio.timeout(svc.settings.sync_timeout_s):
            async for batch in reader:
                for _, t, d in batch or ():
                    kind = t.decode()
                    if kind == "reset":
                        continue
                    seen[kind] = _decoder.decode(d)
    except TimeoutError:
        raise Unavailable("The answer is still being generated; follow it at events_url",
                          code="answer_pending", headers={"Retry-After": "5", **headers},
                          details={"message_id": msg_id, "events_url": events_url(ses_id, msg_id)}) from None
    finally:
        await reader.aclose()
    result = _result(ses_id, msg_id, seen)
    if result.status == "failed":
        err = result.error or {}
        raise AgentFailed(str(err.get("message", "The agent failed")), code=err.get("code") or "agent_error",
                          details={"message_id": msg_id, "recoverable": bool(err.get("recoverable")),
                                   "events_url": result.events_url}, headers=headers)
    return json(result, headers=headers)


def _result(ses_id: str, msg_id: str, seen: dict[str, Any]) -> models.MessageResult:
    message = seen.get("message") or {}
    done = seen.get("done") or {}
    err = seen.get("error")
    if "done" in seen:
        status = "completed"
    elif err is not None:
        status = "cancelled" if err.get("code") in _STOPPED else "failed"
    elif "confirmation_required" in seen:
        status = "awaiting_confirmation"
    else:
        status = "running"
    return models.MessageResult(
        message_id=msg_id, session_id=ses_id, status=status,
        content=str(message.get("content", "")),
        intent=seen.get("intent"),
        tool_calls_made=int(done.get("tool_calls_made", 0)),
        retriever_summary=done.get("retriever_summary") or {},
        data_accessed_via_retriever=bool(done.get("data_accessed_via_retriever", False)),
        latency_ms=float(done.get("latency_ms", 0.0)),
        session_name=(seen.get("session_name") or {}).get("session_name"),
        events_url=events_url(ses_id, msg_id),
        error=err,
        confirmation=seen.get("confirmation_required"),
    )


async def _message(request: Request) -> tuple[Services, str, str]:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    msg_id = request.path_params["message_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    record = await svc.messages.record(ses_id, msg_id) if msg_id.startswith("msg_") else None
    if record is None:
        raise NotFound("Message not found", code="message_not_found", details={"message_id": msg_id})
    return svc, ses_id, msg_id


async def message_events(request: Request) -> Response:
    svc, ses_id, msg_id = await _message(request)
    after = _cursor(request)
    record = await svc.messages.record(ses_id, msg_id)
    if record and record.terminal_id and after == cur.parse(record.terminal_id):
        # The reader has everything: 204 tells an EventSource to stop reconnecting. (A cursor
        # beyond the terminal event is not "everything": it gets a cursor_ahead reset.)
        return Response(status_code=204, headers={"X-Message-Id": msg_id})
    return await sse_answer(request, ses_id, msg_id, after, {"X-Message-Id": msg_id})


async def cancel_message(request: Request) -> Response:
    svc, ses_id, msg_id = await _message(request)
    cancelled = await svc.messages.cancel(ses_id, msg_id)
    record = await svc.messages.record(ses_id, msg_id)
    return json(models.CancelResponse(message_id=msg_id, session_id=ses_id,
                                      status=record.status if record else "cancelled", cancelled=cancelled))


PREFIX = "/v1/agents/sessions/{session_id}"
ROUTES = [
    Route(PREFIX + "/messages", send_message, methods=["POST"]),
    Route(PREFIX + "/messages/{message_id}/events", message_events, methods=["GET"]),
    Route(PREFIX + "/messages/{message_id}/cancel", cancel_message, methods=["POST"]),
]
