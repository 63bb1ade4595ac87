"""What the OpenAPI document describes that is not a wire model of ``shared.models`` or
``dataplane.models``: a Struct per operation's parameters, and the shapes the health and
data-plane routes build as dicts. The table in ``gateway/openapi.py`` names them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from dataplane import models as dp

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
JSON = "application/json"


# Parameters: a Struct per operation; each field is a parameter (its encode name is the wire name)


class ListSessionsQuery(msgspec.Struct):
    limit: Annotated[int, Meta(ge=1, le=1000)] | UnsetType = UNSET
    page_size: Annotated[int, Meta(ge=1, le=1000)] | UnsetType = UNSET
    offset: Annotated[int, Meta(ge=0, le=10_000)] | UnsetType = UNSET
    page: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    cursor: Annotated[str, Meta(description="next_cursor of the previous page")] | UnsetType = UNSET
    next_cursor: str | UnsetType = UNSET
    after: str | UnsetType = UNSET
    include_total: bool | UnsetType = UNSET


class HistoryQuery(msgspec.Struct):
    limit: Annotated[int, Meta(ge=1, le=200, description="Maximum messages to return")] | UnsetType = UNSET
    offset: Annotated[int, Meta(ge=0, description="Pagination offset")] | UnsetType = UNSET


class ToolsQuery(msgspec.Struct):
    category: Annotated[str, Meta(description="Filter by tool category")] | UnsetType = UNSET


_CURSOR = "Resume after this event: the id: of the last event received"


class SendHeaders(msgspec.Struct):
    last_event_id: Annotated[str, Meta(description=_CURSOR)] | UnsetType = msgspec.field(
        default=UNSET, name="Last-Event-ID")
    idempotency_key: Annotated[str, Meta(description="A retried send with the same key and body returns "
                                                     "the first message")] | UnsetType = msgspec.field(
        default=UNSET, name="Idempotency-Key")


class ResumeHeaders(msgspec.Struct):
    last_event_id: Annotated[str, Meta(description=_CURSOR)] | UnsetType = msgspec.field(
        default=UNSET, name="Last-Event-ID")


class ResumeQuery(msgspec.Struct):
    last_event_id: Annotated[str, Meta(description="Last-Event-ID, for clients that cannot set "
                                                   "headers")] | UnsetType = UNSET
    access_token: Annotated[str, Meta(description="A stream token (X-Stream-Token of the send, or POST "
                                                  ".../stream-token), for a browser EventSource, which "
                                                  "cannot send Authorization")] | UnsetType = UNSET


class SessionEventsHeaders(ResumeHeaders):
    accept: Annotated[str, Meta(description=f"{NDJSON} for JSON lines instead of SSE")] | UnsetType = \
        msgspec.field(default=UNSET, name="Accept")


class StreamToken(msgspec.Struct):
    token: Annotated[str, Meta(description="Pass as ?access_token= on the event-stream GET it names")]
    expires_at: str
    expires_in: Annotated[int, Meta(description="Seconds; renew with the same call")]


# Shapes the health and data-plane routes build as dicts (documented here, checked by the fuzz test)


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    redis: bool
    workers: int
    live_path: bool
    draining: bool
    error: str | UnsetType = UNSET


class CollectionList(msgspec.Struct):
    results: list[dp.CollectionView]
    total: int
    pagination: dict[str, Any]


class CollectionDeleted(msgspec.Struct):
    collection_id: str
    collection_name: str
    deleted: bool
    documents_deleted: int


class DocumentView(msgspec.Struct):
    document_id: str
    collection_id: str
    metadata: dict[str, Any]
    created_at: str


class DocumentBatch(msgspec.Struct):
    collection_id: str
    documents: list[DocumentView]
    total: int


class DocumentCount(msgspec.Struct):
    collection_id: str
    count: int


class DocumentDeleted(msgspec.Struct):
    document_id: str
    collection_id: str
    deleted: bool


class RetrieverView(msgspec.Struct):
    retriever_id: str
    retriever_name: str
    description: str | None
    collection_identifiers: list[str]
    stages: list[dict[str, Any]]
    input_schema: dict[str, Any] | None
    tags: list[str] | None
    metadata: dict[str, Any] | None
    created_at: str


class RetrieverList(msgspec.Struct):
    results: list[RetrieverView]
    total: int


class RetrieverDeleted(msgspec.Struct):
    retriever_id: str
    retriever_name: str
    deleted: bool


class ScoredDocument(msgspec.Struct):
    document_id: str
    collection_id: str
    score: float
    metadata: dict[str, Any]


class RetrieverResults(msgspec.Struct):
    execution_id: str
    status: str
    retriever_id: str | None
    documents: list[ScoredDocument]
    pagination: dict[str, Any]
    stage_statistics: dict[str, Any]
    budget: dict[str, Any]
    cache_hit: bool
    warnings: list[str] | UnsetType = UNSET


class SessionEventLine(msgspec.Struct):
    """One line of the session log as JSON lines: the SSE event plus where it belongs."""

    id: str | None
    message_id: str
    type: str
    timestamp: str | None
    payload: dict[str, Any]
