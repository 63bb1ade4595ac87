"""create_session, get_session, patch_session, list_sessions and terminate_session through the SDK."""

from __future__ import annotations

import json
from datetime import timedelta

import mixpeek
import pytest
from mixpeek import (
    AgentConfig,
    CreateSessionRequest,
    CreateSessionResponse,
    GetSessionResponse,
    ListSessionsRequest,
    ListSessionsResponse,
    PatchSessionRequest,
    PatchSessionResponse,
    SendMessageRequest,
    SessionQuotas,
    SessionStats,
    SessionStatus,
    TerminateSessionResponse,
)
from mixpeek.exceptions import (
    BadRequestException,
    ForbiddenException,
    UnprocessableEntityException,
)

from tests.sdk.helpers import SSE_TIMEOUT_S, content_type, error_of, new_session

pytestmark = pytest.mark.integration


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
