"""The official Mixpeek SDK (``mixpeek.AgentSessionsApi``) against the real gateway.

All 11 operations go through the SDK as a user would call them; its typed methods validate the
200 bodies strictly (a field the SDK rejects raises ``pydantic.ValidationError``), and the
``*_with_http_info`` variants show the status and content type. Error paths check that the
SDK raises the right exception class *and* parses ``e.data`` into an ``ErrorResponse``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import mixpeek
import pytest
from mixpeek import (
    AgentConfig,
    ApiException,
    ClarificationOption,
    ConfirmationRequest,
    CreateSessionRequest,
    CreateSessionResponse,
    DetectIntentRequest,
    ErrorResponse,
    GetHistoryResponse,
    GetSessionResponse,
    IntentClassification,
    ListSessionsRequest,
    ListSessionsResponse,
    ListToolsResponse,
    PatchSessionRequest,
    PatchSessionResponse,
    SendMessageRequest,
    SessionQuotas,
    SessionStats,
    SessionStatus,
    SubmitFeedbackRequest,
    SubmitFeedbackResponse,
    SuitableCollection,
    TerminateSessionResponse,
    ToolInfo,
)
from mixpeek.exceptions import (
    BadRequestException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)

from cli.demo_data import DEMO_COLLECTION, seed_demo
from dataplane.service import DataPlane
from shared import connect
from tests.stack import ROOT, Proc, Stack

pytestmark = pytest.mark.integration

SSE_TIMEOUT_S = 30.0
TERMINAL = {"done", "error"}
# the generated methods' response map for errors (identical for all 11 operations)
ERROR_TYPES = {str(status): "ErrorResponse" for status in (400, 401, 403, 404, 422, 429, 500, 503)}
HAS_CONFIRMATIONS = (ROOT / "gateway" / "routes" / "confirmations.py").exists()


# The SDK client


@contextmanager
def sdk_client(url: str, key: str | None, namespace: str | None) -> Iterator[mixpeek.AgentSessionsApi]:
    cfg = mixpeek.Configuration(host=url, access_token=key,
                                api_key={"NamespaceHeader": namespace} if namespace else {})
    client = mixpeek.ApiClient(cfg)
    try:
        yield mixpeek.AgentSessionsApi(client)
    finally:
        # urllib3 keeps sockets pooled; close them here rather than in a finaliser (ResourceWarning)
        client.rest_client.pool_manager.clear()


@pytest.fixture
def sdk(gateway: Proc, tenant: tuple[str, str, str]) -> Iterator[mixpeek.AgentSessionsApi]:
    key, ns, _ = tenant
    with sdk_client(gateway.url, key, ns) as api:
        yield api


@pytest.fixture
def other_sdk(gateway: Proc, stack: Stack) -> Iterator[mixpeek.AgentSessionsApi]:
    """A second tenant: another key in another namespace."""
    key, ns, _ = stack.new_tenant()
    with sdk_client(gateway.url, key, ns) as api:
        yield api


def seed(stack: Stack, ns_id: str) -> None:
    async def go() -> None:
        redis = connect.client(stack.redis_url)
        try:
            await seed_demo(DataPlane(redis), ns_id)
        finally:
            await redis.aclose()

    asyncio.run(go())


@pytest.fixture
def seeded(stack: Stack, tenant: tuple[str, str, str]) -> tuple[str, str, str]:
    """The tenant's namespace holds the demo collection (``demo-docs``)."""
    seed(stack, tenant[2])
    return tenant


def raw_call(api: mixpeek.AgentSessionsApi, method: str, path: str, body: Any = None,
             content_type: str | None = "application/json",
             types: dict[str, str] | None = None) -> mixpeek.ApiResponse:
    """A request the typed methods would refuse to build (client-side validation), sent through
    the SDK's own transport, auth and error mapping."""
    client = api.api_client
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    params = client.param_serialize(method=method, resource_path=path, header_params=headers, body=body,
                                    auth_settings=["NamespaceHeader", "BearerAuth"])
    response = client.call_api(*params, _request_timeout=SSE_TIMEOUT_S)
    response.read()
    return client.response_deserialize(response, {**ERROR_TYPES, **(types or {})})


def header(resp: mixpeek.ApiResponse, name: str) -> str | None:
    """ApiResponse.headers is a plain dict (not case-insensitive): look the name up in any case."""
    assert resp.headers is not None
    return next((str(v) for k, v in resp.headers.items() if k.lower() == name.lower()), None)


def content_type(resp: mixpeek.ApiResponse) -> str:
    return (header(resp, "Content-Type") or "").split(";")[0].strip()


def new_session(api: mixpeek.AgentSessionsApi, **kw: Any) -> CreateSessionResponse:
    return api.create_session_agents(CreateSessionRequest(agent_config=kw.pop("agent_config", AgentConfig()), **kw))


# SSE as the SDK hands it over: one str


@dataclass(frozen=True)
class Sse:
    id: str | None
    event: str
    data: dict[str, Any]


def parse_sse(text: str) -> list[Sse]:
    out: list[Sse] = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", text):
        eid, event, data = None, "message", []
        for line in re.split(r"\r\n|\r|\n", block):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                eid = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if data:
            out.append(Sse(eid, event, json.loads("\n".join(data))))
    return out


def id_tuple(eid: str | None) -> tuple[int, int]:
    assert eid is not None and re.fullmatch(r"\d+-\d+", eid), eid
    ms, seq = eid.split("-")
    return int(ms), int(seq)


# the payload keys the reference's SSE catalogue names (§4); extra keys are allowed
EVENT_KEYS = {
    "intent": {"intent", "confidence", "category", "reasoning", "context_scope"},
    "thinking": {"step", "message"},
    "tool_call": {"tool_name", "tool_call_id", "inputs"},
    "tool_result": {"tool_name", "tool_call_id", "success", "output", "latency_ms"},
    "token": {"content"},
    "message": {"content", "message_id", "is_final"},
    "session_name": {"session_name"},
    "done": {"latency_ms", "tool_calls_made", "message_id", "retriever_summary", "data_accessed_via_retriever"},
    "error": {"message", "recoverable"},
    "retriever_execution": {"tool_name", "execution_id", "retriever_id", "is_adhoc", "documents_returned",
                            "latency_ms", "message"},
    "pipeline_config": {"tool_name", "config", "message"},
    "confirmation_required": {"confirmation_id"},
}


def check_stream(events: list[Sse]) -> dict[str, Sse]:
    """The invariants every completed message stream holds. Returns the last event of each type."""
    for e in events:
        assert e.event in EVENT_KEYS, e
        assert EVENT_KEYS[e.event] <= set(e.data), e
    ids = [id_tuple(e.id) for e in events]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), f"ids not strictly increasing: {ids}"
    terminals = [i for i, e in enumerate(events) if e.event in TERMINAL]
    assert terminals == [len(events) - 1], [e.event for e in events]
    assert events[-1].event == "done", events[-1]
    by_type = {e.event: e for e in events}
    tokens = "".join(e.data["content"] for e in events if e.event == "token")
    assert by_type["message"].data["content"] == tokens
    assert by_type["message"].data["is_final"] is True
    assert by_type["message"].data["message_id"] == by_type["done"].data["message_id"]
    assert events[0].event == "intent"
    return by_type


def stream(api: mixpeek.AgentSessionsApi, ses_id: str, content: str) -> tuple[mixpeek.ApiResponse, list[Sse]]:
    resp = api.send_message_agents_sessions_with_http_info(
        ses_id, SendMessageRequest(content=content, metadata={"client": "sdk-compat"}),
        _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200
    assert content_type(resp) == "text/event-stream"
    assert isinstance(resp.data, str)
    return resp, parse_sse(resp.data)


def error_of(exc: ApiException, status: int) -> ErrorResponse:
    assert exc.status == status, (exc.status, exc.body)
    assert isinstance(exc.data, ErrorResponse), exc.body
    assert exc.data.status == status and exc.data.success is False
    assert exc.data.error.message and exc.data.error.type
    return exc.data


# 1. create_session


def test_create_session_with_the_default_agent_config(sdk: mixpeek.AgentSessionsApi,
                                                      tenant: tuple[str, str, str]) -> None:
    resp = sdk.create_session_agents_with_http_info(CreateSessionRequest(agent_config=AgentConfig()))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    s = resp.data
    assert isinstance(s, CreateSessionResponse)
    assert s.session_id.startswith("ses_") and s.namespace_id == tenant[2] and s.internal_id
    assert s.status == SessionStatus.ACTIVE and s.session_name is None
    assert s.expires_at - s.created_at == timedelta(days=7)


def test_create_session_with_quotas_keeps_the_config_and_enforces_max_messages(
        sdk: mixpeek.AgentSessionsApi) -> None:
    quotas = SessionQuotas(max_messages=1, max_tokens_total=100_000, max_tool_calls=50,
                           max_session_duration_minutes=60, rate_limit_messages_per_minute=30)
    config = AgentConfig(model="claude-haiku-4-5-20251001", temperature=0.2, max_tokens=512,
                         system_prompt="Be brief.", available_tools=["smart_search", "list_collections"])
    s = new_session(sdk, agent_config=config, quotas=quotas, user_id="user_123", metadata={"source": "sdk"})
    got = sdk.get_session_agents_with_http_info(s.session_id)
    assert got.status_code == 200
    assert got.data.agent_config == config and got.data.user_id == "user_123"
    assert json.loads(got.raw_data)["quotas"] == quotas.to_dict()  # a server extension the SDK ignores
    sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello"),
                                     _request_timeout=SSE_TIMEOUT_S)
    with pytest.raises(ForbiddenException) as exc:
        sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello again"),
                                         _request_timeout=SSE_TIMEOUT_S)
    assert error_of(exc.value, 403).error.code == "quota_max_messages"


@pytest.mark.parametrize(("config", "code"), [
    (AgentConfig(model="claude-opus-4-1-20250805"), "unsupported_model"),
    (AgentConfig(model="gpt-4o"), "unsupported_model"),
    (AgentConfig(available_tools=["smart_search", "launch_rockets"]), "unknown_tool"),
], ids=["opus", "other-provider", "unknown-tool"])
def test_create_session_refuses_what_the_sdk_lets_through_with_422(sdk: mixpeek.AgentSessionsApi,
                                                                   config: AgentConfig, code: str) -> None:
    with pytest.raises(UnprocessableEntityException) as exc:
        new_session(sdk, agent_config=config)
    assert error_of(exc.value, 422).error.code == code
    assert sdk.list_sessions_agents().total == 0


# 2. get_session


def test_get_session_has_every_required_field_and_counts_the_exchange(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk, user_memory={"lang": "en"})
    sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello"),
                                     _request_timeout=SSE_TIMEOUT_S)
    resp = sdk.get_session_agents_with_http_info(s.session_id)
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    g = resp.data
    assert isinstance(g, GetSessionResponse)
    raw = json.loads(resp.raw_data)
    required = ("session_id", "namespace_id", "internal_id", "agent_config", "status", "message_count", "stats",
                "created_at", "updated_at", "last_activity_at", "expires_at")
    assert all(raw.get(k) is not None for k in required), raw
    assert set(raw["stats"]) >= {"total_messages", "total_tokens", "total_tool_calls", "avg_latency_ms"}
    assert (g.session_id, g.namespace_id, g.internal_id) == (s.session_id, s.namespace_id, s.internal_id)
    assert isinstance(g.status, SessionStatus) and g.status == SessionStatus.ACTIVE
    assert g.agent_config == AgentConfig()
    assert g.user_memory == {"lang": "en"} and g.session_name == "Hello"
    assert g.message_count == 2 and isinstance(g.stats, SessionStats)
    assert g.stats.total_messages == 2 and g.stats.total_tool_calls == 0 and g.stats.total_tokens > 0
    assert g.created_at == s.created_at and g.expires_at == s.expires_at
    assert g.created_at <= g.last_activity_at and g.created_at <= g.updated_at < g.expires_at


# 3. patch_session


def test_patch_session_replaces_user_memory(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk, user_memory={"lang": "en", "tone": "formal"})
    resp = sdk.patch_session_agents_with_http_info(s.session_id, PatchSessionRequest(user_memory={"lang": "fr"}))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    assert isinstance(resp.data, PatchSessionResponse) and resp.data.session_id == s.session_id
    g = sdk.get_session_agents(s.session_id)
    assert g.user_memory == {"lang": "fr"}  # replaced, not merged: "tone" is gone
    assert g.updated_at == resp.data.updated_at >= s.created_at


# 4. list_sessions


def test_list_sessions_without_a_body_with_a_status_filter_and_pagination(sdk: mixpeek.AgentSessionsApi) -> None:
    made = [new_session(sdk, user_id=f"user_{i}").session_id for i in range(3)]
    sdk.terminate_session_agents(made[0])

    resp = sdk.list_sessions_agents_with_http_info()  # no body object: a POST without a body
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    everything = resp.data
    assert isinstance(everything, ListSessionsResponse) and everything.total == 3
    assert all(isinstance(r, GetSessionResponse) for r in everything.results)
    assert [r.session_id for r in everything.results] == made[::-1]  # newest first
    assert isinstance(everything.pagination, dict)

    active = sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(status="active"))
    assert active.total == 2 and {r.session_id for r in active.results} == set(made[1:])
    assert all(r.status == SessionStatus.ACTIVE for r in active.results)
    ended = sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(status=SessionStatus.TERMINATED))
    assert [r.session_id for r in ended.results] == [made[0]]
    mine = sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(filters={"user_id": "user_2"}))
    assert [r.session_id for r in mine.results] == [made[2]]

    first = sdk.list_sessions_agents(limit=2, include_total=True)
    assert [r.session_id for r in first.results] == made[:0:-1] and first.total == 3
    assert first.pagination["has_next"] is True
    rest = sdk.list_sessions_agents(limit=2, offset=2)
    assert [r.session_id for r in rest.results] == [made[0]] and rest.pagination["has_next"] is False
    paged = sdk.list_sessions_agents(page=2, page_size=2)
    assert [r.session_id for r in paged.results] == [made[0]]
    cursor = first.pagination["next_cursor"]
    assert isinstance(cursor, str)
    assert [r.session_id for r in sdk.list_sessions_agents(limit=2, cursor=cursor).results] == [made[0]]
    assert sdk.list_sessions_agents(limit=1000, offset=10_000).results == []


def test_list_sessions_shows_only_the_namespaces_own(sdk: mixpeek.AgentSessionsApi,
                                                     other_sdk: mixpeek.AgentSessionsApi) -> None:
    new_session(other_sdk)
    assert sdk.list_sessions_agents().total == 0


# 5. send_message


def test_send_message_streams_sse_that_the_sdk_returns_as_one_string(sdk: mixpeek.AgentSessionsApi,
                                                                    seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    resp, events = stream(sdk, s.session_id, "list collections")
    by_type = check_stream(events)
    assert header(resp, "X-Message-Id") == by_type["done"].data["message_id"]
    assert [e.data["tool_name"] for e in events if e.event == "tool_call"] == ["list_collections"]
    result = by_type["tool_result"].data
    assert result["success"] is True and result["tool_call_id"] == by_type["tool_call"].data["tool_call_id"]
    assert DEMO_COLLECTION in by_type["message"].data["content"]
    assert by_type["intent"].data["intent"] == "data_browse"
    assert [e.data for e in events if e.event == "session_name"] == [{"session_name": "List collections"}]
    assert by_type["done"].data["tool_calls_made"] == 1

    again = sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello"),
                                             _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(again, str)  # the plain typed method hands over the same text
    later = parse_sse(again)
    check_stream(later)
    assert "session_name" not in {e.event for e in later}  # the first message only
    assert sdk.get_session_agents(s.session_id).session_name == "List collections"


def test_send_message_without_streaming_returns_one_json_object(sdk: mixpeek.AgentSessionsApi,
                                                               seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    resp = sdk.send_message_agents_sessions_with_http_info(
        s.session_id, SendMessageRequest(content="find documents about redis streams consumer groups",
                                         stream=False), _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    body = resp.data
    assert isinstance(body, dict)
    assert isinstance(body["message_id"], str) and body["message_id"].startswith("msg_")
    assert header(resp, "X-Message-Id") == body["message_id"]
    assert isinstance(body["content"], str) and body["content"]
    assert body["intent"]["intent"] == "retriever_search"
    assert body["tool_calls_made"] == 2 and body["data_accessed_via_retriever"] is True
    assert isinstance(body["latency_ms"], int | float) and body["latency_ms"] >= 0
    summary = body["retriever_summary"]
    assert summary["used_retrievers"] is True and summary["retriever_count"] == 1
    assert summary["total_documents"] == sum(e["documents_returned"] for e in summary["executions"]) > 0
    cited = re.findall(r"\[(doc_[A-Za-z0-9_]+)\]", body["content"])
    assert cited, body["content"]
    assert body["session_name"] == "Find documents about redis streams consumer"


# 6. get_history


def test_history_pages_oldest_first_with_string_tool_rows(sdk: mixpeek.AgentSessionsApi,
                                                         seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    _, events = stream(sdk, s.session_id, "list collections")
    msg_id = events[-1].data["message_id"]

    resp = sdk.get_history_agents_sessions_with_http_info(s.session_id)
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    h = resp.data
    assert isinstance(h, GetHistoryResponse) and h.session_id == s.session_id
    assert [m.role for m in h.messages] == ["user", "tool", "assistant"]
    assert (h.total_messages, h.returned_messages, h.has_more) == (3, 3, False)
    assert all(m.message_id == msg_id for m in h.messages)
    assert [m.timestamp for m in h.messages] == sorted(m.timestamp for m in h.messages)
    user, tool, assistant = h.messages
    assert user.content == "list collections" and user.content_type == "text"
    assert tool.tool_name == "list_collections" and tool.tool_status == "success" and tool.content
    assert isinstance(tool.tool_inputs, str) and json.loads(tool.tool_inputs) == {}
    assert isinstance(tool.tool_outputs, str)
    outputs = json.loads(tool.tool_outputs)
    assert [c["collection_name"] for c in outputs["results"]] == [DEMO_COLLECTION]
    assert assistant.content == check_stream(events)["message"].data["content"]

    stream(sdk, s.session_id, "hello")
    page = sdk.get_history_agents_sessions(s.session_id, limit=2, offset=0)
    assert [m.role for m in page.messages] == ["user", "tool"]
    assert (page.total_messages, page.returned_messages, page.has_more) == (5, 2, True)
    tail = sdk.get_history_agents_sessions(s.session_id, limit=2, offset=3)
    assert [(m.role, m.content) for m in tail.messages][0] == ("user", "hello")
    assert (tail.returned_messages, tail.has_more) == (2, False)
    assert sdk.get_history_agents_sessions(s.session_id, limit=200, offset=5).messages == []
    stats = sdk.get_session_agents(s.session_id).stats
    assert (stats.total_messages, stats.total_tool_calls) == (4, 1)


# 7. submit_feedback


def test_feedback_stores_positive_and_not_negative_and_refuses_unknown_messages(
        sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    first = stream(sdk, s.session_id, "hello")[1][-1].data["message_id"]
    second = stream(sdk, s.session_id, "hello there")[1][-1].data["message_id"]

    resp = sdk.submit_feedback_agents_sessions_with_http_info(
        s.session_id, SubmitFeedbackRequest(message_id=first, rating="positive", feedback_text="spot on"))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    assert isinstance(resp.data, SubmitFeedbackResponse)
    assert (resp.data.session_id, resp.data.message_id, resp.data.rating, resp.data.stored) == \
        (s.session_id, first, "positive", True)
    bad = sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id=second,
                                                                                  rating="negative"))
    assert (bad.rating, bad.stored) == ("negative", False)

    with pytest.raises(NotFoundException) as exc:
        sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id="msg_nope",
                                                                                rating="positive"))
    assert error_of(exc.value, 404).error.code == "message_not_found"
    other = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:  # a message of another session
        sdk.submit_feedback_agents_sessions(other.session_id, SubmitFeedbackRequest(message_id=first,
                                                                                    rating="positive"))
    error_of(exc.value, 404)


def test_feedback_is_never_stored_when_memory_is_disabled(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk, enable_memory=False)
    msg = stream(sdk, s.session_id, "hello")[1][-1].data["message_id"]
    got = sdk.submit_feedback_agents_sessions(s.session_id, SubmitFeedbackRequest(message_id=msg,
                                                                                  rating="positive"))
    assert got.stored is False


# 8. respond_to_confirmation


def test_confirming_an_unknown_confirmation_is_404_with_an_error_body(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:
        sdk.respond_to_confirmation_agents_sessions(s.session_id, "conf_doesnotexist",
                                                    ConfirmationRequest(approved=True))
    assert error_of(exc.value, 404).error.type == "NotFoundError"


def _ask_to_delete(sdk: mixpeek.AgentSessionsApi) -> tuple[str, list[Sse], mixpeek.ApiResponse]:
    s = new_session(sdk)
    resp, events = stream(sdk, s.session_id, f"delete the collection {DEMO_COLLECTION}")
    ids = [id_tuple(e.id) for e in events]
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert events[-1].event == "confirmation_required", [e.event for e in events]
    assert not TERMINAL & {e.event for e in events}  # paused, not over
    confirmation = events[-1].data
    assert confirmation["confirmation_id"].startswith("conf_")
    assert confirmation["tool_name"] == "delete_collection"
    assert confirmation["inputs"] == {"collection_identifier": DEMO_COLLECTION}
    return s.session_id, events, resp


def _collection_names(stack: Stack, ns_id: str) -> list[str]:
    async def go() -> list[str]:
        redis = connect.client(stack.redis_url)
        try:
            return [c.collection_name for c in await DataPlane(redis).list_collections(ns_id)]
        finally:
            await redis.aclose()

    return asyncio.run(go())


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_approving_a_confirmation_runs_the_write_tool(sdk: mixpeek.AgentSessionsApi, stack: Stack,
                                                      seeded: tuple[str, str, str]) -> None:
    ses_id, before, paused = _ask_to_delete(sdk)
    conf_id = before[-1].data["confirmation_id"]
    resp = sdk.respond_to_confirmation_agents_sessions_with_http_info(
        ses_id, conf_id, ConfirmationRequest(approved=True), _request_timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 200 and content_type(resp) == "text/event-stream"
    assert isinstance(resp.data, str)
    assert header(resp, "X-Message-Id") == header(paused, "X-Message-Id")  # the same message continues
    after = parse_sse(resp.data)
    check_stream(before + after)
    results = [e.data for e in after if e.event == "tool_result"]
    assert [(r["tool_name"], r["success"]) for r in results] == [("delete_collection", True)]
    assert DEMO_COLLECTION not in _collection_names(stack, seeded[2])
    with pytest.raises(BadRequestException) as exc:  # already processed
        sdk.respond_to_confirmation_agents_sessions(ses_id, conf_id, ConfirmationRequest(approved=True))
    assert error_of(exc.value, 400).error.code == "confirmation_already_answered"
    tool_rows = [m for m in sdk.get_history_agents_sessions(ses_id).messages if m.role == "tool"]
    assert [(m.tool_name, m.tool_status) for m in tool_rows] == [("delete_collection", "success")]


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_denying_a_confirmation_does_not_run_the_tool(sdk: mixpeek.AgentSessionsApi, stack: Stack,
                                                      seeded: tuple[str, str, str]) -> None:
    ses_id, before, _ = _ask_to_delete(sdk)
    conf_id = before[-1].data["confirmation_id"]
    other = new_session(sdk)
    with pytest.raises(NotFoundException) as exc:  # the confirmation belongs to another session
        sdk.respond_to_confirmation_agents_sessions(other.session_id, conf_id, ConfirmationRequest(approved=True))
    assert error_of(exc.value, 404).error.code == "confirmation_not_found"
    text = sdk.respond_to_confirmation_agents_sessions(ses_id, conf_id, ConfirmationRequest(approved=False),
                                                       _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(text, str)
    after = parse_sse(text)
    by_type = check_stream(before + after)
    assert by_type["tool_result"].data["success"] is False
    assert "denied" in by_type["message"].data["content"]
    assert DEMO_COLLECTION in _collection_names(stack, seeded[2])


@pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmation flow (gateway/routes/confirmations.py)")
def test_a_non_streamed_message_reports_its_pause_and_the_answer_streams(sdk: mixpeek.AgentSessionsApi,
                                                                         stack: Stack,
                                                                         seeded: tuple[str, str, str]) -> None:
    s = new_session(sdk)
    paused = sdk.send_message_agents_sessions(
        s.session_id, SendMessageRequest(content=f"delete the collection {DEMO_COLLECTION}", stream=False),
        _request_timeout=SSE_TIMEOUT_S)
    assert isinstance(paused, dict) and paused["status"] == "awaiting_confirmation"
    conf_id = paused["confirmation"]["confirmation_id"]
    text = sdk.respond_to_confirmation_agents_sessions(s.session_id, conf_id, ConfirmationRequest(approved=True),
                                                       _request_timeout=SSE_TIMEOUT_S)
    events = parse_sse(text)
    assert events[-1].event == "done" and events[-1].data["message_id"] == paused["message_id"]
    assert DEMO_COLLECTION not in _collection_names(stack, seeded[2])


# 9. detect_intent


def test_detect_intent_classifies_and_finds_suitable_collections(sdk: mixpeek.AgentSessionsApi,
                                                                 seeded: tuple[str, str, str]) -> None:
    resp = sdk.detect_intent_agents_sessions_with_http_info(
        DetectIntentRequest(user_request="find documents about redis streams"))
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    c = resp.data
    assert isinstance(c, IntentClassification)
    assert (c.intent, c.recommended_action, c.clarification_needed) == ("execution", "execute_retriever", False)
    assert 0 <= c.confidence <= 1 and c.reasoning
    assert c.suitable_collections and isinstance(c.suitable_collections[0], SuitableCollection)
    best = c.suitable_collections[0]
    assert best.collection_name == DEMO_COLLECTION and best.collection_id.startswith("col_")
    assert 0 < best.match_score <= 1 and best.feature_extractor
    assert c.keywords_found is not None and "find" in c.keywords_found["execution_keywords"]
    assert set(c.keywords_found) == {"setup_keywords", "execution_keywords", "neutral_keywords"}

    setup = sdk.detect_intent_agents_sessions(
        DetectIntentRequest(user_request="set up a pipeline to ingest and index my videos"))
    assert (setup.intent, setup.recommended_action) == ("setup", "setup_pipeline")
    vague = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="videos"))
    assert vague.intent == "ambiguous" and vague.clarification_needed is True
    assert vague.clarification_options and all(isinstance(o, ClarificationOption)
                                                for o in vague.clarification_options)
    blind = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="find documents about redis",
                                                                  include_collection_analysis=False))
    assert blind.suitable_collections is None


def test_detect_intent_in_an_empty_namespace_suggests_no_collection(sdk: mixpeek.AgentSessionsApi) -> None:
    c = sdk.detect_intent_agents_sessions(DetectIntentRequest(user_request="find documents about redis"))
    assert c.intent == "execution" and not c.suitable_collections


# 10. list_tools


def test_list_tools_with_and_without_a_category(sdk: mixpeek.AgentSessionsApi) -> None:
    resp = sdk.list_tools_agents_sessions_with_http_info()
    assert resp.status_code == 200 and content_type(resp) == "application/json"
    tools = resp.data
    assert isinstance(tools, ListToolsResponse) and tools.total == len(tools.results) > 0
    assert all(isinstance(t, ToolInfo) for t in tools.results)
    assert set(tools.categories) == {t.category for t in tools.results}
    by_name = {t.name: t for t in tools.results}
    assert {"smart_search", "execute_retriever", "list_collections", "create_collection",
            "delete_collection"} <= set(by_name)
    assert by_name["create_collection"].requires_confirmation is True
    assert by_name["delete_collection"].requires_confirmation is True
    for t in tools.results:
        assert t.requires_confirmation is (t.category in {"create", "update", "delete"}), t.name
        assert set(t.required_params or []) <= set((t.parameters or {}).get("properties", {}))

    search = sdk.list_tools_agents_sessions(category="search")
    assert search.total == len(search.results) and {t.category for t in search.results} == {"search"}
    assert {"smart_search", "execute_retriever"} <= {t.name for t in search.results}
    assert sdk.list_tools_agents_sessions(category="no-such-category").results == []


# 11. terminate_session


def test_terminate_is_idempotent_and_ends_the_conversation(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    first = sdk.terminate_session_agents_with_http_info(s.session_id)
    second = sdk.terminate_session_agents_with_http_info(s.session_id)
    for resp in (first, second):
        assert resp.status_code == 200 and content_type(resp) == "application/json"
        assert isinstance(resp.data, TerminateSessionResponse)
        assert resp.data.session_id == s.session_id and resp.data.status == SessionStatus.TERMINATED
    assert first.data.terminated_at == second.data.terminated_at
    assert sdk.get_session_agents(s.session_id).status == SessionStatus.TERMINATED
    for stream_flag in (True, False):
        with pytest.raises(BadRequestException) as exc:
            sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="hello", stream=stream_flag),
                                             _request_timeout=SSE_TIMEOUT_S)
        assert error_of(exc.value, 400).error.code == "session_terminated"
    assert sdk.get_history_agents_sessions(s.session_id).total_messages == 0  # still readable


# Errors through the SDK


def _all_operations(ses_id: str) -> dict[str, Callable[[mixpeek.AgentSessionsApi], Any]]:
    return {
        "create_session": lambda a: a.create_session_agents(CreateSessionRequest(agent_config=AgentConfig())),
        "get_session": lambda a: a.get_session_agents(ses_id),
        "patch_session": lambda a: a.patch_session_agents(ses_id, PatchSessionRequest(user_memory={})),
        "terminate_session": lambda a: a.terminate_session_agents(ses_id),
        "list_sessions": lambda a: a.list_sessions_agents(),
        "send_message": lambda a: a.send_message_agents_sessions(ses_id, SendMessageRequest(content="hi"),
                                                                 _request_timeout=SSE_TIMEOUT_S),
        "get_history": lambda a: a.get_history_agents_sessions(ses_id),
        "submit_feedback": lambda a: a.submit_feedback_agents_sessions(
            ses_id, SubmitFeedbackRequest(message_id="msg_x", rating="positive")),
        "respond_to_confirmation": lambda a: a.respond_to_confirmation_agents_sessions(
            ses_id, "conf_x", ConfirmationRequest(approved=False)),
        "detect_intent": lambda a: a.detect_intent_agents_sessions(DetectIntentRequest(user_request="x")),
        "list_tools": lambda a: a.list_tools_agents_sessions(),
    }


# without the confirmations route, respond_to_confirmation is a 404 for want of a route
_NO_ROUTE = pytest.mark.skipif(not HAS_CONFIRMATIONS, reason="no confirmations route yet")
OPERATIONS = [pytest.param(op, marks=_NO_ROUTE) if op == "respond_to_confirmation" else op
              for op in _all_operations("")]
SESSION_OPERATIONS = [op for op in _all_operations("")
                      if op not in {"create_session", "list_sessions", "detect_intent", "list_tools"}]


@pytest.mark.parametrize("key", [None, "sk_not_a_real_key"], ids=["missing", "invalid"])
@pytest.mark.parametrize("op", OPERATIONS)
def test_every_operation_without_a_valid_key_is_401(gateway: Proc, sdk: mixpeek.AgentSessionsApi,
                                                   tenant: tuple[str, str, str], key: str | None, op: str) -> None:
    s = new_session(sdk)
    with sdk_client(gateway.url, key, tenant[1]) as anonymous:
        with pytest.raises(UnauthorizedException) as exc:
            _all_operations(s.session_id)[op](anonymous)
    assert error_of(exc.value, 401).error.type == "UnauthorizedError"
    assert sdk.get_session_agents(s.session_id).status == SessionStatus.ACTIVE  # nothing happened


@pytest.mark.parametrize("op", SESSION_OPERATIONS)
def test_another_namespaces_session_answers_exactly_like_a_missing_one(
        sdk: mixpeek.AgentSessionsApi, other_sdk: mixpeek.AgentSessionsApi, op: str) -> None:
    theirs = new_session(other_sdk).session_id
    missing = "ses_" + "0" * (len(theirs) - 4)
    bodies = []
    for ses_id in (theirs, missing):
        with pytest.raises(NotFoundException) as exc:
            _all_operations(ses_id)[op](sdk)
        error_of(exc.value, 404)
        assert exc.value.body is not None
        bodies.append(exc.value.body.replace(ses_id, "<id>"))
    assert bodies[0] == bodies[1]
    assert other_sdk.get_session_agents(theirs).status == SessionStatus.ACTIVE  # untouched


def test_a_session_id_with_reserved_characters_is_just_not_found(sdk: mixpeek.AgentSessionsApi) -> None:
    with pytest.raises(NotFoundException) as exc:
        sdk.get_session_agents("ses_a/b c?d")  # the SDK sends ses_a%2Fb%20c%3Fd
    error_of(exc.value, 404)


@pytest.mark.parametrize(("path", "body", "code"), [
    ("/v1/agents/sessions", None, "body_required"),
    ("/v1/agents/sessions", {}, "invalid_body"),
    ("/v1/agents/sessions", {"agent_config": {"temperature": 5}}, "invalid_body"),
    ("/v1/agents/sessions", {"agent_config": {}, "agent": "x"}, "extra_forbidden"),
    ("/v1/agents/sessions", {"agent_config": {"modle": "x"}}, "extra_forbidden"),
    ("/v1/agents/sessions/intent/detect", {"user_request": ""}, "invalid_body"),
    ("/v1/agents/sessions/intent/detect", {"user_request": 7}, "invalid_body"),
    ("/v1/agents/sessions/list", {"status": "expired"}, "invalid_body"),
], ids=["create-no-body", "create-empty", "create-temperature", "create-unknown-key", "create-nested-unknown",
        "intent-empty", "intent-not-a-string", "list-bad-status"])
def test_invalid_bodies_are_422_with_an_error_body(sdk: mixpeek.AgentSessionsApi, path: str, body: Any,
                                                  code: str) -> None:
    with pytest.raises(UnprocessableEntityException) as exc:
        raw_call(sdk, "POST", path, body)
    err = error_of(exc.value, 422)
    assert err.error.code == code, exc.value.body
    if code == "extra_forbidden":
        assert err.error.details and "accepted_keys" in err.error.details


@pytest.mark.parametrize(("suffix", "method", "body", "code"), [
    ("/messages", "POST", None, "body_required"),
    ("/messages", "POST", {"content": ""}, "invalid_body"),
    ("/messages", "POST", {"content": "hi", "stream": "yes"}, "invalid_body"),
    ("/feedback", "POST", {"message_id": "msg_x", "rating": "meh"}, "invalid_body"),
    ("", "PATCH", {}, "invalid_body"),
    ("", "PATCH", {"user_memory": ["not", "an", "object"]}, "invalid_body"),
], ids=["message-no-body", "message-empty", "message-stream-type", "feedback-rating", "patch-empty",
        "patch-list"])
def test_invalid_session_bodies_are_422(sdk: mixpeek.AgentSessionsApi, suffix: str, method: str, body: Any,
                                        code: str) -> None:
    s = new_session(sdk)
    with pytest.raises(UnprocessableEntityException) as exc:
        raw_call(sdk, method, f"/v1/agents/sessions/{s.session_id}{suffix}", body)
    assert error_of(exc.value, 422).error.code == code, exc.value.body


def test_malformed_json_is_400_with_an_error_body(gateway: Proc, tenant: tuple[str, str, str]) -> None:
    # the SDK always JSON-encodes bodies, so broken JSON needs a plain client
    key, ns, _ = tenant
    resp = httpx.post(gateway.url + "/v1/agents/sessions", content=b'{"agent_config": {',
                      headers={"Authorization": f"Bearer {key}", "X-Namespace": ns,
                               "Content-Type": "application/json"}, timeout=SSE_TIMEOUT_S)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    err = ErrorResponse.from_json(resp.text)
    assert err is not None and err.status == 400 and err.error.code == "malformed_json"


def test_the_sdk_body_shapes_are_accepted_byte_for_byte(gateway: Proc, tenant: tuple[str, str, str]) -> None:
    """What the SDK serialises (reference §1.3), sent as plain HTTP: the server takes it as is."""
    key, ns, _ = tenant
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": ns, "Accept": "application/json"}
    body = CreateSessionRequest(agent_config=AgentConfig()).to_dict()
    assert body == {"agent_config": {"model": "claude-sonnet-4-5-20250929", "temperature": 0.7, "max_tokens": 4096,
                                     "system_prompt": "You are a helpful AI assistant with access to Mixpeek's "
                                                      "data infrastructure."}, "enable_memory": True}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=SSE_TIMEOUT_S) as http:
        created = http.post("/v1/agents/sessions", json=body)
        assert created.status_code == 200, created.text
        listed = http.post("/v1/agents/sessions/list", headers={"Content-Type": "application/json"})
        assert listed.status_code == 200 and listed.json()["total"] == 1



# Per-call extras the SDK offers (_headers, _without_preload_content) and the edges of a request


def test_namespace_header_takes_a_name_or_an_id_and_hides_foreign_ones(gateway: Proc, stack: Stack,
                                                                       tenant: tuple[str, str, str]) -> None:
    key, ns_name, ns_id = tenant
    with sdk_client(gateway.url, key, ns_id) as by_id, sdk_client(gateway.url, key, ns_name) as by_name:
        s = new_session(by_id)
        assert by_name.get_session_agents(s.session_id).namespace_id == ns_id
    with sdk_client(gateway.url, key, None) as implicit:  # a key with one namespace needs no header
        assert implicit.get_session_agents(s.session_id).session_id == s.session_id
    _, foreign, _ = stack.new_tenant()
    bodies = []
    for ns in (foreign, "no-such-namespace"):
        with sdk_client(gateway.url, key, ns) as wrong:
            with pytest.raises(NotFoundException) as exc:
                wrong.list_tools_agents_sessions()
        assert error_of(exc.value, 404).error.code == "namespace_not_found"
        bodies.append((exc.value.body or "").replace(ns, "<ns>"))
    assert bodies[0] == bodies[1]


def test_idempotency_key_and_last_event_id_travel_in_sdk_headers(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    request = SendMessageRequest(content="hello")
    first = sdk.send_message_agents_sessions_with_http_info(s.session_id, request, _headers={"Idempotency-Key": "k1"},
                                                            _request_timeout=SSE_TIMEOUT_S)
    events = parse_sse(first.data)
    check_stream(events)
    assert header(first, "Idempotent-Replayed") == "false"
    again = sdk.send_message_agents_sessions_with_http_info(s.session_id, request, _headers={"Idempotency-Key": "k1"},
                                                            _request_timeout=SSE_TIMEOUT_S)
    assert header(again, "Idempotent-Replayed") == "true"
    assert header(again, "X-Message-Id") == header(first, "X-Message-Id")
    assert parse_sse(again.data) == events  # the same message, replayed, not run twice
    cut = len(events) // 2
    tail = sdk.send_message_agents_sessions(s.session_id, request, _request_timeout=SSE_TIMEOUT_S,
                                            _headers={"Idempotency-Key": "k1", "Last-Event-ID": events[cut].id})
    assert parse_sse(tail) == events[cut + 1:]
    assert sdk.get_session_agents(s.session_id).message_count == 2
    with pytest.raises(ApiException) as exc:  # same key, another body: 409 is outside the SDK's map
        sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="bye"),
                                         _headers={"Idempotency-Key": "k1"}, _request_timeout=SSE_TIMEOUT_S)
    assert exc.value.status == 409 and exc.value.data is None
    assert ErrorResponse.from_json(exc.value.body or "").error.code == "idempotency_key_reused"


def test_the_stream_can_be_read_as_it_arrives(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    raw = sdk.send_message_agents_sessions_without_preload_content(s.session_id, SendMessageRequest(content="hello"),
                                                                   _request_timeout=SSE_TIMEOUT_S)
    try:
        assert raw.status == 200 and raw.headers["Content-Type"].startswith("text/event-stream")
        text = b"".join(raw.stream(64)).decode()
    finally:
        raw.release_conn()
    check_stream(parse_sse(text))


def test_unicode_and_line_breaks_survive_the_sse_framing(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    content = "Résumé für naïve Kunden ✓\nzweite Zeile\r\n„dritte“ 🚢"
    _, events = stream(sdk, s.session_id, content)
    by_type = check_stream(events)
    assert content.split("\n")[0] in by_type["message"].data["content"]
    history = sdk.get_history_agents_sessions(s.session_id)
    assert history.messages[0].content == content
    assert sdk.get_session_agents(s.session_id).session_name == "Résumé für naïve Kunden ✓ zweite"


def test_list_sessions_sorts_and_refuses_a_malformed_cursor(sdk: mixpeek.AgentSessionsApi) -> None:
    made = [new_session(sdk).session_id for _ in range(3)]
    oldest_first = sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(
        sort={"field": "created_at", "direction": "asc"}))
    assert [r.session_id for r in oldest_first.results] == made
    with pytest.raises(BadRequestException) as exc:
        sdk.list_sessions_agents(cursor="a b/c")
    assert error_of(exc.value, 400).error.code == "invalid_cursor"
    with pytest.raises(UnprocessableEntityException) as exc:
        sdk.list_sessions_agents(list_sessions_request=ListSessionsRequest(filters={"colour": "red"}))
    error_of(exc.value, 422)


def test_oversized_requests_are_refused_with_an_error_body(sdk: mixpeek.AgentSessionsApi) -> None:
    s = new_session(sdk)
    with pytest.raises(UnprocessableEntityException) as exc:
        sdk.send_message_agents_sessions(s.session_id, SendMessageRequest(content="x" * 32_001))
    assert error_of(exc.value, 422).error.code == "content_too_long"
    with pytest.raises(ApiException) as big:
        sdk.patch_session_agents(s.session_id, PatchSessionRequest(user_memory={"blob": "x" * 2_000_000}))
    # 413 is not in the SDK's response map, so e.data stays None; the body is still the error shape
    assert big.value.status == 413 and big.value.data is None
    assert ErrorResponse.from_json(big.value.body or "").error.code == "body_too_large"
    assert sdk.get_session_agents(s.session_id).user_memory is None
