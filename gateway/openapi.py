"""The OpenAPI 3.1 document of the API, generated from the msgspec models. Pure: no I/O.

``OPERATIONS`` is the table, one row per operation; ``build()`` turns it into the document.
The parameter Structs and the dict-built response shapes it names are ``gateway/schemas.py``.
The schemas come from ``msgspec.json.schema_components`` over the very Structs the routes
decode and encode, so the document cannot drift from the wire format without a test noticing
(``tests/gateway/test_openapi.py`` compares the table with the app's routes). The 11 agent
operations carry the SDK's names as operationIds.

An SSE response's ``schema`` describes one event (``{event, data, id?, retry?}``), the way
OpenAPI 3.2's ``itemSchema`` and schemathesis read it; each event's ``data`` names its payload
schema through ``contentSchema``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from dataplane import models as dp
from gateway.schemas import (
    JSON,
    NDJSON,
    SSE,
    CollectionDeleted,
    CollectionList,
    DocumentBatch,
    DocumentCount,
    DocumentDeleted,
    DocumentView,
    Health,
    HistoryQuery,
    ListSessionsQuery,
    Readiness,
    ResumeHeaders,
    ResumeQuery,
    RetrieverDeleted,
    RetrieverList,
    RetrieverResults,
    RetrieverView,
    SendHeaders,
    SessionEventLine,
    SessionEventsHeaders,
    StreamToken,
    ToolsQuery,
)
from shared import models as m
from shared.events import EVENT_TYPES, TAG_FIELD

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 414, 415, 422, 429, 431, 500, 503)
_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                413: "PayloadTooLarge", 414: "UriTooLong", 415: "UnsupportedMediaType", 422: "ValidationError",
                429: "RateLimited", 431: "HeadersTooLarge", 500: "InternalError", 503: "ServiceUnavailable"}
_REF = "#/components/schemas/{name}"
_EVENT_REF = "#/components/schemas/event.{name}"


# The table

Body = Any  # a msgspec-convertible type: its JSON schema documents the content
Content = dict[str, Any]  # media type -> type, or a ready schema dict


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    ok: Body | Content  # the 200 body: a type (JSON) or {media type: type}
    body: Body | None = None
    body_required: bool = True
    query: type[msgspec.Struct] | None = None
    headers: type[msgspec.Struct] | None = None
    public: bool = False  # no authentication
    extra: dict[int, dict[str, Any]] | None = None  # more responses, as written


_S, _M = "/v1/agents/sessions", "/v1/agents/sessions/{session_id}/messages/{message_id}"
_C, _R = "/v1/collections/{collection_identifier}", "/v1/retrievers"
_AGENT, _COL, _DOC, _RET, _OPS = "Agent Sessions", "Collections", "Documents", "Retrievers", "Operations"
_EVENTS = "ServerSentEvent"  # a str names a component built here, not from a type
_SSE_OR_JSON = {SSE: _EVENTS, JSON: m.MessageResult}
_NO_CONTENT = {204: {"description": "The cursor is the message's last event: nothing more will come"}}
_NOT_READY = {503: {"description": "Not ready (Retry-After: 1)", "content": {JSON: {"schema": Readiness}}}}

OPERATIONS: tuple[Op, ...] = (
    Op("POST", _S, "create_session_agents", _AGENT, "Create Session", m.CreateSessionResponse, m.CreateSessionRequest),
    Op("POST", _S + "/list", "list_sessions_agents", _AGENT, "List Sessions", m.ListSessionsResponse,
       m.ListSessionsRequest, body_required=False, query=ListSessionsQuery),
    Op("GET", _S + "/tools", "list_tools_agents_sessions", _AGENT, "List Tools", m.ListToolsResponse, query=ToolsQuery),
    Op("GET", "/v1/agents/tools", "list_tools_agents", _AGENT, "List Tools (alias)", m.ListToolsResponse,
       query=ToolsQuery),
    Op("POST", _S + "/intent/detect", "detect_intent_agents_sessions", _AGENT, "Detect Intent",
       m.IntentClassification, m.DetectIntentRequest),
    Op("POST", "/v1/agents/intent/detect", "detect_intent_agents", _AGENT, "Detect Intent (alias)",
       m.IntentClassification, m.DetectIntentRequest),
    Op("GET", _S + "/{session_id}", "get_session_agents", _AGENT, "Get Session", m.GetSessionResponse),
    Op("PATCH", _S + "/{session_id}", "patch_session_agents", _AGENT, "Patch Session", m.PatchSessionResponse,
       m.PatchSessionRequest),
    Op("DELETE", _S + "/{session_id}", "terminate_session_agents", _AGENT, "Terminate Session",
       m.TerminateSessionResponse),
    Op("GET", _S + "/{session_id}/history", "get_history_agents_sessions", _AGENT, "Get History",
       m.GetHistoryResponse, query=HistoryQuery),
    Op("POST", _S + "/{session_id}/feedback", "submit_feedback_agents_sessions", _AGENT, "Submit Feedback",
       m.SubmitFeedbackResponse, m.SubmitFeedbackRequest),
    Op("POST", _S + "/{session_id}/messages", "send_message_agents_sessions", _AGENT, "Send Message",
       _SSE_OR_JSON, m.SendMessageRequest, headers=SendHeaders),
    Op("GET", _M + "/events", "get_message_events_agents_sessions", _AGENT, "Resume a message's events",
       {SSE: _EVENTS}, query=ResumeQuery, headers=ResumeHeaders, extra=_NO_CONTENT),
    Op("POST", _M + "/cancel", "cancel_message_agents_sessions", _AGENT, "Cancel a message", m.CancelResponse),
    Op("GET", _S + "/{session_id}/events", "get_session_events_agents_sessions", _AGENT, "Stream a session's log",
       {SSE: _EVENTS, NDJSON: SessionEventLine}, query=ResumeQuery, headers=SessionEventsHeaders),
    Op("POST", _M + "/stream-token", "create_message_stream_token", _AGENT, "Stream token for a message's events",
       StreamToken),
    Op("POST", _S + "/{session_id}/events/stream-token", "create_session_stream_token", _AGENT,
       "Stream token for a session's log", StreamToken),
    Op("POST", _S + "/{session_id}/confirmations/{confirmation_id}", "respond_to_confirmation_agents_sessions",
       _AGENT, "Respond To Confirmation", {SSE: _EVENTS}, m.ConfirmationRequest),
    Op("POST", "/v1/collections", "create_collection", _COL, "Create Collection", dp.CollectionView,
       dp.CreateCollectionRequest),
    Op("POST", "/v1/collections/list", "list_collections", _COL, "List Collections", CollectionList,
       dp.ListCollectionsRequest, body_required=False),
    Op("GET", _C, "get_collection", _COL, "Get Collection", dp.CollectionView),
    Op("DELETE", _C, "delete_collection", _COL, "Delete Collection", CollectionDeleted),
    Op("POST", _C + "/documents", "create_document", _DOC, "Create Document", DocumentView, dp.AddDocumentRequest),
    Op("POST", _C + "/documents/batch", "create_documents_batch", _DOC, "Create Documents", DocumentBatch,
       dp.AddDocumentsRequest),
    Op("GET", _C + "/documents/count", "count_documents", _DOC, "Count Documents", DocumentCount),
    Op("GET", _C + "/documents/{document_id}", "get_document", _DOC, "Get Document", DocumentView),
    Op("DELETE", _C + "/documents/{document_id}", "delete_document", _DOC, "Delete Document", DocumentDeleted),
    Op("POST", _R, "create_retriever", _RET, "Create Retriever", RetrieverView, dp.CreateRetrieverRequest),
    Op("POST", _R + "/list", "list_retrievers", _RET, "List Retrievers", RetrieverList, dp.ListRetrieversRequest,
       body_required=False),
    Op("POST", _R + "/execute", "execute_adhoc_retriever", _RET, "Execute Ad-hoc Retriever", RetrieverResults,
       dp.AdhocExecuteRequest),
    Op("GET", _R + "/{retriever_id}", "get_retriever", _RET, "Get Retriever", RetrieverView),
    Op("DELETE", _R + "/{retriever_id}", "delete_retriever", _RET, "Delete Retriever", RetrieverDeleted),
    Op("POST", _R + "/{retriever_id}/execute", "execute_retriever", _RET, "Execute Retriever", RetrieverResults,
       dp.ExecuteRetrieverRequest, body_required=False),
    Op("GET", "/healthz", "healthz", _OPS, "Liveness", Health, public=True),
    Op("GET", "/", "console_home", _OPS, "The web console (redirects to /console/)", {"text/html": str},
       public=True, extra={307: {"description": "Redirect to /console/"}}),
    Op("GET", "/readyz", "readyz", _OPS, "Readiness", Readiness, public=True, extra=_NOT_READY),
)


# The builder

_PATH_PARAM = re.compile(r"{([^}:]+)}")
_BODY_NOTE = ("Keys this body does not declare are refused with 422 extra_forbidden, naming the accepted "
              "keys.")


def build(operations: tuple[Op, ...] = OPERATIONS, *, title: str = "agentstream", version: str = "0.1.0",
          served: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The document for ``operations``; with ``served`` (method, path pairs), only those served."""
    ops = [op for op in operations if served is None or (op.method, op.path) in served]
    types = sorted({m.ErrorResponse, *(t for op in ops for t in _types(op))}, key=repr)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    events = list(EVENT_TYPES.values())
    event_schemas, event_components = msgspec.json.schema_components(events, ref_template=_EVENT_REF)
    for schema in event_components.values():  # the payload has no tag: it is the SSE event name
        schema.get("properties", {}).pop(TAG_FIELD, None)
        if TAG_FIELD in schema.get("required", ()):
            schema["required"] = [r for r in schema["required"] if r != TAG_FIELD]
    components.update({f"event.{name}": s for name, s in event_components.items()})
    components[_EVENTS] = _sse_schema(EVENT_TYPES, event_schemas)
    schema_of = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Mixpeek-compatible agent sessions over Redis Streams."},
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in ops)],
        "security": [{"BearerAuth": [], "NamespaceHeader": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {_ERROR_NAMES[s]: _error_response(s) for s in ERROR_STATUSES},
            "securitySchemes": {
                "BearerAuth": {"type": "http", "scheme": "bearer", "description": "The API key"},
                "NamespaceHeader": {"type": "apiKey", "in": "header", "name": "X-Namespace",
                                    "description": "Namespace name or ns_ id (optional with a "
                                                   "single-namespace key; ?namespace= also works)"},
            },
        },
    }


def _types(op: Op) -> list[Any]:
    out = [] if op.body is None else [op.body]
    out += [t for t in (op.ok.values() if isinstance(op.ok, dict) else [op.ok]) if not isinstance(t, str)]
    for params in (op.query, op.headers):
        out += [f.type for f in msgspec.structs.fields(params)] if params else []
    for response in (op.extra or {}).values():
        out += [c["schema"] for c in response.get("content", {}).values()]
    return out


def _operation(op: Op, schema_of: dict[Any, Any]) -> dict[str, Any]:
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in _PATH_PARAM.findall(op.path)]
    params += _params(op.query, "query", schema_of) + _params(op.headers, "header", schema_of)
    ok = op.ok if isinstance(op.ok, dict) else {JSON: op.ok}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {
        media: {"schema": {"$ref": _REF.format(name=t)} if isinstance(t, str) else schema_of[t]}
        for media, t in ok.items()}}}
    for status, response in (op.extra or {}).items():
        content = {media: {"schema": schema_of[c["schema"]]} for media, c in response.get("content", {}).items()}
        responses[str(status)] = {**response, **({"content": content} if content else {})}
    for status in ERROR_STATUSES:
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{_ERROR_NAMES[status]}"})
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "description": _BODY_NOTE,
                              "content": {JSON: {"schema": schema_of[op.body]}}}
    out["responses"] = responses
    if op.public:
        out["security"] = []
    return out


def _params(struct: type[msgspec.Struct] | None, where: str, schema_of: dict[Any, Any]) -> list[dict[str, Any]]:
    out = []
    for f in msgspec.structs.fields(struct) if struct else ():
        schema = dict(schema_of[f.type])
        param = {"name": f.encode_name, "in": where, "required": f.required, "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        out.append(param)
    return out


def _sse_schema(event_types: dict[str, Any], refs: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One Server-Sent Event: data is the JSON payload of the event named by event.",
        "required": ["event", "data"],
        "properties": {"event": {"enum": list(event_types)}, "data": {"type": "string"},
                       "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 0}},
        "oneOf": [{"properties": {"event": {"const": name}, "data": {
            "contentMediaType": JSON, "contentSchema": ref}}} for name, ref in zip(event_types, refs, strict=True)],
    }


def _error_response(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _ERROR_NAMES[status],
                           "content": {JSON: {"schema": {"$ref": _REF.format(name="ErrorResponse")}}}}
    if status in (429, 503):
        out["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                          "schema": {"type": "integer", "minimum": 0}}}
    return out
