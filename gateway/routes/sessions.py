"""Session routes: create, get, patch, terminate, list, history, feedback, tools, intent."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dataplane import catalogue
from gateway.auth import authenticate
from gateway.bodies import parse, read_body
from gateway.context import services
from intent import classify
from shared import model_catalogue, models
from shared.errors import BadRequest, Invalid, NotFound
from shared.ids import iso, now_ms
from shared.settings import Settings
from shared.stores import sessions
from shared.stores.session_log import FeedbackEntry

_encoder = msgspec.json.Encoder()


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


def effective_config(config: models.AgentConfig, raw: bytes,
                     settings: Settings) -> tuple[models.AgentConfig, model_catalogue.Resolved]:
    """The session's config and the model that will run it, from the catalogue (422 if none can
    run here). A request that names no model gets the default's name; ``max_tokens`` and
    ``temperature`` it leaves out (or sends as null) take the model's configured defaults."""
    resolved = model_catalogue.resolve(settings, config.model)
    given = msgspec.json.decode(raw).get("agent_config") or {}
    changes: dict[str, Any] = {"model": config.model or resolved.name}
    if resolved.entry is not None:
        for name in ("max_tokens", "temperature"):
            default = getattr(resolved.entry, name)
            if default is not None and given.get(name) is None:
                changes[name] = default
    return msgspec.structs.replace(config, **changes), resolved


async def create_session(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    raw = await read_body(request, svc.settings.max_body_bytes)
    req = parse(raw, models.CreateSessionRequest)
    unknown = set(req.agent_config.available_tools or ()) - set(catalogue.BY_NAME)
    if unknown:
        raise Invalid(f"Unknown tools in available_tools: {', '.join(sorted(unknown))}",
                      code="unknown_tool", details={"unknown": sorted(unknown),
                                                    "accepted": sorted(catalogue.BY_NAME)})
    config, resolved = effective_config(req.agent_config, raw, svc.settings)
    req = msgspec.structs.replace(req, agent_config=config)
    h = await svc.sessions.create(caller.namespace_id, caller.principal.org_id, req, resolved.name,
                                  resolved.provider)
    s = sessions.to_response(h)
    return json(models.CreateSessionResponse(
        session_id=s.session_id, namespace_id=s.namespace_id, internal_id=s.internal_id,
        session_name=None, status=s.status, created_at=s.created_at, expires_at=s.expires_at))


async def get_session(request: Request) -> Response:
    caller = await authenticate(request)
    h = await services(request).sessions.load(caller.namespace_id, request.path_params["session_id"])
    return json(sessions.to_response(h))


async def patch_session(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    req = parse(await read_body(request, svc.settings.max_body_bytes), models.PatchSessionRequest)
    if req.user_memory is None and req.session_name is None:
        raise Invalid("Send user_memory (replaces the session's memory) or session_name (renames it)",
                      code="invalid_body", details={"accepted_keys": ["user_memory", "session_name"]})
    when = 0
    if req.user_memory is not None:
        when = await svc.sessions.patch_memory(ses_id, req.user_memory)
    if req.session_name is not None:
        when = await svc.sessions.rename(ses_id, req.session_name)
    return json(models.PatchSessionResponse(session_id=ses_id, updated_at=iso(when)))


async def terminate_session(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    when = await svc.sessions.terminate(ses_id)
    return json(models.TerminateSessionResponse(session_id=ses_id, status="terminated", terminated_at=iso(when)))


def _digits(raw: str) -> bool:
    """ASCII digits only, and not absurdly many: ``int()`` also takes "١٢", " 7\n", "1_0" and
    "+1", and refuses past 4,300 digits with an error of its own (issue 15.9)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 12


def _int_param(request: Request, name: str, low: int, high: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _digits(raw):
        raise Invalid(f"{name} must be a non-negative integer in ASCII digits", code="invalid_query",
                      details={"param": name})
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise Invalid(f"{name} must be {bound}", code="invalid_query", details={"param": name})
    return value


async def list_sessions(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    req = parse(await read_body(request, svc.settings.max_body_bytes), models.ListSessionsRequest, optional=True)
    limit = _int_param(request, "limit", 1, 1000) or _int_param(request, "page_size", 1, 1000) or 20
    offset = _int_param(request, "offset", 0, 10_000)
    page = _int_param(request, "page", 1, None)
    cursor = request.query_params.get("cursor") or request.query_params.get("next_cursor") or \
        request.query_params.get("after")
    if offset is None:
        if cursor is not None:
            if not _digits(cursor):
                raise BadRequest("Malformed cursor", code="invalid_cursor")
            offset = int(cursor)
        else:
            offset = ((page or 1) - 1) * limit
    sort_field = str((req.sort or {}).get("field", "created_at"))
    desc = str((req.sort or {}).get("direction", (req.sort or {}).get("order", "desc"))).lower() != "asc"
    status = req.status or (req.filters or {}).get("status")
    if set(req.filters or {}) <= {"status"} and sort_field == "created_at" and \
            (status is None or isinstance(status, str)) and (req.status is None or req.status == status):
        # the common listings: a page of an index, whatever the namespace's size (issue 15.8)
        if status is None:
            rows, total = await svc.sessions.page(caller.namespace_id, offset, limit, newest_first=desc)
        else:
            rows, total = await svc.sessions.page_by_status(caller.namespace_id, status, offset, limit,
                                                            newest_first=desc)
        return _listing([sessions.to_response(h) for h in rows], total, offset, limit)
    ids = list(reversed(await svc.sessions.list_ids(caller.namespace_id)))  # newest first
    records = [sessions.to_response(h) for h in await svc.sessions.load_many(caller.namespace_id, ids)]
    if req.status:
        records = [r for r in records if r.status == req.status]
    for key, value in (req.filters or {}).items():
        if key not in {"user_id", "session_name", "status"}:
            raise Invalid(f"Unsupported filter {key!r}", code="invalid_filter",
                          details={"accepted_keys": ["user_id", "session_name", "status"]})
        records = [r for r in records if getattr(r, key) == value]
    if req.sort:
        field = str(req.sort.get("field", "created_at"))
        if field not in {"created_at", "updated_at", "last_activity_at", "message_count"}:
            raise Invalid(f"Unsupported sort field {field!r}", code="invalid_sort")
        desc = str(req.sort.get("direction", req.sort.get("order", "desc"))).lower() != "asc"
        records.sort(key=lambda r: getattr(r, field), reverse=desc)
    return _listing(records[offset: offset + limit], len(records), offset, limit)


def _listing(window: list[models.GetSessionResponse], total: int, offset: int, limit: int) -> Response:
    has_next = offset + limit < total
    pagination = {"method": "offset", "limit": limit, "offset": offset, "returned": len(window),
                  "total": total, "has_next": has_next,
                  "next_cursor": str(offset + limit) if has_next else None,
                  "page": offset // limit + 1}
    return json(models.ListSessionsResponse(results=window, total=total, pagination=pagination))


async def get_history(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    await svc.sessions.load(caller.namespace_id, ses_id)
    limit = _int_param(request, "limit", 1, 200) or 50
    offset = _int_param(request, "offset", 0, None) or 0
    items, total = await svc.sessions.history(ses_id, limit, offset)
    return json(models.GetHistoryResponse(session_id=ses_id, messages=items, total_messages=total,
                                          returned_messages=len(items), has_more=offset + len(items) < total))


async def submit_feedback(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    ses_id = request.path_params["session_id"]
    h = await svc.sessions.load(caller.namespace_id, ses_id)
    req = parse(await read_body(request, svc.settings.max_body_bytes), models.SubmitFeedbackRequest)
    record = await svc.messages.record(ses_id, req.message_id) if req.message_id.startswith("msg_") else None
    if record is None or record.session_id != ses_id:
        raise NotFound("Message not found", code="message_not_found", details={"message_id": req.message_id})
    if record.terminal_type != "done":
        raise BadRequest("Only a completed answer can be rated", code="message_not_completed",
                         details={"message_id": req.message_id, "status": record.status})
    stored = req.rating == "positive" and h.get(b"enable_memory") == b"1"
    if stored:
        answer = msgspec.json.decode(await svc.messages.final_payload(record) or b"{}").get("content", "")
        await svc.sessions.remember(ses_id, req.message_id, record.content, answer)
    now = now_ms()
    await svc.sessions.append_log(ses_id, FeedbackEntry(message_id=req.message_id, ts=now, rating=req.rating,
                                                        feedback_text=req.feedback_text, stored=stored))
    return json(models.SubmitFeedbackResponse(session_id=ses_id, message_id=req.message_id,
                                              rating=req.rating, stored=stored, recorded_at=iso(now)))


async def list_tools(request: Request) -> Response:
    await authenticate(request)
    category = request.query_params.get("category")
    tools = [t for t in catalogue.TOOLS if category is None or t.category == category]
    return json(models.ListToolsResponse(results=tools, total=len(tools), categories=catalogue.CATEGORIES))


async def detect_intent(request: Request) -> Response:
    caller = await authenticate(request)
    svc = services(request)
    req = parse(await read_body(request, svc.settings.max_body_bytes), models.DetectIntentRequest)
    c = await asyncio.to_thread(classify, req.user_request)  # CPU-bound: off the event loop
    options = None
    if c.clarification_needed:
        options = [
            models.ClarificationOption(label="Search existing data", description="Run a search over your collections",
                                       action="execute_retriever"),
            models.ClarificationOption(label="Set up a pipeline", description="Create a collection and ingest data",
                                       action="setup_pipeline"),
        ]
    suitable = None
    if req.include_collection_analysis is not False:
        from dataplane.service import DataPlane  # noqa: PLC0415 - optional data plane

        suitable = await DataPlane(svc.redis).suitable_collections(caller.namespace_id, req.user_request)
    return json(models.IntentClassification(
        intent=c.intent, confidence=c.confidence, reasoning=c.reasoning,  # type: ignore[arg-type]
        recommended_action=c.recommended_action, clarification_needed=c.clarification_needed,
        suitable_collections=suitable, clarification_options=options, keywords_found=c.keywords))


PREFIX = "/v1/agents/sessions"
ROUTES = [
    Route(PREFIX, create_session, methods=["POST"]),
    Route(PREFIX + "/list", list_sessions, methods=["POST"]),
    # before /{session_id}, or "tools" would be taken for a session id
    Route(PREFIX + "/tools", list_tools, methods=["GET"]),
    Route("/v1/agents/tools", list_tools, methods=["GET"]),
    Route(PREFIX + "/intent/detect", detect_intent, methods=["POST"]),
    Route("/v1/agents/intent/detect", detect_intent, methods=["POST"]),
    Route(PREFIX + "/{session_id}", get_session, methods=["GET"]),
    Route(PREFIX + "/{session_id}", patch_session, methods=["PATCH"]),
    Route(PREFIX + "/{session_id}", terminate_session, methods=["DELETE"]),
    Route(PREFIX + "/{session_id}/history", get_history, methods=["GET"]),
    Route(PREFIX + "/{session_id}/feedback", submit_feedback, methods=["POST"]),
]
