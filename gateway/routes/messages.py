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
from gateway.auth import Caller, authenticate
from gateway.bodies import parse, read_body
from gateway.context import Services, services
from gateway.limits import StreamSlot
from gateway.routes.sessions import json
from gateway.routes.tokens import mint
from gateway.streaming import EventStreamResponse, open_reader
from shared import cursor as cur
from shared import keys, models
from shared.errors import ApiError, BadRequest, Invalid, NotFound, Unavailable
from shared.ids import new_id, now_ms
from shared.stores import jobs
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


async def send_message(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    if svc.draining:
        raise Unavailable("This gateway is shutting down; retry", code="draining",
                          headers={"Retry-After": "1"}, details={"retryable": True, "retry_after_seconds": 1})
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    raw = await read_body(request, svc.settings.max_body_bytes)
    req = parse(raw, models.SendMessageRequest)
    if len(req.content) > svc.settings.max_content_chars:
        raise Invalid(f"content is longer than {svc.settings.max_content_chars} characters",
                      code="content_too_long", details={"limit_chars": svc.settings.max_content_chars})
    after = _cursor(request)
    idem = request.headers.get("idempotency-key")
    idem_hash = hashlib.sha256(idem.encode()).hexdigest() if idem else None
    body_hash = hashlib.sha256(_encoder.encode(req)).hexdigest()
    msg_id = new_id("msg")
    now = now_ms()
    # Index for the reaper first: a gateway that dies after this point leaves a message the
    # reaper will enqueue (or drop, if the accept below never happened).
    await svc.redis.zadd(keys.ACTIVE, {f"{ses_id}/{msg_id}": now + 5_000})
    created, msg_id_final = await _accept(svc, caller, ses_id, msg_id, req.content, idem_hash, body_hash, now)
    if created:
        await jobs.enqueue(svc.arq, svc.redis, svc.settings, ses_id, msg_id)
    msg_id = msg_id_final
    headers = {"X-Message-Id": msg_id, "Content-Location": events_url(ses_id, msg_id),
               "X-Stream-Token": (await mint(svc, caller, ses_id, msg_id))[0]}  # for browsers (contract A)
    if idem:
        headers["Idempotent-Replayed"] = "false" if created else "true"
    if req.stream is False:
        return await _json_answer(svc, ses_id, msg_id, headers)
    return await sse_answer(request, ses_id, msg_id, after, headers)


async def _accept(svc: Services, caller: Caller, ses_id: str, msg_id: str, content: str,
                  idem_hash: str | None, body_hash: str, now: int) -> tuple[bool, str]:
    try:
        created, final = await svc.messages.accept(ses_id, caller.namespace_id, msg_id,
                                                   UserEntry(message_id=msg_id, ts=now, content=content),
                                                   content, idem_hash, body_hash)
    except BaseException:
        await svc.redis.zrem(keys.ACTIVE, f"{ses_id}/{msg_id}")
        raise
    if not created:
        await svc.redis.zrem(keys.ACTIVE, f"{ses_id}/{msg_id}")
    return created, final


async def sse_answer(request: Request, ses_id: str, msg_id: str, after: tuple[int, int] | None,
                     headers: dict[str, str]) -> Response:
    svc = services(request)
    slot = StreamSlot(svc.redis, svc.settings, request.state.key_hash, svc.streams)
    await slot.acquire()
    try:
        reader = await open_reader(svc.messages, svc.hub, svc.settings, ses_id, msg_id, after)
    except BaseException:
        await slot.release()
        raise
    return EventStreamResponse(reader, svc.settings.sse_retry_ms, {**sse.HEADERS, **headers},  # type: ignore[return-value]
                               on_close=slot.release)


async def _json_answer(svc: Services, ses_id: str, msg_id: str, headers: dict[str, str]) -> Response:
    reader = await open_reader(svc.messages, svc.hub, svc.settings, ses_id, msg_id, None)
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
        status = "cancelled" if err.get("code") == "cancelled" else "failed"
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
