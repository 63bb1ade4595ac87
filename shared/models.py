"""Request and response bodies of the agent-sessions API (reference §3 and §8).

Request bodies forbid unknown keys (422 ``extra_forbidden``); responses carry exactly the SDK
models' fields, all present where the SDK requires them (its models are strict).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant with access to Mixpeek's data infrastructure."
BUILTIN_MODEL = "agentstream-builtin"

SessionStatus = Literal["active", "idle", "archived", "terminated"]
PositiveInt = Annotated[int, Meta(ge=1)]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """Base of request bodies."""


class AgentConfig(Request, omit_defaults=False):
    # None: the server's default (shared/model_catalogue.py). The SDK always sends its own default.
    model: str | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = 0.7
    max_tokens: Annotated[int, Meta(ge=1, le=100_000)] | None = 4096
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    available_tools: list[str] | None = None


class SessionQuotas(Request):
    max_messages: PositiveInt | None = None
    max_tokens_total: PositiveInt | None = None
    max_tool_calls: PositiveInt | None = None
    max_session_duration_minutes: PositiveInt | None = None
    rate_limit_messages_per_minute: PositiveInt | None = None


class CreateSessionRequest(Request):
    agent_config: AgentConfig
    quotas: SessionQuotas | None = None
    user_id: str | None = None
    user_memory: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    enable_memory: bool | None = True


class PatchSessionRequest(Request):
    # The reference requires user_memory; a rename alone (an extension the console uses) may
    # omit it. One of the two is required (422 invalid_body otherwise).
    user_memory: dict[str, Any] | None = None
    session_name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class ListSessionsRequest(Request):
    status: SessionStatus | None = None
    filters: dict[str, Any] | None = None
    sort: dict[str, Any] | None = None


class SendMessageRequest(Request):
    content: Annotated[str, Meta(min_length=1)]
    metadata: dict[str, Any] | None = None
    stream: bool | None = True


class SubmitFeedbackRequest(Request):
    message_id: str
    rating: Literal["positive", "negative"]
    feedback_text: str | None = None


class ConfirmationRequest(Request):
    approved: bool


class DetectIntentRequest(Request):
    user_request: Annotated[str, Meta(min_length=1)]
    include_collection_analysis: bool | None = True


# Responses


class Response(msgspec.Struct):
    pass


class SessionStats(Response):
    total_messages: int = 0
    total_tokens: int = 0
    total_tool_calls: int = 0
    avg_latency_ms: float = 0.0


class CreateSessionResponse(Response):
    session_id: str
    namespace_id: str
    internal_id: str
    session_name: str | None
    status: SessionStatus
    created_at: str
    expires_at: str


class GetSessionResponse(Response):
    session_id: str
    namespace_id: str
    internal_id: str
    user_id: str | None
    session_name: str | None
    agent_config: dict[str, Any]
    user_memory: dict[str, Any] | None
    status: SessionStatus
    message_count: int
    stats: SessionStats
    created_at: str
    updated_at: str
    last_activity_at: str
    expires_at: str
    # Not in the SDK model (ignored by it): what really runs and the session's quotas.
    effective_model: str = BUILTIN_MODEL
    model_provider: str = "builtin"  # builtin | anthropic | openai
    quotas: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class PatchSessionResponse(Response):
    session_id: str
    updated_at: str


class TerminateSessionResponse(Response):
    session_id: str
    status: SessionStatus
    terminated_at: str


class ListSessionsResponse(Response):
    results: list[GetSessionResponse]
    total: int
    pagination: dict[str, Any]


class MessageHistoryItem(Response):
    message_id: str
    role: str
    content: str
    content_type: str
    tool_name: str | None = None
    tool_inputs: str | None = None
    tool_outputs: str | None = None
    tool_status: str | None = None
    timestamp: str = ""


class GetHistoryResponse(Response):
    session_id: str
    messages: list[MessageHistoryItem]
    total_messages: int
    returned_messages: int
    has_more: bool


class SubmitFeedbackResponse(Response):
    session_id: str
    message_id: str
    rating: str
    stored: bool
    recorded_at: str


class SuitableCollection(Response):
    collection_id: str
    collection_name: str
    feature_extractor: str
    match_score: float
    capabilities: list[str] | None = None


class ClarificationOption(Response):
    label: str
    description: str
    action: str


class IntentClassification(Response):
    intent: Literal["execution", "setup", "ambiguous"]
    confidence: float
    reasoning: str
    recommended_action: str
    clarification_needed: bool
    suitable_collections: list[SuitableCollection] | None = None
    clarification_options: list[ClarificationOption] | None = None
    keywords_found: dict[str, list[str]] | None = None


class ToolInfo(Response):
    name: str
    description: str
    category: str
    parameters: dict[str, Any] | None = None
    required_params: list[str] | None = None
    requires_confirmation: bool = False


class ListToolsResponse(Response):
    results: list[ToolInfo]
    total: int
    categories: list[str]


class MessageResult(Response):
    """``stream: false`` answer: the ``message`` and ``done`` payloads in one object."""

    message_id: str
    session_id: str
    status: str
    content: str
    intent: dict[str, Any] | None
    tool_calls_made: int
    retriever_summary: dict[str, Any]
    data_accessed_via_retriever: bool
    latency_ms: float
    session_name: str | None = None
    is_final: bool = True
    events_url: str = ""
    error: dict[str, Any] | None = None
    confirmation: dict[str, Any] | None = None


class CancelResponse(Response):
    message_id: str
    session_id: str
    status: str
    cancelled: bool


class ErrorDetail(Response, omit_defaults=True):
    message: str
    type: str
    code: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(Response):
    status: int
    error: ErrorDetail
    success: bool = False
